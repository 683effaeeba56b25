"""The resumable part of a training run: optimizer, schedule position, RNG states and history.

Written atomically next to ``last.safetensors`` as ``last_state.pt`` (``torch.save`` of plain
tensors, numbers, strings, lists and dicts only, so it loads with ``torch.load(weights_only=True)``
-- no pickled code). Together with the ``last`` checkpoint it lets a killed run continue to the
same result as an uninterrupted one: the sampler's epoch order is a function of (seed, epoch), so
the state only needs the epoch and how many of its batches were done.
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import MarsLiteError
from ..files import atomic_write

STATE_FORMAT = "mars_lite.train_state/1"
STATE_FILE = "last_state.pt"
LAST_CHECKPOINT = "last.safetensors"
BEST_CHECKPOINT = "best.safetensors"
HISTORY_FILE = "history.json"


class ResumeError(MarsLiteError, FileNotFoundError):
    """``--resume`` found no training state to continue from."""


def capture_rng() -> dict:
    """RNG states of torch (CPU and CUDA), numpy and python's ``random``, as safe-to-load values."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": list(random.getstate()[1]) + [random.getstate()[0]],
        "python_gauss": random.getstate()[2],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["key"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    python = state["python"]
    random.setstate((python[-1], tuple(python[:-1]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(out_dir: str | Path, state: dict) -> Path:
    """Write ``<out_dir>/last_state.pt`` atomically; ``state`` holds only safe types."""
    payload = {"format": STATE_FORMAT, **state}
    return atomic_write(Path(out_dir) / STATE_FILE, lambda tmp: torch.save(payload, tmp))


def load_state(out_dir: str | Path) -> dict:
    """Read ``<out_dir>/last_state.pt`` with ``weights_only=True``; clear errors when absent or foreign."""
    path = Path(out_dir) / STATE_FILE
    if not path.is_file():
        found = [n for n in (LAST_CHECKPOINT, BEST_CHECKPOINT, HISTORY_FILE) if (Path(out_dir) / n).is_file()]
        if found:  # the run died between its first checkpoint and its first state (e.g. a failed write)
            weights = [n for n in found if n != HISTORY_FILE]
            reuse = f", or start from its weights: a new --out with --init-checkpoint {Path(out_dir) / weights[0]}"
            raise ResumeError(f"cannot resume: {out_dir} holds {', '.join(found)} but no {STATE_FILE} (the run "
                              "stopped before it saved its training state, so it cannot continue); start it again "
                              f"with --overwrite (overwrite=True){reuse if weights else ''}")
        raise ResumeError(f"cannot resume: {path} does not exist (no earlier run wrote to {out_dir}); "
                          "start without --resume")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except (RuntimeError, OSError, EOFError) as err:  # a damaged or non-torch file
        raise ValueError(f"cannot resume: {path} is not a readable training state ({err})") from err
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"cannot resume: {path} is not a {STATE_FORMAT} file")
    return state


def jsonable(value: Any) -> Any:
    """NaN/inf -> None recursively, so history files are strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def write_history(out_dir: str | Path, history: dict) -> Path:
    """``<out_dir>/history.json`` (atomic, strict JSON) for plotting loss curves."""
    text = json.dumps(jsonable(history))
    return atomic_write(Path(out_dir) / HISTORY_FILE, lambda tmp: Path(tmp).write_text(text))


def read_history(out_dir: str | Path) -> dict:
    """The history a run wrote (``history.json``); JSON ``null`` marks values not computed."""
    return json.loads((Path(out_dir) / HISTORY_FILE).read_text())
