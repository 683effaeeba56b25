"""Training data: seen-class rows with captions, the seen-class validation split, and samplers.

A training row is (image, caption, image modality id, caption modality id, class). Captions come
from the templates of :mod:`mars_lite.method.modalities` ("a sketch of a {}" -> id 2, "a photo of a {}"
-> id 3, underscores become spaces; ``TrainConfig.caption_templates`` gives others); since they depend
only on class, modality and template, rows point into a small table of distinct captions. With several
templates for a modality, each image gets one of them, picked by a hash of its modality, folder and
file name (:func:`template_index`): deterministic, spread about evenly, the same image always worded
the same -- whatever the file order, the class annotation or the other images of the run (so a
validation row's caption is one that the training+validation caption table holds too).

Zero-shot hygiene: only the **seen** classes of a split are read from disk (unseen class folders
are never opened), a row of an unseen class raises :class:`UnseenClassError`, and model
selection uses a held-out part of the seen classes. The held-out part follows the data layer's
rule (:class:`mars_lite.data.ValRule`): a file is in validation when a salted hash of its
modality, class and file name falls below ``fraction`` -- deterministic, independent of file
order and of other classes. ``fraction`` defaults to 0.1 and the salt to the split's (the same
photos then form the seen part of the generalized ZS-SBIR gallery); ``seed`` gives another salt.

Batches are formed from an epoch order drawn by a ``DistributedSampler`` (PyTorch's own) seeded
with ``seed + epoch``, or by :class:`ClassBalancedSampler`, and cut into global batches that are
dealt out to the ranks, so N processes see exactly the rows one process would (see
:func:`epoch_batches`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from ..data import ImageDataset, ValRule
from ..data.sources import open_dataset
from ..data.splits import Split
from ..method.modalities import caption, modality_id
from ..errors import MarsLiteError


class TrainingDataError(MarsLiteError, ValueError):
    """The training data cannot be used (empty folder, class without images, ...)."""


class UnseenClassError(TrainingDataError):
    """An unseen (zero-shot test) class reached training or model selection."""


@dataclass(frozen=True)
class TrainRows:
    """Training rows, one per image.

    Attributes:
        items: N image items (``.path``, ``.modality``, ``.label``, ``.load()``).
        labels: N class names.
        image_ids: (N,) int64, 0 photo / 1 sketch.
        caption_ids: (N,) int64, 3 photo caption / 2 sketch caption.
        caption_index: (N,) int64 index into ``captions``.
        captions: the distinct caption texts.
    """

    items: tuple
    labels: tuple[str, ...]
    image_ids: torch.Tensor
    caption_ids: torch.Tensor
    caption_index: torch.Tensor
    captions: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def modality_ids(self) -> torch.Tensor:
        """(N, 2) int64: [image id, caption id] per row, as the losses take them."""
        return torch.stack([self.image_ids, self.caption_ids], 1)

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels))

    def caption_of(self, row: int) -> str:
        return self.captions[int(self.caption_index[row])]


def template_index(item, count: int) -> int:
    """Which of ``count`` templates captions ``item``: a hash of its modality, parent folder and file
    name (and bitmap row), not of its label, so a relabelled image keeps its wording."""
    if count <= 1:
        return 0
    path = Path(item.path)
    key = f"{item.modality}/{path.parent.name}/{path.name}" + ("" if item.index is None else f"#{item.index}")
    return int.from_bytes(hashlib.sha256(f"caption-template|{key}".encode()).digest()[:8], "big") % count


def build_rows(items: Sequence, unseen: Sequence[str] = (), templates: dict | None = None) -> TrainRows:
    """Rows with captions for ``items`` (a dataset of seen-class images).

    ``templates``: ``{"photo": [...], "sketch": [...]}`` caption templates (None: the paper's); with
    several for a modality, each row takes the one :func:`template_index` picks for its image.

    Raises:
        TrainingDataError: no items.
        UnseenClassError: an item belongs to a class listed in ``unseen``.
    """
    items = tuple(items)
    if not items:
        raise TrainingDataError("no training images: the dataset is empty")
    check_no_unseen((item.label for item in items), unseen, "training rows")
    texts, image_ids, caption_ids = [], [], []
    for item in items:
        count = 1 if templates is None else len(templates.get(item.modality) or ())
        text, caption_id = caption(item.label, item.modality, templates, template_index(item, count))
        texts.append(text)
        image_ids.append(modality_id(item.modality))
        caption_ids.append(caption_id)
    captions = tuple(sorted(set(texts)))
    position = {text: i for i, text in enumerate(captions)}
    return TrainRows(items, tuple(item.label for item in items), torch.tensor(image_ids),
                     torch.tensor(caption_ids), torch.tensor([position[t] for t in texts]), captions)


def check_no_unseen(labels, unseen: Sequence[str], what: str) -> None:
    """Raise :class:`UnseenClassError` when any of ``labels`` is an unseen class."""
    leaked = sorted(set(labels) & set(unseen))
    if leaked:
        raise UnseenClassError(f"{what} contain unseen (zero-shot test) classes {leaked}; only seen "
                               "classes may be used for training and model selection")


@dataclass(frozen=True)
class SeenSplit:
    """The seen-class images cut into training and validation parts."""

    train: ImageDataset
    val: ImageDataset
    seen: tuple[str, ...]
    unseen: tuple[str, ...]
    val_rule: ValRule
    split_name: str


def seen_split(data_root: str | Path, split: Split, val_fraction: float = 0.1,
               seed: int | None = None, on_error: str = "raise") -> SeenSplit:
    """Read the seen classes of ``split`` from ``data_root`` and hold out the validation part.

    Args:
        data_root: folder of the dataset (``<root>/<modality>/<class>/<file>`` for folder
            splits, the benchmark layout otherwise).
        split: the zero-shot split; only its ``seen`` classes are read.
        val_fraction: expected fraction of seen-class images held out (0 disables validation).
        seed: ``None`` keeps the split's own validation salt; an int picks another held-out part.
    Raises:
        TrainingDataError: the folder holds no images, or a seen class has no training images.
    """
    root = Path(data_root)
    if not root.is_dir():
        raise TrainingDataError(f"data folder {root} does not exist")
    if not 0 <= val_fraction < 1:
        raise TrainingDataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    seen = tuple(split.seen)
    if not seen:
        raise TrainingDataError(f"split {split.name} has no seen classes")
    check_no_unseen(seen, split.unseen, f"the seen classes of split {split.name}")
    dataset = open_dataset(root, split, classes=seen, on_error=on_error)
    if len(dataset) == 0:
        raise TrainingDataError(f"data folder {root} holds no images of the seen classes of split "
                                f"{split.name} (expected <root>/<sketch|photo>/<class>/<image files>)")
    salt = split.val.salt if seed is None else f"{split.val.salt}/seed{seed}"
    rule = ValRule(float(val_fraction), salt)
    parts = dataclasses.replace(split, val=rule).partition(dataset)
    check_no_unseen(parts.train.classes + parts.val.classes, split.unseen, "seen-class parts")
    counts = Counter((item.label, item.modality) for item in parts.train)
    empty = [name for name in seen if not (counts[(name, "sketch")] or counts[(name, "photo")])]
    if empty:
        raise TrainingDataError(f"seen class(es) {empty} have no training images under {root} "
                                f"(empty class folders, or every image fell into validation)")
    one_sided = [name for name in seen if not (counts[(name, "sketch")] and counts[(name, "photo")])]
    if one_sided:
        warnings.warn(f"seen class(es) {one_sided} have training images of one modality only", stacklevel=2)
    return SeenSplit(parts.train, parts.val, seen, tuple(split.unseen), rule, split.name)


class ClassBalancedSampler(DistributedSampler):
    """Each epoch draws ``len(labels)`` rows with replacement, every class equally likely.

    Sharded across ranks like ``DistributedSampler`` (same ``num_replicas``/``rank``/``seed``/
    ``set_epoch``), so the global order does not depend on the number of processes.
    """

    def __init__(self, labels: Sequence[str], num_replicas: int = 1, rank: int = 0, seed: int = 0):
        super().__init__(range(len(labels)), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        counts = Counter(labels)
        self.row_weights = torch.tensor([1.0 / counts[y] for y in labels], dtype=torch.float64)

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        order = torch.multinomial(self.row_weights, len(self.row_weights), replacement=True, generator=generator)
        order = order.tolist()
        order += order[:self.total_size - len(order)]
        return iter(order[self.rank:self.total_size:self.num_replicas])


def make_sampler(labels: Sequence[str], *, seed: int, balanced: bool = False, shuffle: bool = True,
                 num_replicas: int = 1, rank: int = 0) -> DistributedSampler:
    """The epoch-order sampler of one rank (also used with a single process)."""
    if balanced:
        return ClassBalancedSampler(labels, num_replicas=num_replicas, rank=rank, seed=seed)
    return DistributedSampler(range(len(labels)), num_replicas=num_replicas, rank=rank,
                              shuffle=shuffle, seed=seed, drop_last=False)


def steps_per_epoch(num_rows: int, global_batch: int) -> int:
    """Full global batches per epoch (the last incomplete batch is dropped)."""
    return num_rows // global_batch


def epoch_batches(sampler: DistributedSampler, epoch: int, num_rows: int, global_batch: int) -> torch.Tensor:
    """(S, global_batch / world) row indices of this rank for every step of ``epoch``.

    With W ranks the sampler gives rank r the positions r, r + W, r + 2W, ... of one global
    order; local batch s of every rank therefore covers global positions
    [s * global_batch, (s + 1) * global_batch): the same rows as one process with the full batch.
    """
    world = sampler.num_replicas
    if global_batch % world:
        raise ValueError(f"batch_size {global_batch} must be divisible by the number of processes {world}")
    local = global_batch // world
    steps = steps_per_epoch(num_rows, global_batch)
    sampler.set_epoch(epoch)
    order = torch.from_numpy(np.fromiter(iter(sampler), dtype=np.int64, count=len(sampler)))
    return order[:steps * local].view(steps, local)

