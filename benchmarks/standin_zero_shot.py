"""What the offline stand-in backbone does for zero-shot SBIR on mini_sbir, before and after MARS.

Steps, all on the data built into the package (CPU, offline):

1. ``mobilenet-minilm`` as shipped: unseen-class sketch -> photo retrieval (5 unseen classes, 300
   sketches against 300 photos, mAP@all, reference convention) with the ``original`` embedding,
   and zero-shot photo classification of the 11 classes with "a photo of a {class}".
2. MARS trained as fast mode does it (``mars-lite train --config fast``: paper mode, the stand-in's
   trainable part at a small rate) on the 6 seen classes; the same retrieval, every query kind.
3. The same with ``--mode frozen`` (only the modality vectors and the classifier train).
4. Drawings of seen classes that no training used, against the whole 11-class photo gallery
   (P@10, with the best query kind of step 2): the Quick, Draw! bitmaps of mini_sbir's classes, and with ``--tuberlin DIR`` (a folder
   of TU-Berlin ``<class>/<id>.png``) the TU-Berlin sketches of seen classes that mini_sbir does
   not hold.

    python benchmarks/standin_zero_shot.py [--tuberlin DIR] [--work DIR]

Ends with one JSON line: unseen_map_all_before, unseen_map_all_after (best kind after fast-mode
MARS), after_kind, unseen_map_all_after_by_kind, chance_map_all, frozen_only_map_all,
seen_new_drawings_p_at_10 (Quick, Draw!, plus TU-Berlin when given), seen_new_drawings_count,
quickdraw_seen_p_at_10, tuberlin_heldout_seen_p_at_10, zero_shot_photo_accuracy, seconds.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mars_lite import open_model
from mars_lite.data import builtin_path, folder_dataset, quickdraw_dataset, resolve_split
from mars_lite.data.items import ImageItem
from mars_lite.embed import embed_items, embed_texts
from mars_lite.eval.evaluation import evaluate
from mars_lite.eval.metrics import retrieval_metrics
from mars_lite.method.modalities import caption
from mars_lite.train import train


def precision_at_10(model, queries: list, gallery_set, kind: str) -> float:
    """Mean P@10 of ``queries`` (items) against the gallery's photos, with the ``kind`` query embedding."""
    z = embed_items(model, queries).embeddings
    q = model.retrieval_embedding(z, "sketch", kind)
    g = model.retrieval_embedding(gallery_set.embeddings, "photo", kind)
    top = (q @ g.T).topk(10, dim=1).indices
    labels = np.array(gallery_set.labels)
    hits = labels[top.numpy()] == np.array([it.label for it in queries])[:, None]
    return float(hits.mean())


def new_drawings(split, tuberlin: Path | None, per_class: int) -> dict[str, list]:
    """Seen-class drawings that no training used: Quick, Draw! rows and held-out TU-Berlin files."""
    seen = set(split.seen)
    drawings = quickdraw_dataset(builtin_path("quickdraw_bitmap"))
    out = {"quickdraw": [it for it in drawings if it.label in seen and (it.index or 0) < per_class]}
    if tuberlin is not None:
        in_mini = {p.name for p in builtin_path("mini_sbir").glob("sketch/*/*.png")}
        out["tuberlin"] = [ImageItem(p, "sketch", p.parent.name) for c in sorted(seen)
                           for p in sorted((tuberlin / c).glob("*.png")) if p.name not in in_mini]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tuberlin", type=Path, help="TU-Berlin sketches <class>/<id>.png (held-out ones are used)")
    parser.add_argument("--work", type=Path, help="folder for runs and caches (default: a temporary one)")
    parser.add_argument("--quickdraw-per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    torch.set_num_threads(2)
    work = args.work or Path(tempfile.mkdtemp(prefix="standin_bench_"))
    cache = work / "embeddings"
    split = resolve_split("mini_sbir")

    model, _ = open_model("mobilenet-minilm")
    before = evaluate(model, "mini_sbir", cache_dir=cache, kinds=("original",))
    map_before = before.metrics["original"]["map_all"]
    print(f"[before] unseen mAP@all {map_before:.4f}", flush=True)

    photos = folder_dataset(builtin_path("mini_sbir")).photos()
    gallery = embed_items(model, photos, cache)
    names = sorted(set(gallery.labels))
    text = embed_texts(model, [caption(c, "photo")[0] for c in names])
    predicted = np.array(names)[(gallery.embeddings @ text.T).argmax(1).numpy()]
    zero_shot = float((predicted == np.array(gallery.labels)).mean())
    print(f"[zero-shot] photo classification over {len(names)} classes: {zero_shot:.4f}", flush=True)

    # random scores over the same queries and gallery (60 sketches and 60 photos per unseen class)
    labels = np.repeat(split.unseen, 60)
    chance = retrieval_metrics(np.random.default_rng(args.seed).random((len(labels), len(labels))), labels, labels)

    results = {}
    for mode in ("paper", "frozen"):
        run = train("fast", "mini_sbir", work / mode, mode=mode, seed=args.seed, cache_dir=str(cache), verbose=False)
        trained, _ = open_model(run.best_checkpoint or run.last_checkpoint)
        report = evaluate(run.best_checkpoint or run.last_checkpoint, "mini_sbir", cache_dir=cache)
        results[mode] = (trained, {k: v["map_all"] for k, v in report.metrics.items()})
        print(f"[{mode}] unseen mAP@all by kind {results[mode][1]} ({run.seconds:.0f} s)", flush=True)
    after_model, after = results["paper"]
    best_kind = max(after, key=after.get)

    trained_gallery = embed_items(after_model, photos, cache)
    sets = new_drawings(split, args.tuberlin, args.quickdraw_per_class)
    p10 = {name: precision_at_10(after_model, items, trained_gallery, best_kind) for name, items in sets.items() if items}
    pooled = [it for items in sets.values() for it in items]
    p10_all = precision_at_10(after_model, pooled, trained_gallery, best_kind)
    print(f"[new drawings] P@10 {p10} (pooled {p10_all:.4f}, {len(pooled)} drawings)", flush=True)

    print(json.dumps({
        "unseen_map_all_before": round(map_before, 4),
        "unseen_map_all_after": round(after[best_kind], 4), "after_kind": best_kind,
        "unseen_map_all_after_by_kind": {k: round(v, 4) for k, v in after.items()},
        "chance_map_all": round(float(chance["map_all"]), 4),
        "frozen_only_map_all": round(max(results["frozen"][1].values()), 4),
        "seen_new_drawings_p_at_10": round(p10_all, 4), "seen_new_drawings_count": len(pooled),
        "quickdraw_seen_p_at_10": round(p10.get("quickdraw", float("nan")), 4),
        "tuberlin_heldout_seen_p_at_10": round(p10["tuberlin"], 4) if "tuberlin" in p10 else None,
        "zero_shot_photo_accuracy": round(zero_shot, 4),
        "seconds": round(time.perf_counter() - start, 1),
    }))


if __name__ == "__main__":
    main()
