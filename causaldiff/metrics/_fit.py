"""The training defaults of the metric models, and their call of the one training loop."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ..training import TrainConfig, fit_model
from ..training.loop import LossFn, SampleBatch


class MetricTrainConfig(TrainConfig):
    """:class:`~causaldiff.training.TrainConfig` with the metric models' defaults: constant LR,
    no clipping, no EMA (the trained model itself), no autocast, the loss logged every 50 steps."""

    steps: int = Field(2000, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(None, gt=0)
    ema_decay: float | None = Field(None, ge=0, lt=1)
    bf16: bool = False
    log_every: int = Field(50, ge=1)


def fit_metric_model(model: nn.Module, loss_fn: LossFn, num_rows: int, config: TrainConfig, *,
                     desc: str, sample_batch: SampleBatch | None = None, global_rng: bool = False) -> list[float]:
    """Train ``model`` in place, batches from a CPU generator seeded ``config.seed`` on every device
    (the batches it sees on CPU); returns the loss history."""
    generator = torch.Generator().manual_seed(config.seed)
    result = fit_model(model, loss_fn, num_rows, config, sample_batch=sample_batch,
                       generator=generator, desc=desc, global_rng=global_rng)
    return list(result.losses)


def with_seed(config: TrainConfig, seed: int | None) -> TrainConfig:
    """``config`` with ``seed`` as its seed (None: unchanged)."""
    return config if seed is None else config.model_copy(update={"seed": seed})


__all__ = ["MetricTrainConfig", "fit_metric_model", "with_seed"]
