"""Extract zip and tar archives without ever writing outside the target folder.

Every member is checked *before* anything is written, and the whole archive is refused
(``UnsafeArchiveError``, naming the member) when one of them

* has an absolute name (``/etc/x``, ``C:\\x``, ``\\\\server\\x``) or a ``..`` component,
* would resolve outside the target (also through symlinks already in the target),
* is a symlink or hard link whose target lies outside (zip: any symlink, zipfile cannot
  create them faithfully), or a device / FIFO node.

Tar extraction additionally uses Python's ``"data"`` extraction filter (PEP 706) when present.
"""
from __future__ import annotations

import os
import posixpath
import re
import stat
import tarfile
import zipfile
from pathlib import Path


class UnsafeArchiveError(ValueError):
    """An archive member would escape the target folder; nothing was extracted."""


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


def _zip_members(handle: zipfile.ZipFile, target: Path, archive: Path) -> None:
    for info in handle.infolist():
        _check_name(info.filename, target, archive)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a symlink; refusing to extract")


def _tar_members(handle: tarfile.TarFile, target: Path, archive: Path) -> None:
    for member in handle.getmembers():
        _check_name(member.name, target, archive)
        if member.issym() or member.islnk():
            _check_link(member.name, member.linkname, member.islnk(), target, archive)
        elif member.ischr() or member.isblk() or member.isfifo() or member.isdev():
            raise UnsafeArchiveError(
                f"{archive}: member {member.name!r} is a device or FIFO; refusing to extract"
            )


def archive_kind(path: Path) -> str:
    """``"zip"`` or ``"tar"`` from the file's content (not its name)."""
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise ValueError(f"{path} is neither a zip nor a tar archive")


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike, kind: str | None = None) -> int:
    """Extract ``archive`` into ``target`` after checking every member; returns the member count.

    ``kind`` is "zip" or "tar" (detected from the content when None).
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    target = target.resolve()
    kind = kind or archive_kind(archive)
    if kind == "zip":
        with zipfile.ZipFile(archive) as handle:
            _zip_members(handle, target, archive)
            handle.extractall(target)
            return len(handle.infolist())
    if kind == "tar":
        with tarfile.open(archive, "r:*") as handle:
            _tar_members(handle, target, archive)
            if hasattr(tarfile, "data_filter"):
                handle.extractall(target, filter="data")
            else:  # Python < 3.11.4: our own checks above are the guard
                handle.extractall(target)
            return len(handle.getmembers())
    raise ValueError(f"unknown archive kind {kind!r} for {archive}")
