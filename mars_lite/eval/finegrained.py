"""Fine-grained (instance-level) ZS-SBIR on Sketchy: does a sketch find the very photo it was drawn from?

Sketchy (Sangkloy et al., SIGGRAPH 2016) names every sketch after its photo: the sketches of
photo ``<photo_id>.jpg`` are ``<photo_id>-<n>.png`` (n = 1, 2, ...), in the same class folder.
The protocol reported by the WACV 2024 paper (Acc@1 / Acc@5 on the unseen classes): for each
sketch, rank the photos *of its own class* by cosine similarity; it is a hit at k when its paired
photo is among the top k.

Ties are counted against the sketch (a photo scoring exactly as high as the paired one ranks
before it), so a degenerate model that maps everything to one vector scores 0, not 1.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch

FINEGRAINED_KS = (1, 5)
_SKETCH_NAME = re.compile(r"^(?P<photo>.+)-(?P<n>\d+)$")


def sketch_photo_id(path: str | Path) -> str | None:
    """The photo id a Sketchy sketch file names: ``.../n02691156_58-3.png`` -> ``n02691156_58``.

    Returns ``None`` for a file name without the ``-<n>`` suffix.
    """
    match = _SKETCH_NAME.match(Path(path).stem)
    return match.group("photo") if match else None


def pair_sketches_to_photos(sketch_paths: Sequence[str | Path], sketch_labels: Sequence[str],
                            photo_paths: Sequence[str | Path], photo_labels: Sequence[str]) -> list[int | None]:
    """Index into the photos of each sketch's paired photo (same class, stem == photo id), or None.

    Args:
        sketch_paths, sketch_labels: S sketch files and their classes.
        photo_paths, photo_labels: P photo files and their classes.
    Returns:
        A list of S entries: the photo index, or ``None`` when the sketch's name does not follow
        ``<photo_id>-<n>`` or no photo of its class has that id.
    Raises:
        ValueError when two photos of one class share a file stem (the pairing would be ambiguous).
    """
    if len(sketch_paths) != len(sketch_labels) or len(photo_paths) != len(photo_labels):
        raise ValueError("paths and labels must have the same length")
    by_id: dict[tuple[str, str], int] = {}
    for index, (path, label) in enumerate(zip(photo_paths, photo_labels)):
        key = (label, Path(path).stem)
        if key in by_id:
            raise ValueError(f"two photos of class {label!r} share the id {key[1]!r}: "
                             f"{photo_paths[by_id[key]]} and {path}; the sketch pairing is ambiguous")
        by_id[key] = index
    pairs: list[int | None] = []
    for path, label in zip(sketch_paths, sketch_labels):
        photo_id = sketch_photo_id(path)
        pairs.append(None if photo_id is None else by_id.get((label, photo_id)))
    return pairs


def paired_photo_ranks(sketch_emb: torch.Tensor, photo_emb: torch.Tensor, sketch_labels: Sequence[str],
                       photo_labels: Sequence[str], pairs: Sequence[int | None]) -> torch.Tensor:
    """0-based rank of each paired photo among the photos of the sketch's class.

    Args:
        sketch_emb: (S, D) unit query embeddings; photo_emb: (P, D) unit gallery embeddings.
        pairs: S photo indices (or None) from :func:`pair_sketches_to_photos`.
    Returns:
        (S',) int64 ranks for the S' sketches that have a pair (in sketch order).
    """
    photo_labels = list(photo_labels)
    class_photos: dict[str, torch.Tensor] = {}
    ranks = []
    for s, (label, pair) in enumerate(zip(sketch_labels, pairs)):
        if pair is None:
            continue
        if photo_labels[pair] != label:
            raise ValueError(f"sketch {s} of class {label!r} is paired with a photo of class {photo_labels[pair]!r}")
        if label not in class_photos:
            class_photos[label] = torch.tensor([i for i, l in enumerate(photo_labels) if l == label])
        members = class_photos[label]
        scores = photo_emb[members] @ sketch_emb[s]          # (P_c,)
        target = scores[(members == pair).nonzero()[0, 0]]
        # pessimistic ties: every other photo scoring >= the paired one ranks before it
        ranks.append(int((scores >= target).sum()) - 1)
    return torch.tensor(ranks, dtype=torch.int64)


def finegrained_accuracy(sketch_emb: torch.Tensor, photo_emb: torch.Tensor, sketch_labels: Sequence[str],
                         photo_labels: Sequence[str], pairs: Sequence[int | None],
                         ks: Sequence[int] = FINEGRAINED_KS) -> dict:
    """Instance-level Acc@k: fraction of paired sketches whose photo ranks in the top k of its class.

    Returns ``{"acc@1": float, "acc@5": float, ..., "n_sketches": S', "n_unpaired": S - S'}``;
    accuracies are NaN when no sketch has a pair.
    """
    ranks = paired_photo_ranks(sketch_emb, photo_emb, sketch_labels, photo_labels, pairs)
    out: dict = {}
    for k in ks:
        out[f"acc@{k}"] = float((ranks < k).double().mean()) if len(ranks) else float("nan")
    out["n_sketches"] = int(len(ranks))
    out["n_unpaired"] = int(len(pairs) - len(ranks))
    return out
