"""The inner-product loss of frozen mode equals compute_losses (values and gradients)."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mars_lite.train.fast_frozen import grad as frozen_grad
from mars_lite.train.fast_frozen.kernel import available as kernel_available
from mars_lite.train.fast_frozen.loss import CachedPairs, frozen_losses
from mars_lite.method.losses import PAPER_WEIGHTS, TERMS, compute_losses
from mars_lite.train.frozen import FlatAdamW

RTOL, ATOL = 1e-4, 1e-6
PARAMS = ("modality_embeddings", "discriminator_weight", "discriminator_bias")
PARITY_KEYS = {"clip": "clip_loss", "semantic": "semantic_center_loss", "reconstruction": "reconstruct_loss",
               "discriminator": "discriminator_loss", "orthogonal": "orthogonal_loss", "total": "weighted_loss"}


@pytest.fixture(params=["kernel", "tensor"], autouse=True)
def algebra_path(request, monkeypatch):
    """Every test runs with the compiled per-row loop and with the tensor-operation version."""
    if request.param == "kernel" and not kernel_available():
        pytest.skip("numba is not installed")
    monkeypatch.setattr(frozen_grad, "USE_KERNEL", request.param == "kernel")
    return request.param


def _values_and_grads(fn, case, weights):
    params = {k: case[k].clone().requires_grad_(True) for k in PARAMS}
    out = fn(case["image_embeds"], case["text_embeds"], case["modality_ids"], params["modality_embeddings"],
             params["discriminator_weight"], params["discriminator_bias"], case["logit_scale"], weights)
    out["total"].backward()
    # A parameter outside every weighted term gets no gradient: that is a zero gradient.
    grads = {k: p.grad if p.grad is not None else torch.zeros_like(p) for k, p in params.items()}
    return {k: v.detach() for k, v in out.items()}, grads


def _assert_same(got, want, what):
    assert np.allclose(got.numpy(), want.numpy(), rtol=RTOL, atol=ATOL), f"{what}: {got} != {want}"


def _random_case(seed: int, batch: int = 37, width: int = 24, any_ids: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    if any_ids:  # the algebra holds for any pair of ids, even equal ones
        ids = torch.randint(0, 4, (batch, 2), generator=g)
    else:
        image = torch.randint(0, 2, (batch,), generator=g)
        ids = torch.stack([image, 3 - image], 1)  # photo -> photo caption (3), sketch -> sketch caption (2)
    return {"image_embeds": F.normalize(torch.randn(batch, width, generator=g), dim=-1),
            "text_embeds": F.normalize(torch.randn(batch, width, generator=g), dim=-1),
            "modality_ids": ids, "logit_scale": torch.tensor(2.6592),
            "modality_embeddings": torch.randn(4, width, generator=g),
            "discriminator_weight": torch.randn(4, width, generator=g) / width ** 0.5,
            "discriminator_bias": torch.randn(4, generator=g) / 10}


def test_parity_files(parity_dir):
    files = sorted(parity_dir.glob("losses_*.npz"))
    assert len(files) >= 3
    for path in files:
        case = {k: torch.from_numpy(np.asarray(v)) for k, v in np.load(path).items()}
        out, grads = _values_and_grads(frozen_losses, case, case["loss_weights"])
        for ours, theirs in PARITY_KEYS.items():
            _assert_same(out[ours], case[theirs], f"{path.name}:{ours}")
        for name in PARAMS:
            _assert_same(grads[name], case[f"grad_{name}"], f"{path.name}: grad {name}")


@pytest.mark.parametrize("seed,any_ids", [(0, False), (1, False), (2, True), (3, True)])
@pytest.mark.parametrize("weights", [PAPER_WEIGHTS, (1.0, 0.5, 0.3, 0.2, 0.1), (0.0, 1.0, 0.0, 0.0, 0.0)])
def test_random_batches_match_compute_losses(seed, any_ids, weights):
    case = _random_case(seed, any_ids=any_ids)
    want, want_grads = _values_and_grads(compute_losses, case, weights)
    got, got_grads = _values_and_grads(frozen_losses, case, weights)
    for key in (*TERMS, "total"):
        _assert_same(got[key], want[key], key)
    for name in PARAMS:
        _assert_same(got_grads[name], want_grads[name], f"grad {name}")


def test_paper_scale_modality_vectors_stay_accurate():
    """N(0, 1) modality vectors in D = 512 have norm ~22: the Gram algebra must not lose precision."""
    case = _random_case(5, batch=64, width=512)
    want, want_grads = _values_and_grads(compute_losses, case, PAPER_WEIGHTS)
    got, got_grads = _values_and_grads(frozen_losses, case, PAPER_WEIGHTS)
    for key in ("semantic", "reconstruction", "discriminator", "total"):
        _assert_same(got[key], want[key], key)
    for name in PARAMS:
        _assert_same(got_grads[name], want_grads[name], f"grad {name}")


def _shared_caption_set(seed=0, n=90, classes=7, width=16):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    image_ids = torch.randint(0, 2, (n,), generator=g)
    caption_ids = 3 - image_ids
    caption_index = labels * 2 + (image_ids == 0).long()          # one caption per class and kind
    images = F.normalize(torch.randn(n, width, generator=g), dim=-1)
    captions = F.normalize(torch.randn(2 * classes, width, generator=g), dim=-1)
    return images, captions, caption_index, image_ids, caption_ids


def test_cached_pairs_batches_equal_compute_losses_on_gathered_rows():
    images, captions, cap_index, image_ids, caption_ids = _shared_caption_set()
    pairs = CachedPairs(images, captions, cap_index, image_ids, caption_ids)
    g = torch.Generator().manual_seed(1)
    m, w, b = torch.randn(4, 16, generator=g), torch.randn(4, 16, generator=g) / 4, torch.randn(4, generator=g)
    order = torch.randperm(len(images), generator=g)[:80].view(4, 20)
    for batch in pairs.epoch(order):
        got = pairs.losses(batch, m, w, b, (1.0, 0.5, 0.3, 0.2, 0.1))
        rows = batch.rows
        want = compute_losses(images[rows], captions[cap_index[rows]], torch.stack([image_ids, caption_ids], 1)[rows],
                              m, w, b, 2.6592, (1.0, 0.5, 0.3, 0.2, 0.1))
        for key in (*TERMS, "total"):
            _assert_same(got[key], want[key], key)


def test_clip_term_paths_agree_with_compute_losses():
    """The exp-table sums and the direct log-sum-exp give compute_losses' CLIP term, also when
    rows repeat within a batch (class-balanced sampling draws with replacement)."""
    images, captions, cap_index, image_ids, caption_ids = _shared_caption_set(seed=3)
    pairs = CachedPairs(images, captions, cap_index, image_ids, caption_ids)
    assert pairs.exp_table is not None
    unique = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:88].view(8, 11)
    repeated = torch.randint(0, len(images), (8, 11), generator=torch.Generator().manual_seed(1))
    weights = (1.0, 0.0, 0.0, 0.0, 0.0)
    for order in (unique, repeated):
        fast = pairs.clip_losses(order)
        table, pairs.exp_table = pairs.exp_table, None
        direct = pairs.clip_losses(order)
        pairs.exp_table = table
        for s, rows in enumerate(order):
            want = compute_losses(images[rows], captions[cap_index[rows]], torch.stack([image_ids, caption_ids], 1)[rows],
                                  torch.zeros(4, 16), torch.zeros(4, 16), torch.zeros(4), 2.6592, weights)["clip"]
            _assert_same(fast[s], want, f"clip (table) batch {s}")
            _assert_same(direct[s], want, f"clip (direct) batch {s}")


def test_epoch_batches_with_and_without_prefetch_are_equal():
    images, captions, cap_index, image_ids, caption_ids = _shared_caption_set(seed=4)
    pairs = CachedPairs(images, captions, cap_index, image_ids, caption_ids)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(2))[:80].view(8, 10)
    plain = list(pairs.epoch(order, prefetch=0))
    ahead = list(pairs.epoch(order, prefetch=3))
    assert len(plain) == len(ahead) == 8
    for a, b in zip(plain, ahead):
        assert torch.equal(a.vectors, b.vectors) and torch.equal(a.consts, b.consts) and torch.equal(a.clip, b.clip)
    assert sorted(plain[0].rows.tolist()) == sorted(order[0].tolist())   # rows of a batch are sorted, not changed
    stopped = pairs.epoch(order, prefetch=2)
    next(stopped)
    stopped.close()                                                      # an early stop ends the worker thread
    assert not any(t.name == "mars_lite-prefetch" for t in threading.enumerate())


def test_orthogonal_term_skipped_at_weight_zero_only():
    case = _random_case(7)
    paper = frozen_losses(case["image_embeds"], case["text_embeds"], case["modality_ids"],
                          case["modality_embeddings"], case["discriminator_weight"], case["discriminator_bias"],
                          weights=PAPER_WEIGHTS, all_terms=False)
    assert torch.isnan(paper["orthogonal"])
    reference = compute_losses(case["image_embeds"], case["text_embeds"], case["modality_ids"],
                               case["modality_embeddings"], case["discriminator_weight"],
                               case["discriminator_bias"], 2.6592, PAPER_WEIGHTS)
    _assert_same(paper["total"], reference["total"], "total without the orthogonal term")


def test_bad_inputs_are_rejected():
    images, captions, cap_index, image_ids, caption_ids = _shared_caption_set()
    with pytest.raises(ValueError, match="caption_index"):
        CachedPairs(images, captions, cap_index + 100, image_ids, caption_ids)
    with pytest.raises(ValueError, match="modality ids"):
        CachedPairs(images, captions, cap_index, image_ids + 7, caption_ids)
    pairs = CachedPairs(images, captions, cap_index, image_ids, caption_ids)
    with pytest.raises(ValueError, match="weights"):
        pairs.losses(torch.arange(4), torch.zeros(4, 16), torch.zeros(4, 16), torch.zeros(4), (1.0, 2.0))


def test_flat_adamw_matches_torch_adamw():
    g = torch.Generator().manual_seed(0)
    ours = torch.randn(50, generator=g).requires_grad_(True)
    theirs = ours.detach().clone().requires_grad_(True)
    flat = FlatAdamW(ours, lr=5e-3, weight_decay=0.1)
    reference = torch.optim.AdamW([theirs], lr=5e-3, weight_decay=0.1, foreach=False)
    for step, scale in enumerate([0.25, 0.5, 1.0, 1.0, 1.0]):
        grad = torch.randn(50, generator=g)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        flat.step(5e-3 * scale)
        reference.param_groups[0]["lr"] = 5e-3 * scale
        reference.step()
        assert torch.allclose(ours, theirs, rtol=0, atol=1e-7), f"step {step}"
    state = flat.state_dict()
    again = FlatAdamW(ours.detach().clone(), lr=5e-3, weight_decay=0.1)
    again.load_state_dict(state)
    assert again.step_count == 5 and torch.equal(again.exp_avg_sq, flat.exp_avg_sq)


@pytest.mark.parametrize("weights", [PAPER_WEIGHTS, (1.0, 0.5, 0.3, 0.2, 0.1)])
def test_direct_gradient_equals_autograd_path(weights):
    """Single-process training takes the gradient without autograd; DDP goes through autograd."""
    images, captions, cap_index, image_ids, caption_ids = _shared_caption_set(seed=5)
    pairs = CachedPairs(images, captions, cap_index, image_ids, caption_ids)
    g = torch.Generator().manual_seed(3)
    flat = torch.cat([torch.randn(64, generator=g), torch.randn(64, generator=g) / 4, torch.randn(4, generator=g)])
    batch = next(pairs.epoch(torch.arange(40).view(1, 40), prefetch=0))
    leaf = flat.clone().requires_grad_(True)
    total, terms, clip, orth = pairs.step_losses(batch, leaf, weights)
    total.backward()
    direct = pairs.step_losses(batch, flat, weights, with_grad=True)
    assert torch.allclose(direct[0], total.detach()) and torch.allclose(direct[1], terms.detach())
    assert torch.allclose(direct[4], leaf.grad, rtol=1e-5, atol=1e-7)
