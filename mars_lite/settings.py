"""Process-wide settings read from the environment: where the data is and which mode runs.

``MARS_LITE_DATA``  folder holding ``mini_sbir/`` and ``quickdraw_bitmap/`` (and downloaded
                    benchmarks). Defaults to ``../shared/data`` beside the repository when that
                    folder exists.
``MARS_LITE_FAST``  ``1`` selects fast mode (tiny model, mini_sbir, few steps) for notebooks.
``MARS_LITE_HOME``  where artifacts (checkpoints, embedding caches, indexes) go; defaults to
                    ``<repo>/artifacts`` for a source checkout, else ``~/.cache/mars_lite``.
"""
from __future__ import annotations

import os
import random
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def fast_mode() -> bool:
    """True when ``MARS_LITE_FAST`` asks for fast mode (CPU-sized runs)."""
    return _truthy(os.environ.get("MARS_LITE_FAST"))


def data_root(required: bool = True) -> Path | None:
    """The data folder: ``$MARS_LITE_DATA``, else ``../shared/data`` beside the repository.

    Raises ``FileNotFoundError`` with instructions when ``required`` and nothing is found.
    """
    env = os.environ.get("MARS_LITE_DATA")
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"MARS_LITE_DATA={env!r} is not a folder. Point it at the folder that holds "
                "mini_sbir/ (e.g. export MARS_LITE_DATA=../shared/data) or unset it."
            )
        return path.resolve()
    for candidate in (REPO_DIR.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate.resolve()
    if required:
        raise FileNotFoundError(
            "No data folder found: set MARS_LITE_DATA to the folder that holds mini_sbir/ "
            "(the repository's sibling ../shared/data is used when it exists), or download a "
            "benchmark with 'mars-lite data download NAME --root DIR'."
        )
    return None


def artifacts_dir() -> Path:
    """Folder for checkpoints, embedding caches and indexes (created on demand)."""
    env = os.environ.get("MARS_LITE_HOME")
    if env:
        path = Path(env).expanduser()
    elif (REPO_DIR / "pyproject.toml").is_file():
        path = REPO_DIR / "artifacts"
    else:
        path = Path.home() / ".cache" / "mars_lite"
    path.mkdir(parents=True, exist_ok=True)
    return path


def progress_enabled(explicit: bool | None = None) -> bool:
    """Whether to draw tqdm bars: ``explicit`` when given, else off under ``CI`` or
    ``TQDM_DISABLE`` and when stderr is not a terminal (logs and notebooks stay readable)."""
    if explicit is not None:
        return explicit
    if os.environ.get("CI") or os.environ.get("TQDM_DISABLE"):
        return False
    return sys.stderr.isatty()


def seed_everything(seed: int) -> int:
    """Seed Python, numpy and torch (CPU and CUDA); returns ``seed`` so a cell can print it."""
    import numpy as np
    import torch  # imported here: settings stays importable without torch (data layer)

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return seed
