"""Quick, Draw! ``numpy_bitmap`` rows rendered as sketches (28x28 white ink on black -> dark strokes
on white paper, upscaled); the dataset reader is ``quickdraw``, this module only draws pixels."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

BITMAP_SIDE = 28
RENDER_SIZE = 256  # like Sketchy's 256x256 sketches; the model's transform resizes anyway
MARGIN = 0.1  # paper around the drawing, as a fraction of the 28-pixel side
# Grey levels below LOW become full ink, above HIGH become paper (crisper strokes after upscaling).
_LEVELS_LOW, _LEVELS_HIGH = 40, 215


def render_bitmap(row: np.ndarray, size: int = RENDER_SIZE, margin: float = MARGIN) -> Image.Image:
    """Render one ``(784,)`` or ``(28, 28)`` uint8 bitmap as an RGB ``size`` x ``size`` sketch.

    Output: dark strokes on a white background, margin ``margin`` (fraction of the side).
    """
    array = np.asarray(row, dtype=np.uint8).reshape(BITMAP_SIDE, BITMAP_SIDE)
    border = np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]])
    if border.mean() < 128:  # numpy_bitmap polarity: ink is bright -> make it dark on white
        array = 255 - array
    pad = int(round(BITMAP_SIDE * margin))
    array = np.pad(array, pad, mode="constant", constant_values=255)
    image = Image.fromarray(array).resize((size, size), Image.Resampling.BICUBIC)
    scale = 255.0 / (_LEVELS_HIGH - _LEVELS_LOW)
    image = image.point(lambda v: int(min(255, max(0, (v - _LEVELS_LOW) * scale))))
    return image.convert("RGB")


@lru_cache(maxsize=64)
def _open_bitmaps(path: str) -> np.ndarray:
    # Memory-mapped: a full category file is ~100 MB and we only read the rows we need.
    return np.load(path, mmap_mode="r", allow_pickle=False)


def load_bitmap_row(path: str | os.PathLike, index: int, size: int = RENDER_SIZE) -> Image.Image:
    """Row ``index`` of the bitmap file ``path``, rendered by ``render_bitmap``."""
    return render_bitmap(np.asarray(_open_bitmaps(str(Path(path)))[index]), size=size)
