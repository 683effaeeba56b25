"""The result of one evaluation: a table (query embedding x metric) written as JSON and Markdown.

``EvalReport.metrics`` maps each retrieval embedding kind (``original``, ``converted``,
``semantic``) to ``{map_all, map_200, p_100, p_200}`` in [0, 1]; ``finegrained`` (optional) maps
kinds to ``{acc@1, acc@5, n_sketches, n_unpaired}``. Every table names the metric convention, and
carries the fast-mode, seen-class and "not comparable" marks when they apply (only the paper's
backbone, ViT-B-32 with OpenAI weights, outside fast mode, is comparable with published numbers),
so a number never travels without the conditions it was measured under.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..files import atomic_write
from ..method.model import STANDIN_TAG
from ..method.weights import REAL_MODEL, REAL_WEIGHTS
from .published import benchmark_for_split, comparison_markdown

FORMAT = "mars_lite.eval/1"
METRIC_KEYS = ("map_all", "map_200", "p_100", "p_200")
METRIC_NAMES = {"map_all": "mAP@all", "map_200": "mAP@200", "p_100": "P@100", "p_200": "P@200"}
FAST_MODE_NOTE = "fast mode / not comparable with published numbers"
SEEN_CLASS_NOTE = "seen-class evaluation: the query classes were seen in training, this is NOT zero-shot"
NOT_COMPARABLE_NOTE = (f"not comparable with published numbers: the backbone is not the paper's {REAL_MODEL} "
                       f"with {REAL_WEIGHTS} weights")
CONVENTION_NOTES = {
    "reference": ("reference conventions (as the authors' code): VOC-interpolated AP; mAP@200 with recall "
                  "over min(200, R); P@K over the top min(K, R); queries with R = 0 left out"),
    "standard": "standard conventions: non-interpolated AP (as scikit-learn), plain P@K",
}
SETTING_TITLES = {"zero_shot": "zero-shot (unseen-class gallery)",
                  "generalized": "generalized zero-shot (gallery also holds seen-class photos)"}


@dataclass
class EvalReport:
    """One evaluation's numbers and the facts needed to read them.

    Attributes:
        metrics: kind -> metric key -> value in [0, 1] (NaN when undefined).
        convention: ``reference`` or ``standard`` (mars_lite.eval.metrics).
        setting: ``zero_shot`` or ``generalized``.
        split, benchmark, data: split name, its benchmark (``folder`` for a folder dataset), data root.
        model: name, pretrained, checkpoint path, embed_dim, classes_seen (None = unknown).
        query, gallery: counts and classes (gallery also ``seen_photos``: seen-class photos in it).
        finegrained: kind -> {acc@1, acc@5, n_sketches, n_unpaired}, or None when not asked.
        fast_mode: True marks the table "fast mode / not comparable with published numbers".
        seen_class_evaluation: True when the caller explicitly evaluated seen classes.
        cache: part name -> whether its embeddings came from the cache.
        skipped: image files left out as unreadable (``on_error="skip"``); named in the notes.
        files: paths of the JSON and Markdown files once saved.
    """

    metrics: dict[str, dict[str, float]]
    convention: str
    setting: str
    split: str
    benchmark: str
    data: str
    model: dict
    query: dict
    gallery: dict
    finegrained: dict[str, dict] | None = None
    fast_mode: bool = False
    seen_class_evaluation: bool = False
    cache: dict[str, bool] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    @property
    def comparable(self) -> bool:
        """Whether the numbers may stand beside the paper's: its backbone (ViT-B-32, OpenAI weights),
        not fast mode. A stand-in, random weights or another architecture measure something else."""
        paper = self.model.get("name") == REAL_MODEL and self.model.get("pretrained") == REAL_WEIGHTS
        return paper and not self.fast_mode

    @property
    def notes(self) -> list[str]:
        """Warnings that must accompany the numbers."""
        notes = []
        if self.fast_mode:
            notes.append(FAST_MODE_NOTE)
        if not self.comparable and not self.fast_mode:
            weights = "random weights" if self.model.get("pretrained") is None else self.model.get("pretrained")
            notes.append(f"{NOT_COMPARABLE_NOTE} (here: `{self.model.get('name')}`, {weights})")
        if self.skipped:
            listed = ", ".join(self.skipped[:5]) + (" ..." if len(self.skipped) > 5 else "")
            notes.append(f"{len(self.skipped)} unreadable image file(s) were skipped (on_error='skip'): {listed}")
        if self.seen_class_evaluation:
            notes.append(SEEN_CLASS_NOTE)
        if self.model.get("classes_seen") is None:
            notes.append("zero-shot bookkeeping not checked: the model came without a list of training classes")
        return notes

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN written as null)."""
        out = {"format": FORMAT, **asdict(self), "comparable": self.comparable, "notes": self.notes}
        out.pop("files")
        return _nan_to_none(out)

    def to_markdown(self) -> str:
        """The report as Markdown: header facts, the kind x metric table, fine-grained, published."""
        title = f"# ZS-SBIR evaluation: {self.split} — {SETTING_TITLES.get(self.setting, self.setting)}"
        lines = [title, ""]
        lines += [f"> **{note}**" for note in self.notes]
        if self.notes:
            lines.append("")
        m = self.model
        checkpoint = f"checkpoint {m['checkpoint']}" if m.get("checkpoint") else "no checkpoint (as created)"
        lines += [
            f"- model: `{m.get('name')}` (backbone weights: {m.get('weights') or weights_source(m)}; {checkpoint})",
            f"- data: `{self.data}` (split `{self.split}`, benchmark `{self.benchmark}`)",
            f"- queries: {self.query['count']} sketches of {len(self.query['classes'])} classes",
            f"- gallery: {self.gallery['count']} photos of {len(self.gallery['classes'])} classes"
            + (f", {self.gallery['seen_photos']} of them seen-class photos" if self.gallery.get("seen_photos") else ""),
            f"- metric convention: **{self.convention}** — {CONVENTION_NOTES.get(self.convention, '')}",
            "",
            "| query embedding | " + " | ".join(METRIC_NAMES[k] for k in METRIC_KEYS) + " |",
            "|---" * (len(METRIC_KEYS) + 1) + "|",
        ]
        for kind, values in self.metrics.items():
            lines.append(f"| {kind} | " + " | ".join(_fmt(values.get(k)) for k in METRIC_KEYS) + " |")
        if self.finegrained:
            any_kind = next(iter(self.finegrained.values()))
            lines += ["", "## Fine-grained (instance-level) retrieval",
                      f"Each sketch ranks the photos of its own class; hit when its paired photo is in the top k "
                      f"({any_kind['n_sketches']} paired sketches, {any_kind['n_unpaired']} without a pair).", "",
                      "| query embedding | Acc@1 | Acc@5 |", "|---|---|---|"]
            for kind, values in self.finegrained.items():
                lines.append(f"| {kind} | {_fmt(values.get('acc@1'))} | {_fmt(values.get('acc@5'))} |")
        lines += self._published_section()
        return "\n".join(lines) + "\n"

    def _published_section(self) -> list[str]:
        bench = benchmark_for_split(self.split)
        marks = (FAST_MODE_NOTE if self.fast_mode else "", "" if self.comparable else "not comparable",
                 self.convention + " convention")
        note = "; ".join(dict.fromkeys(n for n in marks if n))
        out = []
        if bench is not None and self.setting in ("zero_shot", "generalized"):
            out += ["", "## Published numbers, side by side (%)", "",
                    comparison_markdown(bench, self.metrics, setting=self.setting, ours_note=note).rstrip()]
        if self.finegrained and self.benchmark == "sketchy":
            out += ["", comparison_markdown("sketchy", self.finegrained, setting="finegrained",
                                            ours_note=note).rstrip()]
        return out

    def save(self, out_dir: str | Path, stem: str | None = None) -> dict[str, str]:
        """Write ``<stem>.json`` and ``<stem>.md`` atomically into ``out_dir``; returns their paths."""
        self.files = save_report(out_dir, stem or default_stem(self.split, self.setting), self.to_dict(),
                                 self.to_markdown())
        return self.files


def save_report(out_dir: str | Path, stem: str, data: dict, markdown: str) -> dict[str, str]:
    """Write ``data`` as ``<stem>.json`` and ``markdown`` as ``<stem>.md`` atomically into ``out_dir``;
    returns their paths (``{"json": ..., "markdown": ...}``)."""
    out_dir = Path(out_dir)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    text = json.dumps(data, indent=2, allow_nan=False)
    atomic_write(json_path, lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8"))
    atomic_write(md_path, lambda tmp: Path(tmp).write_text(markdown, encoding="utf-8"))
    return {"json": str(json_path), "markdown": str(md_path)}


def weights_source(model: dict) -> str:
    """Where a report's backbone weights came from, in words, from its ``model`` facts (``name``,
    ``pretrained``: the weights training started from, ``checkpoint``, ``backbone_saved``)."""
    start = _start_weights(model.get("name"), model.get("pretrained"))
    if not model.get("checkpoint"):
        return start
    saved = model.get("backbone_saved")
    if saved == "full":
        return f"the trained backbone, loaded from the checkpoint (training started from {start})"
    if saved == "layernorm":
        return f"{start}, with the trained LayerNorm parameters loaded from the checkpoint"
    if saved == "none":
        return f"{start} (frozen in training: the checkpoint holds the modality vectors and classifier)"
    return f"{start}, as the checkpoint records"


def _start_weights(name, pretrained) -> str:
    if pretrained is None:
        return "random init"
    if pretrained == STANDIN_TAG:
        return f"the {name} stand-in's shipped weights"
    text = str(pretrained)
    if "/" in text or "\\" in text or Path(text).suffix:
        return f"weight file {text}"
    return f"open_clip {text!r} weights"


def default_stem(split: str, setting: str) -> str:
    """File stem of a report: ``eval_<split>`` or ``eval_<split>_generalized``."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in split)
    return f"eval_{safe}" + ("" if setting == "zero_shot" else f"_{setting}")


def load_report(path: str | Path) -> dict:
    """Read a report JSON written by :meth:`EvalReport.save` (as a dict; null for undefined values)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a mars_lite evaluation report (format {data.get('format')!r})")
    return data


def _fmt(value) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _nan_to_none(obj):
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj
