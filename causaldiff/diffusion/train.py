"""Training of denoisers (epsilon prediction) and noisy anti-causal predictors.

One loop serves both: minibatches drawn uniformly with replacement, ``t`` uniform on
``0..T-1``, AdamW, gradient clipping, an exponential moving average of the weights (used at
inference), bf16 autocast on CUDA only, a progress bar, and checkpoints. Every random draw
comes from one ``torch.Generator`` seeded from the config, so a CPU run is repeatable; a
checkpoint holds the model, EMA, optimizer, step, losses and every RNG state, so a run resumed
after a kill ends with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from ..errors import SerializationError
from ..progress import progress
from .guidance import ParentHead, heads_log_prob
from .schedule import NoiseSchedule

#: ``loss_fn(model, batch_indices, generator) -> scalar loss``
LossFn = Callable[[nn.Module, Tensor, torch.Generator], Tensor]

CHECKPOINT_NAME = "checkpoint.pt"


class TrainConfig(BaseModel):
    """Optimisation hyperparameters (serialisable, immutable)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: int = Field(2000, ge=0)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    #: linear learning-rate warm-up over this many steps, then the schedule below
    warmup_steps: int = Field(0, ge=0)
    #: after the warm-up: "constant", or "cosine" decay to 0 at the last step (Loshchilov &
    #: Hutter 2017, without restarts)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    #: max gradient norm (None: no clipping)
    grad_clip: float | None = Field(1.0, gt=0.0)
    #: EMA decay of the inference weights (0: the EMA is the last iterate)
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0)
    #: warm the decay up as min(ema_decay, (1 + step) / (10 + step)), so short runs are not
    #: dominated by the initial weights
    ema_warmup: bool = True
    seed: int = 0
    #: bf16 autocast when training on CUDA (ignored elsewhere)
    bf16: bool = True
    #: save a checkpoint every this many steps into checkpoint_dir (and resume from it)
    checkpoint_every: int | None = Field(None, ge=1)
    checkpoint_dir: str | None = None
    #: average the loss over this many steps for the progress bar and the loss history
    log_every: int = Field(100, ge=1)


def lr_factor(config: TrainConfig, step: int) -> float:
    """Multiplier of ``config.lr`` at (0-based) ``step``: linear warm-up, then constant or a
    half-cosine from 1 at the end of the warm-up to 0 after the last step."""
    w = config.warmup_steps
    if step < w:
        return (step + 1) / w
    if config.lr_schedule == "constant":
        return 1.0
    span = max(config.steps - w, 1)
    return 0.5 * (1.0 + math.cos(math.pi * (step - w) / span))


@dataclass(frozen=True)
class TrainResult:
    """Outcome of a training run; ``ema`` holds the inference weights (eval mode, no grads)."""

    model: nn.Module
    ema: nn.Module
    steps: int
    #: mean loss over each ``log_every`` window
    losses: tuple[float, ...]
    #: the step a checkpoint resumed from (None: started from scratch)
    resumed_from: int | None


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


def _fingerprint(config: TrainConfig, model: nn.Module, data: Sequence[Tensor], extra: str) -> str:
    """Hash of what must not change between a checkpoint and its resumption."""
    cfg = config.model_dump(mode="json", exclude={"steps", "checkpoint_every", "checkpoint_dir",
                                                  "log_every"})
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    stats = [[list(d.shape), str(d.dtype), float(d.double().sum())] for d in data]
    blob = json.dumps([cfg, shapes, stats, extra], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a kill leaves either the old or the new checkpoint


def load_checkpoint(directory: str | os.PathLike) -> dict | None:
    """The checkpoint in ``directory`` (read with ``weights_only=True``), or None if there is none."""
    path = Path(directory) / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or not a checkpoint
        raise SerializationError(f"cannot read training checkpoint {path}: {exc}") from exc


def train(model: nn.Module, loss_fn: LossFn, num_rows: int, config: TrainConfig, *,
          data: Sequence[Tensor] = (), desc: str = "train", tag: str = "",
          callback: Callable[[int, nn.Module], None] | None = None) -> TrainResult:
    """Minimise ``loss_fn`` over minibatches of ``num_rows`` rows on the model's device.

    ``data`` (the training tensors) and ``tag`` only enter the checkpoint fingerprint, so a
    checkpoint is never resumed with other data or another kind of model. ``callback(step,
    model)`` runs after every optimiser step.
    """
    if num_rows < 1:
        raise ValueError(f"{desc}: no training rows")
    device = next(model.parameters()).device
    # The global RNG (dropout) is seeded from the config inside a fork, so training neither
    # depends on nor disturbs the caller's random state.
    with torch.random.fork_rng(devices=cuda_devices(device)), torch.enable_grad():
        torch.manual_seed(config.seed)
        return _train(model, loss_fn, num_rows, config, device, data, desc, tag, callback)


def cuda_devices(device: torch.device) -> list[int]:
    """The CUDA device index list ``torch.random.fork_rng`` needs for ``device`` (empty off CUDA)."""
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _train(model: nn.Module, loss_fn: LossFn, num_rows: int, config: TrainConfig,
           device: torch.device, data: Sequence[Tensor], desc: str, tag: str,
           callback: Callable[[int, nn.Module], None] | None) -> TrainResult:
    gen = torch.Generator(device=device).manual_seed(config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.betas,
                            weight_decay=config.weight_decay, foreach=True)
    ema = EMA(model, config.ema_decay)
    step, losses, resumed = 0, [], None
    ckpt_path = Path(config.checkpoint_dir) / CHECKPOINT_NAME if config.checkpoint_dir else None
    if config.checkpoint_every is not None and ckpt_path is None:
        raise ValueError(f"{desc}: checkpoint_every needs a checkpoint_dir")
    fingerprint = _fingerprint(config, model, data, tag) if ckpt_path is not None else ""
    if ckpt_path is not None:
        state = load_checkpoint(ckpt_path.parent)
        if state is not None:
            if state.get("fingerprint") != fingerprint:
                raise SerializationError(
                    f"{desc}: checkpoint {ckpt_path} was written for another model, data or "
                    "training config; delete it or use another checkpoint_dir")
            model.load_state_dict(state["model"])
            ema.module.load_state_dict(state["ema"])
            opt.load_state_dict(state["optimizer"])
            gen.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            if device.type == "cuda" and "cuda_rng" in state:
                torch.cuda.set_rng_state(state["cuda_rng"], device)
            step = resumed = int(state["step"])
            losses = list(state["losses"])

    def checkpoint() -> None:
        state = {"model": model.state_dict(), "ema": ema.module.state_dict(),
                 "optimizer": opt.state_dict(), "generator": gen.get_state(),
                 "torch_rng": torch.get_rng_state(), "step": step, "losses": losses,
                 "fingerprint": fingerprint}
        if device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(device)
        _save_checkpoint(ckpt_path, state)

    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                              enabled=config.bf16 and device.type == "cuda")
    model.train()
    running = torch.zeros((), device=device)
    bar = progress(range(step, config.steps), total=config.steps - step, desc=desc)
    for _ in bar:
        for group in opt.param_groups:
            group["lr"] = config.lr * lr_factor(config, step)
        idx = torch.randint(num_rows, (config.batch_size,), generator=gen, device=device)
        with autocast:
            loss = loss_fn(model, idx, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        ema.update(min(config.ema_decay, (1 + step) / (10 + step)) if config.ema_warmup else None)
        step += 1
        running += loss.detach().float()
        if step % config.log_every == 0:  # one host sync per log window
            losses.append(float(running) / config.log_every)
            running.zero_()
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if config.checkpoint_every is not None and step % config.checkpoint_every == 0:
            checkpoint()
        if callback is not None:
            callback(step, model)
    if ckpt_path is not None and config.checkpoint_every is not None and step % config.checkpoint_every:
        checkpoint()
    model.eval()
    return TrainResult(model, ema.module, step, tuple(losses), resumed)


# ============================================================================= losses
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
    return train(model, denoiser_loss(schedule, x, cond, cond_dropout), x.shape[0], config,
                 data=data, desc=desc, tag=f"denoiser:{schedule.config!r}:{cond_dropout}",
                 callback=callback)


def train_predictor(model: nn.Module, x: Tensor, targets: Sequence[Tensor],
                    heads: Sequence[ParentHead], schedule: NoiseSchedule, config: TrainConfig, *,
                    desc: str = "predictor",
                    callback: Callable[[int, nn.Module], None] | None = None) -> TrainResult:
    """Train a noisy anti-causal predictor ``model(x_t, t) -> heads`` of the parents."""
    heads = tuple(heads)
    return train(model, predictor_loss(schedule, x, targets, heads), x.shape[0], config,
                 data=[x, *targets], desc=desc, tag=f"predictor:{schedule.config!r}:{heads!r}",
                 callback=callback)
