"""Saving and loading MARS checkpoints (safetensors + JSON metadata, written atomically).

A checkpoint holds the *trainable* state — always the modality vectors and the classifier, plus
whichever backbone parameters the training mode changed — and, as metadata, the model config,
the backbone weights it started from, the classes seen in training and the metric convention.
Tensors are read with safetensors, which cannot execute code (unlike pickle).
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import ConfigError, config_diff, load_config
from ..files import atomic_write
from .model import MarsModel, ModelConfig, create_model

FORMAT = "mars_lite.checkpoint/1"
MARS_PREFIXES = ("modality_embeddings.", "discriminator.")
BACKBONE_SAVES = ("none", "layernorm", "full")


def trainable_state(model: MarsModel, backbone: str) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint stores for a training mode.

    Args:
        backbone: ``none`` (frozen CLIP: only M and the classifier), ``layernorm`` (plus CLIP's
            LayerNorm parameters) or ``full`` (every parameter; for a stand-in with shipped weights,
            the part it declares trainable).
    """
    if backbone not in BACKBONE_SAVES:
        raise ValueError(f"backbone must be one of {BACKBONE_SAVES}, got {backbone!r}")
    state = model.state_dict()
    keep = set(k for k in state if k.startswith(MARS_PREFIXES))
    declared = getattr(model.clip, "trainable_backbone_parameters", None)
    if backbone == "full" and declared is not None and model.pretrained is not None:
        # a stand-in trains (so stores) only the part it declares; the rest comes from its shipped weights
        names = {id(p): n for n, p in model.clip.named_parameters()}
        keep |= {f"clip.{names[id(p)]}" for p in declared("paper")}
    elif backbone == "full":
        keep = set(state)
    elif backbone == "layernorm":
        for name, module in model.clip.named_modules():
            if isinstance(module, torch.nn.LayerNorm):
                keep |= {f"clip.{name}.{p}" for p, _ in module.named_parameters(recurse=False)}
    return {k: state[k].detach().cpu().contiguous() for k in sorted(keep)}


def save_checkpoint(model: MarsModel, path: str | Path, *, classes_seen: list[str],
                    metric_convention: str = "reference", backbone: str = "none",
                    extra: dict | None = None) -> Path:
    """Write ``path`` (a ``.safetensors`` file) atomically and return it.

    Args:
        model: the model to save.
        classes_seen: class names used in training (zero-shot bookkeeping: evaluation refuses
            to call these "unseen").
        metric_convention: ``reference`` or ``standard`` (see mars_lite.eval.metrics).
        backbone: which backbone parameters to store (see :func:`trainable_state`). A backbone
            that did not come from a weight source (random init) cannot be rebuilt on load, so it
            is always stored in full.
        extra: JSON-serialisable training facts (epoch, step, losses ...).
    """
    if model.pretrained is None:
        backbone = "full"
    meta = {
        "format": FORMAT,
        "model_config": asdict(model.config),
        "pretrained": model.pretrained,
        "classes_seen": list(classes_seen),
        "metric_convention": metric_convention,
        "backbone_saved": backbone,
        "extra": extra or {},
    }
    tensors = trainable_state(model, backbone)
    # safetensors metadata is str -> str; one JSON string keeps the nesting.
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"mars_lite": json.dumps(meta)}))


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of a checkpoint file, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get("mars_lite")
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable safetensors checkpoint ({err})") from err
    if raw is None:
        raise ValueError(f"{path} has no mars_lite metadata; it is not a mars_lite checkpoint")
    meta = json.loads(raw)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unsupported checkpoint format {meta.get('format')!r} (expected {FORMAT})")
    return tensors, meta


def load_checkpoint(path: str | Path, model: MarsModel | None = None, *, pretrained: str | None = None,
                    device=None) -> tuple[MarsModel, dict]:
    """Load a checkpoint into ``model`` or into a new model built from its config.

    Args:
        model: load into this model; its config must equal the checkpoint's (else a
            ``ConfigError`` lists every differing field).
        pretrained: backbone weights to build a new model with, overriding the recorded ones (a
            local file when the recorded tag cannot be downloaded here). Only used without ``model``.
    Returns:
        ``(model, metadata)``; metadata holds classes_seen, metric_convention, extra, ...
    """
    tensors, meta = read_checkpoint(path)
    saved_config = load_config(ModelConfig, meta["model_config"])
    if model is None:
        source = pretrained if pretrained is not None else meta.get("pretrained")
        if meta.get("backbone_saved") == "full":
            source = None  # every backbone tensor is in the file; no need to fetch base weights
        model, _ = create_model(saved_config, pretrained=source, device=device)
        model.pretrained = meta.get("pretrained")
    else:
        diff = config_diff(saved_config, model.config)
        if diff:
            raise ConfigError(f"checkpoint {path} was saved for a different model config; differing "
                              f"fields (checkpoint != model): {'; '.join(diff)}")
    own = model.state_dict()
    unexpected = sorted(set(tensors) - set(own))
    if unexpected:
        raise ValueError(f"checkpoint {path} holds tensors the model does not have: {unexpected[:5]}")
    wrong = [f"{k}: {tuple(v.shape)} != {tuple(own[k].shape)}" for k, v in tensors.items() if v.shape != own[k].shape]
    if wrong:
        raise ValueError(f"checkpoint {path} tensor shapes differ from the model: {wrong[:5]}")
    model.load_state_dict(tensors, strict=False)
    return model, meta
