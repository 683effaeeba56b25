"""Frozen mode's accelerator: the MARS losses on cached embeddings, computed from inner products.

With the backbone fixed, every loss term depends on M and the classifier only through a few inner
products per row, so an epoch costs a few hundred microseconds per batch on a CPU. ``loss``
(``CachedPairs``: per-row constants, the losses of a batch), ``grad`` (the hand-written gradient),
``kernel`` (the per-row loop, numba-compiled on CPU). Tested equal to
``mars_lite.method.losses.compute_losses`` in values and gradients (tests/test_frozen_loss.py).
"""
