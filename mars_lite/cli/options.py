"""Options several commands share: which model (``--model``/``--pretrained``/``--checkpoint``),
which data (``--data``), what to do with unreadable images (``--on-error``), and the one parser of
weight sources (``mars_lite.method.loading``)."""
from __future__ import annotations

import argparse

from ..errors import MarsLiteError

# as mars_lite.data.scanning.ON_ERROR_CHOICES (not imported: `--help` must not pay for the data layer)
ON_ERROR_CHOICES = ("raise", "skip")
ON_ERROR_HELP = ("unreadable (corrupt, truncated) image files in the data: 'raise' stops with the list of "
                 "them (default), 'skip' leaves them out with a warning that names them")


class OptionError(MarsLiteError, ValueError):
    """A command-line option names something that cannot be used (the message says which and why)."""

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


def add_on_error_argument(parser: argparse.ArgumentParser) -> None:
    """``--on-error raise|skip`` for commands that read image folders; pass ``args.on_error`` on as
    the ``on_error=`` of ``open_dataset``/``folder_dataset``/``load_eval_data``/``embed_dataset``."""
    parser.add_argument("--on-error", choices=ON_ERROR_CHOICES, default="raise", help=ON_ERROR_HELP)


def model_choice(args: argparse.Namespace, command: str) -> str:
    """The model source the options name: the checkpoint, else the config name (clear error when none)."""
    if args.checkpoint:
        return args.checkpoint
    if args.model:
        return args.model
    # main prints "mars-lite COMMAND: error: ..." already; ``command`` stays for callers that name it
    raise OptionError("give --checkpoint CKPT or --model tiny|mobilenet-minilm|ViT-B-32")


def demo_model_said(args: argparse.Namespace):
    """``(model, info)`` of the demo (``mars_lite.ui.demo.demo_model``: the chosen backbone and its
    checkpoint), for commands run without ``--model``/``--checkpoint``; prints which model it is."""
    from ..ui.demo import DemoConfig, demo_model, describe

    model, info = demo_model(DemoConfig(pretrained=args.pretrained, seed=args.seed))
    print(describe(info))
    return model, info
