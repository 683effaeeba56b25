"""Throughput of one full ``paper``-mode training step: images per second.

A step is what ``mars-lite train`` does per batch in paper mode (``mars_lite.train.full.FullEngine.step``):
encode the batch's images and its distinct captions, the five loss terms, backward through all of
CLIP, and the fused AdamW update (CLIP at the backbone rate, M and the classifier at 5e-3). The
images are real mini_sbir images, preprocessed once up front, so image decoding is not timed.
Models: ``tiny`` (batch 32) and ``ViT-B-32`` with random weights (batch 16) on the CPU, and on
CUDA as well when a GPU is present (bf16 autocast there, as training uses).

    python benchmarks/train_step.py                  # both models, CPU (+ CUDA when available)
    python benchmarks/train_step.py --steps 2        # quicker

Prints progress, then ends with one JSON line: per run (``tiny``, ``ViT-B-32``, and
``tiny/cuda``, ``ViT-B-32/cuda`` on a GPU) images_per_second, device, batch_size,
seconds_per_step and steps; plus threads and the 1-minute load average (other programs on the
cores slow CPU runs down).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

from mars_lite.data.sources import resolve_split
from mars_lite.method.losses import PAPER_WEIGHTS
from mars_lite.method.model import create_model
from mars_lite.data import resolve_data
from mars_lite.train.rows import build_rows, seen_split
from mars_lite.train.full import FullEngine

RUNS = (("tiny", 32), ("ViT-B-32", 16))


def real_rows(count: int):
    """``count`` training rows of mini_sbir's seen classes, sketches and photos interleaved."""
    root = resolve_data("mini_sbir")
    parts = seen_split(root, resolve_split(root))
    sketches = [item for item in parts.train if item.modality == "sketch"]
    photos = [item for item in parts.train if item.modality == "photo"]
    items = [x for pair in zip(sketches, photos) for x in pair][:count]
    return build_rows(items, parts.unseen)


def time_steps(name: str, batch_size: int, device: torch.device, steps: int, warmup: int) -> dict:
    torch.manual_seed(0)
    model, _ = create_model(name, pretrained=None, device=device)
    rows = real_rows(batch_size)
    engine = FullEngine(model, rows, "paper", list(PAPER_WEIGHTS), lr=5e-3, backbone_lr=1e-5, weight_decay=0.1,
                        amp="auto", preload=True)
    images = engine.images.cache                                                # (B, 3, H, W), real images
    batch = (images, torch.arange(len(rows)))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with engine.running():
        for _ in range(warmup):
            engine.step(batch, 1.0)
        sync()
        started = time.perf_counter()
        for _ in range(steps):
            losses = engine.step(batch, 1.0)
        sync()
        seconds = (time.perf_counter() - started) / steps
    assert torch.isfinite(losses).all(), f"{name}: non-finite loss {losses}"
    result = {"images_per_second": round(batch_size / seconds, 2), "device": str(device.type),
              "batch_size": batch_size, "seconds_per_step": round(seconds, 4), "steps": steps}
    print(f"{name} on {device}: {result['images_per_second']} images/s ({seconds:.3f} s per step of {batch_size})",
          flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="CPU intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {}
    for name, batch_size in RUNS:
        results[name] = time_steps(name, batch_size, torch.device("cpu"), args.steps, args.warmup)
    if torch.cuda.is_available():
        for name, batch_size in RUNS:
            results[f"{name}/cuda"] = time_steps(name, batch_size, torch.device("cuda"), max(args.steps, 20),
                                                 args.warmup + 3)
    results["threads"] = torch.get_num_threads()
    results["load_average_1min"] = os.getloadavg()[0]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
