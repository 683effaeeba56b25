"""Saving and loading MARS checkpoints (safetensors + JSON metadata, written atomically).

A checkpoint holds the *trainable* state — always the modality vectors and the classifier, plus
whichever backbone parameters the training mode changed — and, as metadata, the model config,
the backbone weights it started from, the classes seen in training and the metric convention.
Tensors are read with safetensors, which cannot execute code (unlike pickle).

Loading is exact: the file must hold precisely the tensors :func:`trainable_state` gives for the
recorded ``backbone_saved`` mode (no more, no fewer, same shapes) and complete metadata; anything
else raises :class:`CheckpointError` naming the file and the keys, because a partly loaded model
would otherwise be evaluated as if it were the trained one.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import ConfigError, config_diff, load_config
from ..errors import MarsLiteError
from ..files import atomic_write
from .model import MarsModel, ModelConfig, create_model

FORMAT = "mars_lite.checkpoint/1"
MARS_PREFIXES = ("modality_embeddings.", "discriminator.")
BACKBONE_SAVES = ("none", "layernorm", "full")
# metadata field -> accepted JSON types (None: JSON null allowed)
REQUIRED_META = {"model_config": (dict,), "pretrained": (str, type(None)), "classes_seen": (list,),
                 "metric_convention": (str,), "backbone_saved": (str,)}


class CheckpointError(MarsLiteError, ValueError):
    """A checkpoint file is unreadable, incomplete or does not fit the model (the message names it)."""


class CheckpointNotFoundError(MarsLiteError, FileNotFoundError):
    """A checkpoint path names no file."""


def _keys(names, shown: int = 5) -> str:
    """``a, b, c, ...``: the first few names of a key list (the caller gives the count)."""
    names = sorted(names)
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


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
    """(tensors, metadata) of a checkpoint file, with errors that name the file.

    Raises:
        CheckpointNotFoundError: no file at ``path``.
        CheckpointError: not a safetensors file, no/invalid mars_lite metadata (bad JSON, another
            format, a missing or mistyped field of ``REQUIRED_META``).
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a checkpoint file" if path.is_dir() else "does not exist"
        raise CheckpointNotFoundError(f"checkpoint {path} {what}; pass a .safetensors file written by "
                                      "'mars-lite train' (best.safetensors or last.safetensors)")
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get("mars_lite")
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint ({err})") from err
    if raw is None:
        raise CheckpointError(f"{path} has no mars_lite metadata; it is not a mars_lite checkpoint")
    try:
        meta = json.loads(raw)
    except ValueError as err:
        raise CheckpointError(f"{path}: its mars_lite metadata is not valid JSON ({err}); the file is "
                              "damaged, use another checkpoint or retrain") from err
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: its mars_lite metadata is a {type(meta).__name__}, not a JSON object")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unsupported checkpoint format {meta.get('format')!r} (expected {FORMAT})")
    missing = [k for k in REQUIRED_META if k not in meta]
    mistyped = [k for k, types in REQUIRED_META.items() if k in meta and not isinstance(meta[k], types)]
    if missing or mistyped:
        raise CheckpointError(f"{path}: broken metadata, missing fields {missing}, mistyped fields {mistyped}; "
                              "the file is damaged or not written by mars_lite")
    if meta["backbone_saved"] not in BACKBONE_SAVES:
        raise CheckpointError(f"{path}: metadata backbone_saved={meta['backbone_saved']!r} is not one of "
                              f"{BACKBONE_SAVES}")
    return tensors, meta


def check_tensor_keys(path, tensors: dict[str, torch.Tensor], model: MarsModel, backbone_saved: str) -> None:
    """Raise CheckpointError unless ``tensors`` are exactly what ``backbone_saved`` mode stores for
    ``model`` (same names, same shapes): a missing tensor would leave a part untrained."""
    expected = {k: tuple(v.shape) for k, v in trainable_state(model, backbone_saved).items()}
    missing, unexpected = set(expected) - set(tensors), set(tensors) - set(expected)
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensor(s) ({_keys(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s) ({_keys(unexpected)})")
    wrong = [f"{k}: {tuple(tensors[k].shape)} != {expected[k]}" for k in sorted(set(expected) & set(tensors))
             if tuple(tensors[k].shape) != expected[k]]
    if wrong:
        problems.append(f"{len(wrong)} tensor shape(s) differ from the model {wrong[:5]}")
    if problems:
        raise CheckpointError(f"checkpoint {path} does not match its model (backbone_saved={backbone_saved!r}): "
                              f"{'; '.join(problems)}; the file is incomplete or from another model, "
                              "use the complete checkpoint or retrain")


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
    check_tensor_keys(path, tensors, model, meta["backbone_saved"])
    # strict=False only because the rest of the backbone comes from its weight source; the key
    # set was checked above to be exactly the saved part
    model.load_state_dict(tensors, strict=False)
    return model, meta
