"""Nearest-neighbour search by inner product over unit vectors: exact in chunks, or approximate with faiss.

``exact_topk`` is the reference: one matmul + topk per chunk of the gallery, merged, so the full
(Q, N) score matrix never exists for a large gallery. ``build_faiss_index`` makes an approximate
index (IVF-Flat or HNSW, inner-product metric) for galleries of hundreds of thousands of photos and
more; ``recall_at_k`` measures how many of the exact top-k it returns.

Pure numerics (torch, numpy, faiss); nothing here knows about models or files.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

APPROXIMATE_METHODS = ("ivf", "hnsw")
DEFAULT_CHUNK = 65_536  # gallery rows per matmul: (Q, 65536) float32 scores stay small


@dataclass
class SearchResult:
    """Top-k neighbours: ``scores`` (Q, k) float32 cosine similarities, best first; ``indices`` (Q, k) int64.

    ``k`` may be smaller than asked when the gallery is smaller; approximate search pads missing
    neighbours with index -1 and score -inf.
    """

    scores: torch.Tensor
    indices: torch.Tensor


@torch.inference_mode()
def exact_topk(queries: torch.Tensor, gallery: torch.Tensor, k: int = 10,
               chunk_size: int = DEFAULT_CHUNK) -> SearchResult:
    """Exact top-k by inner product.

    Args:
        queries: (Q, D) float tensor (unit rows for cosine similarity).
        gallery: (N, D) float tensor, same dtype family.
        k: neighbours per query (clipped to N).
        chunk_size: gallery rows scored per matmul.
    Returns:
        SearchResult with (Q, min(k, N)) scores and indices.
    """
    if queries.dim() != 2 or gallery.dim() != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"queries (Q, D) and gallery (N, D) must agree in D; got {tuple(queries.shape)} "
                         f"and {tuple(gallery.shape)}")
    k = min(int(k), gallery.shape[0])
    queries = queries.to(gallery.dtype)
    best_scores = torch.empty(queries.shape[0], 0, dtype=torch.float32)
    best_index = torch.empty(queries.shape[0], 0, dtype=torch.long)
    for start in range(0, gallery.shape[0], chunk_size):
        scores = (queries @ gallery[start:start + chunk_size].T).float()  # (Q, chunk)
        top = scores.topk(min(k, scores.shape[1]), dim=1)
        if start == 0 and scores.shape[1] == gallery.shape[0]:
            return SearchResult(top.values, top.indices)  # one chunk: nothing to merge
        merged_scores = torch.cat([best_scores, top.values], dim=1)
        merged_index = torch.cat([best_index, top.indices + start], dim=1)
        keep = merged_scores.topk(min(k, merged_scores.shape[1]), dim=1)
        best_scores, best_index = keep.values, merged_index.gather(1, keep.indices)
    return SearchResult(best_scores, best_index)


def default_nlist(n: int) -> int:
    """IVF cell count: ~4 sqrt(N) (a common rule of thumb), at most N / 39 so k-means has data, in [1, 65536]."""
    return int(max(1, min(4 * math.sqrt(n), n / 39, 65_536)))


def build_faiss_index(vectors: torch.Tensor | np.ndarray, method: str = "ivf", *, nlist: int | None = None,
                      nprobe: int | None = None, hnsw_m: int = 32, ef_search: int = 128,
                      train_size: int | None = None, seed: int = 0):
    """An approximate inner-product index over ``vectors`` (N, D).

    Args:
        method: ``ivf`` (IndexIVFFlat: k-means cells, search visits ``nprobe`` of them; builds fast)
            or ``hnsw`` (IndexHNSWFlat graph; no training, slower to build, strong recall).
        nlist: IVF cells (default :func:`default_nlist`).
        nprobe: IVF cells visited per query (default nlist / 16, at least 8).
        hnsw_m, ef_search: HNSW graph degree and search breadth.
        train_size: rows used for k-means (default min(N, 64 * nlist)); a random subset.
        seed: k-means and subset seed.
    Returns:
        a trained faiss index holding all N vectors (row i has id i).
    """
    import faiss

    data = _as_float32(vectors)
    n, dim = data.shape
    if n == 0:
        raise ValueError("cannot build an approximate index over an empty gallery")
    if method == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = max(40, hnsw_m)
        index.hnsw.efSearch = ef_search
        index.add(data)
        return index
    if method != "ivf":
        raise ValueError(f"unknown approximate method {method!r}; use one of {APPROXIMATE_METHODS}")
    nlist = int(nlist or default_nlist(n))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.cp.min_points_per_centroid = 1  # small galleries: allow few points per cell without warnings
    train_size = min(n, int(train_size or 64 * nlist))
    rows = np.random.default_rng(seed).choice(n, size=train_size, replace=False) if train_size < n else slice(None)
    index.train(np.ascontiguousarray(data[rows]))
    index.add(data)
    index.nprobe = int(nprobe or max(8, nlist // 16))
    return index


def faiss_search(index, queries: torch.Tensor | np.ndarray, k: int = 10) -> SearchResult:
    """Search a faiss index: (Q, D) queries -> SearchResult of (Q, min(k, ntotal))."""
    k = min(int(k), int(index.ntotal))
    scores, ids = index.search(_as_float32(queries), k)
    scores = torch.from_numpy(scores)
    scores[torch.from_numpy(ids) < 0] = float("-inf")
    return SearchResult(scores, torch.from_numpy(ids).long())


def recall_at_k(approximate: torch.Tensor, exact: torch.Tensor, k: int = 10) -> float:
    """Mean over queries of |approximate top-k ∩ exact top-k| / k.

    Args:
        approximate, exact: (Q, >=k) int neighbour indices (padding -1 never matches).
    """
    approximate, exact = approximate[:, :k], exact[:, :k]
    if exact.shape[0] == 0:
        raise ValueError("recall needs at least one query")
    hits = (approximate.unsqueeze(2) == exact.unsqueeze(1)) & (approximate.unsqueeze(2) >= 0)
    return float(hits.any(dim=2).sum(dim=1).float().mean() / exact.shape[1])


def _as_float32(vectors) -> np.ndarray:
    if isinstance(vectors, torch.Tensor):
        vectors = vectors.detach().cpu().float().numpy()
    return np.ascontiguousarray(vectors, dtype=np.float32)
