"""The generic folder dataset ``<root>/<modality>/<class>/<file>`` and the scanner all layouts share.

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

Validation (``validate=``) happens once, when the dataset is built:

``"header"`` (default) opens every file's header and lets PIL verify its structure (plus a JPEG
end-marker check) -- cheap, catches garbage and truncated downloads; ``"full"`` decodes every
image (slow, catches everything); ``"none"`` trusts the folder (a bad file then fails when loaded,
with ``ImageLoadError`` naming it). Bad files are never dropped silently: ``on_error="raise"``
raises ``UnreadableImagesError`` naming them, ``on_error="skip"`` leaves them out, records
``(path, reason)`` in ``dataset.skipped`` and warns with the count and the first paths.
A broken or looping symlink (a file or a class folder) is such a bad entry too: reported with
its path and the reason, never an ``OSError`` that aborts the whole scan.
"""
from __future__ import annotations

import errno
import os
import re
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .images import ImageLoadError, check_image, is_image_file, load_image
from .items import MODALITIES, PHOTO, SKETCH, ImageDataset, ImageItem
from ..errors import MarsLiteError

MODALITY_FOLDER_NAMES = {
    SKETCH: ("sketch", "sketches"),
    PHOTO: ("photo", "photos", "image", "images"),
}
ON_ERROR_CHOICES = ("raise", "skip")
VALIDATE_CHOICES = ("header", "full", "none")
_MAX_LISTED = 10  # how many bad paths an error or warning message spells out
# label of the images of a flat folder (no class folders); parentheses: no class folder is named so
UNLABELLED = "(unlabelled)"


class LayoutError(MarsLiteError, FileNotFoundError):
    """A dataset folder does not have the expected layout; the message says what was looked for."""


class UnreadableImagesError(ImageLoadError):
    """One or more image files are corrupt or truncated; ``errors`` holds every (path, reason)."""

    def __init__(self, errors: list[tuple[Path, str]], root: Path | None):
        self.errors = errors
        listed = "; ".join(f"{path} ({reason})" for path, reason in errors[:_MAX_LISTED])
        more = f"; and {len(errors) - _MAX_LISTED} more" if len(errors) > _MAX_LISTED else ""
        where = f" under {root}" if root else ""
        super().__init__(
            errors[0][0],
            f"{len(errors)} unreadable image file(s){where}: {listed}{more}. Remove or replace "
            "them, or pass on_error='skip' to leave them out (they are then listed in .skipped).",
        )
        self.args = (str(self.reason),)

    def __str__(self) -> str:
        return self.reason


def class_key(name: str) -> str:
    """Spelling-insensitive class id: lower case, letters and digits only.

    ``"door handle"``, ``"door_handle"`` and ``"Door-Handle"`` all map to ``"doorhandle"``; the
    benchmark class lists are checked to have no two names with the same key.
    """
    return re.sub(r"[^0-9a-z]+", "", name.lower())


@dataclass(frozen=True)
class ClassFolder:
    """A folder holding the files of one class in one modality; ``label`` is the class name."""

    path: Path
    modality: str
    label: str


def entry_kind(entry: os.DirEntry) -> tuple[str, str | None]:
    """``("dir" | "file" | "other", None)``, or ``("bad", reason)`` for a broken or looping symlink."""
    try:
        if entry.is_dir():
            return "dir", None
        if entry.is_file():
            return "file", None
    except OSError as err:  # ELOOP (a symlink loop), EACCES, ...
        what = "symlink loop" if err.errno == errno.ELOOP else "cannot stat"
        return "bad", f"{what} ({err.strerror or err})"
    if entry.is_symlink():  # neither file nor folder behind it: the target is missing
        try:
            return "bad", f"broken symlink to {os.readlink(entry.path)!r}"
        except OSError as err:
            return "bad", f"broken symlink ({err.strerror or err})"
    return "other", None


def list_class_folders(parent: Path, modality: str, broken: list[tuple[Path, str]] | None = None) -> list[ClassFolder]:
    """Every non-hidden sub-folder of ``parent`` as a class folder labelled by its name.

    A broken or looping symlink among them is appended to ``broken`` as ``(path, reason)``;
    without a ``broken`` list it raises ``LayoutError`` naming it.
    """
    folders = []
    for entry in sorted(os.scandir(parent), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        kind, reason = entry_kind(entry)
        if kind == "dir":
            folders.append(ClassFolder(Path(entry.path), modality, entry.name))
        elif kind == "bad" and broken is None:
            raise LayoutError(f"{entry.path}: {reason}; remove or fix it")
        elif kind == "bad":
            broken.append((Path(entry.path), reason))
    return folders


def _check_options(on_error: str, validate: str) -> None:
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
    if validate not in VALIDATE_CHOICES:
        raise ValueError(f"validate must be one of {VALIDATE_CHOICES}, got {validate!r}")


def _full_check(path: Path) -> str | None:
    try:
        load_image(path)
    except ImageLoadError as err:
        return err.reason
    return None


def scan_class_folders(
    folders: Iterable[ClassFolder],
    root: Path | None,
    on_error: str = "raise",
    validate: str = "header",
    broken: Iterable[tuple[Path, str]] = (),
) -> ImageDataset:
    """Build a dataset from class folders: list files, validate them, apply ``on_error``.

    ``broken`` holds ``(path, reason)`` of bad entries found earlier (class-folder symlinks);
    they are reported (or raised) with the unreadable files.
    """
    _check_options(on_error, validate)
    candidates: list[ImageItem] = []
    ignored: list[Path] = []
    unreadable = list(broken)
    for folder in folders:
        try:
            entries = sorted(os.scandir(folder.path), key=lambda e: e.name)
        except OSError as err:  # a class folder that cannot be listed: report it, scan the rest
            unreadable.append((folder.path, f"cannot list folder ({err.strerror or err})"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue  # .DS_Store and friends: never data
            path = Path(entry.path)
            kind, reason = entry_kind(entry)
            if kind == "bad":
                unreadable.append((path, reason))
            elif kind == "file" and is_image_file(path):
                candidates.append(ImageItem(path, folder.modality, folder.label))
            else:
                ignored.append(path)
    errors: list[tuple[Path, str]] = []
    if validate != "none" and candidates:
        check = check_image if validate == "header" else _full_check
        # Threads: validation is file I/O plus C decoding that releases the GIL.
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            reasons = list(pool.map(check, [item.path for item in candidates]))
        bad = {item.path: reason for item, reason in zip(candidates, reasons) if reason}
        errors = sorted(bad.items())
        candidates = [item for item in candidates if item.path not in bad]
    errors = sorted(errors + unreadable)
    if errors and on_error == "raise":
        raise UnreadableImagesError(errors, root)
    if errors:
        listed = ", ".join(str(path) for path, _ in errors[:5])
        warnings.warn(
            f"skipped {len(errors)} unreadable image file(s) under {root}: {listed}"
            f"{' ...' if len(errors) > 5 else ''} (all of them with reasons in dataset.skipped)",
            stacklevel=3,
        )
    return ImageDataset(candidates, root=root, skipped=errors, ignored=ignored)


def filter_class_folders(
    folders: list[ClassFolder], classes: Iterable[str] | None, where: Path
) -> list[ClassFolder]:
    """Keep the folders of the requested classes (matched by ``class_key``); unknown ones -> error."""
    if classes is None:
        return folders
    wanted = {class_key(name): name for name in classes}
    present = {class_key(folder.label) for folder in folders}
    missing = sorted(name for key, name in wanted.items() if key not in present)
    if missing:
        available = sorted({folder.label for folder in folders})
        raise KeyError(
            f"classes not found under {where}: {missing}. Available ({len(available)}): {available}"
        )
    return [folder for folder in folders if class_key(folder.label) in wanted]


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
    error). ``on_error`` and ``validate`` are explained in the module docstring. Items are
    ordered by modality (sketch first), class, then file name. ``modality`` (``"photo"`` or
    ``"sketch"``) reads only that modality, from ``root``'s modality folder or, without one, from
    ``root`` as a bare folder (``<root>/<class>/<file>`` or unlabelled files); ``None`` reads both
    modalities, and a folder without modality folders as a bare folder of photos.
    """
    _check_options(on_error, validate)
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
