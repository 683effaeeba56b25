"""mars_lite.load_model / open_model: the one way to get a model, and what it is."""
from __future__ import annotations

import pytest
import torch

import mars_lite
from mars_lite.method.checkpoint import save_checkpoint
from mars_lite.method.loading import DEFAULT, parse_pretrained


def test_load_model_restores_a_checkpoint_and_says_what_it_is(tiny_model, tmp_path):
    with torch.no_grad():
        tiny_model.modality_embeddings.weight.add_(1.0)   # a "trained" state that a fresh model lacks
    path = save_checkpoint(tiny_model, tmp_path / "best.safetensors", classes_seen=["cat", "dog"], backbone="full",
                           metric_convention="reference")
    model, info = mars_lite.load_model(path)
    assert not model.training
    for key, value in tiny_model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)
    assert info["classes_seen"] == ["cat", "dog"] and info["checkpoint"] == str(path)
    assert info["name"] == "tiny" and info["embed_dim"] == 64 and info["metric_convention"] == "reference"
    assert info["config"]["name"] == "tiny"
    # open_model takes the same file as its source
    same, info2 = mars_lite.open_model(path)
    assert info2["classes_seen"] == ["cat", "dog"]


def test_open_model_seeded_random_init_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, info = mars_lite.open_model("tiny", seed=7)
    b, _ = mars_lite.open_model("tiny", seed=7)
    c, _ = mars_lite.open_model("tiny", seed=8)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(a.modality_embeddings.weight, b.modality_embeddings.weight)
    assert not torch.equal(a.modality_embeddings.weight, c.modality_embeddings.weight)
    assert info["pretrained"] is None and info["checkpoint"] is None


def test_a_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        mars_lite.open_model(tmp_path / "nothing.safetensors")


@pytest.mark.parametrize("value, expected", [(None, None), ("none", None), ("None", None), ("", None),
                                             ("default", DEFAULT), ("openai", "openai"), ("/w/x.bin", "/w/x.bin")])
def test_one_parser_of_weight_sources(value, expected):
    assert parse_pretrained(value) == expected


@pytest.mark.parametrize("name", ["missing.safetensors", "runs/x/best.pt", "runs/nothing"])
def test_a_missing_checkpoint_path_is_not_an_unknown_model(tmp_path, name):
    from mars_lite.errors import MarsLiteError
    for call in (mars_lite.load_model, mars_lite.open_model):
        with pytest.raises(MarsLiteError, match=f"checkpoint {name} does not exist") as info:
            call(name)
        assert isinstance(info.value, FileNotFoundError)


def test_cli_names_a_missing_checkpoint_in_one_line(tmp_path, capsys):
    from mars_lite.cli.main import main
    status = main(["evaluate", "--checkpoint", "missing.safetensors", "--data", "mini_sbir",
                   "--out", str(tmp_path / "report")])
    err = capsys.readouterr().err
    assert status != 0
    assert err.count("\n") == 1 and "missing.safetensors" in err and "Traceback" not in err
    assert "unknown model" not in err
