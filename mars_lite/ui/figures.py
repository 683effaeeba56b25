"""Figures the notebooks show: image grids, loss curves and UMAP maps of the embedding space.

Every function returns a figure (plotly ``Figure`` or PIL image) and takes an explicit
``random_state`` where randomness is involved, so notebooks stay thin and reproducible.
"""
from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

MODALITY_SYMBOLS = {"photo": "circle", "sketch": "x", "text": "diamond", "converted sketch": "cross"}


def image_grid(rows: Mapping[str, Sequence], tile: int = 96, pad: int = 4, label_width: int = 90) -> Image.Image:
    """A grid with one row per key (e.g. class name) of PIL images or paths, labelled on the left."""
    from ..data import load_image

    width = label_width + max(len(v) for v in rows.values()) * (tile + pad)
    grid = Image.new("RGB", (width, len(rows) * (tile + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for r, (name, images) in enumerate(rows.items()):
        top = pad + r * (tile + pad)
        draw.text((4, top + tile // 2 - 6), str(name), fill="black")
        for c, image in enumerate(images):
            img = image if isinstance(image, Image.Image) else load_image(image)
            img = img.convert("RGB")
            img.thumbnail((tile, tile))
            grid.paste(img, (label_width + c * (tile + pad), top))
    return grid


def loss_curves(history: Mapping[str, Sequence[float]], title: str = "training losses"):
    """One line per loss term over steps; ``history`` maps term -> values per step."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, values in history.items():
        fig.add_trace(go.Scatter(y=list(values), mode="lines", name=name))
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="loss", height=380)
    return fig


def umap_embed(blocks: Sequence[np.ndarray], random_state: int = 0, n_neighbors: int = 15):
    """Fit one UMAP on the concatenation of (N_i, D) blocks; returns the (N_i, 2) pieces.

    One joint fit, so that points of different blocks share coordinates (cosine metric). It runs
    on one thread: a fixed ``random_state`` forces that anyway (umap warns when it overrides
    ``n_jobs``), and saying so up front keeps the notebook free of that warning.
    """
    with warnings.catch_warnings():  # umap's import says ParametricUMAP needs TensorFlow; it is not used
        warnings.filterwarnings("ignore", message=".*Tensorflow not installed.*", category=ImportWarning)
        import umap

    sizes = [len(b) for b in blocks]
    data = np.concatenate([np.asarray(b, dtype=np.float32) for b in blocks])
    reducer = umap.UMAP(n_neighbors=min(n_neighbors, len(data) - 1), metric="cosine", random_state=random_state,
                        n_jobs=1)
    coords = reducer.fit_transform(data)
    return np.split(coords, np.cumsum(sizes)[:-1])


LEGEND_GREY = "#666666"


def umap_panels(panels: Mapping[str, Mapping[str, tuple]], random_state: int = 0, title: str = "",
                height: int = 440):
    """Side-by-side UMAP scatter plots, coloured by class and marked by modality.

    Args:
        panels: panel title -> {modality name -> ((N, D) embeddings, N labels)}.
        random_state: UMAP seed (each panel is fitted separately with it).
        height: figure height in pixels; the width follows the page (no fixed width).
    Returns:
        a plotly Figure: first the data, one trace per (panel, modality) with ``showlegend=False``
        (hover shows class and modality), then the legend, drawn by point-less traces: one per
        modality (grey, its symbol; clicking it hides that modality in every panel) and one per
        class (its colour, square), in sorted class order.
    """
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    classes = sorted({str(y) for groups in panels.values() for _, labels in groups.values() for y in labels})
    palette = {c: qualitative.Dark24[i % len(qualitative.Dark24)] for i, c in enumerate(classes)}
    modalities = list(dict.fromkeys(m for groups in panels.values() for m in groups))
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=list(panels), horizontal_spacing=0.04)
    for col, groups in enumerate(panels.values(), start=1):
        coords = umap_embed([np.asarray(e) for e, _ in groups.values()], random_state=random_state)
        for (modality, (_, labels)), xy in zip(groups.items(), coords):
            labels = [str(y) for y in labels]
            fig.add_trace(go.Scatter(
                x=xy[:, 0], y=xy[:, 1], mode="markers", name=modality, legendgroup=modality,
                showlegend=False, text=[f"{y} ({modality})" for y in labels], hoverinfo="text",
                marker=dict(symbol=MODALITY_SYMBOLS.get(modality, "circle"), size=7, opacity=0.8,
                            color=[palette[y] for y in labels], line=dict(width=0.5, color="#333")),
            ), row=1, col=col)
    for i, modality in enumerate(modalities):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=modality, legendgroup=modality,
                                 legendgrouptitle_text="modality (symbol)" if i == 0 else None, showlegend=True,
                                 marker=dict(symbol=MODALITY_SYMBOLS.get(modality, "circle"), size=8,
                                             color=LEGEND_GREY)))
    for i, c in enumerate(classes):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=c, legendgroup=f"class: {c}",
                                 legendgrouptitle_text="class (colour)" if i == 0 else None, showlegend=True,
                                 marker=dict(symbol="square", size=9, color=palette[c])))
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(title=title, height=height, autosize=True, margin=dict(l=10, r=10, t=60, b=10),
                      legend=dict(tracegroupgap=4))
    return fig
