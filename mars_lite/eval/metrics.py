"""Retrieval metrics for zero-shot SBIR: mAP@all, mAP@200, P@100 and P@200.

Queries (sketches) rank a gallery (photos) by a score, higher = more similar; a gallery item is
relevant when its label equals the query's. R is a query's number of relevant items; queries with
R = 0 are left out of every mean (the reference uses ``nanmean``).

Two conventions, chosen with ``convention=``:

``"reference"`` -- what the authors' implementation of Lyou et al., WACV 2024 computes
(``docs/method.md``, "Metrics"; checked against ``parity/metrics_*.npz``):
  * mAP@all: VOC-style interpolated AP over the whole ranking = mean over the R relevant items of
    the interpolated precision at the item (the largest precision at that rank or any later one).
  * mAP@200: the same over the top 200 only (interpolation looks no further than rank 200),
    summed over the relevant items inside the top 200 and divided by min(200, R).
  * P@K: precision over the top min(K, R) items (R-precision when R < K).
``"standard"`` -- the usual textbook definitions:
  * mAP@all: non-interpolated AP, equal to ``sklearn.metrics.average_precision_score`` on
    tie-free scores = mean over the relevant items of the precision at the item's rank.
  * mAP@200: non-interpolated AP over the top 200, i.e. the sum of the precisions at the
    relevant items ranked <= 200 divided by min(200, R).
  * P@K: plain precision over the top K items (hits / K, even when R < K or G < K).

Ties (equal scores) are broken pessimistically: a relevant item ranks after every irrelevant item
with the same score. Results therefore do not depend on the gallery's order, and a collapsed
model (all scores equal) gets the worst score instead of whatever the gallery order gives it.
Order among tied relevant items does not change any metric. With ties, scikit-learn's AP (which
scores a tied group as one threshold) can differ from the standard convention here.

Ranking only what the metrics need: every metric is a function of the ranks of the relevant
items, and the rank of a relevant item with score s is (its place among the relevant items) +
(the number of irrelevant items scoring >= s). Only the R relevant scores of a row are sorted;
the other items are counted into the gaps between them (``_count_below``), rows split over
threads. No argsort of the gallery, no per-item loop in Python.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import numpy as np

CONVENTIONS = ("reference", "standard")
METRIC_KEYS = ("map_all", "map_200", "p_100", "p_200")
_AP_TOP = 200
_PRECISION_KS = (100, 200)
_BUCKETS_PER_RELEVANT = 32  # see _count_below: fewer items share a bucket with a relevant one
_MAX_EXACT_STEPS = 8  # buckets holding more relevant scores than this fall back to searchsorted


def retrieval_metrics(similarity, query_labels, gallery_labels, convention: str = "reference", *,
                      per_class: bool = False, chunk_size: int = 1024,
                      num_threads: int | None = None) -> dict:
    """Retrieval metrics from a full score matrix.

    similarity: (Q, G) float scores, higher = more similar (for distances pass ``-distance``);
    numpy array or torch tensor. query_labels: (Q,), gallery_labels: (G,) class labels.
    convention: ``"reference"`` or ``"standard"`` (see the module docstring).
    per_class: also return ``"per_class"``: {label: {metric: float, "queries": n, "relevant": R}}.
    chunk_size: rows sorted at a time (bounds the working copy to chunk_size x G).
    Returns {"map_all", "map_200", "p_100", "p_200"} as floats (+ "per_class" when asked).
    """
    _check_options(convention, chunk_size)
    sim = _to_numpy(similarity, "similarity")
    if sim.ndim != 2 or 0 in sim.shape:
        raise ValueError(f"similarity must be a non-empty (Q, G) matrix, got shape {sim.shape}")
    if sim.dtype not in (np.float32, np.float64):
        sim = sim.astype(np.float64)
    q_lab, g_lab = _check_labels(query_labels, gallery_labels, *sim.shape)

    def chunks(rows: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(rows), chunk_size):
            idx = rows[start:start + chunk_size]
            block = sim[idx]  # fancy indexing: a private copy that may be sorted in place
            if np.isnan(block).any():
                raise ValueError(f"similarity has NaN in rows {idx[:5].tolist()}...; fix the scores")
            yield idx, block

    return _evaluate(chunks, q_lab, g_lab, convention, per_class, num_threads, None)


def evaluate_embeddings(query_emb, gallery_emb, query_labels, gallery_labels,
                        convention: str = "reference", *, per_class: bool = False,
                        chunk_size: int = 512, num_threads: int | None = None,
                        progress: Callable[[int, int], None] | None = None) -> dict:
    """Retrieval metrics of cosine similarity between embeddings, without the full Q x G matrix.

    query_emb: (Q, D), gallery_emb: (G, D) float embeddings (numpy or torch; normalised here, so
    raw embeddings are fine). float64 inputs are scored in float64, everything else in float32.
    query_labels: (Q,), gallery_labels: (G,). Queries are scored chunk_size at a time (one
    chunk_size x G float buffer, reused), grouped by class so each chunk shares its relevant set.
    num_threads: threads that sort rows (default: the CPUs this process may use); the matrix
    product uses numpy's BLAS threads. progress(done, total) is called after every chunk.
    Returns the same dict as :func:`retrieval_metrics` on the (Q, G) cosine matrix.
    """
    _check_options(convention, chunk_size)
    q = _to_numpy(query_emb, "query_emb")
    g = _to_numpy(gallery_emb, "gallery_emb")
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1] or 0 in q.shape + g.shape:
        raise ValueError(f"embeddings must be non-empty (Q, D) and (G, D) with the same D, got "
                         f"query {q.shape} and gallery {g.shape}")
    q_lab, g_lab = _check_labels(query_labels, gallery_labels, len(q), len(g))
    dtype = np.float64 if np.float64 in (q.dtype, g.dtype) else np.float32
    for name, emb in (("query_emb", q), ("gallery_emb", g)):
        if not np.isfinite(emb).all():
            raise ValueError(f"{name} has NaN or infinite values")
    g_unit = _unit_rows(g.astype(dtype, copy=False)).T  # (D, G)
    buffer = np.empty((min(chunk_size, len(q)), len(g)), dtype=dtype)

    def chunks(rows: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(rows), chunk_size):
            idx = rows[start:start + chunk_size]
            block = buffer[:len(idx)]
            np.matmul(_unit_rows(q[idx].astype(dtype, copy=False)), g_unit, out=block)
            yield idx, block

    return _evaluate(chunks, q_lab, g_lab, convention, per_class, num_threads, progress)


def _evaluate(chunks, q_lab, g_lab, convention, per_class, num_threads, progress):
    """Shared driver: per-query metrics for every class group, then the (per-class) means."""
    threads = num_threads or _usable_cpus()
    per_query = np.full((len(q_lab), len(METRIC_KEYS)), np.nan)  # stays NaN where R = 0
    groups = list(_class_groups(q_lab, g_lab))
    done = 0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _, rows, relevant in groups:
            if len(relevant) == 0:
                done += len(rows)
                continue
            for idx, block in chunks(rows):
                ranks = _relevant_ranks(block, relevant, pool, threads)
                per_query[idx] = _metrics_from_ranks(ranks, convention)
                done += len(idx)
                if progress is not None:
                    progress(done, len(q_lab))
    scored = ~np.isnan(per_query[:, 0])
    if not scored.any():
        raise ValueError("no query has a relevant gallery item (no query label occurs in "
                         "gallery_labels); check that both label arrays use the same class ids")
    result = {key: float(v) for key, v in zip(METRIC_KEYS, per_query[scored].mean(axis=0))}
    if per_class:
        result["per_class"] = {
            label.item() if hasattr(label, "item") else label: {
                **{key: float(v) for key, v in zip(METRIC_KEYS, per_query[rows].mean(axis=0))},
                "queries": len(rows), "relevant": len(relevant)}
            for label, rows, relevant in groups}
    return result


def _relevant_ranks(block: np.ndarray, relevant: np.ndarray, pool: ThreadPoolExecutor,
                    threads: int) -> np.ndarray:
    """Ranks of the relevant items, best first.

    block: (n, G) scores (read only). relevant: (R,) gallery column indices.
    Returns (n, R) int64: 1-based ranks, increasing along each row; ties pessimistic.
    """
    n, n_gallery = block.shape
    rel = np.sort(block[:, relevant], axis=1)  # (n, R) ascending
    n_rel = rel.shape[1]
    at_or_above = np.empty((n, n_rel), dtype=np.int64)  # irrelevant items scoring >= each

    def rank_rows(lo: int, hi: int) -> None:
        for i in range(lo, hi):  # numpy drops the GIL inside each call: threads overlap
            rel_below = np.searchsorted(rel[i], rel[i], side="left")
            # items >= s = G - (items < s); minus the relevant items >= s
            at_or_above[i] = (n_gallery - _count_below(block[i], rel[i])) - (n_rel - rel_below)

    bounds = np.linspace(0, n, min(threads, n) + 1).astype(int)
    list(pool.map(rank_rows, bounds[:-1], bounds[1:]))
    # column m (ascending) is the (R - m)-th best relevant item: flip to best first
    return np.arange(1, n_rel + 1) + at_or_above[:, ::-1]


def _count_below(scores: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """(G,) scores, (R,) ascending scores -> (R,) int64: how many scores are < each rel[m].

    Equal to ``np.searchsorted(np.sort(scores), rel)`` but about 2-3x faster on large rows
    (numpy's sort and searchsorted cost ~20 and ~80 ns per item). Each score x gets
    pos(x) = #{rel <= x}; then #{x < rel[m]} = #{x : pos(x) <= m}, a cumulative histogram.
    pos comes from a table over ``_BUCKETS_PER_RELEVANT * R`` equal-width buckets spanning the
    rel scores: the bucket index is a monotone function of the score (the same float operations
    for every value), so rel scores in lower buckets are < x and those in higher ones > x. Only x
    that share a bucket with a rel score need exact comparisons (a few percent of the row).
    """
    n_rel = len(rel)
    # capped so that every bucket index is exact in float32 (and the table stays small)
    n_buckets = min(_BUCKETS_PER_RELEVANT * n_rel, 1 << 22)
    span = float(rel[-1]) - float(rel[0])
    if 0 < span < np.inf and np.isfinite(n_buckets / span):
        scale = scores.dtype.type(n_buckets / span)
        shift = scores.dtype.type(1) - rel[0] * scale

        def bucket(values: np.ndarray) -> np.ndarray:  # bucket 0 below rel[0], last above
            t = values * scale
            t += shift
            return np.clip(t, 0, n_buckets + 1, out=t).astype(np.intp)
    else:  # all rel scores equal, or infinite: one bucket, exact comparisons for everything
        def bucket(values: np.ndarray) -> np.ndarray:
            return np.ones(len(values), dtype=np.intp)
    occupancy = np.bincount(bucket(rel), minlength=n_buckets + 2)
    rel_in_lower = np.cumsum(occupancy) - occupancy
    buckets = bucket(scores)
    pos = rel_in_lower[buckets]  # exact wherever the bucket holds no rel score
    shared = np.flatnonzero((occupancy > 0)[buckets])
    x = scores[shared]
    most = int(occupancy.max())
    if most <= _MAX_EXACT_STEPS:
        # compare with the rel scores of the bucket; indices that run past it reach higher
        # buckets (> x, so the comparison is False) or the NaN padding (always False)
        start = pos[shared]
        padded = np.concatenate([rel, np.full(most, np.nan, dtype=rel.dtype)])
        exact = start.copy()
        for step in range(most):
            exact += padded[start + step] <= x
        pos[shared] = exact
    else:  # crowded buckets (heavy ties): binary search is cheaper
        pos[shared] = np.searchsorted(rel, x, side="right")
    return np.cumsum(np.bincount(pos, minlength=n_rel + 1))[:n_rel]


def _metrics_from_ranks(ranks: np.ndarray, convention: str) -> np.ndarray:
    """(n, R) increasing 1-based ranks of the relevant items -> (n, 4) metrics (METRIC_KEYS)."""
    n_rel = ranks.shape[1]
    precision = np.arange(1, n_rel + 1) / ranks  # (n, R) precision at each relevant item
    # ranks increase along a row, so the relevant items inside the top 200 form a prefix
    precision_top = np.where(ranks <= _AP_TOP, precision, 0.0)
    if convention == "reference":
        # zeros past the prefix leave the interpolation inside the top 200 unchanged
        ap_all = _running_max_from_end(precision).mean(axis=1)
        ap_top = _running_max_from_end(precision_top).sum(axis=1) / min(_AP_TOP, n_rel)
        cuts = [min(k, n_rel) for k in _PRECISION_KS]
    else:
        ap_all = precision.mean(axis=1)
        ap_top = precision_top.sum(axis=1) / min(_AP_TOP, n_rel)
        cuts = list(_PRECISION_KS)
    p_at = [(ranks <= cut).sum(axis=1) / cut for cut in cuts]
    return np.stack([ap_all, ap_top, *p_at], axis=1)


def _running_max_from_end(values: np.ndarray) -> np.ndarray:
    """(n, R) -> (n, R): entry j is max(values[:, j:]) (VOC-style precision interpolation)."""
    return np.maximum.accumulate(values[:, ::-1], axis=1)[:, ::-1]


def _class_groups(q_lab: np.ndarray, g_lab: np.ndarray):
    """Yield (label, query rows (n,), relevant gallery columns (R,)) for each query class."""
    labels, inverse = np.unique(q_lab, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(len(labels) + 1))
    for c, label in enumerate(labels):
        yield label, order[starts[c]:starts[c + 1]], np.flatnonzero(g_lab == label)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, D) rows scaled to unit L2 norm (all-zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.finfo(x.dtype).tiny)


def _to_numpy(x, name: str) -> np.ndarray:
    """numpy array or torch tensor (any device) -> numpy array, without importing torch."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numpy array or torch tensor: {err}") from err


def _check_labels(query_labels, gallery_labels, n_queries: int, n_gallery: int):
    q_lab = _to_numpy(query_labels, "query_labels")
    g_lab = _to_numpy(gallery_labels, "gallery_labels")
    if q_lab.shape != (n_queries,) or g_lab.shape != (n_gallery,):
        raise ValueError(f"labels must be 1-D with one entry per query ({n_queries}) and per "
                         f"gallery item ({n_gallery}); got query_labels {q_lab.shape} and "
                         f"gallery_labels {g_lab.shape}")
    return q_lab, g_lab


def _check_options(convention: str, chunk_size: int) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if not (isinstance(chunk_size, (int, np.integer)) and chunk_size >= 1):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")


def _usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
