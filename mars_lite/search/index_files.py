"""The files of a gallery index folder: whole-folder replacement and content checks (no torch).

A gallery index is several files that only make sense together (``index.json``,
``vectors.safetensors``, ``faiss_<kind>.index``). Two rules keep a folder from ever mixing builds:

* **build beside, swap in**: ``install_folder`` (``mars_lite.files.install_folder``) writes the
  new files into a sibling ``.<name>.building-<pid>`` folder, then renames the old index away (``.<name>.old-<pid>``),
  renames the new one in and deletes the old one. A build killed before the swap leaves the old
  index untouched (plus a hidden build folder, removed by the next build); a kill between the two
  renames leaves no index but the old one beside it, which ``missing_index_message`` points to.
* **bind by content**: ``index.json`` records the sha256 of every other file; ``check_sha256``
  refuses a file that is not the one written with it (another build's vectors or faiss file).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

from ..errors import MarsLiteError
from .. import files

REBUILD = "rebuild it with 'mars-lite index build ... --out {folder}'"


class IndexFileError(MarsLiteError, ValueError):
    """A file of an index folder is missing, damaged or belongs to another build."""


class IndexFolderError(MarsLiteError, FileExistsError):
    """The destination of an index cannot take one (not a folder, a folder of other files, not writable)."""


def check_sha256(folder: Path, name: str, record: dict) -> None:
    """Raise IndexFileError unless ``folder/name`` has the sha256 ``record["sha256"][name]``."""
    path = folder / name
    expected = (record.get("sha256") or {}).get(name)
    if expected is None:
        raise IndexFileError(f"{folder / 'index.json'} records no sha256 for {name}; "
                             + REBUILD.format(folder=folder))
    if not path.is_file():
        raise IndexFileError(f"{path} is missing from the index; " + REBUILD.format(folder=folder))
    if files.sha256_file(path) != expected:
        raise IndexFileError(f"{path} is not the file this index was built with (its sha256 differs from the "
                             f"one in index.json: the folder mixes files of two builds, or the file is damaged); "
                             + REBUILD.format(folder=folder))


def missing_index_message(folder: Path) -> str:
    """Why ``folder`` holds no index, pointing to an old index a killed swap left beside it."""
    message = (f"{folder} holds no gallery index (index.json + vectors.safetensors); "
               "build one with 'mars-lite index build'")
    displaced = [p for p in files.folder_siblings(folder, "old") if (p / "index.json").is_file()]
    if displaced and not folder.exists():
        message += (f"; an interrupted build left the previous index at {displaced[-1]}: "
                    f"rename it to {folder} to use it again")
    return message


def check_destination(folder: str | Path) -> Path:
    """Raise IndexFolderError unless an index can be written as ``folder``, before any work.

    ``folder`` may be absent, an empty folder or an earlier index (replaced); a file, or a folder
    holding other files, is refused so that a mistyped ``--out`` never deletes anything. The
    closest existing parent must be a writable folder (tested by creating a temporary file).
    """
    folder = Path(folder)
    if folder.exists() or folder.is_symlink():
        if not folder.is_dir():
            raise IndexFolderError(f"cannot write an index to {folder}: it is a file, not a folder; "
                                   "choose another destination")
        if any(folder.iterdir()) and not (folder / "index.json").is_file():
            raise IndexFolderError(f"cannot write an index to {folder}: the folder holds other files and no "
                                   "index.json, so it is not replaced; choose an empty or new folder")
    parent = folder.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise IndexFolderError(f"cannot write an index to {folder}: {parent} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as err:
        raise IndexFolderError(f"cannot write an index to {folder}: {parent} is not writable "
                               f"({err.strerror or err})") from err
    return folder


def install_folder(folder: str | Path, write: Callable[[Path], None]) -> Path:
    """Check ``folder`` can take an index (``check_destination``), then build it beside and swap it
    in (``mars_lite.files.install_folder``). Returns ``folder``."""
    return files.install_folder(check_destination(folder), write)
