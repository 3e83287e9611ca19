"""One cell on several processes: ``torchrun --nproc_per_node=N -m fabook run ...`` (or ``fabook.train``).

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) :func:`fabook.train` joins the process group
(NCCL for CUDA, gloo otherwise), wraps the model in ``DistributedDataParallel`` and gives each rank a shard
of every epoch's order. What holds the ranks together:

- **The cell is the same experiment at any world size.** ``batch_size`` is the *global* batch: each rank
  takes ``batch_size / world_size`` samples a step (it must divide), DDP averages the gradients, so a step
  sees the same samples and takes the same update as one process would (up to float rounding; BatchNorm
  normalizes each rank's part of the batch, as DDP does). The config, its key and its result file do not
  depend on the world size; the result's provenance records it.
- **Sharding** is ``DistributedSampler``'s: epoch ``e``'s order (:func:`fabook.train.epoch_generator`, the
  same on every rank) cut to a multiple of the world size, rank ``r`` taking ``order[r::world_size]``. The
  union of the ranks' ``i``-th batches is the single process's ``i``-th batch.
- **Same weights and feedback on every rank**: every rank seeds its global generators from the config's
  seed and builds the model (weights and feedback: FA's B, sign masks, PFA's B and R) from them; DDP then
  broadcasts rank 0's parameters and buffers anyway.
- **Learned feedback** (KP's B, PFA's R) is a parameter: its gradient is all-reduced like W's.
- **Random per-step work agrees** because every rank draws it from the same global generator stream in the
  same order: WM's mirror noise (the noise probes the layer, not the data, so ranks need no different
  noise) and brSF's per-batch redraw of its magnitudes. Both equal the single process's draws; DDP's buffer
  broadcast before each forward would resync them besides.
- **Only rank 0 writes** the checkpoint and the result. Every rank reads the checkpoint to resume, so with
  several machines the results folder must be shared (as it is on a cluster's network file system).

Each rank evaluates the whole test set (the test numbers agree), and the training loss and accuracy are
averaged over ranks.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def world_size() -> int:
    """Processes in the job: the process group's size, else ``$WORLD_SIZE``, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank (0 outside a distributed job)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Whether this process writes results: rank 0, or the only process."""
    return rank() == 0


def setup(device: torch.device, batch_size: int) -> torch.device:
    """Join the process group when launched with ``WORLD_SIZE`` > 1 (once per process) and return the device
    this rank trains on (``cuda`` becomes ``cuda:$LOCAL_RANK``). ValueError if the batch does not split."""
    size = world_size()
    if size == 1:
        return device
    if batch_size % size:
        raise ValueError(
            f"batch_size={batch_size} is the global batch and must be a multiple of the world size {size}"
        )
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def local_batch(batch_size: int) -> int:
    """Samples per rank and step for a global ``batch_size``."""
    return batch_size // world_size()


def shard(order: torch.Tensor) -> torch.Tensor:
    """This rank's part of an epoch's order: cut to a multiple of the world size, every ``world_size``-th."""
    size = world_size()
    if size == 1:
        return order
    return order[: len(order) - len(order) % size][rank() :: size]


def wrap(model: nn.Module) -> nn.Module:
    """``DistributedDataParallel(model)`` in a distributed job (it broadcasts rank 0's weights), else
    ``model``."""
    if world_size() == 1:
        return model
    device = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def average(device: torch.device, *values: float) -> tuple[float, ...]:
    """The mean over ranks of each value (each rank contributes the same number of samples)."""
    if world_size() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return tuple((t / world_size()).tolist())


def provenance(batch_size: int) -> dict[str, Any]:
    """What a result records about the job: world size and per-rank batch."""
    return {"world_size": world_size(), "rank_batch_size": local_batch(batch_size)}
