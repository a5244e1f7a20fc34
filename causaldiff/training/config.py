"""THE training configuration, shared by every model causaldiff trains, and its LR schedule."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..limits import MAX_STEPS, Batch, Seed, Steps


class TrainConfig(BaseModel):
    """Optimisation hyperparameters (serialisable, immutable); subclasses change the defaults.

    AdamW (Loshchilov & Hutter 2019) on minibatches drawn uniformly with replacement.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    steps: int = Field(2000, ge=0, le=MAX_STEPS)
    batch_size: Batch = 256
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    #: linear learning-rate warm-up over this many steps, then the schedule below
    warmup_steps: int = Field(0, ge=0, le=MAX_STEPS)
    #: after the warm-up: "constant", or "cosine" decay to 0 at the last step (Loshchilov &
    #: Hutter 2017, without restarts)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    #: max gradient norm (None: no clipping)
    grad_clip: float | None = Field(1.0, gt=0.0)
    #: EMA decay of the inference weights (0: the EMA is the last iterate; None: no EMA, the
    #: trained model itself is the result)
    ema_decay: float | None = Field(0.999, ge=0.0, lt=1.0)
    #: warm the decay up as min(ema_decay, (1 + step) / (10 + step)), so short runs are not
    #: dominated by the initial weights
    ema_warmup: bool = True
    seed: Seed = 0
    #: bf16 autocast when training on CUDA (ignored elsewhere)
    bf16: bool = True
    #: save a checkpoint every this many steps into checkpoint_dir (and resume from it)
    checkpoint_every: Steps | None = None
    checkpoint_dir: str | None = None
    #: average the loss over this many steps for the progress bar and the loss history
    log_every: Steps = 100


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


__all__ = ["TrainConfig", "lr_factor"]
