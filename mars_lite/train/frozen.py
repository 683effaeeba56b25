"""Frozen-backbone training: only M and the classifier train, on cached CLIP embeddings.

The image embeddings come from :func:`mars_lite.embed.embed_items` (keyed by model config,
backbone weights and preprocessing, so a stale cache is never used) and the captions from
``embed_texts``. A step is the inner-product loss of :mod:`mars_lite.train.fast_frozen.loss` and an AdamW
update. With one process the gradient comes straight from the hand-written backward
(:func:`mars_lite.train.fast_frozen.grad.loss_and_grad`, no autograd graph); with several, autograd runs
through DDP so that its hooks average the gradients. The trainable tensors -- M (4, D), W (4, D),
bias (4,) -- live in one flat parameter, so the update is a handful of tensor operations
(:class:`FlatAdamW`, the same arithmetic as ``torch.optim.AdamW``). A step is a few hundred
microseconds of small operations; the loop runs them on one intra-op thread
(:meth:`FrozenEngine.running`) because more threads only add synchronisation at this size.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from .fast_frozen.loss import CachedPairs, PairBatch
from .distributed import DistInfo, gather_plain



class FlatAdamW:
    """AdamW on one tensor; matches ``torch.optim.AdamW`` (decoupled weight decay, bias correction).

    ``step(lr)`` takes the learning rate of this step, so schedules need no scheduler object.
    """

    def __init__(self, param: torch.Tensor, lr: float, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        self.param, self.lr, self.betas, self.eps, self.weight_decay = param, lr, tuple(betas), eps, weight_decay
        self.exp_avg = torch.zeros_like(param)
        self.exp_avg_sq = torch.zeros_like(param)
        self.step_count = 0

    @torch.no_grad()
    def step(self, lr: float | None = None, grad: torch.Tensor | None = None) -> None:
        """One update with ``grad`` (default: the parameter's ``.grad``)."""
        lr = self.lr if lr is None else lr
        grad = self.param.grad if grad is None else grad
        beta1, beta2 = self.betas
        self.step_count += 1
        self.param.mul_(1 - lr * self.weight_decay)
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias1 = 1 - beta1 ** self.step_count
        bias2_sqrt = (1 - beta2 ** self.step_count) ** 0.5
        denom = (self.exp_avg_sq.sqrt() / bias2_sqrt).add_(self.eps)
        self.param.addcdiv_(self.exp_avg, denom, value=-lr / bias1)

    def zero_grad(self) -> None:
        self.param.grad = None

    def state_dict(self) -> dict:
        return {"step": self.step_count, "exp_avg": self.exp_avg.clone(), "exp_avg_sq": self.exp_avg_sq.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step"])
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])


class FrozenHead(nn.Module):
    """The trainable part in frozen mode: [M (4, D) | W (4, D) | bias (4,)] as one flat parameter."""

    def __init__(self, model, pairs: CachedPairs, weights: list[float]):
        super().__init__()
        k, width = model.modality_embeddings.weight.shape
        self.shape = (k, width)
        self.pairs, self.weights = pairs, tuple(weights)
        parts = [model.modality_embeddings.weight, model.discriminator.weight, model.discriminator.bias]
        self.flat = nn.Parameter(torch.cat([p.detach().float().reshape(-1) for p in parts]))

    def parts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Views (M, W, bias) into the flat parameter."""
        k, width = self.shape
        return (self.flat[:k * width].view(k, width), self.flat[k * width:2 * k * width].view(k, width),
                self.flat[2 * k * width:])

    def forward(self, batch: PairBatch):
        """(total, terms, clip, orthogonal) of the batch; total is differentiable (autograd)."""
        return self.pairs.step_losses(batch, self.flat, self.weights)

    @torch.no_grad()
    def copy_to(self, model) -> None:
        """Write the trained values into the model's own parameters."""
        m, w, b = self.parts()
        model.modality_embeddings.weight.copy_(m)
        model.discriminator.weight.copy_(w)
        model.discriminator.bias.copy_(b)


@contextmanager
def _threads(count: int):
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class FrozenEngine:
    """Steps of frozen-mode training (see the module docstring).

    Args:
        model: the MarsModel; its M and classifier initialise the head and receive the result.
        pairs: the training rows on cached embeddings.
        weights: the 5 loss weights; lr, weight_decay: AdamW settings for M and the classifier.
        dist: process information; with several processes the head is wrapped in DDP and every
            rank computes the loss of the whole global batch (the embeddings are constants held
            by every rank, so gathering the batch's row indices is gathering its embeddings).
        threads: intra-op threads while stepping; prefetch: batches gathered ahead in a thread.
    """

    def __init__(self, model, pairs: CachedPairs, weights: list[float], lr: float, weight_decay: float,
                 dist: DistInfo = DistInfo(), threads: int = 1, prefetch: int = 0):
        self.model, self.pairs, self.dist, self.threads, self.prefetch = model, pairs, dist, threads, prefetch
        self.head = FrozenHead(model, pairs, weights).to(pairs.image_embeds.device)
        self.module = self.head
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel
            self.module = DistributedDataParallel(self.head)
        self.optimizer = FlatAdamW(self.head.flat, lr=lr, weight_decay=weight_decay)
        self.lr = lr
        self.flat_values = self.head.flat.detach()  # same storage, updated in place by the optimizer

    def batches(self, local_order: torch.Tensor, start: int = 0) -> Iterator[PairBatch]:
        """The global batches of an epoch from this rank's (S, B_local) order, from step ``start``."""
        order = local_order.to(self.pairs.image_embeds.device)
        if self.dist.enabled:  # (W * S, B_local) in rank order -> (S, W * B_local)
            gathered = gather_plain(order, self.dist).view(self.dist.world_size, *order.shape)
            order = gathered.permute(1, 0, 2).reshape(order.shape[0], -1)
        return self.pairs.epoch(order[start:], prefetch=self.prefetch)

    def running(self):
        """Context to run steps in (sets the intra-op thread count)."""
        return _threads(self.threads)

    def step(self, batch: PairBatch, lr_scale: float):
        """One optimizer step at ``lr * lr_scale``; returns the batch's (clip, terms, orthogonal,
        total) losses, detached (see :meth:`loss_table`)."""
        if self.dist.enabled:  # through DDP, whose autograd hooks average the gradients
            total, terms, clip, orth = self.module(batch)
            total.backward()
            grad = self.head.flat.grad
        else:  # one process: the hand-written gradient directly, no autograd graph
            total, terms, clip, orth, grad = self.pairs.step_losses(batch, self.flat_values, self.head.weights,
                                                                    with_grad=True)
            self.optimizer.step(self.lr * lr_scale, grad)
            return clip, terms, orth, total                                    # no autograd history
        self.optimizer.step(self.lr * lr_scale, grad)
        self.optimizer.zero_grad()
        return clip, terms.detach(), orth.detach(), total.detach()

    @staticmethod
    def loss_table(reports: list) -> torch.Tensor:
        """(S, 6) losses in the order ``LOSS_KEYS`` from the reports of S steps."""
        clip, terms, orth, total = (torch.stack(part) for part in zip(*reports))
        return torch.cat([clip[:, None], terms, orth[:, None], total[:, None]], 1)

    def sync_model(self) -> None:
        self.head.copy_to(self.model)

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
