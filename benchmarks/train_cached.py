"""Frozen-mode training speed at TU-Berlin-Extended size, on random cached embeddings.

TU-Berlin-Extended training (220 seen classes) holds about 17,600 sketches and 178,800 photos.
This script trains M and the classifier with ``mars_lite.train.training.train_on_embeddings`` (the same
engine as ``mars-lite train`` in frozen mode: inner-product loss, epoch orders, warm-up, per-step
history) on random unit 512-d embeddings of that size with the paper's loss weights, batch 256,
for 100 epochs. Target: at most 90 s on 2 CPU cores. The values are random, so the losses mean
nothing; the cost does not depend on them. Nothing is written to disk (no validation either: the
point is the training loop).

    python benchmarks/train_cached.py              # 100 epochs
    python benchmarks/train_cached.py --epochs 3   # quick check

Prints progress, then ends with one JSON line: epochs, rows, seconds_per_epoch (loop only),
seconds_total (setup + loop: score table, per-row constants, all epochs), setup_seconds,
cpu_seconds (user + system over all threads: when other programs share the cores, seconds_total
grows while cpu_seconds barely does), steps, threads and the first/last epoch's mean total loss.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time

import torch
import torch.nn.functional as F

from mars_lite.method.model import create_model
from mars_lite.train.training import train_on_embeddings

SKETCHES, PHOTOS, CLASSES, DIM = 17_600, 178_800, 220, 512
# A MarsModel of width 512 with the smallest towers: in frozen mode only M (4, 512) and the
# classifier (512 -> 4) train, so the backbone is never run here.
BENCH_MODEL = {"name": "bench-512", "clip": {
    "embed_dim": DIM, "quick_gelu": False,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_rows(seed: int = 0):
    """Random unit embeddings with the TU-Berlin-Extended training shape; two captions per class."""
    g = torch.Generator().manual_seed(seed)
    n = SKETCHES + PHOTOS
    images = F.normalize(torch.randn(n, DIM, generator=g), dim=-1)
    captions = F.normalize(torch.randn(2 * CLASSES, DIM, generator=g), dim=-1)
    image_ids = torch.cat([torch.ones(SKETCHES, dtype=torch.long), torch.zeros(PHOTOS, dtype=torch.long)])
    classes = torch.cat([torch.arange(SKETCHES) % CLASSES, torch.arange(PHOTOS) % CLASSES])
    caption_ids = torch.where(image_ids == 1, 2, 3)
    caption_index = classes * 2 + (image_ids == 0).long()        # [sketch caption, photo caption] per class
    labels = [f"class_{int(c)}" for c in classes]
    return images, captions, caption_index, image_ids, caption_ids, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prefetch", type=int, default=0, help="batches gathered ahead by a thread (0: none)")
    args = parser.parse_args()

    images, captions, caption_index, image_ids, caption_ids, labels = make_rows(args.seed)
    torch.manual_seed(args.seed)
    model, _ = create_model(BENCH_MODEL)
    print(f"{len(labels):,} rows ({SKETCHES:,} sketches, {PHOTOS:,} photos), {CLASSES} classes, D={DIM}, "
          f"batch {args.batch_size}, {args.epochs} epochs, {torch.get_num_threads()} threads", flush=True)
    cpu0, wall0 = _cpu_seconds(), time.perf_counter()
    result = train_on_embeddings(model, images, captions, caption_index, image_ids, caption_ids, labels, "frozen",
                                 epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                                 frozen_prefetch=args.prefetch, verbose=True, progress=False)
    total, cpu = time.perf_counter() - wall0, _cpu_seconds() - cpu0
    loop = sum(r["seconds"] for r in result.history["epochs"] if "seconds" in r)
    epochs = [r for r in result.history["epochs"] if r["epoch"] > 0]
    print(json.dumps({
        "epochs": args.epochs, "rows": len(labels), "seconds_per_epoch": round(loop / args.epochs, 4),
        "seconds_total": round(total, 2), "setup_seconds": round(total - loop, 2), "cpu_seconds": round(cpu, 2),
        "steps": result.global_step, "threads": torch.get_num_threads(), "prefetch": args.prefetch,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "first_epoch_total": round(epochs[0]["train_total"], 4), "last_epoch_total": round(epochs[-1]["train_total"], 4),
    }))


if __name__ == "__main__":
    main()
