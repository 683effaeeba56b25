"""Stable import path ``mars_lite.metrics``: retrieval metrics live in :mod:`mars_lite.eval.metrics`.

The old path is the same module object, not a copy, so ``mars_lite.metrics.retrieval_metrics`` is
``mars_lite.eval.metrics.retrieval_metrics``.
"""
import sys

from .eval import metrics as _metrics

sys.modules[__name__] = _metrics
