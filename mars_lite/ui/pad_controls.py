"""The sketch pad's buttons: the pen-width choice and the undo / clear buttons, labelled and coloured.

Every button carries its own text and face colour: a front end whose theme puts a light text colour
on the widgets' light grey buttons (dark themes outside JupyterLab) shows blank buttons otherwise.
``ToggleButtons`` have no text-colour style, so the pen choice is coloured by a stylesheet scoped to
its CSS class ``mars-pen-width`` (``PAD_CSS``, shown as an HTML widget beside the pad).
"""
from __future__ import annotations

import ipywidgets as widgets

from ..search.strokes import WIDTH_CHOICES

BUTTON_FACE, BUTTON_TEXT = "#e8e8e8", "#222222"
PAD_CSS = (f"<style>.mars-pen-width .widget-toggle-button {{color: {BUTTON_TEXT}; background-color: {BUTTON_FACE};}}"
           ".mars-pen-width .widget-toggle-button.mod-active {background-color: #bdbdbd;}</style>")


def pen_width_buttons(value: str = "medium") -> widgets.ToggleButtons:
    """One labelled button per ``WIDTH_CHOICES`` name (thin / medium / thick), each with a tooltip."""
    buttons = widgets.ToggleButtons(options=[(name, name) for name in WIDTH_CHOICES], value=value,
                                    description="pen", tooltips=[f"{name} pen" for name in WIDTH_CHOICES])
    buttons.style.button_width = "72px"
    buttons.add_class("mars-pen-width")
    return buttons


def edit_button(description: str, icon: str, tooltip: str, width: str = "80px") -> widgets.Button:
    """A button with its label beside its icon, in the pad's colours."""
    button = widgets.Button(description=description, icon=icon, tooltip=tooltip, layout=widgets.Layout(width=width))
    button.style.button_color, button.style.text_color = BUTTON_FACE, BUTTON_TEXT
    return button
