"""``mars-lite evaluate``: ZS-SBIR metrics of a model or checkpoint on a split, as JSON + Markdown
(the protocol: ``mars_lite.eval.evaluation``)."""
from __future__ import annotations

import argparse

from ..data.splits import list_splits
from ..eval.evaluation import evaluate
from ..eval.metrics import CONVENTIONS
from ..eval.report import FAST_MODE_NOTE
from ..settings import embeddings_cache_dir
from .checks import check_output_dir
from .options import add_data_argument, add_model_arguments, add_on_error_argument, model_choice


def configure_cli(parser: argparse.ArgumentParser) -> None:
    """Options of ``mars-lite evaluate``."""
    add_model_arguments(parser)
    add_data_argument(parser, required=True)
    parser.add_argument("--split", default=None,
                        help=f"split name ({', '.join(list_splits())}) or a JSON file; default <data>/split_zs.json")
    parser.add_argument("--out", required=True, help="folder for the report (.json and .md)")
    parser.add_argument("--convention", choices=CONVENTIONS, default=None,
                        help="metric convention (default: the checkpoint's, else reference)")
    parser.add_argument("--generalized", action="store_true", help="generalized ZS-SBIR: add seen-class photos")
    parser.add_argument("--finegrained", action="store_true", help="also instance-level Acc@1/Acc@5 (Sketchy)")
    parser.add_argument("--classes", default=None, help="comma-separated classes to evaluate (default: unseen)")
    parser.add_argument("--seen-class-evaluation", action="store_true",
                        help="allow classes the checkpoint trained on (report marked as not zero-shot)")
    parser.add_argument("--fast-mode", action="store_true", help=f"mark tables '{FAST_MODE_NOTE}'")
    parser.add_argument("--cache-dir", default=None, help="embedding cache (default <artifacts>/embeddings)")
    parser.add_argument("--no-cache", action="store_true", help="compute embeddings without the cache")
    parser.add_argument("--batch-size", type=int, default=64)
    add_on_error_argument(parser)
    parser.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    source = model_choice(args, "mars-lite evaluate")
    out = check_output_dir(args.out)  # before the work: a report that cannot be written is an hour lost
    cache = None if args.no_cache else (args.cache_dir or embeddings_cache_dir())
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    report = evaluate(source, args.data, args.split,
                      convention=args.convention, generalized=args.generalized, finegrained=args.finegrained,
                      classes=classes, seen_class_evaluation=args.seen_class_evaluation, cache_dir=cache,
                      out_dir=out, fast_mode=args.fast_mode, pretrained=args.pretrained, device=args.device,
                      seed=args.seed, batch_size=args.batch_size, progress=True, on_error=args.on_error)
    print(report.to_markdown())
    print(f"wrote {report.files['json']} and {report.files['markdown']}")
    return 0
