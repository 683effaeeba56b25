"""End-to-end training on the real mini_sbir data: learning, frozen mode, cache, resume, DDP, errors.

Every run uses the tiny model on CPU. The step loops run on one intra-op thread: the tensors are
small, and extra threads only add synchronisation (and stall badly when the cores are shared).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mars_lite.data.sources import resolve_split
from mars_lite.method.checkpoint import load_checkpoint
from mars_lite.cli import build_parser, main
from mars_lite.config import ConfigError
from mars_lite.eval.gap import centroid_distance
from mars_lite.train.rows import TrainingDataError, UnseenClassError, build_rows, seen_split
from mars_lite.train.state import read_history
from mars_lite.train.validation import embed_rows
from mars_lite.train.training import load_train_config, train

SMALL = {"max_images_per_class": 8, "batch_size": 16, "epochs": 3, "val_fraction": 0.1}   # a few steps, real images


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: training tests on one thread


@pytest.fixture(scope="module")
def paper_run(mini_sbir, tmp_path_factory):
    """The fast config: tiny model from scratch, paper mode, 12 epochs on mini_sbir's seen classes."""
    return train("tiny", mini_sbir, tmp_path_factory.mktemp("paper"), verbose=False)


def test_fast_paper_run_learns(paper_run, mini_sbir):
    history = paper_run.history
    totals, epochs = history["steps"]["total"], history["steps"]["epoch"]
    first = [t for t, e in zip(totals, epochs) if e == 1]
    last = [t for t, e in zip(totals, epochs) if e == paper_run.config.epochs]
    assert sum(last) / len(last) < sum(first) / len(first) - 0.2, "training loss did not fall"
    val_total = paper_run.epoch_values("val_total")
    assert val_total[-1][1] < val_total[0][1], "validation loss did not fall"
    val_map = paper_run.epoch_values("val_map")
    assert val_map[0][0] == 0 and len(val_map) == paper_run.config.epochs + 1
    assert val_map[-1][1] > val_map[0][1], f"seen-class validation mAP did not rise: {val_map}"
    # history: one row per step for every term, the same on disk; files for every epoch's end
    assert len(totals) == paper_run.global_step == paper_run.epochs_completed * len(first)
    assert set(history["steps"]) >= {"clip", "semantic", "discriminator", "reconstruction", "orthogonal", "lr"}
    assert read_history(paper_run.out_dir)["steps"]["total"] == pytest.approx(totals)
    best_map = max(v for _, v in val_map[1:])
    assert dict(val_map)[paper_run.best_epoch] == best_map
    model, meta = load_checkpoint(paper_run.best_checkpoint)
    split = resolve_split(mini_sbir)
    assert meta["classes_seen"] == list(split.seen) and not set(meta["classes_seen"]) & set(split.unseen)
    assert meta["extra"]["epoch"] == paper_run.best_epoch and meta["backbone_saved"] == "full"


def _sketch_photo(embedded):
    sketch = [i for i, m in enumerate(embedded.modalities) if m == "sketch"]
    photo = [i for i, m in enumerate(embedded.modalities) if m == "photo"]
    return embedded.embeddings[sketch], embedded.embeddings[photo]


def test_frozen_mode_moves_converted_sketches_towards_photos(paper_run, mini_sbir, tmp_path):
    """Frozen mode on top of the paper-mode model (a backbone that aligns images with captions, as
    CLIP does; a random one has no such structure for M to learn): the centroid gap between
    converted sketches and photos must end smaller than between the original embeddings."""
    result = train("tiny", mini_sbir, tmp_path / "frozen", mode="frozen", init_checkpoint=str(paper_run.last_checkpoint),
                   epochs=50, batch_size=32, lr=0.02, cache_dir=str(tmp_path / "cache"), verbose=False)
    assert result.embeddings_from_cache is False
    model, meta = load_checkpoint(result.last_checkpoint)
    start, _ = load_checkpoint(paper_run.last_checkpoint)
    for name, tensor in start.clip.state_dict().items():       # the backbone did not move
        assert torch.equal(tensor, model.clip.state_dict()[name]), name
    assert not torch.equal(start.modality_embeddings.weight, model.modality_embeddings.weight)
    split = resolve_split(mini_sbir)
    val = build_rows(seen_split(mini_sbir, split, val_fraction=0.3).val)
    sketch, photo = _sketch_photo(embed_rows(model, val)[0])
    with torch.no_grad():
        converted = model.retrieval_embedding(sketch, "sketch", "converted")
        converted_before = start.retrieval_embedding(sketch, "sketch", "converted")
    original_gap = centroid_distance(sketch, photo)
    converted_gap = centroid_distance(converted, photo)
    assert converted_gap < original_gap - 0.1, (original_gap, converted_gap)
    assert converted_gap < centroid_distance(converted_before, photo)
    assert meta["backbone_saved"] == "full" and meta["extra"]["mode"] == "frozen"


def test_frozen_cache_is_reused_and_invalidated(mini_sbir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(mini_sbir, data)
    options = dict(mode="frozen", epochs=1, cache_dir=str(tmp_path / "cache"), verbose=False)
    first = train("tiny", data, tmp_path / "a", **options)
    second = train("tiny", data, tmp_path / "b", **options)
    assert (first.embeddings_from_cache, second.embeddings_from_cache) == (False, True)
    assert second.step_losses("total") == first.step_losses("total")
    other_backbone = train("tiny", data, tmp_path / "c", seed=1, **options)   # different random weights
    assert other_backbone.embeddings_from_cache is False
    seen_photo = sorted((data / "photo" / "cat").iterdir())[0]
    os.utime(seen_photo, ns=(seen_photo.stat().st_atime_ns, seen_photo.stat().st_mtime_ns + 10**9))
    touched = train("tiny", data, tmp_path / "d", **options)                  # a file changed on disk
    assert touched.embeddings_from_cache is False


@pytest.mark.parametrize("mode", ["frozen", "paper"])
def test_resume_after_a_stop_matches_an_uninterrupted_run(mode, mini_sbir, tmp_path):
    options = dict(SMALL, mode=mode, cache_dir=str(tmp_path / "cache"), verbose=False)
    whole = train("tiny", mini_sbir, tmp_path / "whole", **options)
    per_epoch = whole.global_step // whole.config.epochs
    stopped = train("tiny", mini_sbir, tmp_path / "cut", max_steps=per_epoch + per_epoch // 2, **options)
    assert stopped.stopped_early and stopped.epochs_completed == 1           # killed inside epoch 2
    resumed = train("tiny", mini_sbir, tmp_path / "cut", resume=True, **options)
    assert not resumed.stopped_early and resumed.global_step == whole.global_step
    for term in ("total", "clip", "semantic", "discriminator", "reconstruction"):
        assert resumed.step_losses(term) == pytest.approx(whole.step_losses(term), abs=1e-6), term
    maps = [v for _, v in resumed.epoch_values("val_map")]
    assert maps == pytest.approx([v for _, v in whole.epoch_values("val_map")], abs=1e-6)
    a, b = load_file(whole.last_checkpoint), load_file(resumed.last_checkpoint)
    assert set(a) == set(b)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6


def test_two_gloo_processes_match_one_process(mini_sbir, tmp_path):
    """torchrun with 2 processes x 8 rows == 1 process x 16 rows, in both the frozen and the paper path."""
    configs = []
    for mode in ("paper", "frozen"):
        cfg = {**_fast_dict(), **SMALL, "epochs": 2, "mode": mode, "cache_dir": str(tmp_path / "cache")}
        path = tmp_path / f"{mode}.json"
        path.write_text(json.dumps(cfg))
        configs.append(path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(Path(__file__).with_name("ddp_worker.py")), str(mini_sbir), str(tmp_path / "two"), *map(str, configs)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for path in configs:
        single = train(str(path), mini_sbir, tmp_path / "one" / path.stem, device="cpu", verbose=False)
        double = read_history(tmp_path / "two" / path.stem)
        assert len(double["steps"]["total"]) == single.global_step > 0
        for term in ("total", "clip", "semantic", "discriminator", "reconstruction"):
            assert double["steps"][term] == pytest.approx(single.step_losses(term), rel=1e-4, abs=1e-5), (path.stem, term)
        maps = [r["val_map"] for r in double["epochs"]]
        assert maps == pytest.approx([v for _, v in single.epoch_values("val_map")], abs=1e-4)


def _fast_dict() -> dict:
    return asdict(load_train_config("tiny"))


def test_bad_inputs_are_clear_errors(mini_sbir, paper_run, tmp_path):
    for bad, field in [({"batch_size": 0}, "batch_size"), ({"mode": "full"}, "mode"), ({"val_fraction": 1.5}, "val_fraction"),
                       ({"loss_weights": {"clip": 1.0}}, "loss_weights"), ({"epochs": -1}, "epochs"),
                       ({"amp": "fp8"}, "amp"), ({"warmup_fraction": 1.0}, "warmup_fraction"),
                       ({"lr": 0.0}, "lr"), ({"no_such_field": 1}, "no_such_field")]:
        with pytest.raises(ConfigError, match=field):
            load_train_config("tiny", **bad)
    with pytest.raises(ConfigError, match="unknown training config"):
        load_train_config("no-such-config")
    empty = tmp_path / "empty"
    (empty / "sketch").mkdir(parents=True)
    (empty / "photo").mkdir()
    (empty / "split_zs.json").write_text(json.dumps({"seen": [], "unseen": []}))
    with pytest.raises(TrainingDataError):
        train("tiny", empty, tmp_path / "out", verbose=False)
    with pytest.raises(ValueError, match="batch_size"):
        train("tiny", mini_sbir, tmp_path / "big", batch_size=4096, mode="frozen", cache_dir=str(tmp_path / "c"),
              verbose=False)
    with pytest.raises(FileNotFoundError, match="resume"):
        train("tiny", mini_sbir, tmp_path / "never", resume=True, verbose=False)
    options = dict(SMALL, mode="frozen", cache_dir=str(tmp_path / "c"), verbose=False)
    train("tiny", mini_sbir, tmp_path / "stop", max_steps=2, **options)
    with pytest.raises(ConfigError, match="lr"):
        train("tiny", mini_sbir, tmp_path / "stop", resume=True, lr=0.1, **options)
    split = resolve_split(mini_sbir)
    swapped = tmp_path / "swapped.json"     # the paper run's training classes are unseen here
    swapped.write_text(json.dumps({"seen": list(split.unseen), "unseen": list(split.seen)}))
    with pytest.raises(UnseenClassError):
        train("tiny", mini_sbir, tmp_path / "leak", split=str(swapped), init_checkpoint=str(paper_run.last_checkpoint),
              **options)


def test_cli_help_and_run(mini_sbir, tmp_path, capsys):
    text = build_parser("train").format_help()
    for option in ("--config", "--data", "--out", "--resume", "--device", "--epochs", "--max-steps", "--split",
                   "--mode", "--batch-size", "--lr", "--backbone-lr", "--seed", "--cache-dir", "--init-checkpoint"):
        assert option in text, option
    status = main(["train", "--config", "fast", "--data", "mini_sbir", "--out", str(tmp_path / "cli"),
                   "--mode", "frozen", "--epochs", "2", "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert status == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epochs_completed"] == 2 and Path(summary["best_checkpoint"]).is_file()
