"""Zero-shot split manifests: seen/unseen classes, the seen-class validation rule, generalized gallery.

Shipped manifests (``mars_lite/data/splits/*.json``, each citing the file its lists come from):

=================  =========  ======  ====================================================
name               benchmark  unseen  origin
=================  =========  ======  ====================================================
sketchy_split1     sketchy    25      Shen et al. 2018, random (SAKE ``zeroshot1``)
sketchy_split2     sketchy    21      Yelamarthi et al. 2018, not in ImageNet-1k (``zeroshot0``)
tuberlin_split_a   tuberlin   30      Shen et al. 2018 (SAKE, ZSE-SBIR)
tuberlin_split_b   tuberlin   30      the WACV 2024 code release's test file
quickdraw          quickdraw  30      Dey et al. 2019 (ZSE-SBIR list)
mini_sbir          folder     5       read from ``<data>/mini_sbir/split_zs.json``
=================  =========  ======  ====================================================

Seen classes are the benchmark's full list minus the unseen ones. Class names are resolved to
the benchmark's official spelling (``splits/classes_<benchmark>.json``), so the names in a
``Split`` equal the labels that ``benchmark_dataset`` yields.

**Validation rule** (seen classes only): an item is in the validation part when
``sha256(salt + "|" + modality/classkey/filename)`` read as a fraction in [0, 1) is below
``fraction`` (0.1, salt ``mars_lite-val-v1``). It depends only on the file's own name, so it is
stable when files are added or the dataset is moved, and duplicates of a photo kept in two
folders (Sketchy's original and extended photos) land on the same side.

**Generalized ZS-SBIR** (Yelamarthi et al., ECCV 2018; Dutta & Akata, CVPR 2019): the search
space holds seen as well as unseen classes. The rule shipped here: queries are the unseen-class
sketches; the gallery is every unseen-class photo plus the seen-class photos of the validation
part (photos the model never trained on). The exact seen-photo subsets used in those papers are
not published as file lists, so numbers are comparable in protocol, not image for image.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .benchmarks import SPLITS_DIR, ClassMismatchError, benchmark_classes, check_layout
from .folder import find_modality_folders
from .scanning import LayoutError, class_key, list_class_folders
from .items import PHOTO, SKETCH, ImageDataset, ImageItem
from .locations import MINI_SBIR, resolve_data

VAL_FRACTION = 0.1
VAL_SALT = "mars_lite-val-v1"
GENERALIZED_RULE = (
    "queries: unseen-class sketches; gallery: all unseen-class photos + seen-class photos "
    "of the validation part"
)


@dataclass(frozen=True)
class ValRule:
    """Deterministic per-file validation membership (see the module docstring)."""

    fraction: float = VAL_FRACTION
    salt: str = VAL_SALT

    def is_val(self, item: ImageItem) -> bool:
        key = f"{item.modality}/{class_key(item.label)}/{item.path.name}"
        if item.index is not None:
            key += f"#{item.index}"
        digest = hashlib.sha256(f"{self.salt}|{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2.0**64 < self.fraction


@dataclass(frozen=True)
class SplitParts:
    """A dataset cut by a split: training, validation, zero-shot test and generalized gallery."""

    train: ImageDataset  # seen classes, outside the validation part (both modalities)
    val: ImageDataset  # seen classes, validation part (both modalities)
    query: ImageDataset  # unseen-class sketches
    gallery: ImageDataset  # unseen-class photos
    generalized_gallery: ImageDataset  # unseen photos + seen validation photos


@dataclass(frozen=True)
class Split:
    """A zero-shot split: ``seen`` / ``unseen`` class names, validation rule and provenance."""

    name: str
    benchmark: str  # "sketchy" | "tuberlin" | "quickdraw" | "folder"
    seen: tuple[str, ...]
    unseen: tuple[str, ...]
    val: ValRule
    source: str  # where the class lists come from
    notes: str = ""
    generalized_gallery: str = GENERALIZED_RULE

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(sorted(self.seen + self.unseen))

    def partition(self, dataset: ImageDataset) -> SplitParts:
        """Cut ``dataset`` by this split; a label outside seen+unseen raises ``ClassMismatchError``."""
        seen, unseen = set(self.seen), set(self.unseen)
        extra = sorted(set(dataset.classes) - seen - unseen)
        if extra:
            raise ClassMismatchError(f"dataset {dataset.root} vs split {self.name}", [], extra)
        train, val, query, gallery = [], [], [], []
        for item in dataset:
            if item.label in seen:
                (val if self.val.is_val(item) else train).append(item)
            elif item.modality == SKETCH:
                query.append(item)
            else:
                gallery.append(item)
        seen_val_photos = [item for item in val if item.modality == PHOTO]
        wrap = dataset.with_items  # same root and skipped record, new items
        return SplitParts(wrap(train), wrap(val), wrap(query), wrap(gallery),
                          wrap(gallery + seen_val_photos))


def list_splits() -> list[str]:
    """Names accepted by ``load_split``."""
    shipped = (p.stem for p in SPLITS_DIR.glob("*.json") if not p.stem.startswith("classes_"))
    return sorted(shipped) + [MINI_SBIR]


def _resolve_names(names: list[str], benchmark: str, manifest: Path) -> tuple[str, ...]:
    official = {class_key(name): name for name in benchmark_classes(benchmark)}
    unknown = [name for name in names if class_key(name) not in official]
    if unknown:
        raise ValueError(f"{manifest}: classes not in the {benchmark} class list: {unknown}")
    return tuple(official[class_key(name)] for name in names)


def _load_manifest(name: str) -> Split:
    path = SPLITS_DIR / f"{name}.json"
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    benchmark = data["benchmark"]
    seen = _resolve_names(data["seen"], benchmark, path)
    unseen = _resolve_names(data["unseen"], benchmark, path)
    everything = set(benchmark_classes(benchmark))
    if set(seen) & set(unseen) or set(seen) | set(unseen) != everything:
        raise ValueError(f"{path}: seen and unseen must partition the {len(everything)} {benchmark} classes")
    val = ValRule(float(data["val"]["fraction"]), str(data["val"]["salt"]))
    return Split(name, benchmark, seen, unseen, val, data["source"], data.get("notes", ""))


def folder_split(split_file: str | os.PathLike, root: str | os.PathLike | None = None) -> Split:
    """A split for a folder dataset from a JSON file ``{"seen": [...], "unseen": [...]}``.

    When ``root`` (the folder dataset, ``<root>/<modality>/<class>``) is given, its class folders
    must equal seen + unseen in every modality, else ``ClassMismatchError`` lists the difference.
    """
    split_file = Path(split_file)
    try:
        with open(split_file, encoding="utf-8") as handle:
            data = json.load(handle)
        seen, unseen = tuple(data["seen"]), tuple(data["unseen"])
    except FileNotFoundError as err:
        raise LayoutError(f"split file {split_file} not found") from err
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"{split_file}: expected JSON with 'seen' and 'unseen' lists ({err})") from err
    if set(seen) & set(unseen):
        raise ValueError(f"{split_file}: classes both seen and unseen: {sorted(set(seen) & set(unseen))}")
    split = Split(split_file.parent.name if split_file.name == "split_zs.json" else split_file.stem,
                  "folder", seen, unseen, ValRule(), f"{split_file}")
    if root is not None:
        check_folder_classes(split, Path(root))
    return split


def check_folder_classes(split: Split, root: Path) -> None:
    """Class folders of every modality under ``root`` must be exactly ``split.classes``."""
    expected = set(split.classes)
    modality_dirs = find_modality_folders(root) if root.is_dir() else {}
    if not modality_dirs:
        raise LayoutError(f"{root}: no sketch/photo folders to check split {split.name} against")
    missing, extra = set(), set()
    for modality, parent in modality_dirs.items():
        present = {folder.label for folder in list_class_folders(parent, modality)}
        missing |= {f"{modality}:{c}" for c in expected - present}
        extra |= {f"{modality}:{c}" for c in present - expected}
    if missing or extra:
        raise ClassMismatchError(f"{root} vs split {split.name}", sorted(missing), sorted(extra))


def load_split(name: str, root: str | os.PathLike | None = None) -> Split:
    """Load a split by name (see ``list_splits()``) or from a ``{"seen","unseen"}`` JSON path.

    With ``root`` the class names are checked against the folders on disk (benchmark layout for
    the benchmark splits, ``<root>/<modality>/<class>`` otherwise); a difference raises
    ``ClassMismatchError`` listing the missing and the extra classes. ``mini_sbir`` reads
    ``split_zs.json`` from ``root`` (default: ``resolve_data("mini_sbir")``, the built-in copy unless
    ``MARS_LITE_DATA`` holds one) and is always checked against that folder.
    """
    if name == MINI_SBIR:
        folder = Path(root) if root is not None else resolve_data(MINI_SBIR)
        split = folder_split(folder / "split_zs.json", folder)
        return Split(MINI_SBIR, "folder", split.seen, split.unseen, split.val,
                     f"{folder / 'split_zs.json'} (real data: TU-Berlin sketches, Tiny-ImageNet photos)")
    if str(name).endswith(".json"):
        return folder_split(name, root)
    if not (SPLITS_DIR / f"{name}.json").is_file() or name.startswith("classes_"):
        raise KeyError(f"unknown split {name!r}; known: {list_splits()} (or a path to a .json file)")
    split = _load_manifest(name)
    if root is not None:
        check_layout(split.benchmark, root)
    return split
