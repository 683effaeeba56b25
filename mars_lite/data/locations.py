"""Where a dataset lives: the folders built into the package, and the resolution order.

Wherever a dataset is accepted (``--data``, ``data=`` in the Python API, the demo gallery): an
explicit folder, else the ``MARS_LITE_DATA`` folder, else the copy built into the package
(``mars_lite/data/builtin``: ``mini_sbir`` and the Quick, Draw! bitmaps, see its README). A
built-in name (``"mini_sbir"``) is looked up in ``MARS_LITE_DATA`` first, then in the package, so a
data folder that holds only downloaded benchmarks still finds the built-in set.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

from .. import settings
from .scanning import LayoutError

MINI_SBIR = "mini_sbir"
BUILTIN_SETS = (MINI_SBIR, "quickdraw_bitmap")


def builtin_path(name: str = MINI_SBIR) -> Path:
    """The folder of a data set shipped inside the package (``mini_sbir``, ``quickdraw_bitmap``)."""
    if name not in BUILTIN_SETS:
        raise KeyError(f"no built-in data set {name!r}; built-in: {list(BUILTIN_SETS)}")
    path = settings.BUILTIN_DATA_DIR / name
    if not path.is_dir():
        raise FileNotFoundError(f"the built-in data set {path} is missing: reinstall mars_lite "
                                "(the package ships it) or point --data at a copy")
    return path


def resolve_data(data: str | os.PathLike | None = None) -> Path:
    """The dataset folder for ``data``: a folder, a built-in name, or ``None`` for ``mini_sbir``.

    A built-in name is taken from ``$MARS_LITE_DATA/<name>`` when that folder exists, else from
    the package. Raises ``LayoutError`` (a ``FileNotFoundError``) naming the folder when it is missing.
    """
    name = MINI_SBIR if data is None else os.fspath(data)
    if name in BUILTIN_SETS:
        root = settings.data_root(required=False)
        mine = root / name if root is not None else None
        return mine if mine is not None and mine.is_dir() else builtin_path(name)
    path = Path(name).expanduser()
    if not path.is_dir():
        raise LayoutError(_missing_message(path))
    return path.resolve()


def _folders_in(folder: Path | None) -> list[str]:
    try:
        return [str(p) for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith((".", "_"))]
    except (OSError, AttributeError):  # no such folder, no permission, or None
        return []


def _missing_message(path: Path) -> str:
    """Why ``path`` is refused, with what could have been meant (close spellings, built-in names)."""
    what = "is a file, not a folder" if path.is_file() else "does not exist"
    root = settings.data_root(required=False)
    in_data = _folders_in(root) if root != settings.BUILTIN_DATA_DIR else []
    close = difflib.get_close_matches(str(path), _folders_in(path.parent) + in_data + list(BUILTIN_SETS),
                                      n=3, cutoff=0.75)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    listed = f"; folders in MARS_LITE_DATA: {in_data}" if in_data else ""
    return (f"data folder {str(path)!r} {what}.{hint} Pass a folder laid out as "
            f"<root>/<sketch|photo>/<class>/<image>, a benchmark root, or a built-in name "
            f"({', '.join(BUILTIN_SETS)}){listed}")
