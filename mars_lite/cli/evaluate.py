"""``mars-lite evaluate``: ZS-SBIR metrics of a model or checkpoint on a split, as JSON + Markdown
(the protocol: ``mars_lite.eval.evaluation``); or, with ``--photos PHOTOS --sketches SKETCHES``,
per-class precision of a user's own sketches on a user's own photos (``mars_lite.eval.user_folder``;
without ``--model``/``--checkpoint`` the model is the demo's, as ``mars-lite query`` uses)."""
from __future__ import annotations

import argparse

from ..data.splits import list_splits
from ..eval.evaluation import evaluate
from ..eval.metrics import CONVENTIONS
from ..eval.report import FAST_MODE_NOTE
from ..method.modalities import RETRIEVAL_KINDS
from ..settings import embeddings_cache_dir
from .checks import check_output_dir
from .options import (OptionError, add_data_argument, add_model_arguments, add_on_error_argument,
                      demo_model_said, model_choice)

# options of the split protocol that mean nothing for a user's folders
SPLIT_ONLY = ("split", "generalized", "finegrained", "seen_class_evaluation", "fast_mode")


def configure_cli(parser: argparse.ArgumentParser) -> None:
    """Options of ``mars-lite evaluate``."""
    add_model_arguments(parser)
    add_data_argument(parser)
    user = parser.add_argument_group("your own folders (instead of --data)")
    user.add_argument("--photos", default=None,
                      help="your photos, <photos>/<class>/<image> (the gallery; every photo is searched)")
    user.add_argument("--sketches", default=None,
                      help="your sketches, <sketches>/<class>/<image>, classes named as the photo folders")
    user.add_argument("--kind", choices=RETRIEVAL_KINDS, default="original",
                      help="query embedding of the per-class table (default: %(default)s, as mars-lite query)")
    parser.add_argument("--split", default=None,
                        help=f"split name ({', '.join(list_splits())}) or a JSON file; default <data>/split_zs.json")
    parser.add_argument("--out", required=True, help="folder for the report (.json and .md)")
    parser.add_argument("--convention", choices=CONVENTIONS, default=None,
                        help="metric convention (default: the checkpoint's, else reference)")
    parser.add_argument("--generalized", action="store_true", help="generalized ZS-SBIR: add seen-class photos")
    parser.add_argument("--finegrained", action="store_true", help="also instance-level Acc@1/Acc@5 (Sketchy)")
    parser.add_argument("--classes", default=None,
                        help="comma-separated classes to evaluate (default: unseen; with --sketches: all of them)")
    parser.add_argument("--seen-class-evaluation", action="store_true",
                        help="allow classes the checkpoint trained on (report marked as not zero-shot)")
    parser.add_argument("--fast-mode", action="store_true", help=f"mark tables '{FAST_MODE_NOTE}'")
    parser.add_argument("--cache-dir", default=None, help="embedding cache (default <artifacts>/embeddings)")
    parser.add_argument("--no-cache", action="store_true", help="compute embeddings without the cache")
    parser.add_argument("--batch-size", type=int, default=64)
    add_on_error_argument(parser)
    parser.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    user = args.photos is not None or args.sketches is not None
    if user and args.data is not None:
        raise OptionError("give either --data DATA (a dataset with a split) or --photos PHOTOS --sketches SKETCHES")
    if not user and args.data is None:
        raise OptionError("give --data DATA (a dataset with a split), or --photos PHOTOS --sketches SKETCHES "
                          "for your own folders")
    if user and (args.photos is None or args.sketches is None):
        raise OptionError("--photos and --sketches go together: metrics need your photos (the gallery) and your "
                          "sketches of their classes (the queries); to search without measuring, use "
                          "'mars-lite query SKETCH --gallery PHOTOS'")
    source = None if user and not (args.checkpoint or args.model) else model_choice(args, "mars-lite evaluate")
    out = check_output_dir(args.out)  # before the work: a report that cannot be written is an hour lost
    cache = None if args.no_cache else (args.cache_dir or embeddings_cache_dir())
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    if user:
        return _run_user(args, source, out, cache, classes)
    report = evaluate(source, args.data, args.split,
                      convention=args.convention, generalized=args.generalized, finegrained=args.finegrained,
                      classes=classes, seen_class_evaluation=args.seen_class_evaluation, cache_dir=cache,
                      out_dir=out, fast_mode=args.fast_mode, pretrained=args.pretrained, device=args.device,
                      seed=args.seed, batch_size=args.batch_size, progress=True, on_error=args.on_error)
    print(report.to_markdown())
    print(f"wrote {report.files['json']} and {report.files['markdown']}")
    return 0


def _run_user(args: argparse.Namespace, source, out, cache, classes) -> int:
    """``--photos/--sketches``: per-class precision; the demo's model unless one is named."""
    from ..eval.user_folder import evaluate_user_folder, load_user_folders

    wrong = [f"--{name.replace('_', '-')}" for name in SPLIT_ONLY if getattr(args, name)]
    if wrong:
        raise OptionError(f"{', '.join(wrong)} belong to --data (a benchmark split); your own folders have no split")
    load_user_folders(args.photos, args.sketches, classes, args.on_error)  # a folder mistake before a model loads
    info = None
    if source is None:
        source, info = demo_model_said(args)
    report = evaluate_user_folder(source, args.photos, args.sketches, info=info, kind=args.kind, classes=classes,
                                  convention=args.convention, cache_dir=cache, out_dir=out,
                                  pretrained=args.pretrained, device=args.device, seed=args.seed,
                                  batch_size=args.batch_size, progress=True, on_error=args.on_error)
    print(report.to_markdown())
    print(f"wrote {report.files['json']} and {report.files['markdown']}")
    return 0
