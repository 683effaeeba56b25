"""Download, check, extract and mark ready the datasets of ``registry.py``.

``download(name, root)`` for each file of the source: fetch it into ``<root>/_downloads/``
(resuming a partial ``.part`` file with an HTTP ``Range`` request, retrying a cut connection),
check its sha256 (see ``registry.py`` for the trust-on-first-use policy), extract it safely into
``<root>/<source.directory>/`` and run the layout check. Only when all of that passed is the
ready marker ``<root>/<directory>/.mars_lite_ready-<name>.json`` written (atomically). A second
run finds the marker and does nothing -- no network. ``verify(name, root)`` re-checks files and
layout without network and (re)writes the marker; whatever makes it fail (a checksum, a corrupt
image, anything) removes the marker. Files that need a manual step are announced with the exact
path to save them to (``ManualStepRequired``); the next run picks them up.

Trust on first use pins a file's sha256 only once the whole download passed: an archive that
does not open or extract (cut short by a server that sent no length) is never pinned; it raises
``DownloadError`` naming the file, moved aside when no checksum vouched for it, so the next run
fetches it again.

The HTTP part (timeouts, resuming, retries) is ``fetching.fetch``.
"""
from __future__ import annotations

import gzip
import json
import lzma
import os
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from ..errors import MarsLiteError
from ..files import atomic_write, sha256_file
from .archives import safe_extract
from .fetching import DownloadError, fetch
from .layout_checks import run_layout_check
from .registry import RemoteFile, Source, get_source

DOWNLOADS_DIR = "_downloads"
# What a cut-short or damaged archive raises while it is opened or extracted.
_BROKEN_ARCHIVE = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)


def _broken_archive(err: BaseException) -> bool:
    """True for a damaged archive; False for the file system's errors (a full disk is not a bad file)."""
    # bz2 reports bad data as a bare OSError("Invalid data stream"), with no errno
    return isinstance(err, _BROKEN_ARCHIVE) or (type(err) is OSError and err.errno is None)


class ChecksumError(DownloadError):
    """A file's sha256 differs from the expected (published, given or pinned) value."""


class ManualStepRequired(DownloadError):
    """Some files must be fetched by hand; the message has the instructions and paths."""


def _write_json_atomic(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _pin_path(root: Path, file: RemoteFile) -> Path:
    return root / DOWNLOADS_DIR / f"{file.filename}.sha256"


def _expected_sha(root: Path, file: RemoteFile, given: dict[str, str]) -> str | None:
    """Checksum to hold the file to: given on the command line > registry > earlier pin."""
    if file.filename in given:
        return given[file.filename].lower()
    if file.sha256:
        return file.sha256.lower()
    pin = _pin_path(root, file)
    return pin.read_text().split()[0].lower() if pin.is_file() else None


def _pin(root: Path, file: RemoteFile, actual: str, log: Callable) -> None:
    """Pin ``actual`` as the file's sha256 (trust on first use), loudly."""
    atomic_write(_pin_path(root, file), lambda tmp: Path(tmp).write_text(f"{actual}  {file.filename}\n"))
    log(f"WARNING: TRUST ON FIRST USE -- no published sha256 for {file.filename}; what arrived has "
        f"sha256 {actual}. It is now pinned in {_pin_path(root, file)} and checked from now on, "
        "but nothing guarantees this first copy is the authors' file.")


def _check_sha(root: Path, file: RemoteFile, path: Path, given: dict[str, str], unpinned: list) -> str:
    """Hash ``path`` and compare; with nothing to compare against, add it to ``unpinned``.

    The caller pins ``unpinned`` only once everything passed, so a broken file is never pinned.
    """
    actual = sha256_file(path)
    expected = _expected_sha(root, file, given)
    if expected is None:
        unpinned.append((file, actual))
    elif actual != expected:
        bad = path.with_name(path.name + ".bad")
        os.replace(path, bad)
        raise ChecksumError(
            f"sha256 mismatch for {file.filename}: expected {expected}, got {actual}. The file was "
            f"moved to {bad}; run the download again (or check the checksum you passed)."
        )
    return actual


def file_path(root: Path, source: Source, file: RemoteFile) -> Path:
    """Where a file lives: archives in ``<root>/_downloads/``, plain files in the dataset folder."""
    if file.archive == "none":
        return root / source.directory / file.filename
    return root / DOWNLOADS_DIR / file.filename


def _extract(source: Source, root: Path, file: RemoteFile, path: Path, sha: str, vouched: bool,
             log: Callable) -> None:
    """Extract once per archive content: a stamp remembers the sha256 that was extracted.

    A broken archive raises ``DownloadError``; unless a published or given checksum ``vouched``
    for it, it is moved aside to ``<file>.bad`` (and a trust-on-first-use pin of it, worthless,
    removed) so that the next run fetches it again.
    """
    directory = root / source.directory
    if file.archive == "none" or _extracted(file, directory, sha):
        return
    log(f"extracting {path.name} into {directory} ...")
    try:
        count = safe_extract(path, directory, kind=file.archive)
    except Exception as err:
        if isinstance(err, MarsLiteError) or not _broken_archive(err):
            raise  # an unsafe archive (its own message), a full disk, ...
        if vouched:
            way_out = (f"It matches its expected sha256, so the file itself is damaged: get a good copy, "
                       f"delete {path} and run 'mars-lite data download {source.name} --root {root}' again.")
        else:
            bad = path.with_name(path.name + ".bad")
            os.replace(path, bad)
            pin = _pin_path(root, file)
            unpinned = f"its pin {pin} was removed" if pin.is_file() else "nothing was pinned"
            pin.unlink(missing_ok=True)
            way_out = (f"It was probably cut short during the download (a server that sends no length "
                       f"cannot tell); it was moved to {bad} and {unpinned}: run 'mars-lite data "
                       f"download {source.name} --root {root}' again to fetch it anew.")
        raise DownloadError(f"{path} is not a readable {file.archive} archive "
                            f"({type(err).__name__}: {err}). {way_out}") from err
    _write_json_atomic(_stamp(file, directory), {"archive": file.filename, "sha256": sha, "members": count})


def _stamp(file: RemoteFile, directory: Path) -> Path:
    return directory / f".extracted-{file.filename}.json"


def _extracted(file: RemoteFile, directory: Path, sha: str) -> bool:
    stamp = _stamp(file, directory)
    return stamp.is_file() and json.loads(stamp.read_text()).get("sha256") == sha


def ready_marker(source: Source, root: Path) -> Path:
    return root / source.directory / f".mars_lite_ready-{source.name}.json"


def read_ready(source: str | Source, root: str | os.PathLike) -> dict | None:
    """The ready marker's content, or None when the dataset is not (yet) marked ready."""
    marker = ready_marker(get_source(source, mirror=""), Path(root))
    try:
        return json.loads(marker.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _mark_ready(source: Source, root: Path, shas: dict[str, str | None], summary: dict) -> dict:
    record = {
        "source": source.name,
        "title": source.title,
        "files": shas,
        "layout": summary,
        "checked_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _write_json_atomic(ready_marker(source, root), record)
    return record


def download(
    source: str | Source,
    root: str | os.PathLike,
    sha256: dict[str, str] | None = None,
    trust_on_first_use: bool = False,
    timeout: float = 10.0,
    read_timeout: float = 60.0,
    mirror: str | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Fetch, check, extract and mark ready; returns the dataset folder. Idempotent.

    ``sha256`` maps file names to checksums you trust; ``trust_on_first_use`` accepts files with
    no known checksum and pins them. Raises ``DownloadError`` (and subclasses) with instructions.
    """
    root, given = Path(root), dict(sha256 or {})
    source = get_source(source, mirror=mirror)
    directory = root / source.directory
    marker = read_ready(source, root)
    if marker is not None:
        log(f"{source.name}: already downloaded and checked ({ready_marker(source, root)}); "
            f"run 'mars-lite data verify {source.name}' to re-check the files")
        return directory
    unpinned = [f.filename for f in source.files if f.url and _expected_sha(root, f, given) is None
                and not file_path(root, source, f).exists()]
    if unpinned and not trust_on_first_use:
        raise DownloadError(
            f"{source.name}: no published sha256 for {unpinned}. Pass --sha256 FILE=HEX for a checksum "
            "you trust, or --trust-on-first-use to accept what the server sends now (its sha256 is "
            "printed and pinned, and checked by every later verify)."
        )
    shas: dict[str, str | None] = {}
    manual_steps: list[str] = []
    unpinned_shas: list[tuple[RemoteFile, str]] = []
    for file in source.files:
        path = file_path(root, source, file)
        if not path.is_file():
            if file.url is None:
                manual_steps.append(file.manual.format(path=path, dir=directory, root=root))
                continue
            log(f"{source.name}: downloading {file.url}")
            fetch(file.url, path, timeout=timeout, read_timeout=read_timeout, progress=progress)
        shas[file.filename] = sha = _check_sha(root, file, path, given, unpinned_shas)
        vouched = file.filename in given or bool(file.sha256)  # not a pin: it may pin a broken file
        _extract(source, root, file, path, sha, vouched=vouched, log=log)
    if manual_steps:
        raise ManualStepRequired(
            f"{source.name} needs manual steps:\n" + "\n".join(manual_steps)
            + f"\nThen run: mars-lite data download {source.name} --root {root}"
        )
    try:
        summary = run_layout_check(source, directory)
    except (OSError, ValueError, MarsLiteError) as err:
        if source.manual:  # nothing to fetch: the user places the data, then we check it
            raise ManualStepRequired(
                f"{source.name} is installed by hand ({err}):\n"
                + source.manual.format(dir=directory, root=root)
                + f"\nThen run: mars-lite data verify {source.name} --root {root}"
            ) from err
        raise DownloadError(f"{source.name}: files fetched, but the layout check failed: {err}") from err
    for file, sha in unpinned_shas:  # everything passed: only now is what arrived trusted
        _pin(root, file, sha, log)
    _mark_ready(source, root, shas, summary)
    log(f"{source.name}: ready in {directory}")
    return directory


def verify(
    source: str | Source,
    root: str | os.PathLike,
    sha256: dict[str, str] | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Re-check archives (sha256) and layout without network; mark ready and return the record.

    Archives you placed by hand are hashed (pinned when no checksum is known); a dataset folder
    you placed without its archive is accepted on its layout check alone (recorded as such).
    """
    root, given = Path(root), dict(sha256 or {})
    source = get_source(source, mirror="")
    try:
        return _verify(source, root, given, log)
    except BaseException:
        ready_marker(source, root).unlink(missing_ok=True)  # whatever failed, it is not ready
        raise


def _verify(source: Source, root: Path, given: dict[str, str], log: Callable) -> dict:
    directory = root / source.directory
    shas: dict[str, str | None] = {}
    unpinned_shas: list[tuple[RemoteFile, str]] = []
    for file in source.files:
        path = file_path(root, source, file)
        if path.is_file():
            shas[file.filename] = sha = _check_sha(root, file, path, given, unpinned_shas)
            if file.archive != "none" and not _extracted(file, directory, sha):
                raise DownloadError(
                    f"{path} is present but not extracted: run 'mars-lite data download {source.name} "
                    f"--root {root}' (it uses the file you placed, no network)"
                )
        else:
            shas[file.filename] = None  # not present: only the layout vouches for the data
    try:
        summary = run_layout_check(source, directory)
    except (OSError, ValueError, MarsLiteError) as err:
        raise DownloadError(f"{source.name}: layout check failed in {directory}: {err}") from err
    for file, sha in unpinned_shas:
        _pin(root, file, sha, log)
    record = _mark_ready(source, root, shas, summary)
    log(f"{source.name}: verified, ready in {directory}")
    return record
