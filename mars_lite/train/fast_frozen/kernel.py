"""The per-row algebra of the frozen-mode loss as one compiled loop (CPU), value and gradient.

:mod:`mars_lite.train.fast_frozen.grad` reduces a training step to two thin matrix products plus scalar
algebra per row and source (~40 formulas). As tensor operations that algebra is ~80 calls on
tensors of a few thousand numbers, so a step is dominated by per-call overhead. Here the same
formulas run in a single loop compiled by numba (a dependency of umap-learn, already required),
which is ~10x cheaper on a CPU. The tensor version stays the reference and the GPU path; both
are tested against ``mars_lite.method.losses.compute_losses``.

Names as in frozen_grad: for row i and source s (0 the image, 1 its caption) with own modality o
and partner modality q, ``xm[k] = x.m_k`` and ``xw[l] = x.w_l`` (rows 0..3 and 4..7 of ``proj``),
the partner's ``ym[k]`` is ``proj[k, i, 1 - s]``; the per-modality ``table`` (21, 4) holds
``|m_o|^2``, ``|m_k - m_o|^2`` and ``(m_k - m_o).w_l``.
"""
from __future__ import annotations

import math

import numpy as np

_KERNEL = None


def available() -> bool:
    """True when numba can be imported (the kernel is compiled on first use)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _build():
    import numba

    @numba.njit(cache=True, fastmath=False)
    def rows(proj, table, consts, own, bias, coefficients, small, d_proj, d_table):
        """Fill ``small[:3]`` = [sum cos_sem, sum kept CE, sum cos_rec]. When ``coefficients[3]``
        is nonzero, also the gradients of ``a_sem * sums[0] + a_disc * sums[1] + a_rec * sums[2]``
        (``coefficients[:3]``): d proj, d table and d bias (``small[3:]``); outputs are zeroed here."""
        a_sem, a_disc, a_rec = coefficients[0], coefficients[1], coefficients[2]
        want_grad = coefficients[3] != 0.0
        small[:] = 0.0
        if want_grad:
            d_proj[:] = 0.0
            d_table[:] = 0.0
        d_bias = small[3:]
        k_count = 4
        eps = 1e-12
        size = proj.shape[1]
        logits = np.empty((k_count, k_count))
        expd = np.empty((k_count, k_count))
        totals = np.empty(k_count)
        inv = np.empty(k_count)
        d_xm = np.empty(k_count)
        d_ym = np.empty(k_count)
        sem_sum = 0.0
        ce_sum = 0.0
        rec_sum = 0.0
        for i in range(size):
            for s in range(2):
                o = own[i, s]
                q = own[i, 1 - s]
                xx, xy, sem_c, inv_c, inv_y = consts[0, i, s], consts[1, i, s], consts[2, i, s], consts[3, i, s], consts[4, i, s]
                xm_o = proj[o, i, s]
                ym_o = proj[o, i, 1 - s]
                base = xx - 2.0 * xm_o
                inv0 = 1.0 / math.sqrt(max(base + table[0, o], eps))
                for k in range(k_count):
                    inv[k] = 1.0 / math.sqrt(max(base + table[1 + k, o] + 2.0 * proj[k, i, s], eps))
                sem_num = sem_c - xm_o - ym_o
                sem_sum += sem_num * inv0 * inv_c
                rec_num = proj[q, i, 1 - s] - ym_o + xy
                rec_sum += rec_num * inv[q] * inv_y
                # classifier on the converted vectors x - m_o + m_k, k != o; CE summed over k
                # (the logs of the three partition sums are taken as one log of their product)
                product = 1.0
                for k in range(k_count):
                    if k == o:
                        continue
                    top = -1e300
                    for l in range(k_count):
                        logits[k, l] = (proj[4 + l, i, s] + table[5 + 4 * k + l, o]) * inv[k] + bias[l]
                        top = max(top, logits[k, l])
                    total = 0.0
                    for l in range(k_count):
                        expd[k, l] = math.exp(logits[k, l] - top)
                        total += expd[k, l]
                    totals[k] = total
                    product *= total
                    ce_sum += top - logits[k, k]
                ce_sum += math.log(product)
                if not want_grad:
                    continue
                for k in range(k_count):
                    d_xm[k] = 0.0
                    d_ym[k] = 0.0
                d_base = 0.0
                for k in range(k_count):
                    d_inv = 0.0
                    if k != o:
                        for l in range(k_count):
                            d_logit = a_disc * (expd[k, l] / totals[k] - (1.0 if l == k else 0.0))
                            d_bias[l] += d_logit
                            d_numer = d_logit * inv[k]
                            d_table[5 + 4 * k + l, o] += d_numer
                            d_proj[4 + l, i, s] += d_numer
                            d_inv += d_logit * (logits[k, l] - bias[l]) / inv[k]
                    if k == q:
                        d_inv += a_rec * rec_num * inv_y
                    if d_inv != 0.0:
                        d_sq = -0.5 * inv[k] ** 3 * d_inv
                        d_table[1 + k, o] += d_sq
                        d_xm[k] += 2.0 * d_sq
                        d_base += d_sq
                d_sq0 = -0.5 * inv0 ** 3 * (a_sem * inv_c * sem_num)
                d_table[0, o] += d_sq0
                d_base += d_sq0
                d_num = a_sem * inv0 * inv_c
                d_xm[o] += -d_num - 2.0 * d_base
                d_rec = a_rec * inv[q] * inv_y
                d_ym[q] += d_rec
                d_ym[o] -= d_rec + d_num
                for k in range(k_count):
                    d_proj[k, i, s] += d_xm[k]
                    d_proj[k, i, 1 - s] += d_ym[k]
        small[0] = sem_sum
        small[1] = ce_sum
        small[2] = rec_sum

    return rows


def kernel():
    """The compiled loop (numba compiles it on the first call and caches it on disk)."""
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _build()
    return _KERNEL
