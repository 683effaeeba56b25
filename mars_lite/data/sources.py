"""The one way to open a dataset: ``open_dataset(data, split)`` reads the folder layout
(``<root>/<modality>/<class>/<file>``) or a benchmark's own layout, as the split says;
``resolve_split(data, split)`` picks the split. Where ``data`` lives: ``locations``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from .benchmarks import benchmark_dataset
from .folder import find_modality_folders, folder_dataset
from .scanning import LayoutError
from .items import ImageDataset
from .locations import resolve_data
from .splits import MINI_SBIR, Split, folder_split, list_splits, load_split


def resolve_split(data: str | os.PathLike | None, split: str | os.PathLike | Split | None = None) -> Split:
    """The split for ``data``: a ``Split``; a name from ``list_splits()``; a JSON file (relative
    paths also tried inside ``data``); or ``None`` for ``<data>/split_zs.json``."""
    if isinstance(split, Split):
        return split
    root = resolve_data(data)
    if split is None:
        if not (root / "split_zs.json").is_file():
            odd = "" if find_modality_folders(root) else " (nor sketch/photo folders: is it the right folder?)"
            raise LayoutError(f"data folder {root} has no split_zs.json{odd}; name a split (one of "
                              f"{list_splits()}) or a JSON file with 'seen' and 'unseen' lists")
        return folder_split(root / "split_zs.json", root)
    text = os.fspath(split)
    if text == MINI_SBIR:
        return load_split(MINI_SBIR, root)
    if text.endswith(".json"):
        path = Path(text).expanduser()
        if not path.is_absolute() and not path.is_file():
            path = root / path
        return load_split(str(path), root)
    # a benchmark's manifest: its classes are checked when the images are read (a subset of the
    # benchmark is a valid folder to evaluate on), not against every folder here
    return load_split(text)


def open_dataset(data: str | os.PathLike | None, split: Split | None = None, *, benchmark: str | None = None,
                 classes: Sequence[str] | None = None, on_error: str = "raise", **options) -> ImageDataset:
    """Every image of ``data`` (restricted to ``classes`` when given).

    The layout is the split's (``split.benchmark``), else ``benchmark`` (``sketchy``, ``tuberlin``,
    ``quickdraw``), else the generic folder layout ``<root>/<modality>/<class>/<file>``.
    ``options`` go to the benchmark reader (e.g. ``photos="original"`` for Sketchy).
    """
    root = resolve_data(data)
    layout = split.benchmark if split is not None else (benchmark or "folder")
    if layout == "folder":
        return folder_dataset(root, on_error=on_error, classes=classes)
    if classes is None and split is not None:
        classes = split.classes
    return benchmark_dataset(layout, root, classes=classes, on_error=on_error, **options)
