"""The check a downloaded dataset must pass before it is marked ready (``Source.layout``).

* benchmark layouts ("sketchy", "tuberlin", "quickdraw"): ``benchmarks.check_layout`` -- the
  authors' folders are found and every modality holds exactly the benchmark's classes;
* "folder": ``<modality>/<class>/<file>`` (at the folder itself or in its single top-level
  sub-folder, as archives usually wrap it), sketches and photos with the same classes, equal to
  ``source.expected_classes`` when given, and every image passing the cheap header check;
* "quickdraw_bitmap": one valid ``(N, 784)`` uint8 ``<class>.npy`` per expected class.
"""
from __future__ import annotations

import os
from pathlib import Path

from .benchmarks import ClassMismatchError, check_layout
from .folder import find_modality_folders, folder_dataset
from .scanning import LayoutError, list_class_folders
from .items import MODALITIES
from .registry import Source


def find_folder_root(directory: Path) -> Path:
    """``directory`` if it holds modality folders, else its single sub-folder that does."""
    if directory.is_dir() and find_modality_folders(directory):
        return directory
    candidates = [
        Path(entry.path)
        for entry in (os.scandir(directory) if directory.is_dir() else ())
        if entry.is_dir() and not entry.name.startswith(".") and find_modality_folders(Path(entry.path))
    ]
    if len(candidates) != 1:
        raise LayoutError(
            f"{directory}: expected <modality>/<class>/<file> here or in exactly one sub-folder, "
            f"found {len(candidates)} candidate folders"
        )
    return candidates[0]


def _check_folder(source: Source, directory: Path) -> dict:
    root = find_folder_root(directory)
    modality_dirs = find_modality_folders(root)
    absent = [m for m in MODALITIES if m not in modality_dirs]
    if absent:
        raise LayoutError(f"{root}: no {absent} folder")
    classes = {m: {f.label for f in list_class_folders(modality_dirs[m], m)} for m in MODALITIES}
    expected = set(source.expected_classes) if source.expected_classes else classes[MODALITIES[0]]
    missing = sorted(f"{m}:{c}" for m in MODALITIES for c in expected - classes[m])
    extra = sorted(f"{m}:{c}" for m in MODALITIES for c in classes[m] - expected)
    if missing or extra:
        raise ClassMismatchError(str(root), missing, extra)
    dataset = folder_dataset(root, on_error="raise", validate="header")
    return {"root": str(root), "classes": len(expected), "files": dict(dataset.counts())}


def _check_bitmaps(source: Source, directory: Path) -> dict:
    from .quickdraw import check_bitmap_file

    problems = []
    for name in source.expected_classes or ():
        path = directory / f"{name}.npy"
        reason = "missing" if not path.is_file() else check_bitmap_file(path)
        if reason:
            problems.append(f"{path} ({reason})")
    if problems:
        raise LayoutError("Quick, Draw! bitmap files not usable: " + "; ".join(problems))
    return {"root": str(directory), "classes": len(source.expected_classes or ())}


def run_layout_check(source: Source, directory: Path) -> dict:
    """Check ``directory`` as ``source.layout`` says; raises ``LayoutError``/``ClassMismatchError``."""
    if source.layout in ("sketchy", "tuberlin", "quickdraw"):
        return check_layout(source.layout, directory)
    if source.layout == "folder":
        return _check_folder(source, directory)
    if source.layout == "quickdraw_bitmap":
        return _check_bitmaps(source, directory)
    raise ValueError(f"unknown layout {source.layout!r} for source {source.name}")
