"""The embedded default: built-in data inside the package, and the resolution order
(an explicit folder, else MARS_LITE_DATA, else the built-in copy)."""
from __future__ import annotations

import json
import shutil

import pytest

from mars_lite import settings
from mars_lite.data import (MINI_SBIR, LayoutError, builtin_path, folder_dataset, load_split, open_dataset,
                            quickdraw_dataset, resolve_data, resolve_split)


def test_builtin_mini_sbir_is_inside_the_package():
    root = builtin_path("mini_sbir")
    assert root.is_relative_to(settings.PACKAGE_DIR)
    dataset = folder_dataset(root)
    assert len(dataset.sketches()) == 660 and len(dataset.photos()) == 660
    split = json.loads((root / "split_zs.json").read_text())
    assert len(split["seen"]) == 6 and len(split["unseen"]) == 5
    assert (settings.BUILTIN_DATA_DIR / "README.md").is_file()


def test_builtin_quickdraw_bitmaps():
    root = builtin_path("quickdraw_bitmap")
    drawings = quickdraw_dataset(root)
    assert len(drawings.classes) == 14 and len(drawings) == 14 * 299


def test_unknown_builtin_name_is_named():
    with pytest.raises(KeyError, match="sketchy"):
        builtin_path("sketchy")


def test_resolution_order(monkeypatch, tmp_path):
    monkeypatch.delenv("MARS_LITE_DATA", raising=False)
    assert resolve_data() == builtin_path("mini_sbir") == resolve_data("mini_sbir")
    # MARS_LITE_DATA holding only benchmarks: the built-in name still finds the built-in copy
    (tmp_path / "sake").mkdir()
    monkeypatch.setenv("MARS_LITE_DATA", str(tmp_path))
    assert resolve_data("mini_sbir") == builtin_path("mini_sbir")
    # ... and a mini_sbir of its own wins
    shutil.copytree(builtin_path("mini_sbir"), tmp_path / "mini_sbir")
    assert resolve_data("mini_sbir") == (tmp_path / "mini_sbir").resolve()
    # an explicit folder wins over both
    assert resolve_data(tmp_path / "sake") == (tmp_path / "sake").resolve()


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(LayoutError, match="missing_folder"):
        resolve_data(tmp_path / "missing_folder")


def test_split_and_dataset_by_builtin_name():
    split = resolve_split("mini_sbir")
    assert split.name == MINI_SBIR and split.benchmark == "folder" == load_split(MINI_SBIR).benchmark
    assert sorted(open_dataset("mini_sbir", split, classes=split.unseen).classes) == sorted(split.unseen)


def test_misspelled_data_folder_says_it_does_not_exist(tmp_path):
    with pytest.raises(LayoutError) as caught:
        resolve_split("mini_sbr")  # a typo of the built-in name
    message = str(caught.value)
    assert "'mini_sbr' does not exist" in message and "Did you mean 'mini_sbir'" in message
    assert "quickdraw_bitmap" in message and "split_zs.json" not in message
    (tmp_path / "empty").mkdir()  # a folder that exists but is no dataset: said so
    with pytest.raises(LayoutError, match="no split_zs.json.*is it the right folder"):
        resolve_split(tmp_path / "empty")


def test_cli_train_with_a_missing_data_folder_is_one_line(tmp_path, monkeypatch, capsys):
    from mars_lite.cli.main import main

    monkeypatch.chdir(tmp_path)
    status = main(["train", "--config", "fast", "--data", "missing_folder", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status != 0 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "missing_folder" in lines[0] and "does not exist" in lines[0], err
    assert not (tmp_path / "run").exists()
