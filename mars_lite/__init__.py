"""mars_lite: zero-shot sketch-based image retrieval with modality-aware representation learning.

A study kit re-implementing Lyou et al., "Modality-Aware Representation Learning for Zero-shot
Sketch-based Image Retrieval", WACV 2024, on top of open_clip.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["create_model", "__version__"]


def __getattr__(name: str):
    # Lazy so that light modules (data, metrics, settings) import without torch/open_clip.
    if name == "create_model":
        from .method.model import create_model
        return create_model
    raise AttributeError(f"module 'mars_lite' has no attribute {name!r}")
