"""Where the benchmark datasets come from: URLs as their authors (or the standard ZS-SBIR
repositories) publish them, archive types, the layout check to run, and manual steps.

**Checksums.** No distributor of these datasets publishes a sha256, so every ``sha256`` below is
``None`` -- deliberately: a made-up checksum would be worse than none. ``mars-lite data download``
therefore refuses an unpinned file unless you either pass the checksum you trust
(``--sha256 FILE=HEX``) or accept trust-on-first-use (``--trust-on-first-use``): the sha256 of
what arrives is then printed loudly and pinned in ``<root>/_downloads/FILE.sha256``, and every
later ``verify`` compares against that pin. A pin protects against later corruption or change,
not against a bad first download.

**Availability.** The URLs were taken from the sources cited in each entry; they could not be
tried from the machine this was written on (no internet). Google Drive files cannot be fetched
reliably by a script (confirmation pages, quotas), so those are manual steps: the command prints
where to save the file, then picks it up (checksum, extraction, layout check) on the next run.

**Tests and mirrors.** Every function taking a source name also takes a ``Source`` object, and
``MARS_LITE_DATA_MIRROR=http://host/path`` (or ``--mirror``) replaces each file's URL with
``<mirror>/<filename>`` -- a local mirror, or the test server.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

MIRROR_ENV = "MARS_LITE_DATA_MIRROR"
ARCHIVE_KINDS = ("zip", "tar", "none")  # "tar" covers .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz
LAYOUT_KINDS = ("sketchy", "tuberlin", "quickdraw", "folder", "quickdraw_bitmap")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a source. ``url=None`` means it has to be fetched by hand (see ``manual``)."""

    filename: str
    url: str | None
    sha256: str | None = None  # None: not published by the distributor (see module docstring)
    archive: str = "zip"
    manual: str = ""  # how to get the file when it cannot be fetched automatically

    def __post_init__(self):
        if self.archive not in ARCHIVE_KINDS:
            raise ValueError(f"{self.filename}: archive must be one of {ARCHIVE_KINDS}")
        if self.url is None and not self.manual:
            raise ValueError(f"{self.filename}: a file without url needs manual instructions")


@dataclass(frozen=True)
class Source:
    """A downloadable dataset: files, the folder they go to under ``--root``, the layout check.

    ``layout`` names the check run after extraction: a benchmark layout ("sketchy", "tuberlin",
    "quickdraw", see ``benchmarks.py``), "folder" (``<modality>/<class>/<file>``, optionally
    with exactly ``expected_classes``) or "quickdraw_bitmap" (one ``<class>.npy`` per expected
    class). ``manual`` holds instructions for a source whose data cannot be fetched at all.
    """

    name: str
    title: str
    directory: str
    layout: str
    files: tuple[RemoteFile, ...]
    homepage: str
    licence: str
    citation: str
    notes: str = ""
    manual: str = ""
    expected_classes: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.layout not in LAYOUT_KINDS:
            raise ValueError(f"source {self.name}: layout must be one of {LAYOUT_KINDS}")


_SAKE_ZIP = RemoteFile(
    "sake_dataset.zip",
    "https://cs.jhu.edu/~qliu24/ZSSBIR/dataset.zip",
    archive="zip",
)
_SAKE_NOTE = (
    "SAKE's resized copies of Sketchy-Extended and TU-Berlin-Extended plus its zero-shot file "
    "lists, in one zip (URL from the README of github.com/qliu24/SAKE). 'sketchy' and "
    "'tuberlin' share this archive; it is downloaded once."
)
_QUICKDRAW_BITMAP_CLASSES = (
    "ant", "bicycle", "butterfly", "camel", "cat", "cloud", "crown", "elephant", "helicopter",
    "key", "keyboard", "lion", "pizza", "sheep",
)

SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        Source(
            "sketchy", "Sketchy-Extended (SAKE resized release)", "sake", "sketchy", (_SAKE_ZIP,),
            homepage="https://github.com/qliu24/SAKE",
            licence="Sketchy: research use (see sketchy.eye.gatech.edu); photos: ImageNet terms",
            citation="Sangkloy et al., SIGGRAPH 2016; Liu et al., CVPR 2017; Liu et al., ICCV 2019",
            notes=_SAKE_NOTE,
        ),
        Source(
            "tuberlin", "TU-Berlin-Extended (SAKE resized release)", "sake", "tuberlin", (_SAKE_ZIP,),
            homepage="https://github.com/qliu24/SAKE",
            licence="TU-Berlin sketches: CC BY 4.0; photos: ImageNet terms",
            citation="Eitz et al., SIGGRAPH 2012; Zhang et al., ECCV 2016; Liu et al., ICCV 2019",
            notes=_SAKE_NOTE,
        ),
        Source(
            "sketchy-official", "Sketchy + extended photos (authors' release)", "sketchy", "sketchy", (),
            homepage="https://sketchy.eye.gatech.edu/",
            licence="Sketchy: research use; photos: ImageNet terms",
            citation="Sangkloy et al., SIGGRAPH 2016; Liu et al., CVPR 2017",
            manual=(
                "1. Download rendered_256x256.7z from https://sketchy.eye.gatech.edu/ and extract it "
                "(7z; needs p7zip) so that {dir}/256x256/sketch/tx_000000000000/<class>/ exists.\n"
                "2. Download the extended photos zip (Google Drive file id "
                "0B2U-hnwRkpRrdGZKTzkwbkEwVkk, as listed in the Doodle2Search and SEM-PCYC "
                "download scripts: https://drive.google.com/uc?id=0B2U-hnwRkpRrdGZKTzkwbkEwVkk) and "
                "unzip it so that {dir}/EXTEND_image_sketchy/<class>/ exists."
            ),
        ),
        Source(
            "tuberlin-official", "TU-Berlin sketches + extended photos (authors' release)",
            "tuberlin", "tuberlin",
            (
                RemoteFile("sketches_png.zip",
                           "http://cybertron.cg.tu-berlin.de/eitz/projects/classifysketch/sketches_png.zip"),
                RemoteFile(
                    "tuberlin_images.zip", None,
                    manual=(
                        "Download the TU-Berlin extended photos (Google Drive file id "
                        "0B2U-hnwRkpRrMFVvTmFQa3dmSUk, as listed in the Doodle2Search and SEM-PCYC "
                        "download scripts: https://drive.google.com/uc?id=0B2U-hnwRkpRrMFVvTmFQa3dmSUk) "
                        "and save it as {path}"
                    ),
                ),
            ),
            homepage="http://cybertron.cg.tu-berlin.de/eitz/projects/classifysketch/",
            licence="sketches: CC BY 4.0; photos: ImageNet terms",
            citation="Eitz et al., SIGGRAPH 2012; Zhang et al., ECCV 2016",
        ),
        Source(
            "quickdraw", "QuickDraw-Extended", "quickdraw_extended", "quickdraw",
            (
                RemoteFile("QuickDraw_sketches_final.zip",
                           "http://datasets.cvc.uab.es/QuickDraw/QuickDraw_sketches_final.zip"),
                RemoteFile("QuickDraw_images_final.zip",
                           "http://datasets.cvc.uab.es/QuickDraw/QuickDraw_images_final.zip"),
            ),
            homepage="https://github.com/sounakdey/doodle2search",
            licence="sketches: Quick, Draw! CC BY 4.0; photos: collected from Flickr (research use)",
            citation="Dey et al., Doodle to Search, CVPR 2019",
            notes="URLs from the README of github.com/sounakdey/doodle2search.",
        ),
        Source(
            "quickdraw-bitmap", "Quick, Draw! numpy_bitmap files (14 classes of the shared set)",
            "quickdraw_bitmap", "quickdraw_bitmap",
            tuple(
                RemoteFile(f"{name}.npy",
                           f"https://storage.googleapis.com/quickdraw_dataset/full/numpy_bitmap/{name}.npy",
                           archive="none")
                for name in _QUICKDRAW_BITMAP_CLASSES
            ),
            homepage="https://github.com/googlecreativelab/quickdraw-dataset",
            licence="CC BY 4.0",
            citation="The Quick, Draw! Dataset, Google",
            notes="Full per-class files (~100k drawings each); the built-in copy keeps 299 rows each.",
            expected_classes=_QUICKDRAW_BITMAP_CLASSES,
        ),
    )
}


def with_mirror(source: Source, mirror: str) -> Source:
    """``source`` with every file fetched from ``<mirror>/<filename>`` (manual ones included)."""
    base = mirror.rstrip("/")
    files = tuple(dataclasses.replace(f, url=f"{base}/{f.filename}", manual="") for f in source.files)
    return dataclasses.replace(source, files=files)


def get_source(source: str | Source, mirror: str | None = None) -> Source:
    """Look up a source by name (or pass a ``Source`` through), applying a mirror if given.

    ``mirror=None`` reads ``$MARS_LITE_DATA_MIRROR``; ``mirror=""`` disables mirroring.
    """
    if isinstance(source, str):
        if source not in SOURCES:
            raise KeyError(f"unknown dataset {source!r}; known: {sorted(SOURCES)}")
        source = SOURCES[source]
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV, "")
    return with_mirror(source, mirror) if mirror else source
