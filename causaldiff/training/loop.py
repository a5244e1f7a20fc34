"""THE training loop of every model causaldiff trains (denoisers, anti-causal predictors,
additive-noise MLPs, the metric models).

AdamW on minibatches of row indices drawn with replacement (or by a ``sample_batch`` hook), an LR
schedule (:func:`lr_factor`, or any torch scheduler), gradient clipping, an EMA, bf16 autocast on
CUDA, a progress bar, a loss history and checkpoints. Every draw comes from one ``torch.Generator``,
so a run is repeatable and leaves torch's global RNG alone; a model drawing from the global RNG
itself (dropout, ``global_rng=True``) trains in a fork of it seeded from the config. What differs
between one process and several goes through a :class:`~.strategy.Strategy`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from ..progress import progress
from .checkpoint import Checkpointer, fingerprint
from .config import TrainConfig, lr_factor
from .ema import EMA, warmed_decay
from .seeding import draws_globally, seeded_rng
from .strategy import Strategy, current_strategy

#: ``loss_fn(model, batch_indices, generator) -> scalar loss``
LossFn = Callable[[nn.Module, Tensor, torch.Generator], Tensor]
#: ``sample_batch(generator, batch_size) -> batch indices`` (first dimension: the batch)
SampleBatch = Callable[[torch.Generator, int], Tensor]
#: ``callback(step, model)``, after every optimiser step (``step`` counts the steps done)
Callback = Callable[[int, nn.Module], None]
#: ``scheduler(optimizer) -> torch LR scheduler``, stepped after every optimiser step
SchedulerFactory = Callable[[torch.optim.Optimizer], LRScheduler]


@dataclass(frozen=True)
class TrainResult:
    """Outcome of a training run; ``ema`` holds the inference weights (eval mode, no grads),
    or is ``model`` itself when the config has ``ema_decay=None``."""

    model: nn.Module
    ema: nn.Module
    steps: int
    #: mean loss over each ``log_every`` window
    losses: tuple[float, ...]
    #: the step a checkpoint resumed from (None: started from scratch)
    resumed_from: int | None


@dataclass
class _Run:
    """The mutable state of one run: everything a checkpoint saves."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    ema: EMA | None
    generator: torch.Generator
    step: int = 0
    losses: list[float] = field(default_factory=list)
    resumed_from: int | None = None

    def state(self, fingerprint: str, world_size: int = 1) -> dict:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "generator": self.generator.get_state(),
                 "torch_rng": torch.get_rng_state(), "step": self.step, "losses": self.losses,
                 "fingerprint": fingerprint, "world_size": world_size}
        if self.ema is not None:
            state["ema"] = self.ema.module.state_dict()
        device = next(self.model.parameters()).device
        if device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(device)
        return state

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.module.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        device = next(self.model.parameters()).device
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        self.step = self.resumed_from = int(state["step"])
        self.losses = list(state["losses"])


def fit_model(model: nn.Module, loss_fn: LossFn, num_rows: int, config: TrainConfig, *,
              strategy: Strategy | None = None, checkpointer: Checkpointer | None = None,
              sample_batch: SampleBatch | None = None, callback: Callback | None = None,
              scheduler: SchedulerFactory | None = None, generator: torch.Generator | None = None,
              data: Sequence[Tensor] = (), tag: str = "", desc: str = "train",
              global_rng: bool = False) -> TrainResult:
    """Minimise ``loss_fn`` over minibatches of ``num_rows`` rows on the model's device.

    ``strategy``: default the :func:`~.strategy.use_strategy` one (``config.batch_size`` is the global
    batch); ``checkpointer``: default from ``config.checkpoint_dir`` / ``checkpoint_every``;
    ``sample_batch``: draws the indices (default uniform); ``scheduler``: a torch LR scheduler instead
    of the config's; ``generator``: the batch generator (default: seeded ``config.seed`` on the
    model's device); ``data`` and ``tag`` enter the checkpoint fingerprint only; ``global_rng``: the
    model draws from torch's global RNG (active dropout is detected): train in a seeded fork of it.
    """
    if num_rows < 1:
        raise ValueError(f"{desc}: no training rows")
    strategy = current_strategy() if strategy is None else strategy
    checkpointer = Checkpointer.from_config(config, desc) if checkpointer is None else checkpointer
    device = next(model.parameters()).device
    fork = seeded_rng(device, config.seed) if global_rng or draws_globally(model) else contextlib.nullcontext()
    with fork, torch.enable_grad():
        run = _start(model, config, scheduler, generator)
        fp = fingerprint(config, model, data, tag) if checkpointer is not None else ""
        state = checkpointer.load(fp, desc, strategy.world_size) if checkpointer is not None else None
        if state is not None:
            run.restore(state)
        draw = sample_batch if sample_batch is not None else _uniform(num_rows)
        _optimise(run, strategy.wrap(model), loss_fn, draw, config, strategy, checkpointer, fp,
                  callback, desc)
    ema = run.ema.module if run.ema is not None else model
    return TrainResult(model, ema, run.step, tuple(run.losses), run.resumed_from)


def _start(model: nn.Module, config: TrainConfig, scheduler: SchedulerFactory | None,
           generator: torch.Generator | None) -> _Run:
    device = next(model.parameters()).device
    gen = generator if generator is not None else \
        torch.Generator(device=device).manual_seed(config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.betas,
                            weight_decay=config.weight_decay, foreach=True)
    sched = scheduler(opt) if scheduler is not None else \
        LambdaLR(opt, lambda step: lr_factor(config, step))
    ema = EMA(model, config.ema_decay) if config.ema_decay is not None else None
    return _Run(model, opt, sched, ema, gen)


def _uniform(num_rows: int) -> SampleBatch:
    def draw(gen: torch.Generator, batch_size: int) -> Tensor:
        return torch.randint(num_rows, (batch_size,), generator=gen, device=gen.device)
    return draw


def _optimise(run: _Run, net: nn.Module, loss_fn: LossFn, draw: SampleBatch, config: TrainConfig,
              strategy: Strategy, checkpointer: Checkpointer | None, fp: str,
              callback: Callback | None, desc: str) -> None:
    """Steps ``run.step .. config.steps - 1``; ``net`` is the (wrapped) model the loss sees."""
    device = next(run.model.parameters()).device
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                              enabled=config.bf16 and device.type == "cuda")
    run.model.train()
    running = torch.zeros((), device=device)
    steps = range(run.step, config.steps)
    bar = progress(steps, total=len(steps), desc=desc) if strategy.is_main else None  # one bar
    for _ in steps if bar is None else bar:
        idx = strategy.shard(draw(run.generator, config.batch_size).to(device))
        with autocast:
            loss = loss_fn(net, idx, strategy.loss_generator(run.generator, config.seed, run.step))
        _update(run, loss, config)
        running += loss.detach().float()
        if run.step % config.log_every == 0:  # one host sync per log window
            run.losses.append(float(strategy.reduce(running)) / config.log_every)
            running.zero_()
            if bar is not None:
                bar.set_postfix(loss=f"{run.losses[-1]:.4f}")
        if checkpointer is not None and checkpointer.due(run.step):
            checkpointer.save(run.state(fp, strategy.world_size), strategy)
        if callback is not None:
            callback(run.step, run.model)
    if checkpointer is not None and checkpointer.every is not None and not checkpointer.due(run.step):
        checkpointer.save(run.state(fp, strategy.world_size), strategy)  # the last steps of the run
    run.model.eval()


def _update(run: _Run, loss: Tensor, config: TrainConfig) -> None:
    """One optimiser step: backward, clipping, AdamW, the LR schedule, the EMA."""
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip is not None:
        nn.utils.clip_grad_norm_(run.model.parameters(), config.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    if run.ema is not None:
        decay = warmed_decay(config.ema_decay, run.step) if config.ema_warmup else None
        run.ema.update(decay)
    run.step += 1


__all__ = ["TrainResult", "fit_model", "LossFn", "SampleBatch", "Callback", "SchedulerFactory"]
