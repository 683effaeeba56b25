"""Who may write into a run folder: refuse to clobber a run, and one writer at a time.

A run folder *holds a run* when it has any of ``last.safetensors``, ``best.safetensors``,
``last_state.pt`` or ``history.json``. A new run goes there only with ``resume`` (continue it)
or ``overwrite`` (its run files are deleted first, so no stale ``best`` outlives it); otherwise
:class:`~mars_lite.errors.RunFolderError` names the folder and both flags.

While a run writes, ``run.lock`` (JSON: pid, host, start time) marks the folder; it is created
with ``O_CREAT | O_EXCL``, so of two runs started together exactly one gets it and the other is
refused. A lock whose process is gone (same host, pid not running) is *stale*: it is named in the
refusal, and ``resume`` / ``overwrite`` take it over. A lock from another host cannot be checked
and always refuses (delete the file by hand once that run is known to be dead). Only the main
process of a distributed run calls :func:`claim_run_folder`; the others learn the outcome from
:func:`mars_lite.train.distributed.share_error`.
"""
from __future__ import annotations

import json
import os
import socket
import time
from contextlib import nullcontext
from pathlib import Path

from ..errors import MarsLiteError, RunFolderError
from ..files import process_alive
from .distributed import DistInfo, share_error
from .state import BEST_CHECKPOINT, HISTORY_FILE, LAST_CHECKPOINT, STATE_FILE

LOCK_FILE = "run.lock"
RUN_FILES = (LAST_CHECKPOINT, BEST_CHECKPOINT, STATE_FILE, HISTORY_FILE)
FLAGS = "--resume to continue it or --overwrite to replace it (library: resume=True / overwrite=True)"


class RunOptionsError(MarsLiteError, ValueError):
    """Contradicting run options (``resume`` together with ``overwrite``)."""


def run_files(out_dir: str | Path) -> list[str]:
    """Names of the files of a run present in ``out_dir`` (empty when it holds none)."""
    return [name for name in RUN_FILES if (Path(out_dir) / name).is_file()]


def _read_lock(path: Path) -> dict | None:
    """The lock's record, or None when it is unreadable (e.g. its writer is between create and write)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _describe(record: dict | None) -> str:
    if record is None:
        return "an unknown run (the lock file is empty or unreadable)"
    return f"pid {record.get('pid')} on {record.get('host')}, started {record.get('started')}"


def _is_stale(record: dict | None) -> bool:
    """True only when the locking process certainly no longer runs (same host, pid gone)."""
    if record is None or record.get("host") != socket.gethostname():
        return False
    pid = record.get("pid")
    return isinstance(pid, int) and not process_alive(pid)


class RunLock:
    """The held ``run.lock`` of one folder; :meth:`release` (or leaving the ``with``) removes it."""

    def __init__(self, path: Path, record: dict):
        self.path, self.record = path, record

    def release(self) -> None:
        # remove only our own lock: one taken over since (it was judged stale) is not ours any more
        if _read_lock(self.path) == self.record:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _create_lock(path: Path) -> RunLock | None:
    """Create ``path`` exclusively; None when it already exists."""
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "nonce": os.urandom(8).hex()}
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return None
    # the lock itself is the atomic step (O_EXCL); its content is only informative, so a plain write
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(record))
    return RunLock(path, record)


def claim_run_folder(out_dir: str | Path, *, resume: bool = False, overwrite: bool = False) -> RunLock:
    """Create ``out_dir``, take its lock and check that this run may write there.

    Raises:
        RunOptionsError: both ``resume`` and ``overwrite``.
        RunFolderError: another live run holds the lock; a stale lock without resume/overwrite;
            the folder holds a run and neither flag is given.
    With ``overwrite`` the old run files are deleted once the lock is held.
    """
    if resume and overwrite:
        raise RunOptionsError("--resume and --overwrite contradict each other: --resume continues the run in "
                              "the folder, --overwrite deletes it; pass one")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK_FILE
    lock = _create_lock(path)
    if lock is None:
        record = _read_lock(path)
        if not _is_stale(record):
            raise RunFolderError(f"{out_dir} is in use by another run ({_describe(record)}; lock file {path}): "
                                 "wait for it to finish or choose another --out; if that run is known to be dead, "
                                 f"delete {path}")
        if not (resume or overwrite):
            raise RunFolderError(f"{out_dir} has a stale lock {path} from a run that is no longer running "
                                 f"({_describe(record)}): pass {FLAGS}; either takes the stale lock over")
        if _read_lock(path) == record:  # still the same stale lock: take it over
            path.unlink(missing_ok=True)
        lock = _create_lock(path)
        if lock is None:
            raise RunFolderError(f"{out_dir}: another run took over the stale lock {path} at the same time "
                                 f"({_describe(_read_lock(path))}); choose another --out")
    try:
        present = run_files(out_dir)
        if present and not (resume or overwrite):
            raise RunFolderError(f"{out_dir} already holds a training run ({', '.join(present)}): pass {FLAGS}, "
                                 "or choose another --out")
        if overwrite:
            for name in present:
                (out_dir / name).unlink(missing_ok=True)
    except BaseException:
        lock.release()
        raise
    return lock


def claim_on_main(out_dir: str | Path, dist: DistInfo, *, resume: bool = False, overwrite: bool = False):
    """Context manager: :func:`claim_run_folder` on the main process only (one writer), its refusal
    raised on every process; the lock is released when the block ends, also on an exception."""
    lock, refusal = None, None
    if dist.is_main:
        try:
            lock = claim_run_folder(out_dir, resume=resume, overwrite=overwrite)
        except MarsLiteError as err:
            refusal = err
    share_error(dist, refusal)
    return lock if lock is not None else nullcontext()
