"""Evaluation workflow on real mini_sbir images with a tiny model: tables, files, properties, bookkeeping."""
from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mars_lite import cli, create_model
from mars_lite.method.checkpoint import load_checkpoint, save_checkpoint
from mars_lite.data.splits import load_split
from mars_lite.embed import embed_items
from mars_lite.eval.report import FAST_MODE_NOTE, METRIC_KEYS, SEEN_CLASS_NOTE, load_report
from mars_lite.eval.evaluation import SeenClassError, evaluate, load_eval_data
from mars_lite.eval.finegrained import pair_sketches_to_photos, sketch_photo_id
from mars_lite.eval.metrics import retrieval_metrics
from mars_lite.method.modalities import RETRIEVAL_KINDS
from mars_lite.eval.published import TUBERLIN_CAVEAT, comparison_markdown, published_results


@pytest.fixture(scope="module")
def split(mini_sbir):
    return load_split("mini_sbir", mini_sbir)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, split):
    """A tiny checkpoint trained (nominally) on the seen classes; full backbone so it reloads exactly."""
    torch.manual_seed(0)
    model, _ = create_model("tiny")
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    return save_checkpoint(model, path, classes_seen=list(split.seen), backbone="full")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the module: every evaluation of the same backbone reuses the embeddings."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def report(checkpoint, mini_sbir, cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return evaluate(checkpoint, mini_sbir, cache_dir=cache, out_dir=out, fast_mode=True)


def test_table_shape_and_files(report, split):
    assert list(report.metrics) == list(RETRIEVAL_KINDS)
    for kind, values in report.metrics.items():
        assert list(values) == list(METRIC_KEYS)
        assert all(0.0 <= v <= 1.0 for v in values.values()), (kind, values)
    assert report.query["count"] == 60 * len(split.unseen) and report.gallery["count"] == 60 * len(split.unseen)
    assert report.query["classes"] == sorted(split.unseen) == report.gallery["classes"]
    assert report.convention == "reference" and report.setting == "zero_shot"

    saved = load_report(report.files["json"])
    assert saved["metrics"] == report.metrics
    assert saved["convention"] == "reference" and saved["fast_mode"] is True
    assert saved["model"]["classes_seen"] == list(split.seen)
    markdown = open(report.files["markdown"], encoding="utf-8").read()
    assert FAST_MODE_NOTE in markdown and "metric convention: **reference**" in markdown
    for kind in RETRIEVAL_KINDS:
        row = f"| {kind} | " + " | ".join(f"{report.metrics[kind][k]:.4f}" for k in METRIC_KEYS) + " |"
        assert row in markdown


def test_metrics_match_metrics_module(report, checkpoint, mini_sbir, cache):
    """Recompute 'converted' from the cached z_v with the formula of docs/method.md and the full-matrix metrics."""
    model, _ = load_checkpoint(checkpoint)
    data = load_eval_data(mini_sbir)
    query = embed_items(model, data.query, cache)
    gallery = embed_items(model, data.gallery, cache)
    assert query.from_cache and gallery.from_cache  # the report's evaluation filled the cache
    m = model.modality_embeddings.weight.detach()
    q = F.normalize(query.embeddings - m[1] + m[0], dim=-1)  # sketch moved into the photo modality
    expected = retrieval_metrics(q @ gallery.embeddings.T, query.labels, gallery.labels)
    for key in METRIC_KEYS:
        assert report.metrics["converted"][key] == pytest.approx(expected[key], abs=1e-6)
    plain = retrieval_metrics(query.embeddings @ gallery.embeddings.T, query.labels, gallery.labels)
    assert report.metrics["original"] == pytest.approx(plain, abs=1e-6)


def test_converted_equals_original_when_modality_vectors_match(checkpoint, mini_sbir, cache, report):
    model, _ = load_checkpoint(checkpoint)
    with torch.no_grad():
        model.modality_embeddings.weight[1] = model.modality_embeddings.weight[0]  # M[1] == M[0]
    same = evaluate(model, mini_sbir, cache_dir=cache, classes_seen=load_split("mini_sbir", mini_sbir).seen)
    for key in METRIC_KEYS:
        assert same.metrics["converted"][key] == pytest.approx(same.metrics["original"][key], abs=1e-6)
    # the property is not vacuous: with the checkpoint's own (different) M[0], M[1] they differ
    assert any(report.metrics["converted"][k] != report.metrics["original"][k] for k in METRIC_KEYS)


def test_generalized_gallery_holds_seen_photos(checkpoint, mini_sbir, cache, report, split):
    gen = evaluate(checkpoint, mini_sbir, generalized=True, cache_dir=cache)
    assert gen.setting == "generalized"
    assert gen.query == report.query
    assert gen.gallery["count"] > report.gallery["count"]
    assert gen.gallery["seen_photos"] == gen.gallery["count"] - report.gallery["count"] > 0
    assert set(gen.gallery["classes"]) & set(split.seen)
    assert gen.cache["query"] and gen.cache["gallery"]  # reused from the first evaluation
    assert all(0.0 <= v <= 1.0 for values in gen.metrics.values() for v in values.values())


def test_seen_class_refusal(checkpoint, mini_sbir, cache, split):
    with pytest.raises(SeenClassError, match="camel"):
        evaluate(checkpoint, mini_sbir, classes=["camel", "snake"], cache_dir=cache)
    with pytest.raises(SeenClassError, match="cat"):  # a bare model's classes add to the checkpoint's
        evaluate(load_checkpoint(checkpoint)[0], mini_sbir, classes=["cat"], classes_seen=["Cat"], cache_dir=cache)
    knowingly = evaluate(checkpoint, mini_sbir, classes=["camel"], seen_class_evaluation=True,
                         cache_dir=cache)
    assert knowingly.seen_class_evaluation and knowingly.query["classes"] == ["camel"]
    assert SEEN_CLASS_NOTE in knowingly.to_markdown()


# ------------------------------------------------------------------------------- fine-grained
def _sketchy_tree(root, mini_sbir, duplicate: bool):
    """Real mini_sbir images renamed into Sketchy's convention: photo <id>.png, sketch <id>-<n>.png.

    duplicate=False pairs real sketches with real photos (plus one unpaired sketch per class);
    duplicate=True makes each sketch an exact copy of its paired photo.
    """
    classes = {"seen": ["camel"], "unseen": ["cat", "snake"]}
    for label in classes["seen"] + classes["unseen"]:
        photos = sorted((mini_sbir / "photo" / label).iterdir())[:6]
        sketches = sorted((mini_sbir / "sketch" / label).iterdir())[:7]
        (root / "photo" / label).mkdir(parents=True)
        (root / "sketch" / label).mkdir(parents=True)
        for i, photo in enumerate(photos):
            photo_id = photo.stem
            Image.open(photo).convert("RGB").save(root / "photo" / label / f"{photo_id}.png")
            if duplicate:
                shutil.copyfile(root / "photo" / label / f"{photo_id}.png", root / "sketch" / label / f"{photo_id}-1.png")
            else:
                shutil.copyfile(sketches[i], root / "sketch" / label / f"{photo_id}-{1 + i % 2}.png")
        if not duplicate:
            shutil.copyfile(sketches[6], root / "sketch" / label / "unpaired.png")
    (root / "split_zs.json").write_text(json.dumps(classes))
    return root


def test_sketch_photo_pairing_from_names(tmp_path, mini_sbir):
    tree = _sketchy_tree(tmp_path / "sk", mini_sbir, duplicate=False)
    assert sketch_photo_id("x/n02123045_12-3.png") == "n02123045_12" and sketch_photo_id("unpaired.png") is None
    data = load_eval_data(tree)
    sketch_paths = [it.path for it in data.query]
    pairs = pair_sketches_to_photos(sketch_paths, [it.label for it in data.query],
                                    [it.path for it in data.gallery], [it.label for it in data.gallery])
    assert sum(p is None for p in pairs) == 2  # one 'unpaired.png' per unseen class
    for sketch, pair in zip(sketch_paths, pairs):
        if pair is not None:
            photo = data.gallery[pair].path
            assert sketch.stem.rsplit("-", 1)[0] == photo.stem and sketch.parent.name == photo.parent.name


def test_finegrained_accuracy(tmp_path, mini_sbir, checkpoint):
    model, _ = load_checkpoint(checkpoint)  # the tree has its own split: camel seen, cat and snake unseen
    tree = _sketchy_tree(tmp_path / "real", mini_sbir, duplicate=False)
    rep = evaluate(model, tree, finegrained=True, classes_seen=["camel"])
    for kind, values in rep.finegrained.items():
        assert 0.0 <= values["acc@1"] <= values["acc@5"] <= 1.0, kind
        assert values["n_sketches"] == 12 and values["n_unpaired"] == 2
    assert "Fine-grained" in rep.to_markdown()

    dup = _sketchy_tree(tmp_path / "dup", mini_sbir, duplicate=True)
    exact = evaluate(model, dup, finegrained=True, classes_seen=["camel"])
    assert exact.finegrained["original"]["acc@1"] == 1.0 and exact.finegrained["original"]["n_sketches"] == 12


def test_finegrained_needs_sketchy_names(checkpoint, mini_sbir, cache):
    with pytest.raises(ValueError, match="<photo_id>-<n>"):
        evaluate(checkpoint, mini_sbir, finegrained=True, cache_dir=cache)


# ------------------------------------------------------------------------------- published
def test_published_numbers_and_caveat():
    tu = published_results("tuberlin")
    ours = [r for r in tu if r.is_this_method]
    assert len(ours) == 1 and ours[0].metrics == {"map_all": 70.5, "p_100": 77.7}
    assert {r.setting for r in published_results(None, None)} == {"zero_shot", "generalized", "finegrained"}
    table = comparison_markdown("tuberlin", {"converted": {"map_all": 0.5, "p_100": 0.25}})
    assert TUBERLIN_CAVEAT in table and "| 50.0 | 25.0 |" in table and "SpLIP" in table
    with pytest.raises(KeyError):
        published_results("imagenet")


# ------------------------------------------------------------------------------------ CLI
def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--checkpoint" in text and "--generalized" in text and "--convention" in text


def test_cli_end_to_end(checkpoint, mini_sbir, cache, tmp_path, capsys, report):
    out = tmp_path / "out"
    status = cli.main(["evaluate", "--checkpoint", str(checkpoint), "--data", "mini_sbir", "--out", str(out),
                       "--cache-dir", str(cache), "--fast-mode"])
    assert status == 0
    saved = load_report(out / "eval_mini_sbir.json")
    assert saved["model"]["checkpoint"] == str(checkpoint) and saved["fast_mode"]
    assert saved["metrics"] == report.metrics  # same checkpoint, same data -> same numbers
    assert (out / "eval_mini_sbir.md").is_file()
    assert "wrote" in capsys.readouterr().out
    assert not math.isnan(saved["metrics"]["semantic"]["map_all"])


def test_sketchy_layout_finegrained_uses_original_photos(tmp_path, mini_sbir, checkpoint):
    """Sketchy's own layout (rendered 256x256 + EXTEND_image_sketchy), filled with real mini_sbir images
    placed under the 21 split-2 unseen class names: the category gallery holds original + extended photos,
    the fine-grained ranking only the original ones (the ones the sketches were drawn from)."""
    split = load_split("sketchy_split2")
    sketches = sorted((mini_sbir / "sketch" / "snake").iterdir())
    photos = sorted((mini_sbir / "photo" / "snake").iterdir())
    base = tmp_path / "Sketchy"
    for i, label in enumerate(split.unseen):
        for sub in ("256x256/sketch/tx_000000000000", "256x256/photo/tx_000000000000", "EXTEND_image_sketchy"):
            (base / sub / label).mkdir(parents=True)
        photo_id = f"n{i:08d}_1"
        shutil.copyfile(photos[2 * i], base / "256x256/photo/tx_000000000000" / label / f"{photo_id}.jpg")
        shutil.copyfile(photos[2 * i + 1], base / "EXTEND_image_sketchy" / label / f"ext_{i}.jpg")
        shutil.copyfile(sketches[i], base / "256x256/sketch/tx_000000000000" / label / f"{photo_id}-1.png")
    rep = evaluate(checkpoint, tmp_path, "sketchy_split2", finegrained=True)
    assert rep.benchmark == "sketchy" and rep.query["count"] == 21 and rep.gallery["count"] == 42
    for values in rep.finegrained.values():  # one original photo per class: every paired photo ranks first
        assert values["n_sketches"] == 21 and values["acc@1"] == values["acc@5"] == 1.0
    markdown = rep.to_markdown()
    assert "69.1" in markdown and "29.96" in markdown  # published side-by-side tables for this split


def test_cli_evaluate_random_weights_on_builtin_data(tmp_path, capsys):
    """``mars-lite evaluate --pretrained none --data mini_sbir`` (one weight-source parser for every command)."""
    out = tmp_path / "report"
    status = cli.main(["evaluate", "--model", "tiny", "--pretrained", "none", "--data", "mini_sbir", "--out", str(out),
                       "--no-cache"])
    assert status == 0
    saved = json.loads(next(out.glob("*.json")).read_text())
    assert saved["model"]["pretrained"] is None and saved["query"]["count"] == 300


# --------------------------------------------------------------- checks, empty classes, provenance
def _small_tree(root, mini_sbir, n: int = 3):
    """n real images per class and modality (camel seen; cat, snake unseen), files we may change."""
    classes = {"seen": ["camel"], "unseen": ["cat", "snake"]}
    for modality in ("sketch", "photo"):
        for label in classes["seen"] + classes["unseen"]:
            (root / modality / label).mkdir(parents=True)
            for f in sorted((mini_sbir / modality / label).iterdir())[:n]:
                shutil.copyfile(f, root / modality / label / f.name)
    (root / "split_zs.json").write_text(json.dumps(classes))
    return root


def test_an_empty_unseen_class_is_an_error_naming_it(tmp_path, mini_sbir, checkpoint):
    from mars_lite.errors import MarsLiteError
    from mars_lite.eval.evaluation import EmptyClassError
    tree = _small_tree(tmp_path / "data", mini_sbir)
    for f in (tree / "sketch" / "snake").iterdir():
        f.unlink()  # the folder is there, its sketches are not: snake would vanish from the means
    with pytest.raises(EmptyClassError, match="'snake' \\(no sketches\\)") as info:
        load_eval_data(tree)
    assert isinstance(info.value, MarsLiteError) and "cat" not in str(info.value)
    with pytest.raises(EmptyClassError, match="snake"):
        evaluate(load_checkpoint(checkpoint)[0], tree, classes_seen=["camel"])
    # every photo of a class unreadable and skipped: the same error, which says files were skipped
    tree2 = _small_tree(tmp_path / "data2", mini_sbir)
    for f in (tree2 / "photo" / "cat").iterdir():
        f.write_bytes(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(EmptyClassError, match="'cat' \\(no photos\\)") as info:
        load_eval_data(tree2, on_error="skip")
    assert "3 unreadable file(s) were skipped" in str(info.value)


def test_skipped_files_are_recorded_in_the_report(tmp_path, mini_sbir, checkpoint):
    tree = _small_tree(tmp_path / "data", mini_sbir)
    bad = tree / "photo" / "cat" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.warns(UserWarning, match="broken.jpg"):
        rep = evaluate(load_checkpoint(checkpoint)[0], tree, classes_seen=["camel"], on_error="skip")
    assert rep.skipped == [str(bad)] and rep.gallery["count"] == 6
    assert any("1 unreadable image file(s) were skipped" in n and "broken.jpg" in n for n in rep.notes)
    assert "broken.jpg" in rep.to_markdown()


def test_report_says_where_the_backbone_weights_came_from(report):
    """The checkpoint stores the whole (random-init, trained) backbone: the weights came from it."""
    markdown = report.to_markdown()
    assert "backbone weights: random init" not in markdown
    assert "the trained backbone, loaded from the checkpoint (training started from random init)" in markdown
    saved = load_report(report.files["json"])
    assert saved["model"]["backbone_saved"] == "full" and "loaded from the checkpoint" in saved["model"]["weights"]


def test_weights_source_in_words():
    from mars_lite.eval.report import weights_source
    assert weights_source({"name": "tiny", "pretrained": None}) == "random init"
    assert "shipped weights" in weights_source({"name": "mobilenet-minilm", "pretrained": "shipped"})
    frozen = weights_source({"name": "ViT-B-32", "pretrained": "openai", "checkpoint": "c.safetensors",
                             "backbone_saved": "none"})
    assert frozen.startswith("open_clip 'openai' weights") and "frozen" in frozen
    assert "LayerNorm" in weights_source({"name": "ViT-B-32", "pretrained": "/w/b32.bin", "checkpoint": "c",
                                          "backbone_saved": "layernorm"})


@pytest.mark.parametrize("name, pretrained, comparable", [
    ("ViT-B-32", "openai", True), ("mobilenet-minilm", "shipped", False), ("ViT-B-32", None, False),
    ("tiny", None, False), ("ViT-B-16", "openai", False)])
def test_only_the_papers_backbone_is_comparable(name, pretrained, comparable):
    from mars_lite.eval.report import NOT_COMPARABLE_NOTE, EvalReport
    rep = EvalReport(metrics={"converted": {k: 0.5 for k in METRIC_KEYS}}, convention="reference",
                     setting="zero_shot", split="sketchy_split2", benchmark="sketchy", data="/d",
                     model={"name": name, "pretrained": pretrained, "checkpoint": None, "classes_seen": ["a"]},
                     query={"count": 1, "classes": ["x"]}, gallery={"count": 1, "classes": ["x"]})
    assert rep.comparable is comparable and rep.to_dict()["comparable"] is comparable
    assert any(NOT_COMPARABLE_NOTE in n for n in rep.notes) is not comparable
    ours = [line for line in rep.to_markdown().splitlines() if line.startswith("| ours: converted")]
    assert ours and ("not comparable" in ours[0]) is not comparable


def test_cli_out_is_checked_before_the_work(tmp_path, mini_sbir, capsys, monkeypatch):
    from mars_lite.cli import evaluate as evaluate_cli

    def no_work(*args, **kwargs):
        raise AssertionError("evaluate ran although --out cannot take the report")

    monkeypatch.setattr(evaluate_cli, "evaluate", no_work)
    taken = tmp_path / "report.md"
    taken.write_text("mine")
    for out, needle in ((taken, "is an existing file"), (taken / "sub", "not a writable folder")):
        assert cli.main(["evaluate", "--model", "tiny", "--data", "mini_sbir", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err and str(out) in err, err
    assert taken.read_text() == "mine"


def test_cli_on_error_skip_reaches_evaluation(tmp_path, mini_sbir, checkpoint, capsys):
    tree = _small_tree(tmp_path / "data", mini_sbir)
    (tree / "sketch" / "snake" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n no")
    args = ["evaluate", "--model", "tiny", "--pretrained", "none", "--data", str(tree), "--out", str(tmp_path / "o"),
            "--no-cache"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "broken.png" in err
    with pytest.warns(UserWarning, match="broken.png"):
        assert cli.main(args + ["--on-error", "skip"]) == 0
    saved = load_report(tmp_path / "o" / "eval_data.json")
    assert saved["skipped"] == [str(tree / "sketch" / "snake" / "broken.png")] and saved["comparable"] is False
