"""Free-hand strokes as data, and their rasterisation into images that look like training sketches.

A stroke is a ``(P, 2)`` float array of ``(x, y)`` canvas pixel coordinates (x right, y down), in
the order the pen visited them. ``Drawing`` records strokes as a pad receives pen events (begin,
extend, end; undo; clear), always as instance state. ``rasterize`` turns strokes into the look of
the TU-Berlin sketches in ``mini_sbir/sketch``: 150x150 grayscale, thin anti-aliased dark lines on
white, the drawing scaled so its longer side spans ~79% of the image and centred (measured on the
660 real sketches: ink bounding box 117-120 px, centre 74.5 px; ink mass ~1.9% of the image).
The stroke width is fixed in *output* pixels, as in those sketches, whatever the canvas size.

``normalize_sketch_image`` brings a sketch image (a file, a photo of paper, a Quick, Draw! bitmap
with white ink on black) to the same framing; ``trace_strokes`` recovers approximate strokes from
a sketch image, which lets tests compare rasterised strokes against real sketches.

Pure: numpy and PIL only (no widgets, no torch), so the sketch pad and the CLI share it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw

WIDTH_CHOICES = {"thin": 0.7, "medium": 1.0, "thick": 1.6}  # multipliers of RasterStyle.stroke_width
_COORD_LIMIT = 1e9  # larger magnitudes are clipped so extents stay finite in float64


@dataclass(frozen=True)
class RasterStyle:
    """How strokes become an image.

    Attributes:
        size: output side in pixels (the real sketches are 150).
        margin: blank fraction of ``size`` on each side of the drawing's longer extent.
        stroke_width: line width in output pixels at width scale 1 (calibrated on mini_sbir).
        supersample: drawing happens at ``size * supersample`` and is box-filtered down, which
            gives the grey anti-aliased edges of downscaled scans.
        ink: gray level of the pen (0 = black); the real sketches' darkest pixels are ~60, since
            their thin black lines were averaged with the paper when downscaled.
        max_points, max_strokes: budget; longer recordings are subsampled evenly, so that any
            input rasterises in bounded time (a real drawing has a few hundred points per stroke
            and tens of strokes).
    """

    size: int = 150
    margin: float = 0.107
    stroke_width: float = 1.0
    supersample: int = 8
    ink: int = 60
    max_points: int = 4000
    max_strokes: int = 1000


DEFAULT_STYLE = RasterStyle()


def as_stroke(points) -> np.ndarray:
    """One stroke as a clean ``(P, 2)`` float64 array: non-finite points dropped, huge values clipped.

    ``points`` may be a sequence of pairs, a ``(P, 2)`` array, or a dict with ``x`` and ``y`` lists.
    Returns a ``(0, 2)`` array when nothing usable is left.
    """
    if isinstance(points, dict):
        points = list(zip(points.get("x", ()), points.get("y", ())))
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        return np.zeros((0, 2))
    if array.size == 0:
        return np.zeros((0, 2))
    if array.ndim == 1 and array.size == 2:
        array = array.reshape(1, 2)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"a stroke is a list of (x, y) points; got an array of shape {array.shape}")
    array = array[np.isfinite(array).all(axis=1)]
    return np.clip(array, -_COORD_LIMIT, _COORD_LIMIT)


def clean_strokes(strokes: Iterable) -> list[np.ndarray]:
    """Every stroke through :func:`as_stroke`; empty strokes are dropped."""
    cleaned = (as_stroke(stroke) for stroke in strokes)
    return [stroke for stroke in cleaned if len(stroke)]


def _evenly(items: list, count: int) -> list:
    """At most ``count`` items, evenly spread over the list (first and last kept)."""
    if len(items) <= count:
        return items
    return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, count).astype(int))]


def _budget(strokes: list[np.ndarray], max_points: int) -> list[np.ndarray]:
    """Subsample evenly (keeping each stroke's end points) so at most ~max_points remain."""
    total = sum(len(s) for s in strokes)
    if total <= max_points:
        return strokes
    step = max(1, math.ceil(total / max_points))
    out = []
    for stroke in strokes:
        if len(stroke) > 2 * step:
            index = np.unique(np.r_[np.arange(0, len(stroke), step), len(stroke) - 1])
            stroke = stroke[index]
        out.append(stroke)
    return out


def fit_transform(strokes: Sequence[np.ndarray], style: RasterStyle = DEFAULT_STYLE) -> tuple[float, np.ndarray]:
    """Scale and offset mapping canvas coordinates to output pixels: ``out = p * scale + offset``.

    The drawing's bounding box is scaled so its longer side spans ``size * (1 - 2 margin)`` and
    centred. A drawing smaller than one canvas pixel (a dot) is treated as one pixel wide.
    """
    points = np.concatenate(strokes)
    low, high = points.min(axis=0), points.max(axis=0)
    extent = max(float((high - low).max()), 1.0)
    target = style.size * (1.0 - 2.0 * style.margin)
    scale = target / extent
    offset = style.size / 2.0 - (low + high) / 2.0 * scale
    return scale, offset


def rasterize(strokes: Iterable, style: RasterStyle = DEFAULT_STYLE, width_scale: float = 1.0) -> Image.Image:
    """Render strokes as a training-style sketch: ``style.size`` square, mode ``L``, dark on white.

    Args:
        strokes: iterable of strokes, each ``(P, 2)`` canvas coordinates (any canvas size: the
            drawing is fitted to the frame). Non-finite points and empty strokes are ignored.
        style: framing, width and quality (see :class:`RasterStyle`).
        width_scale: multiplier of ``style.stroke_width`` (see ``WIDTH_CHOICES``).
    Returns:
        a PIL image; all white when no usable point is left.
    """
    strokes = list(strokes) if not isinstance(strokes, list) else strokes
    strokes = _budget(clean_strokes(_evenly(strokes, style.max_strokes)), style.max_points)
    ss = max(1, int(style.supersample))
    big = Image.new("L", (style.size * ss, style.size * ss), 255)
    if strokes:
        scale, offset = fit_transform(strokes, style)
        width = float(np.clip(style.stroke_width * width_scale, 0.25, style.size / 10)) * ss
        radius = width / 2.0
        draw = ImageDraw.Draw(big)
        for stroke in strokes:
            xy = (stroke * scale + offset) * ss
            if len(xy) > 1:
                draw.line(xy.ravel().tolist(), fill=style.ink, width=max(1, round(width)))
            for x, y in (xy[0], xy[-1]) if len(xy) > 1 else xy:  # round caps; a single point is a dot
                draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=style.ink)
    return big if ss == 1 else big.reduce(ss)  # box average of ss x ss blocks


def ink_fraction(image: Image.Image) -> float:
    """Mean darkness in [0, 1] (0 = blank page): the 'ink mass' of a grayscale sketch."""
    array = np.asarray(image.convert("L"), dtype=np.float64)
    return float((255.0 - array).mean() / 255.0)


def stroke_width_estimate(image: Image.Image, threshold: int = 200) -> float:
    """Average line width in pixels: 2 * area / perimeter of the pixels darker than ``threshold``.

    For a line of width w and length L the area is w L and the boundary 2 L, so the ratio recovers
    w whatever the drawing. Returns 0.0 for a blank image.
    """
    mask = np.asarray(image.convert("L")) < threshold
    area = int(mask.sum())
    if area == 0:
        return 0.0
    padded = np.pad(mask, 1)
    edges = int((padded[1:, :] != padded[:-1, :]).sum() + (padded[:, 1:] != padded[:, :-1]).sum())
    return 2.0 * area / edges


def ink_bbox(image: Image.Image, threshold: int = 250) -> tuple[int, int, int, int] | None:
    """``(left, top, right, bottom)`` inclusive box of pixels darker than ``threshold``, or None."""
    mask = np.asarray(image.convert("L")) < threshold
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def normalize_sketch_image(image: Image.Image | str | Path, style: RasterStyle = DEFAULT_STYLE,
                           refit: bool = True) -> Image.Image:
    """A sketch image in the training look: ``L`` mode, dark ink on white, ``style.size`` square.

    Light ink on a dark background (Quick, Draw! bitmaps) is inverted; transparency counts as paper.
    With ``refit`` the ink is cropped and centred with the style's margin, as ``rasterize`` does.
    """
    if not isinstance(image, Image.Image):
        from ..data import load_image  # lazy: keeps this module free of the data package at import

        image = load_image(image)
    if "A" in image.getbands() or image.mode == "P":
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    gray = image.convert("L")
    array = np.asarray(gray)
    if array.size and np.median(array) < 128:  # mostly dark: white-on-black ink
        gray = Image.fromarray(255 - array, mode="L")
    box = ink_bbox(gray) if refit else None
    if box is None:
        return gray.resize((style.size, style.size), Image.Resampling.LANCZOS)
    left, top, right, bottom = box
    crop = gray.crop((left, top, right + 1, bottom + 1))
    target = style.size * (1.0 - 2.0 * style.margin)
    scale = target / max(crop.width, crop.height)
    new_size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    crop = crop.resize(new_size, Image.Resampling.LANCZOS)
    out = Image.new("L", (style.size, style.size), 255)
    out.paste(crop, ((style.size - new_size[0]) // 2, (style.size - new_size[1]) // 2))
    return out


def trace_strokes(image: Image.Image, threshold: int = 170, step: int = 2) -> list[np.ndarray]:
    """Approximate pen strokes of a line drawing (dark on white), in the image's pixel coordinates.

    A greedy walk over the ink pixels: from an unvisited pixel, move to the unvisited ink pixel
    within ``step`` pixels that best keeps the current direction, marking the pixels around the
    path as visited (they are the line's width); a stroke ends where no ink is left nearby.
    """
    ink = np.asarray(image.convert("L")) < threshold
    unvisited = ink.copy()
    height, width = ink.shape
    offsets = [(dy, dx) for dy in range(-step, step + 1) for dx in range(-step, step + 1)
               if max(abs(dy), abs(dx)) > 1]
    strokes = []
    for y0, x0 in zip(*np.nonzero(ink)):
        if not unvisited[y0, x0]:
            continue
        y, x, direction, path = int(y0), int(x0), None, [(x0, y0)]
        while True:
            unvisited[max(0, y - 1):y + 2, max(0, x - 1):x + 2] = False
            best, best_cost = None, None
            for dy, dx in offsets:
                ny, nx = y + dy, x + dx
                if 0 <= ny < height and 0 <= nx < width and unvisited[ny, nx]:
                    norm = math.hypot(dx, dy)
                    turn = 0.0 if direction is None else 1.0 - (dx * direction[0] + dy * direction[1]) / norm
                    cost = norm + 2.0 * turn
                    if best_cost is None or cost < best_cost:
                        best, best_cost = (ny, nx, dx / norm, dy / norm), cost
            if best is None:
                break
            y, x, direction = best[0], best[1], (best[2], best[3])
            path.append((x, y))
        strokes.append(np.asarray(path, dtype=np.float64))
    return strokes


class Drawing:
    """Strokes recorded from pen events, in canvas pixel coordinates (instance state only).

    ``begin(x, y)`` starts a stroke, ``extend(x, y)`` adds a point, ``end()`` commits it (a press
    without movement becomes a one-point stroke, i.e. a dot). ``undo()`` removes the last stroke,
    ``clear()`` all of them. ``strokes`` returns copies, safe to hand to another thread.
    """

    def __init__(self, strokes: Iterable | None = None):
        self._strokes: list[np.ndarray] = []
        self._current: list[tuple[float, float]] | None = None
        for stroke in strokes or ():
            self.add_stroke(stroke)

    def __len__(self) -> int:
        return len(self._strokes)

    @property
    def is_empty(self) -> bool:
        return not self._strokes

    @property
    def drawing_in_progress(self) -> bool:
        return self._current is not None

    @property
    def strokes(self) -> list[np.ndarray]:
        """Committed strokes, each a fresh ``(P, 2)`` array."""
        return [stroke.copy() for stroke in self._strokes]

    def begin(self, x: float, y: float) -> None:
        self._current = [(float(x), float(y))]

    def extend(self, x: float, y: float) -> bool:
        """Add a point to the stroke in progress; False when no stroke is in progress."""
        if self._current is None:
            return False
        self._current.append((float(x), float(y)))
        return True

    def end(self) -> bool:
        """Commit the stroke in progress; True when a non-empty stroke was added."""
        current, self._current = self._current, None
        return current is not None and self.add_stroke(current)

    def add_stroke(self, points) -> bool:
        """Append a recorded stroke; False (nothing added) when no finite point is in it."""
        stroke = as_stroke(points)
        if not len(stroke):
            return False
        self._strokes.append(stroke)
        return True

    def undo(self) -> bool:
        if self._current is not None:
            self._current = None
            return True
        if self._strokes:
            self._strokes.pop()
            return True
        return False

    def clear(self) -> None:
        self._strokes.clear()
        self._current = None

    def to_json(self) -> str:
        """The strokes as JSON: ``[[[x, y], ...], ...]``."""
        return json.dumps([stroke.round(2).tolist() for stroke in self._strokes])

    @classmethod
    def from_json(cls, text: str) -> "Drawing":
        return cls(json.loads(text))


def load_recorded_strokes(path: str | Path) -> list[np.ndarray]:
    """Strokes from a JSON file of ``[[[x, y], ...], ...]`` (as written by ``Drawing.to_json``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read recorded strokes from {path}: {err}") from err
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of strokes, got {type(data).__name__}")
    return clean_strokes(data)
