"""Sketchy-Extended, TU-Berlin-Extended and QuickDraw-Extended in the layouts their authors ship.

Each reader looks for the folders below (first match wins, case-sensitive as distributed) under
the given root or one of its usual wrapper folders, and yields the common ``ImageItem``s.
Labels are the benchmark's official class names (``splits/classes_<name>.json``); folder names
that differ only in spelling (``door handle`` / ``door_handle``) are matched by ``class_key``.

**Sketchy-Extended** -- the Sketchy database (Sangkloy et al., SIGGRAPH 2016) ships
``rendered_256x256.7z`` holding ``256x256/sketch/tx_<augmentation>/<class>/<photo>-<n>.png`` and
``256x256/photo/tx_<augmentation>/<class>/<photo>.jpg``; ``tx_000000000000`` is the
un-augmented variant used for retrieval. The extension by Liu et al. (CVPR 2017) adds
``EXTEND_image_sketchy/<class>/*.jpg`` (ImageNet photos; 73,002 photos in all as papers quote
it, the folder also repeats the original photos). SAKE (Liu et al.,
ICCV 2019) redistributes resized copies with ``_ready`` suffixes, which is what its and
ZSE-SBIR's file lists name (``256x256/photo/tx_000000000000_ready/cup/n03063073_5868.jpg``).
``photos="all"`` reads original + extended photos (the SAKE/ZSE-SBIR galleries),
``"extended"`` only the extended ones (the MA-ZS-SBIR gallery, 10,453 photos for split 2),
``"original"`` only the 100 per class that the sketches were drawn from.

**TU-Berlin-Extended** -- Eitz et al. (SIGGRAPH 2012) ship ``sketches_png.zip`` with
``png/<class>/<n>.png`` (250 classes x 80 sketches, 1111x1111); the photo extension (Zhang et al.,
ECCV 2016; distributed by Liu et al., CVPR 2017) is ``ImageResized/<class>/*.JPEG`` whose folder
names are squashed and partly misspelt (``flyingbird``, ``tromobone``). SAKE's copies are
``png_ready/`` and ``ImageResized_ready/`` with the sketch spellings
(``ImageResized_ready/banana/n07753592_7382.JPEG``). Raw ``ImageResized`` names are mapped with
the alias table below (the renames in Doodle2Search's ``download_datasets.sh``).

**QuickDraw-Extended** -- Dey et al. (CVPR 2019) ship ``QuickDraw_sketches_final.zip`` and
``QuickDraw_images_final.zip`` holding ``QuickDraw_sketches_final/<class>/*.png`` and
``QuickDraw_images_final/<class>/*.jpg`` (110 classes, 330,000 sketches, 204,000 photos);
ZSE-SBIR's lists call the same folders ``sketches/`` and ``images/``
(``sketches/bat/5147947173937152.png``).
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ..errors import MarsLiteError
from .scanning import (ClassFolder, LayoutError, class_key, entry_kind, filter_class_folders, list_class_folders,
                       scan_class_folders)
from .items import PHOTO, SKETCH, ImageDataset

SPLITS_DIR = Path(__file__).resolve().parent / "splits"


class ClassMismatchError(MarsLiteError, ValueError):
    """Class folders on disk differ from a class list; ``missing`` and ``extra`` list them."""

    def __init__(self, where: str, missing: list[str], extra: list[str]):
        self.missing, self.extra = missing, extra
        super().__init__(
            f"class mismatch in {where}: missing {len(missing)} {missing}; "
            f"extra {len(extra)} {extra}. Check that the folder is the dataset the split was "
            "made for, with one folder per class named as its authors ship it."
        )


@dataclass(frozen=True)
class BenchmarkLayout:
    """Where a benchmark keeps its files: candidate folders per modality, first match wins."""

    name: str
    title: str
    wrappers: tuple[str, ...]
    sketch_dirs: tuple[str, ...]
    photo_groups: dict[str, tuple[str, ...]]
    aliases: dict[str, str] = field(default_factory=dict)  # class_key(folder) -> official name


LAYOUTS = {
    "sketchy": BenchmarkLayout(
        "sketchy",
        "Sketchy-Extended",
        wrappers=("", "Sketchy", "sketchy", "dataset/Sketchy", "rendered_256x256"),
        sketch_dirs=("256x256/sketch/tx_000000000000_ready", "256x256/sketch/tx_000000000000",
                     "sketch/tx_000000000000"),
        photo_groups={
            "original": ("256x256/photo/tx_000000000000_ready", "256x256/photo/tx_000000000000",
                         "photo/tx_000000000000"),
            "extended": ("EXTEND_image_sketchy_ready", "EXTEND_image_sketchy", "extended_photo"),
        },
    ),
    "tuberlin": BenchmarkLayout(
        "tuberlin",
        "TU-Berlin-Extended",
        wrappers=("", "TUBerlin", "TU-Berlin", "tuberlin", "dataset/TUBerlin"),
        sketch_dirs=("png_ready", "png", "sketches"),
        photo_groups={"photos": ("ImageResized_ready", "ImageResized", "images")},
        aliases={
            "spacesshuttle": "space shuttle", "tromobone": "trombone", "chandeler": "chandelier",
            "griaffe": "giraffe", "diamod": "diamond", "spidar": "spider",
            "wristwatching": "wrist-watch", "mouse": "mouse (animal)", "pipe": "pipe (for smoking)",
        },
    ),
    "quickdraw": BenchmarkLayout(
        "quickdraw",
        "QuickDraw-Extended",
        wrappers=("", "QuickDraw", "quickdraw", "QuickDraw-Extended"),
        sketch_dirs=("sketches", "QuickDraw_sketches_final"),
        photo_groups={"photos": ("images", "QuickDraw_images_final")},
    ),
}
PHOTO_CHOICES = ("all", "original", "extended")


@lru_cache(maxsize=None)
def benchmark_classes(name: str) -> tuple[str, ...]:
    """The full class list of a benchmark (125 Sketchy, 250 TU-Berlin, 110 QuickDraw)."""
    if name not in LAYOUTS:
        raise KeyError(f"unknown benchmark {name!r}; known: {sorted(LAYOUTS)}")
    with open(SPLITS_DIR / f"classes_{name}.json", encoding="utf-8") as handle:
        return tuple(json.load(handle)["classes"])


@dataclass(frozen=True)
class ResolvedLayout:
    """The folders found for one benchmark: dataset ``root``, sketch folder, photo folders."""

    layout: BenchmarkLayout
    root: Path
    sketch_dir: Path
    photo_dirs: dict[str, Path]


def resolve_layout(name: str, root: str | os.PathLike, photos: str = "all") -> ResolvedLayout:
    """Find a benchmark's folders under ``root``; ``LayoutError`` lists what was looked for."""
    layout = LAYOUTS.get(name)
    if layout is None:
        raise KeyError(f"unknown benchmark {name!r}; known: {sorted(LAYOUTS)}")
    root = Path(root)
    for wrapper in layout.wrappers:
        base = root / wrapper if wrapper else root
        sketch = next((base / c for c in layout.sketch_dirs if (base / c).is_dir()), None)
        if sketch is None:
            continue
        photo_dirs, missing = {}, []
        for group, candidates in layout.photo_groups.items():
            if photos != "all" and len(layout.photo_groups) > 1 and group != photos:
                continue
            found = next((base / c for c in candidates if (base / c).is_dir()), None)
            if found is None:
                missing.append(f"{group} photos: one of {list(candidates)}")
            else:
                photo_dirs[group] = found
        if missing:
            raise LayoutError(
                f"{layout.title} at {base}: sketches found in {sketch}, but no " + "; ".join(missing)
            )
        return ResolvedLayout(layout, base, sketch, photo_dirs)
    looked = [f"{w or '.'}/{c}" for w in layout.wrappers for c in layout.sketch_dirs]
    raise LayoutError(
        f"no {layout.title} sketches under {root}: looked for {looked}. See the layout notes in "
        "mars_lite/data/benchmarks.py or run 'mars-lite data list'."
    )


def _official_folders(
    resolved: ResolvedLayout, broken: list | None = None
) -> tuple[list[ClassFolder], list[ClassFolder]]:
    """Class folders of every modality, relabelled with official names; also the unknown ones.

    Broken or looping symlinks go to ``broken`` (see ``list_class_folders``)."""
    layout = resolved.layout
    official = {class_key(name): name for name in benchmark_classes(layout.name)}
    sources = [(SKETCH, resolved.sketch_dir)] + [(PHOTO, d) for d in resolved.photo_dirs.values()]
    known, unknown = [], []
    for modality, parent in sources:
        for folder in list_class_folders(parent, modality, broken):
            key = class_key(folder.label)
            name = official.get(key) or official.get(class_key(layout.aliases.get(key, "")))
            if name is None:
                unknown.append(folder)
            else:
                known.append(ClassFolder(folder.path, modality, name))
    return known, unknown


def check_layout(name: str, root: str | os.PathLike, photos: str = "all") -> dict:
    """Check a benchmark folder: layout found and every modality has exactly the official classes.

    Raises ``LayoutError`` or ``ClassMismatchError`` (missing and extra classes); returns a
    summary dict (folders, number of classes, files per modality) on success.
    """
    resolved = resolve_layout(name, root, photos=photos)
    known, unknown = _official_folders(resolved)
    expected = set(benchmark_classes(name))
    missing, extra = set(), {f"{f.modality}:{f.label}" for f in unknown}
    groups = [(SKETCH, resolved.sketch_dir)] + [(PHOTO, d) for d in resolved.photo_dirs.values()]
    for modality, parent in groups:
        present = {f.label for f in known if f.path.parent == parent}
        missing |= {f"{modality}:{c}" for c in expected - present}
    if missing or extra:
        raise ClassMismatchError(f"{LAYOUTS[name].title} at {resolved.root}", sorted(missing), sorted(extra))
    files = {SKETCH: 0, PHOTO: 0}
    for folder in known:
        files[folder.modality] += sum(1 for e in os.scandir(folder.path) if entry_kind(e)[0] == "file")
    return {
        "benchmark": name,
        "root": str(resolved.root),
        "sketch_dir": str(resolved.sketch_dir),
        "photo_dirs": {group: str(path) for group, path in resolved.photo_dirs.items()},
        "classes": len(expected),
        "files": files,
    }


def benchmark_dataset(
    name: str,
    root: str | os.PathLike,
    classes: Iterable[str] | None = None,
    on_error: str = "raise",
    validate: str = "header",
    photos: str = "all",
) -> ImageDataset:
    """Read benchmark ``name`` ("sketchy", "tuberlin", "quickdraw") from ``root``.

    ``classes`` keeps those classes (spelling-insensitive; unknown names are an error);
    ``photos`` picks Sketchy's photo sets (see the module docstring); ``on_error`` and
    ``validate`` work as in ``folder_dataset``. Class folders that are not in the benchmark's
    list are kept under their folder name, with a warning.
    """
    if photos not in PHOTO_CHOICES:
        raise ValueError(f"photos must be one of {PHOTO_CHOICES}, got {photos!r}")
    resolved = resolve_layout(name, root, photos=photos)
    broken: list[tuple[Path, str]] = []
    known, unknown = _official_folders(resolved, broken)
    if unknown:
        warnings.warn(
            f"{resolved.root}: folders not in the {len(benchmark_classes(name))}-class list of "
            f"{resolved.layout.title}, kept under their folder names: "
            f"{sorted({f.label for f in unknown})}",
            stacklevel=2,
        )
    folders = filter_class_folders(known + unknown, classes, resolved.root)
    return scan_class_folders(folders, resolved.root, on_error=on_error, validate=validate, broken=broken)


def sketchy_extended(root: str | os.PathLike, **options) -> ImageDataset:
    """Sketchy-Extended (125 classes); options as for ``benchmark_dataset``."""
    return benchmark_dataset("sketchy", root, **options)


def tuberlin_extended(root: str | os.PathLike, **options) -> ImageDataset:
    """TU-Berlin-Extended (250 classes); options as for ``benchmark_dataset``."""
    return benchmark_dataset("tuberlin", root, **options)


def quickdraw_extended(root: str | os.PathLike, **options) -> ImageDataset:
    """QuickDraw-Extended (110 classes); options as for ``benchmark_dataset``."""
    return benchmark_dataset("quickdraw", root, **options)
