"""A user's own folders: photo folders without the modality level (class folders or unlabelled files),
per-class precision of their sketches (library and ``mars-lite evaluate --photos --sketches``), the
refusals, searching an unlabelled gallery, and notebook 08's demonstration folders."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from mars_lite import create_model
from mars_lite.cli import main
from mars_lite.data.folder import UNLABELLED, folder_dataset, is_unlabelled
from mars_lite.data.scanning import LayoutError
from mars_lite.embed import embed_items
from mars_lite.errors import MarsLiteError
from mars_lite.eval.evaluation import EmptyClassError
from mars_lite.eval.metrics import retrieval_metrics
from mars_lite.eval.user_folder import (ClassNotInGalleryError, UnlabelledGalleryError, UserFolderError,
                                        evaluate_user_folder, precision_at_k)
from mars_lite.method.checkpoint import save_checkpoint
from mars_lite.study import own_photos
from mars_lite.study.own_photos import OwnPhotosFolderError, build_own_photos


def _copy(mini_sbir, modality, label, dest, n):
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted((mini_sbir / modality / label).iterdir())[:n]:
        shutil.copyfile(f, dest / f.name)


@pytest.fixture()
def folders(tmp_path, mini_sbir):
    """photos/<class>/ (cat, snake, pizza 6 each; fish 4, a class without sketches) and sketches/<class>/ (3 each)."""
    photos, sketches = tmp_path / "photos", tmp_path / "sketches"
    for label in ("cat", "snake", "pizza", "fish"):
        _copy(mini_sbir, "photo", label, photos / label, 4 if label == "fish" else 6)
    for label in ("cat", "snake", "pizza"):
        _copy(mini_sbir, "sketch", label, sketches / label, 3)
    return photos, sketches


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny checkpoint that says it trained on 'cat' (the overlap the report must name)."""
    torch.manual_seed(0)
    model, _ = create_model("tiny")
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", classes_seen=["cat", "dog"],
                           backbone="full")


# ------------------------------------------------------------------------------ reading
def test_a_bare_folder_is_read_with_class_folders_or_unlabelled(tmp_path, mini_sbir, folders):
    photos, sketches = folders
    gallery = folder_dataset(photos)  # no photo/ level: was "no modality folder", now a gallery of photos
    assert gallery.counts() == {"photo": 22} and gallery.classes == ["cat", "fish", "pizza", "snake"]
    assert folder_dataset(sketches, modality="sketch").counts() == {"sketch": 9}
    assert folder_dataset(mini_sbir, modality="photo").counts() == {"photo": 660}  # the kit's layout: its photo/
    flat = tmp_path / "flat"
    _copy(mini_sbir, "photo", "cat", flat, 3)
    loose = folder_dataset(flat)
    assert len(loose) == 3 and is_unlabelled(loose) and {it.label for it in loose} == {UNLABELLED}
    assert not is_unlabelled(gallery)
    shutil.copyfile(next((photos / "cat").iterdir()), photos / "stray.jpg")
    with pytest.warns(UserWarning, match="stray.jpg"):
        assert len(folder_dataset(photos)) == 22
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError, match="no photo images"):
        folder_dataset(tmp_path / "empty", modality="photo")
    kit_layout = tmp_path / "kit_layout"
    _copy(mini_sbir, "photo", "cat", kit_layout / "photo" / "cat", 2)
    with pytest.raises(LayoutError, match="no sketch folder"):
        folder_dataset(kit_layout, modality="sketch")


def test_precision_at_k_counts_ties_against_the_model():
    similarity = np.array([[0.9, 0.5, 0.5, 0.1], [0.2, 0.2, 0.2, 0.2]])
    relevant = np.array([[True, False, True, False], [True, False, False, False]])
    p = precision_at_k(similarity, relevant, (1, 2, 3))
    assert p[1].tolist() == [1.0, 0.0] and p[2].tolist() == [0.5, 0.0]  # the tied relevant item ranks after
    assert np.allclose(p[3], [2 / 3, 0.0])  # all tied: the relevant one comes last


# ------------------------------------------------------------------------------ report
def test_per_class_report_matches_a_direct_computation(folders, tiny_checkpoint, tmp_path):
    photos, sketches = folders
    report = evaluate_user_folder(tiny_checkpoint, photos, sketches, out_dir=tmp_path / "out")
    assert [row["class"] for row in report.classes] == ["cat", "pizza", "snake"]  # fish: a distractor, not a row
    assert report.gallery["count"] == 22 and report.queries == 9
    # independent computation: embed, cosine, rank
    from mars_lite import open_model
    model, _ = open_model(tiny_checkpoint)
    q = embed_items(model, folder_dataset(sketches, modality="sketch"))
    g = embed_items(model, folder_dataset(photos, modality="photo"))
    zq = torch.nn.functional.normalize(model.retrieval_embedding(q.embeddings, "sketch", "original"), dim=-1)
    zg = torch.nn.functional.normalize(model.retrieval_embedding(g.embeddings, "photo", "original"), dim=-1)
    sim = (zq @ zg.T).numpy()
    maps = retrieval_metrics(sim, q.labels, g.labels, "reference", per_class=True)["per_class"]
    for row in report.classes:
        mine = [i for i, y in enumerate(q.labels) if y == row["class"]]
        top = np.argsort(-sim[mine], axis=1)[:, :5]
        hits = np.asarray(g.labels)[top] == row["class"]
        assert row["p_5"] == pytest.approx(hits.mean())
        assert row["map_all"] == pytest.approx(maps[row["class"]]["map_all"])
        assert row["photos"] == 6 and row["sketches"] == 3 and row["chance"] == pytest.approx(6 / 22)
    assert report.overlap == ["cat"] and report.classes[0]["seen_in_training"] is True
    assert any("NOT zero-shot" in note and "cat" in note for note in report.notes)
    assert any("your own classes" in note for note in report.notes)
    saved = json.loads((tmp_path / "out" / "eval_user_folder.json").read_text())
    assert saved["classes"] == report.classes and saved["overlap"] == ["cat"]
    markdown = (tmp_path / "out" / "eval_user_folder.md").read_text()
    assert "| cat | 3 | 6 |" in markdown and "P@10" in markdown and "all sketches" in markdown


def test_class_names_match_whatever_their_spelling(folders):
    photos, sketches = folders
    (sketches / "cat").rename(sketches / "Cat")
    report = evaluate_user_folder("tiny", photos, sketches, classes=["CAT"])
    assert [row["class"] for row in report.classes] == ["cat"]
    assert any("training classes unknown" in note for note in report.notes)


# ------------------------------------------------------------------------------ refusals
def test_each_folder_mistake_is_named(folders, tmp_path, mini_sbir):
    photos, sketches = folders
    flat = tmp_path / "flat"
    _copy(mini_sbir, "photo", "cat", flat, 3)
    with pytest.raises(UnlabelledGalleryError, match="class folders") as info:
        evaluate_user_folder("tiny", flat, sketches)
    assert isinstance(info.value, MarsLiteError) and str(flat) in str(info.value)
    with pytest.raises(LayoutError, match="absent"):
        evaluate_user_folder("tiny", tmp_path / "absent", sketches)
    with pytest.raises(UserFolderError, match="not in class folders"):
        evaluate_user_folder("tiny", photos, flat)
    with pytest.raises(UserFolderError, match="unicorn"):
        evaluate_user_folder("tiny", photos, sketches, classes=["cat", "unicorn"])
    _copy(mini_sbir, "sketch", "lion", sketches / "lion", 2)
    with pytest.raises(ClassNotInGalleryError, match="lion") as info:
        evaluate_user_folder("tiny", photos, sketches)
    assert str(photos) in str(info.value)
    (photos / "lion").mkdir()
    with pytest.raises(EmptyClassError, match="'lion' \\(no photos\\)"):
        evaluate_user_folder("tiny", photos, sketches)
    shutil.rmtree(sketches / "lion")
    (sketches / "lion").mkdir()
    with pytest.raises(EmptyClassError, match="no sketches and no photos"):
        evaluate_user_folder("tiny", photos, sketches)


# ------------------------------------------------------------------------------ CLI
def test_cli_evaluate_on_user_folders(folders, tiny_checkpoint, tmp_path, capsys):
    photos, sketches = folders
    out = tmp_path / "report"
    assert main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--photos", str(photos), "--sketches",
                 str(sketches), "--out", str(out), "--no-cache"]) == 0
    printed = capsys.readouterr().out
    assert "| cat | 3 | 6 |" in printed and "NOT zero-shot" in printed and "eval_user_folder.json" in printed
    saved = json.loads((out / "eval_user_folder.json").read_text())
    assert [row["class"] for row in saved["classes"]] == ["cat", "pizza", "snake"] and saved["kind"] == "original"


def test_cli_evaluate_uses_the_demos_model_by_default(folders, tmp_path, monkeypatch, capsys):
    from mars_lite.method.loading import open_model
    from mars_lite.ui import demo

    def fake_demo_model(config):  # the demo's model, without training its checkpoint in a unit test
        model, info = open_model("tiny", seed=config.seed)
        return model, {**info, "classes_seen": ["snake"]}

    monkeypatch.setattr(demo, "demo_model", fake_demo_model)
    photos, sketches = folders
    assert main(["evaluate", "--photos", str(photos), "--sketches", str(sketches), "--out", str(tmp_path / "o"),
                 "--no-cache"]) == 0
    assert json.loads((tmp_path / "o" / "eval_user_folder.json").read_text())["overlap"] == ["snake"]


@pytest.mark.parametrize("extra, needle", [
    (["--data", "mini_sbir"], "either --data"),
    (["--split", "mini_sbir"], "--split belong to --data"),
    (["--no-sketches"], "go together"),
    (["--flat"], "unlabelled files"),
])
def test_cli_evaluate_user_mistakes_are_one_line(folders, tmp_path, capsys, mini_sbir, extra, needle):
    photos, sketches = folders
    args = ["evaluate", "--model", "tiny", "--photos", str(photos), "--sketches", str(sketches),
            "--out", str(tmp_path / "o"), "--no-cache"]
    if extra == ["--no-sketches"]:
        args, extra = args[:5] + args[7:], []
    if extra == ["--flat"]:
        _copy(mini_sbir, "photo", "cat", tmp_path / "flat", 2)
        args[args.index(str(photos))], extra = str(tmp_path / "flat"), []
    assert main(args + extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("mars-lite evaluate: error: ") and needle in err, err


def test_cli_evaluate_still_needs_data_or_folders(tmp_path, capsys):
    assert main(["evaluate", "--model", "tiny", "--out", str(tmp_path / "o")]) == 2
    assert "--photos PHOTOS --sketches SKETCHES" in capsys.readouterr().err


def test_unlabelled_gallery_is_indexed_and_queried(tmp_path, mini_sbir, capsys, monkeypatch):
    from mars_lite.search.index import GalleryIndex
    monkeypatch.setenv("MARS_LITE_HOME", str(tmp_path / "home"))  # the embedding cache of this test only
    flat = tmp_path / "flat"
    flat.mkdir()
    for label in ("cat", "snake"):
        for f in sorted((mini_sbir / "photo" / label).iterdir())[:3]:
            shutil.copyfile(f, flat / f"{label}_{f.name}")
    assert main(["index", "build", "--model", "tiny", "--data", str(flat), "--out", str(tmp_path / "ix")]) == 0
    assert "unlabelled" in capsys.readouterr().out
    index = GalleryIndex.load(tmp_path / "ix")
    assert len(index) == 6 and set(index.labels) == {UNLABELLED}
    assert "unlabelled" in repr(index) and "classes" not in repr(index)
    sketch = sorted((mini_sbir / "sketch" / "cat").iterdir())[0]
    assert main(["query", str(sketch), "--json", "--k", "4", "--model", "tiny", "--pretrained", "none",
                 "--checkpoint", "none", "--gallery", str(flat)]) == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["results"]
    assert len(results) == 4 and {r["label"] for r in results} == {UNLABELLED}


# ------------------------------------------------------------------------------ notebook 08's folders
def test_own_photos_builds_reuses_and_never_clobbers(tmp_path, monkeypatch):
    dest = tmp_path / "own"
    built = build_own_photos(dest, classes=["snake", "pizza"], photos_per_class=4, sketches_per_class=2, unlabelled=3)
    assert folder_dataset(built.photos).counts() == {"photo": 8}
    sketches = folder_dataset(built.sketches, modality="sketch")
    assert sketches.classes == ["pizza", "snake"] and len(sketches) == 4
    loose = folder_dataset(built.unlabelled)
    assert is_unlabelled(loose) and len(loose) == 3 and set(built.unlabelled_classes.values()) <= {"snake", "pizza"}
    stamp = (dest / own_photos.MARK).stat().st_mtime_ns
    again = build_own_photos(dest, classes=["snake", "pizza"], photos_per_class=4, sketches_per_class=2, unlabelled=3)
    assert again.unlabelled_classes == built.unlabelled_classes and (dest / own_photos.MARK).stat().st_mtime_ns == stamp

    def broken_copy(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(own_photos, "_copy", broken_copy)
    with pytest.raises(OSError, match="disk full"):  # another request rebuilds; a failed build keeps the old one
        build_own_photos(dest, classes=["snake"], photos_per_class=4, sketches_per_class=2, unlabelled=3)
    assert folder_dataset(dest / "photos").counts() == {"photo": 8}
    assert not list(tmp_path.glob(".own.*"))

    mine = tmp_path / "mine"
    (mine / "photos").mkdir(parents=True)
    (mine / "photos" / "holiday.jpg").write_bytes(b"my photo")
    with pytest.raises(OwnPhotosFolderError, match="not built by the kit"):
        build_own_photos(mine)
    assert (mine / "photos" / "holiday.jpg").read_bytes() == b"my photo"
    assert isinstance(OwnPhotosFolderError("x"), MarsLiteError)


def test_demo_accepts_a_photo_folder_as_its_gallery(folders, tmp_path, monkeypatch, capsys):
    from mars_lite.cli import demo as demo_cli
    calls = []
    monkeypatch.setattr(demo_cli, "run_server", lambda cmd, env=None, **_: calls.append(env) or 0)
    photos, _ = folders
    assert main(["demo", "--model", "tiny", "--pretrained", "none", "--checkpoint", "none",
                 "--gallery", str(photos)]) == 0
    assert calls and calls[0]["MARS_LITE_DEMO_GALLERY"] == str(photos.resolve())
    (tmp_path / "nothing").mkdir()
    assert main(["demo", "--model", "tiny", "--checkpoint", "none", "--gallery", str(tmp_path / "nothing")]) == 2
    assert "has no photo folder" in capsys.readouterr().err and len(calls) == 1
