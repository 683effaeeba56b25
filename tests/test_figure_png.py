"""figure_png: plotly scatter subplots drawn as PNG with PIL."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mars_lite.ui.figure_png import scatter_png


def _figure():
    fig = make_subplots(rows=1, cols=2, subplot_titles=["before", "after"])
    for col in (1, 2):
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="markers", name="sketch",
                                 marker=dict(symbol="x", color=["#ff0000", "#ff0000"])), row=1, col=col)
        fig.add_trace(go.Scatter(x=[0.5], y=[0.5], mode="markers", name="photo",
                                 marker=dict(symbol="circle", color=["#0000ff"])), row=1, col=col)
    return fig


def test_panels_markers_and_size():
    image = scatter_png(_figure(), panel=100, pad=10, radius=3)
    assert image.size == (2 * 110 + 10, 28 + 100 + 24 + 10)
    titled = _figure().update_layout(title="a heading")
    assert scatter_png(titled, panel=100, pad=10).size[1] == image.size[1] + 18
    px = np.asarray(image)
    red = (px[..., 0] > 200) & (px[..., 1] < 60) & (px[..., 2] < 60)
    blue = (px[..., 2] > 200) & (px[..., 0] < 60) & (px[..., 1] < 60)
    # two red crosses and one blue dot in each of the two panels
    assert red[:, :120].any() and red[:, 120:].any() and blue[:, :120].any() and blue[:, 120:].any()
    # the blue dot sits in the middle of the first panel (data (0.5, 0.5) -> pixel centre)
    ys, xs = np.nonzero(blue[:, :120])
    assert abs(xs.mean() - (10 + 50)) < 3 and abs(ys.mean() - (28 + 50)) < 3


def test_umap_panels_render(tmp_path):
    from mars_lite.ui.figures import umap_panels
    rng = np.random.default_rng(0)
    groups = {"sketch": (rng.standard_normal((12, 6)), ["a"] * 6 + ["b"] * 6),
              "photo": (rng.standard_normal((12, 6)) + 2, ["a"] * 6 + ["b"] * 6)}
    image = scatter_png(umap_panels({"one": groups, "two": groups}, random_state=0), panel=120)
    image.save(tmp_path / "u.png")
    assert (tmp_path / "u.png").stat().st_size < 50_000
    assert np.asarray(image).std() > 5   # something was drawn
