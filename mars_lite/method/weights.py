"""Where backbone weights come from, and failing fast when they cannot be had.

The download itself stays open_clip's ordinary one (Hugging Face Hub, else the tag's URL). Before
handing a tag to open_clip we check that the weights are already cached or that the host answers:
without that, a machine with no network sits in huggingface_hub's retry loop for ~47 s before
an error that does not say what to do.
"""
from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import open_clip
from ..errors import MarsLiteError

HF_HOST = "huggingface.co"
PROBE_TIMEOUT_S = 3.0
_WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
_HF_FILENAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class WeightsUnavailableError(MarsLiteError, RuntimeError):
    """Pretrained weights are neither cached nor downloadable from here."""


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _is_cached(cfg: dict) -> bool:
    """True when open_clip will find the tag's weights without the network."""
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache
        repo_id, filename = os.path.split(hub)
        names = (filename,) if filename else _HF_FILENAMES
        return any(isinstance(try_to_load_from_cache(repo_id, n), str) for n in names)
    url = cfg.get("url", "")
    return bool(url) and (Path("~/.cache/clip").expanduser() / os.path.basename(url)).is_file()


def host_reachable(host: str, port: int = 443, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds.

    Runs in a daemon thread so that a hanging DNS lookup cannot exceed the timeout either.
    """
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def _instructions(arch: str, tag: str, why: str) -> str:
    return (
        f"Cannot get pretrained weights {tag!r} for {arch}: {why}.\n"
        "Either pre-download them on a machine with internet, which fills the Hugging Face cache "
        "(~/.cache/huggingface; copy it to this machine or set HF_HOME to a copy):\n"
        f"    python -c \"import open_clip; open_clip.create_model('{arch}', pretrained='{tag}')\"\n"
        "or pass a local weight file instead of the tag:\n"
        f"    mars_lite.create_model(..., pretrained='/path/to/open_clip_pytorch_model.bin')\n"
        f"(notebooks and the demo: set {ENV_WEIGHTS}=/path/to/file, or the notebook parameter 'weights'; "
        "mars-lite lab/demo: --pretrained /path/to/file)"
    )


def resolve_weights(arch: str | None, pretrained: str | os.PathLike | None,
                    probe_host: str | None = None) -> str | None:
    """Check a ``pretrained`` value before building the model; return what open_clip should load.

    Args:
        arch: open_clip architecture name, or ``None`` for a custom (JSON) architecture.
        pretrained: ``None`` (random init), a local file path, or an open_clip tag.
        probe_host: host to probe instead of the tag's download host (tests use 127.0.0.1).
    Raises:
        FileNotFoundError: a path-like value that does not exist.
        ValueError: an unknown tag (the message lists the known ones).
        WeightsUnavailableError: not cached and offline/unreachable, within ~3 s.
    """
    if pretrained is None:
        return None
    value = os.fspath(pretrained)
    path = Path(value).expanduser()
    if path.is_file():
        return str(path)
    if os.sep in value or path.suffix in _WEIGHT_SUFFIXES:
        raise FileNotFoundError(f"weight file {value} does not exist; pass an existing file, an "
                                "open_clip tag such as 'openai', or None for random weights")
    if arch is None:
        raise ValueError(f"pretrained={value!r} looks like a tag, but this config has no open_clip "
                         "architecture to look tags up for; pass a local weight file or None")
    cfg = open_clip.get_pretrained_cfg(arch, value)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise ValueError(f"unknown pretrained tag {value!r} for {arch}; known tags: {tags}")
    if _is_cached(cfg):
        return value
    if _offline():
        raise WeightsUnavailableError(_instructions(arch, value, "not in the local cache and HF_HUB_OFFLINE=1"))
    host = probe_host or (HF_HOST if cfg.get("hf_hub") else urlparse(cfg.get("url", "")).hostname)
    if not host or not host_reachable(host):
        raise WeightsUnavailableError(_instructions(arch, value, f"not cached and {host} is unreachable (no network?)"))
    return value


# ------------------------------------------------------------------ which backbone, said aloud
REAL_MODEL, REAL_WEIGHTS = "ViT-B-32", "openai"  # the paper's backbone (Lyou et al. 2024, Sec. 4.1)
STANDIN_MODEL = "mobilenet-minilm"  # the kit's offline stand-in (method/standin.py)
ENV_MODEL, ENV_WEIGHTS = "MARS_LITE_MODEL", "MARS_LITE_WEIGHTS"
_RANDOM_WORDS = ("none", "random")


@dataclass(frozen=True)
class BackboneChoice:
    """Which backbone the notebooks, ``mars-lite lab`` and the demo use, and why.

    ``pretrained`` is what ``create_model``/``open_model`` take: an open_clip tag, a local file,
    ``"default"`` (the stand-in's shipped weights) or ``None`` (random weights, only when asked).
    """

    model: str
    pretrained: str | None
    reason: str

    @property
    def standin(self) -> bool:
        return self.model == STANDIN_MODEL

    def line(self) -> str:
        weights = {None: "random weights", "default": "shipped weights"}.get(self.pretrained, self.pretrained)
        return f"Backbone: {self.model} ({weights}) -- {self.reason}."


def real_weights_cached(model: str = REAL_MODEL, tag: str = REAL_WEIGHTS) -> bool:
    """Whether open_clip would find ``model``'s ``tag`` weights in the local cache (no network)."""
    cfg = open_clip.get_pretrained_cfg(model, tag)
    return bool(cfg) and _is_cached(cfg)


def choose_backbone(model: str | None = None, weights: str | os.PathLike | None = None,
                    environ: dict | None = None) -> BackboneChoice:
    """The backbone to use when the caller has not fixed one.

    Order: explicit ``model``/``weights`` arguments, then ``MARS_LITE_MODEL``/``MARS_LITE_WEIGHTS``,
    then the paper's ViT-B-32 with OpenAI weights *if they are in the local cache*, else the
    stand-in. ``weights`` may be a tag, a local weight file, or ``none`` for random weights; a
    weight file or tag without a model means ViT-B-32. Nothing is downloaded or loaded here.
    """
    environ = os.environ if environ is None else environ
    given = [name for name, value in (("model", model), ("weights", weights)) if value is not None]
    given += [name for name in (ENV_MODEL, ENV_WEIGHTS) if environ.get(name) and
              not (name == ENV_MODEL and model) and not (name == ENV_WEIGHTS and weights is not None)]
    model = model or environ.get(ENV_MODEL) or None
    weights = os.fspath(weights) if weights is not None else (environ.get(ENV_WEIGHTS) or None)
    if model is None and weights is None:
        if real_weights_cached():
            return BackboneChoice(REAL_MODEL, REAL_WEIGHTS, "the paper's CLIP; its OpenAI weights are in the "
                                  "local cache")
        return BackboneChoice(STANDIN_MODEL, "default", "the kit's offline stand-in: no ViT-B-32 OpenAI weights "
                              f"in the local cache and {ENV_WEIGHTS} unset")
    model = model or REAL_MODEL
    source = "as set by " + " and ".join(given)
    if weights is not None and weights.strip().lower() in _RANDOM_WORDS:
        return BackboneChoice(model, None, f"random weights {source}")
    if model == STANDIN_MODEL:
        return BackboneChoice(model, weights or "default", source)
    if weights is None and model == REAL_MODEL:
        weights = REAL_WEIGHTS
    if weights is None:
        return BackboneChoice(model, None, f"{source}; no weights given ({ENV_WEIGHTS}), so random weights")
    return BackboneChoice(model, weights, source)
