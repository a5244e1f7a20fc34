"""Squared maximum mean discrepancy with an RBF kernel, as the DCM protocol defines it.

``MMD^2_b(X, Y) = mean k(X, X) + mean k(Y, Y) - 2 mean k(X, Y)`` (Gretton et al., JMLR 2012, Eq. 5,
diagonals included), ``k(a, b) = exp(-gamma ||a - b||^2)``, by default ``gamma = 1 / median`` of the
positive squared distances *between* the two sets (``BENCHMARKS.md`` section 2). The one MMD of the
package; the published tabular figures were computed with it.
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
    m = v.reshape(v.shape[0], -1).to(torch.float64)
    if not torch.isfinite(m).all():
        raise DataError(f"mmd2: {what} contains NaN or Inf")
    return m


def median_heuristic_gamma(x: Tensor | Mapping[str, Tensor], y: Tensor | Mapping[str, Tensor],
                           nodes: Sequence[str] | None = None) -> Tensor:
    """``1 / median`` of the positive squared distances ``||x_i - y_j||^2`` between the two sets
    (``torch.median``: the lower median for an even count). When no cross distance is positive,
    every row of both sets is the same point and the MMD is 0 for any gamma: gamma is then 1."""
    a, b = _as_matrix(x, nodes, "x"), _as_matrix(y, nodes, "y")
    d = torch.cdist(a, b).pow(2)
    pos = d[d > 0]
    if pos.numel() == 0:
        return torch.ones((), dtype=torch.float64, device=a.device)
    return 1.0 / pos.median()


def mmd2(x: Tensor | Mapping[str, Tensor], y: Tensor | Mapping[str, Tensor], *,
         gamma: float | Tensor | None = None, nodes: Sequence[str] | None = None) -> Tensor:
    """Biased ``MMD^2`` (float64 scalar) between the rows of ``x`` and ``y``, tensors or dicts of them
    (``nodes``: the columns, default sorted keys); ``gamma=None``: the median heuristic above."""
    a, b = _as_matrix(x, nodes, "x"), _as_matrix(y, nodes, "y")
    if a.shape[1] != b.shape[1]:
        raise DataError(f"mmd2: x has {a.shape[1]} features per row, y has {b.shape[1]}")
    g = float(median_heuristic_gamma(a, b) if gamma is None else gamma)
    if not g > 0:
        raise DataError(f"mmd2: gamma must be positive, got {g}")

    def k(p: Tensor, q: Tensor) -> Tensor:
        return torch.exp(-g * torch.cdist(p, q).pow(2)).mean()

    return k(a, a) + k(b, b) - 2 * k(a, b)
