"""The server commands (``mars-lite demo``, ``mars-lite lab``): options checked before the server
starts, paths handed on absolute, and the server child stopped with the command."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from mars_lite.cli import demo as demo_cli
from mars_lite.cli import lab as lab_cli
from mars_lite.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def no_server(monkeypatch):
    """Replace the server start: records the command and environment instead of running them."""
    calls = []

    def fake(cmd, env=None, **_):
        calls.append({"cmd": cmd, "env": env})
        return 0

    monkeypatch.setattr(demo_cli, "run_server", fake)
    monkeypatch.setattr(lab_cli, "run_server", fake)
    return calls


def _one_error_line(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def test_demo_missing_checkpoint_is_one_line_before_any_server(no_server, tmp_path, capsys):
    missing = tmp_path / "gone.safetensors"
    assert main(["demo", "--checkpoint", str(missing)]) == 2
    _one_error_line(capsys, "mars-lite demo: error:", str(missing), "not found")
    (tmp_path / "junk.safetensors").write_text("not a checkpoint")
    assert main(["demo", "--checkpoint", str(tmp_path / "junk.safetensors")]) == 2
    _one_error_line(capsys, "junk.safetensors", "not a readable safetensors")
    assert no_server == []


@pytest.mark.parametrize("argv, needle", [
    (["--model", "no-such-model"], "unknown model"),
    (["--model", "tiny", "--pretrained", "nowhere/weights.bin"], "weights.bin"),
    (["--model", "tiny", "--pretrained", "none", "--gallery", "no/such/folder"], "no/such/folder"),
    (["--model", "tiny", "--pretrained", "none", "--split", "no_such_split"], "no_such_split"),
])
def test_demo_bad_options_are_one_line_before_any_server(no_server, capsys, argv, needle):
    assert main(["demo", *argv]) == 2
    _one_error_line(capsys, needle)
    assert no_server == []


def test_demo_hands_the_server_absolute_paths(no_server, tmp_path, monkeypatch, mini_sbir):
    from mars_lite import create_model
    from mars_lite.method.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model, _ = create_model("tiny")
    save_checkpoint(model, tmp_path / "tiny.safetensors", classes_seen=["cat"], backbone="full")
    (tmp_path / "gallery").symlink_to(mini_sbir)
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--checkpoint", "tiny.safetensors", "--gallery", "gallery"]) == 0
    env = no_server[0]["env"]
    assert env["MARS_LITE_DEMO_CHECKPOINT"] == str((tmp_path / "tiny.safetensors").resolve())
    assert Path(env["MARS_LITE_DEMO_GALLERY"]).is_absolute() and Path(env["MARS_LITE_DEMO_GALLERY"]).is_dir()
    assert Path(env["MARS_LITE_DATA"]).is_absolute()


def test_lab_bad_options_are_one_line_before_any_server(no_server, capsys, monkeypatch):
    assert main(["lab", "--model", "no-such-model", "--no-browser"]) == 2
    _one_error_line(capsys, "unknown model")
    monkeypatch.setenv("MARS_LITE_FAST", "0")  # full mode needs a benchmark the built-in data lacks
    assert main(["lab", "--full", "--no-browser"]) == 2
    _one_error_line(capsys, "mars-lite lab: error:", "benchmark")
    assert no_server == []


def test_lab_passes_its_backbone_and_data_to_the_kernels(no_server, tmp_path, monkeypatch, capsys):
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert main(["lab", "--model", "tiny", "--pretrained", "w.bin", "--no-browser"]) == 0
    env = no_server[0]["env"]
    assert env["MARS_LITE_MODEL"] == "tiny" and env["MARS_LITE_WEIGHTS"] == str(weights.resolve())
    assert env["MARS_LITE_FAST"] == "1" and Path(env["MARS_LITE_DATA"]).is_absolute()
    assert "tiny" in capsys.readouterr().out


# --------------------------------------------------------------------- stopping the server child
# The server command is replaced by a child that starts a grandchild (as Voilà and JupyterLab
# start kernels), writes both pids, and sleeps; nothing else about the command changes.
_LAUNCHER = textwrap.dedent("""
    import sys
    from mars_lite.cli import demo, lab, main
    pidfile = sys.argv[1]
    body = ("import os, subprocess, sys, time; "
            "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
            f"open({pidfile!r} + '.tmp', 'w').write(f'{{os.getpid()}} {{g.pid}}'); "
            f"os.replace({pidfile!r} + '.tmp', {pidfile!r}); time.sleep(120)")
    sleeper = [sys.executable, "-c", body]
    demo.voila_command = lambda port, open_browser: sleeper
    lab.lab_command = lambda notebook, port, open_browser: sleeper
    sys.exit(main(sys.argv[2:]))
""")


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state != "Z"


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups are POSIX")
@pytest.mark.parametrize("command, signum", [
    (["demo", "--model", "tiny", "--pretrained", "none", "--checkpoint", "none"], signal.SIGTERM),
    (["lab", "--no-browser"], signal.SIGTERM),
    (["demo", "--model", "tiny", "--pretrained", "none", "--checkpoint", "none"], signal.SIGINT),
])
def test_the_server_child_stops_with_the_command(tmp_path, command, signum):
    pidfile = tmp_path / "pids"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    parent = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(pidfile), *command], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not pidfile.exists():
            assert parent.poll() is None, parent.communicate()
            assert time.monotonic() < deadline, "the server child never started"
            time.sleep(0.1)
        pids = [int(p) for p in pidfile.read_text().split()]
        assert all(_alive(p) for p in pids)
        parent.send_signal(signum)
        out, err = parent.communicate(timeout=60)
        assert parent.returncode == 128 + signum, (out, err)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in pids if _alive(p)], "server child or its kernel outlived the command"
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in pids:  # never leave sleepers behind, even when the test fails
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


# ------------------------------------------------------------------------------ mars-lite query
@pytest.mark.parametrize("content, needle", [(None, "file not found"), (b"hello", "not an image")])
def test_query_bad_sketch_file_is_one_line_naming_it(tmp_path, capsys, content, needle):
    sketch = tmp_path / "my sketch.png"
    if content is not None:
        sketch.write_bytes(content)
    assert main(["query", str(sketch), "--model", "tiny", "--pretrained", "none", "--checkpoint", "none"]) == 2
    _one_error_line(capsys, "mars-lite query: error:", str(sketch), needle)


def test_query_on_error_reaches_the_gallery_reader(tmp_path, mini_sbir, capsys, monkeypatch):
    import json
    import shutil
    monkeypatch.setenv("MARS_LITE_HOME", str(tmp_path / "home"))  # the embedding cache of this test only
    gallery = tmp_path / "gallery"
    for label in ("cat", "fish"):
        (gallery / "photo" / label).mkdir(parents=True)
        for f in sorted((mini_sbir / "photo" / label).iterdir())[:3]:
            shutil.copyfile(f, gallery / "photo" / label / f.name)
    (gallery / "photo" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    sketch = sorted((mini_sbir / "sketch" / "cat").iterdir())[0]
    args = ["query", str(sketch), "--json", "--k", "6", "--model", "tiny", "--pretrained", "none",
            "--checkpoint", "none", "--gallery", str(gallery)]
    assert main(args) == 2
    _one_error_line(capsys, "broken.jpg")
    with pytest.warns(UserWarning, match="broken.jpg"):
        assert main(args + ["--on-error", "skip"]) == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["results"]
    assert len(results) == 6 and not any("broken" in r["path"] for r in results)


def test_on_error_reaches_every_command_that_reads_image_folders():
    """train, index build, embed, evaluate, query and demo all take --on-error raise|skip."""
    from mars_lite.cli.main import build_parser

    commands = {"train": ["--config", "tiny", "--data", "mini_sbir", "--out", "x"],
                "index": ["build", "--out", "x"], "embed": ["--data", "mini_sbir", "--out", "x"],
                "evaluate": ["--data", "mini_sbir", "--out", "x"], "query": ["s.png"], "demo": []}
    for command, args in commands.items():
        parsed = build_parser(command).parse_args(args + ["--on-error", "skip"])
        assert parsed.on_error == "skip", command
        with pytest.raises(SystemExit):
            build_parser(command).parse_args(args + ["--on-error", "ignore"])


def test_train_on_error_skip_trains_past_a_corrupt_image(tmp_path, mini_sbir, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(mini_sbir, data)
    seen = json.loads((data / "split_zs.json").read_text())["seen"][0]
    broken = sorted((data / "sketch" / seen).iterdir())[0]
    broken.write_bytes(broken.read_bytes()[:40])  # a truncated PNG
    args = ["train", "--config", "tiny", "--data", str(data), "--epochs", "1", "--max-steps", "1", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 2
    assert broken.name in capsys.readouterr().err
    with pytest.warns(UserWarning, match=broken.name):
        assert main(args + ["--out", str(tmp_path / "b"), "--on-error", "skip"]) == 0
    assert (tmp_path / "b" / "last.safetensors").is_file()


def test_a_users_mistake_is_one_line_and_exit_2_unless_debugging(tmp_path, capsys, monkeypatch):
    """The one top-level handler: MarsLiteError / OSError -> one line on stderr, status 2;
    --debug (anywhere on the line) or MARS_LITE_DEBUG=1 lets the traceback through."""
    from mars_lite.errors import MarsLiteError

    missing = tmp_path / "missing.safetensors"
    args = ["evaluate", "--checkpoint", str(missing), "--data", "mini_sbir", "--out", str(tmp_path / "o")]
    monkeypatch.delenv("MARS_LITE_DEBUG", raising=False)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err and "Traceback" not in err
    assert err.startswith("mars-lite evaluate: error: ")
    with pytest.raises((MarsLiteError, OSError)):
        main(args + ["--debug"])
    monkeypatch.setenv("MARS_LITE_DEBUG", "1")
    with pytest.raises((MarsLiteError, OSError)):
        main(args)
    # a bug (not a user's mistake) is never swallowed
    monkeypatch.delenv("MARS_LITE_DEBUG")
    import importlib
    main_module = importlib.import_module("mars_lite.cli.main")
    monkeypatch.setattr(main_module, "_run", lambda argv: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["data", "list"])
