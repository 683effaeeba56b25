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


# ------------------------------------------------------------------ which backbone, said aloud
def _fake_hf_cache(root, repo_id="timm/vit_base_patch32_clip_224.openai",
                   filename="open_clip_model.safetensors"):
    """The Hugging Face cache layout holding one file of ``repo_id`` (what a download leaves)."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (snapshot / filename).write_bytes(b"not read by the choice")
    return root


def test_choose_backbone_takes_cached_vit_b_32_else_the_standin(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from mars_lite.method.weights import REAL_MODEL, STANDIN_MODEL, choose_backbone

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    plain = choose_backbone(environ={})
    assert (plain.model, plain.pretrained, plain.standin) == (STANDIN_MODEL, "default", True)
    assert "stand-in" in plain.line() and "no ViT-B-32" in plain.reason

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(_fake_hf_cache(tmp_path / "hub")))
    real = choose_backbone(environ={})
    assert (real.model, real.pretrained, real.standin) == (REAL_MODEL, "openai", False)
    assert "local cache" in real.line()


def test_choose_backbone_follows_arguments_then_environment(tmp_path):
    from mars_lite.method.weights import choose_backbone

    weights = tmp_path / "my_clip.bin"
    env = {"MARS_LITE_WEIGHTS": str(weights)}
    chosen = choose_backbone(environ=env)
    assert (chosen.model, chosen.pretrained) == ("ViT-B-32", str(weights)) and "MARS_LITE_WEIGHTS" in chosen.reason
    # an argument beats the environment; "none" asks for random weights, and says so
    assert choose_backbone(weights="none", environ=env).pretrained is None
    assert "random" in choose_backbone(weights="none", environ=env).line()
    assert choose_backbone("mobilenet-minilm", environ=env).pretrained == str(weights)
    assert choose_backbone("mobilenet-minilm", environ={}).pretrained == "default"
    assert choose_backbone(environ={"MARS_LITE_MODEL": "ViT-B-32"}).pretrained == "openai"
    assert choose_backbone("tiny", environ={}).pretrained is None


def test_study_setup_and_demo_say_which_backbone(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from mars_lite.study.setup import load_study_setup
    from mars_lite.ui.demo import DemoConfig, demo_backbone

    monkeypatch.delenv("MARS_LITE_MODEL", raising=False)
    monkeypatch.delenv("MARS_LITE_WEIGHTS", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    setup = load_study_setup(fast=True)
    assert setup.model_name == "mobilenet-minilm" and setup.train["config"] == "fast"
    assert "Backbone: mobilenet-minilm" in setup.banner()
    assert demo_backbone(DemoConfig()).standin

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(_fake_hf_cache(tmp_path / "hub")))
    setup = load_study_setup(fast=True, batch_size=32)
    assert (setup.model_name, setup.pretrained) == ("ViT-B-32", "openai")
    # two CPU cores cannot train CLIP's towers in a notebook: frozen mode on cached embeddings
    assert setup.train["config"] == "frozen" and setup.train["overrides"]["batch_size"] == 32
    assert "Backbone: ViT-B-32 (openai)" in setup.banner()
    assert (demo_backbone(DemoConfig()).model, demo_backbone(DemoConfig()).pretrained) == ("ViT-B-32", "openai")
    # an explicit choice wins over the cache
    assert load_study_setup(fast=True, model="mobilenet-minilm").model_name == "mobilenet-minilm"
