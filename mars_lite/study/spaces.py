"""The study's models and embedding spaces: the seeded model, cached embeddings, captions, the
original / converted / semantic spaces with their gap numbers, and one-sketch retrieval.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .setup import StudySetup, per_class_subset


# ------------------------------------------------------------------------- model + embeddings
def embed(setup: StudySetup, model, dataset, per_class: int | None = None):
    """Cached original embeddings (``EmbeddingSet``) of ``dataset``, ``per_class`` items at most."""
    from ..embed import embed_items

    items = per_class_subset(dataset, per_class, setup.seed)
    return embed_items(model, items, setup.cache_dir, progress=not setup.fast)


@dataclass
class CaptionSet:
    """Caption embeddings: ``texts``, class ``labels``, caption modality ``ids`` (2 sketch, 3 photo),
    ``embeddings`` (T, D) unit vectors."""

    texts: list[str]
    labels: list[str]
    ids: list[int]
    embeddings: torch.Tensor


def caption_set(model, classes: Sequence[str]) -> CaptionSet:
    """Both captions of every class ("a sketch of a ...", "a photo of a ...") and their embeddings."""
    from ..embed import embed_texts
    from ..method.modalities import caption

    rows = [(caption(c, m), c) for c in classes for m in ("sketch", "photo")]
    texts = [text for (text, _), _ in rows]
    return CaptionSet(texts, [c for _, c in rows], [cid for (_, cid), _ in rows], embed_texts(model, texts))


@torch.no_grad()
def embedding_spaces(model, sketches, photos, captions: CaptionSet,
                     kinds: Sequence[str] = ("original", "converted", "semantic")) -> dict:
    """The three groups in each retrieval space: kind -> {"sketch", "photo", "text"} -> (N, D) numpy.

    ``converted`` moves every item into the photo modality (z - m_own + m_photo), ``semantic``
    removes each item's own modality vector (z - m_own); captions use their caption ids (2/3).
    """
    from ..method.modalities import PHOTO_ID

    ids = torch.tensor(captions.ids)
    out = {}
    for kind in kinds:
        text = torch.empty_like(captions.embeddings)
        for cid in sorted(set(captions.ids)):
            rows = ids == cid
            z = captions.embeddings[rows].to(model.device)
            text[rows] = _move(model, z, cid, kind, PHOTO_ID).cpu()
        out[kind] = {"sketch": model.retrieval_embedding(sketches.embeddings.to(model.device), "sketch", kind).cpu(),
                     "photo": model.retrieval_embedding(photos.embeddings.to(model.device), "photo", kind).cpu(),
                     "text": text}
    return {k: {g: v.float().numpy() for g, v in groups.items()} for k, groups in out.items()}


def _move(model, z: torch.Tensor, own: int, kind: str, photo: int) -> torch.Tensor:
    """Caption embeddings in a retrieval space (captions are not an image modality of retrieval_embedding)."""
    m = model.modality_embeddings.weight.to(z.dtype)
    if kind == "original":
        return z
    shifted = z - m[own] + (m[photo] if kind == "converted" else 0)
    return torch.nn.functional.normalize(shifted, dim=-1)


def gap_reports(spaces: dict, sketch_labels: Sequence[str], photo_labels: Sequence[str], seed: int = 0) -> dict:
    """``mars_lite.eval.gap.gap_report`` of every space from :func:`embedding_spaces` (kind -> report)."""
    from ..eval.gap import gap_report

    return {kind: gap_report(g["sketch"], g["photo"], sketch_labels, photo_labels, text=g["text"], seed=seed)
            for kind, g in spaces.items()}


def umap_groups(space: dict, sketch_labels, photo_labels, caption_labels) -> dict:
    """One panel of ``figures.umap_panels``: modality -> (embeddings, labels)."""
    return {"sketch": (space["sketch"], list(sketch_labels)), "photo": (space["photo"], list(photo_labels)),
            "text": (space["text"], list(caption_labels))}


def chance_metrics(query_labels: Sequence[str], gallery_labels: Sequence[str], seed: int = 0,
                   repeats: int = 5) -> dict[str, float]:
    """Retrieval metrics of random scores (mean of ``repeats`` draws): the floor a model must beat."""
    from ..eval.metrics import retrieval_metrics

    rng = np.random.default_rng(seed)
    runs = [retrieval_metrics(rng.random((len(query_labels), len(gallery_labels))), query_labels, gallery_labels)
            for _ in range(repeats)]
    return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}


# -------------------------------------------------------------------------------- tour
@torch.no_grad()
def top_photos(model, sketch, gallery, k: int = 5, kind: str = "converted") -> list[tuple[str, str, float]]:
    """The ``k`` gallery photos closest to one sketch (path or PIL image), best first.

    Args:
        gallery: an EmbeddingSet of photos (original embeddings). kind: retrieval embedding.
    Returns:
        ``[(path, label, cosine score), ...]``.
    """
    query = model.retrieval_embedding(model.encode_sketch([sketch]), "sketch", kind).float().cpu()
    photos = model.retrieval_embedding(gallery.embeddings.to(model.device), "photo", kind).float().cpu()
    scores, rows = (query @ photos.T)[0].topk(min(k, len(gallery)))
    return [(gallery.paths[r], gallery.labels[r], float(s)) for s, r in zip(scores.tolist(), rows.tolist())]
