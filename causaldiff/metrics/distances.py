"""Per-row distances: L1, MSE, PSNR, minimality, tabular counterfactual error.

Every function here returns one value per row, shape ``(n,)``; average with ``.mean()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor

from ..errors import DataError


def _pair(a: Tensor, b: Tensor, what: str) -> tuple[Tensor, Tensor]:
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise DataError(f"{what}: expected two tensors")
    if a.shape != b.shape:
        raise DataError(f"{what}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.dim() == 0 or a.shape[0] == 0:
        raise DataError(f"{what}: expected a non-empty batch (n, ...)")
    return a.reshape(a.shape[0], -1).double(), b.reshape(b.shape[0], -1).double()


def l1_distance(a: Tensor, b: Tensor) -> Tensor:
    """Mean absolute difference per row (over every pixel / coordinate), float64 ``(n,)``."""
    a, b = _pair(a, b, "l1_distance")
    return (a - b).abs().mean(1)


def mse(prediction: Tensor, truth: Tensor) -> Tensor:
    """Mean squared error per row, float64 ``(n,)``."""
    p, t = _pair(prediction, truth, "mse")
    return (p - t).pow(2).mean(1)


def psnr(prediction: Tensor, truth: Tensor, data_range: float = 2.0) -> Tensor:
    """Peak signal-to-noise ratio per row in dB, ``10 log10(data_range^2 / MSE)`` (``data_range``: 2
    for images in ``[-1, 1]``; identical rows give ``+inf``)."""
    if data_range <= 0:
        raise DataError(f"psnr: data_range must be positive, got {data_range}")
    return 10 * torch.log10(data_range ** 2 / mse(prediction, truth))


def minimality(factual: Tensor, counterfactual: Tensor) -> Tensor:
    """L1 distance between each factual image and its counterfactual (lower: a smaller edit)."""
    return l1_distance(factual, counterfactual)


def counterfactual_error(predicted: Mapping[str, Tensor], truth: Mapping[str, Tensor],
                         nodes: Sequence[str], reduction: Literal["mean", "sum"] = "mean") -> Tensor:
    """Squared error per row over ``nodes`` (float64 ``(n,)``): each node's averaged over its
    entries, then the nodes averaged (``reduction="mean"``) or summed (``"sum"``)."""
    if not nodes:
        raise DataError("counterfactual_error: give at least one node")
    if reduction not in ("mean", "sum"):
        raise DataError(f"counterfactual_error: reduction must be 'mean' or 'sum', got {reduction!r}")
    missing = [k for k in nodes if k not in predicted or k not in truth]
    if missing:
        raise DataError(f"counterfactual_error: nodes {missing} missing from predicted or truth")
    per_node = torch.stack([mse(predicted[k], truth[k]) for k in nodes], dim=1)
    return per_node.mean(1) if reduction == "mean" else per_node.sum(1)
