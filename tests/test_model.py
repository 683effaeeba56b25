"""Encode paths, retrieval embeddings and the training forward of the MARS model."""
from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mars_lite import create_model
from mars_lite.config import ConfigError
from mars_lite.method.losses import PAPER_WEIGHTS
from mars_lite.method.modalities import RETRIEVAL_KINDS
from mars_lite.method.model import get_model_config, list_model_configs


def _first_files(root, modality, n=3):
    files = sorted((root / modality).glob("*/*"))[:n]
    assert len(files) == n
    return files


def test_tiny_builds_fast_without_download():
    start = time.perf_counter()
    model, preprocess = create_model("tiny")
    assert time.perf_counter() - start < 1.0
    assert model.embed_dim == 64
    assert model.modality_embeddings.weight.shape == (4, 64)
    assert model.discriminator.weight.shape == (4, 64)
    assert model.preprocess is preprocess


def test_shipped_configs():
    assert {"tiny", "ViT-B-32"} <= set(list_model_configs())
    cfg = get_model_config("ViT-B-32")
    assert cfg.open_clip_name == "ViT-B-32-quickgelu" and cfg.default_pretrained == "openai"
    with pytest.raises(ConfigError, match="unknown model"):
        get_model_config("no-such-model")


def test_encode_sketch_and_photo_from_real_files(tiny_model, mini_sbir):
    sketches = _first_files(mini_sbir, "sketch")
    photos = _first_files(mini_sbir, "photo")
    with torch.no_grad():
        zs = tiny_model.encode_sketch(sketches)                    # paths (mode L PNGs)
        zp = tiny_model.encode_photo([Image.open(p) for p in photos])   # PIL images
        raw = tiny_model.encode_photo(torch.stack([tiny_model.preprocess(Image.open(p)) for p in photos]),
                                      normalize=False)
    assert zs.shape == zp.shape == raw.shape == (3, 64)
    assert torch.allclose(zs.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(zp.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(3), atol=1e-3)
    assert torch.allclose(F.normalize(raw, dim=-1), zp, atol=1e-5)


def test_encode_text_strings_and_tokens(tiny_model):
    texts = ["a sketch of a cat", "a photo of a cat"]
    with torch.no_grad():
        z = tiny_model.encode_text(texts)
        z_tok = tiny_model.encode_text(tiny_model.tokenize(texts))
        z_one = tiny_model.encode_text("a sketch of a cat")
    assert z.shape == (2, 64)
    assert torch.allclose(z, z_tok)
    assert torch.allclose(z[:1], z_one, atol=1e-6)
    assert torch.allclose(z.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_retrieval_embeddings(tiny_model):
    torch.manual_seed(1)
    z = F.normalize(torch.randn(5, 64), dim=-1)
    m = tiny_model.modality_embeddings.weight.detach()
    with torch.no_grad():
        out = {k: tiny_model.retrieval_embedding(z, "sketch", k) for k in RETRIEVAL_KINDS}
        photo_conv = tiny_model.retrieval_embedding(z, "photo", "converted")
    for value in out.values():
        assert value.shape == (5, 64)
        assert torch.allclose(value.norm(dim=-1), torch.ones(5), atol=1e-5)
    assert torch.allclose(out["original"], z)
    assert torch.allclose(out["converted"], F.normalize(z - m[1] + m[0], dim=-1))
    assert torch.allclose(out["semantic"], F.normalize(z - m[1], dim=-1))
    assert torch.allclose(photo_conv, z, atol=1e-6)   # photos are already in the photo modality
    with pytest.raises(ValueError, match="unknown retrieval"):
        tiny_model.retrieval_embedding(z, "sketch", "magic")
    with pytest.raises(ValueError, match="unknown modality"):
        tiny_model.retrieval_embedding(z, "video", "original")


def test_forward_backward_reaches_all_trainable_parts(tiny_model, mini_sbir):
    images = torch.stack([tiny_model.preprocess(Image.open(p))
                          for p in _first_files(mini_sbir, "sketch", 2) + _first_files(mini_sbir, "photo", 2)])
    tokens = tiny_model.tokenize(["a sketch of a camel"] * 2 + ["a photo of a camel"] * 2)
    ids = torch.tensor([[1, 2], [1, 2], [0, 3], [0, 3]])
    tiny_model.train()
    out = tiny_model(images, tokens, ids, PAPER_WEIGHTS)
    out["total"].backward()
    assert torch.isfinite(out["total"])
    assert tiny_model.modality_embeddings.weight.grad.abs().sum() > 0
    assert tiny_model.discriminator.weight.grad.abs().sum() > 0
    assert tiny_model.clip.visual.conv1.weight.grad.abs().sum() > 0


@pytest.mark.slow
def test_vit_b_32_random_weights_forward_backward(mini_sbir):
    torch.manual_seed(0)
    model, preprocess = create_model("ViT-B-32", pretrained=None)
    assert model.embed_dim == 512
    assert preprocess(Image.open(_first_files(mini_sbir, "photo", 1)[0])).shape == (3, 224, 224)
    images = torch.stack([preprocess(Image.open(p)) for p in
                          _first_files(mini_sbir, "sketch", 2) + _first_files(mini_sbir, "photo", 2)])
    tokens = model.tokenize(["a sketch of a cat"] * 2 + ["a photo of a cat"] * 2)
    ids = torch.tensor([[1, 2], [1, 2], [0, 3], [0, 3]])
    out = model(images, tokens, ids, PAPER_WEIGHTS)
    out["total"].backward()
    assert torch.isfinite(out["total"])
    assert model.modality_embeddings.weight.grad is not None
    assert model.clip.transformer.resblocks[0].attn.in_proj_weight.grad.abs().sum() > 0
