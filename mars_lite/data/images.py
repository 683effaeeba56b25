"""Reading images the way real folders contain them: always an RGB ``PIL.Image`` out.

``load_image(path)`` copes with the quirks found in sketch and photo collections:

* grayscale (``L``, ``1``) and 16-bit grayscale (``I;16``, ``I``) -> scaled to 8 bits, then RGB;
* transparency (``RGBA``, ``LA``, palette ``P`` with a ``transparency`` entry) -> composited on
  white, because a transparent background in a sketch means paper, not black;
* ``CMYK``, ``YCbCr`` and other colour modes -> RGB;
* the EXIF orientation tag -> applied, so a phone photo stored sideways comes out upright;
* upper-case extensions (``.JPEG``, ``.PNG``) -> matched case-insensitively;
* corrupt or truncated files -> ``ImageLoadError`` naming the file and the reason;
* images larger than the pixel budget -> ``ImageLoadError`` *before* any pixel is decoded (a
  tiny PNG can declare 13000x13000 pixels and cost gigabytes to decode). The budget is
  ``max_pixels=`` when given, else ``$MARS_LITE_MAX_PIXELS``, else ``MAX_PIXELS``; PIL's own
  decompression-bomb check is replaced by it (so its warning or error never comes first).

``check_image(path)`` is the cheap test used when a dataset is built: it reads the header and
lets PIL verify the file structure (PNG chunk CRCs, GIF, ...) without decoding pixels; since PIL
does not verify JPEG data, it also checks that a JPEG still ends with its end-of-image marker,
which catches the common truncated-download case.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import MarsLiteError

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
_JPEG_EXTENSIONS = frozenset({".jpg", ".jpeg"})
_JPEG_TAIL_BYTES = 4096  # the end-of-image marker must appear in the last 4 KiB
# What PIL raises for unreadable data across formats and versions.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
# The pixel budget: 50 M pixels (e.g. 8660x5773) decode to 150 MB as RGB -- far above any
# sketch or photo of the benchmarks, far below what a decompression bomb asks for.
MAX_PIXELS = 50_000_000
MAX_PIXELS_ENV = "MARS_LITE_MAX_PIXELS"
# Image.open runs PIL's own bomb check (a warning above 89 M pixels, an error above 179 M)
# before we can see the size; it is switched off around the call (under a lock, since the
# limit is a module global) and ours, with a message that says how to raise it, runs instead.
_PIL_LIMIT_LOCK = threading.Lock()


class PixelBudgetSettingError(MarsLiteError, ValueError):
    """``$MARS_LITE_MAX_PIXELS`` (or ``max_pixels=``) is not a positive whole number."""


class ImageLoadError(MarsLiteError):
    """An image file could not be read; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


def is_image_file(path: str | os.PathLike) -> bool:
    """True for a file name with a known image extension (case-insensitive, e.g. ``.JPEG``)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def pixel_budget(max_pixels: int | None = None) -> int:
    """The pixel budget in force: ``max_pixels``, else ``$MARS_LITE_MAX_PIXELS``, else ``MAX_PIXELS``."""
    if max_pixels is None:
        text = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
        if not text:
            return MAX_PIXELS
        try:
            max_pixels = int(text)
        except ValueError:
            raise PixelBudgetSettingError(
                f"{MAX_PIXELS_ENV}={os.environ[MAX_PIXELS_ENV]!r} is not a number of pixels; "
                f"set it to a whole number such as 200000000, or unset it (default {MAX_PIXELS})"
            ) from None
    if max_pixels <= 0:
        raise PixelBudgetSettingError(f"the pixel budget must be positive, got {max_pixels}")
    return int(max_pixels)


def _open(path: Path) -> Image.Image:
    """``Image.open`` (header only, nothing decoded) without PIL's own bomb check."""
    with _PIL_LIMIT_LOCK:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _over_budget(image: Image.Image, budget: int) -> str | None:
    """Why ``image`` must not be decoded (its header size is over ``budget``), else None."""
    width, height = image.size
    if width * height <= budget:
        return None
    need = width * height * 3 / 1e9  # the RGB result alone
    return (f"{width}x{height} = {width * height:,} pixels is over the pixel budget of {budget:,} "
            f"(decoding would need more than {need:.1f} GB); refused before decoding. Downscale the "
            f"file, or raise the budget with {MAX_PIXELS_ENV}=N (or max_pixels=N) if you trust it")


def _to_8bit(image: Image.Image) -> Image.Image:
    """Map 16/32-bit integer or float grayscale to 8-bit ``L``, keeping the full range."""
    import numpy as np  # only these rare modes need it

    array = np.asarray(image)
    if image.mode.startswith("I;16") or (image.mode == "I" and array.max(initial=0) > 255):
        # 16-bit data (I;16 or a 16-bit PNG opened as I): 65535 -> 255
        array = np.clip(array.astype(np.float64) / 257.0, 0, 255)
    elif image.mode == "F" and array.size and float(np.nanmax(array)) <= 1.0:
        array = np.nan_to_num(array) * 255.0  # float images stored as 0..1
    array = np.clip(np.nan_to_num(array), 0, 255).round().astype(np.uint8)
    return Image.fromarray(array)  # 2-D uint8 -> mode L


def _on_white(image: Image.Image) -> Image.Image:
    """Composite an image with alpha onto a white background (returns RGB)."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB (transparent -> white, 16-bit -> 8-bit). Returns a new image."""
    mode = image.mode
    if mode == "RGB":
        return image.copy()
    if mode == "P":
        if "transparency" in image.info:
            return _on_white(image)
        return image.convert("RGB")
    if mode in ("RGBA", "LA", "La", "RGBa", "PA") or "A" in image.getbands():
        return _on_white(image)
    if mode.startswith("I") or mode == "F":
        return _to_8bit(image).convert("RGB")
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def load_image(path: str | os.PathLike, max_pixels: int | None = None) -> Image.Image:
    """Read ``path`` fully and return an RGB image with its EXIF orientation applied.

    Raises ``ImageLoadError`` (naming the file) for missing, corrupt or truncated files, and for
    images over the pixel budget (see ``pixel_budget``), checked from the header before decoding.
    """
    path, budget = Path(path), pixel_budget(max_pixels)
    try:
        with _open(path) as opened:
            if reason := _over_budget(opened, budget):
                raise ImageLoadError(path, reason)
            opened.load()  # decode now, so truncation fails here and not later
            upright = ImageOps.exif_transpose(opened)
            return to_rgb(upright)
    except FileNotFoundError as err:
        raise ImageLoadError(path, "file not found") from err
    except UnidentifiedImageError as err:
        raise ImageLoadError(path, "not an image file PIL can identify") from err
    except _DECODE_ERRORS as err:
        raise ImageLoadError(path, f"{type(err).__name__}: {err}") from err


def _jpeg_tail_ok(path: Path) -> bool:
    """True when the last bytes of a JPEG hold the end-of-image marker FF D9.

    Entropy-coded JPEG data never contains FF D9 (0xFF bytes are stuffed as FF 00), so a file
    cut short during download has no such marker near its end. Zero padding after it is allowed.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(max(0, size - _JPEG_TAIL_BYTES))
        tail = handle.read()
    return b"\xff\xd9" in tail.rstrip(b"\x00")


def check_image(path: str | os.PathLike, max_pixels: int | None = None) -> str | None:
    """Cheap validity check without decoding pixels: ``None`` when OK, else the reason.

    Opens the header, checks the pixel budget, runs ``PIL.Image.verify`` and, for JPEG files,
    looks for the end-of-image marker. Use ``load_image`` for a full decode.
    """
    path, budget = Path(path), pixel_budget(max_pixels)
    try:
        with _open(path) as opened:
            image_format = opened.format
            if reason := _over_budget(opened, budget):
                return reason
            opened.verify()
    except FileNotFoundError:
        return "file not found"
    except UnidentifiedImageError:
        return "not an image file PIL can identify"
    except _DECODE_ERRORS as err:
        return f"{type(err).__name__}: {err}"
    if image_format == "JPEG" or (image_format is None and path.suffix.lower() in _JPEG_EXTENSIONS):
        if not _jpeg_tail_ok(path):
            return "truncated JPEG (no end-of-image marker)"
    return None
