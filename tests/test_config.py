"""JSON configs are read into dataclasses with errors that name the file and the field."""
from __future__ import annotations

import json

import pytest

from mars_lite.config import ConfigError, load_config
from mars_lite.method.losses import LossWeights
from mars_lite.method.model import ModelConfig


def test_reads_a_file_and_applies_overrides(tmp_path):
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"clip": 1.0, "semantic": 0.5}))
    weights = load_config(LossWeights, path, orthogonal=0.2)
    assert (weights.clip, weights.semantic, weights.orthogonal) == (1.0, 0.5, 0.2)


@pytest.mark.parametrize("payload, pattern", [
    ({"clipp": 1.0}, "unknown field"),
    ({"clip": "high"}, "'clip'"),
    ({"clip": -1.0}, ">= 0"),
])
def test_bad_values_name_file_and_field(tmp_path, payload, pattern):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(ConfigError, match=pattern) as info:
        load_config(LossWeights, path)
    assert "bad.json" in str(info.value)


def test_invalid_json_and_missing_file(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(LossWeights, broken)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(LossWeights, tmp_path / "nope.json")


def test_model_config_needs_exactly_one_architecture():
    with pytest.raises(ConfigError, match="exactly one"):
        load_config(ModelConfig, {"name": "x"})
    with pytest.raises(ConfigError, match="exactly one"):
        load_config(ModelConfig, {"name": "x", "open_clip_name": "ViT-B-32", "clip": {}})
