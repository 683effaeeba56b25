"""Presenter mode: ``mars-lite demo`` serves the live sketch query full screen with Voilà.

Voilà runs the small app notebook shipped in the package (``mars_lite/ui/apps/demo.ipynb``), which
calls :func:`build_demo_app` on :meth:`DemoConfig.from_env`. The command passes its options to that
kernel through ``MARS_LITE_DEMO_*`` environment variables (``mars_lite.cli.demo`` parses them).
The default model is ``auto`` (``method.weights.choose_backbone``, said on the page): the paper's
ViT-B-32 when its OpenAI weights are in the local cache (or ``MARS_LITE_WEIGHTS`` names a weight
file), else the offline ``mobilenet-minilm`` stand-in; either with a MARS checkpoint trained on
mini_sbir's seen classes (on first use, about a minute on CPU, then kept), and every mini_sbir
photo as the gallery. ``--checkpoint ...`` and ``--gallery DIR [--benchmark NAME --split NAME]``
or ``--index DIR`` give a model and gallery of your own.
"""
from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .. import settings

APP_NOTEBOOK = Path(__file__).resolve().parent / "apps" / "demo.ipynb"
DEFAULT_MODEL = "auto"  # choose_backbone: ViT-B-32 when its weights are here, else the stand-in
# checkpoint "default": the chosen backbone trained by the kit on mini_sbir's seen classes
DEFAULT_CHECKPOINT = "default"
NO_CHECKPOINT = "none"
ENV_PREFIX = "MARS_LITE_DEMO_"


@dataclass
class DemoConfig:
    """What the demo shows.

    Attributes:
        model, pretrained, checkpoint, seed: the query model (see ``mars_lite.method.loading.open_model``);
            model ``"auto"`` and pretrained ``"default"`` let :func:`demo_backbone` choose; checkpoint
            ``"default"`` is :func:`default_checkpoint` (when the model is the chosen backbone),
            ``"none"`` the backbone with untrained modality vectors.
        gallery: ``mini_sbir`` or a folder (``<root>/photo/<class>/<file>``, or a benchmark root).
        benchmark, split: read ``gallery`` as this benchmark and keep this split's unseen classes.
        index: a saved gallery index (``mars-lite index build``) used instead of embedding ``gallery``.
        k: results shown.
        kind: the query embedding the page starts with (``original``: the stand-in's MARS training in
            fast mode is too short for ``converted`` to beat it, see benchmarks/standin_zero_shot.py).
        cache_dir: embedding cache (default ``<artifacts>/embeddings``).
        on_error: ``raise`` or ``skip`` unreadable gallery photos (``--on-error``).
    """

    model: str = DEFAULT_MODEL
    pretrained: str | None = "default"
    checkpoint: str | None = DEFAULT_CHECKPOINT
    seed: int = 0
    gallery: str = "mini_sbir"
    benchmark: str | None = None
    split: str | None = None
    index: str | None = None
    k: int = 10
    cache_dir: str | None = None
    kind: str = "original"
    on_error: str = "raise"

    def to_env(self) -> dict[str, str]:
        """``MARS_LITE_DEMO_<FIELD>`` variables for the fields that are set."""
        return {ENV_PREFIX + key.upper(): str(value) for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_env(cls, environ: dict | None = None) -> "DemoConfig":
        """The config passed by ``mars-lite demo`` (defaults for unset variables)."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = int(raw) if f.type in ("int", int) else raw
        return cls(**values)

    def gallery_name(self) -> str:
        if self.index:
            return f"index: {Path(self.index).name}"
        if self.gallery == "mini_sbir":
            return "mini_sbir" + (" (unseen classes)" if self.split else "")
        return f"{self.benchmark or 'folder'}: {Path(self.gallery).name}" + (f" ({self.split} unseen)" if self.split else "")


def gallery_sources(model, config: DemoConfig) -> dict:
    """name -> callable building the gallery index: the configured gallery first, mini_sbir as well."""
    from ..search.index import GalleryIndex, gallery_dataset, photo_index_from_items

    cache = config.cache_dir or str(settings.embeddings_cache_dir())

    def from_data(data, benchmark=None, split=None):
        meta = {"data": str(data), "benchmark": benchmark, "split": split}
        return lambda: photo_index_from_items(model, gallery_dataset(data, benchmark, split, config.on_error),
                                              cache, meta=meta)

    sources = {}
    if config.index:
        sources[config.gallery_name()] = lambda: GalleryIndex.load(config.index)
    else:
        sources[config.gallery_name()] = from_data(config.gallery, config.benchmark, config.split)
    sources.setdefault("mini_sbir", from_data("mini_sbir"))
    return sources


def demo_backbone(config: DemoConfig):
    """The ``BackboneChoice`` of ``config``: ``auto``/``default`` defer to ``choose_backbone``."""
    from ..method.weights import choose_backbone

    model = None if config.model in (DEFAULT_MODEL, "", None) else config.model
    weights = None if config.pretrained in ("default", "", None) else config.pretrained
    return choose_backbone(model, weights)


def default_checkpoint(backbone=None, progress: bool = False) -> Path:
    """The demo's MARS checkpoint for ``backbone`` (default: the stand-in), trained on mini_sbir's
    seen classes on first use into ``<artifacts>/demo/<key>`` and reused while the recorded training
    config is the same (``ensure_trained``). The key hashes the backbone's weights, so new weights
    mean a new checkpoint. The stand-in trains with the shipped ``fast`` config (about a minute on
    two CPU cores); another backbone with the ``frozen`` config (embeddings computed once)."""
    import hashlib

    from ..files import sha256_file
    from ..method.standin import WEIGHTS
    from ..train import ensure_trained
    from ..train.training import load_train_config

    if backbone is None or backbone.standin:
        digest = sha256_file(WEIGHTS)[:16]
        config = "fast"
    else:
        weights = Path(str(backbone.pretrained)).expanduser()
        identity = sha256_file(weights) if weights.is_file() else str(backbone.pretrained)
        digest = hashlib.sha256(f"{backbone.model}|{identity}".encode()).hexdigest()[:16]
        config = load_train_config("frozen", model=backbone.model, pretrained=backbone.pretrained,
                                   split="mini_sbir", epochs=30, num_workers=0)
    return ensure_trained(config, "mini_sbir", settings.artifacts_dir() / "demo" / digest,
                          verbose=progress, progress=progress)


def demo_model(config: DemoConfig):
    """``(model, info)`` of the demo: ``config``'s model, weights and checkpoint (see ``open_model``);
    ``info["backbone"]`` is the ``BackboneChoice`` line."""
    from ..method.loading import open_model
    from ..method.weights import REAL_MODEL

    checkpoint = config.checkpoint
    if checkpoint not in (DEFAULT_CHECKPOINT, NO_CHECKPOINT, "", None):
        # a checkpoint of the user's own: it records its backbone; pretrained only overrides its weights
        return open_model(config.model, pretrained=config.pretrained, checkpoint=checkpoint, seed=config.seed)
    backbone = demo_backbone(config)
    # the kit trains a default checkpoint for the stand-in and for pretrained ViT-B-32, not for
    # random weights or other configs (their untrained modality vectors are shown as such)
    trainable = backbone.standin or (backbone.model == REAL_MODEL and backbone.pretrained is not None)
    checkpoint = default_checkpoint(backbone) if checkpoint == DEFAULT_CHECKPOINT and trainable else None
    model, info = open_model(backbone.model, pretrained=backbone.pretrained, checkpoint=checkpoint,
                             seed=config.seed)
    info["backbone"] = backbone.line()
    return model, info


def describe(info: dict) -> str:
    """One line for the page: which model, which weights, trained on which classes."""
    weights = info["pretrained"] or "random weights (seeded)"
    why = f" {info['backbone']}" if info.get("backbone") else ""
    if info["checkpoint"] is None:
        return f"Model {info['name']} ({weights}); no MARS checkpoint: the modality vectors are untrained.{why}"
    seen = ", ".join(info["classes_seen"] or []) or "unknown classes"
    return (f"Model {info['name']} ({weights}) + MARS checkpoint {Path(info['checkpoint']).name}, "
            f"trained on the seen classes {seen}; every other class is new to it.{why}")


def demo_searcher(config: DemoConfig | None = None):
    """The demo's model and galleries with no widget around them: ``(SketchSearcher, model info)``,
    for scripts (``mars-lite query``) and the app alike."""
    from ..search.live import SketchSearcher, default_autocast

    config = config or DemoConfig.from_env()
    model, info = demo_model(config)
    searcher = SketchSearcher(model, gallery_sources(model, config), k=config.k, autocast=default_autocast(model))
    return searcher, info


def build_demo_app(config: DemoConfig | None = None, warm: bool = True):
    """The live sketch app for ``config`` (default: ``DemoConfig.from_env()``).

    ``warm`` builds the first gallery now, so the first stroke is answered at full speed. Models
    larger than ``tiny`` encode under bfloat16 autocast on CPUs that support it natively
    (``benchmarks/query_latency.py``: ~1.7x faster for ViT-B-32, same top-10 almost always).
    """
    from ..search.live import default_autocast
    from .sketchpad import live_sketch_app

    config = config or DemoConfig.from_env()
    model, info = demo_model(config)
    sources = gallery_sources(model, config)
    app = live_sketch_app(model, sources, k=config.k, kind=config.kind, cache_dir=config.cache_dir,
                          autocast=default_autocast(model), about=describe(info))
    if warm:
        app.searcher.gallery(app.searcher.gallery_names[0])
    return app


def voila_command(port: int, open_browser: bool) -> list[str]:
    """The Voilà command line serving the app notebook on 127.0.0.1."""
    cmd = [sys.executable, "-m", "voila", str(APP_NOTEBOOK), f"--port={port}", "--Voila.ip=127.0.0.1",
           "--theme=light", "--show_tracebacks=True"]
    return cmd if open_browser else cmd + ["--no-browser"]
