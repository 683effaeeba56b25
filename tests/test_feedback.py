"""search.feedback: Rocchio's update and the simulated user of benchmarks/feedback_gain.py."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mars_lite.eval.metrics import retrieval_metrics
from mars_lite.search.feedback import ALPHA, BETA, GAMMA, refine, simulate_feedback


def test_refine_is_rocchio_on_unit_vectors():
    torch.manual_seed(0)
    q = F.normalize(torch.randn(8), dim=0)
    yes, no = F.normalize(torch.randn(3, 8), dim=1), F.normalize(torch.randn(2, 8), dim=1)
    by_hand = F.normalize(ALPHA * q + BETA * yes.mean(0) - GAMMA * no.mean(0), dim=0)
    assert torch.allclose(refine(q, yes, no), by_hand, atol=1e-6)
    # no marks: the query itself ("reset"); the shape given is the shape returned
    assert torch.allclose(refine(q), q, atol=1e-6) and refine(q[None]).shape == (1, 8)
    assert torch.allclose(refine(q, yes[:0], None), q, atol=1e-6)
    # moving towards a relevant photo raises its score, away from an irrelevant one lowers it
    assert refine(q, yes[:1]) @ yes[0] > q @ yes[0]
    assert refine(q, None, no[:1]) @ no[0] < q @ no[0]


def test_simulated_feedback_lifts_retrieval_on_clustered_data():
    """Two classes whose photos form two clusters; sketches sit between them, nearer their own."""
    torch.manual_seed(1)
    centres = F.normalize(torch.randn(2, 16), dim=1)
    gallery = F.normalize(centres.repeat_interleave(20, 0) + 0.6 * torch.randn(40, 16), dim=1)
    g_labels = ["a"] * 20 + ["b"] * 20
    queries = F.normalize(0.6 * centres + 0.4 * centres.flip(0) + 0.9 * torch.randn(2, 16), dim=1)
    q_labels = ["a", "b"]
    rounds = simulate_feedback(queries, q_labels, gallery, g_labels, rounds=2, marks=5)
    assert len(rounds) == 3 and all(s.shape == (2, 40) for s in rounds)
    maps = [retrieval_metrics(s, q_labels, g_labels)["map_all"] for s in rounds]
    assert maps[2] >= maps[1] >= maps[0] and maps[2] > maps[0] + 0.05, maps
