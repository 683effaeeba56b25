"""Process-wide settings read from the environment: where the data is and which mode runs.

``MARS_LITE_DATA``  folder holding downloaded benchmarks (and, optionally, its own ``mini_sbir/``).
                    Unset: the data built into the package (``BUILTIN_DATA_DIR``).
``MARS_LITE_FAST``  ``1`` selects fast mode (CPU-sized model, mini_sbir, few steps) for notebooks.
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
# mini_sbir and the Quick, Draw! bitmaps, shipped inside the package (see its README.md)
BUILTIN_DATA_DIR = PACKAGE_DIR / "data" / "builtin"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def fast_mode() -> bool:
    """True when ``MARS_LITE_FAST`` asks for fast mode (CPU-sized runs)."""
    return _truthy(os.environ.get("MARS_LITE_FAST"))


def data_root(required: bool = True) -> Path | None:
    """The data folder: ``$MARS_LITE_DATA`` when set, else the package's built-in data.

    Raises ``FileNotFoundError`` naming the variable when it points at no folder (``required``);
    returns ``None`` then otherwise.
    """
    env = os.environ.get("MARS_LITE_DATA")
    if not env:
        return BUILTIN_DATA_DIR
    path = Path(env).expanduser()
    if path.is_dir():
        return path.resolve()
    if required:
        raise FileNotFoundError(f"MARS_LITE_DATA={env!r} is not a folder: point it at the folder that holds "
                                "your benchmarks, or unset it to use the data built into the package")
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


def embeddings_cache_dir() -> Path:
    """The default embedding cache: ``<artifacts>/embeddings`` (shared by every workflow)."""
    return artifacts_dir() / "embeddings"


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
