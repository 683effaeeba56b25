"""Seen-class validation during training: validation losses and sketch-to-photo mAP.

Model selection never looks at unseen classes: the validation part is held out from the seen
classes (:mod:`mars_lite.train.rows`). Each validation embeds its images with the current backbone
(frozen mode: once, from the embedding cache), then

* the loss terms on the validation rows, computed by ``compute_losses`` (the same function full-mode
  training uses; frozen mode's fast path is tested equal to it), in fixed batches of the training
  batch size (a seeded order, so batches mix classes and modalities as training batches do),
  averaged over rows;
* retrieval: validation sketches as queries against validation photos as the gallery, scored by
  cosine similarity of the chosen retrieval embedding (``converted`` by default, as the
  reference), with the reference metric convention; ``val_map`` is mAP@all.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..embed import embed_items, embed_texts
from ..eval.metrics import evaluate_embeddings
from ..method.losses import LOSS_KEYS, compute_losses
from .rows import TrainRows


@dataclass
class ValidationSet:
    """Validation rows on embeddings of one backbone state.

    Attributes:
        image_embeds: (N, D) z_v; text_embeds: (N, D) the caption z_t of each row;
        modality_ids: (N, 2) [image id, caption id]; logit_scale: the CLIP term's log inverse
        temperature; labels and modalities: N entries each.
    """

    image_embeds: torch.Tensor
    text_embeds: torch.Tensor
    modality_ids: torch.Tensor
    logit_scale: float
    labels: list[str]
    modalities: list[str]


def embed_rows(model, rows: TrainRows, cache_dir=None, batch_size: int = 64, progress=None):
    """(EmbeddingSet of the rows' images, (C, D) caption embeddings) with the model's backbone."""
    images = embed_items(model, list(rows.items), cache_dir, batch_size=batch_size, progress=progress)
    return images, embed_texts(model, list(rows.captions)).to(images.embeddings.device)


def validation_set(rows: TrainRows, image_embeds: torch.Tensor, caption_embeds: torch.Tensor,
                   logit_scale: float) -> ValidationSet:
    """Build a :class:`ValidationSet` from (N, D) image and (C, D) caption embeddings of ``rows``."""
    text = caption_embeds[rows.caption_index.to(caption_embeds.device)]          # (N, D): row i's caption
    return ValidationSet(image_embeds, text, rows.modality_ids.to(image_embeds.device), float(logit_scale),
                         list(rows.labels), [item.modality for item in rows.items])


@torch.no_grad()
def validation_losses(vset: ValidationSet, model, weights: list[float], batch_size: int, seed: int) -> dict:
    """Mean of every loss term over the validation rows (batches of ``batch_size``, seeded order)."""
    n = len(vset.image_embeds)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator).to(vset.image_embeds.device)
    m, w, b = (model.modality_embeddings.weight.float(), model.discriminator.weight.float(),
               model.discriminator.bias.float())
    scale = torch.tensor(vset.logit_scale, device=m.device)
    sums = dict.fromkeys(LOSS_KEYS, 0.0)
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        if len(rows) < 2 and start > 0:
            rows = order[start - 1:]  # never a batch of one (its CLIP term is trivially 0)
        values = compute_losses(vset.image_embeds[rows].float(), vset.text_embeds[rows].float(),
                                vset.modality_ids[rows], m, w, b, scale, weights)
        for key in LOSS_KEYS:
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
