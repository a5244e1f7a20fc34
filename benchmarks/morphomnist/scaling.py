"""The benchmark's attribute and image scaling, in its float32 arithmetic.

counterfactual-benchmark (commit 581dbb4) ``datasets/morphomnist/dataset.py``: ``normalize`` maps
each float32 value ``v`` to ``2 ((v - lo) / (hi - lo)) - 1`` in float32 (the rounding decides which
values are unique and on which side of a region's edge a value falls: :mod:`.draws`);
``unnormalize`` is its inverse.  Images are zero-padded 28 -> 32 and scaled ``[0, 255] -> [-1, 1]``
(:func:`.dataset.to_unit_images` gives the same float32 values).
"""

from __future__ import annotations

import numpy as np
import torch

from .dataset import ATTRIBUTE_RANGES, to_unit_images

#: attributes the benchmark min-max scales
ATTRIBUTES = tuple(ATTRIBUTE_RANGES)


def _range(node: str) -> tuple[float, float]:
    if node not in ATTRIBUTE_RANGES:
        raise ValueError(f"{node!r} is not a scaled attribute (one of {ATTRIBUTES})")
    return ATTRIBUTE_RANGES[node]


def scale(node: str, values) -> np.ndarray:
    """``2 ((v - lo) / (hi - lo)) - 1`` of float32 ``values`` in float32 arithmetic."""
    lo, hi = _range(node)
    v = torch.as_tensor(np.asarray(values, dtype=np.float32))
    return (2 * ((v - lo) / (hi - lo)) - 1).numpy()


def unscale(node: str, values: torch.Tensor) -> torch.Tensor:
    """The benchmark's ``unnormalize``: ``(x + 1) / 2 (hi - lo) + lo`` (in ``values``' dtype)."""
    lo, hi = _range(node)
    return (values + 1) / 2 * (hi - lo) + lo


def benchmark_images(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(n, 28, 28)`` -> float32 ``(n, 1, 32, 32)`` in ``[-1, 1]``, zero-padded."""
    return to_unit_images(np.asarray(images, dtype=np.uint8), 32)


__all__ = ["ATTRIBUTES", "scale", "unscale", "benchmark_images"]
