"""Extract zip and tar archives without ever writing outside the target folder.

Every member is checked *before* anything is written, and the whole archive is refused
(``UnsafeArchiveError``, naming the member) when one of them

* has an absolute name (``/etc/x``, ``C:\\x``, ``\\\\server\\x``) or a ``..`` component,
* would resolve outside the target (also through symlinks already in the target),
* is a symlink or hard link whose target lies outside (zip: any symlink, zipfile cannot
  create them faithfully), or a device / FIFO node.

Tar extraction additionally uses Python's ``"data"`` extraction filter (PEP 706) when present.

**Size limits (zip bombs).** Before anything is written, the sizes the archive declares are
checked: at most ``max_bytes`` uncompressed in total (``MAX_TOTAL_BYTES``), ``max_members``
members (``MAX_MEMBERS``) and, for a zip member over ``_RATIO_FLOOR`` bytes, a compression
ratio of at most ``max_ratio`` (``MAX_RATIO``). Headers can lie, so the bytes actually written
are counted as well and extraction stops (``UnsafeArchiveError``) the moment they pass the
limit. The defaults fit the largest benchmark (QuickDraw-Extended, ~0.5 M files) with room.
"""
from __future__ import annotations

import os
import posixpath
import re
import stat
import tarfile
import zipfile
from pathlib import Path
from ..errors import MarsLiteError


MAX_TOTAL_BYTES = 64 << 30  # 64 GiB uncompressed
MAX_MEMBERS = 2_000_000
MAX_RATIO = 200  # uncompressed / compressed size of one zip member (images: ~1, text: ~10)
_RATIO_FLOOR = 1 << 20  # smaller members are not ratio-checked (a tiny file can compress 1000x)
_CHUNK = 1 << 20


class UnsafeArchiveError(MarsLiteError, ValueError):
    """An archive member would escape the target folder, or the archive is over a size limit.

    Raised before anything is written, except when an archive's content outgrows what its
    headers declared: then extraction stops at the limit (the partial member is removed).
    """


class _Limits:
    """The size limits of one extraction and the running count of bytes written."""

    def __init__(self, archive: Path, max_bytes: int | None, max_members: int | None, max_ratio: float | None):
        self.archive = archive
        self.max_bytes = MAX_TOTAL_BYTES if max_bytes is None else max_bytes
        self.max_members = MAX_MEMBERS if max_members is None else max_members
        self.max_ratio = MAX_RATIO if max_ratio is None else max_ratio
        self.written = 0

    def refuse(self, what: str, keyword: str, constant: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(
            f"{self.archive}: {what}; refusing to extract (a decompression bomb, or a bigger archive "
            f"than expected: if you trust it, pass {keyword}= to safe_extract or raise "
            f"mars_lite.data.archives.{constant})"
        )

    def check_declared(self, count: int, total: int) -> None:
        if count > self.max_members:
            raise self.refuse(f"{count:,} members, over the limit of {self.max_members:,}",
                              "max_members", "MAX_MEMBERS")
        if total > self.max_bytes:
            raise self.refuse(f"declares {total:,} bytes uncompressed, over the limit of {self.max_bytes:,}",
                              "max_bytes", "MAX_TOTAL_BYTES")

    def check_ratio(self, name: str, size: int, compressed: int) -> None:
        if size > _RATIO_FLOOR and size > self.max_ratio * max(compressed, 1):
            raise self.refuse(f"member {name!r} expands {size:,} bytes from {compressed:,} "
                              f"(ratio over {self.max_ratio:g})", "max_ratio", "MAX_RATIO")

    def add(self, count: int) -> None:
        self.written += count
        if self.written > self.max_bytes:
            raise self.refuse(f"content outgrew its headers: over {self.max_bytes:,} bytes written",
                              "max_bytes", "MAX_TOTAL_BYTES")


_DRIVE = re.compile(r"^[A-Za-z]:")


def _check_name(name: str, target: Path, archive: Path) -> None:
    parts = re.split(r"[\\/]+", name)
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..'; refusing to extract")
    resolved = (target / name.replace("\\", "/")).resolve()
    if not resolved.is_relative_to(target):
        raise UnsafeArchiveError(f"{archive}: member {name!r} resolves outside {target}; refusing to extract")


def _check_link(member: str, link: str, hard: bool, target: Path, archive: Path) -> None:
    if link.startswith(("/", "\\")) or _DRIVE.match(link):
        raise UnsafeArchiveError(f"{archive}: link {member!r} -> {link!r} is absolute; refusing to extract")
    # A symlink is relative to its own folder, a hard link to the archive root.
    base = "" if hard else posixpath.dirname(member)
    joined = posixpath.normpath(posixpath.join(base, link))
    if joined == ".." or joined.startswith("../") or not (target / joined).resolve().is_relative_to(target):
        raise UnsafeArchiveError(
            f"{archive}: link {member!r} -> {link!r} points outside {target}; refusing to extract"
        )


def _zip_members(handle: zipfile.ZipFile, target: Path, archive: Path, limits: _Limits) -> None:
    infos = handle.infolist()
    limits.check_declared(len(infos), sum(info.file_size for info in infos))
    for info in infos:
        _check_name(info.filename, target, archive)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a symlink; refusing to extract")
        limits.check_ratio(info.filename, info.file_size, info.compress_size)


def _zip_extract(handle: zipfile.ZipFile, target: Path, limits: _Limits) -> None:
    """Write every (checked) member, counting the bytes that really come out of the inflater."""
    for info in handle.infolist():
        path = target / info.filename.replace("\\", "/")
        if info.is_dir():
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with handle.open(info) as source, open(path, "wb") as out:
                while block := source.read(_CHUNK):
                    limits.add(len(block))
                    out.write(block)
        except BaseException:
            path.unlink(missing_ok=True)  # never leave half a member behind
            raise


def _tar_members(handle: tarfile.TarFile, target: Path, archive: Path, limits: _Limits) -> list[tarfile.TarInfo]:
    # Read the headers one by one, so that millions of members stop at the limit, not in memory.
    members, total = [], 0
    while (member := handle.next()) is not None:
        members.append(member)
        total += member.size if member.isfile() else 0
        limits.check_declared(len(members), total)
    for member in members:
        _check_name(member.name, target, archive)
        if member.issym() or member.islnk():
            _check_link(member.name, member.linkname, member.islnk(), target, archive)
        elif member.ischr() or member.isblk() or member.isfifo() or member.isdev():
            raise UnsafeArchiveError(
                f"{archive}: member {member.name!r} is a device or FIFO; refusing to extract"
            )
    return members


def _tar_extract(handle: tarfile.TarFile, members: list[tarfile.TarInfo], target: Path, limits: _Limits) -> None:
    """``extractall`` (directory modes set last), counting what lands on disk member by member."""

    def counted():
        for member in members:
            yield member  # extractall writes it before asking for the next one
            path = target / member.name
            if member.isfile() and path.is_file():
                limits.add(path.stat().st_size)

    if hasattr(tarfile, "data_filter"):
        handle.extractall(target, members=counted(), filter="data")
    else:  # Python < 3.11.4: our own checks above are the guard
        handle.extractall(target, members=counted())


def archive_kind(path: Path) -> str:
    """``"zip"`` or ``"tar"`` from the file's content (not its name)."""
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise ValueError(f"{path} is neither a zip nor a tar archive")


def safe_extract(
    archive: str | os.PathLike,
    target: str | os.PathLike,
    kind: str | None = None,
    *,
    max_bytes: int | None = None,
    max_members: int | None = None,
    max_ratio: float | None = None,
) -> int:
    """Extract ``archive`` into ``target`` after checking every member; returns the member count.

    ``kind`` is "zip" or "tar" (detected from the content when None). ``max_bytes``,
    ``max_members`` and ``max_ratio`` override ``MAX_TOTAL_BYTES``, ``MAX_MEMBERS`` and
    ``MAX_RATIO`` (see the module docstring). A broken archive raises what ``zipfile`` /
    ``tarfile`` raise (``BadZipFile``, ``TarError``, ``EOFError``, ...).
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    target = target.resolve()
    kind = kind or archive_kind(archive)
    limits = _Limits(archive, max_bytes, max_members, max_ratio)
    if kind == "zip":
        with zipfile.ZipFile(archive) as handle:
            _zip_members(handle, target, archive, limits)
            _zip_extract(handle, target, limits)
            return len(handle.infolist())
    if kind == "tar":
        with tarfile.open(archive, "r:*") as handle:
            members = _tar_members(handle, target, archive, limits)
            _tar_extract(handle, members, target, limits)
            return len(members)
    raise ValueError(f"unknown archive kind {kind!r} for {archive}")
