"""Quick, Draw! numpy_bitmap files: rows become sketches with the look of the other sketches."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from mars_lite.data import UnreadableImagesError, load_image, quickdraw_dataset, render_bitmap


@pytest.fixture(scope="module")
def bitmap_dir(data_root):
    return data_root / "quickdraw_bitmap"


def test_every_row_is_an_item(bitmap_dir):
    dataset = quickdraw_dataset(bitmap_dir)
    assert len(dataset.classes) == 14 and len(dataset) == 14 * 299
    assert set(dataset.counts()) == {"sketch"}
    item = dataset[300]
    assert item.label == "bicycle" and item.index == 1 and item.path.name == "bicycle.npy"
    assert dataset.key(item) == "bicycle.npy#1"
    small = quickdraw_dataset(bitmap_dir, classes=["cat", "lion"], per_class=5)
    assert small.classes == ["cat", "lion"] and len(small) == 10


def test_rendering_polarity_and_size(bitmap_dir):
    rows = np.load(bitmap_dir / "cat.npy")
    assert rows[0].reshape(28, 28)[0].mean() < 10  # the source: white ink on black
    image = render_bitmap(rows[0])
    assert image.mode == "RGB" and image.size == (256, 256)
    pixels = np.asarray(image.convert("L"), dtype=np.float64)
    border = np.concatenate([pixels[:8].ravel(), pixels[-8:].ravel(), pixels[:, :8].ravel(), pixels[:, -8:].ravel()])
    assert border.mean() > 254  # white paper around the drawing
    assert pixels.min() < 30  # dark strokes
    ink = pixels < 128
    assert 0.01 < ink.mean() < 0.4  # strokes, not a filled block
    # Where the 28x28 source has ink, the rendering is dark (map source pixels to output).
    source = rows[0].reshape(28, 28)
    scale = 256 / (28 + 2 * 3)  # 3-pixel margin on each side
    ys, xs = np.nonzero(source > 200)
    centres = pixels[((ys + 3 + 0.5) * scale).astype(int), ((xs + 3 + 0.5) * scale).astype(int)]
    assert centres.mean() < 80


def test_rendering_looks_like_the_real_sketches(bitmap_dir, mini_sbir):
    rendered = np.asarray(render_bitmap(np.load(bitmap_dir / "lion.npy")[3]).convert("L"))
    real = np.asarray(load_image(sorted((mini_sbir / "sketch" / "lion").iterdir())[0]).convert("L"))
    assert np.median(rendered) == np.median(real) == 255  # mostly paper, same polarity
    assert rendered.min() < 60 and real.min() < 60


def test_dark_on_white_input_is_not_inverted(bitmap_dir):
    row = np.load(bitmap_dir / "key.npy")[7]
    assert np.array_equal(np.asarray(render_bitmap(row)), np.asarray(render_bitmap(255 - row)))


def test_item_load_renders_the_row(bitmap_dir):
    dataset = quickdraw_dataset(bitmap_dir, classes=["crown"], per_class=3)
    row = np.load(bitmap_dir / "crown.npy")[2]
    assert np.array_equal(np.asarray(dataset[2].load()), np.asarray(render_bitmap(row)))


def test_google_file_names_and_bad_files(bitmap_dir, tmp_path):
    shutil.copyfile(bitmap_dir / "cat.npy", tmp_path / "full_numpy_bitmap_cat.npy")
    np.save(tmp_path / "broken.npy", np.zeros((4, 100), np.uint8))  # not 28x28 rows
    with pytest.raises(UnreadableImagesError, match="broken.npy"):
        quickdraw_dataset(tmp_path)
    with pytest.warns(UserWarning, match="broken.npy"):
        dataset = quickdraw_dataset(tmp_path, on_error="skip")
    assert dataset.classes == ["cat"] and len(dataset) == 299
    assert dataset.skipped[0][0].name == "broken.npy" and "784" in dataset.skipped[0][1]
    assert isinstance(dataset[0].load(), Image.Image)
