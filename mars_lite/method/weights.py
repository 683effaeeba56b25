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
from pathlib import Path
from urllib.parse import urlparse

import open_clip

HF_HOST = "huggingface.co"
PROBE_TIMEOUT_S = 3.0
_WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
_HF_FILENAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class WeightsUnavailableError(RuntimeError):
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
        f"    mars_lite.create_model(..., pretrained='/path/to/open_clip_pytorch_model.bin')"
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
