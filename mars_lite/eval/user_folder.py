"""Sketch search measured on a user's own folders: per-class precision of their sketches on their photos.

Layout (read by ``data.folder.folder_dataset(..., modality=...)``): photos in ``<photos>/<class>/<file>``
(or the kit's ``<photos>/photo/<class>/<file>``), the user's sketches in ``<sketches>/<class>/<file>``.
Every sketch is a query; the gallery is every photo (classes without sketches stay in it as
distractors); a photo is relevant when its class is the sketch's (``class_key`` match, so
``Door handle`` and ``door_handle`` are one class).

Measured per class and over all sketches (means over sketches): P@k for each k in ``ks`` (plain
precision: relevant photos among the top k, divided by k; ties broken pessimistically, as in
``eval.metrics``), mAP@all (``eval.metrics``, the model's recorded convention) and chance = R / G,
the P@k a random ranking expects for k <= G (R photos of the class, G photos in all).

The classes are the user's own, not a benchmark's: no zero-shot split applies. The report says
which of them the checkpoint trained on (its ``classes_seen``); their numbers are not zero-shot.

Refusals, each naming the folder or class and what to do: a gallery of unlabelled files (no class
folders) can be searched but not measured (``UnlabelledGalleryError``); a missing folder
(``LayoutError``); a class folder without images (``EmptyClassError``); sketches of a class the
gallery lacks (``ClassNotInGalleryError``).
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.folder import folder_dataset, is_unlabelled, modality_folder
from ..data.scanning import LayoutError, class_key, list_class_folders
from ..data.items import PHOTO, SKETCH, ImageDataset
from ..embed import embed_items
from ..errors import MarsLiteError
from ..method.loading import DEFAULT, open_model
from ..method.modalities import RETRIEVAL_KINDS
from .evaluation import EmptyClassError, checkpoint_backbone
from .metrics import CONVENTIONS, retrieval_metrics
from .user_report import UserFolderReport

DEFAULT_KS = (5, 10)


class UserFolderError(MarsLiteError, ValueError):
    """A user folder cannot be measured as asked (the message says which folder or class, and what to do)."""


class UnlabelledGalleryError(UserFolderError):
    """The photos are unlabelled files without class folders: searchable, but nothing to measure against."""


class ClassNotInGalleryError(UserFolderError):
    """Sketches of a class that has no photo folder: no photo could be a right answer."""


@dataclass
class UserFolders:
    """A user's photos (the gallery), sketches (the queries) and the classes measured (gallery spelling)."""

    photos: ImageDataset
    sketches: ImageDataset
    classes: tuple[str, ...]


def load_user_folders(photos: str | os.PathLike, sketches: str | os.PathLike, classes: Sequence[str] | None = None,
                      on_error: str = "raise") -> UserFolders:
    """Read and check a photo folder and a sketch folder for :func:`evaluate_user_folder`.

    ``classes``: which classes' sketches to measure (default: every sketch class folder); the
    gallery always holds every photo. Sketch labels are respelled as the gallery's.
    """
    for what, folder in (("photo", photos), ("sketch", sketches)):
        if not Path(folder).is_dir():
            raise LayoutError(f"{what} folder {folder} {'is a file' if Path(folder).exists() else 'does not exist'}: "
                              f"pass the folder that holds your {what}s as <folder>/<class>/<image>")
    gallery = folder_dataset(photos, on_error=on_error, modality=PHOTO)
    if is_unlabelled(gallery):
        raise UnlabelledGalleryError(
            f"{photos} holds unlabelled files (no class folders): metrics need the photos in class folders, "
            f"{photos}/<class>/<image>; an unlabelled folder can still be indexed and searched "
            "('mars-lite index build', 'mars-lite query', the sketch pad)")
    queries = folder_dataset(sketches, on_error=on_error, modality=SKETCH)
    if is_unlabelled(queries):
        raise UserFolderError(f"the sketches in {sketches} are not in class folders: put each sketch in "
                              f"{sketches}/<class>/ named as the photo class it should find")
    sketch_folders = {class_key(f.label): f.label
                      for f in list_class_folders(modality_folder(sketches, SKETCH), SKETCH)}
    if classes is not None:
        unknown = sorted(c for c in classes if class_key(c) not in sketch_folders)
        if unknown:
            raise UserFolderError(f"no sketch folder for the classes {unknown} in {sketches} (its classes: "
                                  f"{sorted(sketch_folders.values())}); draw some or leave them out of --classes")
        sketch_folders = {class_key(c): sketch_folders[class_key(c)] for c in classes}
    photo_folders = {class_key(f.label): f.label for f in list_class_folders(modality_folder(photos, PHOTO), PHOTO)}
    missing = sorted(name for key, name in sketch_folders.items() if key not in photo_folders)
    if missing:
        raise ClassNotInGalleryError(
            f"sketches of the classes {missing} in {sketches} have no photo folder in {photos} (its classes: "
            f"{sorted(photo_folders.values())}): add {photos}/<class>/ with their photos, rename the sketch "
            "folder to the photo class it means, or leave the class out with --classes")
    have = {kind: {class_key(it.label) for it in ds} for kind, ds in (("sketches", queries), ("photos", gallery))}
    empty = [f"{name!r} (no {' and no '.join(k for k in have if key not in have[k])})"
             for key, name in sketch_folders.items() if any(key not in keys for keys in have.values())]
    if empty:
        raise EmptyClassError(f"class folders without images in {sketches} or {photos}: {', '.join(empty)}; "
                              "add images to them, or leave those classes out with --classes")
    chosen = set(sketch_folders)
    spelled = {class_key(it.label): it.label for it in gallery}
    queries = queries.with_items(replace(it, label=spelled[class_key(it.label)])
                                 for it in queries if class_key(it.label) in chosen)
    return UserFolders(gallery, queries, tuple(sorted(spelled[k] for k in chosen)))


def precision_at_k(similarity: np.ndarray, relevant: np.ndarray, ks: Sequence[int]) -> dict[int, np.ndarray]:
    """Per-query P@k: (Q, G) scores and (Q, G) bool relevance -> {k: (Q,) hits in the top k / k}.

    Ties rank irrelevant photos first (pessimistic), so equal scores never flatter a model.
    """
    order = np.lexsort((relevant, -similarity), axis=-1)  # last key first: score down, irrelevant first
    ranked = np.take_along_axis(relevant, order, axis=1)
    return {k: ranked[:, :k].sum(axis=1) / k for k in ks}


@torch.no_grad()
def user_folder_scores(model, sketches, photos, query_labels: Sequence[str], photo_labels: Sequence[str], *,
                       ks: Sequence[int] = DEFAULT_KS, convention: str = "reference",
                       kinds: Sequence[str] = RETRIEVAL_KINDS) -> dict[str, dict]:
    """kind -> {"per_query": {"p_<k>": (Q,)}, "map_per_class": {label: mAP@all}}, from original
    embeddings ``sketches`` (Q, D) and ``photos`` (G, D) turned into each retrieval kind."""
    q_lab, g_lab = np.asarray(query_labels), np.asarray(photo_labels)
    relevant = q_lab[:, None] == g_lab[None, :]
    out = {}
    for kind in kinds:
        q = F.normalize(model.retrieval_embedding(sketches.to(model.device), SKETCH, kind).float().cpu(), dim=-1)
        g = F.normalize(model.retrieval_embedding(photos.to(model.device), PHOTO, kind).float().cpu(), dim=-1)
        similarity = (q @ g.T).numpy()
        precision = precision_at_k(similarity, relevant, ks)
        maps = retrieval_metrics(similarity, q_lab, g_lab, convention, per_class=True)["per_class"]
        out[kind] = {"per_query": {f"p_{k}": v for k, v in precision.items()},
                     "map_per_class": {str(label): v["map_all"] for label, v in maps.items()}}
    return out


def _rows(folders: UserFolders, scores: dict, ks: Sequence[int], classes_seen, photo_counts: Counter) -> list[dict]:
    """One row per measured class: counts, P@k, mAP@all, chance (R / G), whether trained on."""
    labels = np.asarray([it.label for it in folders.sketches])
    seen = None if classes_seen is None else {class_key(c) for c in classes_seen}
    rows = []
    for name in folders.classes:
        mine = labels == name
        row = {"class": name, "sketches": int(mine.sum()), "photos": photo_counts[name]}
        row.update({f"p_{k}": float(scores["per_query"][f"p_{k}"][mine].mean()) for k in ks})
        row["map_all"] = float(scores["map_per_class"][name])
        row["chance"] = photo_counts[name] / len(folders.photos)
        row["seen_in_training"] = None if seen is None else class_key(name) in seen
        rows.append(row)
    return rows


def evaluate_user_folder(model_or_checkpoint, photos: str | os.PathLike, sketches: str | os.PathLike, *,
                         info: dict | None = None, kind: str = "original", ks: Sequence[int] = DEFAULT_KS,
                         classes: Sequence[str] | None = None, convention: str | None = None,
                         cache_dir: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None,
                         pretrained: str | None = DEFAULT, device=None, seed: int | None = None,
                         batch_size: int = 64, progress: bool = False, on_error: str = "raise") -> UserFolderReport:
    """Measure sketch search on a user's photo and sketch folders (see the module docstring).

    Args:
        model_or_checkpoint: a MarsModel, checkpoint file or model config name (``open_model``).
        info: what is known about a ready model (``open_model``'s or ``demo_model``'s info), so a
            checkpoint's training classes are reported; read from the checkpoint otherwise.
        kind: the query embedding of the per-class table (every kind gets an overall row).
        ks: the k of P@k. classes: which classes' sketches to measure (default: all).
        convention: of mAP@all (default: the checkpoint's, else ``reference``).
        cache_dir: embedding cache (None: no cache). out_dir: write ``eval_user_folder.json``/``.md`` there.
    Returns:
        the UserFolderReport (``.files`` holds the written paths).
    """
    if kind not in RETRIEVAL_KINDS:
        raise ValueError(f"kind must be one of {RETRIEVAL_KINDS}, got {kind!r}")
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be whole numbers >= 1, got {ks}")
    folders = load_user_folders(photos, sketches, classes, on_error)  # before a model loads
    model, loaded = open_model(model_or_checkpoint, pretrained=pretrained, device=device, seed=seed)
    info = {k: v for k, v in (info or loaded).items() if k not in ("config", "extra")}
    info["backbone_saved"] = checkpoint_backbone(info["checkpoint"]) if info.get("checkpoint") else None
    convention = convention or info.pop("metric_convention", None) or "reference"
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    embedded = {name: embed_items(model, ds, cache_dir, batch_size=batch_size, progress=progress or None)
                for name, ds in (("sketches", folders.sketches), ("photos", folders.photos))}
    scores = user_folder_scores(model, embedded["sketches"].embeddings, embedded["photos"].embeddings,
                                [it.label for it in folders.sketches], [it.label for it in folders.photos],
                                ks=ks, convention=convention)
    labels = np.asarray([it.label for it in folders.sketches])
    photo_counts = Counter(it.label for it in folders.photos)  # R of each class; chance = R / G
    chance = np.asarray([photo_counts[y] for y in labels]) / len(folders.photos)
    overall = {k: {**{name: float(v.mean()) for name, v in s["per_query"].items()},
                   "map_all": float(np.mean([s["map_per_class"][y] for y in labels]))}
               for k, s in scores.items()}
    report = UserFolderReport(
        photos=str(Path(photos)), sketches=str(Path(sketches)), model=info, kind=kind, ks=list(ks),
        convention=convention, classes=_rows(folders, scores[kind], ks, info.get("classes_seen"), photo_counts),
        overall=overall, chance=float(chance.mean()),
        gallery={"count": len(folders.photos), "classes": folders.photos.classes},
        skipped=sorted({str(path) for ds in (folders.photos, folders.sketches) for path, _ in ds.skipped}))
    if out_dir is not None:
        report.save(out_dir)
    return report
