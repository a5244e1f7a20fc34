"""Diffusion training objectives, and the denoiser / anti-causal predictor trainers over the one
training loop (:func:`causaldiff.training.fit_model`).

Both losses draw ``t`` uniform on ``0..T-1`` and the noise from the loop's generator, so a
seeded CPU run is repeatable and a resumed one bit-identical to an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..training import TrainConfig, TrainResult, fit_model
from ..training.loop import LossFn
# imported from here by mechanisms/diffusion.py until it imports causaldiff.training itself
from ..training.seeding import cuda_devices
from .guidance import ParentHead, heads_log_prob
from .schedule import NoiseSchedule


def denoiser_loss(schedule: NoiseSchedule, x: Tensor, cond: Tensor | None = None,
                  cond_dropout: float = 0.0) -> LossFn:
    """Epsilon-prediction loss ``||eps - eps_theta(sqrt(ab) x0 + sqrt(1-ab) eps, t, c)||^2``
    (Ho et al. 2020, eq. 14) with uniform ``t``; with ``cond_dropout`` each row's conditioning is
    replaced by the null vector (zeros) with that probability (Ho & Salimans 2022)."""
    T = schedule.num_train_timesteps

    def loss_fn(model: nn.Module, idx: Tensor, gen: torch.Generator) -> Tensor:
        x0 = x[idx]
        t = torch.randint(T, (x0.shape[0],), generator=gen, device=x0.device)
        noise = torch.randn(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
        c = None
        if cond is not None:
            c = cond[idx]
            if cond_dropout > 0.0:
                keep = torch.rand(c.shape[0], 1, generator=gen, device=c.device) >= cond_dropout
                c = c * keep.to(c.dtype)
        pred = model(schedule.q_sample(x0, t, noise), t, c)
        return F.mse_loss(pred.float(), noise.float())

    return loss_fn


def predictor_loss(schedule: NoiseSchedule, x: Tensor, targets: Sequence[Tensor],
                   heads: Sequence[ParentHead]) -> LossFn:
    """Negative log-likelihood of the parents given noised ``x_t`` (uniform ``t``): cross-entropy
    for categorical heads, Gaussian NLL for continuous ones (the guidance scales are not used)."""
    T = schedule.num_train_timesteps

    def loss_fn(model: nn.Module, idx: Tensor, gen: torch.Generator) -> Tensor:
        x0 = x[idx]
        t = torch.randint(T, (x0.shape[0],), generator=gen, device=x0.device)
        noise = torch.randn(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
        out = model(schedule.q_sample(x0, t, noise), t)
        return -heads_log_prob(heads, out, [y[idx] for y in targets], scaled=False).mean()

    return loss_fn


def train_denoiser(model: nn.Module, x: Tensor, schedule: NoiseSchedule, config: TrainConfig, *,
                   cond: Tensor | None = None, cond_dropout: float = 0.0, desc: str = "denoiser",
                   callback: Callable[[int, nn.Module], None] | None = None) -> TrainResult:
    """Train ``model(x_t, t, cond) -> eps`` on rows ``x`` (and their conditioning vectors)."""
    data = [x] if cond is None else [x, cond]
    return fit_model(model, denoiser_loss(schedule, x, cond, cond_dropout), x.shape[0], config,
                     data=data, desc=desc, tag=f"denoiser:{schedule.config!r}:{cond_dropout}",
                     callback=callback)


def train_predictor(model: nn.Module, x: Tensor, targets: Sequence[Tensor],
                    heads: Sequence[ParentHead], schedule: NoiseSchedule, config: TrainConfig, *,
                    desc: str = "predictor",
                    callback: Callable[[int, nn.Module], None] | None = None) -> TrainResult:
    """Train a noisy anti-causal predictor ``model(x_t, t) -> heads`` of the parents."""
    heads = tuple(heads)
    return fit_model(model, predictor_loss(schedule, x, targets, heads), x.shape[0], config,
                     data=[x, *targets], desc=desc, tag=f"predictor:{schedule.config!r}:{heads!r}",
                     callback=callback)


__all__ = ["denoiser_loss", "predictor_loss", "train_denoiser", "train_predictor",
           "TrainConfig", "TrainResult", "cuda_devices"]
