"""folder_dataset on the real mini_sbir folder and on copies with corrupt files and odd names."""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

from mars_lite.data import (
    ImageLoadError,
    LayoutError,
    UnreadableImagesError,
    folder_dataset,
)
from mars_lite.data.scanning import class_key


@pytest.fixture()
def mini_copy(mini_sbir, tmp_path) -> Path:
    target = tmp_path / "mini"
    shutil.copytree(mini_sbir, target)
    return target


def test_mini_sbir_as_is(mini_sbir):
    dataset = folder_dataset(mini_sbir)
    assert len(dataset) == 1320
    assert len(dataset.classes) == 11
    assert dataset.counts() == {"sketch": 660, "photo": 660}
    assert dataset.skipped == [] and dataset.ignored == []
    for item in dataset:
        assert item.path.is_file()
        assert item.path.parent.name == item.label
        assert item.path.parent.parent.name == item.modality
    assert [i.path for i in dataset] == [i.path for i in folder_dataset(mini_sbir)]  # deterministic
    assert dataset[0].load().mode == "RGB"
    assert dataset.key(dataset[0]).startswith("sketch/")


def test_class_filter_is_spelling_insensitive(mini_sbir):
    subset = folder_dataset(mini_sbir, classes=["Cat", "dog"])
    assert subset.classes == ["cat", "dog"] and len(subset) == 240
    assert len(subset.photos()) == 120 and len(subset.select(classes=["cat"])) == 120
    with pytest.raises(KeyError, match="unicorn"):
        folder_dataset(mini_sbir, classes=["cat", "unicorn"])


def _add_corrupt_files(root: Path) -> tuple[Path, Path]:
    photo = sorted((root / "photo" / "cat").iterdir())[0]
    truncated = root / "photo" / "cat" / "zz_truncated.JPEG"
    truncated.write_bytes(photo.read_bytes()[:900])
    garbage = root / "sketch" / "dog" / "zz_garbage.png"
    garbage.write_bytes(b"not a png at all " * 64)
    (root / "sketch" / "dog" / "README.txt").write_text("notes kept next to the sketches")
    sketch = sorted((root / "sketch" / "dog").iterdir())[0]
    (root / "sketch" / "dog" / "UPPER_COPY.PNG").write_bytes(sketch.read_bytes())
    return truncated, garbage


def test_corrupt_files_raise_naming_them(mini_copy):
    truncated, garbage = _add_corrupt_files(mini_copy)
    with pytest.raises(UnreadableImagesError) as caught:
        folder_dataset(mini_copy)
    message = str(caught.value)
    assert str(truncated) in message and str(garbage) in message and "on_error='skip'" in message
    assert isinstance(caught.value, ImageLoadError)
    assert sorted(path for path, _ in caught.value.errors) == sorted([truncated, garbage])


def test_corrupt_files_skipped_and_reported(mini_copy):
    truncated, garbage = _add_corrupt_files(mini_copy)
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        dataset = folder_dataset(mini_copy, on_error="skip")
    assert len(dataset) == 1321  # + the valid upper-case copy
    assert {path for path, _ in dataset.skipped} == {truncated, garbage}
    assert all(reason for _, reason in dataset.skipped)
    assert [p.name for p in dataset.ignored] == ["README.txt"]
    assert any(item.path.name == "UPPER_COPY.PNG" for item in dataset)


def test_validate_none_defers_errors_to_load_and_full_decodes(mini_copy):
    truncated, garbage = _add_corrupt_files(mini_copy)
    lazy = folder_dataset(mini_copy, validate="none")
    bad = [item for item in lazy if item.path in (truncated, garbage)]
    assert len(lazy) == 1323 and len(bad) == 2
    with pytest.raises(ImageLoadError, match="zz_"):
        bad[0].load()
    with pytest.warns(UserWarning):
        full = folder_dataset(mini_copy, validate="full", on_error="skip")
    assert {path for path, _ in full.skipped} == {truncated, garbage}


def test_modality_folder_aliases(mini_sbir, tmp_path):
    root = tmp_path / "mine"
    shutil.copytree(mini_sbir / "sketch" / "cat", root / "Sketches" / "cat")
    shutil.copytree(mini_sbir / "photo" / "cat", root / "images" / "cat")
    dataset = folder_dataset(root)
    assert dataset.counts() == {"sketch": 60, "photo": 60}
    shutil.copytree(mini_sbir / "photo" / "dog", root / "photo" / "dog")
    with pytest.raises(LayoutError, match="two photo folders"):
        folder_dataset(root)


def test_missing_layout_errors_say_what_is_expected(tmp_path):
    with pytest.raises(LayoutError, match="does not exist"):
        folder_dataset(tmp_path / "absent")
    (tmp_path / "flat").mkdir()
    with pytest.raises(LayoutError, match="sketch"):
        folder_dataset(tmp_path / "flat")
    with pytest.raises(ValueError, match="on_error"):
        folder_dataset(tmp_path, on_error="ignore")


def test_class_only_in_one_modality_warns(mini_sbir, tmp_path):
    root = tmp_path / "lopsided"
    shutil.copytree(mini_sbir / "sketch" / "cat", root / "sketch" / "cat")
    shutil.copytree(mini_sbir / "sketch" / "dog", root / "sketch" / "dog")
    shutil.copytree(mini_sbir / "photo" / "cat", root / "photo" / "cat")
    with pytest.warns(UserWarning, match="no photos.*dog"):
        folder_dataset(root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(folder_dataset(root, classes=["cat"])) == 120


def test_class_key():
    assert class_key("door handle") == class_key("door_handle") == class_key("Door-Handle") == "doorhandle"
    assert class_key("car_(sedan)") == class_key("car (sedan)")


def _add_symlink_trouble(root: Path) -> list[Path]:
    """A file loop (a -> b -> a), a broken file link, a class-folder self loop; returns them."""
    cat = root / "sketch" / "cat"
    (cat / "loop_a.png").symlink_to("loop_b.png")
    (cat / "loop_b.png").symlink_to("loop_a.png")
    (cat / "gone.png").symlink_to("nowhere.png")
    (root / "photo" / "ring").symlink_to("ring")  # a class folder that is a loop
    return [cat / "gone.png", cat / "loop_a.png", cat / "loop_b.png", root / "photo" / "ring"]


def test_symlink_loops_are_skipped_and_reported(mini_copy):
    bad = _add_symlink_trouble(mini_copy)
    with pytest.warns(UserWarning, match="skipped 4 unreadable"):
        dataset = folder_dataset(mini_copy, on_error="skip")
    assert len(dataset) == 1320  # every real image is still there
    reasons = dict(dataset.skipped)
    assert sorted(reasons) == sorted(bad)
    assert "symlink loop" in reasons[bad[1]] and "broken symlink" in reasons[bad[0]]
    assert "symlink loop" in reasons[mini_copy / "photo" / "ring"]


def test_symlink_loops_raise_naming_the_path(mini_copy):
    bad = _add_symlink_trouble(mini_copy)
    with pytest.raises(UnreadableImagesError) as caught:
        folder_dataset(mini_copy)
    assert all(str(path) in str(caught.value) for path in bad)
    assert "symlink loop" in str(caught.value)
    (mini_copy / "sketches").symlink_to("sketches")  # a modality folder that loops: named too
    with pytest.raises(LayoutError, match="sketches.*symlink loop"):
        folder_dataset(mini_copy, on_error="skip")
