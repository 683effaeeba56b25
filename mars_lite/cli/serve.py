"""Run a server child (JupyterLab for ``mars-lite lab``, Voilà for ``mars-lite demo``) and stop it
with the command.

The child runs in its own process group (``start_new_session``), so the kernels it starts belong
to that group too. SIGTERM, SIGINT (Ctrl-C) and SIGHUP to ``mars-lite`` are forwarded to the whole
group; the command then waits ``grace_s`` seconds for it to shut down cleanly and kills what is
left. Without this, a ``kill`` of ``mars-lite`` (a service manager, a closed terminal, a CI job's
timeout) left JupyterLab or Voilà and their kernels running, orphaned, holding the port.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import Mapping, Sequence

GRACE_S = 10.0  # Jupyter's own shutdown (kernels included) takes a second or two
FORWARDED = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))


class _Stop(BaseException):
    """Raised by the signal handler to leave the wait; BaseException so no ``except Exception`` eats it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    """Send ``signum`` to the child's process group (the child and everything it started)."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(child.pid, signum)
        else:  # no process groups: the child alone
            child.send_signal(signum)
    except (ProcessLookupError, PermissionError):
        pass  # already gone


def stop_child(child: subprocess.Popen, signum: int = signal.SIGTERM, grace_s: float = GRACE_S) -> int:
    """Forward ``signum`` to the child's group, wait up to ``grace_s`` s, then SIGKILL the group.

    Returns the child's exit status (negative: killed by that signal)."""
    _signal_group(child, signum)
    deadline = time.monotonic() + grace_s
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    # SIGKILL whatever is left of the group: the leader when it ignored us, kernels it orphaned
    _signal_group(child, getattr(signal, "SIGKILL", signal.SIGTERM))
    return child.wait()


def run_server(cmd: Sequence[str], env: Mapping[str, str] | None = None, *, grace_s: float = GRACE_S) -> int:
    """Run ``cmd`` until it exits, or until this process gets SIGTERM/SIGINT/SIGHUP.

    Returns the child's exit status, or ``128 + signum`` when a signal stopped it (130 for Ctrl-C,
    143 for SIGTERM), as a shell would report. Signal handlers are restored on return.
    """
    def handler(signum, _frame):
        raise _Stop(signum)

    # handlers only work in the main thread; elsewhere (an embedding app) the caller owns signals
    handled = FORWARDED if threading.current_thread() is threading.main_thread() else ()
    previous = {s: signal.signal(s, handler) for s in handled}  # before the start: no unguarded moment
    child: subprocess.Popen | None = None
    try:
        child = subprocess.Popen(list(cmd), env=dict(env) if env is not None else None,
                                 start_new_session=hasattr(os, "setsid"))
        status = child.wait()
        return status if status >= 0 else 128 - status
    except _Stop as stop:
        for s in handled:  # a second Ctrl-C while the server shuts down changes nothing
            signal.signal(s, signal.SIG_IGN)
        if child is not None:
            stop_child(child, stop.signum, grace_s)
        return 128 + stop.signum
    finally:
        if child is not None and child.poll() is None:  # any other way out (an exception): never leave it
            stop_child(child, signal.SIGTERM, grace_s)
        for s, old in previous.items():
            signal.signal(s, old)
