"""Plotly scatter figures as small PNG images, drawn with PIL (no kaleido or browser needed).

The README shows figures as PNG files in ``assets/``; plotly's own image export needs kaleido,
which the kit does not depend on. This renders the scatter subplots that
``mars_lite.ui.figures.umap_panels`` builds: one panel per subplot, marker colour and symbol taken
from each trace, the figure title and subplot titles on top, and a legend at the bottom: one entry per
trace name (a trace with ``showlegend=False`` draws points only, a trace without points draws a
legend entry only), in the trace's colour when it has one, wrapped over as many rows as needed.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def _panels(fig) -> dict[str, list]:
    """x-axis name ('x', 'x2', ...) -> the scatter traces drawn on it, in subplot order."""
    panels: dict[str, list] = {}
    for trace in fig.data:
        if _has_points(trace):  # legend-only traces (x=[None]) draw nothing
            panels.setdefault(trace.xaxis or "x", []).append(trace)
    return dict(sorted(panels.items(), key=lambda kv: int(kv[0][1:] or 1)))


def _has_points(trace) -> bool:
    xy = np.column_stack([np.asarray(trace.x if trace.x is not None else [], dtype=float),
                          np.asarray(trace.y if trace.y is not None else [], dtype=float)])
    return bool(np.isfinite(xy).all(axis=1).any()) if len(xy) else False


def _legend(fig) -> list[tuple[str, str, object]]:
    """(name, symbol, colour) of each legend entry, first occurrence of a name; a per-point colour
    list is drawn grey."""
    entries: dict[str, tuple[str, str, object]] = {}
    for trace in fig.data:
        if not trace.name or trace.showlegend is False or trace.name in entries:
            continue
        colour = trace.marker.color
        entries[trace.name] = (trace.name, trace.marker.symbol or "circle",
                               colour if isinstance(colour, str) else "#555555")
    return list(entries.values())


def _marker(draw: ImageDraw.ImageDraw, x: float, y: float, symbol: str, colour, r: int) -> None:
    if symbol == "x" or symbol == "cross":
        offsets = ((-r, -r, r, r), (-r, r, r, -r)) if symbol == "x" else ((-r, 0, r, 0), (0, -r, 0, r))
        for dx0, dy0, dx1, dy1 in offsets:
            draw.line((x + dx0, y + dy0, x + dx1, y + dy1), fill=colour, width=2)
    elif symbol == "square":
        draw.rectangle((x - r, y - r, x + r, y + r), fill=colour, outline="#333333")
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
    width, top = len(panels) * (panel + pad) + pad, 28 + (18 if heading else 0)
    entries = _legend(fig)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    spots, x, row = [], pad + 8, 0
    for name, symbol, colour in entries:
        step = 10 + int(measure.textlength(str(name))) + 24
        if x + step > width - pad and x > pad + 8:  # wrap to the next legend row
            x, row = pad + 8, row + 1
        spots.append((x, row, name, symbol, colour))
        x += step
    image = Image.new("RGB", (width, top + panel + 24 * (row + 1) + pad), "white")
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
    for x, row, name, symbol, colour in spots:
        y = top + panel + 24 * row
        _marker(draw, x, y + 14, symbol, colour, radius + 1)
        draw.text((x + 10, y + 8), str(name), fill="black")
    return image
