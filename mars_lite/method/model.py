"""The MARS model: an open_clip backbone plus learned modality vectors and a modality classifier.

``create_model(name, pretrained=None, device=None) -> (model, preprocess)`` mirrors open_clip's
``create_model_and_transforms``. ``name`` is one of the JSON configs in ``model_configs/``
(``tiny``, ``ViT-B-32``) or any open_clip architecture name; ``pretrained`` is an open_clip tag
(``"openai"``), a local weight file (``.safetensors``/``.pt``/``.bin``) or ``None`` (random init).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import open_clip
import open_clip.transform
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..config import ConfigError, load_config
from .losses import LOGIT_SCALE, compute_losses
from .modalities import NUM_MODALITIES, PHOTO_ID, RETRIEVAL_KINDS, modality_id
from .weights import resolve_weights

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
STANDIN_TAG = "shipped"  # what ``model.pretrained`` says for a stand-in with its shipped weights


@dataclass
class ModelConfig:
    """Architecture of a MARS model.

    Exactly one of ``open_clip_name`` (an open_clip built-in architecture), ``clip`` (the keyword
    arguments of ``open_clip.CLIP``: embed_dim, vision_cfg, text_cfg, quick_gelu) and ``standin``
    (the name of a stand-in shipped with its weights, see ``standin.py``) is set.
    """

    name: str
    open_clip_name: str | None = None
    clip: dict | None = None
    standin: str | None = None
    default_pretrained: str | None = None
    image_mean: list[float] = field(default_factory=lambda: list(OPENAI_MEAN))
    image_std: list[float] = field(default_factory=lambda: list(OPENAI_STD))
    num_modalities: int = NUM_MODALITIES
    logit_scale: float = LOGIT_SCALE

    def validate(self) -> None:
        if sum(x is not None for x in (self.open_clip_name, self.clip, self.standin)) != 1:
            raise ValueError("set exactly one of 'open_clip_name', 'clip' and 'standin'")
        if self.num_modalities != NUM_MODALITIES:
            raise ValueError(f"'num_modalities' must be {NUM_MODALITIES} (photo, sketch, two caption kinds)")
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError("'image_mean' and 'image_std' need 3 values (RGB)")


def list_model_configs() -> list[str]:
    """Names of the JSON model configs shipped with the package."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def get_model_config(name: str | Path | dict | ModelConfig) -> ModelConfig:
    """Resolve a config: a shipped name, a JSON path, a dict, or an open_clip architecture name."""
    if isinstance(name, (dict, ModelConfig)):
        return load_config(ModelConfig, name)
    path = CONFIG_DIR / f"{name}.json"
    if path.is_file():
        return load_config(ModelConfig, path)
    if Path(str(name)).suffix == ".json":
        return load_config(ModelConfig, Path(name))
    if str(name) in open_clip.list_models():
        return ModelConfig(name=str(name), open_clip_name=str(name))
    raise ConfigError(f"unknown model {name!r}: use one of {list_model_configs()}, a JSON config "
                      "file, or an open_clip architecture (open_clip.list_models())")


class MarsModel(nn.Module):
    """CLIP towers + modality vectors M (4, D) + linear modality classifier D -> 4.

    Attributes: ``clip`` (open_clip model), ``modality_embeddings`` (nn.Embedding(4, D), N(0, 1)
    init as in the reference), ``discriminator`` (nn.Linear(D, 4)), ``tokenizer``, ``preprocess``,
    ``config`` and ``pretrained`` (what the backbone weights came from).
    """

    def __init__(self, config: ModelConfig, clip: nn.Module, tokenizer, preprocess, pretrained: str | None):
        super().__init__()
        self.config = config
        self.clip = clip
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.pretrained = pretrained
        width = self.embed_dim
        self.modality_embeddings = nn.Embedding(config.num_modalities, width)
        self.discriminator = nn.Linear(width, config.num_modalities)
        self.register_buffer("logit_scale", torch.tensor(float(config.logit_scale)), persistent=False)

    @property
    def embed_dim(self) -> int:
        """Width D of the joint embedding space."""
        return int(self.clip.text_projection.shape[1])

    @property
    def device(self) -> torch.device:
        return self.modality_embeddings.weight.device

    # ---------------------------------------------------------------- encoders
    def _as_batch(self, images) -> torch.Tensor:
        """Accept a (B, 3, H, W) tensor, a PIL image, a path, or a list of PIL images/paths."""
        if isinstance(images, torch.Tensor):
            batch = images if images.dim() == 4 else images.unsqueeze(0)
        else:
            items = images if isinstance(images, (list, tuple)) else [images]
            if not items:
                raise ValueError("no images given")
            batch = torch.stack([self.preprocess(_open(item)) for item in items])
        return batch.to(self.device)

    def encode_image(self, images, normalize: bool = True) -> torch.Tensor:
        """(B, D) image embeddings z_v from a (B, 3, H, W) batch or PIL images / paths."""
        return self.clip.encode_image(self._as_batch(images), normalize=normalize)

    def encode_sketch(self, images, normalize: bool = True) -> torch.Tensor:
        """(B, D) sketch embeddings; same image tower, named by modality so code reads clearly."""
        return self.encode_image(images, normalize=normalize)

    def encode_photo(self, images, normalize: bool = True) -> torch.Tensor:
        """(B, D) photo embeddings (same image tower as sketches)."""
        return self.encode_image(images, normalize=normalize)

    def tokenize(self, texts: str | Sequence[str]) -> torch.Tensor:
        """(B, context_length) int64 tokens with the model's own tokenizer."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        return self.tokenizer(texts).to(self.device)

    def encode_text(self, texts, normalize: bool = True) -> torch.Tensor:
        """(B, D) caption embeddings z_t from strings or a (B, L) token tensor."""
        tokens = texts.to(self.device) if isinstance(texts, torch.Tensor) else self.tokenize(texts)
        return self.clip.encode_text(tokens, normalize=normalize)

    # ----------------------------------------------------------- retrieval
    def retrieval_embedding(self, embeds: torch.Tensor, modality: str | int, kind: str) -> torch.Tensor:
        """Unit vectors used for cosine retrieval (docs/method.md, "Retrieval").

        Args:
            embeds: (N, D) normalised image embeddings z_v of one modality.
            modality: ``"sketch"``/``"photo"`` (or id) of those embeddings.
            kind: ``original`` (z_v), ``converted`` (z_v - m_own + m_photo: every item moved into
                the photo modality; photos are unchanged) or ``semantic`` (z_v - m_own).
        Returns:
            (N, D) L2-normalised embeddings.
        """
        own = modality_id(modality)
        m = self.modality_embeddings.weight.to(embeds.dtype)
        if kind == "original":
            out = embeds
        elif kind == "converted":
            out = embeds - m[own] + m[PHOTO_ID]
        elif kind == "semantic":
            out = embeds - m[own]
        else:
            raise ValueError(f"unknown retrieval embedding {kind!r}; use one of {RETRIEVAL_KINDS}")
        return F.normalize(out, dim=-1)

    # ---------------------------------------------------------------- training
    def losses(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor, modality_ids: torch.Tensor,
               weights) -> dict:
        """All loss terms for precomputed (B, D) embeddings and (B, 2) modality ids."""
        return compute_losses(image_embeds, text_embeds, modality_ids, self.modality_embeddings.weight,
                              self.discriminator.weight, self.discriminator.bias, self.logit_scale, weights)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor, modality_ids: torch.Tensor, weights) -> dict:
        """One training step's losses: encode (B, 3, H, W) images and (B, L) tokens, then the losses."""
        return self.losses(self.clip.encode_image(images, normalize=True),
                           self.clip.encode_text(tokens, normalize=True), modality_ids, weights)


class _OpenClipWarnings(logging.Filter):
    """Drops open_clip's warnings (e.g. "No pretrained weights loaded") while a model is built."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.WARNING and "open_clip" in record.pathname)


def _open(item) -> Image.Image:
    if isinstance(item, Image.Image):
        return item
    from ..data import load_image  # the data layer handles RGBA, palette, EXIF, 16-bit ...
    return load_image(item)


def _build_clip(config: ModelConfig, pretrained: str | None) -> tuple[nn.Module, Any]:
    """open_clip model and its tokenizer; ``pretrained`` is already resolved (tag or file)."""
    if config.standin is not None:
        from .standin import build_standin  # the shipped weights unless a file is given
        clip, tokenizer, _ = build_standin(pretrained)
        return clip, tokenizer
    if config.open_clip_name is not None:
        clip = open_clip.create_model(config.open_clip_name, pretrained=pretrained, weights_only=True)
        tokenizer = open_clip.get_tokenizer(config.open_clip_name)
        return clip, tokenizer
    clip = open_clip.CLIP(**config.clip)
    if pretrained is not None:
        open_clip.load_checkpoint(clip, pretrained, strict=True, weights_only=True)
    context = config.clip.get("text_cfg", {}).get("context_length", 77)
    return clip, open_clip.SimpleTokenizer(context_length=context)


def build_preprocess(config: ModelConfig, clip: nn.Module):
    """Eval-time transform PIL -> (3, H, W): open_clip's own, with the config's mean/std."""
    cfg = dict(getattr(clip.visual, "preprocess_cfg", {}) or {})
    cfg.update(size=clip.visual.image_size, mean=tuple(config.image_mean), std=tuple(config.image_std))
    pp = open_clip.transform.PreprocessCfg(**{k: v for k, v in cfg.items()
                                              if k in open_clip.transform.PreprocessCfg.__dataclass_fields__})
    return open_clip.transform.image_transform_v2(pp, is_train=False)


def weight_source(config: ModelConfig, pretrained: str | None) -> str | None:
    """What ``create_model`` loads for ``pretrained``, checked without building anything: ``None``
    (random init, or a stand-in's shipped weights), an existing local file, or a tag that is cached
    or downloadable. Raises as ``weights.resolve_weights`` (missing file, unknown tag, offline)."""
    if config.standin is not None:
        return None if pretrained in (None, "default", STANDIN_TAG) else resolve_weights(None, pretrained)
    return resolve_weights(config.open_clip_name, pretrained)


def create_model(name: str | Path | dict | ModelConfig, pretrained: str | None = None,
                 device=None) -> tuple[MarsModel, Any]:
    """Build a MARS model and its eval preprocessing.

    Args:
        name: ``tiny``, ``ViT-B-32``, a JSON config path/dict, or an open_clip architecture name.
        pretrained: open_clip tag (e.g. ``"openai"``), local weight file, or ``None`` for random
            init. With no network the tag fails within seconds with instructions (see weights.py).
        device: torch device (default CPU).
    Returns:
        ``(model, preprocess)``; ``model.preprocess`` is the same transform.
    """
    config = get_model_config(name)
    if config.standin is not None and pretrained in (None, "default", STANDIN_TAG):
        pretrained = None  # a stand-in is pretrained by construction: these mean its shipped weights
    source = weight_source(config, pretrained)
    # open_clip logs a warning through the root logger on every random init, which is the intent
    # here; a filter drops just those records while building, leaving the user's logging as it is.
    quiet = _OpenClipWarnings()
    logging.getLogger().addFilter(quiet)
    try:
        clip, tokenizer = _build_clip(config, source)
    finally:
        logging.getLogger().removeFilter(quiet)
    preprocess = build_preprocess(config, clip)
    label = STANDIN_TAG if config.standin is not None and pretrained is None else pretrained
    model = MarsModel(config, clip, tokenizer, preprocess, pretrained=None if label is None else str(label))
    model = model.to(torch.device(device) if device is not None else torch.device("cpu"))
    model.eval()
    return model, preprocess


def config_dict(model: MarsModel) -> dict:
    """The model's config as a JSON-ready dict."""
    return asdict(model.config)
