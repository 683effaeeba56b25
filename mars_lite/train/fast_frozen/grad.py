"""The hand-written gradient of the frozen-mode loss (see :mod:`mars_lite.train.fast_frozen.loss`).

At the sizes of a training step (B = 256 rows, 4 modalities) the loss is ~40 tiny tensor
operations; autograd would record and replay each of them, roughly doubling the cost of a step.
:class:`FrozenLoss` computes the semantic, classifier and reconstruction terms and writes their
gradient w.r.t. ``[M; W]`` and the classifier bias out by hand. ``tests/test_frozen_loss.py``
checks values and gradients against autograd through ``mars_lite.method.losses.compute_losses``.

Notation as in frozen_loss: for each row and source (image or caption) x with partner y and own
modality o, ``xm[k] = x.m_k``, ``xw[l] = x.w_l``; ``inv[0] = 1/|x - m_o|`` and ``inv[1 + k] =
1/|x - m_o + m_k|``; the per-modality table holds ``|m_o|^2``, ``|m_k - m_o|^2`` and
``(m_k - m_o).w_l``, a fixed linear map of ``M [M; W]^T``.
"""
from __future__ import annotations

import numpy as np
import torch

from . import kernel as frozen_kernel
from ...method.modalities import NUM_MODALITIES

_K = NUM_MODALITIES
# Per-row constants (first axis of a batch's (21, B, 2) block; last axis: 0 image, 1 caption).
XX, XY, SEM, INV_CENTRE, INV_Y = 0, 1, 2, 3, 4          # |x|^2, x.y, |x|^2 + x.y, 1/|x+y|, 1/|y|
OWN, PARTNER, SHIFT, KEEP = slice(5, 9), slice(9, 13), slice(13, 17), slice(17, 21)
WIDTH = 21
TABLE = 1 + _K + _K * _K   # per own modality o: |m_o|^2, |m_k - m_o|^2 (k), (m_k - m_o).w_l (k, l)
_EPS = 1e-12
_EYE = torch.eye(_K).view(_K, _K, 1, 1)  # picks the target logit k = l (contiguous, unlike .diagonal)
_ZERO = torch.zeros(())
# Run the per-row algebra in the compiled loop on CPU (tests switch it off to check both paths).
USE_KERNEL = True


def build_table_map() -> torch.Tensor:
    """(21 * 4, 32) constant map from ``M [M; W]^T`` (4 x 8, flattened) to the per-modality table
    (21 entries x 4 own modalities, flattened)."""
    a = torch.zeros(TABLE, _K, _K, 2 * _K)
    for o in range(_K):
        a[0, o, o, o] = 1                                     # G_oo
        for k in range(_K):
            a[1 + k, o, k, k] += 1                            # |m_k - m_o|^2 = G_kk + G_oo - 2 G_ok
            a[1 + k, o, o, o] += 1
            a[1 + k, o, o, k] -= 2
            for w in range(_K):                               # (m_k - m_o).w_l = H_kl - H_ol
                a[1 + _K + k * _K + w, o, k, _K + w] += 1
                a[1 + _K + k * _K + w, o, o, _K + w] -= 1
    return a.reshape(TABLE * _K, _K * 2 * _K)


def _prepare(flat, vectors, table_map):
    """[M; W] (8, D), bias (4,), projections x.m_k / x.w_l (8, B, 2) and the (21, 4) table."""
    k = _K
    mw, bias = flat[:-k].view(2 * k, -1), flat[-k:]
    proj = (mw @ vectors.T).view(2 * k, -1, 2)
    table = (table_map @ (mw[:k] @ mw.T).reshape(-1)).view(TABLE, k)       # from [G | H] = M [M; W]^T
    return mw, bias, proj, table


_BUFFERS: dict = {}  # kernel outputs by batch size, reused (each step consumes them at once)


def _kernel_pass(proj, table, consts, own, bias, coefficients=None):
    """Sums (3,) from the compiled loop; with ``coefficients`` (a_sem, a_disc, a_rec) also
    d proj (8, B, 2), d table (21, 4) and d bias (4,) of their weighted sum."""
    size = proj.shape[1]
    if size not in _BUFFERS:
        _BUFFERS[size] = (np.zeros(4), np.zeros(3 + _K), np.zeros((2 * _K, size, 2), np.float32),
                          np.zeros((TABLE, _K), np.float32))
    flags, small, d_proj, d_table = _BUFFERS[size]
    want = coefficients is not None
    flags[:3] = coefficients if want else 0.0
    flags[3] = 1.0 if want else 0.0
    frozen_kernel.kernel()(proj.numpy(), table.numpy(), consts.numpy(), own.numpy(), bias.numpy(), flags, small,
                           d_proj, d_table)
    out = torch.from_numpy(small).to(proj.dtype)                           # a copy: the buffer is reused
    if not want:
        return out[:3]
    return out[:3], torch.from_numpy(d_proj), torch.from_numpy(d_table), out[3:]


def _torch_pass(proj, table, consts, bias):
    """Sums (3,) with tensor operations, and what the gradient needs (tensor path)."""
    k = _K
    size = consts.shape[1]
    xm, xw = proj[:k], proj[k:]                                            # (4, B, 2)
    ym = xm.flip(-1)                                                       # partner: y.m_k
    own = consts[OWN]                                                      # (4, B, 2) one-hot of o
    per_row = (table @ own.reshape(k, -1)).view(TABLE, size, 2)            # [|m_o|^2, |m_k - m_o|^2, ..]
    xm_o, ym_o = (xm * own).sum(0), (ym * own).sum(0)                      # (B, 2)
    # Squared norms of x - m_o (semantic part) and of x - m_o + m_k for every k (k = o gives
    # |x|^2 up to rounding, kept positive); inv holds their inverse square roots.
    sq = per_row[:1 + k] + (consts[XX] - 2 * xm_o)
    sq[1:].add_(xm, alpha=2)
    inv = sq.clamp_min_(_EPS).rsqrt_()                                     # (5, B, 2)
    # Semantic: cos(x - m_o, e), e = (x + y) / |x + y|.
    sem_num = consts[SEM] - xm_o - ym_o
    cos_sem = sem_num * inv[0] * consts[INV_CENTRE]
    # Reconstruction: cos(x - m_o + m_p, y), p the partner's own modality.
    rec_num = (ym * consts[SHIFT]).sum(0) + consts[XY]
    inv_p = (inv[1:] * consts[PARTNER]).sum(0)
    cos_rec = rec_num * inv_p * consts[INV_Y]
    # Classifier: logits[k, l] = (x.w_l + (m_k - m_o).w_l) / |x - m_o + m_k| + beta_l.
    numer = per_row[1 + k:].view(k, k, size, 2) + xw                      # (k, l, B, 2)
    logits = numer * inv[1:, None] + bias.view(1, k, 1, 1)
    top = logits.amax(1)                                                   # (k, B, 2)
    expd = (logits - top[:, None]).exp_()                                  # kept for the softmax
    total_exp = expd.sum(1)
    ce = total_exp.log().add_(top).sub_((logits * _EYE.to(logits.device)).sum(1))   # lse - target logit
    sums = torch.stack([cos_sem.sum(), (ce * consts[KEEP]).sum(), cos_rec.sum()])
    return sums, (inv, sem_num, rec_num, inv_p, numer, expd, total_exp)


def _torch_grad(consts, saved, a_sem, a_disc, a_rec):
    """d proj (8, B, 2), d table (21, 4), d bias (4,) of a_sem sums[0] + a_disc sums[1] + a_rec sums[2]."""
    inv, sem_num, rec_num, inv_p, numer, expd, total_exp = saved
    k = _K
    size = consts.shape[1]
    own = consts[OWN]
    # classifier: d ce_k / d logits_kl = softmax_l - [l = k], on kept targets only
    keep = consts[KEEP] * a_disc                                           # (k, B, 2)
    d_logits = expd * (keep / total_exp)[:, None]                          # softmax * keep, (k, l, B, 2)
    d_logits.sub_(_EYE.to(keep.device) * keep[:, None])
    d_bias = d_logits.sum(0).view(k, -1).sum(1)
    d_numer = d_logits * inv[1:, None]                                     # = d (m_k - m_o).w_l
    d_xw = d_numer.sum(0)                                                  # (l, B, 2)
    d_inv = torch.empty_like(inv)                                          # (5, B, 2)
    d_inv[0] = (a_sem * consts[INV_CENTRE]) * sem_num
    torch.sum(d_logits.mul_(numer), 1, out=d_inv[1:])
    d_inv[1:] += (a_rec * consts[INV_Y] * rec_num) * consts[PARTNER]
    d_ym = (a_rec * consts[INV_Y] * inv_p) * consts[SHIFT]               # (k, B, 2)
    d_num = (a_sem * consts[INV_CENTRE]) * inv[0]
    d_sq = d_inv.mul_(inv.pow(3)).mul_(-0.5)                               # inv = sq^(-1/2)
    # sq = per_row + |x|^2 - 2 x.m_o (+ 2 x.m_k); sem_num = const - x.m_o - y.m_o
    d_xm_o = -d_num - 2 * d_sq.sum(0)
    d_xm = (2 * d_sq[1:]).addcmul_(own, d_xm_o)
    d_ym.addcmul_(own, d_num, value=-1)
    d_xm += d_ym.flip(-1)
    d_rows = torch.cat([d_sq, d_numer.view(k * k, size, 2)]).view(TABLE, -1)
    d_table = d_rows @ own.reshape(k, -1).T                                # (21, 4)
    return torch.cat([d_xm, d_xw]), d_table, d_bias


def _flat_grad(mw, vectors, table_map, d_proj, d_table, d_bias, orth_factor, centre_abs):
    """d / d [M | W | bias] from the gradients of the projections, the table and the bias."""
    k = _K
    d_mw = d_proj.view(2 * k, -1) @ vectors                                # (8, D)
    d_gm = (d_table.reshape(1, -1) @ table_map).view(k, 2 * k)             # (4, 8)
    d_mw += d_gm.T @ mw[:k]
    d_mw[:k] += d_gm @ mw
    if len(centre_abs):
        d_mw[:k] += orth_factor * centre_abs * mw[:k].sign()
    return torch.cat([d_mw.view(-1), d_bias])


def _uses_kernel(tensor: torch.Tensor) -> bool:
    return USE_KERNEL and tensor.device.type == "cpu" and tensor.dtype == torch.float32 and frozen_kernel.available()


def _finish(sums, offset, scale, middle, clip_part, w_orth, centre_abs, mw):
    """terms (3,), total and the orthogonality term from the three sums."""
    terms = torch.addcmul(offset, scale, sums)
    total = terms @ middle + clip_part
    orth = _ZERO if total.device.type == "cpu" else total.new_zeros(())
    if len(centre_abs):
        orth = (centre_abs * mw[:_K].abs().sum(0)).sum()
        total = total + w_orth * orth
    return total, terms, orth


class FrozenLoss(torch.autograd.Function):
    """Semantic, classifier and reconstruction terms from inner products, with the gradient by hand.

    Inputs: flat (8 D + 4) = [M | W | bias], vectors (2B, D), consts (21, B, 2), own (B, 2) int64
    own-modality ids, table_map, offset/scale/middle (3,) coefficients, clip_part (0-d, the
    weighted CLIP term), w_orth and centre_abs ((D,) sum_i |e_i| / (4B), empty when the
    orthogonality term is off). Outputs: total (0-d), terms (3,) [semantic, discriminator,
    reconstruction], orthogonal (0-d). The per-row algebra runs in the compiled loop of
    :mod:`mars_lite.train.fast_frozen.kernel` on CPU (when numba is present) and as tensor operations otherwise.
    """

    @staticmethod
    def forward(ctx, flat, vectors, consts, own, table_map, offset, scale, middle, clip_part, w_orth, centre_abs):
        mw, bias, proj, table = _prepare(flat, vectors, table_map)
        ctx.kernel = _uses_kernel(flat)
        if ctx.kernel:
            sums, saved = _kernel_pass(proj, table, consts, own, bias), (proj, table, bias)
        else:
            sums, saved = _torch_pass(proj, table, consts, bias)
        ctx.saved = saved
        ctx.w_orth = w_orth
        ctx.save_for_backward(mw, vectors, consts, own, table_map, scale, middle, centre_abs)
        return _finish(sums, offset, scale, middle, clip_part, w_orth, centre_abs, mw)

    @staticmethod
    def backward(ctx, g_total, g_terms, g_orth):
        mw, vectors, consts, own, table_map, scale, middle, centre_abs = ctx.saved_tensors
        a_sem, a_disc, a_rec = ((g_terms + g_total * middle) * scale).unbind()  # d total / d each sum
        if ctx.kernel:
            proj, table, bias = ctx.saved
            _, d_proj, d_table, d_bias = _kernel_pass(proj, table, consts, own, bias,
                                                      (float(a_sem), float(a_disc), float(a_rec)))
        else:
            d_proj, d_table, d_bias = _torch_grad(consts, ctx.saved, a_sem, a_disc, a_rec)
        orth_factor = g_total * ctx.w_orth + g_orth
        grad = _flat_grad(mw, vectors, table_map, d_proj, d_table, d_bias, orth_factor, centre_abs)
        return grad, None, None, None, None, None, None, None, None, None, None


@torch.no_grad()
def loss_and_grad(flat, vectors, consts, own, table_map, offset, scale, middle, clip_part, w_orth, centre_abs):
    """``FrozenLoss`` and d total / d flat in one pass, with no autograd graph (single-process
    frozen training): (total, terms, orthogonal, gradient)."""
    mw, bias, proj, table = _prepare(flat, vectors, table_map)
    a = (middle * scale).tolist()
    if _uses_kernel(flat):
        sums, d_proj, d_table, d_bias = _kernel_pass(proj, table, consts, own, bias, a)
    else:
        sums, saved = _torch_pass(proj, table, consts, bias)
        d_proj, d_table, d_bias = _torch_grad(consts, saved, *a)
    total, terms, orth = _finish(sums, offset, scale, middle, clip_part, w_orth, centre_abs, mw)
    return total, terms, orth, _flat_grad(mw, vectors, table_map, d_proj, d_table, d_bias, w_orth, centre_abs)
