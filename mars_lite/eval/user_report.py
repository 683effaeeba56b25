"""The report of sketch search on a user's own folders (``eval.user_folder``), as JSON and Markdown.

``UserFolderReport.classes`` holds one row per measured class: ``class``, ``sketches``, ``photos``
(R), ``p_<k>`` for each k, ``map_all``, ``chance`` (R / G) and ``seen_in_training`` (``None`` when
the model records no training classes); ``overall`` maps every query embedding kind to the means
over all sketches. The notes say that the classes are the user's own (no zero-shot split) and
which of them the checkpoint trained on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from .report import _fmt, _nan_to_none, save_report, weights_source

FORMAT = "mars_lite.user_folder_eval/1"
STEM = "eval_user_folder"
OWN_CLASSES_NOTE = ("your own classes, not a benchmark's: no zero-shot split applies, and the numbers are not "
                    "comparable with published ones")
AP_NOTES = {"reference": "VOC-interpolated AP over the whole ranking (the authors' convention)",
            "standard": "non-interpolated AP over the whole ranking (as scikit-learn)"}


@dataclass
class UserFolderReport:
    """Per-class precision of a user's sketches on a user's photos, and the facts to read it by.

    Attributes:
        photos, sketches: the two folders. model: name, pretrained, checkpoint, classes_seen, ...
        kind: query embedding of the per-class rows. ks: the k of P@k. convention: of mAP@all.
        classes: per-class rows (see the module docstring). overall: kind -> {p_<k>, map_all}.
        chance: mean over sketches of R / G. gallery: {count, classes}. skipped: unreadable files left out.
        files: the written JSON and Markdown paths once saved.
    """

    photos: str
    sketches: str
    model: dict
    kind: str
    ks: list[int]
    convention: str
    classes: list[dict]
    overall: dict[str, dict[str, float]]
    chance: float
    gallery: dict
    skipped: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    @property
    def queries(self) -> int:
        return sum(row["sketches"] for row in self.classes)

    @property
    def overlap(self) -> list[str] | None:
        """Measured classes the model trained on (``None``: it records no training classes)."""
        if self.model.get("classes_seen") is None:
            return None
        return [row["class"] for row in self.classes if row["seen_in_training"]]

    @property
    def notes(self) -> list[str]:
        """What must travel with the numbers: own classes, overlap with training, caps, skipped files."""
        notes = [OWN_CLASSES_NOTE]
        seen = self.model.get("classes_seen")
        if self.model.get("checkpoint") is None and seen is None:
            notes.append("no MARS checkpoint: the modality vectors are untrained, and the training classes unknown")
        elif seen is None:
            notes.append("the model records no training classes: whether these classes are new to it is unknown")
        elif self.overlap:
            notes.append(f"the checkpoint trained on {len(self.overlap)} of these {len(self.classes)} classes "
                         f"({', '.join(self.overlap)}): their rows are NOT zero-shot")
        else:
            notes.append(f"zero-shot for every class: none of them is among the {len(seen)} classes the checkpoint "
                         f"trained on ({', '.join(seen)})")
        capped = [row["class"] for row in self.classes if row["photos"] < max(self.ks)]
        if capped:
            notes.append(f"P@{max(self.ks)} cannot reach 1 for classes with fewer than {max(self.ks)} photos "
                         f"({', '.join(capped)}): at most photos / {max(self.ks)}")
        if self.gallery["count"] < max(self.ks):
            notes.append(f"the gallery holds {self.gallery['count']} photos, fewer than k = {max(self.ks)}")
        if self.skipped:
            notes.append(f"{len(self.skipped)} unreadable image file(s) were skipped: {', '.join(self.skipped[:5])}")
        return notes

    def rows(self) -> list[dict]:
        """Display rows (class, counts, P@k, mAP@all, chance, trained on) plus an 'all sketches' row."""
        trained = {True: "yes", False: "no", None: "unknown"}
        out = [{"class": r["class"], "sketches": r["sketches"], "photos": r["photos"],
                **{f"P@{k}": r[f"p_{k}"] for k in self.ks}, "mAP@all": r["map_all"], "chance": r["chance"],
                "trained on": trained[r["seen_in_training"]]} for r in self.classes]
        mean = self.overall[self.kind]
        out.append({"class": "all sketches", "sketches": self.queries, "photos": self.gallery["count"],
                    **{f"P@{k}": mean[f"p_{k}"] for k in self.ks}, "mAP@all": mean["map_all"],
                    "chance": self.chance, "trained on": ""})
        return out

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN written as null)."""
        out = {"format": FORMAT, **asdict(self), "overlap": self.overlap, "notes": self.notes}
        out.pop("files")
        return _nan_to_none(out)

    def to_markdown(self) -> str:
        """Header facts, the per-class table of ``kind`` and the overall row of every query embedding."""
        m = self.model
        checkpoint = f"checkpoint {m['checkpoint']}" if m.get("checkpoint") else "no checkpoint"
        lines = ["# Sketch search on your own photos", ""] + [f"> **{note}**" for note in self.notes] + [""]
        lines += [
            f"- model: `{m.get('name')}` (backbone weights: {m.get('weights') or weights_source(m)}; {checkpoint})",
            f"- photos (the gallery): `{self.photos}`: {self.gallery['count']} photos of "
            f"{len(self.gallery['classes'])} classes",
            f"- sketches (the queries): `{self.sketches}`: {self.queries} sketches of {len(self.classes)} classes",
            f"- P@k: photos of the sketch's class among the top k, / k; chance: photos of the class / all photos "
            f"(what a random ranking gets); mAP@all: {AP_NOTES.get(self.convention, self.convention)}",
            "", f"## Per class (query embedding `{self.kind}`)", "",
        ]
        rows = self.rows()
        keys = list(rows[0])
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for row in rows:
            cells = [_fmt(v) if isinstance(v, float) else str(v) for v in row.values()]
            lines.append("| " + " | ".join(cells) + " |")
        metrics = [f"p_{k}" for k in self.ks] + ["map_all"]
        names = [f"P@{k}" for k in self.ks] + ["mAP@all"]
        lines += ["", "## Every query embedding (means over all sketches)", "",
                  "| query embedding | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for kind, values in self.overall.items():
            lines.append(f"| {kind} | " + " | ".join(_fmt(values.get(k)) for k in metrics) + " |")
        return "\n".join(lines) + "\n"

    def save(self, out_dir: str | Path, stem: str = STEM) -> dict[str, str]:
        """Write ``<stem>.json`` and ``<stem>.md`` atomically into ``out_dir``; returns their paths."""
        self.files = save_report(out_dir, stem, self.to_dict(), self.to_markdown())
        return self.files
