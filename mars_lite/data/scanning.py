"""Scanning class folders: list their files, validate them, report the bad ones.

Every folder layout (the kit's ``<root>/<modality>/<class>``, a bare photo folder, Sketchy,
TU-Berlin, QuickDraw-Extended) ends in class folders; :func:`scan_class_folders` turns them into an
:class:`~mars_lite.data.items.ImageDataset`. Only files directly inside a class folder count; hidden
files are ignored, other non-image files and sub-folders go to ``dataset.ignored``.

``validate="header"`` (default) opens every file's header and lets PIL verify its structure (plus a
JPEG end-marker check); ``"full"`` decodes every image; ``"none"`` trusts the folder. Bad files are
never dropped silently: ``on_error="raise"`` raises :class:`UnreadableImagesError` naming them,
``on_error="skip"`` leaves them out, records ``(path, reason)`` in ``dataset.skipped`` and warns. A
broken or looping symlink is such a bad entry too, never an ``OSError`` that aborts the scan.
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
from .items import ImageDataset, ImageItem
from ..errors import MarsLiteError

ON_ERROR_CHOICES = ("raise", "skip")
VALIDATE_CHOICES = ("header", "full", "none")
_MAX_LISTED = 10  # how many bad paths an error or warning message spells out


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


def check_options(on_error: str, validate: str) -> None:
    """ValueError unless ``on_error`` and ``validate`` are among the choices."""
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
    check_options(on_error, validate)
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
