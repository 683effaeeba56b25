"""The study's configuration and data: which mode runs, at which sizes, on which images.

``MARS_LITE_FAST=1`` (``settings.fast_mode()``) selects *sizes* only:

==================  ===========================  ==========================================
                    fast mode (CPU, CI)          full mode (GPU if available)
==================  ===========================  ==========================================
model               ViT-B-32 if its weights are  ``ViT-B-32``, OpenAI weights
                    cached, else the stand-in
data                ``mini_sbir`` (data root)    a benchmark split (default Sketchy split 2)
images per class    all (60)                     capped for gap measures and pictures
training            the shipped ``fast`` config  a short run of the ``paper`` config
                    (``frozen`` for ViT-B-32)
artifacts           ``<artifacts>/study/fast``   ``<artifacts>/study/full``
==================  ===========================  ==========================================

The backbone is chosen by ``method.weights.choose_backbone`` and said aloud in the banner:
notebook parameters ``model``/``weights`` (or ``MARS_LITE_MODEL``/``MARS_LITE_WEIGHTS``, or
``mars-lite lab --model/--pretrained``) fix it; otherwise fast mode takes the paper's ViT-B-32 when
its OpenAI weights are in the local cache, else the offline stand-in. The algorithm, the seed and
the cells that run are the same in both modes. Also here: the split
applied to the images, per-class subsets and the zero-shot leak report.
"""
from __future__ import annotations

import os
import platform
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from .. import settings
from ..data.locations import resolve_data
from ..data.sources import open_dataset
from ..data.splits import MINI_SBIR, Split, SplitParts, load_split
from ..method.weights import ENV_MODEL, REAL_MODEL, REAL_WEIGHTS, STANDIN_MODEL, BackboneChoice, choose_backbone
from ..settings import seed_everything  # noqa: F401  (re-exported through mars_lite.study)

FULL_MODEL, FULL_PRETRAINED = REAL_MODEL, REAL_WEIGHTS
FAST_MODEL = STANDIN_MODEL  # the offline stand-in, pretrained by construction (method/standin.py)
ENV_DEVICE = "MARS_LITE_DEVICE"
DEFAULT_FULL_SPLIT = "sketchy_split2"
# Where `mars-lite data download NAME` puts each benchmark under the data root (registry.py).
BENCHMARK_FOLDERS = {"sketchy": "sake", "tuberlin": "sake", "quickdraw": "quickdraw_extended"}


@dataclass(frozen=True)
class StudySetup:
    """Everything a study notebook needs to know about the mode it runs in.

    Attributes:
        mode: ``"fast"`` or ``"full"``.
        seed: the notebook's seed (same in both modes).
        model_name, pretrained: backbone config and weights (``mobilenet-minilm`` with its shipped
            weights, or ``ViT-B-32``/openai).
        data: dataset folder (``mini_sbir``) or benchmark root.
        split: the zero-shot split (seen/unseen classes, validation rule).
        device: torch device string.
        artifacts: folder for this mode's checkpoints, caches and reports.
        per_class: images per class and modality for gap measures (None = all).
        picture_per_class: images per class and modality in grids and UMAP pictures.
        train: keyword sizes handed to the training workflow (steps, batch size ...).
        backbone: which backbone and why (``choose_backbone``), for the banner.
    """

    mode: str
    seed: int
    model_name: str
    pretrained: str | None
    data: Path
    split: Split
    device: str
    artifacts: Path
    per_class: int | None
    picture_per_class: int
    train: dict = field(default_factory=dict)
    backbone: BackboneChoice | None = None

    @property
    def fast(self) -> bool:
        return self.mode == "fast"

    @property
    def cache_dir(self) -> Path:
        """Embedding cache of this mode (mars_lite.embed format)."""
        return self.artifacts / "embeddings"

    @property
    def train_dir(self) -> Path:
        """Output folder of notebook 03's training run (checkpoints, history.json)."""
        return self.artifacts / "train"

    @property
    def checkpoint_path(self) -> Path:
        """The checkpoint later notebooks use: the best (seen-class validation) one of notebook 03."""
        return self.train_dir / "best.safetensors"

    @property
    def random_weights(self) -> bool:
        """A backbone at random weights (``weights="none"``; not the stand-in, which ships its own)."""
        return self.pretrained is None and self.model_name != STANDIN_MODEL

    def science_check(self, what: str) -> bool:
        """Whether to run the science assertion ``what`` (one that holds only for trained weights).

        False, after printing that ``what`` is skipped and why, for random backbone weights: such a
        run (CI's full-mode check on a CPU) exercises the code paths, not the method's claims.
        """
        if self.random_weights:
            print(f"skipped: {what} (needs trained weights; this run has random backbone weights)")
            return False
        return True

    def model_options(self) -> dict:
        """Keyword arguments of ``mars_lite.open_model`` for this setup: its weights, device and seed
        (the seed makes a random-init backbone the same in every notebook, so caches are shared)."""
        return {"pretrained": self.pretrained, "device": self.device, "seed": self.seed}

    def banner(self) -> str:
        """One Markdown paragraph that says which mode is active and what it means."""
        standin = self.model_name == STANDIN_MODEL
        weights = self.pretrained or ("shipped weights" if standin else "random weights")
        head = (f"**Mode: {self.mode}** — model `{self.model_name}` ({weights}) on `{self.split.name}` "
                f"({len(self.split.seen)} seen / {len(self.split.unseen)} unseen classes), device `{self.device}`, "
                f"seed {self.seed}.")
        if self.backbone is not None:
            head += f" {self.backbone.line()}"
        if standin:
            head += (" Fast mode: no CLIP weights can be had offline, so the backbone is the kit's stand-in: "
                     "ImageNet MobileNet v1 and the all-MiniLM-L6-v2 sentence encoder, aligned by the kit on "
                     "Tiny-ImageNet photos and TU-Berlin / Quick, Draw! sketches of classes that are not mini_sbir's "
                     "unseen ones (see `mars_lite/method/pretrained/README.md`). Its numbers are real but far below "
                     "CLIP's and **not comparable** with published results. Put ViT-B-32 weights in the local cache "
                     "(or set the `weights` parameter / `MARS_LITE_WEIGHTS` to a weight file) for the real backbone.")
        elif self.pretrained is None:
            head += " **Random backbone weights**: the numbers below are not the method's."
        return head


def _full_data(split: Split, full_data: str | os.PathLike | None) -> Path:
    if full_data is not None:
        return Path(full_data).expanduser()
    folder = settings.data_root() / BENCHMARK_FOLDERS[split.benchmark]
    if not folder.is_dir():
        raise FileNotFoundError(
            f"full mode needs the {split.benchmark} benchmark for split {split.name!r} under {folder}. Run "
            f"'mars-lite data download {split.benchmark}' (it needs the internet and ~10 GB), pass full_data=..., "
            "or set MARS_LITE_FAST=1 for the small offline run.")
    return folder


def load_study_setup(seed: int = 0, *, full_split: str = DEFAULT_FULL_SPLIT,
                     full_data: str | os.PathLike | None = None, fast: bool | None = None,
                     model: str | None = None, weights: str | os.PathLike | None = None,
                     device: str | None = None, batch_size: int | None = None,
                     train_mode: str | None = None, epochs: int | None = None) -> StudySetup:
    """The study configuration for the current mode (``MARS_LITE_FAST``, or ``fast=`` to force one).

    Args:
        seed: seed for every random choice (subsets, initialisation, UMAP).
        full_split: split manifest of full mode (``sketchy_split2``, ``tuberlin_split_b`` ...).
        full_data: benchmark root of full mode (default ``<data root>/<download folder>``).
        model, weights: the backbone (see ``choose_backbone``; ``weights`` a tag, a local weight
            file or ``none``); default from ``MARS_LITE_MODEL``/``MARS_LITE_WEIGHTS``, else as above.
        device: torch device (default ``MARS_LITE_DEVICE``, else CUDA when present in full mode).
        batch_size, train_mode, epochs: override the training config's batch size, backbone mode
            (``frozen``/``paper``/``layernorm``) and epochs of notebook 03's run; notebooks 04-06
            pass the same ones, so they reuse its checkpoint instead of training another.
    """
    fast = settings.fast_mode() if fast is None else fast
    if not fast and model is None and not os.environ.get(ENV_MODEL):
        model = FULL_MODEL  # full mode is the paper's study: ViT-B-32 unless told otherwise
    choice = choose_backbone(model, weights)
    pretrained = None if choice.standin else choice.pretrained
    overrides = {"batch_size": batch_size} if batch_size else {}
    if train_mode:
        overrides["mode"] = train_mode
    if epochs:
        overrides["epochs"] = epochs
    device = device or os.environ.get(ENV_DEVICE) or None
    if fast:
        data = resolve_data(MINI_SBIR)
        sizes = fast_train_sizes(choice)
        sizes["overrides"].update(overrides)
        return StudySetup("fast", seed, choice.model, pretrained, data, load_split(MINI_SBIR, data), device or "cpu",
                          _artifacts("fast"), per_class=None, picture_per_class=8, train=sizes, backbone=choice)
    split = load_split(full_split)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    sizes = full_train_sizes()
    sizes["overrides"].update({"model": choice.model, "pretrained": _train_weights(choice), **overrides})
    return StudySetup("full", seed, choice.model, pretrained, _full_data(split, full_data), split, device,
                      _artifacts("full"), per_class=200, picture_per_class=40, train=sizes, backbone=choice)


def _artifacts(mode: str) -> Path:
    path = settings.artifacts_dir() / "study" / mode
    path.mkdir(parents=True, exist_ok=True)
    return path


def fast_train_sizes(backbone: BackboneChoice | None = None) -> dict:
    """Training of fast mode: the shipped ``fast`` config (the stand-in, paper mode, on CPU); with
    another backbone (ViT-B-32 found in the cache) the ``frozen`` config, whose embeddings are
    computed once: training CLIP's towers on two CPU cores would take hours."""
    if backbone is None or backbone.standin:
        return {"config": "fast", "overrides": {}, "ablation_epochs": 30}
    return {"config": "frozen", "overrides": {"model": backbone.model, "pretrained": _train_weights(backbone),
                                              "epochs": 30, "num_workers": 0}, "ablation_epochs": 30}


def _train_weights(backbone: BackboneChoice) -> str:
    """The backbone's weights as a training-config override: random weights are ``"none"``, since
    a ``None`` override means "keep the config's own" (OpenAI weights for ViT-B-32)."""
    return "none" if backbone.pretrained is None else backbone.pretrained


def full_train_sizes() -> dict:
    """Training of full mode: the ``paper`` config, shortened to a notebook-sized run (the
    100-epoch paper run is ``mars-lite train --config paper``, see docs/reproduce.md)."""
    return {"config": "paper", "overrides": {"epochs": 3}, "ablation_epochs": 30}


# ------------------------------------------------------------------------ environment
def environment_report() -> dict:
    """Versions, device and data location, for notebook 00 (plain values, JSON-ready)."""
    import open_clip

    cuda = torch.cuda.is_available()
    root = settings.data_root(required=False)
    return {
        "python": platform.python_version(), "torch": torch.__version__, "open_clip": open_clip.__version__,
        "cuda_available": cuda, "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "cpu_threads": torch.get_num_threads(), "fast_mode": settings.fast_mode(),
        "data_root": None if root is None else str(root),
        "data_folders": sorted(p.name for p in root.iterdir() if p.is_dir()) if root else [],
        "artifacts": str(settings.artifacts_dir()),
    }


# ------------------------------------------------------------------------------- data
def study_dataset(setup: StudySetup):
    """Every image of the setup's split classes as an ImageDataset (folder or benchmark layout)."""
    return open_dataset(setup.data, setup.split)


def study_parts(setup: StudySetup, dataset=None) -> SplitParts:
    """The dataset cut by the split: train / val (seen classes), query / gallery (unseen).

    Pass ``dataset`` (from :func:`study_dataset`) to avoid scanning a large benchmark twice.
    """
    return setup.split.partition(study_dataset(setup) if dataset is None else dataset)


def per_class_subset(dataset, n: int | None, seed: int = 0):
    """At most ``n`` items per (modality, class), drawn with ``seed`` (order kept); None keeps all."""
    if n is None:
        return dataset
    rng = random.Random(seed)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, item in enumerate(dataset):
        groups.setdefault((item.modality, item.label), []).append(i)
    keep = sorted(i for rows in groups.values() for i in (rows if len(rows) <= n else rng.sample(rows, n)))
    return dataset.with_items(dataset[i] for i in keep)


def class_rows(dataset, classes: Sequence[str], modality: str, n: int, seed: int = 0) -> dict[str, list]:
    """class -> the paths of ``n`` images of ``modality`` (for ``figures.image_grid``)."""
    picked = per_class_subset(dataset.select(modality=modality, classes=classes), n, seed)
    return {c: [item.path for item in picked if item.label == c] for c in classes}


def leakage_report(split: Split, parts: SplitParts, classes_seen: Sequence[str] | None = None) -> dict:
    """Which unseen classes appear where they must not (every list empty = no leak).

    Keys: ``train`` / ``val`` (unseen classes found in the training or model-selection parts),
    ``query`` / ``gallery`` (seen classes found in the test parts), ``checkpoint`` (unseen
    classes a checkpoint says it trained on), ``overlap`` (classes both seen and unseen).
    """
    unseen, seen = set(split.unseen), set(split.seen)
    return {
        "train": sorted(set(parts.train.classes) & unseen),
        "val": sorted(set(parts.val.classes) & unseen),
        "query": sorted(set(parts.query.classes) & seen),
        "gallery": sorted(set(parts.gallery.classes) & seen),
        "checkpoint": sorted(set(classes_seen or ()) & unseen),
        "overlap": sorted(seen & unseen),
    }
