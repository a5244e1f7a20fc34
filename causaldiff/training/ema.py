"""Exponential moving average of a model's weights (the inference weights of a diffusion model)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``ema <- decay * ema + (1 - decay) * param`` on every floating tensor of the state."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self._dst = [t for t in self.module.state_dict().values() if t.is_floating_point()]
        self._src = [t for t in model.state_dict().values() if t.is_floating_point()]

    @torch.no_grad()
    def update(self, decay: float | None = None) -> None:
        """Move the average toward the tracked model's current weights (in place)."""
        decay = self.decay if decay is None else decay
        torch._foreach_lerp_(self._dst, self._src, 1.0 - decay)


def warmed_decay(decay: float, step: int) -> float:
    """``min(decay, (1 + step) / (10 + step))`` at (0-based) ``step``."""
    return min(decay, (1 + step) / (10 + step))


__all__ = ["EMA", "warmed_decay"]
