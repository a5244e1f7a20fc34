"""Execution strategies: where a distributed run differs from a single process.

The training loop trains ``strategy.wrap(model)`` on this process's share ``strategy.shard(indices)``
of each global minibatch, lets the loss draw from ``strategy.loss_generator(...)``, averages the
logged loss with ``strategy.reduce`` and checkpoints where ``strategy.is_main`` (then
``strategy.barrier()``). :class:`LocalStrategy`: one process; :class:`~.ddp.DDPStrategy`:
torch.distributed. :func:`use_strategy` sets the default of every ``fit_model`` call.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn


@runtime_checkable
class Strategy(Protocol):
    """How one training process relates to the others (rank ``rank`` of ``world_size``)."""

    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        """Whether this process writes files (checkpoints, results) and reports progress."""
        ...

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the loss is computed with (e.g. a ``DistributedDataParallel`` wrapper)."""
        ...

    def shard(self, indices: Tensor) -> Tensor:
        """This process's rows of a global minibatch of ``indices`` (split along dim 0)."""
        ...

    def loss_generator(self, generator: torch.Generator, seed: int, step: int) -> torch.Generator:
        """The generator the loss draws from at (0-based) ``step`` (``generator``: the shared
        batch generator, ``seed``: the run's seed)."""
        ...

    def reduce(self, tensor: Tensor) -> Tensor:
        """The mean of ``tensor`` over every process."""
        ...

    def barrier(self) -> None:
        """Wait until every process has reached this point."""
        ...


class LocalStrategy:
    """One process: rank 0 of 1; every hook is the identity."""

    rank = 0
    world_size = 1

    @property
    def is_main(self) -> bool:
        return True

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def shard(self, indices: Tensor) -> Tensor:
        return indices

    def loss_generator(self, generator: torch.Generator, seed: int, step: int) -> torch.Generator:
        return generator

    def reduce(self, tensor: Tensor) -> Tensor:
        return tensor

    def barrier(self) -> None:
        return None

    def __repr__(self) -> str:
        return "LocalStrategy()"


_CURRENT: contextvars.ContextVar[Strategy | None] = contextvars.ContextVar("causaldiff_strategy", default=None)


def current_strategy() -> Strategy:
    """The strategy :func:`use_strategy` set (default: :class:`LocalStrategy`)."""
    strategy = _CURRENT.get()
    return LocalStrategy() if strategy is None else strategy


@contextlib.contextmanager
def use_strategy(strategy: Strategy) -> Iterator[Strategy]:
    """Every ``fit_model`` call inside the block that is given no strategy uses ``strategy``."""
    token = _CURRENT.set(strategy)
    try:
        yield strategy
    finally:
        _CURRENT.reset(token)


__all__ = ["Strategy", "LocalStrategy", "current_strategy", "use_strategy"]
