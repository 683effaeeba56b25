"""``mars-lite embed``: fill the embedding cache for a dataset (or a split's parts) ahead of time.

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

import argparse
import os
from pathlib import Path
from typing import Sequence

from ..data.benchmarks import benchmark_dataset
from ..data.folder import folder_dataset
from ..data.items import ImageDataset
from ..embed import EmbeddingSet, embed_items
from ..eval.evaluation import EVAL_PARTS, add_model_arguments, load_eval_data, model_source, resolve_model, resolve_split

SPLIT_PARTS = ("train", "val")
PARTS = EVAL_PARTS + SPLIT_PARTS + ("all",)
DEFAULT_PARTS = ("query", "gallery")


def dataset_parts(data: str | os.PathLike, split=None, parts: Sequence[str] = DEFAULT_PARTS) -> dict[str, ImageDataset]:
    """The image sets to embed, by part name (see the module docstring); empty parts are dropped."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown part(s) {unknown}; choose from {list(PARTS)}")
    root = Path(data)
    if split is None and not (root / "split_zs.json").is_file():
        if set(parts) - {"all"}:
            raise ValueError(f"{root} has no split (no --split, no split_zs.json): only the part 'all' exists")
        return {"all": folder_dataset(root)}
    split = resolve_split(root, split)
    out: dict[str, ImageDataset] = {}
    wanted_eval = [p for p in parts if p in EVAL_PARTS]
    if wanted_eval:
        eval_data = load_eval_data(root, split, generalized="seen_photos" in parts,
                                   finegrained="finegrained_photos" in parts)
        out.update({name: ds for name, ds in eval_data.parts().items() if name in wanted_eval})
    if set(parts) & {"train", "val", "all"}:
        everything = (folder_dataset(root) if split.benchmark == "folder"
                      else benchmark_dataset(split.benchmark, root, classes=split.classes))
        if "all" in parts:
            out["all"] = everything
        if set(parts) & set(SPLIT_PARTS):
            cut = split.partition(everything)
            out.update({name: getattr(cut, name) for name in SPLIT_PARTS if name in parts})
    return {name: ds for name, ds in out.items() if len(ds)}


def embed_dataset(model_or_checkpoint, data: str | os.PathLike, out: str | os.PathLike, split=None, *,
                  parts: Sequence[str] = DEFAULT_PARTS, pretrained: str | None = None, device=None,
                  batch_size: int = 64, progress: bool = False) -> dict[str, EmbeddingSet]:
    """Embed each part into the cache rooted at ``out``; returns part -> EmbeddingSet
    (``from_cache`` says whether the entry was reused)."""
    model, _ = resolve_model(model_or_checkpoint, pretrained=pretrained, device=device)
    return {name: embed_items(model, ds, out, batch_size=batch_size, progress=progress or None)
            for name, ds in dataset_parts(data, split, parts).items()}


def find_entry(cache_dir: str | os.PathLike, es: EmbeddingSet) -> Path | None:
    """The cache folder holding ``es`` (None when it was computed without a cache)."""
    return es.location


def configure_cli(parser: argparse.ArgumentParser) -> None:
    """Options of ``mars-lite embed``."""
    add_model_arguments(parser)
    parser.add_argument("--data", required=True, help="dataset folder (<data>/<modality>/<class>/...) or benchmark root")
    parser.add_argument("--split", default=None, help="split name or JSON file (default <data>/split_zs.json if any)")
    parser.add_argument("--parts", default=",".join(DEFAULT_PARTS),
                        help=f"comma-separated parts to embed, from {', '.join(PARTS)} (default %(default)s)")
    parser.add_argument("--out", required=True, help="embedding cache folder (entries go to <out>/<model>/<items>/)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    sets = embed_dataset(model_source(args, "mars-lite embed"), args.data, args.out, args.split, parts=parts,
                         pretrained=args.pretrained, device=args.device, batch_size=args.batch_size, progress=True)
    for name, es in sets.items():
        status = "reused (cache matches files and model)" if es.from_cache else "computed"
        print(f"{name}: {len(es)} images, {tuple(es.embeddings.shape)} -> {find_entry(args.out, es)} [{status}]")
    return 0
