"""Training MARS on a split's seen classes.

``training`` (``train``, ``ensure_trained``, ``train_on_embeddings``), ``config`` (``TrainConfig``; shipped JSON configs
in ``configs/``), ``rows`` (training rows, the seen-class validation split, samplers), ``full``
(paper / layernorm modes: the towers train), ``frozen`` + ``fast_frozen/`` (frozen mode on cached
embeddings, with the inner-product form of the losses tested equal to ``compute_losses``),
``validation`` (seen-class validation with ``compute_losses``), ``loop`` (epochs, checkpoints),
``state`` (resume), ``runfolder`` (no clobbering, one writer: ``run.lock``), ``distributed`` (several processes).
"""
from __future__ import annotations

from .config import TrainConfig, TrainResult, list_train_configs, load_train_config
from .training import ensure_trained, train, train_on_embeddings

__all__ = ["TrainConfig", "TrainResult", "ensure_trained", "list_train_configs", "load_train_config", "train", "train_on_embeddings"]
