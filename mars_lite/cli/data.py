"""``mars-lite data list | download NAME | verify NAME | splits`` (see ``download.py``).

Exit status: 0 done, 1 failed (message on stderr), 3 a manual step is needed (instructions on
stderr). ``--root`` defaults to the data folder of ``settings.data_root()``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_FAILED = 1
EXIT_MANUAL = 3


def _root(args: argparse.Namespace) -> Path:
    if args.root:
        return Path(args.root).expanduser()
    from ..settings import data_root

    return data_root(required=True)


def _parse_sha256(values: list[str], filenames: list[str]) -> dict[str, str]:
    """``--sha256 HEX`` (single-file sources) or ``--sha256 FILE=HEX`` -> {file: hex}."""
    result = {}
    for value in values or []:
        name, sep, digest = value.rpartition("=")
        if not sep:
            if len(filenames) != 1:
                raise SystemExit(f"--sha256 {value}: this dataset has files {filenames}; use FILE=HEX")
            name, digest = filenames[0], value
        if len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
            raise SystemExit(f"--sha256 {value}: expected 64 hex digits")
        result[name] = digest.lower()
    return result


def _cmd_list(args: argparse.Namespace) -> int:
    from ..data.download import read_ready
    from ..data.registry import SOURCES

    root = Path(args.root).expanduser() if args.root else None
    for name, source in SOURCES.items():
        if root is None:
            status = ""
        else:
            status = "ready" if read_ready(source, root) else "not ready"
        how = "manual steps" if source.manual or any(f.url is None for f in source.files) else "automatic"
        known = source.files and all(f.sha256 for f in source.files)
        sha = "sha256 known" if known else "no published sha256"
        print(f"{name:18s} {status:10s} {source.title}  [{how}; {sha}]")
    if root is None:
        print("(pass --root DIR to see which datasets are ready there)")
    return 0


def _cmd_splits(args: argparse.Namespace) -> int:
    from ..data.splits import list_splits, load_split

    for name in list_splits():
        try:
            split = load_split(name)
            counts = f"seen {len(split.seen):3d}  unseen {len(split.unseen):3d}"
            print(f"{name:18s} {split.benchmark:10s} {counts}")
        except (OSError, ValueError) as err:  # mini_sbir needs the data folder
            print(f"{name:18s} (unavailable: {err})")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from ..data.download import ManualStepRequired, download
    from ..data.registry import get_source
    from ..errors import MarsLiteError

    source = get_source(args.name, mirror=args.mirror)
    try:
        download(
            source,
            _root(args),
            sha256=_parse_sha256(args.sha256, [f.filename for f in source.files]),
            trust_on_first_use=args.trust_on_first_use,
            timeout=args.timeout,
            progress=False if args.no_progress else None,
        )
    except ManualStepRequired as err:
        print(err, file=sys.stderr)
        return EXIT_MANUAL
    except MarsLiteError as err:  # a download, checksum, broken or unsafe archive, layout error
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from ..data.download import verify
    from ..data.registry import get_source
    from ..errors import MarsLiteError

    source = get_source(args.name, mirror="")
    try:
        verify(source, _root(args), sha256=_parse_sha256(args.sha256, [f.filename for f in source.files]))
    except MarsLiteError as err:  # the ready marker is gone too: the next download re-checks
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def configure_cli(parser: argparse.ArgumentParser) -> None:
    """Add the ``data`` sub-commands to ``parser`` (called by ``mars_lite.cli``)."""
    from ..data.registry import SOURCES

    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    names = sorted(SOURCES)

    listing = sub.add_parser("list", help="datasets in the registry (and their status under --root)")
    listing.add_argument("--root", help="folder holding the datasets")
    listing.set_defaults(func=_cmd_list)

    splits = sub.add_parser("splits", help="the shipped zero-shot split manifests")
    splits.set_defaults(func=_cmd_splits)

    for action, func, help_ in (
        ("download", _cmd_download, "fetch, check (sha256, layout), extract and mark ready"),
        ("verify", _cmd_verify, "re-check files and layout without network, mark ready"),
    ):
        cmd = sub.add_parser(action, help=help_)
        cmd.add_argument("name", choices=names, metavar="NAME", help=f"one of {names}")
        cmd.add_argument("--root", help="folder holding the datasets (default: the data folder)")
        cmd.add_argument("--sha256", action="append", metavar="[FILE=]HEX",
                         help="checksum you trust for a file (repeatable)")
        cmd.set_defaults(func=func)
    download = sub.choices["download"]
    download.add_argument("--trust-on-first-use", action="store_true",
                          help="accept files without a known checksum and pin their sha256")
    download.add_argument("--timeout", type=float, default=10.0, help="connect timeout in seconds")
    download.add_argument("--mirror", default=None,
                          help="fetch every file from MIRROR/<filename> (default: $MARS_LITE_DATA_MIRROR)")
    download.add_argument("--no-progress", action="store_true", help="no progress bar")
