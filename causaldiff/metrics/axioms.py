"""Axiomatic soundness of counterfactual image models (Monteiro et al., ICLR 2023), for a function
``fn(rows, do) -> rows`` like ``scm.counterfactual``; each returns per-row mean absolute pixel
differences ``(n,)``. Composition: ``L1(x, f^m(x, do(pa = pa)))``; reversibility:
``L1(x, f(f(x, do(k)), do(pa = pa_factual)))``; effectiveness: :mod:`causaldiff.metrics.classifier`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from torch import Tensor

from ..errors import DataError
from .distances import l1_distance

CounterfactualFn = Callable[[Mapping[str, Tensor], Mapping[str, Any]], Mapping[str, Tensor]]


def _check(factual: Mapping[str, Tensor], image_node: str, nodes: Iterable[str]) -> None:
    if image_node not in factual:
        raise DataError(f"factual rows have no {image_node!r} entry (pass image_node=...)")
    missing = [k for k in nodes if k not in factual]
    if missing:
        raise DataError(f"factual rows miss the parent values {missing}")


def composition(counterfactual_fn: CounterfactualFn, factual: Mapping[str, Tensor], *,
                nodes: Sequence[str] | None = None, cycles: Iterable[int] = (1, 10),
                image_node: str = "image") -> dict[int, Tensor]:
    """L1 between the factual image and its null-intervention counterfactual after each number of
    ``cycles`` (``max(cycles)`` applications); ``nodes``: the parents set to their own values
    (default: every entry but the image)."""
    nodes = [k for k in factual if k != image_node] if nodes is None else list(nodes)
    if not nodes:
        raise DataError("composition: no parent to intervene on")
    _check(factual, image_node, nodes)
    wanted = sorted(set(int(c) for c in cycles))
    if not wanted or wanted[0] < 1:
        raise DataError(f"composition: cycles must be positive integers, got {list(cycles)}")
    rows: Mapping[str, Tensor] = dict(factual)
    out: dict[int, Tensor] = {}
    for m in range(1, wanted[-1] + 1):
        rows = counterfactual_fn(rows, {k: rows[k] for k in nodes})
        if m in wanted:
            out[m] = l1_distance(factual[image_node], rows[image_node])
    return out


def reversibility(counterfactual_fn: CounterfactualFn, factual: Mapping[str, Tensor],
                  do: Mapping[str, Any], *, image_node: str = "image",
                  counterfactual: Mapping[str, Tensor] | None = None) -> Tensor:
    """L1 between the factual image and ``do`` followed by the intervention restoring the factual
    values; ``counterfactual``: the rows of ``do`` when already computed."""
    if not do:
        raise DataError("reversibility: do must name at least one node")
    _check(factual, image_node, do)
    cf = counterfactual_fn(factual, do) if counterfactual is None else counterfactual
    back = counterfactual_fn(cf, {k: factual[k] for k in do})
    return l1_distance(factual[image_node], back[image_node])
