"""Scale benchmark: the four reference metrics at QuickDraw-Extended size, in bounded time and memory.

QuickDraw-Extended's unseen-class test set has 92,291 sketch queries and 54,358 photos over 30
classes (docs/method.md, "Benchmarks and splits"). This script scores random 512-d float32 embeddings of
that size (fixed seed) with ``mars_lite.eval.metrics.evaluate_embeddings``; the targets are at most
180 s and at most 1.5 GiB peak resident memory on 2 CPU cores. Random embeddings give chance-level
metrics (about 1/30); the point is the cost, which does not depend on the values.

    python benchmarks/eval_scale.py                 # full size
    python benchmarks/eval_scale.py --scale 0.01    # 1% of the queries and the gallery: a quick check

Prints progress, then ends with one JSON line: seconds (evaluate_embeddings wall time),
cpu_seconds (its CPU time summed over threads; when other programs share the cores, seconds grows
while cpu_seconds barely does, so the pair shows how contended a run was), generate_seconds, peak_rss_mib (ru_maxrss of this process, generation included), queries,
gallery, dim, threads and the metric values.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np

from mars_lite.eval.metrics import evaluate_embeddings

QUERIES, GALLERY, DIM, CLASSES = 92_291, 54_358, 512, 30


def _peak_rss_mib() -> float:
    # Linux reports ru_maxrss in KiB (macOS in bytes)
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (wall time / threads is its floor)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _random_embeddings(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """(n, dim) float32 standard normal, drawn straight into float32 (no float64 copy)."""
    return rng.standard_normal((n, dim), dtype=np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of the full query and gallery sizes (default 1.0)")
    parser.add_argument("--dim", type=int, default=DIM, help=f"embedding width (default {DIM})")
    parser.add_argument("--chunk-size", type=int, default=512, help="queries scored at a time")
    parser.add_argument("--threads", type=int, default=2,
                        help="CPU threads for the matrix product and the row sorts (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 1:
        parser.error(f"--scale must be in (0, 1], got {args.scale}")

    blas_threads = _limit_blas_threads(args.threads)
    print(f"{args.threads} sort threads, BLAS threads {blas_threads}", flush=True)

    n_queries = max(CLASSES, round(QUERIES * args.scale))
    n_gallery = max(CLASSES, round(GALLERY * args.scale))
    print(f"generating {n_queries} queries and {n_gallery} gallery items, {args.dim}-d float32, "
          f"{CLASSES} classes, seed {args.seed}", flush=True)
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    query_emb = _random_embeddings(rng, n_queries, args.dim)
    gallery_emb = _random_embeddings(rng, n_gallery, args.dim)
    query_labels = rng.integers(0, CLASSES, n_queries)
    gallery_labels = rng.integers(0, CLASSES, n_gallery)
    generate_seconds = time.perf_counter() - start
    print(f"generated in {generate_seconds:.1f} s, peak RSS so far {_peak_rss_mib():.0f} MiB", flush=True)

    last_report = [0.0]

    def progress(done: int, total: int) -> None:
        elapsed = time.perf_counter() - start
        if elapsed - last_report[0] >= 10 or done == total:
            last_report[0] = elapsed
            print(f"  {done}/{total} queries  {elapsed:.1f} s  peak RSS {_peak_rss_mib():.0f} MiB",
                  flush=True)

    start, cpu_start = time.perf_counter(), _cpu_seconds()
    metrics = evaluate_embeddings(query_emb, gallery_emb, query_labels, gallery_labels,
                                  "reference", chunk_size=args.chunk_size,
                                  num_threads=args.threads, progress=progress)
    seconds, cpu_seconds = time.perf_counter() - start, _cpu_seconds() - cpu_start
    result = {"seconds": round(seconds, 2), "peak_rss_mib": round(_peak_rss_mib(), 1),
              "cpu_seconds": round(cpu_seconds, 2),
              "generate_seconds": round(generate_seconds, 2), "queries": n_queries,
              "gallery": n_gallery, "dim": args.dim, "classes": CLASSES, "threads": args.threads,
              "chunk_size": args.chunk_size, "convention": "reference",
              **{key: round(value, 6) for key, value in metrics.items()}}
    print(json.dumps(result))
    return 0


def _limit_blas_threads(threads: int) -> list[int] | str:
    """Cap numpy's already-loaded BLAS at ``threads``; returns the thread counts now in force."""
    try:  # threadpoolctl comes with scikit-learn; without it use OPENBLAS_NUM_THREADS
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return "unchanged (no threadpoolctl; set OPENBLAS_NUM_THREADS)"
    threadpool_limits(threads, user_api="blas")
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


if __name__ == "__main__":
    sys.exit(main())
