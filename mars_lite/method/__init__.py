"""The method of the paper: what a MARS model is and how it learns.

``modalities`` (ids 0 photo, 1 sketch, 2/3 captions; caption templates; retrieval kinds),
``losses`` (the five loss terms, ``compute_losses``), ``model`` (``create_model``: an open_clip
backbone + modality vectors M + modality classifier; ``retrieval_embedding``), ``weights`` (where
backbone weights come from), ``checkpoint`` (safetensors files), ``loading`` (``load_model`` and
``open_model``: the one way to get a model), ``standin`` (the offline ``mobilenet-minilm`` backbone).
Model architectures are JSON files in ``model_configs/``.
"""
from __future__ import annotations

__all__ = ["compute_losses", "create_model", "load_model", "open_model"]


def __getattr__(name: str):
    # Lazy: ``modalities`` and ``losses`` stay importable without building open_clip.
    if name == "compute_losses":
        from .losses import compute_losses
        return compute_losses
    if name == "create_model":
        from .model import create_model
        return create_model
    if name in ("load_model", "open_model"):
        from . import loading
        return getattr(loading, name)
    raise AttributeError(f"module 'mars_lite.method' has no attribute {name!r}")
