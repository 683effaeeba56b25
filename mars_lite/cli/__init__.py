"""The ``mars-lite`` command line: one module per command, each parses its options and calls the
library (``lab``, ``data``, ``embed``, ``train``, ``evaluate``, ``index``, ``demo``); ``main``
dispatches. Nothing below this package parses arguments."""
from .main import build_parser, main

__all__ = ["build_parser", "main"]
