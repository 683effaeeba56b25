"""The one way to get a model: from a config name with weights, or from a saved checkpoint.

``load_model(checkpoint)`` restores a trained MARS model (backbone, modality vectors M, classifier,
config, seen classes); ``open_model(source, ...)`` is what every workflow (train, evaluate, embed,
index, demo, notebooks) calls: it accepts a model, a checkpoint file or a config name, and answers
with ``(model, info)`` where ``info`` says what the model is, so that every report can say it aloud.

Weight sources are parsed in one place (``parse_pretrained``): ``None`` / ``"none"`` (random init),
``"default"`` (the config's default: OpenAI weights for ViT-B-32, the shipped weights of a stand-in,
none for ``tiny``), an open_clip tag or a local weight file.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .checkpoint import load_checkpoint
from .model import MarsModel, create_model, get_model_config

DEFAULT = "default"
_RANDOM = ("none", "None", "random", "")
# a source ending so (or holding a path separator, and not a .json config) names a checkpoint file
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".bin")


def is_checkpoint_path(source: str | os.PathLike) -> bool:
    """Whether a model source names a checkpoint file rather than a config name.

    Config names (``tiny``, open_clip architectures) hold no path separator; a JSON config file
    ends with ``.json``. Anything else path-like is read as a checkpoint, so that a mistyped
    checkpoint path is reported as a missing file, not as an "unknown model".
    """
    text = os.fspath(source)
    if text.endswith(".json"):
        return False
    return text.endswith(CHECKPOINT_SUFFIXES) or "/" in text or os.sep in text


def parse_pretrained(value: str | os.PathLike | None) -> str | None:
    """Normalise a weight-source value: ``None`` for random init, else ``"default"``, a tag or a path."""
    if value is None:
        return None
    text = os.fspath(value).strip()
    return None if text in _RANDOM else text


def config_weights(name: str, pretrained: str | os.PathLike | None) -> str | None:
    """``parse_pretrained(pretrained)`` with ``"default"`` replaced by model config ``name``'s own
    weights (OpenAI for ViT-B-32, the shipped ones for a stand-in, none for ``tiny``)."""
    weights = parse_pretrained(pretrained)
    return get_model_config(name).default_pretrained if weights == DEFAULT else weights


def model_info(model: MarsModel, checkpoint: str | None = None, meta: dict | None = None) -> dict:
    """What is known about ``model``: name, weights, checkpoint, width and (from a checkpoint) the
    classes it trained on and its metric convention (``None`` when unknown)."""
    meta = meta or {}
    return {"name": model.config.name, "pretrained": model.pretrained, "checkpoint": checkpoint,
            "embed_dim": model.embed_dim, "classes_seen": meta.get("classes_seen"),
            "metric_convention": meta.get("metric_convention"), "extra": meta.get("extra", {})}


def load_model(checkpoint: str | os.PathLike, device=None, *, pretrained: str | None = None) -> tuple[MarsModel, dict]:
    """Restore a saved MARS model.

    Args:
        checkpoint: a ``.safetensors`` file written by training (``best`` or ``last``).
        device: torch device (default CPU).
        pretrained: backbone weights overriding the recorded ones (a local file where the recorded
            tag cannot be downloaded); ``None`` keeps the recorded source.
    Returns:
        ``(model, info)``; ``model`` is in eval mode; ``info`` as ``model_info`` plus ``config``.
    """
    path = str(Path(checkpoint).expanduser())
    override = parse_pretrained(pretrained)
    model, meta = load_checkpoint(path, pretrained=None if override == DEFAULT else override, device=device)
    info = model_info(model, path, meta)
    info["config"] = meta.get("model_config")
    return model.eval(), info


def open_model(source: MarsModel | str | os.PathLike = "tiny", *, pretrained: str | None = DEFAULT,
               checkpoint: str | os.PathLike | None = None, device=None,
               seed: int | None = None) -> tuple[MarsModel, dict]:
    """A model for any workflow, and what it is.

    Args:
        source: a ``MarsModel`` (returned as is), a checkpoint file (``.safetensors``; any path
            that is not a ``.json`` config, see ``is_checkpoint_path``), or a model config name
            (``tiny``, ``ViT-B-32``, ...; see ``create_model``).
        pretrained: weight source for a config name (``"default"``: the config's own); with a
            checkpoint, an override of its recorded weights (``"default"``/``None``: as recorded).
        checkpoint: a checkpoint to load instead of ``source`` (then ``source`` is ignored).
        seed: when given, parameters not loaded from weights (random init, fresh M) are drawn from
            this seed without touching the global RNG, so every caller gets the same model.
    Returns:
        ``(model, info)`` with ``info`` as ``model_info``.
    Raises:
        checkpoint.CheckpointNotFoundError (a MarsLiteError and FileNotFoundError): the checkpoint
            path names no file; checkpoint.CheckpointError: not a complete mars_lite checkpoint.
    """
    if isinstance(source, MarsModel) and checkpoint is None:
        return source, model_info(source)
    if checkpoint is None and is_checkpoint_path(source):
        checkpoint = source
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        if checkpoint is not None:
            return load_model(checkpoint, device, pretrained=pretrained)
        model, _ = create_model(str(source), pretrained=config_weights(str(source), pretrained), device=device)
    return model.eval(), model_info(model)
