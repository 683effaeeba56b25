"""Downloads against a local HTTP server (with Range support and one cut connection) serving
archives built at test time from the real mini_sbir images."""
from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import stat
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mars_lite.cli import main as cli_main
from mars_lite.data import (
    ChecksumError,
    DownloadError,
    ManualStepRequired,
    RemoteFile,
    Source,
    UnsafeArchiveError,
    download,
    folder_dataset,
    quickdraw_dataset,
    read_ready,
    safe_extract,
    verify,
)
from mars_lite.data.registry import SOURCES, get_source

CLASSES = ("cat", "dog", "pizza")


class FileServer:
    """Serves ``files`` on 127.0.0.1; records (name, Range header) of every GET."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut_once: set[str] = set()  # names whose next response stops half-way
        self.cut_unsized_once: set[str] = set()  # ... sent without Content-Length: looks complete
        self.ignore_range = False
        state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                name, wanted = self.path.lstrip("/"), self.headers.get("Range")
                state.requests.append((name, wanted))
                data = state.files.get(name)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if wanted and not state.ignore_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                if name in state.cut_unsized_once:  # no length, half the body, connection closed
                    state.cut_unsized_once.discard(name)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if name in state.cut_once:
                    state.cut_once.discard(name)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True  # the connection drops mid-body
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def get_count(self, name: str) -> int:
        return sum(1 for requested, _ in self.requests if requested == name)


@pytest.fixture()
def server():
    served = FileServer()
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()


def members(mini_sbir: Path, classes=CLASSES, prefix="mini"):
    """(archive name, bytes) of the real mini_sbir files of ``classes``."""
    for modality in ("sketch", "photo"):
        for name in classes:
            for path in sorted((mini_sbir / modality / name).iterdir()):
                yield f"{prefix}/{modality}/{name}/{path.name}", path.read_bytes()


def zip_bytes(entries) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as handle:
        for name, data in entries:
            handle.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


def tar_bytes(entries, links=()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as handle:
        for name, kind, target in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            handle.addfile(info)
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            handle.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mini_source(url: str | None, filename: str, digest: str | None, archive="zip", manual="") -> Source:
    return Source(
        "mini-test", "mini_sbir subset (test)", "mini", "folder",
        (RemoteFile(filename, url, sha256=digest, archive=archive, manual=manual),),
        homepage="", licence="test only", citation="test", expected_classes=CLASSES,
    )


@pytest.fixture(scope="module")
def mini_zip(mini_sbir) -> bytes:
    return zip_bytes(members(mini_sbir))


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_download_extract_check_and_mark_ready(server, mini_sbir, mini_zip, tmp_path, kind):
    data = mini_zip if kind == "zip" else tar_bytes(members(mini_sbir))
    filename = f"mini.{'zip' if kind == 'zip' else 'tar.gz'}"
    server.files[filename] = data
    source = mini_source(f"{server.base}/{filename}", filename, sha(data), archive=kind)
    directory = download(source, tmp_path, log=lambda _: None)
    record = read_ready(source, tmp_path)
    assert record["files"] == {filename: sha(data)}
    assert record["layout"]["classes"] == 3 and record["layout"]["files"] == {"sketch": 180, "photo": 180}
    dataset = folder_dataset(directory / "mini")
    assert dataset.classes == list(CLASSES) and len(dataset) == 360
    # Idempotent: the second run finds the marker and makes no request.
    before = len(server.requests)
    messages = []
    assert download(source, tmp_path, log=messages.append) == directory
    assert len(server.requests) == before and "already" in messages[0]


def test_resume_after_cut_connection(server, mini_zip, tmp_path):
    server.files["mini.zip"] = mini_zip
    server.cut_once.add("mini.zip")
    source = mini_source(f"{server.base}/mini.zip", "mini.zip", sha(mini_zip))
    download(source, tmp_path, log=lambda _: None)
    assert server.requests[0] == ("mini.zip", None)
    resumed = server.requests[1][1]
    assert resumed is not None and int(re.fullmatch(r"bytes=(\d+)-", resumed).group(1)) == len(mini_zip) // 2
    assert read_ready(source, tmp_path)["files"]["mini.zip"] == sha(mini_zip)
    assert sha((tmp_path / "_downloads" / "mini.zip").read_bytes()) == sha(mini_zip)


@pytest.mark.parametrize("ignore_range", [False, True])
def test_resume_from_partial_file_of_an_earlier_run(server, mini_zip, tmp_path, ignore_range):
    server.files["mini.zip"] = mini_zip
    server.ignore_range = ignore_range  # a server without Range support: start again
    (tmp_path / "_downloads").mkdir()
    (tmp_path / "_downloads" / "mini.zip.part").write_bytes(mini_zip[:1000])
    source = mini_source(f"{server.base}/mini.zip", "mini.zip", sha(mini_zip))
    download(source, tmp_path, log=lambda _: None)
    assert server.requests == [("mini.zip", "bytes=1000-")]
    assert read_ready(source, tmp_path) is not None


def test_checksum_mismatch_marks_nothing_ready(server, mini_zip, tmp_path):
    server.files["mini.zip"] = mini_zip
    source = mini_source(f"{server.base}/mini.zip", "mini.zip", "0" * 64)
    with pytest.raises(ChecksumError, match="expected 0000") as caught:
        download(source, tmp_path, log=lambda _: None)
    assert sha(mini_zip) in str(caught.value)
    assert read_ready(source, tmp_path) is None
    assert not (tmp_path / "mini").exists()  # checked before extraction
    assert (tmp_path / "_downloads" / "mini.zip.bad").is_file()


@pytest.mark.parametrize("evil", ["../escaped.png", "../../escaped.png", "ABSOLUTE"])
def test_archive_escaping_the_target_is_refused(server, mini_sbir, tmp_path, evil):
    root = tmp_path / "root"
    outside = tmp_path / "abs" / "escaped.png"
    name = str(outside) if evil == "ABSOLUTE" else f"mini/{evil}"
    entries = list(members(mini_sbir, classes=("cat",)))[:3]
    data = zip_bytes(entries + [(name, entries[0][1])])
    server.files["evil.zip"] = data
    source = mini_source(f"{server.base}/evil.zip", "evil.zip", sha(data))
    with pytest.raises(UnsafeArchiveError, match="refusing"):
        download(source, root, log=lambda _: None)
    assert not outside.exists() and not (root / "escaped.png").exists() and not (tmp_path / "escaped.png").exists()
    assert not (root / "mini" / "mini").exists()  # nothing extracted at all
    assert read_ready(source, root) is None


def test_tar_links_pointing_outside_are_refused(mini_sbir, tmp_path):
    entries = list(members(mini_sbir, classes=("cat",)))[:2]
    for kind, target in ((tarfile.SYMTYPE, "../../outside"), (tarfile.SYMTYPE, "/etc"), (tarfile.LNKTYPE, "../x")):
        archive = tmp_path / "links.tar.gz"
        archive.write_bytes(tar_bytes(entries, links=[("mini/link", kind, target)]))
        with pytest.raises(UnsafeArchiveError, match="link"):
            safe_extract(archive, tmp_path / "target")
        assert not (tmp_path / "target" / "mini").exists()
    inside = tmp_path / "inside.tar.gz"  # a link that stays inside is fine
    inside.write_bytes(tar_bytes(entries, links=[("mini/link", tarfile.SYMTYPE, "sketch")]))
    assert safe_extract(inside, tmp_path / "ok") == 3


def test_zip_symlink_member_is_refused(tmp_path):
    info = zipfile.ZipInfo("mini/link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr(info, "../../etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="symlink"):
        safe_extract(archive, tmp_path / "target")


def test_unreachable_host_fails_fast(tmp_path):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    source = mini_source(f"http://127.0.0.1:{port}/mini.zip", "mini.zip", "a" * 64)
    started = time.monotonic()
    with pytest.raises(DownloadError, match="cannot connect"):
        download(source, tmp_path, log=lambda _: None)
    assert time.monotonic() - started < 3
    assert read_ready(source, tmp_path) is None


def test_unknown_checksum_needs_consent_then_pins(server, mini_zip, tmp_path):
    server.files["mini.zip"] = mini_zip
    source = mini_source(f"{server.base}/mini.zip", "mini.zip", None)
    with pytest.raises(DownloadError, match="--trust-on-first-use"):
        download(source, tmp_path, log=lambda _: None)
    assert server.requests == []  # refused before any network use
    messages: list[str] = []
    download(source, tmp_path, trust_on_first_use=True, log=messages.append)
    assert any("TRUST ON FIRST USE" in m and sha(mini_zip) in m for m in messages)
    pin = tmp_path / "_downloads" / "mini.zip.sha256"
    assert pin.read_text().split()[0] == sha(mini_zip)
    assert verify(source, tmp_path, log=lambda _: None)["files"]["mini.zip"] == sha(mini_zip)
    with open(tmp_path / "_downloads" / "mini.zip", "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ChecksumError):
        verify(source, tmp_path, log=lambda _: None)
    assert read_ready(source, tmp_path) is None


def test_manual_step_prints_the_path_then_uses_the_placed_file(server, mini_zip, tmp_path):
    source = mini_source(None, "mini.zip", sha(mini_zip), manual="Fetch it by hand and save it as {path}")
    with pytest.raises(ManualStepRequired) as caught:
        download(source, tmp_path, log=lambda _: None)
    target = tmp_path / "_downloads" / "mini.zip"
    assert str(target) in str(caught.value) and read_ready(source, tmp_path) is None
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(mini_zip)
    download(source, tmp_path, log=lambda _: None)
    assert server.requests == [] and read_ready(source, tmp_path) is not None


def test_mirror_rewrites_every_url(server, mini_zip, tmp_path, monkeypatch):
    mirrored = get_source(SOURCES["quickdraw"], mirror="http://mirror.example/data/")
    assert [f.url for f in mirrored.files] == [
        "http://mirror.example/data/QuickDraw_sketches_final.zip",
        "http://mirror.example/data/QuickDraw_images_final.zip",
    ]
    server.files["mini.zip"] = mini_zip
    monkeypatch.setenv("MARS_LITE_DATA_MIRROR", server.base)
    source = mini_source("http://unreachable.invalid/mini.zip", "mini.zip", sha(mini_zip))
    download(source, tmp_path, log=lambda _: None)
    assert server.requests == [("mini.zip", None)]


def test_cli_download_verify_list_with_mirror(server, data_root, tmp_path, monkeypatch, capsys):
    for path in sorted((data_root / "quickdraw_bitmap").glob("*.npy")):
        server.files[path.name] = path.read_bytes()
    monkeypatch.setenv("MARS_LITE_DATA_MIRROR", server.base)
    args = ["data", "download", "quickdraw-bitmap", "--root", str(tmp_path), "--no-progress"]
    assert cli_main(args) == 1
    assert "--trust-on-first-use" in capsys.readouterr().err and server.requests == []
    assert cli_main(args + ["--trust-on-first-use"]) == 0
    assert len(server.requests) == 14
    assert "TRUST ON FIRST USE" in capsys.readouterr().out
    assert quickdraw_dataset(tmp_path / "quickdraw_bitmap").classes == sorted(
        SOURCES["quickdraw-bitmap"].expected_classes)
    assert cli_main(["data", "verify", "quickdraw-bitmap", "--root", str(tmp_path)]) == 0
    assert cli_main(["data", "list", "--root", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert re.search(r"quickdraw-bitmap\s+ready", listing) and re.search(r"quickdraw\s+not ready", listing)
    assert cli_main(args) == 0 and len(server.requests) == 14  # idempotent
    record = json.loads((tmp_path / "quickdraw_bitmap" / ".mars_lite_ready-quickdraw-bitmap.json").read_text())
    assert len(record["files"]) == 14 and all(record["files"].values())


def test_hand_installed_source_is_explained_then_verified(mini_sbir, tmp_path):
    source = Source("by-hand", "placed by the user (test)", "mini", "folder", (), homepage="",
                    licence="test", citation="test", manual="Copy the data into {dir}",
                    expected_classes=CLASSES)
    with pytest.raises(ManualStepRequired) as caught:
        download(source, tmp_path, log=lambda _: None)
    assert str(tmp_path / "mini") in str(caught.value) and "mars-lite data verify by-hand" in str(caught.value)
    for name, data in members(mini_sbir):
        (tmp_path / "mini" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "mini" / name).write_bytes(data)
    record = verify(source, tmp_path, log=lambda _: None)
    assert record["files"] == {} and record["layout"]["files"] == {"sketch": 180, "photo": 180}
    assert read_ready(source, tmp_path) == record


def test_truncated_download_without_length_is_never_pinned(server, mini_zip, tmp_path):
    server.files["mini.zip"] = mini_zip
    server.cut_unsized_once.add("mini.zip")  # arrives "complete" as far as HTTP can tell
    source = mini_source(f"{server.base}/mini.zip", "mini.zip", None)
    messages: list[str] = []
    with pytest.raises(DownloadError) as caught:
        download(source, tmp_path, trust_on_first_use=True, log=messages.append)
    archive = tmp_path / "_downloads" / "mini.zip"
    message = str(caught.value)
    assert str(archive) in message and "BadZipFile" in message and "again" in message
    assert not (tmp_path / "_downloads" / "mini.zip.sha256").exists()  # nothing pinned
    assert not any("TRUST ON FIRST USE" in m for m in messages) and read_ready(source, tmp_path) is None
    assert (tmp_path / "_downloads" / "mini.zip.bad").stat().st_size == len(mini_zip) // 2
    # The way out works: the next run fetches the whole file, pins it and marks the data ready.
    download(source, tmp_path, trust_on_first_use=True, log=messages.append)
    assert (tmp_path / "_downloads" / "mini.zip.sha256").read_text().split()[0] == sha(mini_zip)
    assert verify(source, tmp_path, log=lambda _: None)["files"]["mini.zip"] == sha(mini_zip)


def test_broken_archive_with_a_known_checksum_is_named_and_kept(mini_zip, tmp_path):
    cut = mini_zip[: len(mini_zip) // 2]
    source = mini_source(None, "mini.zip", sha(cut), manual="save it as {path}")
    (tmp_path / "_downloads").mkdir()
    (tmp_path / "_downloads" / "mini.zip").write_bytes(cut)
    with pytest.raises(DownloadError, match="matches its expected sha256") as caught:
        download(source, tmp_path, log=lambda _: None)
    assert str(tmp_path / "_downloads" / "mini.zip") in str(caught.value) and "delete" in str(caught.value)
    assert (tmp_path / "_downloads" / "mini.zip").is_file() and read_ready(source, tmp_path) is None


def test_failed_verify_clears_the_ready_marker(mini_sbir, tmp_path, capsys):
    source = Source("by-hand", "placed by the user (test)", "mini", "folder", (), homepage="",
                    licence="test", citation="test", manual="Copy the data into {dir}",
                    expected_classes=CLASSES)
    for name, data in members(mini_sbir):
        (tmp_path / "mini" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "mini" / name).write_bytes(data)
    verify(source, tmp_path, log=lambda _: None)
    assert read_ready(source, tmp_path) is not None
    # a real image goes corrupt: truncate a real PNG of mini_sbir
    png = sorted((tmp_path / "mini" / "mini" / "sketch" / "cat").glob("*.png"))[0]
    png.write_bytes(png.read_bytes()[:300])
    with pytest.raises(DownloadError, match=re.escape(str(png))):
        verify(source, tmp_path, log=lambda _: None)
    assert read_ready(source, tmp_path) is None
    # so the next download does not claim it is "already downloaded and checked"
    messages: list[str] = []
    with pytest.raises(ManualStepRequired):
        download(source, tmp_path, log=messages.append)
    assert not any("already" in m for m in messages)


def zeros_zip(path: Path, megabytes: int, members: int = 1) -> Path:
    """A real zip of ``members`` files of zeros, written in 1 MiB blocks (a few KiB on disk)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as handle:
        for index in range(members):
            with handle.open(f"zeros/{index}.bin", "w") as out:
                for _ in range(megabytes):
                    out.write(bytes(1 << 20))
    return path


def test_zip_bomb_is_refused_before_extracting(tmp_path):
    bomb = zeros_zip(tmp_path / "bomb.zip", 64)
    assert bomb.stat().st_size < 200_000
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="ratio") as caught:
        safe_extract(bomb, target)  # default limits: a 1000:1 member is refused
    assert str(bomb) in str(caught.value) and "max_ratio" in str(caught.value)
    with pytest.raises(UnsafeArchiveError, match="declares 67,108,864 bytes"):
        safe_extract(bomb, target, max_ratio=10_000, max_bytes=10 << 20)
    with pytest.raises(UnsafeArchiveError, match="3 members"):
        safe_extract(zeros_zip(tmp_path / "many.zip", 1, members=3), target, max_members=2)
    assert list(target.rglob("*.bin")) == []  # nothing was written
    assert safe_extract(bomb, target, max_ratio=10_000) == 1  # trusted: allowed by keyword
    assert (target / "zeros" / "0.bin").stat().st_size == 64 << 20


def test_tar_bomb_is_refused_from_its_headers(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as handle:
        info = tarfile.TarInfo("zeros.bin")
        info.size = 32 << 20
        handle.addfile(info, io.BytesIO(bytes(info.size)))
    (tmp_path / "bomb.tar.gz").write_bytes(buffer.getvalue())
    with pytest.raises(UnsafeArchiveError, match="bomb.tar.gz.*declares 33,554,432 bytes"):
        safe_extract(tmp_path / "bomb.tar.gz", tmp_path / "out", max_bytes=1 << 20)
    assert not (tmp_path / "out" / "zeros.bin").exists()


def test_extraction_stops_when_content_outgrows_the_headers(tmp_path, monkeypatch):
    from mars_lite.data import archives

    bomb = zeros_zip(tmp_path / "liar.zip", 8)
    monkeypatch.setattr(archives._Limits, "check_declared", lambda *args: None)  # headers that lie
    with pytest.raises(UnsafeArchiveError, match="outgrew its headers"):
        safe_extract(bomb, tmp_path / "out", max_bytes=3 << 20, max_ratio=10_000)
    assert not (tmp_path / "out" / "zeros" / "0.bin").exists()  # the partial member is removed


def test_a_broken_archive_pinned_by_an_older_version_is_unpinned(server, mini_zip, tmp_path):
    cut = mini_zip[: len(mini_zip) // 3]
    downloads = tmp_path / "_downloads"
    downloads.mkdir()
    (downloads / "mini.zip").write_bytes(cut)  # what the old trust-on-first-use kept and pinned
    (downloads / "mini.zip.sha256").write_text(f"{sha(cut)}  mini.zip\n")
    server.files["mini.zip"] = mini_zip
    source = mini_source(f"{server.base}/mini.zip", "mini.zip", None)
    with pytest.raises(DownloadError, match="pin .*mini.zip.sha256 was removed"):
        download(source, tmp_path, log=lambda _: None)
    assert not (downloads / "mini.zip.sha256").exists() and not (downloads / "mini.zip").exists()
    download(source, tmp_path, trust_on_first_use=True, log=lambda _: None)
    assert (downloads / "mini.zip.sha256").read_text().split()[0] == sha(mini_zip)
    assert read_ready(source, tmp_path) is not None
