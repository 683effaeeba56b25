"""Download, check, extract and mark ready the datasets of ``registry.py``.

``download(name, root)`` for each file of the source: fetch it into ``<root>/_downloads/``
(resuming a partial ``.part`` file with an HTTP ``Range`` request, retrying a cut connection),
check its sha256 (see ``registry.py`` for the trust-on-first-use policy), extract it safely into
``<root>/<source.directory>/`` and run the layout check. Only when all of that passed is the
ready marker ``<root>/<directory>/.mars_lite_ready-<name>.json`` written (atomically). A second
run finds the marker and does nothing -- no network. ``verify(name, root)`` re-checks files and
layout without network and (re)writes the marker. Files that need a manual step are announced
with the exact path to save them to (``ManualStepRequired``); the next run picks them up.

Timeouts: ``timeout`` bounds connecting (an unreachable host fails in that many seconds, a
closed port at once, without retries); ``read_timeout`` bounds a stalled transfer, which is
then retried from where it stopped.
"""
from __future__ import annotations

import functools
import hashlib
import http.client
import json
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from ..files import atomic_write
from ..settings import progress_enabled
from .archives import safe_extract
from .layout_checks import run_layout_check
from .registry import RemoteFile, Source, get_source

DOWNLOADS_DIR = "_downloads"
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A dataset could not be downloaded or verified; the message says why and what to do."""


class ChecksumError(DownloadError):
    """A file's sha256 differs from the expected (published, given or pinned) value."""


class ManualStepRequired(DownloadError):
    """Some files must be fetched by hand; the message has the instructions and paths."""


def _timed(cls):
    """An http.client connection class whose socket gets ``read_timeout`` after connecting."""

    class Timed(cls):
        def __init__(self, *args, read_timeout: float, **kwargs):
            super().__init__(*args, **kwargs)
            self._read_timeout = read_timeout

        def connect(self):
            super().connect()  # bounded by the connect timeout given to urlopen
            self.sock.settimeout(self._read_timeout)

    return Timed


_TimedHTTP, _TimedHTTPS = _timed(http.client.HTTPConnection), _timed(http.client.HTTPSConnection)


def _opener(read_timeout: float) -> urllib.request.OpenerDirector:
    context = ssl.create_default_context()

    class Plain(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(functools.partial(_TimedHTTP, read_timeout=read_timeout), req)

    class Secure(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(functools.partial(_TimedHTTPS, read_timeout=read_timeout), req,
                                context=context)

    return urllib.request.build_opener(Plain, Secure)


def _progress(total: int | None, initial: int, name: str, enabled: bool | None):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=name,
                disable=not progress_enabled(enabled))


def fetch(
    url: str,
    dest: Path,
    timeout: float = 10.0,
    read_timeout: float = 60.0,
    retries: int = 3,
    progress: bool | None = None,
) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part``, resuming with ``Range`` after a cut."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    opener = _opener(read_timeout)
    for attempt in range(retries + 1):
        offset = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": "mars-lite-data/1"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            response = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as err:
            if err.code == 416 and offset:  # nothing left to send: the .part is complete
                break
            raise DownloadError(f"HTTP {err.code} {err.reason} for {url}") from err
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise DownloadError(
                f"cannot connect to {url}: {reason}. Check the address and your network "
                f"(connect timeout {timeout:g} s); a mirror can be set with MARS_LITE_DATA_MIRROR."
            ) from err
        with response:
            resumed_at = response.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
            if offset and (response.status != 206 or resumed_at != str(offset)):
                offset = 0  # the server ignored (or misread) the Range: start again
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            try:
                bar = _progress(total, offset, dest.name, progress)
                with open(part, "ab" if offset else "wb") as out, bar:
                    while chunk := response.read(CHUNK):
                        out.write(chunk)
                        bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as err:  # cut or stalled mid-body
                if attempt == retries:
                    raise DownloadError(
                        f"download of {url} interrupted ({err}); run again to resume"
                    ) from err
                time.sleep(min(2.0, 0.5 * (attempt + 1)))
                continue
        size = part.stat().st_size
        if total is None or size == total:
            break
        if attempt == retries:  # http.client ends a short body silently: compare sizes
            raise DownloadError(f"download of {url} stopped at {size} of {total} bytes; run again to resume")
    os.replace(part, dest)
    return dest


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


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


def _check_sha(root: Path, file: RemoteFile, path: Path, given: dict[str, str], log: Callable) -> str:
    """Hash ``path`` and compare; with nothing to compare against, pin it (loudly)."""
    actual = sha256_file(path)
    expected = _expected_sha(root, file, given)
    if expected is None:
        atomic_write(_pin_path(root, file), lambda tmp: Path(tmp).write_text(f"{actual}  {file.filename}\n"))
        log(f"WARNING: TRUST ON FIRST USE -- no published sha256 for {file.filename}; what arrived has "
            f"sha256 {actual}. It is now pinned in {_pin_path(root, file)} and checked from now on, "
            "but nothing guarantees this first copy is the authors' file.")
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


def _extract(file: RemoteFile, path: Path, directory: Path, sha: str, log: Callable) -> None:
    """Extract once per archive content: a stamp remembers the sha256 that was extracted."""
    if file.archive == "none" or _extracted(file, directory, sha):
        return
    log(f"extracting {path.name} into {directory} ...")
    count = safe_extract(path, directory, kind=file.archive)
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
    for file in source.files:
        path = file_path(root, source, file)
        if not path.is_file():
            if file.url is None:
                manual_steps.append(file.manual.format(path=path, dir=directory, root=root))
                continue
            log(f"{source.name}: downloading {file.url}")
            fetch(file.url, path, timeout=timeout, read_timeout=read_timeout, progress=progress)
        shas[file.filename] = sha = _check_sha(root, file, path, given, log)
        _extract(file, path, directory, sha, log)
    if manual_steps:
        raise ManualStepRequired(
            f"{source.name} needs manual steps:\n" + "\n".join(manual_steps)
            + f"\nThen run: mars-lite data download {source.name} --root {root}"
        )
    try:
        summary = run_layout_check(source, directory)
    except (OSError, ValueError) as err:
        if source.manual:  # nothing to fetch: the user places the data, then we check it
            raise ManualStepRequired(
                f"{source.name} is installed by hand ({err}):\n"
                + source.manual.format(dir=directory, root=root)
                + f"\nThen run: mars-lite data verify {source.name} --root {root}"
            ) from err
        raise DownloadError(f"{source.name}: files fetched, but the layout check failed: {err}") from err
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
    except (OSError, ValueError, DownloadError):
        ready_marker(source, root).unlink(missing_ok=True)  # whatever failed, it is not ready
        raise


def _verify(source: Source, root: Path, given: dict[str, str], log: Callable) -> dict:
    directory = root / source.directory
    shas: dict[str, str | None] = {}
    for file in source.files:
        path = file_path(root, source, file)
        if path.is_file():
            shas[file.filename] = sha = _check_sha(root, file, path, given, log)
            if file.archive != "none" and not _extracted(file, directory, sha):
                raise DownloadError(
                    f"{path} is present but not extracted: run 'mars-lite data download {source.name} "
                    f"--root {root}' (it uses the file you placed, no network)"
                )
        else:
            shas[file.filename] = None  # not present: only the layout vouches for the data
    try:
        summary = run_layout_check(source, directory)
    except (OSError, ValueError) as err:
        raise DownloadError(f"{source.name}: layout check failed in {directory}: {err}") from err
    record = _mark_ready(source, root, shas, summary)
    log(f"{source.name}: verified, ready in {directory}")
    return record
