"""The offline stand-in backbone ``mobilenet-minilm``: loads offline with its shipped weights, is
not random, trains only its declared part, and its checkpoints store only that part."""
from __future__ import annotations

import time

import pytest
import torch

from mars_lite import create_model, load_model
from mars_lite.method.checkpoint import save_checkpoint
from mars_lite.method.standin import WEIGHTS
from mars_lite.train.full import configure_trainable


@pytest.fixture(scope="module")
def standin():
    start = time.perf_counter()
    model, preprocess = create_model("mobilenet-minilm")
    return model, preprocess, time.perf_counter() - start


def test_loads_offline_with_its_shipped_weights(standin):
    model, preprocess, seconds = standin
    assert seconds < 30 and WEIGHTS.is_file() and WEIGHTS.stat().st_size < 20e6
    assert model.pretrained == "shipped" and model.embed_dim == 256
    assert tuple(preprocess.transforms[-1].mean) == (0.5, 0.5, 0.5)


def test_it_knows_words_and_photos(standin, mini_sbir):
    model, _, _ = standin
    with torch.no_grad():
        text = model.encode_text(["a photo of a cat", "a photo of a dog", "a photo of an hourglass"])
        photos = model.encode_photo(sorted((mini_sbir / "photo" / "hourglass").glob("*.JPEG"))[:8])
    assert float(text[0] @ text[1]) > float(text[0] @ text[2])          # cat is nearer dog than hourglass
    assert (photos @ text.T).argmax(1).eq(2).float().mean() >= 0.75      # hourglass photos find their caption


def test_prefix_path_gives_the_same_embeddings(standin, mini_sbir):
    model, preprocess, _ = standin
    from PIL import Image
    paths = [sorted((mini_sbir / "sketch" / "cat").glob("*.png"))[0], sorted((mini_sbir / "photo" / "cat").glob("*"))[0]]
    x = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        direct = model.clip.encode_image(x, normalize=True)
        staged = model.clip.encode_image_from_prefix(model.clip.frozen_image_prefix(x), normalize=True)
    torch.testing.assert_close(direct, staged)


def test_paper_mode_trains_the_declared_part_and_checkpoints_keep_only_it(standin, tmp_path):
    model, _, _ = standin
    backbone = configure_trainable(model, "paper")
    declared = {id(p) for p in model.clip.trainable_backbone_parameters("paper")}
    assert {id(p) for p in backbone} == declared
    assert 1e6 < sum(p.numel() for p in backbone) < sum(p.numel() for p in model.clip.parameters()) / 3
    with torch.no_grad():
        model.clip.text_projection.add_(0.01)                             # a "trained" change
    path = save_checkpoint(model, tmp_path / "best.safetensors", classes_seen=["cat"], backbone="full")
    assert path.stat().st_size < 40e6                                     # not the 100 MB of both towers
    restored, info = load_model(path)
    torch.testing.assert_close(restored.clip.text_projection, model.clip.text_projection)
    assert info["pretrained"] == "shipped" and info["classes_seen"] == ["cat"]
    for p in model.parameters():
        p.requires_grad_(False)


@pytest.mark.parametrize("mode", ["layernorm", "frozen"])
def test_every_backbone_mode_trains_on_it(mode, tmp_path):
    """One short run per mode through ``mars-lite train``'s engine; the checkpoint restores the run's state."""
    from mars_lite.train import train

    result = train("fast", "mini_sbir", tmp_path / mode, mode=mode, epochs=1, max_steps=2, verbose=False,
                   cache_dir=str(tmp_path / "cache"))
    restored, info = load_model(result.last_checkpoint)
    torch.manual_seed(result.config.seed)          # what training started from: same seed, same draws
    fresh, _ = create_model("mobilenet-minilm")
    assert info["extra"]["mode"] == mode and info["classes_seen"] == ["camel", "cat", "dog", "elephant", "fish", "lion"]
    assert not torch.equal(restored.modality_embeddings.weight, fresh.modality_embeddings.weight)
    norm = restored.clip.visual.ln.weight
    assert torch.equal(norm, fresh.clip.visual.ln.weight) == (mode == "frozen")  # layernorm mode moved it
