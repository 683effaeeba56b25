"""The caption study (notebook 07, ``benchmarks/caption_study.py``): how much the wording of the
captions matters, at query time and at training time, and how fast damaged annotations hurt.

* Query time (no training, deterministic): each wording of :data:`WORDINGS` (plus the class's ImageNet
  synonyms, :func:`class_names`) gives every class one text embedding -- the mean of the normalised
  embeddings of all its captions when there are several (prompt ensembling). Measured: zero-shot
  classification of photos (photo templates) and sketches (sketch templates) among the unseen and
  among all classes, and text-to-photo retrieval of the unseen classes (mAP@all). Its uncertainty is
  the sampling of the images: a paired bootstrap of the accuracy difference to the paper's wording.
* Training time: frozen MARS (``train_on_embeddings``) on the seen classes' cached embeddings with
  each template set (``TrainConfig.caption_templates``; several templates per kind: each image gets
  one, see ``train.rows.build_rows``) and several seeds; measured by unseen sketch->photo mAP@all of
  the ``converted`` and ``semantic`` embeddings. Damaged annotations: a share of the training images
  gets a misspelled class name (:func:`misspell`) or another seen class's name (:func:`damage_items`).
Noise estimates, the "larger than noise" rule and the prose of the findings:
:mod:`mars_lite.study.caption_findings`.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..method.modalities import PAPER_TEMPLATES

NAMES_FILE = Path(__file__).with_name("caption_names.json")
KINDS = ("converted", "semantic")
# Frozen-mode epochs of every training run. The fast config's rate (5e-2, batch 64) on the 720 seen-class
# images: the unseen mAP was still rising at 20 epochs and had levelled off by 60 when the study was built.
DEFAULT_EPOCHS = 60
# name -> {"photo": [...], "sketch": [...]}; more than one template per kind = an ensemble
WORDINGS = {
    "paper": PAPER_TEMPLATES,
    "bare name": {"photo": ["{}"], "sketch": ["{}"]},
    "a drawing of a": {"photo": ["a photo of a {}"], "sketch": ["a drawing of a {}"]},
    "line drawing": {"photo": ["a photo of a {}"], "sketch": ["a black and white line drawing of a {}"]},
    "an image of a": {"photo": ["an image of a {}"], "sketch": ["an image of a {}"]},
    "ensemble": {"photo": ["a photo of a {}", "a picture of a {}", "an image of a {}", "a close-up photo of a {}"],
                 "sketch": ["a sketch of a {}", "a drawing of a {}", "a black and white line drawing of a {}",
                            "a doodle of a {}"]},
}
SYNONYMS = "synonyms (paper templates)"  # query-time only: names differ per class, templates do not


def class_names(label: str) -> list[str]:
    """The class name and its ImageNet synset names (``caption_names.json``, from Tiny-ImageNet's
    ``words.txt``; no WordNet glosses ship offline), without repeats; just the name when unknown."""
    synsets = _synset_names().get(label, {})
    names = [label.replace("_", " ")] + [n for names in synsets.values() for n in names]
    return list(dict.fromkeys(n for n in names))


@functools.lru_cache(maxsize=1)
def _synset_names() -> dict:
    """class -> wnid -> names, read once (``class_names`` is asked per class, wording and modality)."""
    return json.loads(NAMES_FILE.read_text(encoding="utf-8"))["classes"]


def class_text_embeddings(model, classes: Sequence[str], templates: Sequence[str], synonyms: bool = False,
                          cache: dict | None = None) -> torch.Tensor:
    """(C, D) unit vectors: per class the normalised mean of its captions' normalised embeddings
    (every template x every name; the class name alone unless ``synonyms``). ``cache``: text -> embedding."""
    texts = {c: [t.format(n) for t in templates for n in (class_names(c) if synonyms else [c.replace("_", " ")])]
             for c in classes}
    table = embed_cached(model, [t for ts in texts.values() for t in ts], cache)
    means = [torch.stack([table[t] for t in texts[c]]).mean(0) for c in classes]
    return torch.nn.functional.normalize(torch.stack(means), dim=-1)


def embed_cached(model, texts: Sequence[str], cache: dict | None = None) -> dict[str, torch.Tensor]:
    """text -> (D,) unit embedding, embedding only the texts ``cache`` does not hold yet."""
    from ..embed import embed_texts

    cache = {} if cache is None else cache
    new = [t for t in dict.fromkeys(texts) if t not in cache]
    if new:
        cache.update(zip(new, embed_texts(model, new)))
    return cache


@dataclass
class CaptionData:
    """What the study needs: the plain model, the seen-class training items with their (N, D)
    embeddings, an EmbeddingSet of every image (seen and unseen), the class lists, a text cache."""

    model: object
    train_items: list
    train_embeds: torch.Tensor
    everything: object  # EmbeddingSet: the seen-class images, then the unseen sketches and photos
    seen: tuple
    unseen: tuple
    texts: dict = dataclasses.field(default_factory=dict)  # caption text -> embedding

    def images(self, modality: str, classes: Sequence[str]):
        """EmbeddingSet of one modality's images of ``classes``."""
        return self.everything.select(modality, classes)


def caption_data(setup, model) -> CaptionData:
    """:class:`CaptionData` of a study setup (``setup.per_class`` images per class and modality at most).

    The seen-class images are the list frozen-mode training of this setup embeds (its training part,
    then its validation part: ``train.training``), read from that run's cache (``cache_dir`` of the
    config, else ``<artifacts>/embeddings``) so that notebook 05's frozen run has computed them; all of
    them train here (no model selection is made). The unseen sketches and photos are the study's
    query and gallery (``setup.cache_dir``, where notebooks 00 and 02 put them); they are only evaluated.
    """
    from ..embed import EmbeddingSet, embed_items
    from ..settings import embeddings_cache_dir
    from ..train.rows import seen_split
    from .setup import per_class_subset, study_parts
    from .spaces import embed
    from .training import study_train_config

    cfg = study_train_config(setup, mode="frozen")
    parts = seen_split(setup.data, setup.split, cfg.val_fraction, cfg.val_seed)
    both = parts.train.with_items([*parts.train, *parts.val])  # the order frozen training embeds them in
    items = list(per_class_subset(both, setup.per_class, setup.seed))
    seen = embed_items(model, items, cfg.cache_dir or embeddings_cache_dir(), progress=not setup.fast)
    test = study_parts(setup)
    sets = [seen] + [embed(setup, model, part, setup.per_class) for part in (test.query, test.gallery)]
    everything = EmbeddingSet(torch.cat([s.embeddings for s in sets]), [p for s in sets for p in s.paths],
                              [y for s in sets for y in s.labels], [m for s in sets for m in s.modalities])
    return CaptionData(model, items, seen.embeddings, everything, tuple(setup.split.seen), tuple(setup.split.unseen))


# ------------------------------------------------------------------------------ query time
def query_time_study(data: CaptionData, wordings: dict | None = None) -> tuple[list[dict], dict]:
    """One row per wording (and the synonyms): accuracies and text->photo mAP@all; plus
    ``hits[wording][column]`` = per-image bool arrays of the accuracy columns (for
    ``caption_findings.query_noise``)."""
    from ..eval.metrics import retrieval_metrics

    every = tuple(sorted(data.seen + data.unseen))
    variants = {**(wordings or WORDINGS), SYNONYMS: PAPER_TEMPLATES}
    rows, hits = [], {}
    for name, templates in variants.items():
        text = {m: class_text_embeddings(data.model, every, templates[m], name == SYNONYMS, data.texts)
                for m in ("photo", "sketch")}
        row, hits[name] = {"wording": name}, {}
        for m in ("photo", "sketch"):
            for part, classes in (("unseen", data.unseen), ("all", every)):
                images = data.images(m, classes)
                columns = [every.index(c) for c in classes]
                guess = (images.embeddings @ text[m][columns].T).argmax(1).numpy()
                hit = np.asarray(classes)[guess] == np.asarray(images.labels)
                hits[name][f"{m} acc {part}"] = hit
                row[f"{m} acc {part}"] = float(hit.mean())
        photos = data.images("photo", data.unseen)
        queries = text["photo"][[every.index(c) for c in data.unseen]]
        row["text→photo mAP unseen"] = float(retrieval_metrics(queries @ photos.embeddings.T, list(data.unseen),
                                                               photos.labels)["map_all"])
        rows.append(row)
    return rows, hits


# ------------------------------------------------------------------------------ damage
def misspell(name: str, variant: int = 0) -> str:
    """A deterministic typo of ``name`` that never equals it: variant % 3 picks swapping two
    neighbouring letters, dropping one, or replacing one; a hash of (name, variant) picks where."""
    h = int.from_bytes(hashlib.sha256(f"{name}|{variant}".encode()).digest()[:8], "big")
    letters = [i for i, ch in enumerate(name) if ch.isalpha()] or list(range(len(name)))
    if not letters:
        return name + "x"
    i = letters[h % len(letters)]
    op = variant % 3
    if op == 0 and i + 1 < len(name) and name[i] != name[i + 1]:
        return name[:i] + name[i + 1] + name[i] + name[i + 2:]
    if op in (0, 1) and len(name) > 1:
        return name[:i] + name[i + 1:]
    replacement = chr((ord(name[i].lower()) - 97 + 1 + h % 25) % 26 + 97) if name[i].isalpha() else "x"
    return name[:i] + replacement + name[i + 1:]


def damage_labels(labels: Sequence[str], share: float, kind: str, seed: int = 0) -> list[str]:
    """``labels`` with round(share x N) of them damaged (rows drawn with ``seed``): ``"typo"``
    misspells the name (one of three typos per class), ``"swap"`` puts another class's name."""
    if kind not in ("typo", "swap"):
        raise ValueError(f"unknown damage {kind!r}: use 'typo' or 'swap'")
    if not 0 <= share <= 1:
        raise ValueError(f"share must be in [0, 1], got {share}")
    rng = np.random.default_rng(seed)
    out, classes = list(labels), sorted(set(labels))
    if kind == "swap" and len(classes) < 2:
        raise ValueError("swapping class names needs at least two classes")
    for row in sorted(rng.choice(len(out), int(round(share * len(out))), replace=False).tolist()):
        if kind == "typo":
            out[row] = misspell(out[row], int(rng.integers(3)))
        else:
            others = [c for c in classes if c != out[row]]
            out[row] = others[int(rng.integers(len(others)))]
    return out


def damage_items(items: Sequence, share: float, kind: str, seed: int = 0) -> list:
    """The items with damaged annotations (:func:`damage_labels` on their labels; files unchanged)."""
    labels = damage_labels([item.label for item in items], share, kind, seed)
    return [dataclasses.replace(item, label=y) if y != item.label else item for item, y in zip(items, labels)]


# ------------------------------------------------------------------------------ training time
def unseen_map(model, data: CaptionData, kinds: Sequence[str] = KINDS) -> dict[str, float]:
    """Unseen sketch->photo mAP@all (reference convention) with each retrieval embedding."""
    from ..eval.metrics import evaluate_embeddings

    sketches, photos = data.images("sketch", data.unseen), data.images("photo", data.unseen)
    with torch.no_grad():
        return {k: float(evaluate_embeddings(model.retrieval_embedding(sketches.embeddings, "sketch", k),
                                             model.retrieval_embedding(photos.embeddings, "photo", k),
                                             sketches.labels, photos.labels)["map_all"]) for k in kinds}


def train_and_score(data: CaptionData, templates: dict, seed: int, items: Sequence | None = None,
                    config="fast", epochs: int = DEFAULT_EPOCHS, **overrides) -> dict[str, float]:
    """Frozen MARS from fresh M / classifier (drawn with ``seed``) on the seen-class embeddings,
    captioned with ``templates`` (``items``: relabelled training items, same order); its unseen mAP."""
    from ..train.rows import build_rows
    from ..train.training import load_train_config, train_on_embeddings

    cfg = load_train_config(config, caption_templates=templates, seed=seed, epochs=epochs, **overrides)
    rows = build_rows(items if items is not None else data.train_items, data.unseen, cfg.caption_templates)
    table = embed_cached(data.model, rows.captions, data.texts)
    model = data.model
    torch.manual_seed(seed)  # M ~ N(0, 1) and the classifier: as create_model draws them, per seed
    model.modality_embeddings.reset_parameters()
    model.discriminator.reset_parameters()
    train_on_embeddings(model, data.train_embeds, torch.stack([table[t] for t in rows.captions]), rows.caption_index,
                        rows.image_ids, rows.caption_ids, rows.labels, cfg, progress=False)
    return unseen_map(model, data)


def training_time_study(data: CaptionData, seeds: Sequence[int], wordings: dict | None = None,
                        **overrides) -> list[dict]:
    """One run per (wording, seed): {"wording", "seed", "converted", "semantic"}."""
    return [{"wording": name, "seed": s, **train_and_score(data, templates, s, **overrides)}
            for name, templates in (wordings or WORDINGS).items() for s in seeds]


def damage_study(data: CaptionData, seeds: Sequence[int], shares: Sequence[float] = (0.0, 0.2, 0.4, 0.6),
                 kinds: Sequence[str] = ("typo", "swap"), **overrides) -> list[dict]:
    """One run per (damage kind, share, seed), paper templates: {"damage", "share", "seed", mAPs}.
    The damaged rows are drawn with the run's seed, so the spread over seeds includes which ones."""
    runs, clean = [], {}  # share 0 is the same run for every kind: trained once per seed
    for kind in kinds:
        for share in shares:
            for s in seeds:
                if share == 0 and s in clean:
                    scores = clean[s]
                else:
                    items = damage_items(data.train_items, share, kind, s)
                    scores = train_and_score(data, PAPER_TEMPLATES, s, items, **overrides)
                    clean.update({s: scores} if share == 0 else {})
                runs.append({"damage": kind, "share": share, "seed": s, **scores})
    return runs
