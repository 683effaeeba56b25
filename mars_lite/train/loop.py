"""The epoch loop shared by every training mode: schedule, history, validation, checkpoints, resume.

An *engine* (:class:`mars_lite.train.frozen.FrozenEngine` or :class:`mars_lite.train.full.FullEngine`)
knows how to turn a rank's (S, B_local) row order into batches and how to take one optimizer step;
this module drives it: 5% linear warm-up then a constant learning rate (docs/method.md), per-step
losses into the history, validation before training and after every ``val_every`` epochs, the
``last`` and ``best`` checkpoints and the resumable training state after every epoch (and when
``max_steps`` stops a run mid-epoch). Only the main process writes files.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

from ..method.checkpoint import save_checkpoint, trainable_state
from ..files import atomic_write
from ..settings import progress_enabled
from .rows import epoch_batches
from .distributed import DistInfo, barrier
from ..method.losses import LOSS_KEYS
from .state import (
    BEST_CHECKPOINT,
    HISTORY_FILE,
    LAST_CHECKPOINT,
    capture_rng,
    jsonable,
    restore_rng,
    save_state,
)

STEP_COLUMNS = ("step", "epoch", "lr", *LOSS_KEYS)
BACKBONE_SAVED = {"frozen": "none", "layernorm": "layernorm", "paper": "full"}


class History:
    """Per-step losses (columns ``STEP_COLUMNS``) and per-epoch records of one run."""

    def __init__(self):
        self.step_rows: list[torch.Tensor] = []   # (S, len(STEP_COLUMNS)) float64 chunks
        self.epochs: list[dict] = []
        self._encoded: list[list[str]] = []       # JSON text of each chunk's columns (written often)

    def add_steps(self, rows: torch.Tensor) -> None:
        if len(rows):
            self.step_rows.append(rows.double().cpu())

    def steps(self) -> dict[str, list[float]]:
        """Columns ``step, epoch, lr, clip, semantic, discriminator, reconstruction, orthogonal, total``."""
        table = torch.cat(self.step_rows) if self.step_rows else torch.empty(0, len(STEP_COLUMNS))
        columns = {name: table[:, i].tolist() for i, name in enumerate(STEP_COLUMNS)}
        columns["step"] = [int(v) for v in columns["step"]]
        columns["epoch"] = [int(v) for v in columns["epoch"]]
        return columns

    def epoch_mean(self, epoch: int) -> dict[str, float]:
        """Mean of each loss over the steps of ``epoch`` (``train_<term>``)."""
        table = torch.cat(self.step_rows) if self.step_rows else torch.empty(0, len(STEP_COLUMNS))
        mine = table[table[:, 1] == epoch]
        return {f"train_{k}": float(mine[:, 3 + i].mean()) for i, k in enumerate(LOSS_KEYS)} if len(mine) else {}

    def to_dict(self) -> dict:
        return {"epochs": [dict(r) for r in self.epochs], "steps": self.steps()}

    def state(self) -> dict:
        table = torch.cat(self.step_rows) if self.step_rows else torch.empty(0, len(STEP_COLUMNS), dtype=torch.float64)
        return {"steps": table, "epochs": json.dumps(jsonable(self.epochs))}

    @classmethod
    def from_state(cls, state: dict) -> "History":
        history = cls()
        history.add_steps(state["steps"])
        history.epochs = [{k: (float("nan") if v is None else v) for k, v in r.items()}
                          for r in json.loads(state["epochs"])]
        return history

    def write(self, out_dir: Path) -> Path:
        """``history.json``: {"epochs": [...], "steps": {column: [...]}} (NaN written as null)."""
        while len(self._encoded) < len(self.step_rows):  # encode each chunk once
            chunk = self.step_rows[len(self._encoded)]
            cols = [chunk[:, i].tolist() for i in range(chunk.shape[1])]
            cols[0], cols[1] = [int(v) for v in cols[0]], [int(v) for v in cols[1]]
            self._encoded.append([json.dumps(jsonable(c))[1:-1] for c in cols])
        parts = [f'"{name}": [{", ".join(p[i] for p in self._encoded if p[i])}]' for i, name in enumerate(STEP_COLUMNS)]
        text = '{"epochs": ' + json.dumps(jsonable(self.epochs)) + ', "steps": {' + ", ".join(parts) + "}}"
        return atomic_write(out_dir / HISTORY_FILE, lambda tmp: Path(tmp).write_text(text))


class TrainingRun:
    """State and driver of one run (see the module docstring).

    Args:
        model, engine: the MarsModel and the mode's engine.
        sampler: this rank's epoch-order sampler; num_rows: training rows.
        cfg: the TrainConfig; dist: process information; out_dir: where files go (None: nowhere).
        validator: ``model -> dict`` of validation values (``val_map`` ...), or None.
        checkpoint_meta: classes_seen and extra facts stored in every checkpoint.
        log: prints a line (main process only).
    """

    def __init__(self, *, model, engine, sampler, num_rows: int, cfg, dist: DistInfo, out_dir: Path,
                 validator: Callable[[object], dict] | None, checkpoint_meta: dict, log: Callable[[str], None],
                 progress: bool | None = None):
        self.model, self.engine, self.sampler, self.num_rows = model, engine, sampler, num_rows
        self.cfg, self.dist, self.validator = cfg, dist, validator
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.meta, self.log, self.progress = checkpoint_meta, log, progress_enabled(progress) and dist.is_main
        self.steps_per_epoch = num_rows // cfg.batch_size
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.warmup_steps = math.ceil(cfg.warmup_fraction * self.total_steps)
        self.epoch, self.position, self.global_step = 0, 0, 0   # next epoch index, its steps done
        self.best_epoch, self.best_metric = None, None
        self.history = History()
        self.stopped_early = False

    # ---------------------------------------------------------------- schedule
    def lr_scale(self, step: int) -> float:
        """Multiplier of the base learning rates at 0-based ``step``: linear warm-up, then 1."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return 1.0

    # ----------------------------------------------------------------- resume
    def state(self) -> dict:
        return {"config": json.dumps(asdict(self.cfg), sort_keys=True), "epoch": self.epoch,
                "position": self.position, "global_step": self.global_step, "warmup_steps": self.warmup_steps,
                "best_epoch": self.best_epoch, "best_metric": self.best_metric, "engine": self.engine.state_dict(),
                "model": trainable_state(self.model, BACKBONE_SAVED[self.cfg.mode]), "rng": capture_rng(),
                "history": self.history.state()}

    def restore(self, state: dict) -> None:
        """Continue from a saved state (the model weights are loaded before the engine is built)."""
        self.epoch, self.position, self.global_step = state["epoch"], state["position"], state["global_step"]
        self.warmup_steps = state["warmup_steps"]
        self.best_epoch, self.best_metric = state["best_epoch"], state["best_metric"]
        self.engine.load_state_dict(state["engine"])
        self.history = History.from_state(state["history"])
        restore_rng(state["rng"])

    # ------------------------------------------------------------- validation
    def _validate(self) -> dict:
        if self.validator is None or not self.dist.is_main:
            return {}
        self.engine.sync_model()
        return self.validator(self.model)

    def _selection_value(self, record: dict) -> float | None:
        """Larger is better: the selection metric (val mAP, or minus the validation loss); without
        validation values, minus the epoch's training loss."""
        chosen = self.cfg.selection_metric
        for key in (chosen, "val_total", "train_total"):
            value = record.get(key)
            if value is not None and math.isfinite(value):
                return value if key == "val_map" else -value
        return None

    # ------------------------------------------------------------- checkpoints
    def _write(self, record: dict | None) -> None:
        """last (+ best when improved) checkpoints, history.json and the state; main process only.
        Without an ``out_dir`` nothing is written (the best epoch is still tracked)."""
        if self.out_dir is None:
            value = self._selection_value(record) if record else None
            if value is not None and (self.best_metric is None or value > self.best_metric):
                self.best_metric, self.best_epoch = value, self.epoch
            return
        if self.dist.is_main:
            self.engine.sync_model()
            extra = {**self.meta.get("extra", {}), "epoch": self.epoch, "position": self.position,
                     "global_step": self.global_step, "record": jsonable(record or {})}
            save = dict(classes_seen=self.meta["classes_seen"], metric_convention=self.cfg.metric_convention,
                        backbone=BACKBONE_SAVED[self.cfg.mode])
            save_checkpoint(self.model, self.out_dir / LAST_CHECKPOINT, extra=extra, **save)
            value = self._selection_value(record) if record else None
            if value is not None and (self.best_metric is None or value > self.best_metric):
                self.best_metric, self.best_epoch = value, self.epoch
                save_checkpoint(self.model, self.out_dir / BEST_CHECKPOINT, extra={**extra, "best": True}, **save)
            self.history.write(self.out_dir)
            save_state(self.out_dir, self.state())
        barrier(self.dist)

    # ------------------------------------------------------------------- loop
    def run(self) -> None:
        if self.steps_per_epoch < 1:
            raise ValueError(f"batch_size {self.cfg.batch_size} is larger than the {self.num_rows} training "
                             "rows: lower batch_size or use more data")
        if self.global_step == 0 and not self.history.epochs:
            record = {"epoch": 0, "step": 0, **self._validate()}
            self.history.epochs.append(record)
            self.log(_format_record(record))
        while self.epoch < self.cfg.epochs:
            if self._run_epoch():
                return
        self.stopped_early = False

    def _run_epoch(self) -> bool:
        """One epoch from ``self.position``; True when ``max_steps`` stopped the run."""
        started = time.perf_counter()
        epoch_no = self.epoch + 1
        order = epoch_batches(self.sampler, self.epoch, self.num_rows, self.cfg.batch_size)
        batches = self.engine.batches(order, start=self.position)
        rows = []
        bar = None
        if self.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=self.steps_per_epoch, initial=self.position, desc=f"epoch {epoch_no}/{self.cfg.epochs}",
                       leave=False, dynamic_ncols=True)
        max_steps = self.cfg.max_steps
        with self.engine.running():
            for batch in batches:
                scale = self.lr_scale(self.global_step)
                losses = self.engine.step(batch, scale)
                self.global_step += 1
                self.position += 1
                rows.append((self.global_step, epoch_no, self.cfg.lr * scale, losses))
                if bar is not None:
                    bar.update(1)
                    if self.position % 10 == 0:
                        bar.set_postfix(loss=f"{float(self.engine.loss_table([losses])[0, -1]):.4f}")
                if max_steps is not None and self.global_step >= max_steps and self.position < self.steps_per_epoch:
                    break
        if bar is not None:
            bar.close()
        self.history.add_steps(_step_table(rows, self.engine))
        if self.position < self.steps_per_epoch:  # stopped by max_steps inside the epoch
            self.stopped_early = True
            self._write(None)
            self.log(f"stopped at step {self.global_step} (max_steps) in epoch {epoch_no}; resume to continue")
            return True
        self.epoch, self.position = self.epoch + 1, 0
        record = {"epoch": self.epoch, "step": self.global_step, **self.history.epoch_mean(self.epoch)}
        if self.epoch % self.cfg.val_every == 0 or self.epoch == self.cfg.epochs:
            record.update(self._validate())
        record["seconds"] = time.perf_counter() - started
        self.history.epochs.append(record)
        self._write(record)
        self.log(_format_record(record))
        if max_steps is not None and self.global_step >= max_steps and self.epoch < self.cfg.epochs:
            self.stopped_early = True
            self.log(f"stopped at step {self.global_step} (max_steps) after epoch {self.epoch}; resume to continue")
            return True
        return False


def _step_table(rows: list, engine) -> torch.Tensor:
    """(S, len(STEP_COLUMNS)) float64 from (step, epoch, lr, loss report) tuples."""
    if not rows:
        return torch.empty(0, len(STEP_COLUMNS), dtype=torch.float64)
    losses = engine.loss_table([r[3] for r in rows]).double().cpu()
    meta = torch.tensor([[r[0], r[1], r[2]] for r in rows], dtype=torch.float64)
    return torch.cat([meta, losses], 1)


def _format_record(record: dict) -> str:
    keys = [k for k in ("train_total", "val_total", "val_map") if k in record]
    values = ", ".join(f"{k} {record[k]:.4f}" for k in keys if record[k] is not None)
    return f"epoch {record['epoch']} (step {record['step']}): {values or 'no validation data'}"
