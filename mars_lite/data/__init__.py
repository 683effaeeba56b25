"""Data layer: image loading, datasets, zero-shot splits and downloads (no torch imports).

Modules: ``images`` (load_image, check_image), ``items`` (ImageItem, ImageDataset), ``scanning``
(class folders listed and validated), ``folder`` (``<root>/<modality>/<class>/<file>`` or a bare
folder), ``benchmarks`` (Sketchy/TU-Berlin/QuickDraw-Extended layouts), ``bitmaps`` + ``quickdraw`` (numpy_bitmap rows rendered as sketches), ``splits``
(manifests), ``locations`` (the built-in data and the resolution order), ``sources`` (the one
dataset opener), ``registry`` / ``download`` / ``fetching`` / ``archives`` / ``layout_checks``
(fetching datasets).
``builtin/`` holds mini_sbir and the Quick, Draw! bitmaps (see its README for sources and licences).
"""
from __future__ import annotations

from .archives import UnsafeArchiveError, safe_extract
from .benchmarks import (
    ClassMismatchError,
    benchmark_classes,
    benchmark_dataset,
    check_layout,
    quickdraw_extended,
    sketchy_extended,
    tuberlin_extended,
)
from .download import (
    ChecksumError,
    DownloadError,
    ManualStepRequired,
    download,
    fetch,
    read_ready,
    sha256_file,
    verify,
)
from .folder import folder_dataset
from .scanning import LayoutError, UnreadableImagesError, class_key
from .images import ImageLoadError, check_image, is_image_file, load_image, to_rgb
from .items import MODALITIES, PHOTO, SKETCH, ImageDataset, ImageItem
from .locations import BUILTIN_SETS, MINI_SBIR, builtin_path, resolve_data
from .quickdraw import quickdraw_dataset, render_bitmap
from .registry import SOURCES, RemoteFile, Source, get_source
from .sources import open_dataset, resolve_split
from .splits import Split, SplitParts, ValRule, folder_split, list_splits, load_split

__all__ = [
    "BUILTIN_SETS", "MINI_SBIR", "MODALITIES", "PHOTO", "SKETCH", "SOURCES",
    "ChecksumError", "ClassMismatchError", "DownloadError", "ImageDataset", "ImageItem",
    "ImageLoadError", "LayoutError", "ManualStepRequired", "RemoteFile", "Source", "Split",
    "SplitParts", "UnreadableImagesError", "UnsafeArchiveError", "ValRule",
    "benchmark_classes", "benchmark_dataset", "builtin_path", "open_dataset", "resolve_data", "resolve_split", "check_image", "check_layout", "class_key",
    "download", "fetch", "folder_dataset", "folder_split", "get_source", "is_image_file",
    "list_splits", "load_image", "load_split", "quickdraw_dataset", "quickdraw_extended",
    "read_ready", "render_bitmap", "safe_extract", "sha256_file", "sketchy_extended",
    "to_rgb", "tuberlin_extended", "verify",
]
