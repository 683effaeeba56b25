"""The five training terms of MARS and their normalised weighted sum.

Formulas from Lyou et al., "Modality-Aware Representation Learning for Zero-shot Sketch-based
Image Retrieval", WACV 2024, as the authors' released implementation computes them (see
``docs/method.md``; parity vectors in ``tests/fixtures/parity``).

Notation (B rows, width D): ``z_v`` image embeddings and ``z_t`` caption embeddings, both (B, D)
and L2-normalised; ``M`` the modality vectors (4, D) — 0 photo, 1 sketch, 2 and 3 caption kinds;
``a``/``b`` the image's/caption's modality id (B,). Each term is a plain function so it can be read,
tested and ablated on its own; :func:`compute_losses` is the single entry point training uses.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .modalities import NUM_MODALITIES

TERMS = ("clip", "semantic", "discriminator", "reconstruction", "orthogonal")
LOSS_KEYS = (*TERMS, "total")  # the keys of compute_losses, of training logs and of validation
# The paper's weights, in the order of TERMS (docs/method.md, "Losses").
PAPER_WEIGHTS = (1.0, 0.1, 0.1, 0.02, 0.0)
# 1 / tau = exp(2.6592) = 14.28, fixed (not learned) in the reference.
LOGIT_SCALE = 2.6592
_IGNORE = -100


@dataclass(frozen=True)
class LossWeights:
    """lambda for each term; a term with weight 0 is not computed into the total."""

    clip: float = PAPER_WEIGHTS[0]
    semantic: float = PAPER_WEIGHTS[1]
    discriminator: float = PAPER_WEIGHTS[2]
    reconstruction: float = PAPER_WEIGHTS[3]
    orthogonal: float = PAPER_WEIGHTS[4]

    def as_tensor(self) -> torch.Tensor:
        """(5,) tensor in the order of :data:`TERMS`."""
        return torch.tensor([getattr(self, t) for t in TERMS], dtype=torch.float32)

    def validate(self) -> None:
        values = [getattr(self, t) for t in TERMS]
        if any(v < 0 for v in values) or sum(values) <= 0:
            raise ValueError(f"loss weights must be >= 0 with a positive sum, got {values}")


def convert(embeds: torch.Tensor, own_ids: torch.Tensor, modality_embeddings: torch.Tensor) -> torch.Tensor:
    """Every row moved into every modality: normalize(z - m_own + m_k).

    Args:
        embeds: (B, D) embeddings z. own_ids: (B,) modality id of each row.
        modality_embeddings: (4, D).
    Returns:
        (B, 4, D) unit vectors; ``[i, k]`` is row i converted into modality k.
    """
    semantic = embeds - modality_embeddings[own_ids]                      # (B, D)
    return F.normalize(semantic[:, None, :] + modality_embeddings[None], dim=-1)


def semantic_centre(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """e = normalize((z_v + z_t) / 2), (B, D); no stop-gradient, as in the reference."""
    return F.normalize((image_embeds + text_embeds) / 2, dim=-1)


def clip_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale) -> torch.Tensor:
    """Symmetric InfoNCE over the B image-caption pairs (targets 0..B-1).

    Rows of the same class are negatives of each other, as in the reference.
    """
    scale = torch.as_tensor(logit_scale, dtype=image_embeds.dtype, device=image_embeds.device).exp()
    logits_per_image = scale * image_embeds @ text_embeds.T               # (B, B)
    targets = torch.arange(len(image_embeds), device=image_embeds.device)
    return (F.cross_entropy(logits_per_image, targets) + F.cross_entropy(logits_per_image.T, targets)) / 2


def semantic_loss(image_embeds, text_embeds, image_ids, text_ids, modality_embeddings) -> torch.Tensor:
    """mean(1 - cos(z_t - m_b, e)) + mean(1 - cos(z_v - m_a, e)): both parts land on the centre."""
    centre = semantic_centre(image_embeds, text_embeds)
    s_text = text_embeds - modality_embeddings[text_ids]
    s_image = image_embeds - modality_embeddings[image_ids]
    return (1 - F.cosine_similarity(s_text, centre, dim=-1)).mean() + \
        (1 - F.cosine_similarity(s_image, centre, dim=-1)).mean()


def reconstruction_loss(image_embeds, text_embeds, image_ids, text_ids, modality_embeddings) -> torch.Tensor:
    """The caption's semantics plus the image's modality vector rebuild the image, and vice versa."""
    rows = torch.arange(len(image_embeds), device=image_embeds.device)
    text_as_image = convert(text_embeds, text_ids, modality_embeddings)[rows, image_ids]     # (B, D)
    image_as_text = convert(image_embeds, image_ids, modality_embeddings)[rows, text_ids]    # (B, D)
    return (1 - F.cosine_similarity(text_as_image, image_embeds, dim=-1)).mean() + \
        (1 - F.cosine_similarity(image_as_text, text_embeds, dim=-1)).mean()


def _converted_cross_entropy(converted, own_ids, weight, bias) -> torch.Tensor:
    """CE of the classifier on every converted vector whose target differs from its own modality."""
    batch, k, _ = converted.shape
    logits = converted @ weight.T + bias                                   # (B, 4, 4)
    targets = torch.arange(k, device=converted.device).expand(batch, k).clone()
    targets[targets == own_ids[:, None]] = _IGNORE                         # own modality: no target
    return F.cross_entropy(logits.reshape(batch * k, -1), targets.reshape(-1), ignore_index=_IGNORE)


def discriminator_loss(image_embeds, text_embeds, image_ids, text_ids, modality_embeddings,
                       discriminator_weight, discriminator_bias) -> torch.Tensor:
    """Modality classifier on converted vectors: (CE_text + CE_image) / 2, trained jointly."""
    ce_image = _converted_cross_entropy(convert(image_embeds, image_ids, modality_embeddings),
                                        image_ids, discriminator_weight, discriminator_bias)
    ce_text = _converted_cross_entropy(convert(text_embeds, text_ids, modality_embeddings),
                                       text_ids, discriminator_weight, discriminator_bias)
    return (ce_text + ce_image) / 2


def orthogonal_loss(image_embeds, text_embeds, modality_embeddings) -> torch.Tensor:
    """sum_{i,k,d} |e_i,d * m_k,d| / (4B + 1e-6): element-wise products, not dot products."""
    centre = semantic_centre(image_embeds, text_embeds)                    # (B, D)
    # sum_{i,k,d} |e_id| |m_kd| = sum_d (sum_i |e_id|) (sum_k |m_kd|): avoids a (B, 4, D) tensor.
    total = (centre.abs().sum(0) * modality_embeddings.abs().sum(0)).sum()
    return total / (NUM_MODALITIES * len(centre) + 1e-6)


def weighted_total(values: dict[str, torch.Tensor], weights) -> torch.Tensor:
    """sum_j lambda_j L_j / sum_j lambda_j over the terms with lambda_j > 0."""
    w = [float(x) for x in weights]
    active = [(wj, values[name]) for wj, name in zip(w, TERMS) if wj > 0]
    if not active:
        raise ValueError(f"at least one loss weight must be positive, got {w}")
    return sum(wj * value for wj, value in active) / sum(wj for wj, _ in active)


def compute_losses(image_embeds, text_embeds, modality_ids, modality_embeddings,
                   discriminator_weight, discriminator_bias, logit_scale, weights) -> dict:
    """All five terms and their normalised weighted sum.

    Args:
        image_embeds: (B, D) L2-normalised image embeddings z_v (photo or sketch rows).
        text_embeds: (B, D) L2-normalised caption embeddings z_t; row i captions image i.
        modality_ids: (B, 2) int64; column 0 the image's id (0 photo, 1 sketch), column 1 the
            caption's id (2 sketch caption, 3 photo caption).
        modality_embeddings: (4, D) modality vectors M.
        discriminator_weight: (4, D) and discriminator_bias: (4,) of the linear classifier.
        logit_scale: scalar, log of the inverse temperature (2.6592 in the paper).
        weights: 5 lambdas in the order [clip, semantic, discriminator, reconstruction,
            orthogonal] (sequence, tensor or :class:`LossWeights`).
    Returns:
        dict of 0-d tensors with keys ``clip, semantic, reconstruction, discriminator,
        orthogonal, total``; ``total`` is differentiable w.r.t. every input tensor.
    """
    if isinstance(weights, LossWeights):
        weights = [getattr(weights, t) for t in TERMS]
    weights = torch.as_tensor(weights).flatten().tolist()
    if len(weights) != len(TERMS):
        raise ValueError(f"weights must hold {len(TERMS)} values {TERMS}, got {len(weights)}")
    if image_embeds.shape != text_embeds.shape or image_embeds.dim() != 2:
        raise ValueError(f"image_embeds {tuple(image_embeds.shape)} and text_embeds "
                         f"{tuple(text_embeds.shape)} must both be (B, D)")
    modality_ids = torch.as_tensor(modality_ids, device=image_embeds.device).long()
    if modality_ids.shape != (len(image_embeds), 2):
        raise ValueError(f"modality_ids must be (B, 2) = ({len(image_embeds)}, 2), got {tuple(modality_ids.shape)}")
    a, b = modality_ids[:, 0], modality_ids[:, 1]
    m = modality_embeddings
    values = {
        "clip": clip_loss(image_embeds, text_embeds, logit_scale),
        "semantic": semantic_loss(image_embeds, text_embeds, a, b, m),
        "reconstruction": reconstruction_loss(image_embeds, text_embeds, a, b, m),
        "discriminator": discriminator_loss(image_embeds, text_embeds, a, b, m,
                                            discriminator_weight, discriminator_bias),
        "orthogonal": orthogonal_loss(image_embeds, text_embeds, m),
    }
    values["total"] = weighted_total(values, weights)
    return values
