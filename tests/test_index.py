"""Gallery index: exact chunked search, faiss recall, the three retrieval kinds, files and the CLI."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from mars_lite import open_model
from mars_lite.search.index import GALLERY_KIND, GalleryIndex, ModelMismatchError, gallery_dataset
from mars_lite.search.topk import build_faiss_index, exact_topk, faiss_search, recall_at_k


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def _clustered(n: int, d: int, centres: torch.Tensor, seed: int, noise: float = 0.5) -> torch.Tensor:
    """Rows shaped like real embeddings: a random class centre plus noise, on the unit sphere."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(len(centres), (n,), generator=g)
    return F.normalize(centres[labels] + noise * torch.randn(n, d, generator=g) / d ** 0.5, dim=-1)


@pytest.fixture(scope="module")
def tiny():
    return open_model("tiny", seed=0)[0]


@pytest.fixture(scope="module")
def unseen_gallery(tiny, tmp_path_factory):
    """The real unseen-class photos of mini_sbir (300), embedded with the tiny model."""
    from mars_lite.search.index import photo_index_from_items
    dataset = gallery_dataset("mini_sbir", split="mini_sbir")
    cache = tmp_path_factory.mktemp("emb")
    return photo_index_from_items(tiny, dataset, cache), dataset, cache


def test_exact_topk_matches_full_sort_across_chunks():
    gallery, queries = _unit(1000, 32, 0), _unit(7, 32, 1)
    full = (queries @ gallery.T).sort(dim=1, descending=True)
    for chunk in (1000, 128, 37):
        found = exact_topk(queries, gallery, k=10, chunk_size=chunk)
        assert torch.equal(found.indices, full.indices[:, :10])
        torch.testing.assert_close(found.scores, full.values[:, :10])
    small = exact_topk(queries, gallery[:4], k=10)
    assert small.indices.shape == (7, 4)
    with pytest.raises(ValueError, match="agree in D"):
        exact_topk(queries, _unit(5, 16, 2))


def test_recall_at_k_counts_overlap():
    exact = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    approx = torch.tensor([[3, 2, 9, -1], [4, 5, 6, 7]])
    assert recall_at_k(approx, exact, k=4) == pytest.approx((2 / 4 + 1) / 2)
    assert recall_at_k(exact, exact, k=4) == 1.0


@pytest.mark.parametrize("method", ["ivf", "hnsw"])
def test_faiss_index_recalls_exact_neighbours(method):
    centres = _unit(100, 64, 2)
    gallery = _clustered(10_000, 64, centres, seed=3)
    queries = _clustered(200, 64, centres, seed=4)  # new rows around the same class centres
    index = build_faiss_index(gallery, method)
    approx = faiss_search(index, queries, k=10)
    exact = exact_topk(queries, gallery, k=10)
    recall = recall_at_k(approx.indices, exact.indices, k=10)
    assert recall >= 0.9, f"{method} recall@10 {recall:.3f}"
    found = approx.indices[:, 0] == exact.indices[:, 0]
    torch.testing.assert_close(approx.scores[found, 0], exact.scores[found, 0], atol=1e-4, rtol=0)


def test_ivf_recall_grows_with_nprobe():
    gallery = _clustered(10_000, 64, _unit(200, 64, 6), seed=4, noise=1.0)
    queries = _unit(100, 64, 5)
    exact = exact_topk(queries, gallery, k=10)
    recalls = []
    for nprobe in (1, 8, 64):
        index = build_faiss_index(gallery, "ivf", nlist=128, nprobe=nprobe)
        recalls.append(recall_at_k(faiss_search(index, queries, 10).indices, exact.indices))
    assert recalls[0] < recalls[1] <= recalls[2] and recalls[2] > 0.9


def test_three_query_kinds_search_the_right_gallery(tiny, unseen_gallery):
    index, dataset, cache = unseen_gallery
    from mars_lite.embed import embed_items
    sketches = dataset.select(modality="sketch")[:20]
    z = embed_items(tiny, sketches, cache).embeddings
    m = tiny.modality_embeddings.weight.detach()
    photos = index.vectors["original"]
    # converted photos are the photos themselves; the semantic gallery removes m_photo
    torch.testing.assert_close(index.matrix("converted"), photos)
    torch.testing.assert_close(index.matrix("semantic"), F.normalize(photos - m[0], dim=-1))
    for kind in GALLERY_KIND:
        q = tiny.retrieval_embedding(z, "sketch", kind).detach()
        expected = {"original": z, "converted": F.normalize(z - m[1] + m[0], dim=-1),
                    "semantic": F.normalize(z - m[1], dim=-1)}[kind]
        torch.testing.assert_close(q, expected)
        found = index.search(q, kind, k=5)
        scores = expected @ index.matrix(kind).T
        torch.testing.assert_close(found.scores, scores.topk(5, dim=1).values)
    # with random modality vectors the kinds really differ
    kinds = [index.search(tiny.retrieval_embedding(z, "sketch", k).detach(), k, 10).indices for k in GALLERY_KIND]
    assert not torch.equal(kinds[0], kinds[2])


def test_index_is_built_from_real_unseen_photos(unseen_gallery):
    index, dataset, _ = unseen_gallery
    assert len(index) == len(dataset.select(modality="photo")) == 300
    assert set(index.labels) == {"butterfly", "hourglass", "mushroom", "pizza", "snake"}
    assert all(p.lower().endswith(".jpeg") for p in index.paths)
    norms = index.vectors["original"].norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


def test_save_load_round_trip_with_faiss(unseen_gallery, tmp_path, tiny):
    index, _, _ = unseen_gallery
    copy = GalleryIndex(dict(index.vectors), index.modality_embeddings, index.paths, index.labels, index.meta)
    copy.build_approximate("hnsw")
    queries = copy.vectors["semantic"][:10]
    before = copy.search(queries, "semantic", 10, approximate=True)
    copy.save(tmp_path / "ix")
    assert json.loads((tmp_path / "ix" / "index.json").read_text())["approximate_kinds"] == ["original", "semantic"]
    loaded = GalleryIndex.load(tmp_path / "ix")
    loaded.check_model(tiny)
    assert loaded.paths == index.paths and loaded.labels == index.labels
    after = loaded.search(queries, "semantic", 10, approximate=True)
    assert torch.equal(before.indices, after.indices)
    assert loaded.approximate_recall(queries, "semantic") == 1.0
    assert not list((tmp_path / "ix").glob("*.tmp"))  # atomic writes leave no temporaries
    with pytest.raises(FileNotFoundError, match="mars-lite index build"):
        GalleryIndex.load(tmp_path / "nothing")


def test_index_refuses_a_model_with_other_modality_vectors(unseen_gallery):
    index, _, _ = unseen_gallery
    other = open_model("tiny", seed=1)[0]
    with pytest.raises(ModelMismatchError, match="modality vectors"):
        index.check_model(other)
    with pytest.raises(ValueError, match="build_approximate"):
        GalleryIndex(dict(index.vectors), index.modality_embeddings, index.paths, index.labels).search(
            index.vectors["original"][:1], approximate=True)


def test_cli_builds_saves_and_prints_recall(tmp_path, capsys, tiny):
    from mars_lite.cli import main
    out = tmp_path / "index"
    status = main(["index", "build", "--model", "tiny", "--data", "mini_sbir", "--split", "mini_sbir",
                   "--out", str(out), "--cache", str(tmp_path / "cache"), "--approximate", "ivf"])
    printed = capsys.readouterr().out
    assert status == 0
    assert "embedded 300 photos of 5 classes" in printed
    for kind in GALLERY_KIND:
        assert f"{kind} queries (200 sketches)" in printed
    loaded = GalleryIndex.load(out)
    assert len(loaded) == 300 and set(loaded.approximate) == {"original", "semantic"}
    recall = loaded.meta["approximate"]["recall_at_k"]
    assert recall["k"] == 10 and all(0.0 <= recall[k] <= 1.0 for k in GALLERY_KIND)
    loaded.check_model(tiny)  # the CLI's seeded random-init model equals open_model("tiny", seed=0)
    assert main(["index"]) == 2


# ------------------------------------------------------------------ nothing lost, nothing mixed
def _small_index(tiny, unseen_gallery, rows: slice = slice(0, 40), approximate: bool = True) -> GalleryIndex:
    index, _, _ = unseen_gallery
    part = GalleryIndex({k: v[rows] for k, v in index.vectors.items()}, index.modality_embeddings,
                        index.paths[rows], index.labels[rows], index.meta)
    if approximate:
        part.build_approximate("hnsw")
    return part


def test_a_killed_rebuild_leaves_the_old_index_whole(tiny, unseen_gallery, tmp_path, monkeypatch):
    import faiss
    old = _small_index(tiny, unseen_gallery, slice(0, 40))
    old.save(tmp_path / "ix")
    before = {p.name: p.read_bytes() for p in (tmp_path / "ix").iterdir()}
    new = _small_index(tiny, unseen_gallery, slice(40, 100))

    def killed(*_args):  # the process dies after vectors.safetensors of the new build is written
        raise KeyboardInterrupt
    monkeypatch.setattr(faiss, "write_index", killed)
    with pytest.raises(KeyboardInterrupt):
        new.save(tmp_path / "ix")
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in (tmp_path / "ix").iterdir()} == before
    loaded = GalleryIndex.load(tmp_path / "ix")
    assert loaded.paths == old.paths and torch.equal(loaded.vectors["original"], old.vectors["original"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"]   # the half build was removed

    # a build folder left by a process that really died (no cleanup) goes with the next save
    (tmp_path / ".ix.building-999999999").mkdir()
    (tmp_path / ".ix.building-999999999" / "vectors.safetensors").write_bytes(b"half")
    new.save(tmp_path / "ix")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"]
    assert GalleryIndex.load(tmp_path / "ix").paths == new.paths


def test_files_of_another_build_are_refused(tiny, unseen_gallery, tmp_path):
    import shutil
    from mars_lite.search.index_files import IndexFileError
    _small_index(tiny, unseen_gallery, slice(0, 40)).save(tmp_path / "a")
    _small_index(tiny, unseen_gallery, slice(40, 80)).save(tmp_path / "b")
    json_record = json.loads((tmp_path / "a" / "index.json").read_text())
    assert set(json_record["sha256"]) == {"vectors.safetensors", "faiss_original.index", "faiss_semantic.index"}
    for name, donor in (("vectors.safetensors", "b"), ("faiss_semantic.index", "b")):
        mixed = tmp_path / f"mixed_{name}"
        shutil.copytree(tmp_path / "a", mixed)
        shutil.copy(tmp_path / donor / name, mixed / name)
        with pytest.raises(IndexFileError, match=f"{name} is not the file this index was built with") as info:
            GalleryIndex.load(mixed)
        assert "mars-lite index build" in str(info.value)
    (tmp_path / "a" / "faiss_original.index").unlink()
    with pytest.raises(IndexFileError, match="faiss_original.index is missing"):
        GalleryIndex.load(tmp_path / "a")
    GalleryIndex.load(tmp_path / "a", approximate=False)   # the exact part is still whole


def test_a_kill_between_the_renames_points_to_the_old_index(tiny, unseen_gallery, tmp_path):
    _small_index(tiny, unseen_gallery, approximate=False).save(tmp_path / "ix")
    (tmp_path / "ix").rename(tmp_path / ".ix.old-999999999")   # the state such a kill leaves
    with pytest.raises(FileNotFoundError, match=r"previous index at .*\.ix\.old-999999999"):
        GalleryIndex.load(tmp_path / "ix")


def test_save_never_clobbers_a_folder_of_other_files(tiny, unseen_gallery, tmp_path):
    from mars_lite.search.index_files import IndexFolderError
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"precious")
    index = _small_index(tiny, unseen_gallery, approximate=False)
    with pytest.raises(IndexFolderError, match="holds other files"):
        index.save(other)
    assert [p.name for p in other.iterdir()] == ["holiday.jpg"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(IndexFolderError, match="not a folder"):
        index.save(tmp_path / "file")
    with pytest.raises(IndexFolderError, match="is a file"):
        index.save(tmp_path / "file" / "ix")
    (tmp_path / "empty").mkdir()
    index.save(tmp_path / "empty")   # an empty folder is fine
    assert len(GalleryIndex.load(tmp_path / "empty")) == 40


def test_an_index_of_the_old_format_asks_for_a_rebuild(tiny, unseen_gallery, tmp_path):
    from mars_lite.search.index_files import IndexFileError
    _small_index(tiny, unseen_gallery, approximate=False).save(tmp_path / "ix")
    record = json.loads((tmp_path / "ix" / "index.json").read_text())
    record["format"] = "mars_lite.index/1"
    del record["sha256"]
    (tmp_path / "ix" / "index.json").write_text(json.dumps(record))
    with pytest.raises(IndexFileError, match="rebuild"):
        GalleryIndex.load(tmp_path / "ix")


@pytest.mark.parametrize("flag", ["--k", "--nlist", "--nprobe"])
@pytest.mark.parametrize("value", ["0", "-3", "ten"])
def test_cli_numeric_options_name_the_flag(tmp_path, capsys, flag, value):
    from mars_lite.cli import main
    with pytest.raises(SystemExit) as info:
        main(["index", "build", "--out", str(tmp_path / "ix"), flag, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and value in err and "Traceback" not in err
    assert not (tmp_path / "ix").exists()


def test_cli_checks_out_before_the_work(tmp_path, capsys, monkeypatch):
    from mars_lite.cli import main
    import mars_lite.cli.index as cli_index
    monkeypatch.setattr(cli_index, "open_model", lambda *a, **k: pytest.fail("work started before --out check"))
    (tmp_path / "file").write_text("x")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep")
    for out in (tmp_path / "file" / "ix", tmp_path / "busy"):
        assert main(["index", "build", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(out) in err and "cannot write an index" in err
    assert (tmp_path / "busy" / "notes.txt").read_text() == "keep"


def test_search_refuses_k_below_one(unseen_gallery):
    index, _, _ = unseen_gallery
    with pytest.raises(ValueError, match="k must be at least 1"):
        index.search(index.vectors["original"][:1], "original", k=0)
