"""``mars-lite demo``: presenter mode, the live sketch query full screen in the browser (Voilà).

The options become ``MARS_LITE_DEMO_*`` variables of the Voilà kernel (``mars_lite.ui.demo``).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from .. import settings
from ..ui.demo import DEFAULT_CHECKPOINT, DEFAULT_MODEL, ENV_PREFIX, NO_CHECKPOINT, DemoConfig, voila_command
from .options import add_data_argument


def configure_cli(parser: argparse.ArgumentParser) -> None:
    """Options of ``mars-lite demo``."""
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model config (default: %(default)s, offline)")
    parser.add_argument("--pretrained", default="default",
                        help="backbone weights: open_clip tag, local file, 'none' or 'default' (the config's)")
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT,
                        help="a mars_lite checkpoint to query with; 'default' (the stand-in trained on mini_sbir's "
                             "seen classes, trained on first use) or 'none' (untrained modality vectors)")
    parser.add_argument("--seed", type=int, default=0, help="seed of random-init parameters")
    add_data_argument(parser, default="mini_sbir", flag="--gallery")
    parser.add_argument("--benchmark", choices=("sketchy", "tuberlin", "quickdraw"),
                        help="read --gallery as this benchmark")
    parser.add_argument("--split", help="show only this split's unseen classes (e.g. sketchy_split2)")
    parser.add_argument("--index", type=Path, help="a saved gallery index (mars-lite index build) to search")
    parser.add_argument("--k", type=int, default=10, help="results shown (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8866, help="Voilà port (default: %(default)s)")
    parser.add_argument("--open", action="store_true", help="open the browser (default: only print the address)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    checkpoint = args.checkpoint
    if checkpoint not in (DEFAULT_CHECKPOINT, NO_CHECKPOINT):
        checkpoint = str(Path(checkpoint).expanduser().resolve())  # the Voila kernel runs elsewhere
    config = DemoConfig(model=args.model, pretrained=args.pretrained, checkpoint=checkpoint, seed=args.seed,
                        gallery=args.gallery, benchmark=args.benchmark, split=args.split,
                        index=str(args.index) if args.index else None, k=args.k)
    if config.checkpoint not in (DEFAULT_CHECKPOINT, NO_CHECKPOINT) and not Path(config.checkpoint).is_file():
        print(f"mars-lite demo: checkpoint {config.checkpoint} not found", file=sys.stderr)
        return 2
    if config.index and not (Path(config.index) / "index.json").is_file():
        print(f"mars-lite demo: {config.index} is not a gallery index (build one with 'mars-lite index build')",
              file=sys.stderr)
        return 2
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(config.to_env())
    root = settings.data_root(required=False)
    if root is not None:
        env.setdefault("MARS_LITE_DATA", str(root))
    print(f"mars-lite demo: {config.model} on gallery {config.gallery_name()} at http://127.0.0.1:{args.port}/",
          flush=True)
    return subprocess.call(voila_command(args.port, args.open), env=env)
