"""Tests of mars_lite.eval.metrics: parity with the reference, sklearn, a slow full-sort oracle, ties."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from mars_lite.eval.metrics import METRIC_KEYS, _count_below, evaluate_embeddings, retrieval_metrics

PARITY_KEYS = {"map_all": "map_all", "map_200": "map_200",
               "p_100": "precision_100", "p_200": "precision_200"}


# --- a slow, obviously-correct oracle: full sort of every row, then the textbook formulas -----

def _oracle(similarity, query_labels, gallery_labels, convention):
    """Per-metric means computed from a full lexsort of each row (ties: irrelevant first)."""
    per_query = []
    for scores, label in zip(similarity, query_labels):
        relevant = gallery_labels == label
        n_rel = int(relevant.sum())
        if n_rel == 0:
            continue
        order = np.lexsort((relevant, -scores))  # by score descending, then irrelevant first
        hits = relevant[order].astype(float)
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        row = {}
        for key, top in (("map_all", len(hits)), ("map_200", 200)):
            h, p = hits[:top], precision[:top]
            norm = n_rel if key == "map_all" else min(200, n_rel)
            if convention == "reference":  # VOC: area under the interpolated PR curve
                recall = np.concatenate(([0.0], np.cumsum(h) / norm, [1.0]))
                interp = np.concatenate(([0.0], p, [0.0]))
                for j in range(len(interp) - 2, -1, -1):
                    interp[j] = max(interp[j], interp[j + 1])
                steps = np.flatnonzero(recall[1:] != recall[:-1])
                row[key] = float(np.sum((recall[steps + 1] - recall[steps]) * interp[steps + 1]))
            else:
                row[key] = float(np.sum(p * h) / norm)
        for key, k in (("p_100", 100), ("p_200", 200)):
            cut = min(k, n_rel) if convention == "reference" else k
            row[key] = float(hits[:cut].sum() / cut)
        per_query.append(row)
    return {key: float(np.mean([r[key] for r in per_query])) for key in METRIC_KEYS}


def _assert_close(got, want, atol=1e-6):
    for key in METRIC_KEYS:
        assert abs(got[key] - want[key]) <= atol, (key, got[key], want[key])


def _random_case(seed, n_queries=40, n_gallery=500, n_classes=5, levels=None):
    rng = np.random.default_rng(seed)
    sim = rng.standard_normal((n_queries, n_gallery))
    if levels is not None:  # quantise to force many ties
        sim = np.round(sim * levels) / levels
    return sim, rng.integers(0, n_classes, n_queries), rng.integers(0, n_classes, n_gallery)


# --- parity with the authors' implementation ------------------------------------------------

def test_every_parity_file_matches_both_functions(parity_dir):
    files = sorted(parity_dir.glob("metrics_*.npz"))
    assert len(files) >= 2, f"expected the metrics parity files in {parity_dir}"
    for path in files:
        d = np.load(path)
        distance, q_lab, g_lab = d["distance"], d["query_labels"], d["gallery_labels"]
        want = {key: float(d[ref_key]) for key, ref_key in PARITY_KEYS.items()}
        _assert_close(retrieval_metrics(-distance, q_lab, g_lab), want)
        # one-hot gallery: cosine(query_i, gallery_j) = -distance[i, j] / ||distance[i]||, which
        # ranks every row exactly as -distance does
        got = evaluate_embeddings(-distance, np.eye(distance.shape[1]), q_lab, g_lab, chunk_size=7)
        _assert_close(got, want)
        _assert_close(_oracle(-distance, q_lab, g_lab, "reference"), want)


# --- the standard convention ---------------------------------------------------------------

def test_standard_ap_equals_sklearn_per_query():
    sim, q_lab, g_lab = _random_case(0, n_queries=12, n_gallery=400)
    aps = []
    for row, label in zip(sim, q_lab):
        want = average_precision_score(g_lab == label, row)
        got = retrieval_metrics(row[None], [label], g_lab, "standard")["map_all"]
        assert abs(got - want) < 1e-12
        aps.append(want)
    assert abs(retrieval_metrics(sim, q_lab, g_lab, "standard")["map_all"] - np.mean(aps)) < 1e-12


def test_precision_conventions_differ_when_fewer_relevant_than_k():
    # 50 relevant items ranked 1..50 among 300: R-precision is perfect, plain P@100 is 50/100
    g_lab = np.r_[np.ones(50, int), np.zeros(250, int)]
    sim = -np.arange(300.0)[None]
    ref = retrieval_metrics(sim, [1], g_lab, "reference")
    std = retrieval_metrics(sim, [1], g_lab, "standard")
    assert ref["p_100"] == 1.0 and ref["p_200"] == 1.0
    assert std["p_100"] == 0.5 and std["p_200"] == 0.25
    assert ref["map_all"] == std["map_all"] == 1.0


def test_interpolation_and_top200_normalisation_by_hand():
    # relevant at ranks 2 and 4 of 300 (R = 2): plain AP = (1/2 + 2/4) / 2, interpolated the same;
    # relevant at ranks 1, 3 and 250: interpolation lifts nothing, top-200 keeps two of three hits
    g_lab = np.zeros(300, int)
    g_lab[[1, 3]] = 1
    g_lab[[0, 2, 249]] = 2
    sim = np.tile(-np.arange(300.0), (2, 1))
    std = retrieval_metrics(sim, [1, 2], g_lab, "standard", per_class=True)["per_class"]
    assert std[1]["map_all"] == pytest.approx(0.5)
    assert std[2]["map_all"] == pytest.approx((1 + 2 / 3 + 3 / 250) / 3)
    assert std[2]["map_200"] == pytest.approx((1 + 2 / 3) / 3)
    ref = retrieval_metrics(sim, [1, 2], g_lab, "reference", per_class=True)["per_class"]
    assert ref[2]["map_all"] == pytest.approx((1 + 2 / 3 + 3 / 250) / 3)
    # interpolation: relevant at ranks 3 and 4 -> precisions 1/3, 1/2 -> interpolated 1/2, 1/2
    g2 = np.zeros(300, int)
    g2[[2, 3]] = 1
    assert retrieval_metrics(sim[:1], [1], g2)["map_all"] == pytest.approx(0.5)
    assert retrieval_metrics(sim[:1], [1], g2, "standard")["map_all"] == pytest.approx(5 / 12)


# --- the fast ranking against the slow oracle, with and without ties --------------------------

@pytest.mark.parametrize("levels", [None, 2, 8])
@pytest.mark.parametrize("convention", ["reference", "standard"])
def test_fast_ranking_matches_full_sort_oracle(levels, convention):
    sim, q_lab, g_lab = _random_case(1, n_queries=30, n_gallery=900, n_classes=3, levels=levels)
    want = _oracle(sim, q_lab, g_lab, convention)
    _assert_close(retrieval_metrics(sim, q_lab, g_lab, convention, chunk_size=4), want, 1e-12)
    _assert_close(retrieval_metrics(sim.astype(np.float32), q_lab, g_lab, convention),
                  _oracle(sim.astype(np.float32), q_lab, g_lab, convention), 1e-12)


@pytest.mark.parametrize("case", ["spread", "ties", "constant", "infinite", "infinite_relevant",
                                  "one_relevant"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bucketed_counting_equals_sort_and_searchsorted(case, dtype):
    # covers each path of _count_below: bucket table + exact steps (spread), binary-search
    # fallback for crowded buckets (ties), one bucket (constant, infinite)
    rng = np.random.default_rng(9)
    scores = rng.standard_normal(5000)
    if case == "ties":
        scores = np.round(scores * 3) / 3
    elif case == "constant":
        scores = np.zeros(5000)
    elif case.startswith("infinite"):
        scores[:50] = np.inf
        scores[50:90] = -np.inf
    scores = scores.astype(dtype)
    n_rel = 1 if case == "one_relevant" else 300
    first = 0 if case == "infinite_relevant" else 90  # infinite relevant scores, or finite only
    rel = np.sort(scores[first + rng.choice(5000 - first, n_rel, replace=False)])
    np.testing.assert_array_equal(_count_below(scores, rel), np.searchsorted(np.sort(scores), rel))
    # +inf shares the top bucket with rel[-1] while another bucket holds two rel scores
    scores, rel = np.array([np.inf, 1, 0, 0, 0.5], dtype), np.array([0, 0, 1], dtype)
    np.testing.assert_array_equal(_count_below(scores, rel), [0, 0, 3])


def test_ties_are_pessimistic_and_order_independent():
    # all scores equal: the single relevant item ranks after the 9 irrelevant ones -> AP = 1/10
    g_lab = np.r_[1, np.zeros(9, int)]
    for convention in ("reference", "standard"):
        got = retrieval_metrics(np.zeros((1, 10)), [1], g_lab, convention)
        assert got["map_all"] == pytest.approx(0.1)
    # shuffling the gallery's order never changes a metric, however many ties there are
    sim, q_lab, g_lab = _random_case(2, levels=2)
    perm = np.random.default_rng(3).permutation(len(g_lab))
    for convention in ("reference", "standard"):
        a = retrieval_metrics(sim, q_lab, g_lab, convention)
        b = retrieval_metrics(sim[:, perm], q_lab, g_lab[perm], convention)
        assert a == b


# --- chunked embeddings, R = 0, per class, input types ---------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_chunked_embeddings_equal_full_cosine_matrix(dtype):
    rng = np.random.default_rng(4)
    q, g = rng.standard_normal((57, 16)).astype(dtype), rng.standard_normal((333, 16)).astype(dtype)
    q_lab, g_lab = rng.integers(0, 4, 57), rng.integers(0, 4, 333)
    cosine = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T
    for convention in ("reference", "standard"):
        want = retrieval_metrics(cosine, q_lab, g_lab, convention, per_class=True)
        for chunk in (1, 5, 1000):
            got = evaluate_embeddings(q, g, q_lab, g_lab, convention, per_class=True, chunk_size=chunk)
            _assert_close(got, want, 1e-12)
            assert got["per_class"].keys() == want["per_class"].keys()
            for label, entry in want["per_class"].items():
                assert got["per_class"][label] == pytest.approx(entry, abs=1e-12)


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    q, g = rng.standard_normal((20, 8)), rng.standard_normal((90, 8))
    q_lab, g_lab = rng.integers(0, 3, 20), rng.integers(0, 3, 90)
    want = evaluate_embeddings(q, g, q_lab, g_lab)
    got = evaluate_embeddings(torch.from_numpy(q), torch.from_numpy(g),
                              torch.from_numpy(q_lab), torch.from_numpy(g_lab))
    assert got == want
    assert retrieval_metrics(torch.from_numpy(q @ g.T), q_lab, g_lab) == retrieval_metrics(q @ g.T, q_lab, g_lab)


def test_queries_without_relevant_items_are_left_out():
    sim, q_lab, g_lab = _random_case(6, n_classes=4)
    g_lab = np.where(g_lab == 3, 0, g_lab)  # class 3 no longer in the gallery
    keep = q_lab != 3
    assert 0 < keep.sum() < len(q_lab)
    for convention in ("reference", "standard"):
        full = retrieval_metrics(sim, q_lab, g_lab, convention, per_class=True)
        assert {k: full[k] for k in METRIC_KEYS} == retrieval_metrics(sim[keep], q_lab[keep], g_lab, convention)
        assert full["per_class"][3]["relevant"] == 0 and np.isnan(full["per_class"][3]["map_all"])
    with pytest.raises(ValueError, match="no query has a relevant"):
        retrieval_metrics(sim, np.full(len(q_lab), 9), g_lab)


def test_per_class_breakdown_matches_subsets():
    sim, q_lab, g_lab = _random_case(7)
    out = retrieval_metrics(sim, q_lab, g_lab, per_class=True)
    for label, entry in out["per_class"].items():
        rows = q_lab == label
        assert entry["queries"] == rows.sum() and entry["relevant"] == (g_lab == label).sum()
        sub = retrieval_metrics(sim[rows], q_lab[rows], g_lab)
        assert {k: entry[k] for k in METRIC_KEYS} == pytest.approx(sub, abs=1e-12)
    counts = np.array([e["queries"] for e in out["per_class"].values()])
    weighted = sum(e["map_all"] * e["queries"] for e in out["per_class"].values()) / counts.sum()
    assert weighted == pytest.approx(out["map_all"], abs=1e-12)


# --- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda s, q, g: retrieval_metrics(s, q, g, "voc"), "convention must be one of"),
    (lambda s, q, g: retrieval_metrics(s, q[:-1], g), "labels must be 1-D"),
    (lambda s, q, g: retrieval_metrics(s, q, g[:-1]), "labels must be 1-D"),
    (lambda s, q, g: retrieval_metrics(s[0], q, g), r"\(Q, G\) matrix"),
    (lambda s, q, g: retrieval_metrics(np.where(s > 2, np.nan, s), q, g), "NaN"),
    (lambda s, q, g: retrieval_metrics(s, q, g, chunk_size=0), "chunk_size"),
    (lambda s, q, g: evaluate_embeddings(s, s[:, :3], q, g), "same D"),
    (lambda s, q, g: evaluate_embeddings(s, s, q, g, "Standard"), "convention must be one of"),
    (lambda s, q, g: evaluate_embeddings(s, s, q, q[:-1]), "labels must be 1-D"),
    (lambda s, q, g: evaluate_embeddings(s * np.inf, s, q, q), "NaN or infinite"),
])
def test_bad_input_raises_clear_value_error(call, message):
    sim, q_lab, g_lab = _random_case(8)
    with pytest.raises(ValueError, match=message):
        call(sim, q_lab, g_lab)
