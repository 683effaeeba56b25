"""What the caption study's numbers say (:mod:`mars_lite.study.captions`): noise estimates, the
"larger than noise" rule, and the sentences notebook 07 prints -- written from the numbers, so
the prose cannot disagree with the table it stands under.

Rule: a difference is larger than noise when ``|diff| > NOISE_FACTOR x std``. Training runs: std is
the pooled standard deviation over seeds (sqrt of the mean within-group variance, every group of
the table pooled). Query time has no run-to-run randomness (no training): std is the paired-bootstrap
standard deviation, over images, of the difference in accuracy to the paper's wording.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .captions import KINDS

NOISE_FACTOR = 2.0


def query_noise(hits: dict, baseline: str = "paper", repeats: int = 500, seed: int = 0) -> list[dict]:
    """Per wording and accuracy column: difference to ``baseline``, its paired-bootstrap std over
    images, and whether |diff| > NOISE_FACTOR x that std."""
    rng = np.random.default_rng(seed)
    out = []
    for name, columns in hits.items():
        if name == baseline:
            continue
        for column, hit in columns.items():
            diff = hit.astype(float) - hits[baseline][column].astype(float)
            draws = diff[rng.integers(0, len(diff), (repeats, len(diff)))].mean(1)
            std = float(draws.std(ddof=1))
            out.append({"wording": name, "measure": column, "diff": float(diff.mean()), "noise std": std,
                        "beyond noise": bool(abs(diff.mean()) > NOISE_FACTOR * std)})
    return out


def pooled_std(runs: Sequence[dict], group: Sequence[str], metric: str) -> float:
    """sqrt of the mean within-group variance (ddof 1) of ``metric``, groups keyed by ``group``."""
    groups: dict[tuple, list[float]] = {}
    for r in runs:
        groups.setdefault(tuple(r[g] for g in group), []).append(r[metric])
    variances = [np.var(v, ddof=1) for v in groups.values() if len(v) > 1]
    if not variances:
        raise ValueError("a noise estimate needs at least two seeds in some group")
    return float(np.sqrt(np.mean(variances)))


def summarize(runs: Sequence[dict], group: Sequence[str], baseline: tuple, kinds: Sequence[str] = KINDS) -> list[dict]:
    """Per group (in first-seen order): mean and std over seeds of each kind's mAP, the difference of
    the mean to the ``baseline`` group's, and whether |diff| > NOISE_FACTOR x the pooled std."""
    noise = {k: pooled_std(runs, group, k) for k in kinds}
    by_key: dict[tuple, list[dict]] = {}
    for r in runs:
        by_key.setdefault(tuple(r[g] for g in group), []).append(r)
    if baseline not in by_key:
        raise ValueError(f"baseline {baseline} is not one of the groups {list(by_key)}")
    base = {k: float(np.mean([r[k] for r in by_key[baseline]])) for k in kinds}
    rows = []
    for key, members in by_key.items():
        row = {**dict(zip(group, key)), "seeds": len(members)}
        for k in kinds:
            values = [r[k] for r in members]
            diff = float(np.mean(values)) - base[k]
            row.update({f"{k} mAP": float(np.mean(values)), f"{k} std": float(np.std(values, ddof=1)),
                        f"{k} diff": diff, f"{k} noise": NOISE_FACTOR * noise[k],
                        f"{k} beyond noise": bool(abs(diff) > NOISE_FACTOR * noise[k])})
        rows.append(row)
    return rows


def beyond_noise(rows: Sequence[dict], label: Sequence[str], kinds: Sequence[str] = KINDS) -> list[str]:
    """One line per (row, kind) of a :func:`summarize` table whose difference is larger than noise."""
    return [f"{', '.join(str(r[g]) for g in label)} — {k}: {r[f'{k} diff']:+.4f} "
            f"(noise threshold ±{r[f'{k} noise']:.4f})"
            for r in rows for k in kinds if r[f"{k} beyond noise"]]


def worst_damage(damage_rows: Sequence[dict], kinds: Sequence[str] = KINDS) -> dict[str, dict]:
    """damage kind -> the row at its largest share, with ``drop`` = the mean over ``kinds`` of the
    mAP lost against no damage (positive: worse) and ``hurts`` = some kind fell by more than noise."""
    out = {}
    for kind in dict.fromkeys(r["damage"] for r in damage_rows):
        row = max((r for r in damage_rows if r["damage"] == kind), key=lambda r: r["share"])
        out[kind] = {**row, "drop": -float(np.mean([row[f"{k} diff"] for k in kinds])),
                     "hurts": any(row[f"{k} beyond noise"] and row[f"{k} diff"] < 0 for k in kinds)}
    return out


def annotation_advice(damage_rows: Sequence[dict], kinds: Sequence[str] = KINDS) -> str:
    """What a team should do about annotation quality, in Markdown, worded from the damage table."""
    worst = worst_damage(damage_rows, kinds)
    lines = []
    for kind, row in worst.items():
        what = {"typo": "misspelled", "swap": "swapped (another class's name)"}.get(kind, kind)
        verdict = ("lowered unseen mAP by more than run-to-run noise" if row["hurts"]
                   else "did not lower unseen mAP by more than run-to-run noise")
        lines.append(f"- {row['share']:.0%} of the training class names {what} {verdict} "
                     f"(mean change {-row['drop']:+.4f} over {', '.join(kinds)}).")
    harmful = [k for k, r in worst.items() if r["hurts"]]
    harmless = [k for k, r in worst.items() if not r["hurts"]]
    if harmful:
        order = sorted(harmful, key=lambda k: -worst[k]["drop"])
        lines.append(f"- **Do:** check the annotations for {' and '.join(_name(k) for k in order)} before training "
                     "(e.g. a review of a sample per class, or a look at images whose caption is far from their "
                     "class's centre); this is where caption quality measurably costs retrieval quality here.")
    if harmless:
        lines.append(f"- {' and '.join(_name(k).capitalize() for k in harmless)} at these shares stayed within noise: "
                     "cleaning them is the lower priority for this backbone (its text tower is not the only one a "
                     "team may use — re-measure with the real backbone before relying on this).")
    return "\n".join(lines)


def _name(kind: str) -> str:
    return {"typo": "misspellings", "swap": "wrong class names (swaps)"}.get(kind, kind)
