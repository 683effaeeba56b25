"""Evaluation: how well sketches find photos, and how far apart the modalities sit.

``metrics`` (mAP@all, mAP@200, P@100, P@200 in the reference and standard conventions),
``evaluation`` (``evaluate``: a model or checkpoint on a split's unseen classes, zero-shot
bookkeeping), ``parts`` (embedding a dataset's parts ahead of time), ``report`` (JSON + Markdown
tables), ``finegrained`` (instance-level Acc@k), ``published`` (the paper's numbers, for
comparison), ``gap`` (modality-gap measures).
"""
from __future__ import annotations

from .metrics import evaluate_embeddings, retrieval_metrics

__all__ = ["evaluate_embeddings", "retrieval_metrics"]
