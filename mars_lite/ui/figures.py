"""Figures the notebooks show: image grids, loss curves and UMAP maps of the embedding space.

Every function returns a figure (plotly ``Figure`` or PIL image) and takes an explicit
``random_state`` where randomness is involved, so notebooks stay thin and reproducible.
"""
from __future__ import annotations

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

    One joint fit, so that points of different blocks share coordinates (cosine metric).
    """
    import umap

    sizes = [len(b) for b in blocks]
    data = np.concatenate([np.asarray(b, dtype=np.float32) for b in blocks])
    reducer = umap.UMAP(n_neighbors=min(n_neighbors, len(data) - 1), metric="cosine", random_state=random_state)
    coords = reducer.fit_transform(data)
    return np.split(coords, np.cumsum(sizes)[:-1])


def umap_panels(panels: Mapping[str, Mapping[str, tuple]], random_state: int = 0, title: str = ""):
    """Side-by-side UMAP scatter plots, coloured by class and marked by modality.

    Args:
        panels: panel title -> {modality name -> ((N, D) embeddings, N labels)}.
        random_state: UMAP seed (each panel is fitted separately with it).
    Returns:
        a plotly Figure with one subplot per panel; hover shows class and modality.
    """
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    classes = sorted({str(y) for groups in panels.values() for _, labels in groups.values() for y in labels})
    palette = {c: qualitative.Dark24[i % len(qualitative.Dark24)] for i, c in enumerate(classes)}
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=list(panels))
    for col, groups in enumerate(panels.values(), start=1):
        coords = umap_embed([np.asarray(e) for e, _ in groups.values()], random_state=random_state)
        for (modality, (_, labels)), xy in zip(groups.items(), coords):
            labels = [str(y) for y in labels]
            fig.add_trace(go.Scatter(
                x=xy[:, 0], y=xy[:, 1], mode="markers", name=modality, legendgroup=modality,
                showlegend=col == 1, text=[f"{y} ({modality})" for y in labels], hoverinfo="text",
                marker=dict(symbol=MODALITY_SYMBOLS.get(modality, "circle"), size=7, opacity=0.8,
                            color=[palette[y] for y in labels], line=dict(width=0.5, color="#333")),
            ), row=1, col=col)
    fig.update_layout(title=title, height=460, width=460 * len(panels), legend_title="modality (colour = class)")
    return fig
