"""The results side of the sketch pad: top-k photos with class and score, kind switch, gallery choice.

``ResultsPanel`` is plain ipywidgets and holds no model: the app tells it what to show
(``show_results``, ``show_hint``, ``show_message``, ``show_failure``). Every text that reaches an
HTML widget (class names, gallery names, folder paths, error messages) is ``html.escape``d: a class
folder may be named anything, markup included. Its ``signature`` label carries a hash of the
shown results, and the CSS classes ``mars-results-signature`` / ``mars-results-status`` let a
browser test read the state from the page.
"""
from __future__ import annotations

import html
import io
import threading
from collections import OrderedDict
from typing import Sequence

import ipywidgets as widgets
from PIL import Image

from ..method.modalities import RETRIEVAL_KINDS

EMPTY_HINT = "Draw a sketch on the pad: the closest photos appear here at the end of each stroke."
KIND_HELP = {
    "original": "original: the sketch's CLIP embedding z_v against the photos' z_v",
    "converted": "converted: the sketch moved into the photo modality (z_v - m_sketch + m_photo)",
    "semantic": "semantic: both modality vectors removed (z_v - m_own, renormalised)",
}


class ThumbnailCache:
    """PNG bytes of gallery photos at a fixed size, least recently used evicted (thread-safe)."""

    def __init__(self, size: int = 96, capacity: int = 512):
        self.size = size
        self.capacity = capacity
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str) -> bytes:
        with self._lock:
            if path in self._items:
                self._items.move_to_end(path)
                return self._items[path]
        from ..data import load_image

        image = load_image(path)
        image.thumbnail((self.size, self.size), Image.Resampling.LANCZOS)
        if image.width < self.size:  # small photos (64 px) are shown enlarged, not tiny
            scale = self.size / max(image.size)
            image = image.resize((round(image.width * scale), round(image.height * scale)),
                                 Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = buffer.getvalue()
        with self._lock:
            self._items[path] = data
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return data


class ResultsPanel:
    """Grid of the top-k photos plus the query controls.

    Args:
        k: number of result cells.
        galleries: gallery names for the dropdown.
        kind: initial retrieval kind (one of ``RETRIEVAL_KINDS``).
        columns: cells per row.
        thumb: thumbnail side in pixels.
    Attributes (widgets): ``kind``, ``gallery``, ``folder`` + ``add_folder`` (a user's gallery
    folder), ``status``, ``signature``, ``grid`` (of ``cells``, one VBox per tile); ``widget`` is the whole panel.
    """

    def __init__(self, k: int = 10, galleries: Sequence[str] = ("mini_sbir",), kind: str = "converted",
                 columns: int = 5, thumb: int = 96):
        self.thumbnails = ThumbnailCache(thumb)
        self.kind = widgets.ToggleButtons(options=list(RETRIEVAL_KINDS), value=kind, description="query",
                                          tooltips=[KIND_HELP[k] for k in RETRIEVAL_KINDS])
        self.kind.style.button_width = "90px"
        self.gallery = widgets.Dropdown(options=list(galleries), value=list(galleries)[0], description="gallery")
        self.folder = widgets.Text(placeholder="a folder <root>/photo/<class>/<file>", description="add folder",
                                   layout=widgets.Layout(width="340px"))
        self.add_folder = widgets.Button(description="add", layout=widgets.Layout(width="60px"))
        self.status = widgets.HTML()
        self.status.add_class("mars-results-status")
        self.signature = widgets.Label(value="results: none")
        self.signature.add_class("mars-results-signature")
        self._images = [widgets.Image(format="png", layout=widgets.Layout(width=f"{thumb}px", height=f"{thumb}px"))
                        for _ in range(k)]
        self._captions = [widgets.HTML(layout=widgets.Layout(width=f"{thumb + 8}px")) for _ in range(k)]
        # one cell per tile; other parts may add widgets to a cell (the feedback marks): they are
        # shown and hidden with the tile
        self.cells = [widgets.VBox([img, cap], layout=widgets.Layout(align_items="center"))
                      for img, cap in zip(self._images, self._captions)]
        self.grid = widgets.GridBox(self.cells, layout=widgets.Layout(
            grid_template_columns=f"repeat({columns}, {thumb + 12}px)", grid_gap="6px"))
        self.grid.add_class("mars-results-grid")
        controls = widgets.VBox([self.kind, self.gallery, widgets.HBox([self.folder, self.add_folder])])
        self.widget = widgets.VBox([controls, self.status, self.grid, self.signature])
        self.show_hint()

    def add_gallery_option(self, name: str) -> None:
        if name not in self.gallery.options:
            self.gallery.options = list(self.gallery.options) + [name]

    def show_hint(self, text: str = EMPTY_HINT) -> None:
        """The empty-canvas state: a hint, no results (the old tiles are emptied, not just hidden)."""
        self.clear_results()
        self.status.value = f"<i>{html.escape(text)}</i>"

    def show_message(self, text: str, error: bool = False) -> None:
        """A status line (plain text, escaped); the shown results stay."""
        colour = "#b00020" if error else "#555"
        self.status.value = f"<span style='color:{colour}'>{html.escape(one_line(text))}</span>"

    def show_failure(self, text: str) -> None:
        """A failed query: one error line and no results, so nothing stale is left on show."""
        self.clear_results()
        self.show_message(text, error=True)

    def clear_results(self) -> None:
        """Empty every tile. Hiding the grid alone is not enough: a cell whose own visibility is
        "visible" stays on screen inside a hidden parent (CSS), so the tiles are emptied and hidden."""
        for i, (image, caption) in enumerate(zip(self._images, self._captions)):
            image.value = b""
            caption.value = ""
            self._tile_visible(i, False)
        self.grid.layout.visibility = "hidden"
        self.signature.value = "results: none"

    def show_results(self, result) -> None:
        """Fill the grid from a ``live_query.QueryResult``."""
        for i, (image, caption) in enumerate(zip(self._images, self._captions)):
            if i < len(result.indices):
                image.value = self.thumbnails.get(result.paths[i])
                label = html.escape(result.labels[i].replace("_", " "))
                caption.value = (f"<div style='text-align:center;font-size:12px' title='{html.escape(result.paths[i])}'>"
                                 f"{label}<br>{result.scores[i]:.3f}</div>")
                self._tile_visible(i, True)
            else:
                image.value, caption.value = b"", ""
                self._tile_visible(i, False)
        timing = result.timings.get("total")
        spent = f" in {timing:.0f} ms" if timing is not None else ""
        self.status.value = (f"top {len(result.indices)} of gallery <b>{html.escape(result.gallery)}</b> for the "
                             f"<b>{html.escape(result.kind)}</b> query{spent}")
        self.grid.layout.visibility = "visible"
        self.signature.value = f"results: {result.signature} (query #{result.seq})"

    def _tile_visible(self, i: int, visible: bool) -> None:
        for child in self.cells[i].children:
            child.layout.visibility = "visible" if visible else "hidden"


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line (whitespace runs, newlines included, become one space), cut at ``limit``."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
