"""Measures of the modality gap between sketch, photo and caption embeddings.

The modality gap (Liang et al., "Mind the Gap", NeurIPS 2022) is the observation that each
modality of a contrastive model occupies its own region of the embedding sphere. Three numbers
make it concrete here, each a pure function of embeddings (no model import):

* centroid distance — L2 distance between the mean embeddings of two modalities;
* linear-probe accuracy — how well a logistic regression tells the modalities apart
  (0.5 = indistinguishable for two balanced modalities, 1.0 = linearly separable);
* cross-modal class agreement — how often a sketch's nearest photo (cosine) has its class.
"""
from __future__ import annotations

from itertools import combinations
from typing import Mapping, Sequence

import numpy as np
import torch


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def centroid_distance(a, b) -> float:
    """L2 distance between the centroids of two (N, D) / (M, D) sets of unit embeddings."""
    return float(np.linalg.norm(_unit(_np(a)).mean(0) - _unit(_np(b)).mean(0)))


def centroid_distances(groups: Mapping[str, object]) -> dict[str, float]:
    """Pairwise centroid distances, keyed ``"sketch-photo"`` etc. (in the order given)."""
    return {f"{x}-{y}": centroid_distance(groups[x], groups[y]) for x, y in combinations(groups, 2)}


def modality_probe_accuracy(groups: Mapping[str, object], seed: int = 0, test_fraction: float = 0.3) -> float:
    """Held-out accuracy of a logistic regression that predicts the modality of an embedding.

    Args:
        groups: modality name -> (N_m, D) embeddings (two or more modalities).
        seed: split and solver seed. test_fraction: share of each modality held out.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    if len(groups) < 2:
        raise ValueError("the probe needs at least two modalities")
    x = np.concatenate([_unit(_np(v)) for v in groups.values()])
    y = np.concatenate([np.full(len(v), i) for i, v in enumerate(groups.values())])
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    probe = LogisticRegression(max_iter=2000, random_state=seed).fit(x_tr, y_tr)
    return float(probe.score(x_te, y_te))


def nearest_neighbour_class_agreement(queries, query_labels: Sequence, gallery, gallery_labels: Sequence) -> float:
    """Fraction of queries whose nearest gallery item (cosine) has the query's class."""
    q, g = _unit(_np(queries)), _unit(_np(gallery))
    nearest = (q @ g.T).argmax(axis=1)
    gallery_labels = np.asarray(gallery_labels)
    return float(np.mean(gallery_labels[nearest] == np.asarray(query_labels)))


def chance_agreement(query_labels: Sequence, gallery_labels: Sequence) -> float:
    """Expected agreement of a random nearest neighbour: sum over classes of p_query * p_gallery."""
    q, g = np.asarray(query_labels), np.asarray(gallery_labels)
    return float(sum(np.mean(q == c) * np.mean(g == c) for c in np.unique(q)))


def gap_report(sketch, photo, sketch_labels: Sequence, photo_labels: Sequence, text=None, seed: int = 0) -> dict:
    """All gap numbers for one embedding space.

    Args:
        sketch: (S, D) sketch embeddings; photo: (P, D); text: optional (T, D) captions.
        sketch_labels, photo_labels: class of each row.
    Returns:
        dict with ``centroid`` (pairwise distances), ``probe_accuracy`` (sketch vs photo),
        ``nn_agreement`` (sketch -> nearest photo has its class) and ``nn_chance``.
    """
    groups = {"sketch": sketch, "photo": photo}
    if text is not None:
        groups["text"] = text
    return {
        "centroid": centroid_distances(groups),
        "probe_accuracy": modality_probe_accuracy({"sketch": sketch, "photo": photo}, seed=seed),
        "nn_agreement": nearest_neighbour_class_agreement(sketch, sketch_labels, photo, photo_labels),
        "nn_chance": chance_agreement(sketch_labels, photo_labels),
    }


def gap_table(reports: Mapping[str, dict]) -> str:
    """Markdown table comparing gap reports (e.g. ``{"original": ..., "converted": ...}``)."""
    first = next(iter(reports.values()))
    pairs = list(first["centroid"])
    head = ["embedding", *[f"centroid {p}" for p in pairs], "probe acc. (sketch vs photo)", "NN class agreement"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in reports.items():
        cells = [name, *[f"{r['centroid'][p]:.3f}" for p in pairs], f"{r['probe_accuracy']:.3f}",
                 f"{r['nn_agreement']:.3f} (chance {r['nn_chance']:.3f})"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
