"""The install files: README commands == CI, environment.yml parses and its pip part resolves."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mars_lite.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"^(bash \.ci/setup(?: --browser)? && .+)$", readme, flags=re.M)
    assert len(commands) == 2, "the README's first screen gives two commands"
    assert commands[1] in ci.splitlines(), "CI must run the README's test command verbatim"
    assert "mars-lite lab" in commands[0]
    assert "--browser" not in commands[0], "setting up the kit needs no root and no browser"
    setup = (ROOT / ".ci" / "setup").read_text()
    assert setup.index('"${1:-}" = "--browser"') < setup.index("apt-get update"), "apt-get only for --browser"
    assert "--nbval-lax" in commands[1], "the test command validates every notebook"


def test_requirements_pin_torch_with_torchvision():
    pins = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    for name in ("open_clip_torch", "safetensors", "faiss-cpu", "nbval", "ipycanvas", "umap-learn", "plotly"):
        assert name in pins, name


def test_environment_yml_parses():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "mars-lite" and "conda-forge" in env["channels"]
    pip_part = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    assert "-r requirements.txt" in pip_part and any(p.startswith("-e .") for p in pip_part)


@pytest.mark.slow
def test_environment_pip_part_resolves(tmp_path):
    """pip --dry-run resolves the pip section against the package index (PyPI is reachable in CI)."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_part = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    args = [arg for item in pip_part for arg in item.split(maxsplit=1)]
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", *args],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]


def test_cli_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("lab", "data"):
        assert f"  {command}" in out
    assert main(["no-such-command"]) == 2
