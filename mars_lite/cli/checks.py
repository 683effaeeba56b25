"""Checks of command-line options that run before the work starts (before a model loads, before a
server child starts), so a bad option is one line (``OptionError``, exit 2) and not a traceback
in the browser or a failure at the end of a long run.

Paths come back absolute: a server child (Voilà, JupyterLab) runs its kernels from another
working directory, where a relative path would name another file or none.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .options import OptionError


def absolute(path: str | os.PathLike) -> str:
    """``path`` made absolute (``~`` expanded) against this process's working directory."""
    return str(Path(path).expanduser().resolve())


def check_checkpoint(path: str | os.PathLike) -> str:
    """The absolute path of a readable mars_lite checkpoint; ``OptionError`` naming it otherwise.

    Reads only the safetensors header (its metadata), not the tensors."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise OptionError(f"checkpoint {file} not found; pass a .safetensors file written by 'mars-lite train' "
                          "(best.safetensors or last.safetensors), 'default' or 'none'")
    try:
        from safetensors import safe_open
        with safe_open(str(file), framework="pt") as handle:
            meta = handle.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for a file that is not one
        raise OptionError(f"checkpoint {file} is not a readable safetensors file ({err})") from err
    if "mars_lite" not in meta:
        raise OptionError(f"checkpoint {file} has no mars_lite metadata: it is not a mars_lite checkpoint")
    return str(file.resolve())


def check_weights(model: str, pretrained: str | None) -> str | None:
    """Check a model config name and its weight source without building anything.

    Returns ``pretrained`` with a local weight file made absolute. Raises ``ConfigError`` (unknown
    model), ``WeightsUnavailableError`` (a tag neither cached nor downloadable) or ``OptionError``.
    """
    from ..method.loading import DEFAULT, config_weights, parse_pretrained
    from ..method.model import get_model_config, weight_source

    config = get_model_config(model)
    value = config_weights(model, pretrained)
    try:
        source = weight_source(config, value)  # create_model's own rule, without building
    except (KeyError, ValueError) as err:
        raise OptionError(f"--pretrained {value}: {err}") from err
    if source is not None and parse_pretrained(pretrained) != DEFAULT and Path(source).is_file():
        return absolute(source)  # a local weight file the user named
    return pretrained


def check_gallery(gallery: str, benchmark: str | None = None, split: str | None = None) -> str:
    """A gallery folder that holds photos (in the folder layout, or as ``benchmark``), and a
    ``split`` that fits it. Returns a built-in name unchanged, a folder absolute."""
    from ..data.benchmarks import resolve_layout
    from ..data.folder import find_modality_folders, folder_dataset
    from ..data.scanning import LayoutError
    from ..data.items import PHOTO
    from ..data.locations import BUILTIN_SETS, resolve_data
    from ..data.splits import load_split

    root = resolve_data(gallery)  # LayoutError naming the folder
    try:
        if benchmark:
            resolve_layout(benchmark, root)
        elif PHOTO not in find_modality_folders(root):
            try:  # a user's photo folder, <root>/<class>/<image> or unlabelled files (listed, not decoded)
                folder_dataset(root, modality=PHOTO, validate="none")
            except LayoutError:
                raise LayoutError(f"gallery {root} has no photo folder: expected {root}/photo/<class>/<image> "
                                  f"or {root}/<class>/<image> (or pass --benchmark sketchy|tuberlin|quickdraw "
                                  "for a benchmark root)") from None
        if split:
            load_split(split, root)
    except (KeyError, ValueError) as err:
        raise OptionError(str(err).strip("'\"")) from err
    return gallery if gallery in BUILTIN_SETS else str(root)


def check_output_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """A folder the command can write its results into: created when missing, never an existing
    file; a test file is written and removed. Returns it absolute."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise OptionError(f"{flag} {folder} is an existing file, not a folder; name a folder for the results")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise OptionError(f"{flag} {folder} is not a writable folder ({err.strerror or err}); "
                          "name a folder you can write to") from err
    return folder.resolve()
