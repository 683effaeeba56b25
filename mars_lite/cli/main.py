"""The ``mars-lite`` command line.

Each sub-command has one module in this package; it exposes ``configure_cli(parser)``, which adds
its options and sets ``parser.set_defaults(func=...)``, and only parses and calls the library.
Modules are imported only when their command runs, so ``mars-lite data list`` does not pay
for importing torch and open_clip.
"""
from __future__ import annotations

import argparse
import importlib
import sys

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
    lines += ["", "Run 'mars-lite COMMAND --help' for the options of a command."]
    return "\n".join(lines)


def build_parser(command: str) -> argparse.ArgumentParser:
    """Return the fully configured parser of one sub-command (imports its module)."""
    module_name, help_ = COMMANDS[command]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"mars-lite {command}", description=help_)
    module.configure_cli(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
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

