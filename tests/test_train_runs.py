"""A training run loses nothing and is never silently wrong: run folders are not clobbered, one
writer at a time (run.lock), resume explains a run without state, in-place training changes the
model, and a bad flag is blamed on the flag."""
from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from mars_lite.cli import main
from mars_lite.config import ConfigError
from mars_lite.errors import MarsLiteError, RunFolderError
from mars_lite.method.model import create_model
from mars_lite.train import loop
from mars_lite.train.runfolder import LOCK_FILE, RunOptionsError, claim_run_folder
from mars_lite.train.state import STATE_FILE, ResumeError
from mars_lite.train.training import load_train_config, train, train_on_embeddings

QUICK = {"mode": "frozen", "max_images_per_class": 4, "batch_size": 16, "epochs": 1, "val_fraction": 0.1,
         "verbose": False}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: training tests on one thread


def _snapshot(folder) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_cli_refuses_a_finished_run_and_leaves_it_unchanged(mini_sbir, tmp_path, capsys):
    out, cache = tmp_path / "run1", str(tmp_path / "cache")
    train("tiny", mini_sbir, out, cache_dir=cache, **QUICK)
    before = _snapshot(out)
    assert {"last.safetensors", "history.json", STATE_FILE} <= set(before) and LOCK_FILE not in before
    capsys.readouterr()
    status = main(["train", "--config", "tiny", "--data", "mini_sbir", "--out", str(out)])
    message = capsys.readouterr().err
    assert status != 0
    assert str(out) in message and "--resume" in message and "--overwrite" in message, message
    assert _snapshot(out) == before, "a refused run changed the finished run's files"
    # library: the same refusal, a MarsLiteError and a FileExistsError
    with pytest.raises(RunFolderError, match="--overwrite") as info:
        train("tiny", mini_sbir, out, cache_dir=cache, **QUICK)
    assert isinstance(info.value, FileExistsError) and isinstance(info.value, MarsLiteError)
    assert _snapshot(out) == before
    # --resume and --overwrite contradict each other
    with pytest.raises(SystemExit):
        main(["train", "--config", "tiny", "--data", "mini_sbir", "--out", str(out), "--resume", "--overwrite"])
    with pytest.raises(RunOptionsError):
        train("tiny", mini_sbir, out, resume=True, overwrite=True, **QUICK)
    # --overwrite replaces the run: a 2-epoch run leaves 2 epochs of history, no stale files
    status = main(["train", "--config", "tiny", "--data", "mini_sbir", "--out", str(out), "--overwrite", "--quiet",
                   "--mode", "frozen", "--epochs", "2", "--batch-size", "16", "--cache-dir", cache])
    assert status == 0
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history["epochs"]] == [0, 1, 2]
    assert (out / "last.safetensors").read_bytes() != before["last.safetensors"]
    assert not (out / LOCK_FILE).exists()


def test_lock_refuses_a_second_writer_and_names_a_stale_one(tmp_path):
    out = tmp_path / "run"
    with claim_run_folder(out) as held:            # a run writing now
        record = json.loads((out / LOCK_FILE).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        for flags in ({}, {"resume": True}, {"overwrite": True}):
            with pytest.raises(RunFolderError, match="in use by another run") as info:
                claim_run_folder(out, **flags)
            assert str(os.getpid()) in str(info.value)
        assert (out / LOCK_FILE).is_file()
    assert not (out / LOCK_FILE).exists() and held.record == record
    # a lock left by a process that died: named as stale; --resume / --overwrite take it over
    stale = {"pid": _dead_pid(), "host": socket.gethostname(), "started": "2020-01-01T00:00:00"}
    (out / LOCK_FILE).write_text(json.dumps(stale))
    with pytest.raises(RunFolderError, match="stale lock") as info:
        claim_run_folder(out)
    assert str(stale["pid"]) in str(info.value) and "--overwrite" in str(info.value) and "--resume" in str(info.value)
    with claim_run_folder(out, overwrite=True):
        assert json.loads((out / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (out / LOCK_FILE).exists()
    # a lock from another host cannot be checked: refused, even with a flag
    (out / LOCK_FILE).write_text(json.dumps({**stale, "host": "elsewhere.invalid"}))
    with pytest.raises(RunFolderError, match="in use"):
        claim_run_folder(out, overwrite=True)


def test_a_run_into_a_locked_folder_is_refused_and_the_lock_goes_on_errors(mini_sbir, tmp_path):
    out, cache = tmp_path / "run", str(tmp_path / "cache")
    with claim_run_folder(out):
        with pytest.raises(RunFolderError, match="in use"):
            train("tiny", mini_sbir, out, cache_dir=cache, **QUICK)
    with pytest.raises(ValueError, match="batch_size"):       # fails inside the run
        train("tiny", mini_sbir, out, cache_dir=cache, **{**QUICK, "batch_size": 4096})
    assert not (out / LOCK_FILE).exists(), "the lock outlived a failed run"


def test_resume_after_a_failed_first_state_write_says_what_happened(mini_sbir, tmp_path, monkeypatch):
    out, cache = tmp_path / "run", str(tmp_path / "cache")
    real = loop.save_state
    calls = []

    def failing_once(out_dir, state):
        calls.append(out_dir)
        if len(calls) == 1:
            raise OSError("disk full (simulated)")
        return real(out_dir, state)

    monkeypatch.setattr(loop, "save_state", failing_once)
    with pytest.raises(OSError, match="simulated"):
        train("tiny", mini_sbir, out, cache_dir=cache, **QUICK)
    assert (out / "last.safetensors").is_file() and not (out / STATE_FILE).exists()
    assert not (out / LOCK_FILE).exists()
    with pytest.raises(ResumeError, match="holds last.safetensors") as info:
        train("tiny", mini_sbir, out, resume=True, cache_dir=cache, **QUICK)
    assert "no earlier run" not in str(info.value) and "--overwrite" in str(info.value)
    with pytest.raises(RunFolderError):
        train("tiny", mini_sbir, out, cache_dir=cache, **QUICK)
    result = train("tiny", mini_sbir, out, overwrite=True, cache_dir=cache, **QUICK)
    assert (out / STATE_FILE).is_file() and result.epochs_completed == 1


def _embedding_rows(dim: int, classes: int = 4, per_class: int = 8):
    g = torch.Generator().manual_seed(0)
    n = 2 * classes * per_class
    images = F.normalize(torch.randn(n, dim, generator=g), dim=-1)
    captions = F.normalize(torch.randn(2 * classes, dim, generator=g), dim=-1)
    image_ids = torch.arange(n) % 2                      # sketch (1) / photo (0) alternating
    label_ids = torch.arange(n) // 2 % classes
    caption_ids = torch.where(image_ids == 1, 2, 3)
    caption_index = label_ids * 2 + (image_ids == 0).long()
    return images, captions, caption_index, image_ids, caption_ids, [f"c{int(c)}" for c in label_ids]


def test_train_on_embeddings_trains_the_model_in_place(tmp_path):
    torch.manual_seed(0)
    model, _ = create_model("tiny")
    twin = copy.deepcopy(model)
    rows = _embedding_rows(model.modality_embeddings.weight.shape[1])
    before = model.modality_embeddings.weight.detach().clone()
    options = dict(epochs=3, batch_size=16, lr=0.05, seed=0)
    result = train_on_embeddings(model, *rows, **options)          # no out_dir: nothing written
    after = model.modality_embeddings.weight.detach()
    assert not torch.allclose(after, before), "in-place training left the modality vectors unchanged"
    assert result.global_step == 3 * (len(rows[-1]) // 16)
    # the same run with an out_dir: the model holds exactly the last checkpoint's weights
    written = train_on_embeddings(twin, *rows, out_dir=tmp_path / "emb", **options)
    last = load_file(written.last_checkpoint)
    vectors = [v for k, v in last.items() if k.endswith("modality_embeddings.weight")]
    assert len(vectors) == 1 and torch.equal(vectors[0], after)
    assert torch.equal(twin.modality_embeddings.weight.detach(), after)
    assert torch.equal(twin.discriminator.weight.detach(), model.discriminator.weight.detach())
    with pytest.raises(RunFolderError):                             # the folder now holds a run
        train_on_embeddings(copy.deepcopy(twin), *rows, out_dir=tmp_path / "emb", **options)


@pytest.mark.parametrize("argv, expected", [
    (["--batch-size", "0"], "--batch-size 0: must be >= 1"),
    (["--epochs", "0"], "--epochs 0: must be >= 1"),
    (["--lr", "0"], "--lr 0.0: must be > 0"),
    (["--val-fraction", "1.5"], "--val-fraction 1.5: must be in [0, 1)"),
    (["--max-steps", "-3"], "--max-steps -3: must be >= 1"),
])
def test_a_bad_flag_is_blamed_on_the_flag(tmp_path, capsys, argv, expected):
    status = main(["train", "--config", "fast", "--data", "mini_sbir", "--out", str(tmp_path / "x"), *argv])
    message = capsys.readouterr().err
    assert status == 2 and expected in message, message
    assert "fast.json" not in message
    assert not (tmp_path / "x").exists()


def test_library_overrides_and_files_are_blamed_correctly(tmp_path):
    with pytest.raises(ConfigError, match=r"batch_size=0: must be >= 1") as info:
        load_train_config("fast", batch_size=0)
    assert "fast.json" not in str(info.value)
    with pytest.raises(ConfigError, match=r"epochs='3': should be of type int"):
        load_train_config("fast", epochs="3")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": "tiny", "batch_size": 0}))
    with pytest.raises(ConfigError, match="bad.json: 'batch_size' must be >= 1, got 0"):
        load_train_config(str(bad))
    assert load_train_config(str(bad), batch_size=8).batch_size == 8   # an override may fix the file's value
