"""Figures: grids of real images, loss curves, and a UMAP panel figure."""
from __future__ import annotations

import numpy as np

from mars_lite.ui.figures import image_grid, loss_curves, umap_panels


def test_image_grid_of_real_images(mini_sbir):
    rows = {c: sorted((mini_sbir / "sketch" / c).iterdir())[:3] for c in ("cat", "lion")}
    grid = image_grid(rows, tile=48, pad=2, label_width=40)
    assert grid.size == (40 + 3 * 50, 2 * 50 + 2)
    assert np.asarray(grid).min() < 128   # strokes were pasted


def test_loss_curves_has_a_trace_per_term():
    fig = loss_curves({"total": [3, 2, 1], "clip": [2, 1.5, 1]})
    assert [t.name for t in fig.data] == ["total", "clip"]


def test_umap_panels_shapes_and_legend():
    rng = np.random.default_rng(0)
    emb = lambda n, c: rng.standard_normal((n, 8)) + c  # noqa: E731
    groups = {"sketch": (emb(20, 0), ["a"] * 10 + ["b"] * 10), "photo": (emb(20, 3), ["a"] * 10 + ["b"] * 10)}
    fig = umap_panels({"before": groups, "after": groups}, random_state=0)
    assert len(fig.data) == 4
    assert [t.showlegend for t in fig.data] == [True, True, False, False]
    assert all(len(t.x) == 20 for t in fig.data)
