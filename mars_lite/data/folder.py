"""The generic folder dataset ``<root>/<modality>/<class>/<file>``, and a bare folder of one modality.

Accepted modality folder names (case-insensitive): ``sketch``/``sketches`` for sketches and
``photo``/``photos``/``image``/``images`` for photos. This is the layout of
the built-in ``mini_sbir`` and of a user's own data. Only files directly inside a class folder
count; hidden files are ignored, and other non-image files and sub-folders are listed in
``dataset.ignored``.

A *bare* folder, one modality without the modality level, is read too: ``<root>/<class>/<file>``
(labelled by class folder) or image files directly in ``<root>`` (one unlabelled set, every label
``UNLABELLED``). ``folder_dataset(root, modality="photo"|"sketch")`` reads ``root`` so (or its
modality folder, when it has the kit's layout); with ``modality=None`` a folder without modality
folders that holds images this way is read as a gallery of photos, so a user's photo folder works
wherever a gallery is accepted (``index build``, ``query``, the sketch pad).

Files are listed and validated by :mod:`mars_lite.data.scanning` (``validate=``, ``on_error=``).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from .images import is_image_file
from .items import MODALITIES, PHOTO, SKETCH, ImageDataset
from .scanning import (ClassFolder, LayoutError, check_options, entry_kind, filter_class_folders, list_class_folders,
                       scan_class_folders)

MODALITY_FOLDER_NAMES = {
    SKETCH: ("sketch", "sketches"),
    PHOTO: ("photo", "photos", "image", "images"),
}
# label of the images of a flat folder (no class folders); parentheses: no class folder is named so
UNLABELLED = "(unlabelled)"


def find_modality_folders(root: Path) -> dict[str, Path]:
    """Map modality -> folder for the children of ``root`` named as in MODALITY_FOLDER_NAMES."""
    found: dict[str, Path] = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        kind, reason = entry_kind(entry)
        for modality, names in MODALITY_FOLDER_NAMES.items():
            if entry.name.lower() in names and kind == "bad":
                raise LayoutError(f"{modality} folder {entry.path}: {reason}; remove or fix it")
            if entry.name.lower() in names and kind == "dir":
                if modality in found:
                    raise LayoutError(
                        f"{root} has two {modality} folders ({found[modality].name!r} and "
                        f"{entry.name!r}); keep one of {names}."
                    )
                found[modality] = Path(entry.path)
    return found


def is_unlabelled(dataset: ImageDataset) -> bool:
    """Whether ``dataset`` came from a flat folder of files without class folders (no metrics then)."""
    return len(dataset) > 0 and all(item.label == UNLABELLED for item in dataset)


def modality_folder(root: str | os.PathLike, modality: str) -> Path:
    """The folder holding ``modality``'s class folders: ``root``'s modality folder when it has the
    kit's layout, else ``root`` itself (a bare folder). ``LayoutError`` when ``root`` has modality
    folders but not this one."""
    root = Path(root)
    found = find_modality_folders(root)
    if found and modality not in found:
        raise LayoutError(f"{root} has a {'/'.join(found)} folder but no {modality} folder; point at the folder "
                          f"that holds your {modality}s (<folder>/<class>/<image>)")
    return found.get(modality, root)


def _bare_dataset(root: Path, modality: str, on_error: str, classes, validate: str) -> ImageDataset:
    """``<root>/<class>/<file>``, else the image files directly in ``root`` labelled ``UNLABELLED``."""
    broken: list[tuple[Path, str]] = []
    folders = list_class_folders(root, modality, broken)
    loose = [Path(e.path) for e in sorted(os.scandir(root), key=lambda e: e.name)
             if not e.name.startswith(".") and entry_kind(e)[0] == "file" and is_image_file(Path(e.path))]
    if not folders:
        if classes is not None:
            raise LayoutError(f"{root} has no class folders, so the classes {sorted(classes)} cannot be chosen; "
                              f"put each class's images in {root}/<class>/")
        return scan_class_folders([ClassFolder(root, modality, UNLABELLED)], root, on_error, validate, broken)
    dataset = scan_class_folders(filter_class_folders(folders, classes, root), root, on_error, validate, broken)
    if loose:
        warnings.warn(f"{len(loose)} image file(s) directly in {root} are left out (e.g. {loose[0].name}): "
                      "beside class folders, an image must be inside one", stacklevel=3)
        dataset.ignored.extend(loose)
    return dataset


def folder_dataset(
    root: str | os.PathLike,
    on_error: str = "raise",
    classes: Iterable[str] | None = None,
    validate: str = "header",
    modality: str | None = None,
) -> ImageDataset:
    """Read ``<root>/<modality>/<class>/<file>`` (or a bare folder, see below) into an ``ImageDataset``.

    ``classes`` keeps only those classes (spelling-insensitive match, unknown names are an
    error). ``on_error`` and ``validate`` are explained in :mod:`mars_lite.data.scanning`. Items are
    ordered by modality (sketch first), class, then file name. ``modality`` (``"photo"`` or
    ``"sketch"``) reads only that modality, from ``root``'s modality folder or, without one, from
    ``root`` as a bare folder (``<root>/<class>/<file>`` or unlabelled files); ``None`` reads both
    modalities, and a folder without modality folders as a bare folder of photos.
    """
    check_options(on_error, validate)
    if modality is not None and modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES} or None, got {modality!r}")
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(
            f"dataset folder {root} does not exist. Expected <root>/<modality>/<class>/<file>, "
            "e.g. mini_sbir/sketch/cat/1.png and mini_sbir/photo/cat/a.jpg, or a photo folder <root>/<class>/<file>."
        )
    modality_dirs = find_modality_folders(root)
    if modality is not None:
        folder = modality_folder(root, modality)
        dataset = _bare_dataset(folder, modality, on_error, classes, validate)
        if not len(dataset) and not dataset.skipped:
            raise LayoutError(f"no {modality} images in {folder}: put them in {folder}/<class>/<image>, one folder "
                              "per class" + (" (or directly in it, unlabelled)" if modality == PHOTO else ""))
        return dataset
    if not modality_dirs:
        try:
            dataset = _bare_dataset(root, PHOTO, on_error, classes, validate)
        except LayoutError:  # no class folders to choose classes from: say what is expected
            dataset = ImageDataset([])
        if len(dataset) or dataset.skipped:
            return dataset  # a user's photo folder, as a gallery
        accepted = [name for names in MODALITY_FOLDER_NAMES.values() for name in names]
        raise LayoutError(
            f"no modality folder in {root}: expected sub-folders named one of {accepted} "
            "(each holding one folder per class), or, for a gallery, photos in <root>/<class>/<image>."
        )
    broken: list[tuple[Path, str]] = []
    folders = [
        folder
        for modality in MODALITIES
        if modality in modality_dirs
        for folder in list_class_folders(modality_dirs[modality], modality, broken)
    ]
    folders = filter_class_folders(folders, classes, root)
    per_modality = {m: {f.label for f in folders if f.modality == m} for m in modality_dirs}
    if len(per_modality) == 2 and per_modality[SKETCH] != per_modality[PHOTO]:
        only_sketch = sorted(per_modality[SKETCH] - per_modality[PHOTO])
        only_photo = sorted(per_modality[PHOTO] - per_modality[SKETCH])
        warnings.warn(
            f"{root}: classes with sketches but no photos {only_sketch}, "
            f"with photos but no sketches {only_photo}",
            stacklevel=2,
        )
    return scan_class_folders(folders, root, on_error=on_error, validate=validate, broken=broken)
