"""Seeded initialisation and training without rewinding torch's global RNG.

Initial weights are drawn from a ``torch.Generator`` (:func:`seeded_init`), so a fit in one thread
never reseeds the global RNG under draws in another. Only a model that itself draws from the
global RNG while it trains (active dropout, a VAE's reparameterisation) is trained in a seeded
fork of it (:func:`seeded_rng`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..rng import forked_seed, generator

#: layers whose parameters torch initialises at random: kaiming-uniform weights, uniform biases
_DRAWN = (nn.Linear, nn.modules.conv._ConvNd)
#: layers whose parameters torch initialises to constants
_CONSTANT = (nn.modules.normalization.GroupNorm, nn.LayerNorm, nn.modules.batchnorm._NormBase)


def cuda_devices(device: torch.device | str) -> list[int]:
    """The CUDA device index list ``torch.random.fork_rng`` needs for ``device`` (empty off CUDA)."""
    device = torch.device(device)
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


@contextmanager
def seeded_rng(device: torch.device | str, seed: int) -> Iterator[None]:
    """The global RNG (the CPU's generator and ``device``'s CUDA one, and only those) seeded with
    ``seed`` for the block, then restored."""
    with forked_seed(seed, cuda_devices(device)):
        yield


def seeded_init(factory: Callable[[], Any], gen: torch.Generator) -> Any:
    """``factory()`` (a module, or a tuple of modules and Nones) with its random initial weights
    redrawn from ``gen`` as torch draws them (kaiming-uniform weights with ``a = sqrt(5)``, biases
    uniform in ``±1/sqrt(fan_in)``), in the order the factory built its layers: the weights the
    global RNG seeded with the same seed would have given. Weights it set to zero (zero-initialised
    output layers) stay zero; a layer of another kind with parameters is refused, naming it."""
    built: list[nn.Module] = []
    handle = nn.modules.module.register_module_parameter_registration_hook(
        lambda module, name, param: built.append(module) if isinstance(module, _DRAWN) else None)
    try:
        out = factory()
    finally:
        handle.remove()
    mine = {id(m): m for root in (out if isinstance(out, tuple) else (out,)) if root is not None
            for m in root.modules()}
    for m in mine.values():
        if not isinstance(m, (*_DRAWN, *_CONSTANT)) and any(True for _ in m.parameters(recurse=False)):
            raise TypeError(f"seeded_init: cannot redraw the parameters of a {type(m).__name__} layer")
    with torch.no_grad():
        for m in dict.fromkeys(m for m in built if id(m) in mine):  # (other threads' layers too)
            _redraw(m, gen)
    return out


def _redraw(m: nn.Module, gen: torch.Generator) -> None:
    zero = [p is not None and not bool(p.any()) for p in (m.weight, m.bias)]
    nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=gen)
    if m.bias is not None:
        fan_in = nn.init._calculate_fan_in_and_fan_out(m.weight)[0]
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(m.bias, -bound, bound, generator=gen)
    for p, z in zip((m.weight, m.bias), zero):
        if z:
            p.zero_()


def seeded_module(factory: Callable[[], nn.Module], seed: int,
                  device: torch.device | str) -> nn.Module:
    """``factory()`` with its initial weights drawn from ``seed`` (:func:`seeded_init`), on ``device``."""
    return seeded_init(factory, generator(seed)).to(device)


def draws_globally(model: nn.Module) -> bool:
    """Whether ``model`` draws from the global RNG in training (an active dropout layer)."""
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())


__all__ = ["cuda_devices", "draws_globally", "seeded_init", "seeded_rng", "seeded_module"]
