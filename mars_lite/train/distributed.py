"""Multi-process training helpers: process-group setup from ``torchrun`` and batch gathering.

``torchrun --nproc_per_node=N -m mars_lite.cli train ...`` (or ``python -m torch.distributed.run``)
starts N processes with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set; :func:`init_distributed`
reads them and joins the process group (gloo on CPU, nccl on CUDA). Training then wraps the
trainable module in PyTorch's ``DistributedDataParallel`` and each rank takes ``1/N`` of every
global batch.

Why gather: the CLIP term contrasts each image with every caption of the batch. With a rank-local
loss each rank would only see its own ``B/N`` negatives, so N processes would optimise a different
loss than one process with batch B. As open_clip's ``ClipLoss`` does with ``gather_with_grad``,
every rank gathers the embeddings of the whole global batch -- with gradient, through
``torch.distributed.nn.functional.all_gather`` -- and computes the loss of the full batch. Every
rank then holds the same loss; the backward of the gather sums the N identical gradients that
reach each rank's own embeddings and DDP divides the summed parameter gradients by N, so the
update equals the single-process one.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import RunFolderError


@dataclass(frozen=True)
class DistInfo:
    """This process' place in the run: ``rank`` of ``world_size`` (1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, histories and logs."""
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes (no-op for a single process).

    Uses nccl for CUDA devices and gloo otherwise; on CUDA, each process takes the GPU
    ``LOCAL_RANK``. Returns the rank information.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank)


def process_device(device: torch.device, info: DistInfo) -> torch.device:
    """The device of this process: with several CUDA processes, ``cuda:LOCAL_RANK``."""
    if info.enabled and device.type == "cuda":
        return torch.device("cuda", info.local_rank)
    return device


def gather_with_grad(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """(B_local, ...) on every rank -> (W * B_local, ...) in rank order, differentiable."""
    if not info.enabled:
        return tensor
    from torch.distributed.nn.functional import all_gather
    with warnings.catch_warnings():
        # Newer torch suggests the private _functional_collectives instead; this public,
        # differentiable all_gather is the one open_clip's ClipLoss uses.
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(all_gather(tensor), 0)


def gather_plain(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Like :func:`gather_with_grad` for tensors that need no gradient (ids, row indices)."""
    if not info.enabled:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(info.world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, 0)


def share_error(info: DistInfo, error: BaseException | None) -> None:
    """Raise ``error`` (an exception the main process hit before training, e.g. a refused run
    folder) on every process: without this the others would wait at the next collective until
    torchrun tears them down. Every process must call it; only the main one's ``error`` counts."""
    if info.enabled:
        message = [None if error is None else f"{type(error).__name__}: {error}"]
        dist.broadcast_object_list(message, src=0)
        if error is None and message[0] is not None:
            raise RunFolderError(f"the main process (rank 0) stopped the run: {message[0]}")
    if error is not None:
        raise error


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    """Leave the process group (only when this module joined one)."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
