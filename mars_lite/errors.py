"""The kit's user-facing errors (bottom layer: no torch, no model).

Every error a *user's* mistake or a broken file can cause derives from :class:`MarsLiteError`
(mixed in beside the built-in type that fits, e.g. ``class ConfigError(MarsLiteError, ValueError)``),
so the command line can print it as one line and exit 2, and keep tracebacks for real bugs.
A message names the value or file at fault and says what to do.
"""
from __future__ import annotations


class MarsLiteError(Exception):
    """An error caused by the input (a file, a flag, a folder), not by a bug in the kit."""


class RunFolderError(MarsLiteError, FileExistsError):
    """A run folder already holds a run (or another run is writing there)."""
