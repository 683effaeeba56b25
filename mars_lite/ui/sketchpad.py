"""The live sketch query: an ipycanvas sketch pad beside a results panel, querying as you draw.

``SketchPad`` records pen events (mouse, pen and touch) into a ``strokes.Drawing`` held by the
instance, and draws them on the canvas as they come (``hold_canvas`` batches the redraws of undo
and clear). It never reads pixels back from the browser: the query image is rasterised from the
recorded strokes, so the pad works the same when fed recorded strokes or a sketch image
(``add_stroke``, ``load_strokes``, ``load_image``), which is how notebooks and CI drive it.

``SketchSearchApp`` joins a pad, a ``results_panel.ResultsPanel`` and a
``live_query.SketchSearcher``: at the end of every stroke (and when the kind or gallery changes)
it submits a query to a ``LatestQueryRunner``, so drawing never waits and the newest query wins.
An empty pad shows a hint instead of querying; a failed query, one error line and no tiles. Tile marks
(``feedback_tiles``) re-rank the sketch's result through the same runner, until the sketch, kind or gallery changes.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Callable, Mapping

import ipywidgets as widgets
import numpy as np
from ipycanvas import Canvas, hold_canvas
from PIL import Image

from ..search.feedback import refine_result
from ..search.live import LatestQueryRunner, QueryResult, SketchSearcher
from .feedback_tiles import FeedbackTiles
from .pad_controls import PAD_CSS, edit_button, pen_width_buttons
from .results_panel import ResultsPanel
from ..search.strokes import WIDTH_CHOICES, Drawing, normalize_sketch_image, rasterize

INK_COLOUR = "#222222"


class SketchPad:
    """A square drawing canvas with undo, clear and a stroke-width choice.

    Args:
        size: canvas side in screen pixels.
        line_width: on-screen pen width in pixels at the "medium" width.
    Attributes: ``drawing`` (the recorded strokes), ``canvas``, ``width`` (ToggleButtons labelled
    thin / medium / thick, CSS class ``mars-pen-width``), ``undo_button`` / ``clear_button``, ``count``
    (label "strokes: N", CSS class ``mars-stroke-count``), ``widget`` (the whole pad).
    """

    def __init__(self, size: int = 320, line_width: float = 2.5):
        self.size = size
        self.line_width = line_width
        self.drawing = Drawing()
        self.image: Image.Image | None = None  # a loaded sketch image, shown instead of strokes
        self._listeners: list[Callable[["SketchPad"], None]] = []
        self._last: tuple[float, float] | None = None
        self.canvas = Canvas(width=size, height=size, layout=widgets.Layout(
            width=f"{size}px", height=f"{size}px", border="1px solid #999"))
        self.canvas.add_class("mars-sketch-canvas")
        self.width = pen_width_buttons("medium")
        self.undo_button = edit_button("undo", "undo", "undo the last stroke")
        self.clear_button = edit_button("clear", "trash", "clear the pad and the results")
        self.count = widgets.Label(value="strokes: 0")
        self.count.add_class("mars-stroke-count")
        self.undo_button.on_click(lambda _b: self.undo())
        self.clear_button.on_click(lambda _b: self.clear())
        self.width.observe(lambda _c: self._changed(), names="value")
        self._connect_events()
        self.widget = widgets.VBox([widgets.HTML(PAD_CSS), self.canvas,
                                    widgets.HBox([self.undo_button, self.clear_button, self.count]), self.width])

    def _connect_events(self) -> None:
        canvas = self.canvas
        canvas.on_mouse_down(self._pen_down)
        canvas.on_mouse_move(self._pen_move)
        canvas.on_mouse_up(self._pen_up)
        canvas.on_mouse_out(self._pen_up)  # leaving the canvas ends the stroke
        canvas.on_touch_start(lambda touches: self._pen_down(*touches[0]))
        canvas.on_touch_move(lambda touches: self._pen_move(*touches[0]))
        canvas.on_touch_end(lambda touches: self._pen_up(*(touches[0] if touches else (0, 0))))
        canvas.on_touch_cancel(lambda touches: self._pen_up(0, 0))

    # ------------------------------------------------------------------ state
    def on_change(self, callback: Callable[["SketchPad"], None]) -> None:
        """Call ``callback(pad)`` after every finished stroke, undo, clear, width change or loaded image."""
        self._listeners.append(callback)

    @property
    def width_scale(self) -> float:
        return WIDTH_CHOICES[self.width.value]

    @property
    def is_empty(self) -> bool:
        return self.drawing.is_empty and self.image is None

    def query_image(self) -> Image.Image | None:
        """The image a query encodes: the rasterised strokes, the loaded image, or None when empty."""
        if not self.drawing.is_empty:
            return rasterize(self.drawing.strokes, width_scale=self.width_scale)
        return self.image

    def snapshot(self):
        """What a worker thread needs to build the query image, copied: (strokes, width scale, image)."""
        return self.drawing.strokes, self.width_scale, self.image

    def _changed(self) -> None:
        self.count.value = f"strokes: {len(self.drawing)}"
        for callback in list(self._listeners):
            callback(self)

    # ------------------------------------------------------------- pen events
    def _pen_down(self, x: float, y: float) -> None:
        if self.image is not None:  # drawing replaces a loaded image
            self.image = None
            self.canvas.clear()
        self.drawing.begin(x, y)
        self._last = (x, y)
        self._draw_stroke(np.array([[x, y]], dtype=float))  # a dot until the pen moves

    def _pen_move(self, x: float, y: float) -> None:
        if self._last is None or not self.drawing.extend(x, y):
            return
        self._draw_stroke(np.array([self._last, (x, y)], dtype=float))
        self._last = (x, y)

    def _pen_up(self, _x: float, _y: float) -> None:
        if self._last is None:
            return
        self._last = None
        if self.drawing.end():
            self._changed()

    # ------------------------------------------------------------ drawing API
    def add_stroke(self, points) -> bool:
        """Append a recorded stroke (canvas coordinates), draw it and notify; False when it is empty."""
        if not self.drawing.add_stroke(points):
            return False
        self.image = None
        self._draw_stroke(self.drawing.strokes[-1])
        self._changed()
        return True

    def load_strokes(self, strokes) -> None:
        """Replace the drawing by recorded strokes (one notification)."""
        self.image = None
        self.drawing = Drawing(strokes)
        self.redraw()
        self._changed()

    def load_image(self, image: Image.Image | str | Path) -> None:
        """Show a sketch image (file or PIL) and query with it; strokes are cleared."""
        self.drawing.clear()
        self.image = normalize_sketch_image(image)
        shown = np.asarray(self.image.convert("RGB").resize((self.size, self.size), Image.Resampling.LANCZOS))
        with hold_canvas():
            self.canvas.clear()
            self.canvas.put_image_data(shown, 0, 0)
        self._changed()

    def undo(self) -> None:
        if self.drawing.undo():
            self.redraw()
            self._changed()

    def clear(self) -> None:
        self.drawing.clear()
        self.image = None
        self._last = None
        self.canvas.clear()
        self._changed()

    def redraw(self) -> None:
        """Repaint every stroke in one batch."""
        with hold_canvas():
            self.canvas.clear()
            for stroke in self.drawing.strokes:
                self._draw_stroke(stroke)

    def _draw_stroke(self, stroke: np.ndarray) -> None:
        with hold_canvas():
            self.canvas.stroke_style = self.canvas.fill_style = INK_COLOUR
            self.canvas.line_width = self.line_width * self.width_scale
            self.canvas.line_cap = self.canvas.line_join = "round"
            if len(stroke) == 1:
                self.canvas.fill_circle(float(stroke[0, 0]), float(stroke[0, 1]), self.canvas.line_width / 2)
            else:
                self.canvas.stroke_lines(stroke.tolist())


class SketchSearchApp:
    """Sketch pad + results panel + searcher, wired for live querying.

    Args:
        searcher: a ``SketchSearcher`` (model + named galleries).
        kind: initial retrieval kind.
        pad_size: canvas side in pixels.
        folder_gallery: builds a gallery from a user's folder path (used by the panel's "add
            folder" field); None hides nothing but reports that folders cannot be added.
        about: one line shown above the pad: which model, with which weights, trained on what.
    """

    def __init__(self, searcher: SketchSearcher, kind: str = "converted", pad_size: int = 320,
                 folder_gallery: Callable[[str], Callable] | None = None, about: str | None = None):
        self.searcher = searcher
        self.pad = SketchPad(pad_size)
        self.panel = ResultsPanel(searcher.k, searcher.gallery_names, kind=kind)
        self._folder_gallery = folder_gallery
        self.shown: QueryResult | None = None  # the result on show (None: hint, message or failure)
        self.runner = LatestQueryRunner(self._compute, self._deliver, self._failed)
        self.feedback = FeedbackTiles(self.panel, self._refine)
        self.pad.on_change(lambda _pad: self.request())
        self.panel.kind.observe(lambda _c: self.request(), names="value")
        self.panel.gallery.observe(lambda _c: self.request(), names="value")
        self.panel.add_folder.on_click(lambda _b: self.add_folder(self.panel.folder.value))
        row = widgets.HBox([self.pad.widget, self.panel.widget], layout=widgets.Layout(align_items="flex-start"))
        self.panel.widget.layout.margin = "0 0 0 24px"
        self.about = widgets.HTML(f"<small>{html.escape(about)}</small>" if about else "")
        self.widget = widgets.VBox([self.about, row]) if about else row

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)

    def request(self) -> int | None:
        """Queue a query for the pad's current content (returns its number), or show the hint if empty."""
        self.feedback.drop(self.runner.latest_seq + 1)  # the marks judged the results of the sketch before
        if self.pad.is_empty:
            self.runner.cancel()
            self.shown = None
            self.panel.show_hint()
            return None
        gallery = self.panel.gallery.value
        if not self.searcher.is_built(gallery):
            self.panel.show_message(f"building the index of gallery {gallery} (first use) ...")
        return self.runner.submit(self.pad.snapshot(), self.panel.kind.value, gallery)

    def _refine(self, base: QueryResult, relevant: tuple, irrelevant: tuple) -> int:
        return self.runner.submit(None, base.kind, base.gallery, (base, relevant, irrelevant))

    def _compute(self, snapshot, kind: str, gallery: str, marks=None, *, seq: int) -> QueryResult | None:
        if marks is not None:  # relevance feedback: the sketch's own result re-ranked from the marks
            return refine_result(self.searcher, *marks, seq=seq)
        strokes, width_scale, image = snapshot
        if strokes:
            return self.searcher.query_strokes(strokes, kind, gallery, width_scale=width_scale, seq=seq)
        return self.searcher.query_image(image, kind, gallery, seq=seq)

    def _deliver(self, result: QueryResult | None) -> None:
        self.shown = result
        if result is None:
            self.panel.show_hint()
        else:
            self.panel.show_results(result)
        self.feedback.show(result)

    def _failed(self, error: BaseException, seq: int) -> None:
        self.shown = None  # the old tiles answered an older sketch: they go with the failure
        self.panel.show_failure(f"query #{seq} failed: {type(error).__name__}: {error}")
        self.feedback.show(None)

    def add_folder(self, folder: str) -> None:
        """Add a user's folder (``<root>/photo/<class>/<file>``) as a gallery and select it."""
        path = Path(folder).expanduser()
        if not path.is_dir():
            self.panel.show_message(f"{path} is not a folder", error=True)
            return
        if self._folder_gallery is None:
            self.panel.show_message("this app cannot index folders (no model builder given)", error=True)
            return
        name = f"folder: {path.name}"
        self.searcher.add_gallery(name, self._folder_gallery(str(path)))
        self.panel.add_gallery_option(name)
        self.panel.gallery.value = name  # triggers a query, which builds the index on the worker

    def wait(self, timeout: float = 120.0) -> QueryResult | None:
        """Wait for the newest query; return the result on show (None: the hint or a failed query,
        never ``runner.last_result``, which after a failure is still the previous query's answer)."""
        if self.pad.is_empty:
            return None
        self.runner.wait(timeout)
        return self.shown

    def close(self) -> None:
        self.runner.close()


def live_sketch_app(model, galleries: Mapping[str, object], k: int = 10, kind: str = "converted",
                    cache_dir: str | Path | None = None, pad_size: int = 320, about: str | None = None,
                    **searcher_options) -> SketchSearchApp:
    """Build the app for ``model`` and named galleries (GalleryIndex or callables building one).

    Folders added from the panel are embedded through the embedding cache in ``cache_dir``;
    ``searcher_options`` go to ``SketchSearcher`` (``threads``, ``autocast``, ``approximate``).
    """
    from ..search.index import gallery_dataset, photo_index_from_items

    def folder_gallery(folder: str):
        return lambda: photo_index_from_items(model, gallery_dataset(folder), cache_dir, meta={"data": folder})

    return SketchSearchApp(SketchSearcher(model, galleries, k=k, **searcher_options), kind=kind, pad_size=pad_size,
                           folder_gallery=folder_gallery, about=about)
