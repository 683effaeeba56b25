"""The one interface every dataset in ``mars_lite.data`` yields: ``ImageItem`` in an ``ImageDataset``.

An item is an image file (or one row of a Quick, Draw! ``.npy`` bitmap file), its modality
(``"sketch"`` or ``"photo"``) and its class name. A dataset is an immutable, ordered sequence of
items that also remembers where it was read from and which files it skipped and why.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

from PIL import Image

SKETCH = "sketch"
PHOTO = "photo"
MODALITIES = (SKETCH, PHOTO)


@dataclass(frozen=True)
class ImageItem:
    """One image: ``path`` to the file, ``modality`` ("sketch"/"photo"), ``label`` (class name).

    ``index`` is ``None`` for ordinary image files; for a Quick, Draw! bitmap file it is the row
    of the ``(N, 784)`` array, and ``load()`` renders that row as a sketch.
    """

    path: Path
    modality: str
    label: str
    index: int | None = None

    def load(self) -> Image.Image:
        """The image as RGB (``load_image`` for files, rendered bitmap for ``.npy`` rows)."""
        if self.index is not None:
            from .bitmaps import load_bitmap_row

            return load_bitmap_row(self.path, self.index)
        from .images import load_image

        return load_image(self.path)

    def key(self, root: Path | None) -> str:
        """Stable id relative to ``root`` (POSIX path, ``#row`` for bitmap rows)."""
        path = self.path
        if root is not None:
            try:
                path = self.path.relative_to(root)
            except ValueError:
                pass
        text = path.as_posix()
        return text if self.index is None else f"{text}#{self.index}"


class ImageDataset(Sequence):
    """An ordered, read-only list of ``ImageItem`` plus provenance.

    ``root``    folder the items were read from (relative keys are taken from it);
    ``skipped`` list of ``(path, reason)`` for files left out with ``on_error="skip"``;
    ``ignored`` non-image files found in class folders (e.g. ``.txt``), listed for the record.
    """

    def __init__(
        self,
        items: Iterable[ImageItem],
        root: Path | None = None,
        skipped: Iterable[tuple[Path, str]] = (),
        ignored: Iterable[Path] = (),
    ):
        self._items = tuple(items)
        self.root = root
        self.skipped: list[tuple[Path, str]] = list(skipped)
        self.ignored: list[Path] = list(ignored)

    @overload
    def __getitem__(self, index: int) -> ImageItem: ...
    @overload
    def __getitem__(self, index: slice) -> ImageDataset: ...
    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.with_items(self._items[index])
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        counts = self.counts()
        return (
            f"ImageDataset({len(self)} items, {len(self.classes)} classes, "
            f"{counts.get(SKETCH, 0)} sketches, {counts.get(PHOTO, 0)} photos, root={self.root})"
        )

    def with_items(self, items: Iterable[ImageItem]) -> ImageDataset:
        """A dataset with the same root and skip record holding ``items``."""
        return ImageDataset(items, root=self.root, skipped=self.skipped, ignored=self.ignored)

    @property
    def classes(self) -> list[str]:
        """Sorted class names present."""
        return sorted({item.label for item in self._items})

    def counts(self) -> Counter:
        """Number of items per modality."""
        return Counter(item.modality for item in self._items)

    def select(
        self,
        modality: str | None = None,
        classes: Iterable[str] | None = None,
    ) -> ImageDataset:
        """Items of one modality and/or a set of classes (exact label match), order kept."""
        wanted = None if classes is None else set(classes)
        return self.with_items(
            item
            for item in self._items
            if (modality is None or item.modality == modality)
            and (wanted is None or item.label in wanted)
        )

    def sketches(self) -> ImageDataset:
        return self.select(modality=SKETCH)

    def photos(self) -> ImageDataset:
        return self.select(modality=PHOTO)

    def key(self, item: ImageItem) -> str:
        """Stable relative id of ``item`` (see ``ImageItem.key``)."""
        return item.key(self.root)
