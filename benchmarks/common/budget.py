"""Training step counts fitted into a time budget by a timed probe of the same training loop.

:func:`budget_steps` takes ``min(max_steps, seconds / seconds_per_step)`` steps, the step time
measured by :func:`seconds_per_step` on a throw-away run (after ``warm`` untimed steps, so CUDA
start-up and autotuning are not counted). :func:`budgeted_diffusion` does it for both networks of a
diffusion node (the denoiser and the anti-causal predictor) on the node's own training rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from causaldiff.diffusion.schedule import NoiseSchedule
from causaldiff.diffusion.train import cuda_devices, train_denoiser, train_predictor
from causaldiff.mechanisms.diffusion.config import DiffusionConfig
from causaldiff.mechanisms.diffusion.fit import build_networks, record_state
from causaldiff.training import TrainConfig


class Budget(BaseModel):
    """Fit a training run into ``seconds``: time ``probe_steps`` steps (after ``warm`` untimed
    ones) of the same loop, then take ``min(max_steps, seconds / seconds_per_step)`` steps."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    seconds: float = Field(gt=0)
    probe_steps: int = Field(25, ge=2)
    warm: int = Field(5, ge=1)
    min_steps: int = Field(1, ge=1)


def seconds_per_step(train_fn: Callable[[TrainConfig, Callable[[int, Any], None]], Any], cfg: TrainConfig,
                     budget: Budget, device: torch.device) -> float:
    """Time steps ``warm+1 .. probe_steps`` of a throw-away run of the same training loop."""
    if budget.warm >= budget.probe_steps:
        raise ValueError(f"budget: warm ({budget.warm}) must be below probe_steps ({budget.probe_steps})")
    marks: dict[int, float] = {}

    def mark(step: int, _model: Any) -> None:
        if step in (budget.warm, budget.probe_steps):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            marks[step] = time.perf_counter()

    train_fn(cfg.model_copy(update={"steps": budget.probe_steps, "checkpoint_every": None,
                                    "checkpoint_dir": None}), mark)
    return (marks[budget.probe_steps] - marks[budget.warm]) / (budget.probe_steps - budget.warm)


def budget_steps(cfg: TrainConfig, budget: Budget | None, probe: Callable[[], float]) -> tuple[TrainConfig, dict]:
    """``cfg`` with its step count fitted into ``budget`` (unchanged without one)."""
    if budget is None:
        return cfg, {"budgeted": False, "steps": cfg.steps}
    per_step = probe()
    steps = max(budget.min_steps, min(cfg.steps, int(budget.seconds / per_step)))
    info = {"budgeted": True, "budget_s": budget.seconds, "probe_seconds_per_step": per_step,
            "max_steps": cfg.steps, "steps": steps, "expected_s": steps * per_step}
    print(f"  budget: {per_step * 1000:.1f} ms/step -> {steps} steps (max {cfg.steps}) "
          f"in ~{steps * per_step:.0f} s", flush=True)
    return cfg.model_copy(update={"steps": steps}), info


def budgeted_diffusion(config: DiffusionConfig, x: Tensor, parents: Mapping[str, Tensor], parent_order: Sequence[str],
                       *, node: str, device: torch.device | str, denoiser: Budget | None,
                       predictor: Budget | None) -> tuple[DiffusionConfig, dict[str, dict]]:
    """``config`` with the step counts of its denoiser and predictor training fitted into the
    budgets, each probed by the same training loop on the same rows (``x`` and ``parents``, the
    node's training data) as ``DiffusionMechanism.fit`` runs."""
    device = torch.device(device)
    if denoiser is None and predictor is None:
        return config, {"denoiser": {"budgeted": False, "steps": config.train.steps},
                        "predictor": {"budgeted": False, "steps": config.predictor_train.steps}}
    n = x.shape[0]
    state = record_state(config, x, parents, tuple(parent_order), node=node, device=device)
    schedule = NoiseSchedule(config.schedule)
    z = state.to_internal(x, device)
    cond, targets = state.condition(config, parents, n, device, node)

    def networks() -> tuple[Any, Any]:
        with torch.random.fork_rng(devices=cuda_devices(device)):
            torch.manual_seed(config.train.seed)
            return build_networks(config, state, device)

    def probe_denoiser(cfg: TrainConfig, cb: Callable) -> Any:
        return train_denoiser(networks()[0], z, schedule, cfg, cond=cond, cond_dropout=config.cond_dropout,
                              desc=f"probe {node} (denoiser)", callback=cb)

    def probe_predictor(cfg: TrainConfig, cb: Callable) -> Any:
        return train_predictor(networks()[1], z, targets, state.heads(config), schedule, cfg,
                               desc=f"probe {node} (predictor)", callback=cb)

    train, den = budget_steps(config.train, denoiser,
                              lambda: seconds_per_step(probe_denoiser, config.train, denoiser, device))
    has_predictor = config.guidance == "anticausal" and bool(state.parent_codec.parents)
    ptrain, pred = budget_steps(config.predictor_train, predictor if has_predictor else None,
                                lambda: seconds_per_step(probe_predictor, config.predictor_train, predictor, device))
    return config.model_copy(update={"train": train, "predictor_train": ptrain}), {"denoiser": den, "predictor": pred}


__all__ = ["Budget", "seconds_per_step", "budget_steps", "budgeted_diffusion"]
