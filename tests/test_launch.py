"""``mars-lite lab``: the JupyterLab command line it runs."""
from __future__ import annotations

import os

from mars_lite.cli import lab as launch


def test_lab_command_opens_the_first_notebook_on_loopback():
    cmd = launch.lab_command(launch.FIRST_NOTEBOOK, 8899, open_browser=False)
    assert cmd[1:3] == ["-m", "jupyterlab"]
    assert "--ServerApp.ip=127.0.0.1" in cmd and "--ServerApp.port=8899" in cmd and "--no-browser" in cmd
    assert cmd[-1].endswith("notebooks/00_setup_and_tour.ipynb")
    assert os.path.isfile(cmd[-1])
    assert ("--allow-root" in cmd) == (os.geteuid() == 0)


def test_missing_notebook_is_a_clear_error(capsys):
    from mars_lite.cli import main
    assert main(["lab", "--notebook", "99_nothing.ipynb", "--no-browser"]) == 2
    assert "99_nothing.ipynb not found" in capsys.readouterr().err
