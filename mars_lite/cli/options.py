"""Options several commands share: which model (``--model``/``--pretrained``/``--checkpoint``),
which data (``--data``), and the one parser of weight sources (``mars_lite.method.loading``)."""
from __future__ import annotations

import argparse

DATA_HELP = ("dataset folder (<data>/<sketch|photo>/<class>/<image>) or benchmark root, or 'mini_sbir' "
             "(the built-in set; $MARS_LITE_DATA/mini_sbir when present)")
PRETRAINED_HELP = ("backbone weights: 'default' (the config's own), an open_clip tag (openai), a local "
                   "weight file, or 'none' (random init); with --checkpoint, overrides the weights it records")


def add_model_arguments(parser: argparse.ArgumentParser, default_model: str | None = None) -> None:
    """--model / --pretrained / --checkpoint / --device / --seed."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=default_model,
                       help="model config: tiny, mobilenet-minilm, ViT-B-32, ... (ignored with --checkpoint)"
                            + (" (default: %(default)s)" if default_model else ""))
    group.add_argument("--pretrained", default="default", help=PRETRAINED_HELP)
    group.add_argument("--checkpoint", default=None, help="a mars_lite checkpoint (.safetensors)")
    group.add_argument("--device", default=None, help="torch device (default cpu)")
    group.add_argument("--seed", type=int, default=0,
                       help="seed of randomly initialised weights, so a random-init model (and its cache "
                            "entry) is the same on every run (default %(default)s)")


def add_data_argument(parser: argparse.ArgumentParser, *, required: bool = False, default: str | None = None,
                      flag: str = "--data") -> None:
    """``--data`` (or ``--gallery``): a folder or a built-in name."""
    parser.add_argument(flag, required=required, default=default,
                        help=DATA_HELP + (" (default: %(default)s)" if default else ""))


def model_choice(args: argparse.Namespace, command: str) -> str:
    """The model source the options name: the checkpoint, else the config name (clear error when none)."""
    if args.checkpoint:
        return args.checkpoint
    if args.model:
        return args.model
    raise SystemExit(f"{command}: give --checkpoint CKPT or --model tiny|mobilenet-minilm|ViT-B-32")
