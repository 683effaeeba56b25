"""How much relevance feedback lifts zero-shot retrieval: a simulated user on mini_sbir's unseen classes.

The model is the demo's default (``mars_lite.ui.demo``: the backbone ``choose_backbone`` picks — the
offline stand-in here — with its MARS checkpoint of mini_sbir's seen classes) and its default query
kind. Each of mini_sbir's 300 unseen-class sketches queries the 300 unseen-class photos. Round 0 is
the sketch alone; in each later round the simulated user marks the 10 best photos not yet marked as
"yes" (same class) or "no", and the query is refined by Rocchio's update
(``mars_lite.search.feedback``). Marked photos stay in the ranking, as on the sketch pad.

    python benchmarks/feedback_gain.py [--rounds 2] [--marks 10]

Ends with one JSON line: map_all_round0, map_all_round1, map_all_round2 (mAP@all, reference
convention), p_at_10_round0..2, model, kind, queries, gallery, seconds.
"""
from __future__ import annotations

import argparse
import json
import time

from mars_lite.data import builtin_path, folder_dataset, resolve_split
from mars_lite.embed import embed_items
from mars_lite.eval.metrics import retrieval_metrics
from mars_lite.search.feedback import simulate_feedback
from mars_lite.ui.demo import DemoConfig, demo_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--marks", type=int, default=10, help="photos marked per round")
    args = parser.parse_args()
    started = time.perf_counter()

    config = DemoConfig()
    model, info = demo_model(config)
    root = builtin_path("mini_sbir")
    unseen = resolve_split(root, None).unseen
    data = folder_dataset(root).select(classes=unseen)
    sketches, photos = data.select(modality="sketch"), data.select(modality="photo")
    queries = model.retrieval_embedding(embed_items(model, list(sketches)).embeddings, "sketch", config.kind)
    gallery = model.retrieval_embedding(embed_items(model, list(photos)).embeddings, "photo", config.kind)
    q_labels, g_labels = [it.label for it in sketches], [it.label for it in photos]

    out = {}
    for r, scores in enumerate(simulate_feedback(queries, q_labels, gallery, g_labels, args.rounds, args.marks)):
        metrics = retrieval_metrics(scores, q_labels, g_labels)
        top = scores.topk(10, dim=1).indices.numpy()
        hits = [[g_labels[j] == q_labels[i] for j in row] for i, row in enumerate(top)]
        out[f"map_all_round{r}"] = round(metrics["map_all"], 4)
        out[f"p_at_10_round{r}"] = round(sum(map(sum, hits)) / (10 * len(hits)), 4)
    out.update(model=info["name"], backbone=info.get("backbone"), kind=config.kind, queries=len(q_labels),
               gallery=len(g_labels), marks_per_round=args.marks, seconds=round(time.perf_counter() - started, 1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
