"""``mars-lite index build``: embed a gallery's photos and save exact + approximate search
(``mars_lite.search.index``)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..data.folder import is_unlabelled
from ..method.loading import open_model
from ..search.index import GALLERY_KIND, gallery_dataset, photo_index_from_items, sketch_queries
from ..search.index_files import check_destination
from ..settings import embeddings_cache_dir
from .options import add_data_argument, add_model_arguments, add_on_error_argument, demo_model_said


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse names the flag in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def configure_cli(parser: argparse.ArgumentParser) -> None:
    """Options of ``mars-lite index build``."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    build = actions.add_parser("build", help="embed a gallery's photos and save a searchable index",
                               description="Embed the photos of a gallery (through the embedding cache), "
                               "build exact + approximate search and save them to --out. --data may also be a "
                               "folder of your own photos: <data>/<class>/<image>, or image files without class "
                               "folders (searchable, unlabelled). Without --model/--checkpoint the model is the "
                               "demo's (what 'mars-lite demo' and 'mars-lite query' use).")
    add_model_arguments(build)  # no --model/--checkpoint: the demo's model, so `mars-lite demo --index` fits
    add_data_argument(build, default="mini_sbir")
    add_on_error_argument(build)
    build.add_argument("--benchmark", choices=("sketchy", "tuberlin", "quickdraw"),
                       help="read --data as this benchmark's layout")
    build.add_argument("--split", help="keep only this zero-shot split's unseen classes (e.g. sketchy_split2)")
    build.add_argument("--out", type=Path, required=True, help="folder to write the index into")
    build.add_argument("--approximate", choices=("auto", "ivf", "hnsw", "none"), default="auto",
                       help="faiss index to add (auto: ivf from 50,000 photos, else hnsw)")
    build.add_argument("--nlist", type=positive_int, help="IVF cells (default ~4 sqrt(N))")
    build.add_argument("--nprobe", type=positive_int, help="IVF cells visited per query")
    build.add_argument("--k", type=positive_int, default=10, help="k of the printed recall@k (default: %(default)s)")
    build.add_argument("--cache", help="embedding cache folder ('none' to skip; default: <artifacts>/embeddings)")
    build.set_defaults(func=_run_build)
    parser.set_defaults(func=lambda _args: (parser.print_help(file=sys.stderr), 2)[1])


def _model(args: argparse.Namespace):
    """The model the options name, else the demo's (``mars-lite demo`` and ``query`` use the same one, so
    an index built without options is the one the demo can load), said aloud."""
    if args.model or args.checkpoint:
        return open_model(args.model, pretrained=args.pretrained, checkpoint=args.checkpoint, device=args.device,
                          seed=args.seed)
    model, info = demo_model_said(args)
    return (model.to(args.device) if args.device else model), info


def _run_build(args: argparse.Namespace) -> int:
    check_destination(args.out)  # a bad --out fails now, not after the embedding work
    start = time.perf_counter()
    model, info = _model(args)
    dataset = gallery_dataset(args.data, args.benchmark, args.split, args.on_error)
    cache = None if args.cache == "none" else (args.cache or embeddings_cache_dir())
    index = photo_index_from_items(model, dataset, cache, progress=True,
                                   meta={"data": str(args.data), "benchmark": args.benchmark, "split": args.split,
                                         "checkpoint": info.get("checkpoint") and str(info["checkpoint"])})
    what = "unlabelled (no class folders)" if is_unlabelled(dataset) else f"of {len(set(index.labels))} classes"
    print(f"embedded {len(index)} photos {what} in {time.perf_counter() - start:.1f} s")
    method = args.approximate
    if method == "auto":
        method = "ivf" if len(index) >= 50_000 else "hnsw"
    if method != "none":
        t0 = time.perf_counter()
        options = {k: v for k, v in (("nlist", args.nlist), ("nprobe", args.nprobe)) if v and method == "ivf"}
        index.build_approximate(method, **options)
        print(f"approximate index ({method}) built in {time.perf_counter() - t0:.1f} s")
        sketches = dataset.select(modality="sketch")
        if len(sketches):
            probes, what = sketch_queries(model, sketches, cache_dir=cache), "sketches"
        else:  # no sketches in the folder: the photos themselves probe the index
            step = max(1, len(index) // 200)
            probes, what = {kind: index.matrix(kind)[::step][:200] for kind in GALLERY_KIND}, "gallery photos"
        recall = {}
        for kind, queries in probes.items():
            recall[kind] = index.approximate_recall(queries, kind, k=args.k)
            print(f"recall@{args.k} of {method} vs exact search, {kind} queries ({len(queries)} {what}): "
                  f"{recall[kind]:.4f}")
        index.meta["approximate"]["recall_at_k"] = {"k": args.k, **recall}
    index.save(args.out)
    print(f"saved {index!r} to {args.out}")
    return 0
