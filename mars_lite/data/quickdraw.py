"""Quick, Draw! ``numpy_bitmap`` files as a sketch source, rendered like the other sketches.

Google publishes one file per category, ``numpy_bitmap/<class>.npy`` (browsers save it as
``full_numpy_bitmap_<class>.npy``): a ``uint8`` array of shape ``(N, 784)``, each row a 28x28
drawing flattened row-major with **white ink on black** (0 = background, 255 = ink). The
TU-Berlin, Sketchy and QuickDraw-Extended sketches are the opposite (dark strokes on white
paper) and much larger, so ``render_bitmap`` inverts the polarity, adds a paper margin and
upscales with a smooth (bicubic) filter, then steepens the grey ramp a little so the strokes look
drawn rather than blurred. Rows that are already dark-on-white (bright border) are not inverted.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .scanning import LayoutError, ON_ERROR_CHOICES, UnreadableImagesError, class_key
from .bitmaps import BITMAP_SIDE, _open_bitmaps, load_bitmap_row, render_bitmap  # noqa: F401
from .items import SKETCH, ImageDataset, ImageItem

_FILE_PREFIX = "full_numpy_bitmap_"


def bitmap_class_name(path: Path) -> str:
    """Class name of a bitmap file: its stem without Google's ``full_numpy_bitmap_`` prefix."""
    stem = path.stem
    return stem[len(_FILE_PREFIX):] if stem.startswith(_FILE_PREFIX) else stem


def check_bitmap_file(path: Path) -> str | None:
    """``None`` when ``path`` holds a uint8 ``(N, 784)`` array, else the reason it does not."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        return f"not a readable .npy file ({type(err).__name__}: {err})"
    if array.ndim != 2 or array.shape[1] != BITMAP_SIDE * BITMAP_SIDE:
        return f"shape {array.shape}, expected (N, {BITMAP_SIDE * BITMAP_SIDE})"
    if array.dtype != np.uint8:
        return f"dtype {array.dtype}, expected uint8"
    return None


def quickdraw_dataset(
    root: str | os.PathLike,
    classes: Iterable[str] | None = None,
    per_class: int | None = None,
    on_error: str = "raise",
) -> ImageDataset:
    """Sketch items from the ``<class>.npy`` bitmap files in ``root`` (one item per row).

    ``classes`` keeps those categories (spelling-insensitive), ``per_class`` the first rows of
    each file (deterministic). Files that are not ``(N, 784)`` uint8 arrays are reported like
    corrupt images: ``on_error="raise"`` or ``"skip"`` (recorded in ``.skipped``, warned).
    Item ``path`` is the ``.npy`` file and ``index`` the row; ``item.load()`` renders it.
    """
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"Quick, Draw! bitmap folder {root} does not exist (expected <class>.npy files).")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() == ".npy" and not p.name.startswith("."))
    if not files:
        raise LayoutError(f"no .npy files in {root}: expected Quick, Draw! numpy_bitmap files <class>.npy.")
    by_key = {class_key(bitmap_class_name(p)): p for p in files}
    if classes is not None:
        wanted = list(classes)
        missing = sorted(name for name in wanted if class_key(name) not in by_key)
        if missing:
            available = sorted(bitmap_class_name(p) for p in files)
            raise KeyError(f"classes not found in {root}: {missing}. Available: {available}")
        files = sorted(by_key[class_key(name)] for name in wanted)
    items: list[ImageItem] = []
    errors: list[tuple[Path, str]] = []
    for path in files:
        reason = check_bitmap_file(path)
        if reason:
            errors.append((path, reason))
            continue
        rows = _open_bitmaps(str(path)).shape[0]
        count = rows if per_class is None else min(rows, per_class)
        label = bitmap_class_name(path)
        items.extend(ImageItem(path, SKETCH, label, index=i) for i in range(count))
    if errors and on_error == "raise":
        raise UnreadableImagesError(errors, root)
    if errors:
        warnings.warn(
            f"skipped {len(errors)} unreadable bitmap file(s) in {root}: "
            + ", ".join(str(p) for p, _ in errors[:5]),
            stacklevel=2,
        )
    return ImageDataset(items, root=root, skipped=errors)
