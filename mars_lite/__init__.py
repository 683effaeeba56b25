"""mars_lite: zero-shot sketch-based image retrieval with modality-aware representation learning.

A study kit re-implementing Lyou et al., "Modality-Aware Representation Learning for Zero-shot
Sketch-based Image Retrieval", WACV 2024, on top of open_clip.

The few names a user needs: ``create_model(name, pretrained)`` builds a model,
``load_model(checkpoint)`` restores a trained one, ``open_model(source, ...)`` does either.
Layers, bottom to top (imports point down): ``settings``/``files``/``config`` -> ``data`` ->
``method`` (model, losses, checkpoints) -> ``embed`` -> ``train`` / ``eval`` / ``search`` ->
``ui`` / ``study`` -> ``cli``.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["create_model", "load_model", "open_model", "__version__"]


def __getattr__(name: str):
    # Lazy so that light modules (data, metrics, settings) import without torch/open_clip.
    if name == "create_model":
        from .method.model import create_model
        return create_model
    if name in ("load_model", "open_model"):
        from .method import loading
        return getattr(loading, name)
    raise AttributeError(f"module 'mars_lite' has no attribute {name!r}")
