"""The training loss on cached embeddings (frozen backbone), computed from inner products.

With CLIP frozen, ``z_v`` and ``z_t`` are constants and only ``M`` (4, D), the classifier ``W``
(4, D) and its bias ``beta`` (4,) train. Every term of :func:`mars_lite.method.losses.compute_losses`
except CLIP then depends on a row only through

* per-row constants computed once: ``|z_v|^2``, ``|z_t|^2``, ``z_v . z_t`` and ``|z_v + z_t|``;
* its inner products with the four modality vectors and the four classifier rows,
  ``[M; W] @ z`` -- one (8, D) x (D, 2B) product per step;
* the 4x8 Gram matrix ``M [M; W]^T`` (``G = M M^T`` and ``H = M W^T``).

For a source vector x of own modality o (an image, or a caption) and a target modality k:
``|x - m_o + m_k|^2 = |x|^2 - 2 x.m_o + 2 x.m_k + |m_k - m_o|^2`` and the classifier logit of the
converted vector for class l is ``(x.w_l + (m_k - m_o).w_l) / |x - m_o + m_k| + beta_l``; the parts
in ``m`` only form a per-modality table that is a fixed linear map of ``M [M; W]^T``. So a step
costs one thin matrix product plus algebra on (4, 4, B, 2) tensors instead of (B, 4, D) converted
vectors. The image and caption sides are symmetric in every term, so they are stacked along a
last axis of size 2 (source x with partner y: image -> its caption, caption -> its image).

The per-row algebra and its gradient, written out by hand, live in :mod:`mars_lite.train.fast_frozen.grad`
(tensor operations; on CPU one compiled loop, :mod:`mars_lite.train.fast_frozen.kernel`); both are checked
against autograd through ``compute_losses`` in ``tests/test_frozen_loss.py``. This module holds
the data side: cached rows, their constants, batches and the CLIP term.

The CLIP term does not depend on M or the classifier; it is still reported. Captions come from a
small table (one per class and caption kind), so ``exp(scale * z_v . z_t)`` is tabulated once for
every (image, caption) pair and a batch's two log-sum-exps become sums over that table
(:meth:`CachedPairs.clip_losses` does a whole epoch's batches in one pass). The orthogonality term
needs ``sum_i |e_i,d|`` per dimension, which does not reduce to inner products; it uses the
direct formula and is computed only when its weight is positive (otherwise reported as NaN)
unless ``all_terms=True``.
"""
from __future__ import annotations

import math
import queue
import threading
from typing import Iterator, NamedTuple

import torch

from .grad import (INV_CENTRE, INV_Y, KEEP, OWN, PARTNER, SEM, SHIFT, WIDTH, XX, XY, FrozenLoss,
                          build_table_map, loss_and_grad)
from ...method.losses import LOGIT_SCALE, TERMS, LossWeights
from ...method.modalities import NUM_MODALITIES

_K = NUM_MODALITIES
# Above this many (image, caption) entries the exp table is not stored; batches compute logits.
MAX_TABLE_ENTRIES = 200_000_000
_EPOCH_CHUNK_ROWS = 4_096   # rows of the exp table gathered at once by clip_losses
_STREAM_CHUNK_ROWS = 1_024  # rows streamed at once (the working set stays in cache)


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


def _prefetched(make, count: int, depth: int) -> Iterator:
    """``make(0), ..., make(count - 1)``, each computed up to ``depth`` items ahead in a thread."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for index in range(count):
                if stop.is_set():
                    return
                items.put(make(index))
        except Exception as err:  # handed to the consumer, which raises it
            items.put(err)

    thread = threading.Thread(target=work, name="mars_lite-prefetch", daemon=True)
    thread.start()
    try:
        for _ in range(count):
            item = items.get()
            if isinstance(item, Exception):
                raise item
            yield item
    finally:  # also when the consumer stops early: let the worker finish, then wait for it
        stop.set()
        while thread.is_alive():
            try:
                items.get(timeout=0.01)
            except queue.Empty:
                pass
        thread.join()


class PairBatch(NamedTuple):
    """One batch of cached rows.

    ``vectors`` (2B, D): image i at 2i, its caption at 2i + 1; ``consts`` (21, B, 2) per-row
    constants; ``own`` (B, 2) own-modality ids of image and caption; ``rows`` (B,) indices; ``captions`` (B,) caption indices; ``clip`` the batch's CLIP
    term when computed ahead (else ``None``).
    """

    vectors: torch.Tensor
    consts: torch.Tensor
    own: torch.Tensor
    rows: torch.Tensor
    captions: torch.Tensor
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
        device = image.device
        captions = _plain(caption_embeds).to(device)
        n, d = image.shape
        index = torch.as_tensor(caption_index, device=device).long()
        own = torch.stack([torch.as_tensor(image_ids, device=device).long(),
                           torch.as_tensor(caption_ids, device=device).long()], 1)        # (N, 2)
        if captions.dim() != 2 or captions.shape[1] != d:
            raise ValueError(f"caption_embeds must be (C, {d}), got {tuple(captions.shape)}")
        if index.shape != (n,) or own.shape != (n, 2):
            raise ValueError(f"caption_index, image_ids and caption_ids must each hold {n} ids")
        if n and not (0 <= int(index.min()) and int(index.max()) < len(captions)):
            raise ValueError("caption_index points outside caption_embeds")
        if n and not (0 <= int(own.min()) and int(own.max()) < _K):
            raise ValueError(f"modality ids must lie in 0..{_K - 1}")
        # One table for images and captions, so a batch gathers all its vectors at once.
        self.vectors = torch.cat([image, captions])                             # (N + C, D)
        self.image_embeds, self.caption_embeds = self.vectors[:n], self.vectors[n:]
        self.caption_index = index
        self.own = own                                                         # (N, 2) ids of image, caption
        self.gather_index = torch.stack([torch.arange(n, device=device), n + index], 1)  # (N, 2)
        self.logit_scale = float(logit_scale)
        text = captions[index]                                                 # (N, D)
        vv, tt, vt = (image * image).sum(1), (text * text).sum(1), (image * text).sum(1)
        del text
        eye = torch.eye(_K, device=device)
        consts = torch.empty(n, WIDTH, 2, device=device)                    # (N, 21, 2): rows gather fast
        xx = torch.stack([vv, tt], 1)
        consts[:, XX] = xx
        consts[:, XY] = vt[:, None]
        consts[:, SEM] = xx + vt[:, None]
        consts[:, INV_CENTRE] = (vv + 2 * vt + tt).clamp_min(1e-24).rsqrt()[:, None]
        consts[:, INV_Y] = xx.flip(1).clamp_min(1e-24).rsqrt()
        consts[:, OWN] = eye[own].transpose(1, 2)                              # one-hot of o
        consts[:, PARTNER] = eye[own.flip(1)].transpose(1, 2)                  # one-hot of p
        consts[:, SHIFT] = consts[:, PARTNER] - consts[:, OWN]
        consts[:, KEEP] = 1 - consts[:, OWN]                                  # classifier targets k != o
        self.consts = consts
        self.table_map = build_table_map().to(device)
        scale = math.exp(self.logit_scale)
        self.diag_logits = scale * vt                                          # (N,) positives
        # exp(logits) fits float32 when |logits| stays well below 88.
        bounded = scale * float(image.norm(dim=1).max() if n else 0) * float(captions.norm(dim=1).max()) < 60
        use_table = bounded and n * len(captions) <= MAX_TABLE_ENTRIES
        self.exp_table = (scale * image @ captions.T).exp_() if use_table else None   # (N, C)
        self._coefficients: dict = {}
        self._nan = torch.full((), float("nan"), device=device)             # "not computed"

    def __len__(self) -> int:
        return len(self.caption_index)

    # ------------------------------------------------------------------ batches
    def batch(self, rows: torch.Tensor, with_clip: bool = True) -> PairBatch:
        """Gather the rows (B,) of one batch (and its CLIP term when ``with_clip``): vectors
        (2B, D), constants in the step layout (21, B, 2), own-modality ids (B, 2)."""
        rows = torch.as_tensor(rows, device=self.vectors.device).long()
        clip = self.clip_losses(rows[None])[0] if with_clip else None
        return PairBatch(self.vectors.index_select(0, self.gather_index[rows].view(-1)),
                         self.consts.index_select(0, rows).transpose(0, 1).contiguous(), self.own[rows], rows,
                         self.caption_index[rows], clip)

    def epoch(self, order: torch.Tensor, prefetch: int = 4) -> Iterator[PairBatch]:
        """The batches of an epoch, ``order`` (S, B) row indices.

        The CLIP terms of all S batches are computed up front (one pass over the exp table);
        each batch's vectors and constants are gathered ``prefetch`` batches ahead by a
        background thread on CPU (gathers release the GIL, so they run beside the training step,
        as a DataLoader worker would; 0 gathers in the loop). A batch's rows are visited in
        increasing index order: no term depends on the order of the rows within a batch, and
        gathering sorted rows from a large table is ~3x faster.
        """
        order = torch.as_tensor(order, device=self.vectors.device).long().sort(1).values
        clips = self.clip_losses(order)

        def make(s: int) -> PairBatch:
            return self.batch(order[s], with_clip=False)._replace(clip=clips[s])

        if prefetch > 0 and self.vectors.device.type == "cpu" and len(order) > 1:
            yield from _prefetched(make, len(order), prefetch)
        else:
            yield from (make(s) for s in range(len(order)))

    @torch.no_grad()
    def clip_losses(self, order: torch.Tensor) -> torch.Tensor:
        """CLIP term of every batch in ``order`` (S, B) -> (S,); constant w.r.t. M and the classifier.

        Per batch: logits[i, j] = scale * z_v,i . z_t,j and the symmetric InfoNCE. With the exp
        table E (N, C), sum_j exp(logits[i, j]) = E[i] . counts (counts: how often each caption
        occurs in the batch) and sum_i exp(logits[i, j]) = the sum of E[i, c_j] over the batch's
        rows; without it (too large, or unbounded logits) the logits are computed.
        """
        s_count, size = order.shape
        if s_count == 0:
            return torch.empty(0, device=self.vectors.device)
        caps = self.caption_index[order]                                       # (S, B)
        diag = self.diag_logits[order].mean(1)                                 # (S,)
        if self.exp_table is None:
            scale = math.exp(self.logit_scale)
            out = torch.empty(s_count, device=self.vectors.device)
            for s in range(s_count):
                logits = scale * self.image_embeds[order[s]] @ self.caption_embeds[caps[s]].T
                out[s] = (torch.logsumexp(logits, 1).mean() + torch.logsumexp(logits, 0).mean()) / 2
            return out - diag
        n, n_caps = self.exp_table.shape
        flat = order.reshape(-1)
        # Streaming reads all of E: worth it when the batches cover much of it (an epoch), and
        # only valid when no row appears twice (class-balanced sampling draws with replacement).
        if 4 * len(flat) < n or int(torch.bincount(flat, minlength=n).max()) > 1:
            return self._clip_by_gather(order, caps) - diag
        # Each row at most once: stream through E in row order (fast) and add each row into its
        # batch, instead of gathering the rows batch by batch (random access).
        batch_of = torch.full((n,), s_count, dtype=torch.long, device=flat.device)  # s_count: no batch
        batch_of[flat] = torch.arange(s_count, device=flat.device).repeat_interleave(size)
        counts = torch.zeros(s_count + 1, n_caps, device=flat.device)
        counts[:s_count].scatter_add_(1, caps, torch.ones_like(caps, dtype=counts.dtype))
        row_sums = torch.empty(n, device=flat.device)
        col_sums = torch.zeros(s_count + 1, n_caps, device=flat.device)
        chunk = _STREAM_CHUNK_ROWS
        weights = torch.empty(chunk, n_caps, device=flat.device)  # reused: no allocation per chunk
        for start in range(0, n, chunk):
            block = self.exp_table[start:start + chunk]
            where = batch_of[start:start + chunk]
            here = weights[:len(block)]
            torch.index_select(counts, 0, where, out=here)
            torch.sum(here.mul_(block), 1, out=row_sums[start:start + chunk])
            col_sums.index_add_(0, where, block)
        per_image = row_sums[order].log_().mean(1)
        per_text = col_sums[:s_count].gather(1, caps).log_().mean(1)
        return (per_image + per_text) / 2 - diag

    def _clip_by_gather(self, order: torch.Tensor, caps: torch.Tensor) -> torch.Tensor:
        """(S,) mean log-sum-exps of the CLIP term, gathering each batch's rows of the exp table."""
        s_count, size = order.shape
        n_caps = self.exp_table.shape[1]
        out = torch.empty(s_count, device=order.device)
        step = max(1, _EPOCH_CHUNK_ROWS // size)
        for start in range(0, s_count, step):
            chunk, cap = order[start:start + step], caps[start:start + step]
            s_here = len(chunk)
            table = self.exp_table.index_select(0, chunk.reshape(-1)).view(s_here, size, n_caps)   # (s, B, C)
            counts = torch.zeros(s_here, n_caps, device=table.device)
            counts.scatter_add_(1, cap, torch.ones_like(cap, dtype=table.dtype))
            per_image = torch.bmm(table, counts[:, :, None]).squeeze(2).log_()   # (s, B)
            per_text = table.sum(1).gather(1, cap).log_()                         # (s, B)
            out[start:start + step] = (per_image.mean(1) + per_text.mean(1)) / 2
        return out

    # ------------------------------------------------------------------- losses
    def _coefficients_for(self, weights, size: int):
        """Cached per (weights, batch size): (offset, scale) turning the three sums into
        [semantic, discriminator, reconstruction], their weights / sum, and the CLIP and
        orthogonality weights / sum."""
        key = (tuple(weights) if not isinstance(weights, torch.Tensor) else tuple(weights.tolist()), size)
        if key not in self._coefficients:
            w = weights_list(weights)
            total = sum(w)
            device = self.vectors.device
            # sem = mean(1 - cos) over both sources = 2 - sum(cos) / B; disc = sum(ce) / (6 B)
            offset = torch.tensor([2.0, 0.0, 2.0], device=device)
            scale = torch.tensor([-1.0 / size, 1.0 / (2 * (_K - 1) * size), -1.0 / size], device=device)
            middle = torch.tensor([w[1], w[2], w[3]], device=device) / total
            self._coefficients[key] = (offset, scale, middle, w[0] / total, w[4] / total)
        return self._coefficients[key]

    def step_losses(self, batch: PairBatch, flat: torch.Tensor, weights, all_terms: bool = False,
                    with_grad: bool = False):
        """The fast path used by training.

        Args:
            batch: a :class:`PairBatch`; flat: (8 D + 4) = [M | W | bias] flattened;
            weights: the 5 lambdas; all_terms: compute the orthogonality term at weight 0 too.
            with_grad: compute the gradient of the total right away, without autograd.
        Returns:
            ``(total, terms, clip, orthogonal)``: the weighted total and (3,) [semantic,
            discriminator, reconstruction] (differentiable w.r.t. ``flat`` through autograd), the
            CLIP term (a constant) and the orthogonality term (NaN when not computed); with
            ``with_grad`` a fifth item, d total / d flat.
        """
        size = len(batch.rows)
        offset, scale, middle, w_clip, w_orth = self._coefficients_for(weights, size)
        clip = batch.clip if batch.clip is not None else self.clip_losses(batch.rows[None])[0]
        if w_orth > 0 or all_terms:  # sum_i |e_i,d| of the batch, e = (x + y) / |x + y|
            centre = batch.vectors.view(size, 2, -1).sum(1) * batch.consts[INV_CENTRE, :, 0, None]
            centre_abs = centre.abs().sum(0) / (_K * size + 1e-6)             # (D,)
        else:
            centre_abs = flat.new_zeros(0)
        inputs = (batch.vectors, batch.consts, batch.own, self.table_map, offset, scale, middle, w_clip * clip,
                  w_orth, centre_abs)
        if with_grad:
            total, terms, orth, grad = loss_and_grad(flat, *inputs)
        else:
            total, terms, orth = FrozenLoss.apply(flat, *inputs)
        if not len(centre_abs):
            orth = self._nan
        return (total, terms, clip, orth, grad) if with_grad else (total, terms, clip, orth)

    def losses(self, batch: PairBatch | torch.Tensor, modality_embeddings: torch.Tensor,
               discriminator_weight: torch.Tensor, discriminator_bias: torch.Tensor, weights,
               all_terms: bool = False) -> dict:
        """All loss terms of one batch, as :func:`mars_lite.method.losses.compute_losses` returns them.

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
        if isinstance(weights, LossWeights):
            weights = weights_list(weights)
        flat = torch.cat([modality_embeddings.reshape(-1), discriminator_weight.reshape(-1),
                          discriminator_bias.reshape(-1)]).float()
        total, terms, clip, orth = self.step_losses(batch, flat, weights, all_terms)
        semantic, discriminator, reconstruction = terms.unbind()
        return {"clip": clip, "semantic": semantic, "discriminator": discriminator,
                "reconstruction": reconstruction, "orthogonal": orth, "total": total}


def frozen_losses(image_embeds: torch.Tensor, text_embeds: torch.Tensor, modality_ids,
                  modality_embeddings: torch.Tensor, discriminator_weight: torch.Tensor,
                  discriminator_bias: torch.Tensor, logit_scale=LOGIT_SCALE, weights=None,
                  all_terms: bool = True) -> dict:
    """Drop-in for :func:`mars_lite.method.losses.compute_losses` on one batch (same arguments and keys).

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
