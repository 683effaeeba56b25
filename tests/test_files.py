"""Atomic file writes: the result appears whole, with a plain file's mode, and nothing is left behind."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from mars_lite.files import atomic_write, clean_stale_tmp


def test_atomic_write_gives_the_mode_of_a_plain_file(tmp_path):
    previous = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "sub" / "f.txt", lambda tmp: open(tmp, "w").write("x"))
    finally:
        os.umask(previous)
    assert path.read_text() == "x"
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_leaves_no_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.json"

    def crash(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, crash)
    assert not target.exists() and os.listdir(tmp_path) == []


def _orphan(folder, name: str, age_s: float):
    path = folder / name
    path.write_text("half a file")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_killed_writes_are_removed(tmp_path):
    hour = 3600
    dead = _orphan(tmp_path, f".out.json.p{_dead_pid()}.k3j4h5g6.tmp", hour)  # writer gone, old
    legacy = _orphan(tmp_path, ".out.json.ab12cd34.tmp", hour)  # name of older versions: by age
    live = _orphan(tmp_path, f".out.json.p{os.getpid()}.zz99yy88.tmp", hour)  # writer alive: kept
    fresh = _orphan(tmp_path, f".out.json.p{_dead_pid()}.fr35h000.tmp", 60)  # too young: kept
    other = _orphan(tmp_path, ".other.json.ab12cd34.tmp", hour)  # another file's: not touched here
    mine = _orphan(tmp_path, "notes.tmp", hour)  # not a temporary of the kit
    atomic_write(tmp_path / "out.json", lambda tmp: open(tmp, "w").write("{}"))
    assert not dead.exists() and not legacy.exists()
    assert live.exists() and fresh.exists() and other.exists() and mine.exists()
    assert (tmp_path / "out.json").read_text() == "{}"
    # the folder-wide helper takes the other file's orphan too, still sparing the live and young ones
    assert clean_stale_tmp(tmp_path) == [other]
    assert live.exists() and fresh.exists() and mine.exists()
    assert clean_stale_tmp(tmp_path, max_age=1) == [fresh]
