"""The ``mars-lite`` command line.

Each sub-command has one module in this package; it exposes ``configure_cli(parser)``, which adds
its options and sets ``parser.set_defaults(func=...)``, and only parses and calls the library.
Modules are imported only when their command runs, so ``mars-lite data list`` does not pay
for importing torch and open_clip.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import MarsLiteError

# What a user's mistake can raise: the kit's own errors and the file system's (a missing file, a
# folder without permission). These print as one line and exit 2; anything else is a bug and keeps
# its traceback. ``--debug`` (or MARS_LITE_DEBUG=1) shows the traceback for these too.
USER_ERRORS = (MarsLiteError, OSError)
EXIT_USER_ERROR = 2

# command -> (module that owns it, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "lab": ("mars_lite.cli.lab", "open the study notebooks in JupyterLab (fast mode by default)"),
    "data": ("mars_lite.cli.data", "download, verify and list benchmark datasets"),
    "train": ("mars_lite.cli.train", "train on a split's seen classes (frozen, paper or layernorm backbone mode)"),
    "index": ("mars_lite.cli.index", "build a gallery index (exact + faiss approximate) for sketch queries"),
    "demo": ("mars_lite.cli.demo", "presenter mode: the live sketch query full screen in the browser (Voila)"),
    "query": ("mars_lite.cli.query", "answer sketch files with photos of the demo's gallery (--json for scripts)"),
    "embed": ("mars_lite.cli.embed", "compute (or reuse) cached image embeddings for a dataset or split"),
    "evaluate": ("mars_lite.cli.evaluate", "ZS-SBIR metrics of a model/checkpoint on a split, as JSON + Markdown"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: mars-lite COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'mars-lite COMMAND --help' for the options of a command.",
              "Add --debug (or set MARS_LITE_DEBUG=1) to see the traceback of an error."]
    return "\n".join(lines)


def build_parser(command: str) -> argparse.ArgumentParser:
    """Return the fully configured parser of one sub-command (imports its module)."""
    module_name, help_ = COMMANDS[command]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"mars-lite {command}", description=help_)
    module.configure_cli(parser)
    return parser


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, OSError) and error.filename and str(error.filename) not in text:
        text = f"{text}: {error.filename}"
    return text


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status.

    A user's mistake (see ``USER_ERRORS``) prints ``mars-lite COMMAND: error: <one line>`` and
    returns 2; ``--debug`` anywhere on the line, or ``MARS_LITE_DEBUG=1``, re-raises it instead.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("MARS_LITE_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    try:
        return _run(argv)
    except USER_ERRORS as error:
        if debug:
            raise
        command = argv[0] if argv else ""
        print(f"mars-lite {command}: error: {_one_line(error)} (--debug shows the traceback)", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("mars-lite: interrupted", file=sys.stderr)
        return 130


def _run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    command = argv[0]
    if command not in COMMANDS:
        print(f"mars-lite: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    parser = build_parser(command)
    args = parser.parse_args(argv[1:])
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    status = args.func(args)
    return int(status or 0)

