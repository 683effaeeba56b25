"""Gap measures on constructed embeddings whose answers are known."""
from __future__ import annotations

import numpy as np
import pytest

from mars_lite.eval.gap import (centroid_distance, chance_agreement, gap_report, gap_table,
                           modality_probe_accuracy, nearest_neighbour_class_agreement)


def _cloud(rng, centre, n=200, noise=0.05):
    x = centre + noise * rng.standard_normal((n, len(centre)))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_centroid_distance_of_identical_and_separated_sets():
    rng = np.random.default_rng(0)
    a = _cloud(rng, np.eye(8)[0])
    assert centroid_distance(a, a) == pytest.approx(0.0, abs=1e-7)
    b = _cloud(rng, np.eye(8)[1])
    # centroids near e0 and e1 (each of norm ~1): distance ~ sqrt(2)
    assert centroid_distance(a, b) == pytest.approx(np.sqrt(2), rel=0.02)


def test_probe_separates_a_gap_and_not_noise():
    rng = np.random.default_rng(1)
    centre = np.ones(16) / 4
    same_a, same_b = _cloud(rng, centre, noise=0.3), _cloud(rng, centre, noise=0.3)
    assert modality_probe_accuracy({"s": same_a, "p": same_b}) < 0.7
    far = _cloud(rng, centre + 2 * np.eye(16)[0], noise=0.3)
    assert modality_probe_accuracy({"s": same_a, "p": far}) > 0.95


def test_nearest_neighbour_agreement_and_chance():
    gallery = np.eye(4)
    gallery_labels = ["a", "b", "c", "d"]
    queries = np.array([[1, 0.1, 0, 0], [0, 1, 0.2, 0], [0, 0, 0.1, 1]])
    assert nearest_neighbour_class_agreement(queries, ["a", "b", "c"], gallery, gallery_labels) == pytest.approx(2 / 3)
    assert chance_agreement(["a", "a", "b"], ["a", "b", "b", "b"]) == pytest.approx(2 / 3 * 1 / 4 + 1 / 3 * 3 / 4)


def test_report_and_table():
    rng = np.random.default_rng(2)
    s, p, t = (_cloud(rng, np.eye(6)[i], n=60) for i in range(3))
    labels = ["x"] * 30 + ["y"] * 30
    report = gap_report(s, p, labels, labels, text=t)
    assert set(report["centroid"]) == {"sketch-photo", "sketch-text", "photo-text"}
    assert report["probe_accuracy"] > 0.95
    table = gap_table({"original": report, "converted": report})
    assert table.count("\n") == 3 and "sketch-photo" in table
