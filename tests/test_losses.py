"""Parity of every loss term, the total and the gradients with the authors' implementation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mars_lite.method.losses import LossWeights, compute_losses, convert

# our key -> key in the parity files
PARITY_KEYS = {
    "clip": "clip_loss",
    "semantic": "semantic_center_loss",
    "reconstruction": "reconstruct_loss",
    "discriminator": "discriminator_loss",
    "orthogonal": "orthogonal_loss",
    "total": "weighted_loss",
}


def _load(path):
    return {k: torch.from_numpy(np.asarray(v)) for k, v in np.load(path).items()}


def _parity_files(parity_dir):
    files = sorted(parity_dir.glob("losses_*.npz"))
    assert len(files) >= 3, f"expected the loss parity files in {parity_dir}"
    return files


def _run(case):
    params = {k: case[k].clone().requires_grad_(True)
              for k in ("modality_embeddings", "discriminator_weight", "discriminator_bias")}
    out = compute_losses(case["image_embeds"], case["text_embeds"], case["modality_ids"],
                         params["modality_embeddings"], params["discriminator_weight"],
                         params["discriminator_bias"], case["logit_scale"], case["loss_weights"])
    out["total"].backward()
    return out, params


def test_every_parity_file_matches_values_and_gradients(parity_dir):
    worst = 0.0
    for path in _parity_files(parity_dir):
        case = _load(path)
        out, params = _run(case)
        assert set(out) == set(PARITY_KEYS)
        for ours, theirs in PARITY_KEYS.items():
            got, want = out[ours].detach().numpy(), case[theirs].numpy()
            assert np.allclose(got, want, rtol=1e-4, atol=1e-6), f"{path.name}:{ours} {got} != {want}"
            worst = max(worst, float(abs(got - want) / max(abs(want), 1e-12)))
        for name in ("modality_embeddings", "discriminator_weight", "discriminator_bias"):
            got, want = params[name].grad.numpy(), case[f"grad_{name}"].numpy()
            assert np.allclose(got, want, rtol=1e-4, atol=1e-6), f"{path.name}: grad {name}"
    print(f"largest relative error over all parity values: {worst:.2e}")


def test_converted_vectors_match_reference(parity_dir):
    for path in _parity_files(parity_dir):
        case = _load(path)
        ids = case["modality_ids"]
        got_img = convert(case["image_embeds"], ids[:, 0], case["modality_embeddings"])
        got_txt = convert(case["text_embeds"], ids[:, 1], case["modality_embeddings"])
        assert np.allclose(got_img.numpy(), case["converted_from_image"].numpy(), rtol=1e-4, atol=1e-6)
        assert np.allclose(got_txt.numpy(), case["converted_from_text"].numpy(), rtol=1e-4, atol=1e-6)


def test_zero_weight_term_does_not_enter_total(parity_dir):
    case = _load(_parity_files(parity_dir)[0])
    base = dict(case)
    weights = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])
    out = compute_losses(base["image_embeds"], base["text_embeds"], base["modality_ids"],
                         base["modality_embeddings"], base["discriminator_weight"],
                         base["discriminator_bias"], base["logit_scale"], weights)
    assert torch.allclose(out["total"], out["clip"])


def test_loss_weights_dataclass_matches_paper_order():
    w = LossWeights()
    assert w.as_tensor().tolist() == pytest.approx([1.0, 0.1, 0.1, 0.02, 0.0])


def test_bad_inputs_raise_clear_errors(parity_dir):
    case = _load(_parity_files(parity_dir)[0])
    args = [case["image_embeds"], case["text_embeds"], case["modality_ids"], case["modality_embeddings"],
            case["discriminator_weight"], case["discriminator_bias"], case["logit_scale"]]
    with pytest.raises(ValueError, match="5 values"):
        compute_losses(*args, [1.0, 0.1])
    with pytest.raises(ValueError, match="positive"):
        compute_losses(*args, [0.0] * 5)
    bad_ids = list(args)
    bad_ids[2] = case["modality_ids"][:, :1]
    with pytest.raises(ValueError, match="modality_ids"):
        compute_losses(*bad_ids, case["loss_weights"])
