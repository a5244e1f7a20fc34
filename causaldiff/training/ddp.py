"""Data-parallel training over torch.distributed (DDP): the strategy ``torchrun`` runs use.

Every rank draws the same global minibatch from the same seeded generator and computes the loss on
its contiguous ``batch_size / W`` rows; DDP averages the gradients, so every rank takes the step one
process would and the EMA stays identical. The loss's own draws come from a generator seeded
``(seed, step, rank)``; only rank 0 writes checkpoints. Launchers set ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``: gloo on CPU, nccl on CUDA, every collective with a
timeout, so a dead rank ends the others with an error instead of a hang.
"""

from __future__ import annotations

import datetime
import os
import re

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import LaunchError
from ..rng import block_seed

#: seconds a collective waits for the other ranks before failing (``CAUSALDIFF_DIST_TIMEOUT``)
DEFAULT_TIMEOUT = 300.0


#: most processes of one run, and the longest a collective may wait (seconds): a week
MAX_WORLD_SIZE, MAX_TIMEOUT = 2 ** 16, 7 * 86400.0
_LAUNCHER = "start the processes with torchrun (or a launcher that sets RANK, WORLD_SIZE, LOCAL_RANK, " \
            "MASTER_ADDR, MASTER_PORT)"


def _env_int(name: str, lo: int, hi: int, default: str | None = None) -> int:
    """``$name`` as an integer in ``[lo, hi]``, or a :class:`LaunchError` naming it."""
    value = os.environ.get(name, default)
    if value is None:
        raise LaunchError(f"${name} is not set; {_LAUNCHER}")
    if not re.fullmatch(r"\s*-?[0-9]{1,20}\s*", value) or not lo <= int(value) <= hi:
        raise LaunchError(f"${name}={value!r}: must be an integer in [{lo}, {hi}]")
    return int(value)


def check_timeout(timeout: object, what: str = "timeout", shown: object = None) -> float:
    """A collective timeout in seconds: a finite int or float in ``(0, MAX_TIMEOUT]``."""
    number = isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
    if not number or not 0 < timeout <= MAX_TIMEOUT:  # type: ignore[operator]
        raise LaunchError(f"{what}={timeout if shown is None else shown!r}: must be a number of seconds "
                          f"in (0, {MAX_TIMEOUT:g}]")
    return float(timeout)  # type: ignore[arg-type]


def _env_timeout() -> float:
    """``$CAUSALDIFF_DIST_TIMEOUT`` (seconds), else :data:`DEFAULT_TIMEOUT`."""
    text = os.environ.get("CAUSALDIFF_DIST_TIMEOUT")
    if text is None:
        return DEFAULT_TIMEOUT
    try:
        value: object = float(text)
    except ValueError:
        value = None
    return check_timeout(value, "$CAUSALDIFF_DIST_TIMEOUT", shown=text)


def launcher_env(timeout: float | None = None) -> tuple[int, int, int, float]:
    """``(rank, world_size, local_rank, timeout)`` from torchrun's environment, validated before any
    process group is joined (a rank beyond the world would wait out the whole timeout)."""
    world = _env_int("WORLD_SIZE", 1, MAX_WORLD_SIZE)
    rank = _env_int("RANK", 0, MAX_WORLD_SIZE)
    if rank >= world:
        raise LaunchError(f"$RANK={rank} is not below $WORLD_SIZE={world}: ranks are 0 .. {world - 1}")
    local = _env_int("LOCAL_RANK", 0, world - 1, default="0")
    if not os.environ.get("MASTER_ADDR", "").strip():
        raise LaunchError(f"$MASTER_ADDR is not set; {_LAUNCHER}")
    _env_int("MASTER_PORT", 1, 65535)
    return rank, world, local, _env_timeout() if timeout is None else check_timeout(timeout)


def init_process_group(device: str | None = None, timeout: float | None = None) -> torch.device:
    """Join the process group torchrun's environment describes (once per process) and return this
    rank's device: ``cuda:LOCAL_RANK`` with nccl when CUDA is available (and ``device``, if
    given, is a cuda device), else the CPU with gloo. ``timeout`` (seconds): default ``$CAUSALDIFF_DIST_TIMEOUT`` or
    :data:`DEFAULT_TIMEOUT`. The environment is checked first (:func:`launcher_env`): a bad
    ``RANK``, ``WORLD_SIZE``, ``MASTER_PORT`` or timeout is a :class:`LaunchError` at once."""
    rank, world, local, seconds = launcher_env(timeout)
    use_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if use_cuda and local >= torch.cuda.device_count():
        raise LaunchError(f"$LOCAL_RANK={local}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
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


__all__ = ["DDPStrategy", "init_process_group", "launcher_env", "check_timeout", "DEFAULT_TIMEOUT", "MAX_TIMEOUT",
           "MAX_WORLD_SIZE"]
