"""Train MARS: ``train(config, data_root, out_dir) -> TrainResult`` (``mars-lite train`` calls it).

Backbone modes (``TrainConfig.mode``, see docs/method.md "Training"):

``frozen``     CLIP fixed; image embeddings computed once and cached on disk (``embed_cache``),
               only M and the classifier train, with the inner-product loss (CPU minutes).
``paper``      every CLIP parameter trains at ``backbone_lr`` (5e-8 in the paper; a stand-in
               backbone trains the part it declares), M and the classifier at ``lr`` (5e-3).
``layernorm``  only CLIP's LayerNorm parameters train (at ``backbone_lr``).

AdamW (weight decay 0.1 on every parameter), 5% linear warm-up then a constant rate, mixed
precision on CUDA. Only seen classes are read; the best checkpoint is chosen on a held-out part
of them. Files in ``out_dir``: ``last.safetensors`` and ``best.safetensors`` (load with
``mars_lite.load_model``), ``history.json`` (loss curves) and ``last_state.pt``
(what ``resume=True`` / ``--resume`` continues from); ``run.lock`` while a run writes. A folder that
holds a run is refused unless ``--resume`` or ``--overwrite`` is given. Several processes:
``torchrun --nproc_per_node=N -m mars_lite.cli train ...`` (see :mod:`mars_lite.train.distributed`).
Modules: ``rows`` (rows, split, samplers), ``frozen`` + ``fast_frozen/`` (frozen mode), ``full``
(paper / layernorm), ``validation``, ``loop`` (epochs, checkpoints), ``state`` (resume), ``runfolder``
(refuse to clobber a run; ``run.lock``), ``distributed``.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from ..config import ConfigError
from ..data.locations import resolve_data
from ..data.sources import resolve_split
from ..method.loading import open_model
from ..settings import embeddings_cache_dir, progress_enabled, seed_everything
from .config import (
    RESUMABLE_CHANGES,
    TrainConfig,
    TrainResult,
    list_train_configs,
    load_train_config,
)
from .rows import build_rows, check_no_unseen, make_sampler, seen_split
from .distributed import DistInfo, barrier, init_distributed, process_device, shutdown
from .loop import TrainingRun
from .runfolder import claim_on_main, claim_run_folder
from .state import BEST_CHECKPOINT, LAST_CHECKPOINT, load_state

__all__ = ["TrainConfig", "TrainResult", "ensure_trained", "list_train_configs", "load_train_config", "train",
           "train_on_embeddings"]


def _log_fn(enabled: bool):
    return (lambda line: print(f"[mars-lite train] {line}", flush=True)) if enabled else (lambda line: None)


def _recorded(saved: dict | None) -> dict | None:
    """A recorded training config as today's fields read it: runs from before ``caption_templates``
    existed were captioned with the paper's templates (the field's default)."""
    if saved is not None and "caption_templates" not in saved:
        saved = {**saved, "caption_templates": json.loads(json.dumps(TrainConfig().caption_templates))}
    return saved


def _check_resume_config(saved_json: str, cfg: TrainConfig, out_dir: Path) -> None:
    saved, now = _recorded(json.loads(saved_json)), json.loads(json.dumps(asdict(cfg)))
    differ = [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(saved) | set(now))
              if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k)]
    if differ:
        raise ConfigError(f"cannot resume {out_dir}: the config differs from the one it was started with "
                          f"({'; '.join(differ)}); only {list(RESUMABLE_CHANGES)} may change")


def _subsample(dataset, per_class: int | None):
    if per_class is None:
        return list(dataset)
    kept, counts = [], {}
    for item in sorted(dataset, key=lambda it: (it.label, it.modality, str(it.path), it.index or 0)):
        key = (item.label, item.modality)
        if counts.get(key, 0) < per_class:
            counts[key] = counts.get(key, 0) + 1
            kept.append(item)
    return kept


def _frozen_setup(model, rows, val_rows, cfg, dist, device, progress, log):
    """Embed (or read from the cache) the training and validation images once; the engine, the
    validator and whether the cache was used."""
    from .fast_frozen.loss import CachedPairs
    from .frozen import FrozenEngine
    from .validation import embed_rows, validate, validation_set
    cache = Path(cfg.cache_dir) if cfg.cache_dir else embeddings_cache_dir()
    both = build_rows(list(rows.items) + list(val_rows.items if val_rows else ()), templates=cfg.caption_templates)
    if not dist.is_main:
        barrier(dist)  # the main process fills the cache first
    embedded, captions = embed_rows(model, both, cache, cfg.embed_batch_size,
                                    progress=progress_enabled(progress) and dist.is_main)
    if dist.is_main:
        barrier(dist)
    log(f"embeddings {'read from' if embedded.from_cache else 'computed into'} the cache at {cache}")
    emb, logit_scale = embedded.embeddings.to(device), float(model.logit_scale)
    caption_map = {text: i for i, text in enumerate(both.captions)}
    train_captions = captions[[caption_map[t] for t in rows.captions]]
    pairs = CachedPairs(emb[:len(rows)], train_captions, rows.caption_index, rows.image_ids, rows.caption_ids,
                        logit_scale=logit_scale)
    engine = FrozenEngine(model, pairs, cfg.weights, cfg.lr, cfg.weight_decay, dist, cfg.frozen_threads,
                          cfg.frozen_prefetch)
    validator = None
    if val_rows is not None:
        val_captions = captions[[caption_map[t] for t in val_rows.captions]]
        vset = validation_set(val_rows, emb[len(rows):], val_captions, logit_scale)

        def validator(m):
            return validate(vset, m, cfg.weights, cfg.batch_size, cfg.seed, cfg.retrieval_kind, cfg.metric_convention)
    return engine, validator, embedded.from_cache


def _full_setup(model, rows, val_rows, cfg, dist, device):
    """The paper/layernorm engine and a validator that embeds the validation images each time
    (from the frozen prefix of the image tower when the backbone has one and images are preloaded)."""
    from ..embed import embed_texts
    from .full import FullEngine, RowImages
    from .validation import embed_rows, validate, validation_set
    engine = FullEngine(model, rows, cfg.mode, cfg.weights, cfg.lr, cfg.backbone_lr, cfg.weight_decay, cfg.amp,
                        cfg.num_workers, cfg.preload_images, dist)
    if val_rows is None:
        return engine, None
    prefix = getattr(model.clip, "frozen_image_prefix", None) if cfg.preload_images else None
    cached = None if prefix is None else RowImages(val_rows.items, model.preprocess, preload=True,
                                                   prefix=lambda x: prefix(x.to(device))).cache

    @torch.no_grad()
    def validator(m):
        if cached is None:
            embedded, captions = embed_rows(m, val_rows, None, cfg.embed_batch_size)
            images = embedded.embeddings.to(device)
        else:
            step = cfg.embed_batch_size
            images = torch.cat([m.clip.encode_image_from_prefix(tuple(c[i:i + step] for c in cached), normalize=True)
                                for i in range(0, len(val_rows), step)])
            captions = embed_texts(m, list(val_rows.captions)).to(device)
        vset = validation_set(val_rows, images, captions, float(m.logit_scale))
        return validate(vset, m, cfg.weights, cfg.batch_size, cfg.seed, cfg.retrieval_kind, cfg.metric_convention)
    return engine, validator


def train(config="fast", data_root=None, out_dir=None, *, device=None, resume: bool = False,
          overwrite: bool = False, progress: bool | None = None, verbose: bool = True, on_error: str = "raise",
          **overrides) -> TrainResult:
    """Train a model and write checkpoints to ``out_dir``.

    Args:
        config: shipped config name (``fast``, ``frozen``, ``paper``, ``layernorm``), JSON path,
            dict or TrainConfig. overrides: TrainConfig fields that replace the config's
            (``epochs=3``, ``max_steps=10`` ...).
        data_root: dataset folder, or a built-in name (``"mini_sbir"``, the default).
        out_dir: output folder (created). resume: continue the run saved in ``out_dir``.
            overwrite: replace the run ``out_dir`` holds (its run files are deleted first).
            Without either, a folder that holds a run is refused (``RunFolderError``), and so is
            one another run is writing to (``run.lock``, see :mod:`mars_lite.train.runfolder`).
        device: ``"cpu"``, ``"cuda"``, ... (default: CUDA when available).
        progress: tqdm bars (default: only on a terminal, never under CI / TQDM_DISABLE).
        verbose: print one line per epoch (main process).
        on_error: ``"raise"`` (an unreadable image stops before training) or ``"skip"`` it.
    Returns:
        a :class:`TrainResult` (history for loss curves, checkpoint paths).
    """
    started = time.perf_counter()
    if out_dir is None:
        raise ValueError("train() needs out_dir (where checkpoints go)")
    cfg = load_train_config(config, **overrides)
    out_dir, data_root = Path(out_dir), resolve_data(data_root)
    if resume and not out_dir.is_dir():
        load_state(out_dir)  # raises: says that no earlier run wrote there
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    joined_here = not torch.distributed.is_initialized()
    dist = init_distributed(device)
    try:
        with claim_on_main(out_dir, dist, resume=resume, overwrite=overwrite):
            result = _train_claimed(cfg, data_root, out_dir, device, dist, resume, progress, verbose, on_error)
    finally:
        if joined_here:
            shutdown(dist)
    result.seconds = time.perf_counter() - started
    return result


def _train_claimed(cfg, data_root, out_dir, device, dist, resume, progress, verbose, on_error) -> TrainResult:
    """:func:`train` once the run folder is ours."""
    device = process_device(device, dist)
    log = _log_fn(verbose and dist.is_main)
    state = None
    if resume:
        state = load_state(out_dir)
        _check_resume_config(state["config"], cfg, out_dir)
    seed_everything(cfg.seed)
    split = resolve_split(data_root, cfg.split)
    parts = seen_split(data_root, split, cfg.val_fraction, cfg.val_seed, on_error=on_error)
    rows = build_rows(_subsample(parts.train, cfg.max_images_per_class), parts.unseen, cfg.caption_templates)
    val_rows = build_rows(parts.val, parts.unseen, cfg.caption_templates) if len(parts.val) else None
    log(f"{cfg.mode} mode, {len(rows)} training rows of {len(parts.seen)} seen classes, "
        f"{len(val_rows) if val_rows else 0} validation rows, {dist.world_size} process(es) on {device}")
    # a fresh model from the config, or the one stored in init_checkpoint (never one that saw unseen classes)
    model, info = open_model(cfg.model, pretrained=None if cfg.init_checkpoint else cfg.pretrained,
                             checkpoint=cfg.init_checkpoint, device=device)
    if cfg.init_checkpoint is not None:
        check_no_unseen(info["classes_seen"] or [], parts.unseen, f"the training classes of {cfg.init_checkpoint}")
    if state is not None:
        model.load_state_dict(state["model"], strict=False)
    if cfg.mode == "frozen":
        engine, validator, from_cache = _frozen_setup(model, rows, val_rows, cfg, dist, device, progress, log)
    else:
        (engine, validator), from_cache = _full_setup(model, rows, val_rows, cfg, dist, device), None
    meta = {"classes_seen": list(parts.seen),
            "extra": {"mode": cfg.mode, "split": parts.split_name, "unseen": list(parts.unseen),
                      "val_rule": {"fraction": parts.val_rule.fraction, "salt": parts.val_rule.salt},
                      "train_config": asdict(cfg)}}
    result = _execute(model, engine, rows.labels, cfg, dist, out_dir, validator, meta, state, log, progress)
    result.embeddings_from_cache = from_cache
    return result


def _execute(model, engine, labels, cfg, dist, out_dir, validator, meta, state, log, progress) -> TrainResult:
    """Sampler, loop, (resume) and the result; shared by :func:`train` and :func:`train_on_embeddings`."""
    started = time.perf_counter()
    sampler = make_sampler(labels, seed=cfg.seed, balanced=cfg.balanced_sampler, shuffle=cfg.shuffle,
                           num_replicas=dist.world_size, rank=dist.rank)
    if out_dir is not None and dist.is_main:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    run = TrainingRun(model=model, engine=engine, sampler=sampler, num_rows=len(labels), cfg=cfg, dist=dist,
                      out_dir=out_dir, validator=validator, checkpoint_meta=meta, log=log, progress=progress)
    if state is not None:
        run.restore(state)
        log(f"resumed at epoch {run.epoch + 1}, step {run.global_step}")
    run.run()
    engine.sync_model()  # the model holds the last weights also when no checkpoint was written (out_dir None)
    last = best = None
    if out_dir is not None:
        last, best = Path(out_dir) / LAST_CHECKPOINT, Path(out_dir) / BEST_CHECKPOINT
        best = best if best.is_file() else None
    return TrainResult(None if out_dir is None else Path(out_dir), cfg, run.history.to_dict(), last, best,
                       run.best_epoch, run.epoch, run.global_step, run.stopped_early, None,
                       time.perf_counter() - started)


def _trained_with(path: Path) -> dict | None:
    """The training config a checkpoint records (None for an unreadable file)."""
    from ..method.checkpoint import read_checkpoint

    try:
        return _recorded(read_checkpoint(path)[1].get("extra", {}).get("train_config"))
    except (FileNotFoundError, ValueError):
        return None


def ensure_trained(config, data_root=None, out_dir=None, **options) -> Path:
    """The best (else last) checkpoint in ``out_dir`` when it was trained with exactly ``config``;
    otherwise train now (``options`` go to :func:`train`) and return the new one. Reusing a run only
    when its recorded config equals the wanted one keeps a stale checkpoint from standing in. ``out_dir``
    is this function's cache: a run there with another config is replaced (``overwrite=True`` unless
    ``options`` say otherwise); a run still writing there (``run.lock``) is refused."""
    cfg = load_train_config(config)
    wanted = json.loads(json.dumps(asdict(cfg)))
    out_dir = Path(out_dir)
    for path in (out_dir / BEST_CHECKPOINT, out_dir / LAST_CHECKPOINT):
        if path.is_file() and _trained_with(path) == wanted:
            return path
    options.setdefault("overwrite", not options.get("resume", False))
    result = train(cfg, data_root, out_dir, **options)
    return result.best_checkpoint or result.last_checkpoint


def train_on_embeddings(model, image_embeds: torch.Tensor, caption_embeds: torch.Tensor, caption_index,
                        image_ids, caption_ids, labels, config="frozen", *, out_dir=None, overwrite: bool = False,
                        classes_seen=None, verbose: bool = False, progress: bool | None = None,
                        **overrides) -> TrainResult:
    """Frozen-mode training of ``model``'s M and classifier on embeddings you already have.

    Args:
        model: a MarsModel; its modality vectors and classifier are trained in place: after the
            call they hold the weights of the last step (``last.safetensors`` when ``out_dir`` is given;
            ``best.safetensors`` / ``result.best_epoch`` name the epoch with the lowest training loss).
        image_embeds: (N, D) image embeddings z_v; caption_embeds: (C, D) caption embeddings.
        caption_index, image_ids, caption_ids: (N,) int64 per row (see ``frozen_loss.CachedPairs``).
        labels: N class names (for the class-balanced sampler).
        config / overrides: a TrainConfig as in :func:`train` (``mode`` is forced to ``frozen``).
        out_dir: where checkpoints and history go; None writes nothing. No validation is run.
            A folder that holds a run is refused unless ``overwrite`` (as in :func:`train`).
    """
    from .fast_frozen.loss import CachedPairs
    from .frozen import FrozenEngine
    cfg = load_train_config(config, **{**overrides, "mode": "frozen"})
    seed_everything(cfg.seed)
    device = model.device
    pairs = CachedPairs(image_embeds.to(device), caption_embeds.to(device), caption_index, image_ids, caption_ids,
                        logit_scale=float(model.logit_scale))
    engine = FrozenEngine(model, pairs, cfg.weights, cfg.lr, cfg.weight_decay, threads=cfg.frozen_threads,
                          prefetch=cfg.frozen_prefetch)
    meta = {"classes_seen": sorted(set(classes_seen or labels)), "extra": {"mode": "frozen", "train_config": asdict(cfg)}}
    if out_dir is None:
        return _execute(model, engine, list(labels), cfg, DistInfo(), None, None, meta, None, _log_fn(verbose), progress)
    with claim_run_folder(out_dir, overwrite=overwrite):
        return _execute(model, engine, list(labels), cfg, DistInfo(), out_dir, None, meta, None, _log_fn(verbose),
                        progress)
