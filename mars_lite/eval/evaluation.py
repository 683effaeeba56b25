"""Evaluate a model or checkpoint on a zero-shot split: ``evaluate(...)`` and ``mars-lite evaluate``.

Protocol (docs/method.md, "Retrieval"): queries are the sketches of the evaluated (unseen) classes, the
gallery their photos, relevance is same class, score is cosine similarity. The original CLIP
embeddings come from the shared cache (``mars_lite.embed``); the three query embeddings
(``original``, ``converted``, ``semantic``) are made from them with
``MarsModel.retrieval_embedding``, so one cached embedding pass serves every kind and every
checkpoint that shares the backbone.

Options: ``generalized=True`` adds the seen-class validation photos to the gallery (the split's
generalized rule, ``mars_lite.data.splits``); ``finegrained=True`` adds instance-level Acc@1/Acc@5
(``mars_lite.eval.finegrained``; needs Sketchy's ``<photo_id>-<n>`` sketch names).

Zero-shot bookkeeping: a checkpoint records ``classes_seen``; evaluating any of those classes as
"unseen" raises ``SeenClassError`` unless ``seen_class_evaluation=True``, and then every table
says so. Every evaluated class must have sketches and photos (``EmptyClassError`` names the ones
without), so no class drops out of the means unseen. The report says where the backbone weights
came from (``report.weights_source``) and whether the numbers are comparable with the paper's.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..data.scanning import class_key
from ..data.items import PHOTO, SKETCH, ImageDataset
from ..data.sources import open_dataset, resolve_data, resolve_split
from ..data.splits import Split
from ..embed import EmbeddingSet, embed_items
from .report import EvalReport, weights_source
from .metrics import CONVENTIONS
from .finegrained import finegrained_accuracy, pair_sketches_to_photos
from ..method.loading import DEFAULT, open_model
from ..method.modalities import RETRIEVAL_KINDS
from ..method.model import MarsModel
from ..errors import MarsLiteError

EVAL_PARTS = ("query", "gallery", "seen_photos", "finegrained_photos")  # cache entries of one evaluation


class SeenClassError(MarsLiteError, ValueError):
    """The classes to evaluate as unseen include classes the model was trained on."""


class EmptyClassError(MarsLiteError, ValueError):
    """A class to evaluate has no sketch or no photo: it would silently drop out of the numbers."""


# ------------------------------------------------------------------------------------ data
@dataclass
class EvalData:
    """The image sets of one evaluation, each embedded (and cached) as its own entry.

    ``query``: sketches of the evaluated classes; ``gallery``: their photos; ``seen_photos``:
    seen-class validation photos (generalized setting, else empty); ``finegrained_photos``: the
    photos the fine-grained ranking uses (Sketchy's original photos; else the gallery itself) or None.
    """

    split: Split
    root: Path
    classes: tuple[str, ...]
    query: ImageDataset
    gallery: ImageDataset
    seen_photos: ImageDataset
    finegrained_photos: ImageDataset | None = None

    def parts(self) -> dict[str, ImageDataset]:
        """Non-empty image sets by name: query, gallery, seen_photos, finegrained_photos."""
        fg = None if self.finegrained_photos is self.gallery else self.finegrained_photos  # embed once
        named = dict(zip(EVAL_PARTS, (self.query, self.gallery, self.seen_photos, fg)))
        return {name: ds for name, ds in named.items() if ds is not None and len(ds)}


def load_eval_data(data: str | os.PathLike, split: str | Split | None = None, *,
                   classes: Sequence[str] | None = None, generalized: bool = False, finegrained: bool = False,
                   on_error: str = "raise") -> EvalData:
    """Read the images an evaluation needs.

    Args:
        data: the dataset folder (``<data>/<modality>/<class>/<file>``, or a benchmark root).
        split: see :func:`resolve_split`.
        classes: classes to evaluate (default: the split's unseen classes).
        generalized: also collect the seen-class validation photos (split.val rule).
        finegrained: also collect the photos the fine-grained protocol ranks.
        on_error: ``raise`` or ``skip`` unreadable image files (see ``open_dataset``).
    Raises:
        EmptyClassError: an evaluated class has no sketch or no photo (e.g. an empty folder, or
            every file skipped as unreadable); it is named, never left out of the means silently.
    """
    split = resolve_split(data, split)
    root = resolve_data(data)
    classes = tuple(split.unseen if classes is None else classes)
    unknown = sorted(set(classes) - set(split.classes))
    if unknown:
        raise KeyError(f"classes {unknown} are not in split {split.name!r} (its classes: {list(split.classes)})")
    seen_extra = [c for c in split.seen if c not in classes] if generalized else []
    wanted = list(classes) + seen_extra

    def read(names, **options) -> ImageDataset:
        return open_dataset(root, split, classes=names, on_error=on_error, **options)

    dataset = read(wanted)
    # folder names may spell a class differently ("door handle" / "door_handle"): match by key
    chosen, extra = {class_key(c) for c in classes}, {class_key(c) for c in seen_extra}
    query = dataset.with_items(it for it in dataset if it.modality == SKETCH and class_key(it.label) in chosen)
    gallery = dataset.with_items(it for it in dataset if it.modality == PHOTO and class_key(it.label) in chosen)
    seen = dataset.with_items(it for it in dataset if it.modality == PHOTO and class_key(it.label) in extra
                              and split.val.is_val(it))
    check_every_class(classes, query, gallery, root, skipped=len(getattr(dataset, "skipped", []) or []))
    fg_photos = None
    if finegrained:
        # Sketchy's sketches were drawn from its 100 original photos per class; the extended
        # (ImageNet) photos have no sketches, so the instance-level ranking uses the originals.
        fg_photos = read(list(classes), photos="original").photos() if split.benchmark == "sketchy" else gallery
    return EvalData(split, root, classes, query, gallery, seen, fg_photos)


def check_every_class(classes: Sequence[str], query: ImageDataset, gallery: ImageDataset, root,
                      skipped: int = 0) -> None:
    """Raise ``EmptyClassError`` naming each evaluated class without sketches or without photos.

    A class with no sketch has no query and one with no photo no relevant gallery item: either
    way it would vanish from the per-class means and the table would be over fewer classes than
    the split says, with nothing on the page to show it."""
    have = {kind: {class_key(it.label) for it in part} for kind, part in (("sketches", query), ("photos", gallery))}
    empty = [f"{c!r} (no {' and no '.join(k for k in have if class_key(c) not in have[k])})"
             for c in classes if any(class_key(c) not in keys for keys in have.values())]
    if empty:
        why = f" ({skipped} unreadable file(s) were skipped)" if skipped else ""
        raise EmptyClassError(
            f"{len(empty)} of the {len(classes)} classes to evaluate have no images under {root}{why}: "
            f"{', '.join(empty)}. Their folders are missing or empty; add their images, or leave them out "
            "with classes=[...] (CLI: --classes) so the report says which classes it covers.")


# ----------------------------------------------------------------------------- model
def checkpoint_backbone(path: str | os.PathLike) -> str | None:
    """Which backbone tensors a checkpoint holds (``none``/``layernorm``/``full``), read from its
    metadata only (no tensors); ``None`` when the file does not say."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        raw = (handle.metadata() or {}).get("mars_lite")
    return json.loads(raw).get("backbone_saved") if raw else None


def check_zero_shot(classes: Sequence[str], classes_seen: Sequence[str] | None, *, seen_class_evaluation: bool,
                    what: str = "the model") -> None:
    """Raise ``SeenClassError`` when evaluated classes were seen in training (unless explicitly allowed)."""
    if classes_seen is None or seen_class_evaluation:
        return
    seen_keys = {class_key(name) for name in classes_seen}  # "door handle" == "door_handle"
    overlap = sorted(name for name in classes if class_key(name) in seen_keys)
    if overlap:
        raise SeenClassError(
            f"{what} was trained on {len(overlap)} of the classes to evaluate as unseen: {overlap}. Zero-shot "
            "numbers on them would be wrong. Evaluate a split whose unseen classes the model never saw, or pass "
            "seen_class_evaluation=True (CLI: --seen-class-evaluation) to evaluate seen classes knowingly; "
            "the report is then marked as not zero-shot.")


# ---------------------------------------------------------------------------- scoring
@torch.no_grad()
def retrieval_scores(model: MarsModel, query: EmbeddingSet, gallery: EmbeddingSet, *, convention: str = "reference",
                     kinds: Sequence[str] = RETRIEVAL_KINDS) -> dict[str, dict[str, float]]:
    """Category-level metrics per query embedding kind.

    Args:
        query: sketch embeddings (original z_v, (Q, D)); gallery: photo embeddings ((G, D)).
    Returns:
        kind -> {map_all, map_200, p_100, p_200} from ``mars_lite.eval.metrics.evaluate_embeddings``.
    """
    from .metrics import evaluate_embeddings
    out = {}
    for kind in kinds:
        q = model.retrieval_embedding(query.embeddings.to(model.device), SKETCH, kind).float().cpu()
        g = model.retrieval_embedding(gallery.embeddings.to(model.device), PHOTO, kind).float().cpu()
        scores = evaluate_embeddings(q, g, query.labels, gallery.labels, convention=convention)
        out[kind] = {k: float(v) for k, v in scores.items()}
    return out


def sketch_photo_pairs(sketches: ImageDataset, photos: ImageDataset) -> list[int | None]:
    """Each sketch's paired photo index (Sketchy names ``<photo_id>-<n>``); error when nothing pairs."""
    pairs = pair_sketches_to_photos([it.path for it in sketches], [it.label for it in sketches],
                                    [it.path for it in photos], [it.label for it in photos])
    if all(p is None for p in pairs):
        raise ValueError("fine-grained evaluation: no sketch file is named '<photo_id>-<n>' after a photo of its "
                         "class (Sketchy's convention), so no sketch has a paired photo")
    return pairs


@torch.no_grad()
def finegrained_scores(model: MarsModel, sketches: EmbeddingSet, photos: EmbeddingSet, pairs: list[int | None], *,
                       kinds: Sequence[str] = RETRIEVAL_KINDS) -> dict[str, dict]:
    """Instance-level Acc@1/Acc@5 per kind; ``pairs`` from :func:`sketch_photo_pairs` (same item order)."""
    out = {}
    for kind in kinds:
        q = model.retrieval_embedding(sketches.embeddings.to(model.device), SKETCH, kind).float().cpu()
        g = model.retrieval_embedding(photos.embeddings.to(model.device), PHOTO, kind).float().cpu()
        out[kind] = finegrained_accuracy(q, g, sketches.labels, photos.labels, pairs)
    return out


def _concat(sets: Sequence[EmbeddingSet]) -> EmbeddingSet:
    return EmbeddingSet(torch.cat([s.embeddings for s in sets]), [p for s in sets for p in s.paths],
                        [y for s in sets for y in s.labels], [m for s in sets for m in s.modalities],
                        sets[0].manifest, all(s.from_cache for s in sets))


# --------------------------------------------------------------------------- workflow
def evaluate(model_or_checkpoint, data: str | os.PathLike, split: str | Split | None = None, *,
             convention: str | None = None, generalized: bool = False, finegrained: bool = False,
             classes: Sequence[str] | None = None, seen_class_evaluation: bool = False,
             classes_seen: Sequence[str] | None = None, kinds: Sequence[str] = RETRIEVAL_KINDS,
             cache_dir: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None,
             fast_mode: bool = False, pretrained: str | None = DEFAULT, device=None, seed: int | None = None,
             batch_size: int = 64, progress: bool = False, on_error: str = "raise") -> EvalReport:
    """Evaluate category-level ZS-SBIR (and optionally fine-grained) on a split.

    Args:
        model_or_checkpoint: MarsModel, checkpoint file, or model config name (see ``open_model``).
        data, split: dataset folder and split (see :func:`resolve_split`).
        convention: ``reference``/``standard``; default: the checkpoint's recorded one, else reference.
        generalized: gallery also holds the split's seen-class validation photos.
        finegrained: add instance-level Acc@1/Acc@5 (Sketchy pairing).
        classes: classes to evaluate (default: the split's unseen classes).
        seen_class_evaluation: allow evaluating classes the model trained on (report marked).
        classes_seen: training classes of a bare model (added to those a checkpoint records).
        cache_dir: embedding cache root (None: compute without caching).
        out_dir: when given, write ``eval_<split>[_generalized].json`` and ``.md`` there.
        fast_mode: mark every table "fast mode / not comparable with published numbers".
        pretrained, device, seed: how to build the model (see ``open_model``).
        on_error: ``raise`` (default) or ``skip`` unreadable image files; skipped files are
            counted in the report's notes, and a class left without images is an error.
    Returns:
        the EvalReport (``.files`` holds the written paths).
    """
    split = resolve_split(data, split)  # a wrong data folder or split fails before a model loads
    model, info = open_model(model_or_checkpoint, pretrained=pretrained, device=device, seed=seed)
    info = {k: v for k, v in info.items() if k not in ("config", "extra")}  # what a report names
    info["backbone_saved"] = checkpoint_backbone(info["checkpoint"]) if info["checkpoint"] else None
    info["weights"] = weights_source(info)  # where the backbone weights came from, in words
    if classes_seen is not None:
        # added to, never replacing, what a checkpoint records: the bookkeeping cannot be talked away
        info["classes_seen"] = sorted(set(info["classes_seen"] or []) | set(classes_seen))
    recorded = info.pop("metric_convention")
    convention = convention or recorded or "reference"
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    classes = tuple(split.unseen if classes is None else classes)
    check_zero_shot(classes, info["classes_seen"], seen_class_evaluation=seen_class_evaluation,
                    what=info["checkpoint"] or f"model {info['name']}")  # before any image is read
    eval_data = load_eval_data(data, split, classes=classes, generalized=generalized, finegrained=finegrained,
                               on_error=on_error)
    pairs = sketch_photo_pairs(eval_data.query, eval_data.finegrained_photos) if finegrained else None

    embedded = {name: embed_items(model, ds, cache_dir, batch_size=batch_size, progress=progress or None)
                for name, ds in eval_data.parts().items()}
    gallery_parts = [embedded["gallery"]] + ([embedded["seen_photos"]] if "seen_photos" in embedded else [])
    gallery = _concat(gallery_parts)
    metrics = retrieval_scores(model, embedded["query"], gallery, convention=convention, kinds=kinds)
    fg = None
    if finegrained:
        photos = embedded.get("finegrained_photos", embedded["gallery"])
        fg = finegrained_scores(model, embedded["query"], photos, pairs, kinds=kinds)

    report = EvalReport(
        metrics=metrics, convention=convention, setting="generalized" if generalized else "zero_shot",
        split=eval_data.split.name, benchmark=eval_data.split.benchmark, data=str(eval_data.root), model=info,
        query={"count": len(eval_data.query), "classes": sorted(set(eval_data.query.classes))},
        gallery={"count": len(gallery), "classes": sorted(set(gallery.labels)),
                 "seen_photos": len(eval_data.seen_photos)},
        finegrained=fg, fast_mode=fast_mode, seen_class_evaluation=seen_class_evaluation,
        cache={name: es.from_cache for name, es in embedded.items()},
        skipped=sorted({str(path) for part in eval_data.parts().values() for path, _ in part.skipped}))
    if out_dir is not None:
        report.save(out_dir)
    return report
