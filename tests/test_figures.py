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


def _groups(rng):
    emb = lambda n, c: rng.standard_normal((n, 8)) + c  # noqa: E731
    return {"sketch": (emb(20, 0), ["a"] * 10 + ["b"] * 10), "photo": (emb(20, 3), ["a"] * 10 + ["b"] * 10)}


def test_umap_panels_shapes_and_legend():
    groups = _groups(np.random.default_rng(0))
    fig = umap_panels({"before": groups, "after": groups}, random_state=0)
    data = [t for t in fig.data if t.showlegend is False]
    assert len(data) == 4 and all(len(t.x) == 20 for t in data)  # (panel, modality) point traces
    legend = [t for t in fig.data if t.showlegend]
    assert all(t.x == (None,) for t in legend)  # legend entries draw no points
    # a class legend: one entry per class, in that class's colour, beside the modality entries
    classes = [t for t in legend if t.legendgroup.startswith("class")]
    assert [t.name for t in classes] == ["a", "b"]
    colours = {y: c for t in data for y, c in zip(t.text, t.marker.color)}
    assert [t.marker.color for t in classes] == [colours["a (sketch)"], colours["b (sketch)"]]
    assert [t.name for t in legend if t not in classes] == ["sketch", "photo"]


def test_umap_panels_fit_the_page():
    groups = _groups(np.random.default_rng(1))
    fig = umap_panels({"original": groups, "converted": groups, "semantic": groups}, random_state=0)
    assert fig.layout.width is None or fig.layout.width <= 1000  # three panels once were 1380 px wide
    assert fig.layout.autosize is not False and 300 <= fig.layout.height <= 600


def test_umap_projection_emits_no_warnings():
    import warnings

    from mars_lite.ui.figures import umap_embed

    blocks = [np.random.default_rng(2).standard_normal((30, 16)), np.random.default_rng(3).standard_normal((10, 16))]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coords = umap_embed(blocks, random_state=0)
    assert [c.shape for c in coords] == [(30, 2), (10, 2)]
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
