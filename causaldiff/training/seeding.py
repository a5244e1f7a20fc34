"""Seeded work in a forked RNG: training and initialisation never touch the caller's random state."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


def cuda_devices(device: torch.device | str) -> list[int]:
    """The CUDA device index list ``torch.random.fork_rng`` needs for ``device`` (empty off CUDA)."""
    device = torch.device(device)
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


@contextmanager
def seeded_rng(device: torch.device | str, seed: int) -> Iterator[None]:
    """Fork the global RNG (CPU and ``device``'s CUDA generator) and seed it with ``seed``."""
    with torch.random.fork_rng(devices=cuda_devices(device)):
        torch.manual_seed(seed)
        yield


def seeded_module(factory: Callable[[], nn.Module], seed: int,
                  device: torch.device | str) -> nn.Module:
    """``factory()`` with its initial weights drawn from ``seed``, moved to ``device``."""
    with seeded_rng(device, seed):
        module = factory()
    return module.to(device)


__all__ = ["cuda_devices", "seeded_rng", "seeded_module"]
