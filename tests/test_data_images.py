"""load_image / check_image on every quirk real folders have, built from real mini_sbir images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mars_lite.data import ImageLoadError, check_image, is_image_file, load_image


@pytest.fixture(scope="module")
def sketch_path(mini_sbir) -> Path:
    return sorted((mini_sbir / "sketch" / "cat").iterdir())[0]


@pytest.fixture(scope="module")
def photo_path(mini_sbir) -> Path:
    return sorted((mini_sbir / "photo" / "cat").iterdir())[0]


def gray(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.int16)


def test_real_files_come_out_rgb(sketch_path, photo_path):
    sketch, photo = load_image(sketch_path), load_image(photo_path)
    assert (sketch.mode, sketch.size) == ("RGB", (150, 150))  # source is mode L
    assert (photo.mode, photo.size) == ("RGB", (64, 64))
    channels = np.asarray(sketch)
    assert np.array_equal(channels[..., 0], channels[..., 2])  # gray replicated
    assert np.array_equal(channels[..., 0], np.asarray(Image.open(sketch_path)))
    assert photo_path.suffix == ".JPEG" and is_image_file(photo_path)


def test_rgba_transparent_background_becomes_white(sketch_path, tmp_path):
    original = np.asarray(Image.open(sketch_path).convert("L"))
    # Black ink whose opacity is the darkness; paper fully transparent (and black underneath).
    rgba = np.zeros(original.shape + (4,), np.uint8)
    rgba[..., 3] = 255 - original
    path = tmp_path / "transparent.png"
    Image.fromarray(rgba).save(path)  # (H, W, 4) uint8 -> RGBA
    loaded = gray(load_image(path))
    assert np.abs(loaded - original).max() <= 1
    assert loaded[original == 255].min() == 255  # paper is white, not black


def test_la_and_palette_with_transparency(sketch_path, tmp_path):
    original = np.asarray(Image.open(sketch_path).convert("L"))
    la = Image.merge("LA", [Image.new("L", original.shape[::-1], 0), Image.fromarray(255 - original)])
    la.save(tmp_path / "la.png")
    assert np.abs(gray(load_image(tmp_path / "la.png")) - original).max() <= 1

    palette = Image.open(sketch_path).convert("RGB").quantize(colors=8)
    indices = np.asarray(palette)
    paper = int(indices[0, 0])  # the corner is paper
    colours = palette.getpalette()
    colours[3 * paper: 3 * paper + 3] = [0, 0, 0]  # if transparency were ignored: black paper
    palette.putpalette(colours)
    palette.save(tmp_path / "p_transparent.png", transparency=paper)
    assert Image.open(tmp_path / "p_transparent.png").mode == "P"
    loaded = gray(load_image(tmp_path / "p_transparent.png"))
    assert loaded[indices == paper].min() == 255


def test_palette_without_transparency(photo_path, tmp_path):
    palette = Image.open(photo_path).convert("RGB").quantize(colors=64)
    palette.save(tmp_path / "p.png")
    loaded = load_image(tmp_path / "p.png")
    assert np.array_equal(np.asarray(loaded), np.asarray(palette.convert("RGB")))


def test_cmyk_jpeg_and_tiff(photo_path, tmp_path):
    photo = Image.open(photo_path).convert("RGB")
    cmyk = photo.convert("CMYK")
    cmyk.save(tmp_path / "cmyk.tif")
    cmyk.save(tmp_path / "cmyk.jpg", quality=95)
    exact = load_image(tmp_path / "cmyk.tif")
    assert exact.mode == "RGB"
    assert np.array_equal(np.asarray(exact), np.asarray(cmyk.convert("RGB")))
    lossy = np.asarray(load_image(tmp_path / "cmyk.jpg"), dtype=np.int16)
    assert np.abs(lossy - np.asarray(photo, dtype=np.int16)).mean() < 8


def test_sixteen_bit_grayscale(sketch_path, tmp_path):
    original = np.asarray(Image.open(sketch_path).convert("L"))
    deep = Image.fromarray(original.astype(np.uint16) * 257)  # I;16, 255 -> 65535
    deep.save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode in ("I;16", "I")
    assert np.array_equal(gray(load_image(tmp_path / "deep.png")), original)


def test_exif_orientation_is_applied(photo_path, tmp_path):
    upright = Image.open(photo_path).convert("RGB").crop((0, 0, 64, 40))  # non-square
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a sideways camera writes
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    stored.save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    loaded = load_image(tmp_path / "rotated.jpg")
    assert loaded.size == upright.size == (64, 40)
    difference = np.abs(np.asarray(loaded, dtype=np.int16) - np.asarray(upright, dtype=np.int16))
    assert difference.mean() < 6


def test_upper_case_extensions(sketch_path, tmp_path):
    target = tmp_path / "SKETCH.PNG"
    target.write_bytes(sketch_path.read_bytes())
    assert is_image_file(target) and check_image(target) is None
    assert load_image(target).size == (150, 150)
    assert not is_image_file(tmp_path / "notes.TXT")


@pytest.mark.parametrize("source", ["photo", "sketch"])
def test_truncated_files_are_reported_with_their_path(source, sketch_path, photo_path, tmp_path):
    original = (photo_path if source == "photo" else sketch_path).read_bytes()
    target = tmp_path / f"cut{(photo_path if source == 'photo' else sketch_path).suffix}"
    target.write_bytes(original[: len(original) // 2])
    reason = check_image(target)
    assert reason, "the cheap check must catch a file cut in half"
    with pytest.raises(ImageLoadError) as caught:
        load_image(target)
    assert caught.value.path == target and str(target) in str(caught.value)


def test_garbage_and_missing_files(tmp_path):
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    assert "identify" in check_image(garbage)
    with pytest.raises(ImageLoadError, match="garbage.jpg"):
        load_image(garbage)
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image(tmp_path / "absent.png")
    assert check_image(tmp_path / "absent.png") == "file not found"


def test_jpeg_with_zero_padding_after_end_marker_is_fine(photo_path, tmp_path):
    padded = tmp_path / "padded.jpg"
    padded.write_bytes(photo_path.read_bytes() + b"\x00" * 512)
    assert check_image(padded) is None
    assert load_image(padded).size == (64, 64)


def write_huge_png(path: Path, width: int, height: int) -> Path:
    """A 1-bit white PNG of ``width`` x ``height`` written row by row (tiny file, tiny memory)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + b"\xff" * ((width + 7) // 8)  # filter byte, then 8 pixels a byte
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def test_huge_png_is_refused_before_decoding_in_little_memory(tmp_path):
    import subprocess
    import sys

    huge = write_huge_png(tmp_path / "huge.png", 13000, 13000)
    assert huge.stat().st_size < 1_000_000
    assert int.from_bytes(huge.read_bytes()[16:20], "big") == 13000  # the IHDR width
    # A fresh process, so its peak RSS is this load alone. VmHWM (/proc) belongs to the process's own
    # memory map; ru_maxrss would not do: Linux carries it over from the parent (pytest) across exec.
    script = (
        "import re, sys\n"
        "def peak_mb():\n"
        "    return int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) / 1024\n"
        "from mars_lite.data import ImageLoadError, load_image\n"
        "before = peak_mb()\n"
        "try:\n    load_image(sys.argv[1])\n    print('LOADED')\n"
        "except ImageLoadError as err:\n    print('REFUSED', err)\n"
        "print('PEAK_MB', peak_mb(), before)\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "MARS_LITE_MAX_PIXELS"}
    done = subprocess.run([sys.executable, "-c", script, str(huge)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "REFUSED" in out and str(huge) in out and "13000x13000" in out and "MARS_LITE_MAX_PIXELS" in out, out
    peak, at_import = (float(x) for x in out.split("PEAK_MB")[1].split())
    assert peak - at_import < 100 and peak < 1024, out  # decoding would cost gigabytes


def test_pixel_budget_has_its_own_message_not_pils(tmp_path, monkeypatch, sketch_path):
    import warnings

    monkeypatch.delenv("MARS_LITE_MAX_PIXELS", raising=False)
    huge = write_huge_png(tmp_path / "bomb.png", 20000, 20000)  # over 2x PIL's limit: PIL would raise
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning would fail here
        with pytest.raises(ImageLoadError, match="pixel budget") as caught:
            load_image(huge)
        assert "decompression bomb" not in str(caught.value).lower()
        assert "over the pixel budget" in check_image(huge)
        big = write_huge_png(tmp_path / "big.png", 13000, 13000)  # over PIL's warning limit
        with pytest.raises(ImageLoadError, match="13000x13000"):
            load_image(big)
    # the budget is configurable: environment, then keyword
    monkeypatch.setenv("MARS_LITE_MAX_PIXELS", "10000")
    with pytest.raises(ImageLoadError, match="150x150 = 22,500 pixels"):
        load_image(sketch_path)
    assert check_image(sketch_path) is not None
    assert load_image(sketch_path, max_pixels=22_500).size == (150, 150)
    monkeypatch.setenv("MARS_LITE_MAX_PIXELS", "lots")
    with pytest.raises(ValueError, match="MARS_LITE_MAX_PIXELS='lots'"):
        load_image(sketch_path)
