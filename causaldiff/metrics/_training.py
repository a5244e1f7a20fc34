"""A small seeded minibatch training loop shared by the metric models (AEs, VAE, classifier)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from ..errors import DataError
from ..progress import progress


class TrainConfig(BaseModel):
    """Optimisation settings (AdamW) of a metric model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    iterations: int = Field(2000, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)


def resolve_device(device: torch.device | str | None, like: Tensor) -> torch.device:
    return torch.device(device) if device is not None else like.device


def build(factory: Callable[[], nn.Module], seed: int, device: torch.device) -> nn.Module:
    """Construct a module with its initial weights drawn from ``seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = factory()
    return module.to(device)


def check_images(images: Tensor, what: str, multiple_of: int = 1) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 1:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise DataError(f"{what}: expected images of shape (n, 1, H, W), got {shape}")
    if images.shape[0] == 0:
        raise DataError(f"{what}: empty batch")
    h, w = images.shape[-2:]
    if h % multiple_of or w % multiple_of:
        raise DataError(f"{what}: height and width must be multiples of {multiple_of}, got {h}x{w}")
    if not torch.isfinite(images).all():
        raise DataError(f"{what}: images contain NaN or Inf")


def check_labels(labels: Tensor, n: int, num_classes: int | None, what: str) -> int:
    """Validate integer labels ``(n,)`` and return the number of classes."""
    if not isinstance(labels, Tensor) or labels.shape != (n,) or labels.is_floating_point():
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise DataError(f"{what}: expected integer labels of shape ({n},), got {shape}")
    if labels.min() < 0:
        raise DataError(f"{what}: labels must be non-negative")
    k = int(labels.max()) + 1 if num_classes is None else num_classes
    if labels.max() >= k:
        raise DataError(f"{what}: label {int(labels.max())} >= num_classes={k}")
    return k


def train_loop(model: nn.Module, loss_fn: Callable[[Tensor], Tensor], n: int, config: TrainConfig,
               *, seed: int, desc: str,
               sample_batch: Callable[[torch.Generator, int], Tensor] | None = None) -> list[float]:
    """Minimise ``loss_fn(batch_indices)`` with AdamW; returns the loss history.

    Batch indices are drawn uniformly with replacement from ``range(n)`` by a CPU generator seeded
    with ``seed`` (or by ``sample_batch(generator, batch_size)``), so runs are reproducible.
    """
    device = next(model.parameters()).device
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # seeded (e.g. VAE noise), global RNG untouched
        torch.manual_seed(seed)
        return _loop(model, loss_fn, n, config, seed, desc, sample_batch, device)


def _loop(model, loss_fn, n, config, seed, desc, sample_batch, device) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    g = torch.Generator().manual_seed(seed)
    history: list[float] = []
    model.train()
    bar = progress(range(config.iterations), total=config.iterations, desc=desc)
    for step in bar:
        if sample_batch is None:
            idx = torch.randint(n, (config.batch_size,), generator=g)
        else:
            idx = sample_batch(g, config.batch_size)
        loss = loss_fn(idx.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == config.iterations - 1:
            history.append(loss.item())
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{history[-1]:.4g}")
    model.eval()
    return history
