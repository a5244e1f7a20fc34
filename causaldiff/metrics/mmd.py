"""Squared maximum mean discrepancy with an RBF kernel and the median heuristic.

``MMD^2_b(X, Y) = mean k(X, X) + mean k(Y, Y) - 2 mean k(X, Y)`` (the biased V-statistic of
Gretton et al. 2012, Eq. 5, diagonals included), ``k(a, b) = exp(-gamma ||a - b||^2)`` and, by
default, ``gamma = 1 / median`` of the positive pairwise squared distances of the pooled sets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ..errors import DataError


def _as_matrix(v: Tensor | Mapping[str, Tensor], nodes: Sequence[str] | None, what: str) -> Tensor:
    if isinstance(v, Mapping):
        keys = sorted(v) if nodes is None else list(nodes)
        missing = [k for k in keys if k not in v]
        if missing:
            raise DataError(f"mmd2: {what} misses nodes {missing}")
        v = torch.cat([v[k].reshape(v[k].shape[0], -1) for k in keys], dim=1)
    if not isinstance(v, Tensor) or v.dim() == 0 or v.shape[0] < 1:
        raise DataError(f"mmd2: {what} must be a non-empty batch (n, ...)")
    m = v.reshape(v.shape[0], -1).double()
    if not torch.isfinite(m).all():
        raise DataError(f"mmd2: {what} contains NaN or Inf")
    return m


def _sqdist(a: Tensor, b: Tensor) -> Tensor:
    return ((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T).clamp_min(0)


def median_heuristic_gamma(x: Tensor | Mapping[str, Tensor], y: Tensor | Mapping[str, Tensor],
                           nodes: Sequence[str] | None = None) -> Tensor:
    """``1 / median`` of the positive squared distances between distinct rows of ``x`` ∪ ``y``
    (the lower median for an even count)."""
    z = torch.cat([_as_matrix(x, nodes, "x"), _as_matrix(y, nodes, "y")])
    d = torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist").pow(2)  # exact zeros
    i, j = torch.triu_indices(len(z), len(z), offset=1, device=z.device)
    pos = d[i, j]
    pos = pos[pos > 0]
    if pos.numel() == 0:
        raise DataError("mmd2: every row is identical; the median heuristic is undefined")
    return 1.0 / pos.median()


def mmd2(x: Tensor | Mapping[str, Tensor], y: Tensor | Mapping[str, Tensor], *,
         gamma: float | Tensor | None = None, nodes: Sequence[str] | None = None) -> Tensor:
    """Biased ``MMD^2`` between the rows of ``x`` and ``y`` (float64 scalar).

    ``x`` and ``y`` are batch-first tensors or dicts of them (tabular rows; ``nodes`` picks and
    orders the columns, default: sorted keys). ``gamma=None`` uses the median heuristic.
    """
    a, b = _as_matrix(x, nodes, "x"), _as_matrix(y, nodes, "y")
    if a.shape[1] != b.shape[1]:
        raise DataError(f"mmd2: x has {a.shape[1]} features per row, y has {b.shape[1]}")
    if gamma is None:
        gamma = median_heuristic_gamma(a, b)
    gamma = torch.as_tensor(gamma, dtype=torch.float64, device=a.device)
    if not gamma > 0:
        raise DataError(f"mmd2: gamma must be positive, got {float(gamma)}")
    kxx = torch.exp(-gamma * _sqdist(a, a)).mean()
    kyy = torch.exp(-gamma * _sqdist(b, b)).mean()
    kxy = torch.exp(-gamma * _sqdist(a, b)).mean()
    return kxx + kyy - 2 * kxy
