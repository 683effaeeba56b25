"""``mars-lite query SKETCH [SKETCH ...]``: the demo's model and gallery, for scripts.

Each sketch file (any size or ink polarity; it is normalised to the training look) is answered
with the top ``--k`` photos. ``--json`` prints one line per sketch:
``{"query": path, "results": [{"label": ..., "path": ..., "score": ...}, ...]}``.

Every sketch file and the gallery folder are checked before the model loads: a file that is
missing or not an image is one line naming it; ``--on-error skip`` leaves unreadable gallery
photos out instead of stopping.
"""
from __future__ import annotations

import argparse
import json

from ..data import load_image, resolve_data
from ..method.modalities import RETRIEVAL_KINDS
from ..ui.demo import DemoConfig, demo_searcher
from .options import add_data_argument, add_on_error_argument


def configure_cli(parser: argparse.ArgumentParser) -> None:
    """Options of ``mars-lite query``."""
    defaults = DemoConfig()
    parser.add_argument("sketches", nargs="+", metavar="SKETCH", help="sketch image files")
    parser.add_argument("--k", type=int, default=10, help="results per sketch (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="one JSON line per sketch")
    parser.add_argument("--kind", choices=RETRIEVAL_KINDS, default=defaults.kind,
                        help="query embedding (default: %(default)s)")
    parser.add_argument("--model", default=defaults.model, help="model config (default: the demo's, %(default)s)")
    parser.add_argument("--pretrained", default=defaults.pretrained, help="backbone weights (default: the config's)")
    parser.add_argument("--checkpoint", default=defaults.checkpoint,
                        help="a mars_lite checkpoint; 'default' (the demo's) or 'none' (default: %(default)s)")
    add_data_argument(parser, default="mini_sbir", flag="--gallery")
    add_on_error_argument(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    config = DemoConfig(model=args.model, pretrained=args.pretrained, gallery=args.gallery, k=args.k,
                        checkpoint=args.checkpoint, on_error=args.on_error)
    images = [(path, load_image(path)) for path in args.sketches]  # ImageLoadError names the file
    resolve_data(config.gallery)  # a missing gallery folder is named before the model loads
    searcher, info = demo_searcher(config)
    if not args.json:
        print(f"model {info['name']} ({info['pretrained'] or 'random init'}), checkpoint {info['checkpoint']}, "
              f"gallery {config.gallery_name()}")
    for path, image in images:
        result = searcher.query_image(image, kind=args.kind)
        hits = [{"label": label, "path": str(p), "score": round(score, 6)}
                for label, p, score in zip(result.labels, result.paths, result.scores)]
        if args.json:
            print(json.dumps({"query": str(path), "results": hits}))
        else:
            print(f"{path}: " + ", ".join(f"{h['label']} ({h['score']:.3f})" for h in hits))
    return 0

