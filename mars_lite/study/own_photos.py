"""Notebook 08's demonstration folders: "your own photos", built from the kit's own data.

A team brings a photo folder and draws a few sketches; until they do, :func:`build_own_photos`
lays out the same thing from a built-in data set (default: mini_sbir's unseen classes, which the
demo checkpoint never trained on)::

    <dest>/photos/<class>/<image>        the photo folder (the gallery)
    <dest>/my_sketches/<class>/<image>   a handful of sketches per class (stand-ins for the team's drawings)
    <dest>/unlabelled/photo_<nnn>.<ext>  photos without class folders (searchable, not measurable)
    <dest>/own_photos.json               what was built from what; the kit's mark on the folder

The folder is built beside ``dest`` and swapped in by renames, so a killed build never leaves a
half folder; a later call with the same request reuses it. A ``dest`` that exists without the
kit's mark is someone's own folder and is never replaced (``OwnPhotosFolderError``).
"""
from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .. import settings
from ..data.items import PHOTO, SKETCH
from ..data.sources import open_dataset
from ..data.splits import MINI_SBIR, load_split
from ..errors import MarsLiteError
from ..files import atomic_write, install_folder

MARK = "own_photos.json"
FORMAT = "mars_lite.own_photos/1"
PHOTOS, SKETCHES, UNLABELLED = "photos", "my_sketches", "unlabelled"


class OwnPhotosFolderError(MarsLiteError, FileExistsError):
    """The destination exists and is not a folder the kit built: it is never replaced."""


@dataclass(frozen=True)
class OwnPhotos:
    """Where the demonstration folders are, and what the unlabelled files were (known to the kit only)."""

    root: Path
    classes: tuple[str, ...]
    unlabelled_classes: dict[str, str] = field(default_factory=dict)  # file name -> class it was copied from

    @property
    def photos(self) -> Path:
        return self.root / PHOTOS

    @property
    def sketches(self) -> Path:
        return self.root / SKETCHES

    @property
    def unlabelled(self) -> Path:
        return self.root / UNLABELLED


def default_destination() -> Path:
    """``<artifacts>/own_photos``."""
    return settings.artifacts_dir() / "own_photos"


def build_own_photos(dest: str | os.PathLike | None = None, *, source: str = MINI_SBIR,
                     classes: Sequence[str] | None = None, photos_per_class: int = 20, sketches_per_class: int = 5,
                     unlabelled: int = 20, seed: int = 0) -> OwnPhotos:
    """Build (or reuse) the demonstration folders under ``dest`` (default ``<artifacts>/own_photos``).

    Args:
        source: a built-in data set or folder in the kit's layout (``<root>/<modality>/<class>/<file>``).
        classes: the classes to copy (default: mini_sbir's unseen classes).
        photos_per_class, sketches_per_class: files copied per class (a random choice fixed by ``seed``).
        unlabelled: photos copied without class folders (drawn from those in ``photos``).
    """
    dest = Path(dest) if dest is not None else default_destination()
    classes = tuple(classes if classes is not None else load_split(MINI_SBIR).unseen)
    request = {"source": str(source), "classes": list(classes), "photos_per_class": photos_per_class,
               "sketches_per_class": sketches_per_class, "unlabelled": unlabelled, "seed": seed}
    record = _read_mark(dest)
    if record is not None and record.get("request") == request:
        return OwnPhotos(dest, classes, record["unlabelled_classes"])
    dataset = open_dataset(source, classes=classes)
    rng = random.Random(seed)
    chosen = {}
    for modality, n in ((PHOTO, photos_per_class), (SKETCH, sketches_per_class)):
        for name in classes:
            items = list(dataset.select(modality=modality, classes=[name]))
            if len(items) < n:
                raise ValueError(f"{source} has {len(items)} {modality}s of {name!r}, fewer than the {n} asked for")
            chosen[modality, name] = sorted(rng.sample(items, n), key=lambda item: item.path.name)
    pool = [item for name in classes for item in chosen[PHOTO, name]]
    loose = rng.sample(pool, min(unlabelled, len(pool)))
    names = {f"photo_{i:03d}{item.path.suffix.lower()}": item for i, item in enumerate(loose)}

    def write(staging: Path) -> None:
        for (modality, name), items in chosen.items():
            folder = staging / (PHOTOS if modality == PHOTO else SKETCHES) / name
            for item in items:
                _copy(item.path, folder / item.path.name)
        for file_name, item in names.items():
            _copy(item.path, staging / UNLABELLED / file_name)
        mark = {"format": FORMAT, "request": request,
                "unlabelled_classes": {name: item.label for name, item in names.items()}}
        atomic_write(staging / MARK, lambda tmp: Path(tmp).write_text(json.dumps(mark, indent=1) + "\n"))

    install_folder(dest, write)
    return OwnPhotos(dest, classes, {name: item.label for name, item in names.items()})


def _read_mark(dest: Path) -> dict | None:
    """The kit's record in ``dest``; ``None`` when ``dest`` is absent; an error when it is someone else's."""
    if not dest.exists() and not dest.is_symlink():
        return None
    try:
        record = json.loads((dest / MARK).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise OwnPhotosFolderError(f"{dest} exists and was not built by the kit (no {MARK} in it): it is left as it "
                                   "is; point PHOTOS/SKETCHES at it to use it, or pass another dest to build the demo")
    return record


def _copy(src: Path, dst: Path) -> None:
    atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))
