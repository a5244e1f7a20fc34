"""Data-parallel training over torch.distributed (DDP): the strategy ``torchrun`` runs use.

Every process (rank ``r`` of ``W``) holds a copy of the model, draws the same global minibatch of
``config.batch_size`` rows from the same seeded generator, and computes the loss on its
contiguous ``batch_size / W`` rows; ``DistributedDataParallel`` averages the gradients in the
backward pass, so every rank takes the same optimiser step (the mean gradient of the global
batch, as one process would) and the EMA, updated on the unwrapped module, stays identical on
every rank. The loss's own draws (diffusion time steps and noise) come from a per-rank
generator seeded from ``(seed, step, rank)``, so ranks do not repeat each other's noise and a
resumed run draws what an uninterrupted one did. Only rank 0 writes checkpoints.

Processes are started by ``torchrun`` (or any launcher that sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``): gloo on CPU, nccl on CUDA, with a timeout
on every collective so a rank that dies ends the others with an error instead of a hang.
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..rng import block_seed

#: seconds a collective waits for the other ranks before failing (``CAUSALDIFF_DIST_TIMEOUT``)
DEFAULT_TIMEOUT = 300.0


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    if value is None:
        raise RuntimeError(f"DDPStrategy: ${name} is not set; start the processes with torchrun "
                           "(or a launcher that sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)")
    return int(value)


def init_process_group(device: str | None = None, timeout: float | None = None) -> torch.device:
    """Join the process group torchrun's environment describes (once per process) and return this
    rank's device: ``cuda:LOCAL_RANK`` with nccl when CUDA is available (and ``device``, if
    given, is a cuda device), else the CPU with gloo. ``timeout`` (seconds): default ``$CAUSALDIFF_DIST_TIMEOUT`` or
    :data:`DEFAULT_TIMEOUT`."""
    rank, world, local = _env_int("RANK"), _env_int("WORLD_SIZE"), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        seconds = float(os.environ.get("CAUSALDIFF_DIST_TIMEOUT", DEFAULT_TIMEOUT)) if timeout is None else timeout
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=seconds),
                                device_id=dev if use_cuda else None)
    return dev


class DDPStrategy:
    """Rank ``rank`` of ``world_size`` processes of an initialised default process group
    (:func:`init_process_group`); ``find_unused_parameters`` is passed to DDP."""

    def __init__(self, find_unused_parameters: bool = False) -> None:
        if not dist.is_initialized():
            raise RuntimeError("DDPStrategy: torch.distributed is not initialised; call "
                               "causaldiff.training.init_process_group() first (under torchrun)")
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.find_unused_parameters = find_unused_parameters
        self._loss_gen: torch.Generator | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """``DistributedDataParallel(model)`` (which broadcasts rank 0's weights)."""
        if self.world_size == 1:
            return model
        device = next(model.parameters()).device
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                       find_unused_parameters=self.find_unused_parameters)

    def shard(self, indices: Tensor) -> Tensor:
        """Rows ``r * B/W ... (r + 1) * B/W - 1`` of the global batch of ``B`` rows."""
        b = indices.shape[0]
        if b % self.world_size:
            raise ValueError(f"batch_size {b} is not divisible by the world size {self.world_size}: the global "
                             "batch is split evenly between the processes")
        local = b // self.world_size
        return indices[self.rank * local:(self.rank + 1) * local]

    def loss_generator(self, generator: torch.Generator, seed: int, step: int) -> torch.Generator:
        """The shared generator on one process; else this rank's, seeded from ``(seed, step, rank)``."""
        if self.world_size == 1:
            return generator
        if self._loss_gen is None or self._loss_gen.device != generator.device:
            self._loss_gen = torch.Generator(device=generator.device)
        return self._loss_gen.manual_seed(block_seed(block_seed(seed, step + 1), self.rank + 1))

    def reduce(self, tensor: Tensor) -> Tensor:
        out = tensor.detach().clone()
        dist.all_reduce(out)
        return out / self.world_size

    def barrier(self) -> None:
        dist.barrier()

    def __repr__(self) -> str:
        return f"DDPStrategy(rank={self.rank}, world_size={self.world_size})"


__all__ = ["DDPStrategy", "init_process_group", "DEFAULT_TIMEOUT"]
