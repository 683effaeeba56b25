"""The study's training runs: notebook 03's run at the mode's sizes, the checkpoint later notebooks
recreate with one call, loss-curve helpers, and the frozen-mode loss-term ablation of notebook 05.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .setup import StudySetup


# ----------------------------------------------------------------------------- training
def study_train_config(setup: StudySetup, **overrides):
    """The TrainConfig of this mode: the mode's shipped config, its sizes, the setup's split and seed."""
    from ..train.training import load_train_config

    sizes = setup.train
    fields = {**sizes["overrides"], "split": setup.split.name, "seed": setup.seed, **overrides}
    return load_train_config(sizes["config"], **fields)


def train_study_model(setup: StudySetup, out_dir: str | os.PathLike | None = None, *, verbose: bool = True,
                      **overrides):
    """Train with :func:`study_train_config` into ``out_dir`` (default ``setup.train_dir``).

    The folder belongs to the notebook: re-running the cell replaces the run it holds (``overwrite``);
    a run another process is still writing there is refused (``RunFolderError``).
    Returns the ``mars_lite.train.training.TrainResult`` (history for the loss curves, checkpoints).
    """
    from ..train.training import train

    import torch

    from ..errors import MarsLiteError

    cfg = study_train_config(setup, **overrides)
    try:
        return train(cfg, setup.data, out_dir or setup.train_dir, device=setup.device, progress=False,
                     verbose=verbose, overwrite=True)
    except torch.OutOfMemoryError as error:
        raise MarsLiteError(
            f"out of memory training {cfg.model} in {cfg.mode} mode at batch size {cfg.batch_size} on {setup.device}: "
            "lower the notebook parameter BATCH_SIZE (or TRAIN_MODE='frozen', which trains on cached embeddings)"
        ) from error


def ensure_checkpoint(setup: StudySetup) -> Path:
    """Notebook 03's checkpoint (best, else last), recreated by training when it is missing or was
    trained with another config (e.g. other sizes, or the shipped config changed since)."""
    from ..train.training import ensure_trained

    return ensure_trained(study_train_config(setup), setup.data, setup.train_dir, device=setup.device,
                          progress=False, verbose=False)


def loss_terms(result) -> dict[str, list[float]]:
    """term -> per-step values of every loss term that was computed (for ``figures.loss_curves``)."""
    from ..method.losses import TERMS

    steps = result.history["steps"]
    return {t: list(steps[t]) for t in (*TERMS, "total")
            if t in steps and np.isfinite(np.asarray(steps[t], dtype=float)).all()}


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over ``window`` steps (shorter at the start): smooths noisy per-step losses."""
    x = np.asarray(values, dtype=float)
    sums = np.cumsum(np.insert(x, 0, 0.0))
    idx = np.arange(1, len(x) + 1)
    start = np.maximum(idx - window, 0)
    return list((sums[idx] - sums[start]) / (idx - start))


# ----------------------------------------------------------------------------- ablation
def export_backbone(checkpoint: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Write the CLIP weights of a checkpoint as an open_clip weight file (safetensors).

    ``create_model(name, pretrained=path)`` then rebuilds exactly that backbone, so frozen-mode
    runs (which embed once and train only M and the classifier) can start from a trained backbone.
    """
    from safetensors.torch import save_file

    from ..method.checkpoint import load_checkpoint
    from ..files import atomic_write

    model, _ = load_checkpoint(checkpoint)
    state = {k: v.detach().cpu().contiguous() for k, v in model.clip.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(state, tmp))


def ablation_weights() -> dict[str, dict[str, float]]:
    """Variant name -> loss weights: the paper's weights, then each active term dropped in turn."""
    from ..method.losses import PAPER_WEIGHTS, TERMS

    paper = dict(zip(TERMS, PAPER_WEIGHTS))
    variants = {"all terms (paper weights)": paper}
    for term in TERMS:
        if paper[term] > 0:
            variants[f"without {term}"] = {**paper, term: 0.0}
    return variants


def run_ablation(setup: StudySetup, checkpoint: str | os.PathLike, *, epochs: int | None = None,
                 convention: str = "reference") -> list[dict]:
    """Frozen-mode runs on the checkpoint's backbone, one per :func:`ablation_weights` variant.

    Each run starts M and the classifier afresh (same seed), trains ``epochs`` epochs on the
    seen classes and is evaluated zero-shot on the unseen ones. Returns one row per variant:
    variant, seen-class validation mAP (best epoch) and unseen mAP@all / P@100 of every kind.
    """
    from dataclasses import asdict

    from ..eval.evaluation import evaluate

    backbone = export_backbone(checkpoint, setup.artifacts / "ablation" / "backbone.safetensors")
    base = {**asdict(study_train_config(setup)), "mode": "frozen", "pretrained": str(backbone),
            "epochs": epochs or setup.train["ablation_epochs"], "max_steps": None,
            "cache_dir": str(setup.cache_dir)}
    rows = []
    for i, (name, weights) in enumerate(ablation_weights().items()):
        result = train_study_model(setup, setup.artifacts / "ablation" / f"variant_{i}", verbose=False,
                                   **{**base, "loss_weights": weights})
        ckpt = result.best_checkpoint or result.last_checkpoint
        report = evaluate(ckpt, setup.data, setup.split, convention=convention, cache_dir=setup.cache_dir,
                          fast_mode=setup.fast)
        row = {"variant": name, "seen val mAP": max(v for _, v in result.epoch_values("val_map"))}
        for kind, values in report.metrics.items():
            row[f"{kind} mAP@all"], row[f"{kind} P@100"] = values["map_all"], values["p_100"]
        rows.append(row)
    return rows


def ends_lower(values: Sequence[float], fraction: float = 0.2) -> bool:
    """True when the mean of the last ``fraction`` of ``values`` is below the mean of the first."""
    k = max(1, int(len(values) * fraction))
    return float(np.mean(values[-k:])) < float(np.mean(values[:k]))


def notebook_config(setup: StudySetup, checkpoint: str | os.PathLike | None = None):
    """The ``DemoConfig`` (``mars_lite.ui.demo``) of notebook 06 for a study setup.

    The query model is ``checkpoint``, else notebook 03's (recreated by training when missing).
    Fast mode searches every mini_sbir photo, seen and unseen classes alike; full mode the
    unseen-class photos of the setup's benchmark split.
    """
    from ..ui.demo import DemoConfig

    checkpoint = str(checkpoint if checkpoint is not None else ensure_checkpoint(setup))
    common = dict(model=setup.model_name, pretrained=setup.pretrained, checkpoint=checkpoint, seed=setup.seed,
                  cache_dir=str(setup.cache_dir))
    if setup.fast:
        return DemoConfig(**common)
    return DemoConfig(**common, gallery=str(setup.data), benchmark=setup.split.benchmark, split=setup.split.name)
