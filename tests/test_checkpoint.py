"""Checkpoint round trips, atomic writes and mismatched loads."""
from __future__ import annotations

import os

import pytest
import torch

from safetensors.torch import save_file

from mars_lite import create_model
from mars_lite.method.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint, trainable_state
from mars_lite.config import ConfigError


def _perturb(model):
    with torch.no_grad():
        model.modality_embeddings.weight.add_(1.0)
        model.discriminator.bias.fill_(0.25)


def _model_from_weight_file(tmp_path):
    """A tiny model whose backbone came from a local weight file (so it can be rebuilt)."""
    torch.manual_seed(0)
    source, _ = create_model("tiny")
    weights = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in source.clip.state_dict().items()}, str(weights))
    return create_model("tiny", pretrained=str(weights))[0]


@pytest.mark.parametrize("backbone", ["none", "layernorm", "full"])
def test_round_trip_restores_trainable_state_and_metadata(tmp_path, backbone):
    model = _model_from_weight_file(tmp_path)
    _perturb(model)
    if backbone != "none":
        with torch.no_grad():
            model.clip.ln_final.weight.mul_(2.0)
    path = save_checkpoint(model, tmp_path / "ckpt.safetensors", classes_seen=["cat", "dog"],
                           metric_convention="reference", backbone=backbone, extra={"epoch": 3})
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]   # no leftovers
    torch.manual_seed(1)
    loaded, meta = load_checkpoint(path)
    assert meta["classes_seen"] == ["cat", "dog"]
    assert meta["metric_convention"] == "reference" and meta["extra"] == {"epoch": 3}
    assert meta["model_config"]["name"] == "tiny"
    saved = trainable_state(model, backbone)
    for key, value in saved.items():
        assert torch.equal(loaded.state_dict()[key], value), key
    if backbone == "none":
        assert set(saved) == {"modality_embeddings.weight", "discriminator.weight", "discriminator.bias"}
    if backbone == "layernorm":
        assert "clip.ln_final.weight" in saved and "clip.visual.conv1.weight" not in saved
    if backbone == "full":
        assert torch.equal(loaded.clip.visual.conv1.weight, model.clip.visual.conv1.weight)


def test_random_backbone_is_always_saved_in_full(tmp_path):
    torch.manual_seed(0)
    model, _ = create_model("tiny")            # random init: no weight source to rebuild it from
    path = save_checkpoint(model, tmp_path / "r.safetensors", classes_seen=["cat"], backbone="none")
    torch.manual_seed(1)
    loaded, meta = load_checkpoint(path)
    assert meta["backbone_saved"] == "full"
    assert torch.equal(loaded.clip.visual.conv1.weight, model.clip.visual.conv1.weight)


def test_load_into_a_different_config_names_the_field(tmp_path):
    model, _ = create_model("tiny")
    path = save_checkpoint(model, tmp_path / "tiny.safetensors", classes_seen=["cat"])
    other_cfg = dict(model.config.__dict__)
    other_cfg["clip"] = {**model.config.clip, "embed_dim": 32}
    other, _ = create_model(other_cfg)
    with pytest.raises(ConfigError, match="clip") as info:
        load_checkpoint(path, model=other)
    assert "embed_dim" in str(info.value) and str(path) in str(info.value)


def test_load_into_the_same_config_works(tmp_path):
    model, _ = create_model("tiny")
    _perturb(model)
    path = save_checkpoint(model, tmp_path / "a.safetensors", classes_seen=["cat"])
    target, _ = create_model("tiny")
    load_checkpoint(path, model=target)
    assert torch.equal(target.modality_embeddings.weight, model.modality_embeddings.weight)


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="junk.safetensors"):
        read_checkpoint(junk)
    with pytest.raises(ValueError, match="backbone"):
        trainable_state(create_model("tiny")[0], "everything")

