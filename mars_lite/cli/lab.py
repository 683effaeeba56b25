"""``mars-lite lab``: open the study notebooks in JupyterLab on the embedded default.

Fast mode (a CPU-sized run on the built-in ``mini_sbir``) is on unless ``--full`` is given, so
the kit opens and runs offline on a laptop. The backbone is ``choose_backbone``'s (``--model``/
``--pretrained`` fix it). Everything the notebooks will need (the backbone's weights, full mode's
benchmark) is checked here, before JupyterLab starts, and the command says which data and which
model the notebooks use. JupyterLab runs as a child that stops with the command (SIGTERM/SIGINT
are forwarded to it and its kernels, ``mars_lite.cli.serve``).
"""
from __future__ import annotations

import argparse
import os
import sys

from .. import settings
from .checks import check_weights
from .options import OptionError
from .serve import run_server

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


def check_study(fast: bool, model: str | None = None, weights: str | None = None) -> tuple[dict, str]:
    """Check what the notebooks of this mode will use, in this process; returns the environment
    variables that fix it for the kernels (absolute paths) and one line saying what it is.

    Raises ``ConfigError``/``OptionError`` (model, weights), ``FileNotFoundError`` (full mode's
    benchmark or ``$MARS_LITE_DATA`` missing), ``WeightsUnavailableError`` (weights not here)."""
    from ..method.weights import ENV_MODEL, ENV_WEIGHTS
    from ..study.setup import load_study_setup

    setup = load_study_setup(fast=fast, model=model, weights=weights)
    backbone = setup.backbone
    checked = check_weights(backbone.model, backbone.pretrained)
    env = {}
    if model:
        env[ENV_MODEL] = model
    if weights:
        env[ENV_WEIGHTS] = checked if checked not in (None, "default") else weights
    data = "built into the package" if setup.data.is_relative_to(settings.BUILTIN_DATA_DIR) else "from MARS_LITE_DATA"
    line = f"{backbone.line()} Data: split {setup.split.name} at {setup.data} ({data})."
    return env, line


def run_lab(args: argparse.Namespace) -> int:
    if not (NOTEBOOK_DIR / args.notebook).is_file():
        raise OptionError(f"notebook {NOTEBOOK_DIR / args.notebook} not found; the notebooks ship "
                          "with a source checkout of mars_lite")
    env = dict(os.environ)
    env.setdefault("MARS_LITE_FAST", "0" if args.full else "1")
    env.setdefault("HF_HUB_OFFLINE", "1" if not args.full else env.get("HF_HUB_OFFLINE", "0"))
    fast = env["MARS_LITE_FAST"] not in ("0", "")
    offline = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = env["HF_HUB_OFFLINE"]  # check the weights as the kernels will see them
    try:
        fixed, line = check_study(fast, args.model, args.pretrained)
    finally:
        if offline is None:
            os.environ.pop("HF_HUB_OFFLINE")
        else:
            os.environ["HF_HUB_OFFLINE"] = offline
    env.update(fixed)
    root = settings.data_root(required=not fast)
    if root is not None:
        env["MARS_LITE_DATA"] = str(root)  # absolute: the kernels run from the notebooks folder
    print(f"mars-lite lab: {'fast' if fast else 'full'} mode; {line}", flush=True)
    return run_server(lab_command(args.notebook, args.port, not args.no_browser), env=env)


def configure_cli(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--notebook", default=FIRST_NOTEBOOK, help="notebook to open (default: %(default)s)")
    parser.add_argument("--full", action="store_true",
                        help="full mode: ViT-B-32 with OpenAI weights and a real benchmark (GPU advised)")
    parser.add_argument("--model", default=None,
                        help="backbone of the notebooks (sets MARS_LITE_MODEL): mobilenet-minilm, ViT-B-32, ... "
                             "(default: ViT-B-32 when its weights are cached, else the offline stand-in)")
    parser.add_argument("--pretrained", default=None,
                        help="its weights (sets MARS_LITE_WEIGHTS): an open_clip tag, a local weight file, or 'none'")
    parser.add_argument("--port", type=int, default=8888, help="JupyterLab port (default: %(default)s)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser window")
    parser.set_defaults(func=run_lab)
