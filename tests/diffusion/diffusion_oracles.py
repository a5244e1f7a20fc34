"""Analytic noise predictors for Gaussian and Gaussian-mixture data (no training).

If ``x_0 ~ N(mu, sigma^2 I)`` then ``x_t ~ N(sqrt(ab) mu, v_t I)`` with ``v_t = ab sigma^2 + 1 - ab``,
and the optimal noise predictor is ``eps*(x_t, t) = -sqrt(1 - ab) grad log p(x_t)
= sqrt(1 - ab) (x_t - sqrt(ab) mu) / v_t``. For a mixture the same holds per component and
``p(k | x_t)`` is exact.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from causaldiff.diffusion.schedule import NoiseSchedule


class GaussianOracle:
    def __init__(self, schedule: NoiseSchedule, mu: Tensor, sigma: float):
        self.schedule, self.mu, self.sigma = schedule, mu, sigma

    def __call__(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        ab = self.schedule.alpha_bar(t, like=x)
        v = ab * self.sigma ** 2 + 1.0 - ab
        return (1.0 - ab).sqrt() * (x - ab.sqrt() * self.mu) / v


class MixtureOracle:
    """``sum_k pi_k N(means[k], sigma^2 I)`` in ``d`` dimensions."""

    def __init__(self, schedule: NoiseSchedule, means: Tensor, sigma: float, weights: Tensor):
        self.schedule, self.means, self.sigma, self.weights = schedule, means, sigma, weights

    def _components(self, x: Tensor, t: Tensor):
        ab = self.schedule.alpha_bar(t, like=x)  # (n, 1)
        v = ab * self.sigma ** 2 + 1.0 - ab
        diff = x[:, None, :] - ab.sqrt()[:, None] * self.means[None]  # (n, k, d)
        log_p = -(diff ** 2).sum(-1) / (2 * v) - x.shape[1] / 2 * torch.log(2 * math.pi * v)
        return log_p, diff, v, ab

    def logits(self, x: Tensor, t: Tensor) -> Tensor:
        """``log pi_k + log p(x_t | k)``: their log-softmax is the exact ``log p(k | x_t)``."""
        return self.weights.log()[None] + self._components(x, t)[0]

    def __call__(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        log_p, diff, v, ab = self._components(x, t)
        w = torch.softmax(self.weights.log()[None] + log_p, dim=-1)
        return (1.0 - ab).sqrt() * (w[:, :, None] * diff).sum(1) / v
