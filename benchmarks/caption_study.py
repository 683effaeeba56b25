"""How much the wording of the captions matters, at query time and at training time (notebook 07's
study, with more seeds and shares), on the fast-mode setup: mini_sbir and the offline stand-in
backbone ``mobilenet-minilm`` (or the backbone ``MARS_LITE_MODEL`` / ``--model`` names).

1. Query time: zero-shot classification of photos and sketches (unseen classes, all classes) and
   text->photo retrieval of the unseen classes with each wording of ``mars_lite.study.captions.WORDINGS``,
   prompt ensembling and the classes' ImageNet synonyms; paired-bootstrap noise against the paper's.
2. Training time: frozen MARS on the seen classes' cached embeddings with each template set, several
   seeds; unseen sketch->photo mAP@all of the converted / semantic embeddings.
3. Damaged annotations: a share of the training class names misspelled or swapped.

A difference counts as larger than noise when |diff| > 2 x the pooled std over seeds (training)
or 2 x the bootstrap std (query time); see ``mars_lite.study.caption_findings``.

    python benchmarks/caption_study.py                  # 8 seeds, shares 0 .. 0.8
    python benchmarks/caption_study.py --seeds 3        # quicker

Prints the tables, then ends with one JSON line: query_time, query_beyond_noise, training_time,
damage, advice, seeds, epochs, shares, model, seconds.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from mars_lite import open_model, study
from mars_lite.study import caption_findings as findings
from mars_lite.study import captions


def _rounded(rows: list[dict]) -> list[dict]:
    return [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=8, help="training seeds per variant (>= 2)")
    parser.add_argument("--epochs", type=int, default=captions.DEFAULT_EPOCHS)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.2, 0.4, 0.6, 0.8])
    parser.add_argument("--model", default=None, help="backbone (default: fast mode's choice)")
    args = parser.parse_args()
    if args.seeds < 2:
        parser.error("--seeds must be >= 2 (the noise estimate needs two runs)")
    start = time.perf_counter()
    torch.set_num_threads(2)
    setup = study.load_study_setup(0, fast=True, model=args.model)
    model, _ = open_model(setup.model_name, **setup.model_options())
    data = captions.caption_data(setup, model)
    seeds = list(range(args.seeds))
    print(f"{setup.model_name} on {setup.split.name}: {len(data.train_items)} training images, "
          f"{len(seeds)} seeds, {args.epochs} epochs", flush=True)

    query, hits = captions.query_time_study(data)
    noise = findings.query_noise(hits, seed=setup.seed)
    print("\n## Query time (plain backbone)\n" + study.markdown_table(query))
    print("\nQuery-time differences to the paper's wording beyond noise:\n"
          + (study.markdown_table([r for r in noise if r["beyond noise"]], floats="{:.4f}")), flush=True)

    runs = captions.training_time_study(data, seeds, epochs=args.epochs)
    training = findings.summarize(runs, ("wording",), ("paper",))
    print("\n## Training time (frozen MARS, unseen mAP@all)\n" + study.markdown_table(training, floats="{:.4f}"),
          flush=True)

    damage_runs = captions.damage_study(data, seeds, args.shares, epochs=args.epochs)
    damage = findings.summarize(damage_runs, ("damage", "share"), ("typo", 0.0))
    advice = findings.annotation_advice(damage)
    print("\n## Damaged annotations (paper templates)\n" + study.markdown_table(damage, floats="{:.4f}"))
    print("\n" + advice, flush=True)

    print(json.dumps({
        "query_time": _rounded(query),
        "query_beyond_noise": _rounded([r for r in noise if r["beyond noise"]]),
        "training_time": _rounded(training), "damage": _rounded(damage), "advice": advice,
        "seeds": len(seeds), "epochs": args.epochs, "shares": args.shares, "model": setup.model_name,
        "seconds": round(time.perf_counter() - start, 1),
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
