"""Stable import path ``mars_lite.losses``: the MARS loss terms live in :mod:`mars_lite.method.losses`.

The old path is the same module object, not a copy, so ``mars_lite.losses.compute_losses`` is
``mars_lite.method.losses.compute_losses``.
"""
import sys

from .method import losses as _losses

sys.modules[__name__] = _losses
