"""Split manifests: counts, lists equal to the project's reference notes, disk checks, val rule."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from mars_lite.data import (
    ClassMismatchError,
    benchmark_classes,
    folder_dataset,
    list_splits,
    load_split,
)
from mars_lite.data.benchmarks import SPLITS_DIR
from mars_lite.data.scanning import class_key

REFERENCE = Path(__file__).resolve().parents[1]  # the docs/ notes cite the class lists
EXPECTED = {  # name: (benchmark, unseen, seen)
    "sketchy_split1": ("sketchy", 25, 100),
    "sketchy_split2": ("sketchy", 21, 104),
    "tuberlin_split_a": ("tuberlin", 30, 220),
    "tuberlin_split_b": ("tuberlin", 30, 220),
    "quickdraw": ("quickdraw", 30, 80),
}


def splits_md_lists() -> dict[str, list[str]]:
    """The five class lists of docs/splits.md (its indented blocks, in document order)."""
    blocks, current = [], []
    for line in (REFERENCE / "docs/splits.md").read_text().splitlines():
        if line.startswith("    ") and line.strip():
            current.append(line.strip())
        elif current:
            blocks.append(" ".join(current))
            current = []
    lists = [[name.strip() for name in block.split(",")] for block in blocks + [" ".join(current)] if block]
    return dict(zip(["sketchy_split1", "sketchy_split2", "tuberlin_split_a", "tuberlin_split_b", "quickdraw"], lists))


def method_md_lists() -> dict[str, list[str]]:
    flat = " ".join((REFERENCE / "docs/method.md").read_text().split())
    split2 = re.search(r"Sketchy split 2 unseen classes: (.*?)\.", flat).group(1)
    split_b = re.search(r"TU-Berlin unseen classes of split B .*?\): (.*?)\.", flat).group(1)
    return {"sketchy_split2": split2.split(", "), "tuberlin_split_b": split_b.split(", ")}


def manifest(name: str) -> dict:
    return json.loads((SPLITS_DIR / f"{name}.json").read_text())


def test_list_splits():
    assert list_splits() == sorted(EXPECTED) + ["mini_sbir"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_counts_and_partition_of_the_class_list(name):
    benchmark, n_unseen, n_seen = EXPECTED[name]
    split = load_split(name)
    assert split.benchmark == benchmark
    assert (len(split.unseen), len(split.seen)) == (n_unseen, n_seen)
    assert not set(split.seen) & set(split.unseen)
    assert set(split.seen) | set(split.unseen) == set(benchmark_classes(benchmark))
    assert "github.com" in split.source  # every list cites the file it comes from
    assert 0 < split.val.fraction < 0.5 and split.val.salt


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_unseen_lists_equal_the_reference_notes(name):
    reference = splits_md_lists()[name]
    assert manifest(name)["unseen"] == reference  # as the sources write them
    assert sorted(map(class_key, load_split(name).unseen)) == sorted(map(class_key, reference))


@pytest.mark.parametrize("name", ["sketchy_split2", "tuberlin_split_b"])
def test_lists_equal_method_md(name):
    assert manifest(name)["unseen"] == method_md_lists()[name]


def test_split_a_and_b_share_only_rollerblades():
    a, b = load_split("tuberlin_split_a"), load_split("tuberlin_split_b")
    assert set(a.unseen) & set(b.unseen) == {"rollerblades"}
    assert "door handle" in b.unseen  # resolved to the TU-Berlin folder spelling


def test_mini_sbir_split_and_partition(mini_sbir):
    split = load_split("mini_sbir")
    stored = json.loads((mini_sbir / "split_zs.json").read_text())
    assert (list(split.seen), list(split.unseen)) == (stored["seen"], stored["unseen"])
    parts = split.partition(folder_dataset(mini_sbir))
    assert len(parts.query) == len(parts.gallery) == 5 * 60
    assert set(parts.query.classes) == set(parts.gallery.classes) == set(split.unseen)
    assert {i.modality for i in parts.query} == {"sketch"} and {i.modality for i in parts.gallery} == {"photo"}
    assert len(parts.train) + len(parts.val) == 6 * 120
    assert 0.05 < len(parts.val) / 720 < 0.15
    assert set(parts.train.classes) == set(parts.val.classes) == set(split.seen)
    val_photos = [i for i in parts.val if i.modality == "photo"]
    assert list(parts.generalized_gallery) == list(parts.gallery) + val_photos


def test_val_rule_is_stable_when_files_are_added_or_moved(mini_sbir, tmp_path):
    split = load_split("mini_sbir")
    full = split.partition(folder_dataset(mini_sbir))
    val_names = {(i.label, i.path.name) for i in full.val}
    subset = split.partition(folder_dataset(mini_sbir, classes=["cat", "dog", "pizza"]))
    assert {(i.label, i.path.name) for i in subset.val} == {v for v in val_names if v[0] in ("cat", "dog")}
    moved = tmp_path / "elsewhere"
    shutil.copytree(mini_sbir, moved)
    again = split.partition(folder_dataset(moved))
    assert {(i.label, i.path.name) for i in again.val} == val_names


def test_disk_mismatch_lists_missing_and_extra(mini_sbir, tmp_path):
    copy = tmp_path / "mini"
    shutil.copytree(mini_sbir, copy)
    load_split("mini_sbir", root=copy)  # an exact copy passes
    (copy / "photo" / "snake").rename(copy / "photo" / "snakes")
    with pytest.raises(ClassMismatchError) as caught:
        load_split("mini_sbir", root=copy)
    assert caught.value.missing == ["photo:snake"] and caught.value.extra == ["photo:snakes"]
    assert "missing" in str(caught.value) and "snakes" in str(caught.value)


def test_benchmark_split_checked_against_disk(mini_sbir, tmp_path):
    sketch = sorted((mini_sbir / "sketch" / "cat").iterdir())[0]
    photo = sorted((mini_sbir / "photo" / "cat").iterdir())[0]
    classes = list(benchmark_classes("quickdraw"))
    for name in classes[1:] + ["zeppelin"]:
        for folder, source in (("sketches", sketch), ("images", photo)):
            (tmp_path / folder / name).mkdir(parents=True)
            shutil.copyfile(source, tmp_path / folder / name / source.name)
    with pytest.raises(ClassMismatchError) as caught:
        load_split("quickdraw", root=tmp_path)
    assert caught.value.missing == sorted([f"photo:{classes[0]}", f"sketch:{classes[0]}"])
    assert caught.value.extra == ["photo:zeppelin", "sketch:zeppelin"]


def test_partition_rejects_foreign_classes(mini_sbir):
    with pytest.raises(ClassMismatchError, match="hourglass"):  # not a QuickDraw-Extended class
        load_split("quickdraw").partition(folder_dataset(mini_sbir, classes=["cat", "hourglass"]))


def test_user_split_file_and_unknown_names(mini_sbir, tmp_path):
    path = tmp_path / "my_split.json"
    path.write_text(json.dumps({"seen": ["cat"], "unseen": ["dog"]}))
    split = load_split(str(path))
    assert (split.seen, split.unseen, split.name) == (("cat",), ("dog",), "my_split")
    with pytest.raises(KeyError, match="sketchy_split1"):
        load_split("sketchy_split3")
