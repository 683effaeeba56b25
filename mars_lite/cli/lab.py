"""``mars-lite lab``: open the study notebooks in JupyterLab on the embedded default.

Fast mode (a CPU-sized model and the built-in ``mini_sbir``) is on unless ``--full`` is given, so
the kit opens and runs offline on a laptop. It says which data and which model the notebooks use.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

from .. import settings

NOTEBOOK_DIR = settings.REPO_DIR / "notebooks"
FIRST_NOTEBOOK = "00_setup_and_tour.ipynb"


def lab_command(notebook: str, port: int, open_browser: bool) -> list[str]:
    """The ``jupyter lab`` command line that opens ``notebook`` from the notebooks folder."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--notebook-dir={NOTEBOOK_DIR}", f"--ServerApp.port={port}",
           "--ServerApp.ip=127.0.0.1"]
    if not open_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI machines often run as root
    return cmd + [str(NOTEBOOK_DIR / notebook)]


def describe_study(fast: bool) -> str:
    """Which model and data the notebooks of this mode use, in one line."""
    from ..data.locations import MINI_SBIR, resolve_data
    from ..study.setup import DEFAULT_FULL_SPLIT, FAST_MODEL, FULL_MODEL, FULL_PRETRAINED

    if fast:
        data = resolve_data(MINI_SBIR)
        where = "built into the package" if data.is_relative_to(settings.BUILTIN_DATA_DIR) else "from MARS_LITE_DATA"
        return f"model {FAST_MODEL} (the offline stand-in, shipped weights); data: mini_sbir {where} ({data})"
    root = settings.data_root(required=False)
    return (f"model {FULL_MODEL} ({FULL_PRETRAINED} weights); data: split {DEFAULT_FULL_SPLIT} under "
            f"{root or '<MARS_LITE_DATA is not a folder>'}")


def run_lab(args: argparse.Namespace) -> int:
    if not (NOTEBOOK_DIR / args.notebook).is_file():
        print(f"mars-lite lab: notebook {NOTEBOOK_DIR / args.notebook} not found; the notebooks ship "
              "with a source checkout of mars_lite", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env.setdefault("MARS_LITE_FAST", "0" if args.full else "1")
    env.setdefault("HF_HUB_OFFLINE", "1" if not args.full else env.get("HF_HUB_OFFLINE", "0"))
    fast = env["MARS_LITE_FAST"] not in ("0", "")
    print(f"mars-lite lab: {'fast' if fast else 'full'} mode; {describe_study(fast)}", flush=True)
    return subprocess.call(lab_command(args.notebook, args.port, not args.no_browser), env=env)


def configure_cli(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--notebook", default=FIRST_NOTEBOOK, help="notebook to open (default: %(default)s)")
    parser.add_argument("--full", action="store_true",
                        help="full mode: ViT-B-32 with OpenAI weights and a real benchmark (GPU advised)")
    parser.add_argument("--port", type=int, default=8888, help="JupyterLab port (default: %(default)s)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser window")
    parser.set_defaults(func=run_lab)
