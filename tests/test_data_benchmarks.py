"""Benchmark layout readers on small trees built from real mini_sbir images in each authors' layout."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mars_lite.data import (
    ClassMismatchError,
    LayoutError,
    UnreadableImagesError,
    benchmark_classes,
    check_layout,
    quickdraw_extended,
    sketchy_extended,
    tuberlin_extended,
)


@pytest.fixture(scope="module")
def real_files(mini_sbir):
    sketches = sorted((mini_sbir / "sketch" / "cat").iterdir())
    photos = sorted((mini_sbir / "photo" / "cat").iterdir())
    return sketches, photos


def place(parent: Path, folders: list[str], files: list[Path], per_class: int, suffix: str | None = None):
    """Copy ``per_class`` real files into ``parent/<folder>/`` for every folder name."""
    for k, folder in enumerate(folders):
        (parent / folder).mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            source = files[(k * per_class + j) % len(files)]
            shutil.copyfile(source, parent / folder / (source.stem + (suffix or source.suffix)))


def test_sketchy_sake_layout_and_photo_sets(tmp_path, real_files):
    sketches, photos = real_files
    base = tmp_path / "dataset" / "Sketchy"  # SAKE's zip wraps the data like this
    folders = ["cat", "camel", "hot_air_balloon"]  # Doodle2Search-style rename of hot-air_balloon
    place(base / "256x256/sketch/tx_000000000000_ready", folders, sketches, 4)
    place(base / "256x256/photo/tx_000000000000_ready", folders, photos, 2, ".jpg")
    place(base / "EXTEND_image_sketchy_ready", folders, photos[10:], 3, ".jpg")
    everything = sketchy_extended(tmp_path)
    assert everything.root == base
    assert everything.classes == ["camel", "cat", "hot-air_balloon"]  # official spelling
    assert everything.counts() == {"sketch": 12, "photo": 15}
    assert sketchy_extended(tmp_path, photos="extended").counts()["photo"] == 9
    assert sketchy_extended(tmp_path, photos="original").counts()["photo"] == 6
    only = sketchy_extended(tmp_path, classes=["hot-air balloon"])
    assert only.classes == ["hot-air_balloon"] and len(only) == 4 + 5


def test_sketchy_authors_layout_without_extension_is_refused_for_all_photos(tmp_path, real_files):
    sketches, photos = real_files
    place(tmp_path / "256x256/sketch/tx_000000000000", ["cat"], sketches, 2)
    place(tmp_path / "256x256/photo/tx_000000000000", ["cat"], photos, 2, ".jpg")
    with pytest.raises(LayoutError, match="extended photos"):
        sketchy_extended(tmp_path)
    assert len(sketchy_extended(tmp_path, photos="original")) == 4


def test_tuberlin_raw_release_names_are_mapped(tmp_path, real_files):
    sketches, photos = real_files
    place(tmp_path / "png", ["alarm clock", "trombone", "bear (animal)"], sketches, 3)
    (tmp_path / "png" / "filelist.txt").write_text("alarm clock/1.png\n")  # shipped in the zip
    place(tmp_path / "ImageResized", ["alarmclock", "tromobone", "bearanimal"], photos, 2)
    dataset = tuberlin_extended(tmp_path)
    assert dataset.classes == ["alarm clock", "bear (animal)", "trombone"]
    for label in dataset.classes:
        assert len(dataset.select(classes=[label]).sketches()) == 3
        assert len(dataset.select(classes=[label]).photos()) == 2


def test_tuberlin_sake_layout(tmp_path, real_files):
    sketches, photos = real_files
    place(tmp_path / "TUBerlin/png_ready", ["banana", "door handle"], sketches, 2)
    place(tmp_path / "TUBerlin/ImageResized_ready", ["banana", "door handle"], photos, 2)
    dataset = tuberlin_extended(tmp_path, classes=["door_handle"])  # split B spelling
    assert dataset.classes == ["door handle"] and len(dataset) == 4


def test_quickdraw_extended_both_namings(tmp_path, real_files):
    sketches, photos = real_files
    place(tmp_path / "a/QuickDraw_sketches_final", ["palm_tree", "bat"], sketches, 3)
    place(tmp_path / "a/QuickDraw_images_final", ["palm_tree", "bat"], photos, 2, ".jpg")
    place(tmp_path / "b/sketches", ["palm tree", "bat"], sketches, 3)
    place(tmp_path / "b/images", ["palm tree", "bat"], photos, 2, ".jpg")
    for root in (tmp_path / "a", tmp_path / "b"):
        dataset = quickdraw_extended(root)
        assert dataset.classes == ["bat", "palm tree"] and dataset.counts() == {"sketch": 6, "photo": 4}


def test_unknown_folders_are_kept_with_a_warning_and_bad_files_reported(tmp_path, real_files):
    sketches, photos = real_files
    place(tmp_path / "sketches", ["bat", "my_doodles"], sketches, 2)
    place(tmp_path / "images", ["bat"], photos, 2)
    with pytest.warns(UserWarning, match="my_doodles"):
        dataset = quickdraw_extended(tmp_path)
    assert "my_doodles" in dataset.classes
    (tmp_path / "images" / "bat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 nothing else")
    with pytest.warns(UserWarning), pytest.raises(UnreadableImagesError, match="broken.jpg"):
        quickdraw_extended(tmp_path)


def test_missing_layout_lists_what_was_looked_for(tmp_path):
    with pytest.raises(LayoutError, match="png_ready"):
        tuberlin_extended(tmp_path)


@pytest.mark.parametrize(
    "name, sketch_dir, photo_dirs, count",
    [
        ("sketchy", "256x256/sketch/tx_000000000000_ready",
         ["256x256/photo/tx_000000000000_ready", "EXTEND_image_sketchy_ready"], 125),
        ("tuberlin", "png_ready", ["ImageResized_ready"], 250),
        ("quickdraw", "sketches", ["images"], 110),
    ],
)
def test_check_layout_full_class_lists(tmp_path, real_files, name, sketch_dir, photo_dirs, count):
    sketches, photos = real_files
    classes = list(benchmark_classes(name))
    assert len(classes) == count
    place(tmp_path / sketch_dir, classes, sketches, 1)
    for photo_dir in photo_dirs:
        place(tmp_path / photo_dir, classes, photos, 1)
    summary = check_layout(name, tmp_path)
    assert summary["classes"] == count
    assert summary["files"] == {"sketch": count, "photo": count * len(photo_dirs)}
    shutil.rmtree(tmp_path / photo_dirs[0] / classes[5])
    (tmp_path / sketch_dir / "not_a_class").mkdir()
    with pytest.raises(ClassMismatchError) as caught:
        check_layout(name, tmp_path)
    assert caught.value.missing == [f"photo:{classes[5]}"]
    assert caught.value.extra == ["sketch:not_a_class"]
    assert classes[5] in str(caught.value) and "not_a_class" in str(caught.value)
