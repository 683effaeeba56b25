"""Atomic file writes: the result appears whole, with a plain file's mode, and nothing is left behind."""
from __future__ import annotations

import os

import pytest

from mars_lite.files import atomic_write


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
