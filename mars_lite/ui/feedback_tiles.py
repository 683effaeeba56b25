"""Relevance feedback on the result tiles: "yes" / "no" marks, a reset, and a line saying what refined the query.

``FeedbackTiles`` puts two buttons under every tile of a ``results_panel.ResultsPanel`` and a bar
("reset feedback" + a status line) under its grid. It holds the marks of the sketch on show (gallery
row -> "yes" / "no") and no model: each change of marks calls ``submit(base, relevant, irrelevant)``,
which the app hands to its latest-query-wins runner (``search.feedback.refine_result`` re-ranks
``base``, the sketch's own result), so a click never waits for a search. Clicking a pressed button
again unmarks; with no marks left the sketch's own result comes back.

Rules: a mark follows its photo, not the tile (the refined ranking moves photos about), and keeps
counting when its photo leaves the top k (the status line counts every mark; "reset feedback" drops
them all). Marks are judgments of one sketch's results, so ``drop`` forgets them: the app calls it
on every new stroke, undo, clear, loaded image, pen width, kind or gallery change. A click before
the new sketch's results arrived is ignored (it would judge the old tiles). Every text reaching HTML
is escaped (class names may hold markup).

CSS classes for browser tests: a marked tile's cell ``mars-tile-yes`` / ``mars-tile-no``, the buttons
``mars-mark-yes`` / ``mars-mark-no``, ``mars-feedback-reset`` and ``mars-feedback-status``.
"""
from __future__ import annotations

import html
from typing import Callable

import ipywidgets as widgets

from .pad_controls import BUTTON_FACE, BUTTON_TEXT, edit_button

VERDICTS = ("yes", "no")
MARK_COLOURS = {"yes": "#2e7d32", "no": "#c62828"}  # green / red: the tile's border and its pressed button
MARK_SIGNS = {"yes": "\u2713", "no": "\u2717"}
HINT = "click <b>yes</b> / <b>no</b> under a photo to refine the query from your marks"


class FeedbackTiles:
    """Yes / no marks on a results panel's tiles.

    Args:
        panel: the ``ResultsPanel`` whose ``cells`` get the buttons (its ``widget`` gets the bar).
        submit: ``submit(base, relevant, irrelevant) -> query number``: re-rank ``base`` from the
            marked gallery rows (tuples, possibly empty: the sketch alone).
    Attributes: ``marks`` (gallery row -> verdict), ``base`` (the sketch's own result being
    refined; None until it arrives), ``shown`` (the result on the tiles), ``buttons`` ((yes, no) per
    tile), ``reset_button``, ``status``, ``widget`` (the bar).
    """

    def __init__(self, panel, submit: Callable[[object, tuple, tuple], int]):
        self.panel = panel
        self._submit = submit
        self.marks: dict[int, str] = {}
        self.base = None
        self.shown = None
        self._from_seq = 0  # a sketch result older than this answered a sketch since changed
        self.buttons = []
        for tile, cell in enumerate(panel.cells):
            pair = tuple(self._mark_button(tile, verdict) for verdict in VERDICTS)
            row = widgets.HBox(list(pair), layout=widgets.Layout(justify_content="center", visibility="hidden"))
            cell.children = cell.children + (row,)
            self.buttons.append(pair)
        self.reset_button = edit_button("reset feedback", "undo", "drop every mark: the sketch's own results",
                                        width="140px")
        self.reset_button.add_class("mars-feedback-reset")
        self.reset_button.on_click(lambda _b: self.reset())
        self.status = widgets.HTML()
        self.status.add_class("mars-feedback-status")
        self.widget = widgets.HBox([self.reset_button, self.status], layout=widgets.Layout(align_items="center"))
        children = list(panel.widget.children)
        children.insert(children.index(panel.grid) + 1, self.widget)
        panel.widget.children = tuple(children)
        self._paint()

    def _mark_button(self, tile: int, verdict: str) -> widgets.Button:
        tip = "relevant: more like this photo" if verdict == "yes" else "not relevant: less like this photo"
        button = edit_button(verdict, "", f"{tip} (click again to unmark)", width="46px")
        button.layout.padding, button.layout.height = "0", "24px"
        button.add_class(f"mars-mark-{verdict}")
        button.on_click(lambda _b: self.mark(tile, verdict))
        return button

    # ------------------------------------------------------------------ marks
    def mark(self, tile: int, verdict: str) -> int | None:
        """Toggle ``verdict`` ("yes" / "no") on the photo of tile ``tile`` (0: the best), as its button does.

        Returns the refined query's number, or None when the click is ignored (no results of the
        current sketch on show yet, or no photo on that tile).
        """
        shown = self.shown
        if self.base is None or shown is None or not 0 <= tile < len(shown.indices):
            return self._ignored()
        return self.mark_photo(shown.indices[tile], verdict, shown.labels[tile])

    def mark_photo(self, row: int, verdict: str, label: str | None = None) -> int | None:
        """Toggle ``verdict`` on gallery row ``row`` (shown or not) and ask for the refined results;
        ``label`` names it in the status line. Returns the query's number (None: no sketch result yet)."""
        if verdict not in VERDICTS:
            raise ValueError(f"a mark is one of {VERDICTS}, not {verdict!r}")
        if self.base is None:
            return self._ignored()
        row = int(row)
        said = "unmarked" if self.marks.get(row) == verdict else f"marked {verdict}"
        if self.marks.get(row) == verdict:
            del self.marks[row]
        else:
            self.marks[row] = verdict
        self._paint()
        yes, no = self.relevant, self.irrelevant
        photo = f"a photo of \u201c{label.replace('_', ' ')}\u201d" if label is not None else f"photo {row}"
        self.status.value = html.escape(f"{said}: {photo}; refining from {len(yes)} yes / {len(no)} no ...")
        return self._submit(self.base, yes, no)

    def _ignored(self) -> None:
        self.status.value = "<i>wait for the results of the sketch, then mark them</i>"
        return None

    @property
    def relevant(self) -> tuple[int, ...]:
        return tuple(row for row, verdict in dict(self.marks).items() if verdict == "yes")

    @property
    def irrelevant(self) -> tuple[int, ...]:
        return tuple(row for row, verdict in dict(self.marks).items() if verdict == "no")

    def reset(self) -> int | None:
        """Drop every mark and bring back the sketch's own results (through the runner); the query's
        number, or None when there is no sketch result to go back to."""
        self.marks.clear()
        self._paint()
        if self.base is None:
            return None
        self.status.value = "<i>back to the sketch alone ...</i>"
        return self._submit(self.base, (), ())

    def drop(self, next_seq: int) -> None:
        """Forget the marks and the sketch they judged: the sketch (or its kind or gallery) changed;
        its query will be number ``next_seq`` or later."""
        self.marks.clear()
        self.base = None
        self._from_seq = next_seq
        self._paint()
        self.status.value = ""

    # ---------------------------------------------------------------- display
    def show(self, result) -> None:
        """Paint the marks on the tiles of ``result`` (None: no tiles); called with every answer."""
        self.shown = result
        if result is None:
            self._paint()
            return
        if not result.relevant and not result.irrelevant:
            if result.seq >= self._from_seq:
                self.base = result
            self.status.value = HINT
        else:
            self.status.value = html.escape(f"refined from {len(result.relevant)} yes / "
                                            f"{len(result.irrelevant)} no")
        self._paint()

    def _paint(self) -> None:
        """Borders, CSS classes and pressed buttons from the current marks (marks follow photos)."""
        shown, marks = self.shown, dict(self.marks)
        for tile, (cell, pair) in enumerate(zip(self.panel.cells, self.buttons)):
            row = shown.indices[tile] if shown is not None and tile < len(shown.indices) else None
            verdict = marks.get(row) if row is not None else None
            for other in VERDICTS:
                cell.remove_class(f"mars-tile-{other}")
            if verdict:
                cell.add_class(f"mars-tile-{verdict}")
            cell.layout.border = f"3px solid {MARK_COLOURS[verdict]}" if verdict else "3px solid transparent"
            for button, name in zip(pair, VERDICTS):
                pressed = verdict == name
                button.description = f"{MARK_SIGNS[name]} {name}" if pressed else name
                button.style.button_color = MARK_COLOURS[name] if pressed else BUTTON_FACE
                button.style.text_color = "white" if pressed else BUTTON_TEXT
        self.reset_button.disabled = not marks
