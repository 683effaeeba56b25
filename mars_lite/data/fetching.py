"""Fetching one URL to a file: resuming a partial download, retrying a cut connection.

``fetch(url, dest)`` writes ``dest.part`` and renames it to ``dest`` when the transfer ended
(with an HTTP ``Range`` request to resume a ``.part`` left by a cut or an earlier run).
Timeouts: ``timeout`` bounds connecting (an unreachable host fails in that many seconds, a
closed port at once, without retries); ``read_timeout`` bounds a stalled transfer, which is
then retried from where it stopped. A server that sends no ``Content-Length`` and drops the
connection cannot be told from a complete transfer here: ``download`` catches that when the
archive does not open.
"""
from __future__ import annotations

import functools
import http.client
import os
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import MarsLiteError
from ..settings import progress_enabled

CHUNK = 1 << 20


class DownloadError(MarsLiteError, RuntimeError):
    """A dataset could not be downloaded or verified; the message says why and what to do."""


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
