"""Noise schedules of the forward process, computed in float64.

The forward process (Ho et al. 2020, eq. 4) is ``q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0,
(1 - alpha_bar_t) I)`` with ``alpha_bar_t = prod_{s<=t} (1 - beta_s)`` for ``t = 0..T-1``.

``precision="float32"`` reproduces the tables of a model trained elsewhere in float32 (diffusers
computes betas and their cumulative product in float32): they are computed so, then held in float64.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

from ..limits import MAX_TIMESTEPS


class ScheduleConfig(BaseModel):
    """Hyperparameters of a beta schedule (serialisable, immutable)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    #: "scaled_linear": ``beta_t = linspace(sqrt(beta_start), sqrt(beta_end), T)**2`` (latent
    #: diffusion); "trained": the betas listed in ``trained_betas``
    kind: Literal["linear", "cosine", "scaled_linear", "trained"] = "cosine"
    num_train_timesteps: int = Field(1000, ge=2, le=MAX_TIMESTEPS)
    #: linear schedule end points (Ho et al. 2020 use 1e-4 and 0.02 for T = 1000).
    beta_start: float = Field(1e-4, gt=0.0, lt=1.0)
    beta_end: float = Field(0.02, gt=0.0, lt=1.0)
    #: cosine schedule offset ``s`` and beta cap (Nichol & Dhariwal 2021, eq. 17).
    cosine_s: float = Field(0.008, ge=0.0)
    max_beta: float = Field(0.999, gt=0.0, lt=1.0)
    #: kind="trained": one beta in (0, 1) per training timestep
    trained_betas: tuple[float, ...] | None = None
    #: dtype the tables are computed in before they are held in float64 (see the module docstring)
    precision: Literal["float64", "float32"] = "float64"

    @model_validator(mode="after")
    def _ordered(self) -> "ScheduleConfig":
        if self.kind in ("linear", "scaled_linear") and self.beta_end < self.beta_start:
            raise ValueError(f"beta_end={self.beta_end} must be >= beta_start={self.beta_start}")
        if (self.kind == "trained") != (self.trained_betas is not None):
            raise ValueError("trained_betas is given exactly when kind='trained'")
        if self.trained_betas is not None:
            if len(self.trained_betas) != self.num_train_timesteps:
                raise ValueError(f"trained_betas has {len(self.trained_betas)} entries, "
                                 f"num_train_timesteps={self.num_train_timesteps}")
            if not all(0.0 < b < 1.0 for b in self.trained_betas):
                raise ValueError("trained_betas must lie in (0, 1)")
        self._resolvable()
        return self

    def _resolvable(self) -> None:
        """Refuse a first beta that ``1 - beta`` loses in ``precision`` (``alpha_bar_0 = 1``: every
        DDIM step then divides by ``1 - alpha_bar = 0``); ``trained``: any beta so small."""
        eps = torch.finfo(torch.float32 if self.precision == "float32" else torch.float64).eps
        if self.kind == "trained":
            smallest, field = min(self.trained_betas or (1.0,)), "trained_betas"
        elif self.kind == "cosine":
            f = [math.cos((t / self.num_train_timesteps + self.cosine_s) / (1.0 + self.cosine_s) * math.pi / 2) ** 2
                 for t in (0, 1)]
            smallest, field = 1.0 - f[1] / f[0], "the first cosine beta (cosine_s, num_train_timesteps)"
        else:
            smallest, field = self.beta_start, "beta_start"
        if smallest < eps:
            raise ValueError(f"{field}: a beta of {smallest:.3g} is below the {self.precision} resolution {eps:.3g} "
                             "(1 - beta rounds to 1, alpha_bar_0 = 1 and every query would divide by zero)")


def linear_betas(num_train_timesteps: int, beta_start: float, beta_end: float,
                 dtype: torch.dtype = torch.float64) -> Tensor:
    """``beta_t`` evenly spaced from ``beta_start`` to ``beta_end`` (Ho et al. 2020)."""
    return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=dtype)


def betas_of(c: ScheduleConfig) -> Tensor:
    """The betas of a schedule, in ``c.precision``."""
    dtype = torch.float32 if c.precision == "float32" else torch.float64
    if c.kind == "linear":
        return linear_betas(c.num_train_timesteps, c.beta_start, c.beta_end, dtype)
    if c.kind == "scaled_linear":
        return linear_betas(c.num_train_timesteps, c.beta_start ** 0.5, c.beta_end ** 0.5, dtype) ** 2
    if c.kind == "trained":
        return torch.tensor(c.trained_betas, dtype=dtype)
    return cosine_betas(c.num_train_timesteps, c.cosine_s, c.max_beta).to(dtype)


def cosine_betas(num_train_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Betas of ``alpha_bar(t) = cos^2(((t/T + s) / (1 + s)) pi/2)`` (Nichol & Dhariwal 2021, eq. 17),
    ``beta_t = 1 - alpha_bar(t+1)/alpha_bar(t)`` capped at ``max_beta``; float64."""
    steps = torch.arange(num_train_timesteps + 1, dtype=torch.float64) / num_train_timesteps
    f = torch.cos((steps + s) / (1.0 + s) * math.pi / 2.0) ** 2
    betas = 1.0 - f[1:] / f[:-1]
    return betas.clamp(max=max_beta)


class NoiseSchedule:
    """The float64 CPU tables ``betas``, ``alphas``, ``alphas_cumprod`` (``alpha_bar``) of a schedule;
    :meth:`alpha_bar` gathers a batch of timesteps on the caller's device and dtype (cached per device)."""

    def __init__(self, config: ScheduleConfig | None = None, **kwargs) -> None:
        self.config = config if config is not None else ScheduleConfig(**kwargs)
        betas = betas_of(self.config)
        alphas = 1.0 - betas
        self.betas: Tensor = betas.double()
        self.alphas: Tensor = alphas.double()
        self.alphas_cumprod: Tensor = torch.cumprod(alphas, dim=0).double()
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
