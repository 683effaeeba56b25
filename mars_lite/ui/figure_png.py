"""Plotly scatter figures as small PNG images, drawn with PIL (no kaleido or browser needed).

The README shows figures as PNG files in ``assets/``; plotly's own image export needs kaleido,
which the kit does not depend on. This renders the scatter subplots that
``mars_lite.ui.figures.umap_panels`` builds: one panel per subplot, marker colour and symbol taken
from each trace, the figure title and subplot titles on top, and a legend of the trace names (modalities) at the bottom.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def _panels(fig) -> dict[str, list]:
    """x-axis name ('x', 'x2', ...) -> the scatter traces drawn on it, in subplot order."""
    panels: dict[str, list] = {}
    for trace in fig.data:
        panels.setdefault(trace.xaxis or "x", []).append(trace)
    return dict(sorted(panels.items(), key=lambda kv: int(kv[0][1:] or 1)))


def _marker(draw: ImageDraw.ImageDraw, x: float, y: float, symbol: str, colour, r: int) -> None:
    if symbol == "x" or symbol == "cross":
        offsets = ((-r, -r, r, r), (-r, r, r, -r)) if symbol == "x" else ((-r, 0, r, 0), (0, -r, 0, r))
        for dx0, dy0, dx1, dy1 in offsets:
            draw.line((x + dx0, y + dy0, x + dx1, y + dy1), fill=colour, width=2)
    elif symbol == "diamond":
        draw.polygon([(x, y - r - 1), (x + r + 1, y), (x, y + r + 1), (x - r - 1, y)], fill=colour, outline="#333333")
    else:
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour, outline="#333333")


def _colours(trace, n: int) -> list:
    colour = trace.marker.color
    if colour is None:
        return ["#1f77b4"] * n
    return [colour] * n if isinstance(colour, str) else list(colour)


def scatter_png(fig, panel: int = 300, pad: int = 16, radius: int = 3) -> Image.Image:
    """Render the scatter subplots of ``fig`` side by side as an RGB image.

    Args:
        fig: a plotly Figure of ``go.Scatter`` traces (one subplot per x-axis).
        panel: width and height of each square panel in pixels; pad: margin around panels.
        radius: marker radius in pixels.
    """
    panels = _panels(fig)
    titles = [a.text for a in (fig.layout.annotations or ())]
    heading = fig.layout.title.text if fig.layout.title is not None else None
    width, top, legend_h = len(panels) * (panel + pad) + pad, 28 + (18 if heading else 0), 24
    image = Image.new("RGB", (width, top + panel + legend_h + pad), "white")
    draw = ImageDraw.Draw(image)
    if heading:
        draw.text((pad, 6), str(heading), fill="black")
    for col, traces in enumerate(panels.values()):
        left = pad + col * (panel + pad)
        draw.rectangle((left, top, left + panel, top + panel), outline="#999999")
        if col < len(titles):
            draw.text((left + 4, top - 20), str(titles[col]), fill="black")
        xy = np.concatenate([np.column_stack([t.x, t.y]) for t in traces]).astype(float)
        lo, span = xy.min(0), np.maximum(np.ptp(xy, 0), 1e-9)
        for trace in traces:
            pts = (np.column_stack([trace.x, trace.y]) - lo) / span * (panel - 4 * radius) + 2 * radius
            for (px, py), colour in zip(pts, _colours(trace, len(pts))):
                _marker(draw, left + px, top + panel - py, trace.marker.symbol or "circle", colour, radius)
    names = list(dict.fromkeys(t.name for t in fig.data if t.name))
    symbols = {t.name: t.marker.symbol or "circle" for t in fig.data}
    for i, name in enumerate(names):
        x = pad + 8 + i * 130
        _marker(draw, x, top + panel + 14, symbols[name], "#555555", radius + 1)
        draw.text((x + 10, top + panel + 8), str(name), fill="black")
    draw.text((pad + 8 + len(names) * 130, top + panel + 8), "colour = class", fill="black")
    return image
