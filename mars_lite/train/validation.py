"""Seen-class validation during training: validation losses and sketch-to-photo mAP.

Model selection never looks at unseen classes: the validation part is held out from the seen
classes (:mod:`mars_lite.train.rows`). Each validation embeds its images with the current backbone
(frozen mode: once, from the embedding cache), then

* the loss terms on the validation rows, in fixed batches of the training batch size (a seeded
  order, so batches mix classes and modalities as training batches do), averaged over rows;
* retrieval: validation sketches as queries against validation photos as the gallery, scored by
  cosine similarity of the chosen retrieval embedding (``converted`` by default, as the
  reference), with the reference metric convention; ``val_map`` is mAP@all.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..embed import embed_items, embed_texts
from .fast_frozen.loss import CachedPairs
from ..eval.metrics import evaluate_embeddings
from .rows import TrainRows

VAL_TERMS = ("clip", "semantic", "discriminator", "reconstruction", "orthogonal", "total")


@dataclass
class ValidationSet:
    """Validation rows on embeddings of one backbone state.

    Attributes:
        pairs: the rows with their captions, for the losses.
        image_embeds: (N, D) z_v; labels and modalities: N entries each.
    """

    pairs: CachedPairs
    image_embeds: torch.Tensor
    labels: list[str]
    modalities: list[str]


def embed_rows(model, rows: TrainRows, cache_dir=None, batch_size: int = 64, progress=None):
    """(EmbeddingSet of the rows' images, (C, D) caption embeddings) with the model's backbone."""
    images = embed_items(model, list(rows.items), cache_dir, batch_size=batch_size, progress=progress)
    return images, embed_texts(model, list(rows.captions)).to(images.embeddings.device)


def validation_set(rows: TrainRows, image_embeds: torch.Tensor, caption_embeds: torch.Tensor,
                   logit_scale: float) -> ValidationSet:
    """Build a :class:`ValidationSet` from embeddings of ``rows`` (same order)."""
    pairs = CachedPairs(image_embeds, caption_embeds, rows.caption_index, rows.image_ids, rows.caption_ids,
                        logit_scale=logit_scale)
    return ValidationSet(pairs, image_embeds, list(rows.labels), [item.modality for item in rows.items])


@torch.no_grad()
def validation_losses(vset: ValidationSet, model, weights: list[float], batch_size: int, seed: int) -> dict:
    """Mean of every loss term over the validation rows (batches of ``batch_size``, seeded order)."""
    n = len(vset.pairs)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator).to(vset.image_embeds.device)
    m, w, b = (model.modality_embeddings.weight.float(), model.discriminator.weight.float(),
               model.discriminator.bias.float())
    sums = dict.fromkeys(VAL_TERMS, 0.0)
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        if len(rows) < 2 and start > 0:
            rows = order[start - 1:]  # never a batch of one (its CLIP term is trivially 0)
        values = vset.pairs.losses(rows, m, w, b, weights, all_terms=True)
        for key in VAL_TERMS:
            sums[key] += float(values[key]) * len(order[start:start + batch_size])
    return {f"val_{key}": value / n for key, value in sums.items()}


@torch.no_grad()
def validation_retrieval(vset: ValidationSet, model, kind: str = "converted",
                         convention: str = "reference") -> dict:
    """Sketch -> photo retrieval on the validation part; {} when either modality is missing."""
    sketch = [i for i, m in enumerate(vset.modalities) if m == "sketch"]
    photo = [i for i, m in enumerate(vset.modalities) if m == "photo"]
    if not sketch or not photo:
        return {}
    emb = vset.image_embeds
    queries = model.retrieval_embedding(emb[sketch].to(model.device), "sketch", kind)
    gallery = model.retrieval_embedding(emb[photo].to(model.device), "photo", kind)
    metrics = evaluate_embeddings(queries.float().cpu(), gallery.float().cpu(), [vset.labels[i] for i in sketch],
                                  [vset.labels[i] for i in photo], convention=convention)
    return {"val_map": metrics["map_all"], "val_map_200": metrics["map_200"],
            "val_p_100": metrics["p_100"], "val_p_200": metrics["p_200"]}


def validate(vset: ValidationSet, model, weights: list[float], batch_size: int, seed: int,
             kind: str = "converted", convention: str = "reference") -> dict:
    """Validation losses (``val_<term>``) and retrieval metrics (``val_map`` = mAP@all, ...)."""
    return {**validation_losses(vset, model, weights, batch_size, seed),
            **validation_retrieval(vset, model, kind, convention)}
