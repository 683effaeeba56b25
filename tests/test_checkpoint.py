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



# ------------------------------------------------------------------ incomplete or broken files
def _rewrite(src, dst, drop=(), add=None, metadata=None):
    """Copy checkpoint ``src`` to ``dst`` without the ``drop`` tensors, plus ``add``, with ``metadata``."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    with safe_open(str(src), framework="pt") as handle:
        meta = handle.metadata()
    tensors = {k: v for k, v in load_file(str(src)).items() if k not in drop}
    tensors.update(add or {})
    save_file(tensors, str(dst), metadata=meta if metadata is None else metadata)
    return dst


def test_a_checkpoint_missing_half_its_tensors_is_refused(tmp_path):
    import mars_lite
    from mars_lite.errors import MarsLiteError
    torch.manual_seed(0)
    model, _ = create_model("tiny")           # random init: the file holds every tensor
    full = save_checkpoint(model, tmp_path / "full.safetensors", classes_seen=["cat"])
    keys = sorted(trainable_state(model, "full"))
    half = _rewrite(full, tmp_path / "half.safetensors", drop=keys[::2])
    with pytest.raises(MarsLiteError, match="half.safetensors") as info:
        mars_lite.load_model(half)
    message = str(info.value)
    assert f"missing {len(keys[::2])} tensor(s)" in message and keys[0] in message
    mars_lite.load_model(full)                # the complete file still loads


def test_frozen_checkpoint_needs_exactly_m_and_the_classifier(tmp_path):
    from mars_lite.method.checkpoint import CheckpointError
    model = _model_from_weight_file(tmp_path)
    path = save_checkpoint(model, tmp_path / "frozen.safetensors", classes_seen=["cat"], backbone="none")
    load_checkpoint(path)                     # backbone rebuilt from its weight file: nothing missing
    short = _rewrite(path, tmp_path / "short.safetensors", drop=["discriminator.bias"])
    with pytest.raises(CheckpointError, match=r"short.safetensors.*missing 1 tensor\(s\) \(discriminator.bias\)"):
        load_checkpoint(short)
    extra = _rewrite(path, tmp_path / "extra.safetensors", add={"clip.visual.bogus": torch.zeros(2)})
    with pytest.raises(CheckpointError, match=r"1 unexpected tensor\(s\) \(clip.visual.bogus\)"):
        load_checkpoint(extra)
    wrong = _rewrite(path, tmp_path / "wrong.safetensors", add={"discriminator.bias": torch.zeros(7)})
    with pytest.raises(CheckpointError, match="discriminator.bias: \\(7,\\)"):
        load_checkpoint(wrong)


@pytest.mark.parametrize("raw, problem", [("{not json", "not valid JSON"),
                                          ('{"format": "mars_lite.checkpoint/1"}', "missing fields"),
                                          ("[1, 2]", "not a JSON object")])
def test_broken_metadata_names_the_file(tmp_path, raw, problem):
    from mars_lite.method.checkpoint import CheckpointError
    model, _ = create_model("tiny")
    path = save_checkpoint(model, tmp_path / "ok.safetensors", classes_seen=["cat"])
    broken = _rewrite(path, tmp_path / "broken.safetensors", metadata={"mars_lite": raw})
    with pytest.raises(CheckpointError, match="broken.safetensors") as info:
        read_checkpoint(broken)
    assert problem in str(info.value)
    if problem == "missing fields":
        assert "backbone_saved" in str(info.value) and "model_config" in str(info.value)
