"""``mars-lite embed``: fill the embedding cache for a dataset (or a split's parts) ahead of time
(the parts: ``mars_lite.eval.parts``)."""
from __future__ import annotations

import argparse

from ..eval.parts import DEFAULT_PARTS, PARTS, embed_dataset
from .options import add_data_argument, add_model_arguments, add_on_error_argument, model_choice


def configure_cli(parser: argparse.ArgumentParser) -> None:
    """Options of ``mars-lite embed``."""
    add_model_arguments(parser)
    add_data_argument(parser, required=True)
    parser.add_argument("--split", default=None, help="split name or JSON file (default <data>/split_zs.json if any)")
    parser.add_argument("--parts", default=",".join(DEFAULT_PARTS),
                        help=f"comma-separated parts to embed, from {', '.join(PARTS)} (default %(default)s)")
    parser.add_argument("--out", required=True, help="embedding cache folder (entries go to <out>/<model>/<items>/)")
    parser.add_argument("--batch-size", type=int, default=64)
    add_on_error_argument(parser)
    parser.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    sets = embed_dataset(model_choice(args, "mars-lite embed"), args.data, args.out, args.split, parts=parts,
                         pretrained=args.pretrained, device=args.device, seed=args.seed,
                         batch_size=args.batch_size, progress=True, on_error=args.on_error)
    for name, es in sets.items():
        status = "reused (cache matches files and model)" if es.from_cache else "computed"
        print(f"{name}: {len(es)} images, {tuple(es.embeddings.shape)} -> {es.location} [{status}]")
    return 0
