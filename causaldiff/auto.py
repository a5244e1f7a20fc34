"""Automatic mechanism assignment from data (DoWhy's ``auto.assign_causal_mechanisms``).

``cd.auto.assign_mechanisms(graph, data)`` binds every node to a registered mechanism chosen from
its observed column and from whether it has parents, prints the table of choices, and returns an
unfitted :class:`~causaldiff.SCM` (call ``.fit(data)``). The rule:

=========================================  ==========================  ================================
observed column                            root                        node with parents
=========================================  ==========================  ================================
categorical: integer (``torch.long``) or   ``categorical`` (smoothed   ``classifier`` (an MLP of the
a pandas ``Categorical``; binary too       class frequencies)          parents; Gumbel-max noise)
continuous scalar ``(n,)``                 ``additive_noise``          ``additive_noise`` (ANM
                                           (a fitted Gaussian)         ``x = f(pa) + sigma u``; exact)
vector ``(n, d)``                          ``diffusion`` (DCM MLP)     ``diffusion`` (conditional MLP)
image ``(n, C, H, W)``                     ``diffusion`` (UNet)        ``diffusion`` (conditional UNet)
=========================================  ==========================  ================================

Nodes already bound (``graph.nodes[v]["mechanism"]`` or ``mechanisms={v: ...}``) keep their
mechanism. ``configs`` overrides a registered kind's default config (e.g.
``{"diffusion": DiffusionConfig(...)}``); ``quick=True`` applies each kind's ``quick`` setting.
``data`` is a dict of tensors, a DataFrame or a ``(frame, tensors)`` pair (:mod:`causaldiff.frames`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import networkx as nx
import torch
from pydantic import BaseModel
from torch import Tensor

from .errors import DataError, GraphError
from .frames import from_tabular, is_tabular
from .registry import MECHANISMS
from .scm import SCM

#: (kind of column, has parents) -> registered mechanism
RULE: dict[tuple[str, bool], str] = {
    ("categorical", False): "categorical", ("categorical", True): "classifier",
    ("continuous", False): "additive_noise", ("continuous", True): "additive_noise",
    ("vector", False): "diffusion", ("vector", True): "diffusion",
    ("image", False): "diffusion", ("image", True): "diffusion",
}


@dataclass(frozen=True)
class Choice:
    """One node's assignment: the kind of its column, its parents and the chosen mechanism."""

    node: str
    kind: str
    parents: tuple[str, ...]
    mechanism: str


def column_kind(node: str, x: Any) -> str:
    """``categorical``, ``continuous``, ``vector`` or ``image`` for a batch-first column."""
    x = x if isinstance(x, Tensor) else torch.as_tensor(x)
    if x.dtype == torch.bool or x.is_complex():
        raise DataError(f"node {node!r}: unsupported dtype {x.dtype} for automatic assignment")
    if not x.is_floating_point():
        if x.dim() != 1:
            raise DataError(f"node {node!r}: integer values of shape {tuple(x.shape)}; a categorical "
                            "node holds class indices of shape (n,)")
        return "categorical"
    kinds = {1: "continuous", 2: "vector", 4: "image"}
    if x.dim() not in kinds:
        raise DataError(f"node {node!r}: values of shape {tuple(x.shape)}; automatic assignment knows "
                        "scalars (n,), vectors (n, d) and images (n, C, H, W)")
    return kinds[x.dim()]


def choose(graph: nx.DiGraph, data: Any, mechanisms: Mapping[str, Any] | None = None) -> list[Choice]:
    """The choice for every node in topological order (``"given"`` for nodes already bound)."""
    rows = from_tabular(data, tuple(graph.nodes))[0] if is_tabular(data) else data
    if not isinstance(rows, Mapping):
        raise DataError(f"data must be a dict of node name -> tensor or a DataFrame, got {type(rows).__name__}")
    given = {**{v: graph.nodes[v].get("mechanism") for v in graph.nodes}, **dict(mechanisms or {})}
    out = []
    for v in nx.lexicographical_topological_sort(graph):
        parents = tuple(sorted(graph.predecessors(v)))
        if given.get(v) is not None:
            out.append(Choice(v, "given", parents, type(given[v]).__name__))
            continue
        if v not in rows:
            raise DataError(f"node {v!r} has no column in the data; give one or bind the node yourself")
        kind = column_kind(v, rows[v])
        out.append(Choice(v, kind, parents, RULE[(kind, bool(parents))]))
    return out


def table(choices: list[Choice]) -> str:
    """The choices as a plain-text table (what :func:`assign_mechanisms` prints)."""
    rows = [("node", "data", "parents", "mechanism")] + [
        (c.node, c.kind, ", ".join(c.parents) or "-", c.mechanism) for c in choices]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


def _build(name: str, configs: Mapping[str, BaseModel], quick: bool) -> Any:
    cls = MECHANISMS.get(name)
    config = configs.get(name) or cls.Config()
    return cls.from_config(cls.quick(config) if quick else config)


def assign_mechanisms(graph: nx.DiGraph, data: Any, *, mechanisms: Mapping[str, Any] | None = None,
                      configs: Mapping[str, BaseModel] | None = None, quick: bool = False,
                      show: bool = True) -> SCM:
    """An unfitted SCM over ``graph`` with every unbound node assigned by the module's rule;
    prints the table of choices unless ``show=False``."""
    configs = dict(configs or {})
    unknown = [k for k in configs if k not in MECHANISMS]
    if unknown:
        raise GraphError(f"configs for unknown mechanism kinds {unknown}; registered: {list(MECHANISMS.names())}")
    choices = choose(graph, data, mechanisms)
    if show:
        print(table(choices))
    bound = {c.node: _build(c.mechanism, configs, quick) for c in choices if c.kind != "given"}
    return SCM(graph, {**bound, **dict(mechanisms or {})})


__all__ = ["RULE", "Choice", "assign_mechanisms", "choose", "column_kind", "table"]
