"""Caption templates as data (config field, rows, checkpoints) and the caption study's functions
(``mars_lite.study.captions`` / ``caption_findings``) on the tiny model and the real mini_sbir data."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from mars_lite import create_model, study
from mars_lite.config import ConfigError
from mars_lite.data import ImageItem
from mars_lite.method.modalities import PAPER_TEMPLATES, caption, templates_problem
from mars_lite.study import caption_findings as findings
from mars_lite.study import captions
from mars_lite.train.config import RESUMABLE_CHANGES, TrainConfig, load_train_config
from mars_lite.train.rows import build_rows, template_index

TWO = {"photo": ["a photo of a {}", "a picture of a {}"], "sketch": ["a sketch of a {}", "a drawing of a {}"]}


# ------------------------------------------------------------------ templates and the config field
def test_caption_takes_templates_and_an_index():
    assert caption("teddy_bear", "sketch") == ("a sketch of a teddy bear", 2)
    assert caption("teddy_bear", "sketch", PAPER_TEMPLATES) == ("a sketch of a teddy bear", 2)
    assert caption("cat", "photo", TWO, index=1) == ("a picture of a cat", 3)
    assert caption("cat", "photo", TWO, index=2) == ("a photo of a cat", 3)  # modulo the count
    with pytest.raises(ValueError, match="exactly one"):
        caption("cat", "photo", {"photo": ["a photo"], "sketch": ["{}"]})


@pytest.mark.parametrize("value, pattern", [
    ({"photo": ["{}"]}, "exactly the keys"),
    ({"photo": [], "sketch": ["{}"]}, "non-empty list"),
    ({"photo": "a photo of a {}", "sketch": ["{}"]}, "non-empty list"),
    ({"photo": ["a photo of a"], "sketch": ["{}"]}, "exactly one"),
    ({"photo": ["{} and {}"], "sketch": ["{}"]}, "exactly one"),
    ({"photo": ["{name}"], "sketch": ["{}"]}, "exactly one"),
    ({"photo": ["{} {x}"], "sketch": ["{}"]}, "no other braces"),
    ({"photo": [3], "sketch": ["{}"]}, "string"),
])
def test_bad_templates_are_named_in_the_config(value, pattern):
    assert templates_problem(value) is not None
    assert TrainConfig(caption_templates=value).field_problem("caption_templates") is not None
    with pytest.raises(ConfigError, match=f"caption_templates.*{pattern}"):
        load_train_config("tiny", caption_templates=value)
    with pytest.raises(ConfigError, match="caption_templates"):
        load_train_config({**asdict(TrainConfig()), "caption_templates": value})


def test_the_default_is_the_papers_and_the_field_round_trips(tmp_path):
    cfg = TrainConfig()
    assert cfg.caption_templates == {"photo": ["a photo of a {}"], "sketch": ["a sketch of a {}"]}
    assert TrainConfig().caption_templates is not TrainConfig().caption_templates  # no shared mutable default
    assert "caption_templates" not in RESUMABLE_CHANGES
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({**asdict(cfg), "caption_templates": TWO}))
    loaded = load_train_config(str(path))
    assert loaded.caption_templates == TWO
    assert load_train_config(loaded).caption_templates == TWO  # instance -> dict -> instance


def test_a_checkpoint_records_the_templates_and_resume_checks_them(tmp_path):
    from mars_lite.method.checkpoint import read_checkpoint
    from mars_lite.train.training import _check_resume_config, _trained_with, train_on_embeddings

    torch.manual_seed(0)
    model, _ = create_model("tiny")
    d = model.embed_dim
    images, text = torch.nn.functional.normalize(torch.randn(8, d), dim=-1), torch.nn.functional.normalize(
        torch.randn(2, d), dim=-1)
    result = train_on_embeddings(model, images, text, torch.tensor([0, 1] * 4), torch.tensor([1, 0] * 4),
                                 torch.tensor([2, 3] * 4), ["a", "b"] * 4, "tiny", out_dir=tmp_path / "run",
                                 epochs=1, batch_size=4, caption_templates=TWO)
    meta = read_checkpoint(result.last_checkpoint)[1]
    assert meta["extra"]["train_config"]["caption_templates"] == TWO
    assert _trained_with(result.last_checkpoint)["caption_templates"] == TWO
    saved = json.dumps(asdict(result.config))
    _check_resume_config(saved, result.config, tmp_path)  # same templates: resumable
    with pytest.raises(ConfigError, match="caption_templates"):
        _check_resume_config(saved, dataclasses.replace(result.config, caption_templates=PAPER_TEMPLATES), tmp_path)
    # a run recorded before the field existed was captioned with the paper's templates
    legacy = {k: v for k, v in json.loads(saved).items() if k != "caption_templates"}
    _check_resume_config(json.dumps(legacy), dataclasses.replace(result.config, caption_templates=PAPER_TEMPLATES),
                         tmp_path)
    with pytest.raises(ConfigError, match="caption_templates"):
        _check_resume_config(json.dumps(legacy), result.config, tmp_path)


# --------------------------------------------------------------------------------- rows
def _items(tmp_path, n=40):
    return [ImageItem(tmp_path / m / c / f"{i}.png", m, c) for m in ("sketch", "photo") for c in ("cat", "dog")
            for i in range(n)]


def test_rows_with_several_templates_pick_one_per_image_deterministically(tmp_path):
    items = _items(tmp_path)
    rows = build_rows(items, templates=TWO)
    assert rows.modality_ids.tolist() == [[1, 2]] * 80 + [[0, 3]] * 80
    texts = [rows.caption_of(i) for i in range(len(items))]
    assert set(texts) == {t.format(c) for m in ("photo", "sketch") for t in TWO[m] for c in ("cat", "dog")}
    assert sorted(rows.captions) == sorted(set(texts))
    for item, text in zip(items, texts):  # the template the image's hash picks, filled with its class
        assert text == TWO[item.modality][template_index(item, 2)].format(item.label)
    # independent of order and of the other images (a validation row's caption is in the joint table)
    again = build_rows(items[::-1], templates=TWO)
    assert [again.caption_of(i) for i in range(len(items))] == texts[::-1]
    part = build_rows(items[5:9], templates=TWO)
    assert [part.caption_of(i) for i in range(4)] == texts[5:9]
    # a relabelled image keeps its wording
    relabelled = dataclasses.replace(items[0], label="dog")
    assert template_index(relabelled, 2) == template_index(items[0], 2)
    # the default is exactly the paper's captions
    assert build_rows(items).captions == build_rows(items, templates=PAPER_TEMPLATES).captions
    assert [template_index(it, 1) for it in items] == [0] * len(items)


# --------------------------------------------------------------------------------- damage
@pytest.mark.parametrize("name", ["cat", "elephant", "teddy_bear", "a", "aa", "moss", "x9"])
def test_misspell_is_deterministic_and_never_the_name(name):
    for variant in range(6):
        typo = captions.misspell(name, variant)
        assert typo != name and typo == captions.misspell(name, variant)
        assert abs(len(typo) - len(name)) <= 1
    assert len({captions.misspell("elephant", v) for v in range(3)}) == 3


def test_damage_labels_changes_the_share_asked_for():
    labels = ["cat"] * 10 + ["dog"] * 10 + ["fish"] * 10
    assert captions.damage_labels(labels, 0.0, "swap") == labels
    swapped = captions.damage_labels(labels, 0.4, "swap", seed=1)
    changed = [i for i, (a, b) in enumerate(zip(labels, swapped)) if a != b]
    assert len(changed) == 12 and all(swapped[i] in {"cat", "dog", "fish"} for i in changed)
    assert swapped == captions.damage_labels(labels, 0.4, "swap", seed=1)
    assert swapped != captions.damage_labels(labels, 0.4, "swap", seed=2)
    typos = captions.damage_labels(labels, 0.6, "typo", seed=0)
    assert sum(a != b for a, b in zip(labels, typos)) == 18
    assert all(t in set(labels) or t not in {"cat", "dog", "fish"} for t in typos)
    with pytest.raises(ValueError, match="typo"):
        captions.damage_labels(labels, 0.2, "shuffle")
    with pytest.raises(ValueError, match="share"):
        captions.damage_labels(labels, 1.5, "typo")


def test_damage_items_relabels_without_touching_files(tmp_path):
    items = _items(tmp_path, 5)
    damaged = captions.damage_items(items, 0.5, "swap", seed=0)
    assert [d.path for d in damaged] == [i.path for i in items]
    assert sum(d.label != i.label for d, i in zip(damaged, items)) == 10


# ------------------------------------------------------------------------------- noise rule
def test_pooled_std_and_the_beyond_noise_rule():
    runs = [{"w": "a", "converted": v, "semantic": v} for v in (0.40, 0.42)] + \
           [{"w": "b", "converted": v, "semantic": v - 0.1} for v in (0.30, 0.34)]
    noise = findings.pooled_std(runs, ("w",), "converted")
    assert noise == pytest.approx(np.sqrt((np.var([0.40, 0.42], ddof=1) + np.var([0.30, 0.34], ddof=1)) / 2))
    rows = findings.summarize(runs, ("w",), ("a",))
    assert [r["w"] for r in rows] == ["a", "b"] and rows[0]["converted diff"] == 0.0
    assert rows[1]["converted diff"] == pytest.approx(-0.09)
    assert rows[1]["converted beyond noise"] == (0.09 > 2 * noise) and rows[1]["semantic beyond noise"]
    assert rows[1]["converted noise"] == pytest.approx(2 * noise)
    with pytest.raises(ValueError, match="two seeds"):
        findings.pooled_std(runs[:1], ("w",), "converted")


def test_query_noise_is_a_paired_bootstrap():
    same = np.array([True, False] * 50)
    flipped = ~same
    hits = {"paper": {"acc": same}, "same": {"acc": same.copy()}, "better": {"acc": np.ones(100, bool)},
            "mixed": {"acc": np.where(np.arange(100) < 50, flipped, same)}}
    rows = {r["wording"]: r for r in findings.query_noise(hits)}
    assert rows["same"]["diff"] == 0 and not rows["same"]["beyond noise"]
    assert rows["better"]["diff"] == pytest.approx(0.5) and rows["better"]["beyond noise"]
    assert not rows["mixed"]["beyond noise"]


def test_advice_follows_the_damage_table():
    base = {"seeds": 3, "converted std": 0.01, "semantic std": 0.01}
    rows = [{**base, "damage": d, "share": s, **{f"{k} {f}": v for k in captions.KINDS for f, v in
            (("mAP", 0.4), ("diff", diff), ("noise", 0.02), ("beyond noise", abs(diff) > 0.02))}}
            for d, s, diff in (("typo", 0.0, 0.0), ("typo", 0.6, -0.005), ("swap", 0.0, 0.0), ("swap", 0.6, -0.05))]
    worst = findings.worst_damage(rows)
    assert worst["swap"]["hurts"] and not worst["typo"]["hurts"] and worst["swap"]["drop"] == pytest.approx(0.05)
    advice = findings.annotation_advice(rows)
    assert "**Do:**" in advice and "wrong class names" in advice
    assert "60% of the training class names misspelled did not lower" in advice
    calm = [dict(r, **{f"{k} beyond noise": False for k in captions.KINDS}) for r in rows]
    assert "**Do:**" not in findings.annotation_advice(calm)


# ----------------------------------------------------------------------- the study, tiny model
@pytest.fixture()
def tiny_setup(monkeypatch, tmp_path, data_root):
    monkeypatch.setenv("MARS_LITE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MARS_LITE_FAST", "1")
    real = study.load_study_setup(seed=0)
    # 4 images per class and modality with the random tiny model: the study's logic in seconds
    return dataclasses.replace(real, model_name="tiny", per_class=4, train={**real.train, "config": "tiny"})


def test_the_study_runs_end_to_end_on_the_tiny_model(tiny_setup, one_thread):
    torch.manual_seed(0)
    model, _ = create_model("tiny")
    data = captions.caption_data(tiny_setup, model)
    seen, unseen = tiny_setup.split.seen, tiny_setup.split.unseen
    assert len(data.train_items) == 4 * 2 * len(seen) and {i.label for i in data.train_items} == set(seen)
    assert len(data.everything) == 4 * 2 * (len(seen) + len(unseen)) and len(data.images("photo", unseen)) == 20

    wordings = {k: captions.WORDINGS[k] for k in ("paper", "a drawing of a", "ensemble")}
    query, hits = captions.query_time_study(data, wordings)
    assert [r["wording"] for r in query] == [*wordings, captions.SYNONYMS]
    assert all(0 <= v <= 1 for r in query for k, v in r.items() if k != "wording")
    assert query[1]["photo acc all"] == query[0]["photo acc all"]  # same photo template
    assert len(hits["paper"]["photo acc all"]) == 4 * (len(seen) + len(unseen))
    text = captions.class_text_embeddings(model, ["snake", "cat"], ["a photo of a {}"], synonyms=True, cache=data.texts)
    assert text.shape == (2, model.embed_dim) and torch.allclose(text.norm(dim=1), torch.ones(2))
    assert "a photo of a boa constrictor" in data.texts  # the synonyms were embedded

    options = {"config": "tiny", "epochs": 2, "batch_size": 8}
    runs = captions.training_time_study(data, [0, 1], wordings, **options)
    assert [(r["wording"], r["seed"]) for r in runs] == [(w, s) for w in wordings for s in (0, 1)]
    assert all(0 <= r[k] <= 1 for r in runs for k in captions.KINDS)
    again = captions.train_and_score(data, wordings["paper"], 0, **options)
    assert again == {k: runs[0][k] for k in captions.KINDS}  # a seed repeats its run exactly
    damage = captions.damage_study(data, [0, 1], (0.0, 0.5), **options)
    assert len(damage) == 2 * 2 * 2
    clean = [r for r in damage if r["share"] == 0.0]
    assert [r["converted"] for r in clean if r["damage"] == "typo"] == [r["converted"] for r in clean if r["damage"] == "swap"]
    table = findings.summarize(damage, ("damage", "share"), ("typo", 0.0))
    assert len(table) == 4 and isinstance(findings.annotation_advice(table), str)
