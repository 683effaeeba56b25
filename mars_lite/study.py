"""Notebook-facing helpers for the study notebooks (``notebooks/00`` to ``05``).

The notebooks stay thin: every step that is worth testing or used twice lives here. One switch,
``MARS_LITE_FAST=1`` (``settings.fast_mode()``), selects *sizes* only:

==================  ===========================  ==========================================
                    fast mode (CPU, CI)          full mode (GPU if available)
==================  ===========================  ==========================================
model               ``tiny``, random init        ``ViT-B-32``, OpenAI weights
data                ``mini_sbir`` (data root)    a benchmark split (default Sketchy split 2)
images per class    all (60)                     capped for gap measures and pictures
training steps      a few hundred (CPU minutes)  the training config's epochs
artifacts           ``<artifacts>/study/fast``   ``<artifacts>/study/full``
==================  ===========================  ==========================================

The algorithm, the seed and the cells that run are the same in both modes.
"""
from __future__ import annotations

import os
import platform
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import settings
from .data.splits import MINI_SBIR, Split, SplitParts, load_split

FULL_MODEL, FULL_PRETRAINED = "ViT-B-32", "openai"
FAST_MODEL = "tiny"
DEFAULT_FULL_SPLIT = "sketchy_split2"
# Where `mars-lite data download NAME` puts each benchmark under the data root (registry.py).
BENCHMARK_FOLDERS = {"sketchy": "sake", "tuberlin": "sake", "quickdraw": "quickdraw_extended"}


def seed_everything(seed: int) -> int:
    """Seed Python, numpy and torch (CPU and CUDA); returns ``seed`` so a cell can print it."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return seed


@dataclass(frozen=True)
class StudySetup:
    """Everything a study notebook needs to know about the mode it runs in.

    Attributes:
        mode: ``"fast"`` or ``"full"``.
        seed: the notebook's seed (same in both modes).
        model_name, pretrained: backbone config and weights (``tiny``/None or ``ViT-B-32``/openai).
        data: dataset folder (``mini_sbir``) or benchmark root.
        split: the zero-shot split (seen/unseen classes, validation rule).
        device: torch device string.
        artifacts: folder for this mode's checkpoints, caches and reports.
        per_class: images per class and modality for gap measures (None = all).
        picture_per_class: images per class and modality in grids and UMAP pictures.
        train: keyword sizes handed to the training workflow (steps, batch size ...).
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

    @property
    def fast(self) -> bool:
        return self.mode == "fast"

    @property
    def cache_dir(self) -> Path:
        """Embedding cache of this mode (mars_lite.embed_cache format)."""
        return self.artifacts / "embeddings"

    @property
    def train_dir(self) -> Path:
        """Output folder of notebook 03's training run (checkpoints, history.json)."""
        return self.artifacts / "train"

    @property
    def checkpoint_path(self) -> Path:
        """The checkpoint later notebooks use: the best (seen-class validation) one of notebook 03."""
        return self.train_dir / "best.safetensors"

    def banner(self) -> str:
        """One Markdown paragraph that says which mode is active and what it means."""
        weights = self.pretrained or "random init"
        head = (f"**Mode: {self.mode}** — model `{self.model_name}` ({weights}) on `{self.split.name}` "
                f"({len(self.split.seen)} seen / {len(self.split.unseen)} unseen classes), device `{self.device}`, "
                f"seed {self.seed}.")
        if self.fast:
            head += (" Fast mode: the tiny backbone has random weights (no pretrained tiny CLIP exists offline), "
                     "so its numbers are near chance before training and are **not comparable** with published "
                     "results. Unset `MARS_LITE_FAST` for the real study.")
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
                     full_data: str | os.PathLike | None = None, fast: bool | None = None) -> StudySetup:
    """The study configuration for the current mode (``MARS_LITE_FAST``, or ``fast=`` to force one).

    Args:
        seed: seed for every random choice (subsets, initialisation, UMAP).
        full_split: split manifest of full mode (``sketchy_split2``, ``tuberlin_split_b`` ...).
        full_data: benchmark root of full mode (default ``<data root>/<download folder>``).
    """
    fast = settings.fast_mode() if fast is None else fast
    if fast:
        data = settings.data_root() / MINI_SBIR
        return StudySetup("fast", seed, FAST_MODEL, None, data, load_split(MINI_SBIR, data), "cpu",
                          _artifacts("fast"), per_class=None, picture_per_class=8,
                          train=fast_train_sizes())
    split = load_split(full_split)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return StudySetup("full", seed, FULL_MODEL, FULL_PRETRAINED, _full_data(split, full_data), split, device,
                      _artifacts("full"), per_class=200, picture_per_class=40, train=full_train_sizes())


def _artifacts(mode: str) -> Path:
    path = settings.artifacts_dir() / "study" / mode
    path.mkdir(parents=True, exist_ok=True)
    return path


def fast_train_sizes() -> dict:
    """Training of fast mode: the shipped ``fast`` config (tiny model from scratch on CPU)."""
    return {"config": "fast", "overrides": {}, "ablation_epochs": 30}


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
    from .data.benchmarks import benchmark_dataset
    from .data.folder import folder_dataset

    if setup.split.benchmark == "folder":
        return folder_dataset(setup.data)
    return benchmark_dataset(setup.split.benchmark, setup.data, classes=setup.split.classes)


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


# ------------------------------------------------------------------------- model + embeddings
def study_model(setup: StudySetup, checkpoint: str | os.PathLike | None = None):
    """The setup's model: seeded fresh weights, or a checkpoint's. Returns ``(model, meta)``.

    Seeding before a random init makes the fast-mode backbone the same in every notebook, so the
    embedding cache of one notebook serves the next.
    """
    from .model import create_model

    seed_everything(setup.seed)
    if checkpoint is None:
        model, _ = create_model(setup.model_name, pretrained=setup.pretrained, device=setup.device)
        return model, {}
    from .checkpoint import load_checkpoint
    return load_checkpoint(checkpoint, pretrained=setup.pretrained, device=setup.device)


def embed(setup: StudySetup, model, dataset, per_class: int | None = None):
    """Cached original embeddings (``EmbeddingSet``) of ``dataset``, ``per_class`` items at most."""
    from .embed_cache import embed_items

    items = per_class_subset(dataset, per_class, setup.seed)
    return embed_items(model, items, setup.cache_dir, progress=not setup.fast)


@dataclass
class CaptionSet:
    """Caption embeddings: ``texts``, class ``labels``, caption modality ``ids`` (2 sketch, 3 photo),
    ``embeddings`` (T, D) unit vectors."""

    texts: list[str]
    labels: list[str]
    ids: list[int]
    embeddings: torch.Tensor


def caption_set(model, classes: Sequence[str]) -> CaptionSet:
    """Both captions of every class ("a sketch of a ...", "a photo of a ...") and their embeddings."""
    from .embed_cache import embed_texts
    from .modalities import caption

    rows = [(caption(c, m), c) for c in classes for m in ("sketch", "photo")]
    texts = [text for (text, _), _ in rows]
    return CaptionSet(texts, [c for _, c in rows], [cid for (_, cid), _ in rows], embed_texts(model, texts))


@torch.no_grad()
def embedding_spaces(model, sketches, photos, captions: CaptionSet,
                     kinds: Sequence[str] = ("original", "converted", "semantic")) -> dict:
    """The three groups in each retrieval space: kind -> {"sketch", "photo", "text"} -> (N, D) numpy.

    ``converted`` moves every item into the photo modality (z - m_own + m_photo), ``semantic``
    removes each item's own modality vector (z - m_own); captions use their caption ids (2/3).
    """
    from .modalities import PHOTO

    ids = torch.tensor(captions.ids)
    out = {}
    for kind in kinds:
        text = torch.empty_like(captions.embeddings)
        for cid in sorted(set(captions.ids)):
            rows = ids == cid
            z = captions.embeddings[rows].to(model.device)
            text[rows] = _move(model, z, cid, kind, PHOTO).cpu()
        out[kind] = {"sketch": model.retrieval_embedding(sketches.embeddings.to(model.device), "sketch", kind).cpu(),
                     "photo": model.retrieval_embedding(photos.embeddings.to(model.device), "photo", kind).cpu(),
                     "text": text}
    return {k: {g: v.float().numpy() for g, v in groups.items()} for k, groups in out.items()}


def _move(model, z: torch.Tensor, own: int, kind: str, photo: int) -> torch.Tensor:
    """Caption embeddings in a retrieval space (captions are not an image modality of retrieval_embedding)."""
    m = model.modality_embeddings.weight.to(z.dtype)
    if kind == "original":
        return z
    shifted = z - m[own] + (m[photo] if kind == "converted" else 0)
    return torch.nn.functional.normalize(shifted, dim=-1)


def gap_reports(spaces: dict, sketch_labels: Sequence[str], photo_labels: Sequence[str], seed: int = 0) -> dict:
    """``mars_lite.gap.gap_report`` of every space from :func:`embedding_spaces` (kind -> report)."""
    from .gap import gap_report

    return {kind: gap_report(g["sketch"], g["photo"], sketch_labels, photo_labels, text=g["text"], seed=seed)
            for kind, g in spaces.items()}


def umap_groups(space: dict, sketch_labels, photo_labels, caption_labels) -> dict:
    """One panel of ``figures.umap_panels``: modality -> (embeddings, labels)."""
    return {"sketch": (space["sketch"], list(sketch_labels)), "photo": (space["photo"], list(photo_labels)),
            "text": (space["text"], list(caption_labels))}


def chance_metrics(query_labels: Sequence[str], gallery_labels: Sequence[str], seed: int = 0,
                   repeats: int = 5) -> dict[str, float]:
    """Retrieval metrics of random scores (mean of ``repeats`` draws): the floor a model must beat."""
    from .metrics import retrieval_metrics

    rng = np.random.default_rng(seed)
    runs = [retrieval_metrics(rng.random((len(query_labels), len(gallery_labels))), query_labels, gallery_labels)
            for _ in range(repeats)]
    return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}


# -------------------------------------------------------------------------------- tour
@torch.no_grad()
def top_photos(model, sketch, gallery, k: int = 5, kind: str = "converted") -> list[tuple[str, str, float]]:
    """The ``k`` gallery photos closest to one sketch (path or PIL image), best first.

    Args:
        gallery: an EmbeddingSet of photos (original embeddings). kind: retrieval embedding.
    Returns:
        ``[(path, label, cosine score), ...]``.
    """
    query = model.retrieval_embedding(model.encode_sketch([sketch]), "sketch", kind).float().cpu()
    photos = model.retrieval_embedding(gallery.embeddings.to(model.device), "photo", kind).float().cpu()
    scores, rows = (query @ photos.T)[0].topk(min(k, len(gallery)))
    return [(gallery.paths[r], gallery.labels[r], float(s)) for s, r in zip(scores.tolist(), rows.tolist())]


# ----------------------------------------------------------------------------- tables
def markdown_table(rows: Sequence[dict], floats: str = "{:.3f}") -> str:
    """A Markdown table from a list of dicts with the same keys (floats formatted with ``floats``)."""
    if not rows:
        return "(empty)"
    keys = list(rows[0])
    cell = lambda v: floats.format(v) if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def split_overview() -> list[dict]:
    """One row per shipped split manifest: name, benchmark, number of seen / unseen classes, source."""
    from .data.splits import list_splits

    rows = []
    for name in list_splits():
        try:
            split = load_split(name)
        except (FileNotFoundError, OSError) as err:  # mini_sbir needs the data folder
            rows.append({"split": name, "benchmark": "folder", "seen": "?", "unseen": "?", "source": str(err)})
            continue
        rows.append({"split": name, "benchmark": split.benchmark, "seen": len(split.seen),
                     "unseen": len(split.unseen), "source": split.source.split(" (")[0]})
    return rows


def part_counts(parts: SplitParts) -> list[dict]:
    """Images per part and modality, with the classes each part holds."""
    rows = []
    for name in ("train", "val", "query", "gallery"):
        ds = getattr(parts, name)
        counts = ds.counts()
        rows.append({"part": name, "sketches": counts.get("sketch", 0), "photos": counts.get("photo", 0),
                     "classes": len(ds.classes)})
    return rows


def metrics_rows(metrics: dict, chance: dict | None = None) -> list[dict]:
    """Rows ``{embedding, mAP@all, ...}`` from kind -> metric dicts (plus a chance row)."""
    names = {"map_all": "mAP@all", "map_200": "mAP@200", "p_100": "P@100", "p_200": "P@200"}
    rows = [{"embedding": kind, **{names[k]: float(v[k]) for k in names}} for kind, v in metrics.items()]
    if chance is not None:
        rows.append({"embedding": "chance (random scores)", **{names[k]: float(chance[k]) for k in names}})
    return rows


# ---------------------------------------------------------------------------- exports
def export_figure(figure, name: str, setup: StudySetup, to: str | os.PathLike | None = None,
                  max_bytes: int = 500_000) -> Path:
    """Save a PIL image (``.png``) or a plotly figure (``.html``, plotly.js from its CDN) atomically.

    Goes to ``<artifacts>/figures/<name>`` unless ``to`` names a folder (e.g. the repository's
    ``assets/`` when refreshing the README figures). Refuses files above ``max_bytes``.
    """
    from .checkpoint import atomic_write

    folder = Path(to) if to is not None else setup.artifacts / "figures"
    path = folder / name
    if path.suffix == ".png":
        atomic_write(path, lambda tmp: figure.save(tmp, format="PNG", optimize=True))
    elif path.suffix == ".html":
        atomic_write(path, lambda tmp: figure.write_html(tmp, include_plotlyjs="cdn", full_html=True))
    else:
        raise ValueError(f"export_figure: {name!r} must end in .png (PIL image) or .html (plotly figure)")
    size = path.stat().st_size
    if size > max_bytes:
        path.unlink()
        raise ValueError(f"{path} would be {size} bytes (> {max_bytes}); make the figure smaller")
    return path


# ----------------------------------------------------------------------------- training
def study_train_config(setup: StudySetup, **overrides):
    """The TrainConfig of this mode: the mode's shipped config, its sizes, the setup's split and seed."""
    from .training import load_train_config

    sizes = setup.train
    fields = {**sizes["overrides"], "split": setup.split.name, "seed": setup.seed, **overrides}
    return load_train_config(sizes["config"], **fields)


def train_study_model(setup: StudySetup, out_dir: str | os.PathLike | None = None, *, verbose: bool = True,
                      **overrides):
    """Train with :func:`study_train_config` into ``out_dir`` (default ``setup.train_dir``).

    Returns the ``mars_lite.training.TrainResult`` (history for the loss curves, checkpoints).
    """
    from .training import train

    cfg = study_train_config(setup, **overrides)
    return train(cfg, setup.data, out_dir or setup.train_dir, device=setup.device, progress=False, verbose=verbose)


def _trained_with(path: Path) -> dict | None:
    from .checkpoint import read_checkpoint

    try:
        return read_checkpoint(path)[1].get("extra", {}).get("train_config")
    except (FileNotFoundError, ValueError):
        return None


def ensure_checkpoint(setup: StudySetup) -> Path:
    """Notebook 03's checkpoint (best, else last), recreated by training when it is missing or was
    trained with another config (e.g. other sizes, or the shipped config changed since)."""
    import json
    from dataclasses import asdict

    wanted = json.loads(json.dumps(asdict(study_train_config(setup))))
    for path in (setup.checkpoint_path, setup.train_dir / "last.safetensors"):  # best, else last
        if path.is_file() and _trained_with(path) == wanted:
            return path
    result = train_study_model(setup, verbose=False)
    return result.best_checkpoint or result.last_checkpoint


def loss_terms(result) -> dict[str, list[float]]:
    """term -> per-step values of every loss term that was computed (for ``figures.loss_curves``)."""
    from .losses import TERMS

    steps = result.history["steps"]
    return {t: list(steps[t]) for t in (*TERMS, "total")
            if t in steps and np.isfinite(np.asarray(steps[t], dtype=float)).all()}


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over ``window`` steps (shorter at the start): smooths noisy per-step losses."""
    x = np.asarray(values, dtype=float)
    sums = np.cumsum(np.insert(x, 0, 0.0))
    idx = np.arange(1, len(x) + 1)
    start = np.maximum(idx - window, 0)
    return list((sums[idx] - sums[start]) / (idx - start))


# ----------------------------------------------------------------------------- ablation
def export_backbone(checkpoint: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Write the CLIP weights of a checkpoint as an open_clip weight file (safetensors).

    ``create_model(name, pretrained=path)`` then rebuilds exactly that backbone, so frozen-mode
    runs (which embed once and train only M and the classifier) can start from a trained backbone.
    """
    from safetensors.torch import save_file

    from .checkpoint import atomic_write, load_checkpoint

    model, _ = load_checkpoint(checkpoint)
    state = {k: v.detach().cpu().contiguous() for k, v in model.clip.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(state, tmp))


def ablation_weights() -> dict[str, dict[str, float]]:
    """Variant name -> loss weights: the paper's weights, then each active term dropped in turn."""
    from .losses import PAPER_WEIGHTS, TERMS

    paper = dict(zip(TERMS, PAPER_WEIGHTS))
    variants = {"all terms (paper weights)": paper}
    for term in TERMS:
        if paper[term] > 0:
            variants[f"without {term}"] = {**paper, term: 0.0}
    return variants


def run_ablation(setup: StudySetup, checkpoint: str | os.PathLike, *, epochs: int | None = None,
                 convention: str = "reference") -> list[dict]:
    """Frozen-mode runs on the checkpoint's backbone, one per :func:`ablation_weights` variant.

    Each run starts M and the classifier afresh (same seed), trains ``epochs`` epochs on the
    seen classes and is evaluated zero-shot on the unseen ones. Returns one row per variant:
    variant, seen-class validation mAP (best epoch) and unseen mAP@all / P@100 of every kind.
    """
    from dataclasses import asdict

    from .evaluate import evaluate

    backbone = export_backbone(checkpoint, setup.artifacts / "ablation" / "backbone.safetensors")
    base = {**asdict(study_train_config(setup)), "mode": "frozen", "pretrained": str(backbone),
            "epochs": epochs or setup.train["ablation_epochs"], "max_steps": None,
            "cache_dir": str(setup.cache_dir)}
    rows = []
    for i, (name, weights) in enumerate(ablation_weights().items()):
        result = train_study_model(setup, setup.artifacts / "ablation" / f"variant_{i}", verbose=False,
                                   **{**base, "loss_weights": weights})
        ckpt = result.best_checkpoint or result.last_checkpoint
        report = evaluate(ckpt, setup.data, setup.split, convention=convention, cache_dir=setup.cache_dir,
                          fast_mode=setup.fast)
        row = {"variant": name, "seen val mAP": max(v for _, v in result.epoch_values("val_map"))}
        for kind, values in report.metrics.items():
            row[f"{kind} mAP@all"], row[f"{kind} P@100"] = values["map_all"], values["p_100"]
        rows.append(row)
    return rows


def ends_lower(values: Sequence[float], fraction: float = 0.2) -> bool:
    """True when the mean of the last ``fraction`` of ``values`` is below the mean of the first."""
    k = max(1, int(len(values) * fraction))
    return float(np.mean(values[-k:])) < float(np.mean(values[:k]))


# ------------------------------------------------------------------------------ running
def run_notebook(path: str | os.PathLike, parameters: dict | None = None, out: str | os.PathLike | None = None,
                 timeout: int = 3600) -> Path:
    """Execute a notebook with ``parameters`` overriding its ``parameters`` cell; returns the executed copy.

    As papermill does, the overrides go into a new cell right after the tagged cell (tagged
    ``injected-parameters``), so the notebook's defaults stay visible. The kernel starts in the
    notebook's folder. The executed copy is written to ``out`` (default: ``<name>.executed.ipynb``
    in ``<artifacts>/executed``); the source notebook is not modified.
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if parameters:
        if len(tagged) != 1:
            raise ValueError(f"{path} needs exactly one cell tagged 'parameters' to override, found {len(tagged)}")
        source = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
        nb.cells.insert(tagged[0] + 1, cell)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    out = Path(out) if out is not None else settings.artifacts_dir() / "executed" / f"{path.stem}.executed.ipynb"
    from .checkpoint import atomic_write
    return atomic_write(out, lambda tmp: nbformat.write(nb, tmp))
