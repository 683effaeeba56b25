"""The training loss on cached embeddings (frozen backbone), computed from inner products.

With CLIP frozen, ``z_v`` and ``z_t`` are constants and only ``M`` (4, D), the classifier ``W``
(4, D) and its bias ``beta`` (4,) train. Every term of :func:`mars_lite.losses.compute_losses`
except CLIP then depends on a row only through

* per-row constants computed once: ``|z_v|^2``, ``|z_t|^2``, ``z_v . z_t`` and ``|z_v + z_t|``;
* its inner products with the four modality vectors and the four classifier rows,
  ``z @ [M; W]^T`` -- one (B, D) x (D, 8) product per step;
* the 4x4 Gram matrices ``G = M M^T`` and ``H = M W^T``.

For a source vector x of own modality o (an image, or a caption) and a target modality k:
``|x - m_o + m_k|^2 = |x|^2 - 2 x.m_o + 2 x.m_k + |m_k - m_o|^2`` and the classifier logit of the
converted vector for class l is ``(x.w_l + (m_k - m_o).w_l) / |x - m_o + m_k| + beta_l``, where the
parts in ``m`` only are read from tables built from G and H. So a step costs one thin matrix
product plus algebra on (B, 2, 4, 4) tensors, instead of (B, 4, D) converted vectors. The image
and caption sides are symmetric in every term, so they are stacked along an axis of size 2
(source x with partner y: image -> its caption, caption -> its image).

The CLIP term does not depend on M or the classifier; it is still reported. Captions come from a
small table (one per class and caption kind), so ``exp(scale * z_v . z_t)`` is tabulated once for
every (image, caption) pair and a batch's two log-sum-exps become sums over that table
(:meth:`CachedPairs.clip_losses` does a whole epoch's batches at once). The orthogonality term
needs ``sum_i |e_i,d|`` per dimension, which does not reduce to inner products; it uses the
direct formula and is computed only when its weight is positive (otherwise reported as NaN)
unless ``all_terms=True``.

Parity with ``compute_losses`` (values and gradients) is tested in ``tests/test_frozen_loss.py``.
"""
from __future__ import annotations

import math
from typing import Iterator, NamedTuple

import torch

from .losses import LOGIT_SCALE, TERMS, LossWeights, orthogonal_loss
from .modalities import NUM_MODALITIES

_K = NUM_MODALITIES
# Above this many (image, caption) entries the exp table is not stored; batches compute logits.
MAX_TABLE_ENTRIES = 200_000_000
_EPOCH_CHUNK_ROWS = 65_536  # rows of the exp table gathered at once by clip_losses
# Columns of the packed per-row constants (each pair: [image source, caption source]).
_XX, _YY, _XY, _INV_CENTRE, _INV_Y = slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 8), slice(8, 10)
_OWN, _PARTNER, _KEEP = slice(10, 18), slice(18, 26), slice(26, 34)
_WIDTH = 34


def weights_list(weights) -> list[float]:
    """The 5 lambdas (order of ``TERMS``) from a sequence, tensor or ``LossWeights``, checked."""
    if isinstance(weights, LossWeights):
        return [float(getattr(weights, t)) for t in TERMS]
    values = [float(v) for v in torch.as_tensor(weights).flatten().tolist()]
    if len(values) != len(TERMS):
        raise ValueError(f"weights must hold {len(TERMS)} values {TERMS}, got {len(values)}")
    if any(v < 0 for v in values) or sum(values) <= 0:
        raise ValueError(f"loss weights must be >= 0 with a positive sum, got {values}")
    return values


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    """Contiguous float32 without autograd history; copies tensors made under inference_mode
    (such as embed_cache outputs), which autograd refuses to save for backward."""
    tensor = tensor.detach().float().contiguous()
    return tensor.clone() if tensor.is_inference() else tensor


class PairBatch(NamedTuple):
    """One batch of cached rows: (B, D) image embeddings, (B,) caption index, (B, 34) constants,
    the rows' indices, and the batch's CLIP term when it was computed ahead (else ``None``)."""

    image: torch.Tensor
    caption: torch.Tensor
    consts: torch.Tensor
    rows: torch.Tensor
    clip: torch.Tensor | None = None


class CachedPairs:
    """Training rows on cached embeddings plus the per-row constants the fast loss needs.

    Args:
        image_embeds: (N, D) image embeddings z_v (one row per training image).
        caption_embeds: (C, D) embeddings z_t of the distinct captions.
        caption_index: (N,) int64, row i is captioned by ``caption_embeds[caption_index[i]]``.
        image_ids: (N,) int64 image modality ids (0 photo, 1 sketch).
        caption_ids: (N,) int64 caption modality ids (2 sketch caption, 3 photo caption).
        logit_scale: log inverse temperature of the CLIP term (2.6592 in the paper).
    """

    def __init__(self, image_embeds: torch.Tensor, caption_embeds: torch.Tensor, caption_index,
                 image_ids, caption_ids, logit_scale: float = LOGIT_SCALE):
        image = _plain(image_embeds)
        captions = _plain(caption_embeds).to(image.device)
        n, d = image.shape
        index = torch.as_tensor(caption_index, device=image.device).long()
        own = torch.stack([torch.as_tensor(image_ids, device=image.device).long(),
                           torch.as_tensor(caption_ids, device=image.device).long()], 1)   # (N, 2)
        if captions.dim() != 2 or captions.shape[1] != d:
            raise ValueError(f"caption_embeds must be (C, {d}), got {tuple(captions.shape)}")
        if index.shape != (n,) or own.shape != (n, 2):
            raise ValueError(f"caption_index, image_ids and caption_ids must each hold {n} ids")
        if n and not (0 <= int(index.min()) and int(index.max()) < len(captions)):
            raise ValueError("caption_index points outside caption_embeds")
        if n and not (0 <= int(own.min()) and int(own.max()) < _K):
            raise ValueError(f"modality ids must lie in 0..{_K - 1}")
        self.image_embeds, self.caption_embeds, self.caption_index = image, captions, index
        self.logit_scale = float(logit_scale)
        text = captions[index]                                                 # (N, D)
        vv, tt, vt = (image * image).sum(1), (text * text).sum(1), (image * text).sum(1)
        eye = torch.eye(_K, device=image.device)
        consts = torch.empty(n, _WIDTH, device=image.device)
        consts[:, _XX] = torch.stack([vv, tt], 1)                              # |x|^2
        consts[:, _YY] = torch.stack([tt, vv], 1)                              # |y|^2
        consts[:, _XY] = vt[:, None]                                           # x.y
        consts[:, _INV_CENTRE] = (vv + 2 * vt + tt).clamp_min(1e-24).rsqrt()[:, None]  # 1/|x+y|
        consts[:, _INV_Y] = consts[:, _YY].clamp_min(1e-24).rsqrt()           # 1/|y|
        consts[:, _OWN] = eye[own].reshape(n, 2 * _K)                          # one-hot of o
        consts[:, _PARTNER] = eye[own.flip(1)].reshape(n, 2 * _K)              # one-hot of p
        consts[:, _KEEP] = 1 - consts[:, _OWN]                                 # classifier targets
        self.consts = consts
        scale = math.exp(self.logit_scale)
        self.diag_logits = scale * vt                                          # (N,) positives
        # exp(logits) fits float32 when |logits| stays well below 88.
        bounded = scale * float(image.norm(dim=1).max() if n else 0) * float(captions.norm(dim=1).max()) < 60
        use_table = bounded and n * len(captions) <= MAX_TABLE_ENTRIES
        self.exp_table = (scale * image @ captions.T).exp_() if use_table else None   # (N, C)

    def __len__(self) -> int:
        return len(self.image_embeds)

    # ------------------------------------------------------------------ batches
    def batch(self, rows: torch.Tensor, with_clip: bool = True) -> PairBatch:
        """Gather the rows (B,) of one batch (and its CLIP term when ``with_clip``)."""
        rows = torch.as_tensor(rows, device=self.image_embeds.device).long()
        clip = self.clip_losses(rows[None])[0] if with_clip else None
        return PairBatch(self.image_embeds.index_select(0, rows), self.caption_index.index_select(0, rows),
                         self.consts.index_select(0, rows), rows, clip)

    def epoch(self, order: torch.Tensor) -> Iterator[PairBatch]:
        """The batches of an epoch, ``order`` (S, B) row indices: constants and CLIP terms are
        gathered for all S batches at once; image rows are gathered batch by batch."""
        order = torch.as_tensor(order, device=self.image_embeds.device).long()
        clips = self.clip_losses(order)
        flat = order.reshape(-1)
        consts = self.consts.index_select(0, flat).view(*order.shape, _WIDTH)
        captions = self.caption_index.index_select(0, flat).view(order.shape)
        for s in range(len(order)):
            yield PairBatch(self.image_embeds.index_select(0, order[s]), captions[s], consts[s], order[s], clips[s])

    @torch.no_grad()
    def clip_losses(self, order: torch.Tensor) -> torch.Tensor:
        """CLIP term of every batch in ``order`` (S, B) -> (S,); constant w.r.t. M and the classifier.

        Per batch: logits[i, j] = scale * z_v,i . z_t,j and the symmetric InfoNCE. With the exp
        table, sum_j exp(logits[i, j]) = E[i] @ counts (counts: how often each caption occurs in
        the batch) and sum_i exp(logits[i, j]) = column sums of E over the batch's rows.
        """
        s_count, size = order.shape
        out = torch.empty(s_count, device=self.image_embeds.device)
        if s_count == 0:
            return out
        caps = self.caption_index[order]                                       # (S, B)
        diag = self.diag_logits[order]                                         # (S, B)
        if self.exp_table is None:
            scale = math.exp(self.logit_scale)
            for s in range(s_count):
                logits = scale * self.image_embeds[order[s]] @ self.caption_embeds[caps[s]].T
                out[s] = (torch.logsumexp(logits, 1).mean() + torch.logsumexp(logits, 0).mean()) / 2 - diag[s].mean()
            return out
        n_caps = self.exp_table.shape[1]
        step = max(1, _EPOCH_CHUNK_ROWS // size)
        for start in range(0, s_count, step):
            chunk, cap = order[start:start + step], caps[start:start + step]
            table = self.exp_table[chunk]                                      # (s, B, C)
            counts = torch.zeros(len(chunk), n_caps, device=table.device)
            counts.scatter_add_(1, cap, torch.ones_like(cap, dtype=table.dtype))
            per_image = torch.bmm(table, counts[:, :, None]).squeeze(2).log()  # (s, B)
            per_text = table.sum(1).gather(1, cap).log()                       # (s, B)
            out[start:start + step] = (per_image.mean(1) + per_text.mean(1)) / 2
        return out - diag.mean(1)

    # ------------------------------------------------------------------- losses
    def losses(self, batch: PairBatch | torch.Tensor, modality_embeddings: torch.Tensor,
               discriminator_weight: torch.Tensor, discriminator_bias: torch.Tensor, weights,
               all_terms: bool = False) -> dict:
        """All loss terms of one batch, as :func:`mars_lite.losses.compute_losses` returns them.

        Args:
            batch: a :class:`PairBatch` (from :meth:`batch` / :meth:`epoch`) or (B,) row indices.
            modality_embeddings: (4, D) M; discriminator_weight: (4, D) W; discriminator_bias: (4,).
            weights: the 5 lambdas (order of ``TERMS``) or a ``LossWeights``.
            all_terms: also compute the orthogonality term when its weight is 0.
        Returns:
            dict of 0-d tensors ``clip, semantic, discriminator, reconstruction, orthogonal,
            total``; ``total`` is differentiable w.r.t. M, W and the bias. ``orthogonal`` is NaN
            when it was not computed.
        """
        if not isinstance(batch, PairBatch):
            batch = self.batch(batch)
        w = weights_list(weights)
        m, cls_w, cls_b = modality_embeddings, discriminator_weight, discriminator_bias
        size = len(batch.rows)
        c = batch.consts
        xx, yy, xy = c[:, _XX], c[:, _YY], c[:, _XY]                          # (B, 2) each
        own = c[:, _OWN].view(size, 2, _K)                                     # (B, 2, 4) one-hot
        mw = torch.cat([m, cls_w])                                             # (8, D)
        proj_v = batch.image @ mw.T                                            # (B, 8)
        proj_t = (self.caption_embeds @ mw.T).index_select(0, batch.caption)   # (B, 8)
        xm = torch.stack([proj_v[:, :_K], proj_t[:, :_K]], 1)                  # (B, 2, 4) x.m_k
        ym = torch.stack([proj_t[:, :_K], proj_v[:, :_K]], 1)                  # (B, 2, 4) y.m_k
        xw = torch.stack([proj_v[:, _K:], proj_t[:, _K:]], 1)                  # (B, 2, 4) x.w_l
        gram = mw[:_K] @ mw.T                                                  # (4, 8): [M M^T | M W^T]
        g, h = gram[:, :_K], gram[:, _K:]
        dg = g.diagonal()
        # Tables by own modality o: |m_o|^2, |m_k - m_o|^2 (k), (m_k - m_o).w_l (k, l).
        table = torch.cat([dg[:, None], dg[None, :] + dg[:, None] - 2 * g,
                           (h[None, :, :] - h[:, None, :]).reshape(_K, _K * _K)], 1)   # (4, 21)
        per_row = own @ table                                                  # (B, 2, 21)
        xm_o = (xm * own).sum(-1)                                              # (B, 2) x.m_o
        ym_o = (ym * own).sum(-1)                                              # (B, 2) y.m_o
        # |x - m_o + m_k|^2 for every k; at k = o it is |x|^2 up to rounding (kept positive).
        sq_norm = (xx - 2 * xm_o)[..., None] + 2 * xm + per_row[..., 1:1 + _K]
        inv_norm = sq_norm.clamp_min(1e-12).rsqrt()                           # (B, 2, 4)
        values = {}
        # Semantic: cos(x - m_o, e) with e = (x + y) / |x + y|.
        s_sq = xx - 2 * xm_o + per_row[..., 0]
        cos_sem = (xx + xy - xm_o - ym_o) * s_sq.clamp_min(1e-12).rsqrt() * c[:, _INV_CENTRE]
        values["semantic"] = (1 - cos_sem).sum() / size
        # Reconstruction: cos(x - m_o + m_p, y) with p the partner's own modality.
        partner = c[:, _PARTNER].view(size, 2, _K)
        recon_num = xy - ym_o + (ym * partner).sum(-1)
        cos_rec = recon_num * (inv_norm * partner).sum(-1) * c[:, _INV_Y]
        values["reconstruction"] = (1 - cos_rec).sum() / size
        # Classifier: logits[k, l] = (x.w_l + (m_k - m_o).w_l) / |x - m_o + m_k| + beta_l.
        numer = xw[..., None, :] + per_row[..., 1 + _K:].view(size, 2, _K, _K)
        logits = numer * inv_norm[..., None] + cls_b                           # (B, 2, 4, 4)
        ce = torch.logsumexp(logits, -1) - logits.diagonal(dim1=-2, dim2=-1)   # (B, 2, 4)
        # 3 targets per source and row; the loss is (CE_image + CE_text) / 2.
        values["discriminator"] = (ce * c[:, _KEEP].view(size, 2, _K)).sum() / (2 * (_K - 1) * size)
        values["clip"] = batch.clip if batch.clip is not None else self.clip_losses(batch.rows[None])[0]
        if w[TERMS.index("orthogonal")] > 0 or all_terms:
            values["orthogonal"] = orthogonal_loss(batch.image, self.caption_embeds[batch.caption], m)
        else:
            values["orthogonal"] = batch.image.new_full((), float("nan"))
        active = [(wj, values[name]) for wj, name in zip(w, TERMS) if wj > 0]
        values["total"] = sum(wj * value for wj, value in active) / sum(wj for wj, _ in active)
        return {name: values[name] for name in (*TERMS, "total")}


def frozen_losses(image_embeds: torch.Tensor, text_embeds: torch.Tensor, modality_ids,
                  modality_embeddings: torch.Tensor, discriminator_weight: torch.Tensor,
                  discriminator_bias: torch.Tensor, logit_scale=LOGIT_SCALE, weights=None,
                  all_terms: bool = True) -> dict:
    """Drop-in for :func:`mars_lite.losses.compute_losses` on one batch (same arguments and keys).

    Args:
        image_embeds, text_embeds: (B, D); modality_ids: (B, 2); the rest as in compute_losses.
    Each row gets its own caption here; training builds a :class:`CachedPairs` once so that the
    per-row constants are not recomputed every step.
    """
    weights = LossWeights() if weights is None else weights
    ids = torch.as_tensor(modality_ids).long()
    size = len(image_embeds)
    pairs = CachedPairs(image_embeds, text_embeds, torch.arange(size), ids[:, 0], ids[:, 1],
                        logit_scale=float(torch.as_tensor(logit_scale)))
    return pairs.losses(torch.arange(size), modality_embeddings, discriminator_weight, discriminator_bias,
                        weights, all_terms=all_terms)
