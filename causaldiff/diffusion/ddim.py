"""DDIM generation and inversion (Song, Meng & Ermon 2020, "Denoising Diffusion Implicit Models").

One timestep table ``tau_1 < ... < tau_K`` drives both directions: state ``i`` is ``x_{tau_i}``,
state ``0`` the clean sample (``alpha_bar = 1``); generation goes from ``i`` to ``i - 1``, inversion
from ``i - 1`` to ``i``. The denoiser is any callable ``eps(x_t, t, cond)`` (``t``: ``(n,)`` long), so
analytic oracles plug in as well as networks.

Inversion is never clipped. Plain inversion (``fixed_point_iters=0``) evaluates ``eps`` at the source
point, exact only for small steps; ``fixed_point_iters=m`` refines each inverse step by ``m``
fixed-point iterations on "the DDIM step from ``x_{tau_i}`` lands on ``x_{tau_{i-1}}``" (AIDI, Pan et
al. 2023), so generation after inversion reproduces the input to the solver's tolerance. The
iterations are plain (Picard) or Anderson-accelerated (Walker & Ni 2011, eq. 2.1 with depth
``anderson_depth``); the latter converges where plain iteration stalls, near the data, where the
denoiser's Jacobian is large. The "quadratic" timestep table (DDIM, Appendix D.2) puts its small
steps there too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from ..limits import MAX_DEPTH, Steps
from .schedule import NoiseSchedule

#: ``eps(x_t, t, cond) -> eps_hat`` with ``t`` a ``(n,)`` long tensor of training timesteps.
Denoiser = Callable[[Tensor, Tensor, Any], Tensor]
#: the timestep tables (:func:`ddim_timesteps`) and the inversion refinements' solvers
Spacing = Literal["leading", "trailing", "linspace", "quadratic"]
InversionSolver = Literal["picard", "anderson"]


class DDIMConfig(BaseModel):
    """Sampler hyperparameters (serialisable, immutable)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    num_inference_steps: Steps = 50
    #: "leading": tau_i = (i-1) T/K (the DDIM paper's uniform skip); "trailing": tau_K = T-1 and
    #: even strides below it (Lin et al. 2024, Table 2); "linspace": rounded linspace(0, T-1, K).
    #: "quadratic": tau_i = round(((i-1)/(K-1))^2 (T - T/K)) (DDIM, App. D.2): small steps near
    #: the data, where inversion is hardest, and the same last step as "leading".
    #: Trailing reaches the last training step, whose alpha_bar is ~0 on a cosine schedule: that
    #: inversion step is ill-conditioned, so "leading" is the default.
    spacing: Spacing = "leading"
    #: eta of eq. 16: 0 is deterministic DDIM, 1 the DDPM posterior variance. Generation only.
    eta: float = Field(0.0, ge=0.0)
    #: clip the predicted x_0 to [-clip_sample, clip_sample] during generation (never inversion).
    clip_sample: float | None = Field(None, gt=0.0)
    #: dynamic thresholding quantile p (Saharia et al. 2022, sec. 2.3) during generation.
    dynamic_threshold: float | None = Field(None, gt=0.0, lt=1.0)
    #: lower bound of the dynamic threshold (the data range of x_0).
    sample_max_value: float = Field(1.0, gt=0.0)
    #: fixed-point refinements per inversion step (0 = plain DDIM inversion).
    inversion_fixed_point_iters: int = Field(0, ge=0, le=MAX_DEPTH)
    #: how the refinements iterate: "picard" (x <- g(x)) or "anderson" (Anderson acceleration
    #: over the last ``anderson_depth`` iterates, per row).
    inversion_solver: InversionSolver = "picard"
    anderson_depth: int = Field(3, ge=2, le=8)


def ddim_timesteps(num_train_timesteps: int, num_inference_steps: int,
                   spacing: str = "leading") -> tuple[int, ...]:
    """The ascending table ``tau_1 < ... < tau_K`` of training timesteps used by the sampler."""
    T, K = num_train_timesteps, num_inference_steps
    if not 1 <= K <= T:
        raise ValueError(f"num_inference_steps={K} must be between 1 and num_train_timesteps={T}")
    if spacing == "leading":
        taus = [i * (T // K) for i in range(K)]
    elif spacing == "trailing":
        taus = [round(T - j * T / K) - 1 for j in range(K)][::-1]
    elif spacing == "linspace":
        taus = [round(v) for v in torch.linspace(0, T - 1, K, dtype=torch.float64).tolist()]
    elif spacing == "quadratic":
        taus = [round((i / max(K - 1, 1)) ** 2 * (T - T // K)) for i in range(K)]
    else:
        raise ValueError(f"unknown spacing {spacing!r}; use 'leading', 'trailing', 'linspace' or 'quadratic'")
    if len(set(taus)) != K:
        raise ValueError(f"spacing {spacing!r} gives repeated timesteps for K={K}, T={T}")
    return tuple(taus)


@dataclass(frozen=True)
class DDIMStepOutput:
    """One generation step: ``x_{tau_{i-1}}`` and the quantities of eq. 12 it was built from."""

    prev_sample: Tensor
    pred_original_sample: Tensor
    pred_epsilon: Tensor


@dataclass(frozen=True)
class DDIMOutput:
    """Result of :meth:`DDIMSampler.generate` or :meth:`DDIMSampler.invert`."""

    #: the final state (``x_0`` after generation, ``x_{tau_stop}`` after inversion)
    sample: Tensor
    #: training timesteps whose denoiser outputs were used, in the order visited
    timesteps: tuple[int, ...]
    #: the last predicted ``x_0`` (generation only)
    pred_original_sample: Tensor | None = None
    #: every state visited, the start included (when requested)
    trajectory: tuple[Tensor, ...] | None = None


class DDIMSampler:
    """DDIM over one timestep table, for generation (eq. 12) and its inversion."""

    def __init__(self, schedule: NoiseSchedule, config: DDIMConfig | None = None, **kwargs) -> None:
        self.schedule = schedule
        self.config = config if config is not None else DDIMConfig(**kwargs)
        c = self.config
        #: tau_1 < ... < tau_K
        self.timesteps: tuple[int, ...] = ddim_timesteps(
            schedule.num_train_timesteps, c.num_inference_steps, c.spacing)
        ab = schedule.alphas_cumprod
        #: alpha_bar of state i (state 0 is clean data: alpha_bar = 1), as float64 Python floats
        self.alphas_cumprod: tuple[float, ...] = (1.0,) + tuple(float(ab[t]) for t in self.timesteps)
        self._t_cache: dict[torch.device, Tensor] = {}

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    # ----------------------------------------------------------------------------- helpers
    def _t(self, i: int, x: Tensor) -> Tensor:
        """``(n,)`` long tensor of ``tau_i`` on ``x``'s device (no host sync)."""
        table = self._t_cache.get(x.device)
        if table is None:
            table = torch.tensor(self.timesteps, dtype=torch.long, device=x.device)
            self._t_cache[x.device] = table
        return table[i - 1].expand(x.shape[0])

    def _check_state(self, name: str, i: int) -> None:
        if not 0 <= i <= self.num_steps:
            raise ValueError(f"{name}={i} must be a state index in [0, {self.num_steps}]")

    def _threshold(self, x0: Tensor) -> Tensor:
        c = self.config
        if c.dynamic_threshold is not None:
            flat = x0.reshape(x0.shape[0], -1).abs()
            s = torch.quantile(flat.float(), c.dynamic_threshold, dim=1).to(x0.dtype)
            s = s.clamp(min=c.sample_max_value).reshape(-1, *([1] * (x0.dim() - 1)))
            x0 = torch.maximum(torch.minimum(x0, s), -s) / s * c.sample_max_value
        if c.clip_sample is not None:
            x0 = x0.clamp(-c.clip_sample, c.clip_sample)
        return x0

    # ----------------------------------------------------------------------------- one step
    def step(self, eps: Tensor, i: int, x_t: Tensor, *, eta: float | None = None,
             generator: torch.Generator | None = None) -> DDIMStepOutput:
        """Generation step from state ``i`` to ``i - 1`` (eq. 12 with sigma of eq. 16)."""
        eta = self.config.eta if eta is None else eta
        a_t, a_prev = self.alphas_cumprod[i], self.alphas_cumprod[i - 1]
        # eq. 12, "predicted x_0": (x_t - sqrt(1 - alpha_t) eps) / sqrt(alpha_t)
        pred_original_sample = (x_t - math.sqrt(1.0 - a_t) * eps) / math.sqrt(a_t)
        if self.config.clip_sample is not None or self.config.dynamic_threshold is not None:
            pred_original_sample = self._threshold(pred_original_sample)
            eps = (x_t - math.sqrt(a_t) * pred_original_sample) / math.sqrt(1.0 - a_t)
        # eq. 16: sigma_t(eta) = eta sqrt((1 - alpha_{t-1}) / (1 - alpha_t)) sqrt(1 - alpha_t / alpha_{t-1})
        sigma = eta * math.sqrt((1.0 - a_prev) / (1.0 - a_t)) * math.sqrt(1.0 - a_t / a_prev)
        # eq. 12, "direction pointing to x_t": sqrt(1 - alpha_{t-1} - sigma_t^2) eps
        direction = math.sqrt(max(1.0 - a_prev - sigma ** 2, 0.0)) * eps
        prev_sample = math.sqrt(a_prev) * pred_original_sample + direction
        if sigma > 0.0:
            noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
            prev_sample = prev_sample + sigma * noise
        return DDIMStepOutput(prev_sample, pred_original_sample, eps)

    def inverse_step(self, eps: Tensor, i: int, x_prev: Tensor) -> Tensor:
        """Inversion step from state ``i - 1`` to ``i``: eq. 12 (eta = 0) solved for ``x_t``,
        ``x_t = sqrt(alpha_t) x0_hat + sqrt(1 - alpha_t) eps`` with
        ``x0_hat = (x_{t-1} - sqrt(1 - alpha_{t-1}) eps) / sqrt(alpha_{t-1})``; no clipping."""
        a_t, a_prev = self.alphas_cumprod[i], self.alphas_cumprod[i - 1]
        x0_hat = (x_prev - math.sqrt(1.0 - a_prev) * eps) / math.sqrt(a_prev)
        return math.sqrt(a_t) * x0_hat + math.sqrt(1.0 - a_t) * eps

    # ----------------------------------------------------------------------------- loops
    def generate(self, denoiser: Denoiser, x: Tensor, cond: Any = None, *, start: int | None = None,
                 stop: int = 0, eta: float | None = None, generator: torch.Generator | None = None,
                 return_trajectory: bool = False) -> DDIMOutput:
        """Run generation steps from state ``start`` (default ``K``: pure noise) down to ``stop``.

        One denoiser call per step; no host-device synchronisation inside the loop.
        """
        start = self.num_steps if start is None else start
        self._check_state("start", start)
        self._check_state("stop", stop)
        if stop > start:
            raise ValueError(f"generation goes down: stop={stop} must be <= start={start}")
        traj = [x] if return_trajectory else None
        x0_hat = None
        visited = []
        for i in range(start, stop, -1):
            t = self._t(i, x)
            out = self.step(denoiser(x, t, cond), i, x, eta=eta, generator=generator)
            x, x0_hat = out.prev_sample, out.pred_original_sample
            visited.append(self.timesteps[i - 1])
            if traj is not None:
                traj.append(x)
        return DDIMOutput(x, tuple(visited), x0_hat, tuple(traj) if traj is not None else None)

    def invert(self, denoiser: Denoiser, x: Tensor, cond: Any = None, *, start: int = 0,
               stop: int | None = None, fixed_point_iters: int | None = None,
               return_trajectory: bool = False) -> DDIMOutput:
        """Inversion steps from state ``start`` (default 0: data) up to ``stop`` (default ``K``): ``eps``
        at the source with the destination timestep, then ``fixed_point_iters`` refinements at the
        current estimate of the destination, so that :meth:`step` maps the result back onto the source."""
        stop = self.num_steps if stop is None else stop
        iters = self.config.inversion_fixed_point_iters if fixed_point_iters is None else fixed_point_iters
        self._check_state("start", start)
        self._check_state("stop", stop)
        if stop < start:
            raise ValueError(f"inversion goes up: stop={stop} must be >= start={start}")
        if iters < 0:
            raise ValueError(f"fixed_point_iters={iters} must be >= 0")
        traj = [x] if return_trajectory else None
        visited = []
        solve = _anderson if self.config.inversion_solver == "anderson" else _picard
        for i in range(start + 1, stop + 1):
            t = self._t(i, x)
            x = solve(lambda z, i=i, t=t, x=x: self.inverse_step(denoiser(z, t, cond), i, x), x, iters,
                      self.config.anderson_depth)
            visited.append(self.timesteps[i - 1])
            if traj is not None:
                traj.append(x)
        return DDIMOutput(x, tuple(visited), None, tuple(traj) if traj is not None else None)

    def __repr__(self) -> str:
        return (f"DDIMSampler(K={self.num_steps}, spacing={self.config.spacing!r}, "
                f"eta={self.config.eta}, T={self.schedule.num_train_timesteps})")


def _picard(g: Callable[[Tensor], Tensor], x: Tensor, iters: int, depth: int) -> Tensor:
    """``g`` applied ``1 + iters`` times from ``x`` (the first is the plain inversion step)."""
    z = g(x)
    for _ in range(iters):
        z = g(z)
    return z


def _anderson(g: Callable[[Tensor], Tensor], x: Tensor, iters: int, depth: int) -> Tensor:
    """``iters`` Anderson iterations on ``z = g(z)`` from ``g(x)``, per row: with residuals
    ``f_j = g(z_j) - z_j`` of the last ``m <= depth`` iterates, ``gamma`` minimises
    ``|f_k - dF gamma|`` (``dF``: their successive differences; normal equations with a relative
    ridge of 1e-10, in float64) and ``z <- g(z_k) - dG gamma`` (Walker & Ni 2011, eq. 2.1), within
    :data:`TRUST` residual lengths of ``g(z_k)``."""
    z = g(x)
    n = x.shape[0]
    zs: list[Tensor] = []
    gs: list[Tensor] = []
    for _ in range(iters):
        gz = g(z)
        zs, gs = (zs + [z.reshape(n, -1)])[-depth:], (gs + [gz.reshape(n, -1)])[-depth:]
        if len(zs) == 1:
            z = gz
            continue
        G = torch.stack(gs, -1).double()
        F = G - torch.stack(zs, -1).double()
        dF, dG = F[..., 1:] - F[..., :-1], G[..., 1:] - G[..., :-1]
        A = dF.transpose(1, 2) @ dF
        ridge = 1e-10 * A.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(1e-300)
        A = A + ridge[:, None, None] * torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
        gamma = torch.linalg.solve(A, dF.transpose(1, 2) @ F[..., -1:])
        step = dG @ gamma
        # a trust region: a row whose extrapolation is not finite or reaches past TRUST residuals
        # takes the plain step (a random or non-contractive map then fails as slowly as Picard's)
        ok = torch.isfinite(step).all(1) & (step.norm(dim=1) <= TRUST * F[..., -1:].norm(dim=1))
        z = torch.where(ok[:, :, None], G[..., -1:] - step, G[..., -1:]).reshape(x.shape).to(x.dtype)
    return z


#: the farthest an Anderson step may move from the plain one, in residual lengths
TRUST = 10.0
