"""Writing files so that a crash never leaves half of one (bottom layer: no torch, no model).

Every file the kit writes for later reading — checkpoints, training state, embedding caches,
indexes, reports, download markers — goes through :func:`atomic_write`: the data goes to a
temporary sibling ``.<name>.p<pid>.<random>.tmp`` that is renamed over ``<name>`` when complete.

A process killed mid-write leaves its temporary behind. ``clean_stale_tmp`` removes such orphans,
and ``atomic_write`` runs it for the siblings of the file it writes. It is careful never to take
a file another writer is still filling: a temporary is removed only when it is older than
``STALE_TMP_SECONDS`` (by its modification time, which every write refreshes) *and* the process
named in it is no longer running on this machine (names without a pid, from older versions, go
by age alone).

A folder of files that belong together (a gallery index, the demonstration folders of notebook 08)
is replaced whole by :func:`install_folder`: built in a hidden sibling ``.<name>.building-<pid>``,
then swapped in by renames (the old one goes to ``.<name>.old-<pid>`` and is deleted), so a kill
never leaves a mix of two builds; siblings left by dead processes are removed afterwards.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

STALE_TMP_SECONDS = 30 * 60  # a writer silent for half an hour, whose process is gone, is dead


def _tmp_pattern(name: str | None) -> re.Pattern:
    """``.<name>.p<pid>.<random>.tmp`` (``p<pid>.`` absent in names from older versions)."""
    stem = ".+?" if name is None else re.escape(name)
    return re.compile(rf"^\.{stem}\.(?:p(?P<pid>\d+)\.)?[^.]+\.tmp$")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine. In doubt (another user's process, or no way to
    tell) True: callers use it to decide whether a lock, a temporary or a build folder is orphaned."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by another user
        return True
    return True


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read ``chunk`` bytes at a time (never the whole file at once)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def clean_stale_tmp(folder: str | Path, name: str | None = None, max_age: float | None = None) -> list[Path]:
    """Remove orphan temporaries of ``atomic_write`` in ``folder`` (of ``name`` only, when given).

    A temporary goes when it is older than ``max_age`` seconds (default ``STALE_TMP_SECONDS``)
    and the writing process named in it is gone. Returns the removed paths; never raises for
    a file that vanished or cannot be removed.
    """
    max_age = STALE_TMP_SECONDS if max_age is None else max_age
    pattern = _tmp_pattern(name)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = pattern.match(entry.name)
        if not match:
            continue
        try:
            if not entry.is_file(follow_symlinks=False) or now - entry.stat().st_mtime < max_age:
                continue
            if match["pid"] is not None and process_alive(int(match["pid"])):
                continue
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue  # removed by someone else meanwhile, or not ours to remove
    return removed


def atomic_write(path: str | Path, write) -> Path:
    """Call ``write(tmp_path)`` then move the file into place, so a crash never leaves half a file.

    Stale temporaries of earlier, killed writes of the same file are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.p{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates 0600 files; give the result the mode a plain open() would (umask applies).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def folder_siblings(folder: Path, kind: str) -> list[Path]:
    """The hidden ``.<name>.<kind>-<pid>`` siblings of ``folder`` (``kind``: building | old)."""
    return sorted(folder.parent.glob(f".{folder.name}.{kind}-*"))


def install_folder(folder: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(staging)`` to fill a new sibling folder, then make it ``folder`` by renames.

    If ``write`` raises (or the process dies), ``folder`` is left as it was (a kill between the two
    renames leaves it at ``.<name>.old-<pid>``). Returns ``folder``.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.building-{os.getpid()}"
    displaced = folder.parent / f".{folder.name}.old-{os.getpid()}"
    for leftover in (staging, displaced):
        shutil.rmtree(leftover, ignore_errors=True)
    staging.mkdir()
    try:
        write(staging)
        if folder.exists():
            os.rename(folder, displaced)
            try:
                os.rename(staging, folder)
            except BaseException:
                os.rename(displaced, folder)
                raise
        else:
            os.rename(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(displaced, ignore_errors=True)
    for path in folder_siblings(folder, "building") + folder_siblings(folder, "old"):  # of dead processes
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
    return folder
