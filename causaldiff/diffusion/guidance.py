"""Guidance of the DDIM denoiser toward given parent values.

* Anti-causal guidance, Diff-SCM (Sanchez & Tsaftaris 2022, Algorithm 1; Dhariwal & Nichol 2021,
  eq. 14): ``eps_hat = eps_theta(x_t, t) - sqrt(1 - alpha_bar_t) * grad_x sum_p s_p log p_phi(pa_p |
  x_t, t)``, one predictor with a head per parent (one forward + backward per step).
* Classifier-free guidance (Ho & Salimans 2022, eq. 6): ``eps_hat = (1 + w) eps(x_t, t, c) - w
  eps(x_t, t, null)``, both halves in one batched forward.
* Anchored guidance of a counterfactual: ``eps_hat = eps(x_t, t, pa) + w [eps(x_t, t, pa*) - eps(x_t,
  t, pa)]`` between the counterfactual parents and the factual ones the image was inverted under, so
  a null intervention decodes with exactly the predictions it was inverted with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .ddim import Denoiser
from .schedule import NoiseSchedule

#: ``log_likelihood(x_t, t, target) -> (n,)`` log-density of the guidance target, per row.
LogLikelihood = Callable[[Tensor, Tensor, object], Tensor]

_LOG_2PI = math.log(2.0 * math.pi)


def _upcast(x: Tensor) -> Tensor:
    """Half-precision (autocast) outputs are evaluated in float32; float32/64 are kept."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


@dataclass(frozen=True)
class ParentHead:
    """One parent's slice of an anti-causal predictor's output: ``categorical``: ``size`` logits,
    target a class index ``(n,)``; ``continuous``: ``size`` means then log-variances, target ``(n, size)``."""

    name: str
    kind: Literal["categorical", "continuous"]
    size: int
    scale: float = 1.0

    @property
    def out_dim(self) -> int:
        return self.size if self.kind == "categorical" else 2 * self.size


def categorical_log_prob(logits: Tensor, target: Tensor) -> Tensor:
    """``log_softmax(logits)[target]`` per row."""
    return F.log_softmax(_upcast(logits), dim=-1).gather(1, target.reshape(-1, 1)).squeeze(1)


def gaussian_log_prob(mean: Tensor, log_var: Tensor, target: Tensor) -> Tensor:
    """``log N(target; mean, exp(log_var))`` summed over features, per row."""
    mean, log_var = _upcast(mean), _upcast(log_var)
    sq = (target.to(mean.dtype) - mean) ** 2 * torch.exp(-log_var)
    return -0.5 * (sq + log_var + _LOG_2PI).sum(dim=-1)


def heads_log_prob(heads: Sequence[ParentHead], output: Tensor, targets: Sequence[Tensor], *,
                   scaled: bool = True) -> Tensor:
    """``sum_p s_p log p(pa_p | x_t, t)`` per row from a predictor's concatenated ``output``."""
    if len(targets) != len(heads):
        raise ValueError(f"{len(targets)} targets for {len(heads)} predictor heads")
    if not heads:
        raise ValueError("an anti-causal predictor needs at least one head")
    width = sum(h.out_dim for h in heads)
    if output.shape[1] != width:
        raise ValueError(f"predictor output has {output.shape[1]} features, heads need {width}")
    total: Tensor | float = 0.0
    offset = 0
    for head, target in zip(heads, targets):
        block = output[:, offset:offset + head.out_dim]
        offset += head.out_dim
        if head.kind == "categorical":
            lp = categorical_log_prob(block, target)
        else:
            lp = gaussian_log_prob(block[:, :head.size], block[:, head.size:], target)
        total = total + (head.scale * lp if scaled else lp)
    return total


class PredictorLikelihood:
    """``(x_t, t, targets) -> sum_p s_p log p_phi(pa_p | x_t, t)`` for a predictor network
    ``predictor(x_t, t) -> (n, sum of head out_dims)``."""

    def __init__(self, predictor: Callable[[Tensor, Tensor], Tensor], heads: Sequence[ParentHead]):
        self.predictor = predictor
        self.heads = tuple(heads)

    def __call__(self, x_t: Tensor, t: Tensor, targets: Sequence[Tensor]) -> Tensor:
        return heads_log_prob(self.heads, self.predictor(x_t, t), targets)


def guidance_gradient(log_likelihood: LogLikelihood, x_t: Tensor, t: Tensor, target: object) -> Tensor:
    """``grad_x log p(target | x_t, t)`` per row, computed with autograd enabled on a detached copy
    of ``x_t`` even when the caller runs under ``no_grad`` or ``inference_mode``."""
    with torch.inference_mode(False), torch.enable_grad():
        x_in = (x_t.clone() if x_t.is_inference() else x_t).detach().requires_grad_(True)
        log_p = log_likelihood(x_in, t, target)
        (grad,) = torch.autograd.grad(log_p.sum(), x_in)
    return grad


class AntiCausalGuidance:
    """Diff-SCM guided noise prediction, a :data:`Denoiser` whose ``cond`` is the target:
    ``eps_hat = eps_theta(x_t, t, None) - sqrt(1 - alpha_bar_t) grad_x log p_phi(target | x_t, t)``,
    the per-parent scales inside ``log_likelihood`` (:class:`PredictorLikelihood`)."""

    def __init__(self, denoiser: Denoiser, log_likelihood: LogLikelihood, schedule: NoiseSchedule,
                 scale: float = 1.0) -> None:
        self.denoiser = denoiser
        self.log_likelihood = log_likelihood
        self.schedule = schedule
        self.scale = float(scale)

    def __call__(self, x_t: Tensor, t: Tensor, target: object) -> Tensor:
        with torch.no_grad():
            eps = self.denoiser(x_t, t, None)
        grad = guidance_gradient(self.log_likelihood, x_t, t, target)
        sqrt_one_minus_ab = (1.0 - self.schedule.alpha_bar(t, like=x_t)).sqrt()
        return eps - (self.scale * sqrt_one_minus_ab) * grad.to(eps.dtype)


def null_condition(cond: Tensor) -> Tensor:
    """The 'no parents' input of a denoiser trained with parent dropout: all zeros (the last
    feature of the conditioning vector is the 'parents present' flag)."""
    return torch.zeros_like(cond)


class ClassifierFreeGuidance:
    """``eps_hat = (1 + w) eps(x_t, t, c) - w eps(x_t, t, null(c))`` (Ho & Salimans 2022, eq. 6);
    ``w = 0``: one forward of ``n`` rows, else both halves in one forward of ``2n``."""

    def __init__(self, denoiser: Denoiser, scale: float = 0.0,
                 null: Callable[[Tensor], Tensor] = null_condition) -> None:
        self.denoiser = denoiser
        self.scale = float(scale)
        self.null = null

    def __call__(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        if self.scale == 0.0:
            return self.denoiser(x_t, t, cond)
        both = self.denoiser(torch.cat([x_t, x_t]), torch.cat([t, t]),
                             torch.cat([cond, self.null(cond)]))
        eps_c, eps_u = both.chunk(2)
        return (1.0 + self.scale) * eps_c - self.scale * eps_u


class AnchoredGuidance:
    """``eps_hat = eps(x_t, t, pa) + w [eps(x_t, t, pa*) - eps(x_t, t, pa)]``, a :data:`Denoiser`
    whose ``cond`` is the pair ``(pa, pa*)`` of conditioning vectors (factual, counterfactual).

    Classifier-free guidance (Ho & Salimans 2022, eq. 6) anchored at the factual parents: ``w = 1``
    is the conditional denoiser under ``pa*``; rows with ``pa* = pa`` get exactly the prediction the
    inversion used, so a null intervention is exact whatever ``w``. One forward: the ``n`` rows
    under ``pa`` and the changed rows under ``pa*`` (``w = 1``: the ``n`` rows under ``pa*``).
    """

    def __init__(self, denoiser: Denoiser, scale: float = 1.0) -> None:
        self.denoiser = denoiser
        self.scale = float(scale)

    def __call__(self, x_t: Tensor, t: Tensor, cond: tuple[Tensor, Tensor]) -> Tensor:
        factual, counterfactual = cond
        if self.scale == 1.0:
            return self.denoiser(x_t, t, counterfactual)
        changed = (factual != counterfactual).flatten(1).any(1).nonzero().squeeze(1)
        n = x_t.shape[0]
        out = self.denoiser(torch.cat([x_t, x_t[changed]]), torch.cat([t, t[changed]]),
                            torch.cat([factual, counterfactual[changed]]))
        eps = out[:n].clone()
        eps[changed] = eps[changed] + self.scale * (out[n:] - eps[changed])
        return eps
