"""Notebook-facing helpers for the study notebooks (``notebooks/00`` to ``05``), in one namespace.

The notebooks stay thin: every step that is worth testing or used twice lives in the library.
``study`` gathers it for them: the mode and sizes (:mod:`mars_lite.study.setup`), models and
embedding spaces (:mod:`mars_lite.study.spaces`), training and ablation
(:mod:`mars_lite.study.training`), plus here the Markdown tables, figure exports and
:func:`run_notebook` (papermill-style parameters).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from .. import settings
from ..data.splits import SplitParts, load_split
from .setup import (BENCHMARK_FOLDERS, DEFAULT_FULL_SPLIT, StudySetup, class_rows,
                          environment_report, fast_train_sizes, full_train_sizes, leakage_report,
                          load_study_setup, per_class_subset, seed_everything, study_dataset, study_parts)
from .parts import training_parts
from .spaces import (CaptionSet, caption_set, chance_metrics, embed, embedding_spaces,
                           gap_reports, top_photos, umap_groups)
from .training import (ablation_weights, ends_lower, ensure_checkpoint, export_backbone, notebook_config,
                             loss_terms, moving_average, run_ablation, study_train_config,
                             train_study_model)

__all__ = [
    # mode, sizes, data (study_setup)
    "BENCHMARK_FOLDERS", "DEFAULT_FULL_SPLIT", "StudySetup", "class_rows", "environment_report",
    "fast_train_sizes", "full_train_sizes", "leakage_report", "load_study_setup", "per_class_subset",
    "seed_everything", "study_dataset", "study_parts", "training_parts",
    # models and embedding spaces (study_spaces)
    "CaptionSet", "caption_set", "chance_metrics", "embed", "embedding_spaces", "gap_reports",
    "top_photos", "umap_groups",
    # training and ablation (study_training)
    "ablation_weights", "ends_lower", "ensure_checkpoint", "export_backbone", "notebook_config", "loss_terms", "moving_average",
    "run_ablation", "study_train_config", "train_study_model",
    # here
    "export_figure", "markdown_table", "metrics_rows", "part_counts", "run_notebook", "split_overview",
]


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
    from ..data.splits import list_splits

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
    from ..files import atomic_write

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
        if nb.nbformat_minor < 5:  # cell ids came with nbformat 4.5: an older notebook would not validate
            cell.pop("id", None)
        nb.cells.insert(tagged[0] + 1, cell)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    out = Path(out) if out is not None else settings.artifacts_dir() / "executed" / f"{path.stem}.executed.ipynb"
    from ..files import atomic_write
    return atomic_write(out, lambda tmp: nbformat.write(nb, tmp))
