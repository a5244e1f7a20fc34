"""Input checks (and the device choice) shared by the metric models."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import DataError


def resolve_device(device: torch.device | str | None, like: Tensor) -> torch.device:
    """``device``, or the device of ``like`` when it is None."""
    return torch.device(device) if device is not None else like.device


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
