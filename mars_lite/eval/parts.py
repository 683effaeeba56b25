"""Fill the embedding cache for a dataset (or a split's parts) ahead of time.

Each part is embedded with ``mars_lite.embed.embed_items`` into ``--out`` (the cache root),
exactly as ``evaluate``/training ask for it, so a later run reuses the entry. An entry whose
manifest does not match the files on disk or the model is recomputed, never reused.

Parts (``--parts``, comma-separated): ``query`` (sketches of the unseen classes), ``gallery``
(their photos), ``seen_photos`` (seen-class validation photos, the generalized gallery's extra),
``finegrained_photos`` (Sketchy's original photos, which fine-grained retrieval ranks; for other
datasets that is the gallery itself), ``train`` and ``val`` (seen classes, split by the split's
validation rule), ``all`` (every image in one entry). Without a split (no ``--split`` and no
``<data>/split_zs.json``) the only part is ``all``.
"""
from __future__ import annotations

import os
from typing import Sequence

from ..data.items import ImageDataset
from ..data.locations import resolve_data
from ..data.sources import open_dataset, resolve_split
from ..embed import EmbeddingSet, embed_items
from ..method.loading import DEFAULT, open_model
from .evaluation import EVAL_PARTS, load_eval_data

SPLIT_PARTS = ("train", "val")
PARTS = EVAL_PARTS + SPLIT_PARTS + ("all",)
DEFAULT_PARTS = ("query", "gallery")


def dataset_parts(data: str | os.PathLike, split=None, parts: Sequence[str] = DEFAULT_PARTS, *,
                  on_error: str = "raise") -> dict[str, ImageDataset]:
    """The image sets to embed, by part name (see the module docstring); empty parts are dropped.
    ``on_error`` (``raise``/``skip``) is what to do with unreadable image files (``open_dataset``)."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown part(s) {unknown}; choose from {list(PARTS)}")
    root = resolve_data(data)
    if split is None and not (root / "split_zs.json").is_file():
        if set(parts) - {"all"}:
            raise ValueError(f"{root} has no split (no --split, no split_zs.json): only the part 'all' exists")
        return {"all": open_dataset(root, on_error=on_error)}
    split = resolve_split(root, split)
    out: dict[str, ImageDataset] = {}
    wanted_eval = [p for p in parts if p in EVAL_PARTS]
    if wanted_eval:
        eval_data = load_eval_data(root, split, generalized="seen_photos" in parts,
                                   finegrained="finegrained_photos" in parts, on_error=on_error)
        out.update({name: ds for name, ds in eval_data.parts().items() if name in wanted_eval})
    if set(parts) & {"train", "val", "all"}:
        everything = open_dataset(root, split, on_error=on_error)
        if "all" in parts:
            out["all"] = everything
        if set(parts) & set(SPLIT_PARTS):
            cut = split.partition(everything)
            out.update({name: getattr(cut, name) for name in SPLIT_PARTS if name in parts})
    return {name: ds for name, ds in out.items() if len(ds)}


def embed_dataset(model_or_checkpoint, data: str | os.PathLike, out: str | os.PathLike, split=None, *,
                  parts: Sequence[str] = DEFAULT_PARTS, pretrained: str | None = DEFAULT, device=None,
                  seed: int | None = None, batch_size: int = 64, progress: bool = False,
                  on_error: str = "raise") -> dict[str, EmbeddingSet]:
    """Embed each part into the cache rooted at ``out``; returns part -> EmbeddingSet
    (``from_cache`` says whether the entry was reused). The images are read (and checked, see
    ``on_error``) before the model loads."""
    sets = dataset_parts(data, split, parts, on_error=on_error)
    model, _ = open_model(model_or_checkpoint, pretrained=pretrained, device=device, seed=seed)
    return {name: embed_items(model, ds, out, batch_size=batch_size, progress=progress or None)
            for name, ds in sets.items()}
