"""Image-embedding throughput of a backbone (images/s), the figure docs/reproduce.md scales by.

Builds the model with random weights (no download: throughput does not depend on the values),
then times ``encode_image`` on random (B, 3, 224, 224) batches after a warm-up, on the chosen
device, in float32 on CPU and under bf16 autocast on CUDA (as training and embedding run there).
Image decoding is not included: this is the model's ceiling, data loading comes on top.

    python benchmarks/embed_throughput.py                       # ViT-B-32 on CUDA if present, else CPU
    python benchmarks/embed_throughput.py --batches 3 --batch-size 16

Ends with one JSON line: model, device, batch_size, batches, seconds, images_per_s, cpu_threads.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time

import torch

from mars_lite.method.model import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default 256 on CUDA, 32 on CPU")
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()
    batch = args.batch_size or (256 if args.device.startswith("cuda") else 32)
    torch.manual_seed(0)
    model, _ = create_model(args.model, device=args.device)
    size = model.clip.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    images = torch.randn(batch, 3, size, size, device=args.device)
    cuda = args.device.startswith("cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()

    def run() -> None:
        with torch.inference_mode(), autocast:
            model.encode_image(images)
        if cuda:
            torch.cuda.synchronize()

    run()  # warm-up (kernel selection, allocator)
    print(f"timing {args.batches} batches of {batch} on {args.device} ...", flush=True)
    start = time.perf_counter()
    for i in range(args.batches):
        run()
        print(f"  batch {i + 1}/{args.batches}", flush=True)
    seconds = time.perf_counter() - start
    print(json.dumps({"model": args.model, "device": args.device, "batch_size": batch, "batches": args.batches,
                      "seconds": round(seconds, 3), "images_per_s": round(batch * args.batches / seconds, 1),
                      "cpu_threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
