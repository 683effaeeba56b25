"""Training configuration and result: ``TrainConfig`` (JSON files in ``mars_lite/train/configs``)
and ``TrainResult`` (history for loss curves, checkpoint paths). See :mod:`mars_lite.train.training`."""
from __future__ import annotations

import typing
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..config import ConfigError, _check_type, load_config
from ..method.losses import PAPER_WEIGHTS, TERMS
from ..eval.metrics import CONVENTIONS
from ..method.modalities import PAPER_TEMPLATES, RETRIEVAL_KINDS, templates_problem

TRAIN_CONFIG_DIR = Path(__file__).resolve().parent / "configs"
MODES = ("frozen", "paper", "layernorm")
AMP_CHOICES = ("auto", "bf16", "fp16", "off")
SELECTION_METRICS = ("val_map", "val_total")
# Fields that may change when a run is resumed (they do not change the result of a step).
RESUMABLE_CHANGES = ("epochs", "max_steps", "num_workers", "preload_images", "embed_batch_size",
                     "cache_dir", "frozen_threads", "frozen_prefetch")


@dataclass
class TrainConfig:
    """Everything that defines a training run (JSON files in ``mars_lite/train/configs``).

    model / pretrained: ``create_model`` arguments (``pretrained`` None = random init).
    mode: ``frozen`` | ``paper`` | ``layernorm`` (module docstring).
    split: zero-shot split name (``mars_lite.data.list_splits()``) or JSON file with "seen"/"unseen"
        lists (relative paths are looked up in the data folder); None = ``<data>/split_zs.json``.
    epochs, batch_size (global, over all processes), lr (M and classifier), backbone_lr (CLIP),
    weight_decay, warmup_fraction (of all steps, linear), loss_weights (all five terms).
    seed: model init, epoch orders and validation batches.
    val_fraction / val_seed: held-out part of the seen classes (data layer rule; None = the split's
        own salt, which keeps these photos out of training for the generalized gallery too).
    val_every: validate every k epochs (and after the last). selection_metric: ``val_map``
        (mAP@all, higher is better) or ``val_total`` (lower is better) picks ``best``.
    retrieval_kind / metric_convention: how validation retrieval is scored.
    balanced_sampler: draw rows class-balanced (with replacement) instead of a shuffle;
        shuffle: False keeps file order (the reference's loader does not shuffle).
    amp: mixed precision on CUDA (``auto`` = bf16 when supported, else fp16).
    num_workers / preload_images / embed_batch_size: image loading and embedding batches.
    max_steps: stop after this many steps in total (resume later to continue).
    max_images_per_class: keep at most this many training images per class and modality (the
        first by file name); None keeps all. For quick runs.
    cache_dir: embedding cache for frozen mode (None = ``<artifacts>/embeddings``).
    frozen_threads: intra-op threads of the frozen-mode step loop (tiny tensors: 1 is fastest).
    frozen_prefetch: batches gathered ahead by a background thread in frozen mode (0: none; it
        pays off only when a core is free: with every core busy the thread switching costs more).
    init_checkpoint: start from this mars_lite checkpoint (backbone, M and classifier) instead of
        ``model``/``pretrained`` -- e.g. frozen-mode training on top of a paper-mode run. Its
        training classes must not include an unseen class of the split.
    caption_templates: the caption wordings, ``{"photo": [...], "sketch": [...]}``, each a non-empty
        list of templates with one ``{}`` for the class name (default: the paper's "a photo of a {}" /
        "a sketch of a {}"). With several templates per kind each image gets one of them, picked by a
        hash of its file (``mars_lite.train.rows.build_rows``), so the wording of an image never
        depends on file order or on which other images are in the run.
    """

    model: str = "ViT-B-32"
    pretrained: str | None = "openai"
    mode: str = "paper"
    split: str | None = None
    epochs: int = 100
    batch_size: int = 256
    lr: float = 5e-3
    backbone_lr: float = 5e-8
    weight_decay: float = 0.1
    warmup_fraction: float = 0.05
    loss_weights: dict = field(default_factory=lambda: dict(zip(TERMS, PAPER_WEIGHTS)))
    seed: int = 0
    val_fraction: float = 0.1
    val_seed: int | None = None
    val_every: int = 1
    selection_metric: str = "val_map"
    retrieval_kind: str = "converted"
    metric_convention: str = "reference"
    balanced_sampler: bool = False
    shuffle: bool = True
    amp: str = "auto"
    num_workers: int = 0
    preload_images: bool = False
    embed_batch_size: int = 64
    max_steps: int | None = None
    max_images_per_class: int | None = None
    cache_dir: str | None = None
    frozen_threads: int = 1
    frozen_prefetch: int = 0
    init_checkpoint: str | None = None
    caption_templates: dict = field(default_factory=lambda: {k: list(v) for k, v in PAPER_TEMPLATES.items()})

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field (``'batch_size' must be >= 1, got 0``)."""
        for name in self.__dataclass_fields__:
            problem = self.field_problem(name)
            if problem is not None:
                raise ValueError(f"'{name}' {problem}, got {getattr(self, name)!r}")

    def field_problem(self, name: str) -> str | None:
        """What is wrong with field ``name`` (``"must be >= 1"``), or None. Every check looks at one
        field only, so a bad value can be blamed on where it came from (file, flag, keyword)."""
        value = getattr(self, name)
        choices = {"mode": MODES, "amp": AMP_CHOICES, "selection_metric": SELECTION_METRICS,
                   "retrieval_kind": RETRIEVAL_KINDS, "metric_convention": CONVENTIONS}
        if name in choices:
            return None if value in choices[name] else f"must be one of {list(choices[name])}"
        if name in ("epochs", "batch_size", "val_every", "embed_batch_size", "frozen_threads"):
            return None if value >= 1 else "must be >= 1"
        if name in ("max_steps", "max_images_per_class"):
            return None if value is None or value >= 1 else "must be >= 1 or null"
        if name == "lr":
            return None if value > 0 else "must be > 0"
        if name in ("backbone_lr", "weight_decay", "num_workers", "frozen_prefetch"):
            return None if value >= 0 else "must be >= 0"
        if name in ("warmup_fraction", "val_fraction"):
            return None if 0 <= value < 1 else "must be in [0, 1)"
        if name == "caption_templates":
            return templates_problem(value)
        if name == "loss_weights":
            if set(value) != set(TERMS):
                return f"needs exactly the keys {list(TERMS)}"
            values = [value[t] for t in TERMS]
            if any(not isinstance(v, (int, float)) or v < 0 for v in values) or sum(values) <= 0:
                return "must be numbers >= 0 with a positive sum"
        return None

    @property
    def weights(self) -> list[float]:
        """The loss weights in the order of ``losses.TERMS``."""
        return [float(self.loss_weights[t]) for t in TERMS]


def list_train_configs() -> list[str]:
    """Names of the shipped training configs."""
    return sorted(p.stem for p in TRAIN_CONFIG_DIR.glob("*.json"))


def load_train_config(config, *, flags: dict[str, str] | None = None, **overrides) -> TrainConfig:
    """A TrainConfig from a shipped name (``fast``), a JSON path, a dict or an instance, with
    field overrides (``None`` values are ignored, so CLI options can pass through).

    A bad override is blamed on itself, not on the config file: ``--batch-size 0: must be >= 1``
    when ``flags`` maps the field to the command-line option it came from (``{"batch_size":
    "--batch-size"}``), else ``batch_size=0: must be >= 1``."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for name, value in overrides.items():
        _check_override(name, value, (flags or {}).get(name))
    if isinstance(config, str) and not config.endswith(".json"):
        path = TRAIN_CONFIG_DIR / f"{config}.json"
        if not path.is_file():
            raise ConfigError(f"unknown training config {config!r}: use one of {list_train_configs()} or a JSON file")
        config = path
    return load_config(TrainConfig, config, **overrides)


def _check_override(name: str, value, flag: str | None) -> None:
    """ConfigError naming the flag (or keyword) when the override ``name=value`` is bad on its own."""
    where = f"{flag} {value}" if flag else f"{name}={value!r}"
    fields = TrainConfig.__dataclass_fields__
    if name not in fields:
        raise ConfigError(f"{where}: unknown TrainConfig field {name!r}; known fields are {sorted(fields)}")
    hint = typing.get_type_hints(TrainConfig)[name]
    if not _check_type(value, hint):
        raise ConfigError(f"{where}: should be of type {getattr(hint, '__name__', hint)}")
    problem = replace(TrainConfig(), **{name: value}).field_problem(name)
    if problem is not None:
        raise ConfigError(f"{where}: {problem}")


@dataclass
class TrainResult:
    """What a run produced. ``history``: {"epochs": [per-epoch dicts: epoch, step, train_<term>,
    val_<term>, val_map, ...; epoch 0 is the validation before training], "steps": {column: list}
    with columns step, epoch, lr, clip, semantic, discriminator, reconstruction, orthogonal, total}."""

    out_dir: Path
    config: TrainConfig
    history: dict
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    best_epoch: int | None
    epochs_completed: int
    global_step: int
    stopped_early: bool
    embeddings_from_cache: bool | None
    seconds: float

    def step_losses(self, term: str = "total") -> list[float]:
        """Per-step values of one loss term (NaN where it was not computed)."""
        return self.history["steps"][term]

    def epoch_values(self, key: str) -> list[tuple[int, float]]:
        """(epoch, value) for every epoch record holding ``key`` (e.g. ``val_map``, ``train_total``)."""
        return [(r["epoch"], r[key]) for r in self.history["epochs"] if r.get(key) is not None]
