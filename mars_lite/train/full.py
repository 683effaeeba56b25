"""Training through CLIP's towers: ``paper`` mode (every CLIP parameter at a small learning rate)
and ``layernorm`` mode (only CLIP's LayerNorm parameters train).

Each step encodes the batch's images and captions, gathers the embeddings of the global batch
from every process with gradient (see :mod:`mars_lite.train.distributed`), and computes the five terms
with :func:`mars_lite.method.losses.compute_losses`. On CUDA the towers run under ``torch.autocast``
(bf16 where supported, else fp16 with a gradient scaler); the losses are computed in float32.
Captions repeat a lot within a batch (one per class and modality), so each distinct caption of
the batch is encoded once and its embedding indexed per row -- the same values and gradients as
encoding every row's caption.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..method.losses import compute_losses
from .rows import TrainRows
from .distributed import DistInfo, gather_plain, gather_with_grad
from ..method.losses import LOSS_KEYS

# Modules whose parameters train in "layernorm" mode.
_NORM_TYPES = (nn.LayerNorm,)


class RowImages(Dataset):
    """Preprocessed training images by row: ``dataset[i] -> ((3, H, W) tensor, i)``.

    With ``preload=True`` every image is decoded and preprocessed once up front (no augmentation
    is used, so the tensors never change); useful for small datasets. ``prefix`` (with preload): a
    frozen first part of the image tower, ``(B, 3, H, W) -> tensor or tuple of tensors``, run once
    here so that each step computes only the part that trains; items are then that part's input.
    """

    def __init__(self, items, preprocess, preload: bool = False, prefix=None, chunk: int = 64):
        self.items, self.preprocess = list(items), preprocess
        self.cache = None
        if preload:
            parts = []
            for start in range(0, len(self.items), chunk):
                images = torch.stack([self._load(i) for i in range(start, min(start + chunk, len(self.items)))])
                if prefix is not None:
                    with torch.no_grad():
                        images = prefix(images)
                parts.append(images if isinstance(images, tuple) else (images,))
            self.cache = tuple(torch.cat(column) for column in zip(*parts))

    def _load(self, index: int) -> torch.Tensor:
        return self.preprocess(self.items[index].load())

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        if self.cache is None:
            return self._load(index), index
        if len(self.cache) == 1:
            return self.cache[0][index], index
        return tuple(column[index] for column in self.cache), index


def configure_trainable(model, mode: str) -> list[nn.Parameter]:
    """Set ``requires_grad`` for ``mode`` and return the backbone parameters that train.

    ``paper``: every CLIP parameter except ``logit_scale`` (fixed at 2.6592 as in the reference;
    the loss uses the model's buffer). ``layernorm``: the LayerNorm weights and biases only.
    M and the classifier always train.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    declared = getattr(model.clip, "trainable_backbone_parameters", None)
    if declared is not None and mode in ("paper", "layernorm"):
        backbone = declared(mode)  # a stand-in says which part of its towers trains
    elif mode == "paper":
        backbone = [p for name, p in model.clip.named_parameters() if name != "logit_scale"]
    elif mode == "layernorm":
        backbone = [p for module in model.clip.modules() if isinstance(module, _NORM_TYPES)
                    for p in module.parameters(recurse=False)]
    else:
        raise ValueError(f"mode {mode!r} does not train through the backbone")
    for p in [*backbone, *model.modality_embeddings.parameters(), *model.discriminator.parameters()]:
        p.requires_grad_(True)
    return backbone


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` ("auto", "bf16", "fp16", "off"); None off CUDA."""
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


class ImageTextStep(nn.Module):
    """forward(images, tokens, caption_rows, modality_ids) -> loss dict of the global batch.

    Args (forward): images (B_local, 3, H, W), or the frozen prefix's output when ``from_prefix``;
    tokens (U, L) of the batch's distinct captions; caption_rows (B_local,) index into ``tokens``;
    modality_ids (B_local, 2).
    """

    def __init__(self, model, weights: list[float], dist: DistInfo, amp_dtype: torch.dtype | None,
                 from_prefix: bool = False):
        super().__init__()
        self.model, self.weights, self.dist, self.amp_dtype = model, weights, dist, amp_dtype
        self.from_prefix = from_prefix

    def forward(self, images, tokens, caption_rows, modality_ids) -> dict:
        clip = self.model.clip
        with torch.autocast("cuda", dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            if self.from_prefix:
                image_embeds = clip.encode_image_from_prefix(images, normalize=True)
            else:
                image_embeds = clip.encode_image(images, normalize=True)
            text_embeds = clip.encode_text(tokens, normalize=True)[caption_rows]
        image_embeds = gather_with_grad(image_embeds.float(), self.dist)
        text_embeds = gather_with_grad(text_embeds.float(), self.dist)
        modality_ids = gather_plain(modality_ids, self.dist)
        m = self.model
        return compute_losses(image_embeds, text_embeds, modality_ids, m.modality_embeddings.weight,
                              m.discriminator.weight, m.discriminator.bias, m.logit_scale, self.weights)


class FullEngine:
    """Steps of ``paper`` / ``layernorm`` training.

    Args:
        model: the MarsModel (trained in place).
        rows: the training rows; mode: "paper" or "layernorm".
        weights: the 5 loss weights; lr: M and classifier; backbone_lr: CLIP parameters.
        weight_decay: AdamW weight decay (all parameters, as in the reference).
        amp: "auto" | "bf16" | "fp16" | "off" (only used on CUDA).
        num_workers, preload: image loading (DataLoader workers; decode everything up front).
    """

    def __init__(self, model, rows: TrainRows, mode: str, weights: list[float], lr: float, backbone_lr: float,
                 weight_decay: float, amp: str = "auto", num_workers: int = 0, preload: bool = False,
                 dist: DistInfo = DistInfo()):
        self.model, self.rows, self.dist, self.num_workers = model, rows, dist, num_workers
        device = model.device
        backbone = configure_trainable(model, mode)
        new = [*model.modality_embeddings.parameters(), *model.discriminator.parameters()]
        groups = [{"params": new, "lr": lr, "base_lr": lr},
                  {"params": backbone, "lr": backbone_lr, "base_lr": backbone_lr}]
        # The fused kernel (CPU and CUDA) is several times faster than the per-tensor loop.
        self.optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, fused=True)
        dtype = autocast_dtype(amp, device)
        self.scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        # A backbone whose image tower starts with a frozen part (the stand-in) runs it once, up front.
        prefix = getattr(model.clip, "frozen_image_prefix", None) if preload else None
        self.step_module = ImageTextStep(model, weights, dist, dtype, from_prefix=prefix is not None)
        self.module = self.step_module
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel
            ids = [device.index] if device.type == "cuda" else None
            self.module = DistributedDataParallel(self.step_module, device_ids=ids)
        self.tokens = model.tokenize(list(rows.captions))                   # (C, L)
        self.caption_index = rows.caption_index.to(device)
        self.modality_ids = rows.modality_ids.to(device)
        self.images = RowImages(rows.items, model.preprocess, preload=preload,
                                prefix=None if prefix is None else lambda x: prefix(x.to(device)))

    def batches(self, local_order: torch.Tensor, start: int = 0):
        """This rank's batches of an epoch from step ``start``: ((B, 3, H, W) images, (B,) rows)."""
        sampler = local_order[start:].tolist()
        return DataLoader(self.images, batch_sampler=sampler, num_workers=self.num_workers,
                          pin_memory=self.model.device.type == "cuda")

    @contextmanager
    def running(self):
        """Training mode for the duration of the steps."""
        was_training = self.model.training
        self.model.train()
        try:
            yield
        finally:
            self.model.train(was_training)

    def step(self, batch, lr_scale: float) -> torch.Tensor:
        """One optimizer step; returns the (6,) detached losses of the global batch (``LOSS_KEYS``)."""
        images, rows = batch
        device = self.model.device
        images = (tuple(x.to(device, non_blocking=True) for x in images) if isinstance(images, (list, tuple))
                  else images.to(device, non_blocking=True))
        rows = rows.to(device)
        distinct, caption_rows = torch.unique(self.caption_index[rows], return_inverse=True)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * lr_scale
        values = self.module(images, self.tokens[distinct], caption_rows, self.modality_ids[rows])
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(values["total"]).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            values["total"].backward()
            self.optimizer.step()
        return torch.stack([values[k].detach().float() for k in LOSS_KEYS])

    @staticmethod
    def loss_table(reports: list) -> torch.Tensor:
        """(S, 6) losses in the order ``LOSS_KEYS`` from the (6,) reports of S steps."""
        return torch.stack(reports)

    def sync_model(self) -> None:
        """Nothing to copy: the model's own parameters train."""

    def state_dict(self) -> dict:
        state = {"optimizer": self.optimizer.state_dict()}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
