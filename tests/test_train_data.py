"""Training rows, the seen-class validation split and the samplers, on the real mini_sbir data."""
from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest
import torch

from mars_lite.data import LayoutError
from mars_lite.data.sources import resolve_split
from mars_lite.data import ImageItem
from mars_lite.train.rows import (ClassBalancedSampler, TrainingDataError, UnseenClassError, build_rows,
                                  epoch_batches, make_sampler, seen_split)


@pytest.fixture(scope="module")
def split(mini_sbir):
    return resolve_split(mini_sbir)


def test_rows_carry_captions_and_modality_ids(tmp_path):
    items = [ImageItem(tmp_path / "a.png", "sketch", "teddy_bear"), ImageItem(tmp_path / "b.jpg", "photo", "teddy_bear"),
             ImageItem(tmp_path / "c.png", "sketch", "cat"), ImageItem(tmp_path / "d.png", "sketch", "teddy_bear")]
    rows = build_rows(items)
    assert [rows.caption_of(i) for i in range(4)] == ["a sketch of a teddy bear", "a photo of a teddy bear",
                                                      "a sketch of a cat", "a sketch of a teddy bear"]
    assert rows.modality_ids.tolist() == [[1, 2], [0, 3], [1, 2], [1, 2]]
    assert len(rows.captions) == 3 and rows.caption_index[0] == rows.caption_index[3]
    with pytest.raises(UnseenClassError, match="cat"):
        build_rows(items, unseen=["cat"])
    with pytest.raises(TrainingDataError, match="empty"):
        build_rows([])


def test_seen_split_reads_only_seen_classes_and_is_deterministic(mini_sbir, split):
    parts = seen_split(mini_sbir, split, val_fraction=0.2)
    assert set(parts.train.classes) == set(split.seen) == set(parts.val.classes)
    assert not set(parts.train.classes + parts.val.classes) & set(split.unseen)
    train_paths = {item.path for item in parts.train}
    val_paths = {item.path for item in parts.val}
    assert not train_paths & val_paths
    total = len(train_paths) + len(val_paths)
    assert total == 60 * 2 * len(split.seen)              # every seen-class image, nothing else
    assert 0.12 < len(val_paths) / total < 0.28           # hash rule: 0.2 in expectation
    again = seen_split(mini_sbir, split, val_fraction=0.2)
    assert [i.path for i in again.val] == [i.path for i in parts.val]
    reseeded = seen_split(mini_sbir, split, val_fraction=0.2, seed=7)
    assert {i.path for i in reseeded.val} != val_paths
    smaller = seen_split(mini_sbir, split, val_fraction=0.1)
    # the same salted hash decides: the 10% part lies inside the 20% part
    assert {i.path for i in smaller.val} <= val_paths
    assert {"sketch", "photo"} == {item.modality for item in parts.val}


def test_empty_folder_and_empty_class_are_clear_errors(tmp_path, mini_sbir, split):
    empty = tmp_path / "empty"
    for modality in ("sketch", "photo"):
        for name in split.seen + split.unseen:
            (empty / modality / name).mkdir(parents=True)
    (empty / "split_zs.json").write_text(json.dumps({"seen": list(split.seen), "unseen": list(split.unseen)}))
    with pytest.raises(TrainingDataError, match="holds no images"):
        seen_split(empty, resolve_split(empty))
    holed = tmp_path / "holed"
    shutil.copytree(mini_sbir, holed)
    for modality in ("sketch", "photo"):
        for file in (holed / modality / "cat").iterdir():
            file.unlink()
    with pytest.raises(TrainingDataError, match="cat"):
        seen_split(holed, resolve_split(holed))
    with pytest.raises(LayoutError, match="split_zs.json"):
        resolve_split(tmp_path)
    with pytest.raises(TrainingDataError, match="does not exist"):
        seen_split(tmp_path / "missing", split)


def test_two_ranks_see_the_rows_of_one_process(split):
    labels = [f"c{i % 5}" for i in range(103)]
    one = epoch_batches(make_sampler(labels, seed=3), epoch=2, num_rows=103, global_batch=8)
    ranks = [epoch_batches(make_sampler(labels, seed=3, num_replicas=2, rank=r), 2, 103, 8) for r in range(2)]
    assert one.shape == (12, 8) and ranks[0].shape == (12, 4)
    for step in range(12):
        assert sorted(one[step].tolist()) == sorted(ranks[0][step].tolist() + ranks[1][step].tolist())
    assert not torch.equal(one, epoch_batches(make_sampler(labels, seed=3), 3, 103, 8))   # new order per epoch
    assert sorted(one.flatten().tolist()) == sorted(set(one.flatten().tolist()))        # no repeats
    with pytest.raises(ValueError, match="divisible"):
        epoch_batches(make_sampler(labels, seed=0, num_replicas=3, rank=0), 0, 103, 8)


def test_class_balanced_sampler_equalises_classes():
    labels = ["big"] * 900 + ["small"] * 100
    sampler = ClassBalancedSampler(labels, seed=0)
    order = epoch_batches(sampler, 0, len(labels), 100).flatten().tolist()
    counts = Counter(labels[i] for i in order)
    assert 0.4 < counts["small"] / len(order) < 0.6          # 10% of rows, half of the draws
    again = epoch_batches(ClassBalancedSampler(labels, seed=0), 0, len(labels), 100)
    assert again.flatten().tolist() == order
    halves = [epoch_batches(ClassBalancedSampler(labels, num_replicas=2, rank=r, seed=0), 0, len(labels), 100)
              for r in range(2)]
    assert sorted(torch.cat(halves, 1).flatten().tolist()) == sorted(order)
