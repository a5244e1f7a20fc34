"""Noise schedules of the forward process, computed in float64.

The forward process (Ho et al. 2020, eq. 4) is ``q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0,
(1 - alpha_bar_t) I)`` with ``alpha_bar_t = prod_{s<=t} (1 - beta_s)`` for ``t = 0..T-1``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor


class ScheduleConfig(BaseModel):
    """Hyperparameters of a beta schedule (serialisable, immutable)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["linear", "cosine"] = "cosine"
    num_train_timesteps: int = Field(1000, ge=2)
    #: linear schedule end points (Ho et al. 2020 use 1e-4 and 0.02 for T = 1000).
    beta_start: float = Field(1e-4, gt=0.0, lt=1.0)
    beta_end: float = Field(0.02, gt=0.0, lt=1.0)
    #: cosine schedule offset ``s`` and beta cap (Nichol & Dhariwal 2021, eq. 17).
    cosine_s: float = Field(0.008, ge=0.0)
    max_beta: float = Field(0.999, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> "ScheduleConfig":
        if self.kind == "linear" and self.beta_end < self.beta_start:
            raise ValueError(f"beta_end={self.beta_end} must be >= beta_start={self.beta_start}")
        return self


def linear_betas(num_train_timesteps: int, beta_start: float, beta_end: float) -> Tensor:
    """``beta_t`` evenly spaced from ``beta_start`` to ``beta_end`` (Ho et al. 2020), float64."""
    return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)


def cosine_betas(num_train_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Betas of ``alpha_bar(t) = cos^2(((t/T + s) / (1 + s)) pi/2)`` (Nichol & Dhariwal 2021, eq. 17),
    ``beta_t = 1 - alpha_bar(t+1)/alpha_bar(t)`` capped at ``max_beta``; float64."""
    steps = torch.arange(num_train_timesteps + 1, dtype=torch.float64) / num_train_timesteps
    f = torch.cos((steps + s) / (1.0 + s) * math.pi / 2.0) ** 2
    betas = 1.0 - f[1:] / f[:-1]
    return betas.clamp(max=max_beta)


class NoiseSchedule:
    """The float64 tables ``betas``, ``alphas`` and ``alphas_cumprod`` (``alpha_bar``) of a schedule.

    The tables stay on the CPU in float64; :meth:`alpha_bar` gathers entries for a batch of
    timesteps on the caller's device and dtype (cached per device, so no copy per call).
    """

    def __init__(self, config: ScheduleConfig | None = None, **kwargs) -> None:
        self.config = config if config is not None else ScheduleConfig(**kwargs)
        c = self.config
        if c.kind == "linear":
            betas = linear_betas(c.num_train_timesteps, c.beta_start, c.beta_end)
        else:
            betas = cosine_betas(c.num_train_timesteps, c.cosine_s, c.max_beta)
        self.betas: Tensor = betas
        self.alphas: Tensor = 1.0 - betas
        self.alphas_cumprod: Tensor = torch.cumprod(self.alphas, dim=0)
        self._device_tables: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    @property
    def num_train_timesteps(self) -> int:
        return self.config.num_train_timesteps

    def alpha_bar(self, t: Tensor, *, like: Tensor) -> Tensor:
        """``alpha_bar_t`` for integer timesteps ``t`` of shape ``(n,)``, shaped ``(n, 1, ..., 1)`` to
        broadcast against ``like`` and in ``like``'s dtype and device."""
        key = (like.device, like.dtype)
        table = self._device_tables.get(key)
        if table is None:
            table = self.alphas_cumprod.to(device=like.device, dtype=like.dtype)
            self._device_tables[key] = table
        return table[t].reshape(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps`` (Ho et al. 2020, eq. 4)."""
        ab = self.alpha_bar(t, like=x0)
        return ab.sqrt() * x0 + (1.0 - ab).sqrt() * noise

    def __repr__(self) -> str:
        return f"NoiseSchedule({self.config.kind}, T={self.num_train_timesteps})"
