"""Relevance feedback: refine a sketch query from the photos a user marked "yes" or "no".

Rocchio's update (Rocchio, 1971; see Manning, Raghavan & Schütze, *Introduction to Information
Retrieval*, 2008, Sec. 9.1.1, which also gives the customary weights used below):

    q' = normalize(α·q + β·mean(relevant) − γ·mean(irrelevant))

Everything here is unit vectors in the gallery's embedding space, so ``q'`` is searched exactly as a
sketch query is. A "reset" is simply the sketch's own embedding again. ``simulate_feedback`` plays a
user who marks the top results by their true class, round after round (``benchmarks/feedback_gain.py``).
``refine_result`` re-ranks a sketch's ``live.QueryResult`` from marked gallery rows: the sketch pad's
"yes" / "no" marks (``ui/feedback_tiles.py``) and the Python API use it alike.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import MarsLiteError

ALPHA, BETA, GAMMA = 1.0, 0.75, 0.15  # Manning et al. (2008), Sec. 9.1.1


def refine(query: torch.Tensor, relevant: torch.Tensor | None = None, irrelevant: torch.Tensor | None = None,
           alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA) -> torch.Tensor:
    """The Rocchio-refined query.

    Args:
        query: (D,) or (1, D) the sketch's query embedding (any retrieval kind).
        relevant, irrelevant: (R, D) / (N, D) gallery embeddings (same kind) marked "yes" / "no";
            ``None`` or empty for none.
    Returns:
        (D,) or (1, D) as given: a unit vector; with no marks, the normalised query itself.
    """
    q = query.reshape(-1).float()
    moved = alpha * q
    if relevant is not None and len(relevant):
        moved = moved + beta * relevant.float().reshape(len(relevant), -1).mean(0)
    if irrelevant is not None and len(irrelevant):
        moved = moved - gamma * irrelevant.float().reshape(len(irrelevant), -1).mean(0)
    return F.normalize(moved, dim=0).reshape(query.shape)


def simulate_feedback(queries: torch.Tensor, query_labels: Sequence[str], gallery: torch.Tensor,
                      gallery_labels: Sequence[str], rounds: int = 2, marks: int = 10) -> list[torch.Tensor]:
    """A user who, each round, marks the ``marks`` best not-yet-marked photos by their true class.

    Marks accumulate over rounds (a real user does not unmark). Args: queries (Q, D) and gallery
    (G, D) unit vectors, one label each. Returns the (Q, G) score matrices of round 0 (the sketch
    alone) to round ``rounds``.
    """
    labels = np.asarray(gallery_labels)
    scores = [queries @ gallery.T]
    marked = torch.zeros(len(queries), len(gallery), dtype=torch.bool)
    for _ in range(rounds):
        current = scores[-1].masked_fill(marked, float("-inf"))
        top = current.topk(marks, dim=1).indices
        marked[torch.arange(len(queries))[:, None], top] = True
        refined = []
        for i, label in enumerate(query_labels):
            rows = marked[i].nonzero().reshape(-1).numpy()
            yes = rows[labels[rows] == label]
            no = rows[labels[rows] != label]
            refined.append(refine(queries[i], gallery[yes], gallery[no]))
        scores.append(torch.stack(refined) @ gallery.T)
    return scores


class FeedbackError(MarsLiteError, ValueError):
    """Marks that cannot refine a result (a row outside the gallery, or a result without its query)."""


def refine_result(searcher, base, relevant: Sequence[int] = (), irrelevant: Sequence[int] = (), seq: int = 0):
    """``base`` re-ranked from marked photos: its query refined with ``refine``, searched again.

    Args:
        searcher: the ``live.SketchSearcher`` that answered ``base``.
        base: the sketch's own ``live.QueryResult`` (its ``query``, ``kind`` and ``gallery`` are used).
        relevant, irrelevant: gallery rows (``base.indices`` entries, or any row) marked "yes" / "no";
            each mark counts once, a row in both counts as "yes".
        seq: sequence number of the new result.
    Returns:
        a ``QueryResult`` with ``relevant`` / ``irrelevant`` set, same kind and gallery; with no
        marks, ``base`` itself renumbered ``seq`` (the "reset": the sketch alone). Marked photos are
        not removed from the ranking (as in ``simulate_feedback``).
    """
    yes = tuple(dict.fromkeys(int(i) for i in relevant))
    no = tuple(i for i in dict.fromkeys(int(i) for i in irrelevant) if i not in yes)
    if not yes and not no:
        return dataclasses.replace(base, seq=seq, relevant=(), irrelevant=(), timings=dict(base.timings))
    if base.query is None:
        raise FeedbackError("this result does not carry its query embedding; query again with the searcher")
    t0 = time.perf_counter()
    matrix = searcher.gallery(base.gallery).matrix(base.kind)
    outside = [i for i in yes + no if not 0 <= i < len(matrix)]
    if outside:
        raise FeedbackError(f"gallery rows {outside} are not in gallery {base.gallery!r} ({len(matrix)} photos); "
                            "mark rows of its results")
    query = refine(base.query, matrix[list(yes)], matrix[list(no)])
    result = searcher.search(query[None], base.kind, base.gallery, seq, [base.image])[0]
    result.relevant, result.irrelevant = yes, no
    result.timings["total"] = (time.perf_counter() - t0) * 1e3
    return result
