"""``mars-lite demo``: presenter mode, the live sketch query full screen in the browser (Voilà).

The options are checked here first (``check_demo_options``), then become ``MARS_LITE_DEMO_*``
variables of the Voilà kernel (``mars_lite.ui.demo``). Voilà runs as a child that stops with the
command (SIGTERM/SIGINT are forwarded, ``mars_lite.cli.serve``).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from .. import settings
from ..ui.demo import (DEFAULT_CHECKPOINT, DEFAULT_MODEL, ENV_PREFIX, NO_CHECKPOINT, DemoConfig, demo_backbone,
                       voila_command)
from .checks import absolute, check_checkpoint, check_gallery, check_weights
from .options import OptionError, add_data_argument, add_on_error_argument
from .serve import run_server


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
    add_on_error_argument(parser)
    parser.add_argument("--benchmark", choices=("sketchy", "tuberlin", "quickdraw"),
                        help="read --gallery as this benchmark")
    parser.add_argument("--split", help="show only this split's unseen classes (e.g. sketchy_split2)")
    parser.add_argument("--index", type=Path, help="a saved gallery index (mars-lite index build) to search")
    parser.add_argument("--k", type=int, default=10, help="results shown (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8866, help="Voilà port (default: %(default)s)")
    parser.add_argument("--open", action="store_true", help="open the browser (default: only print the address)")
    parser.set_defaults(func=_run)


def check_demo_options(args: argparse.Namespace) -> DemoConfig:
    """The demo's config from its options, every one checked here, in this process, before Voilà
    starts (a bad one is one line, not a traceback in the browser), with paths made absolute
    (the Voilà kernel runs from another working directory)."""
    checkpoint, pretrained = args.checkpoint, args.pretrained
    if checkpoint not in (DEFAULT_CHECKPOINT, NO_CHECKPOINT):
        checkpoint = check_checkpoint(checkpoint)  # it records its backbone: --model is ignored
        if pretrained not in ("default", None) and Path(pretrained).expanduser().exists():
            pretrained = absolute(pretrained)
    else:
        config = DemoConfig(model=args.model, pretrained=args.pretrained)
        backbone = demo_backbone(config)  # "auto" -> the backbone the kernel will choose
        checked = check_weights(backbone.model, backbone.pretrained)
        if config.pretrained not in ("default", None) and checked != backbone.pretrained:
            pretrained = checked  # a local weight file, now absolute
    index = None
    if args.index:
        index = absolute(args.index)
        if not (Path(index) / "index.json").is_file():
            raise OptionError(f"--index {index} is not a gallery index (no index.json); build one with "
                              "'mars-lite index build'")
    gallery = args.gallery if index else check_gallery(args.gallery, args.benchmark, args.split)
    if index and args.gallery not in (None, "mini_sbir"):
        gallery = absolute(args.gallery)
    return DemoConfig(model=args.model, pretrained=pretrained, checkpoint=checkpoint, seed=args.seed,
                      gallery=gallery, benchmark=args.benchmark, split=args.split, index=index, k=args.k,
                      on_error=args.on_error)


def _run(args: argparse.Namespace) -> int:
    config = check_demo_options(args)
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(config.to_env())
    root = settings.data_root(required=False)
    if root is not None:
        env["MARS_LITE_DATA"] = str(root)  # absolute: a relative $MARS_LITE_DATA means nothing to the kernel
    print(f"mars-lite demo: {config.model} on gallery {config.gallery_name()} at http://127.0.0.1:{args.port}/",
          flush=True)
    return run_server(voila_command(args.port, args.open), env=env)
