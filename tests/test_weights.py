"""Backbone weights: local files, and failing fast (with instructions) when offline."""
from __future__ import annotations

import time

import pytest
import torch
from safetensors.torch import save_file

from mars_lite import create_model
from mars_lite.method.weights import WeightsUnavailableError, host_reachable, resolve_weights


def test_pretrained_tag_offline_fails_fast_with_instructions(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as info:
        create_model("ViT-B-32", pretrained="openai")
    assert time.perf_counter() - start < 5.0
    message = str(info.value)
    assert "HF_HUB_OFFLINE" in message and "pretrained=" in message and "create_model" in message


def test_unreachable_host_fails_fast(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError, match="unreachable"):
        # a loopback address where nothing listens on 443: the connection is refused at once
        resolve_weights("ViT-B-32-quickgelu", "openai", probe_host="127.0.0.9")
    assert time.perf_counter() - start < 5.0
    assert host_reachable("127.0.0.1", port=9, timeout=1.0) is False


def test_unknown_tag_and_missing_file():
    with pytest.raises(ValueError, match="known tags"):
        resolve_weights("ViT-B-32-quickgelu", "no_such_tag")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_model("tiny", pretrained="/nonexistent/weights.safetensors")
    with pytest.raises(ValueError, match="local weight file"):
        create_model("tiny", pretrained="openai")


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_saved_to_a_local_file_load_back(tmp_path, suffix):
    torch.manual_seed(3)
    source, _ = create_model("tiny")
    path = tmp_path / f"tiny_clip{suffix}"
    state = {k: v.contiguous() for k, v in source.clip.state_dict().items()}
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    torch.manual_seed(4)  # a different random init, overwritten by the file
    loaded, _ = create_model("tiny", pretrained=str(path))
    for key, value in source.clip.state_dict().items():
        assert torch.equal(loaded.clip.state_dict()[key], value), key
    assert loaded.pretrained == str(path)
    tokens = loaded.tokenize(["a photo of a cat"])
    with torch.no_grad():
        assert torch.allclose(loaded.encode_text(tokens), source.encode_text(tokens))
