"""Structural equations ``x_i = f_i(pa_i, u_i)`` with independent ``u_i ~ N(0, I)``: the validated
definition of a tabular SCM (the DCM SCMs and the ladder), read by
:class:`causaldiff.datasets.tabular.TabularSCM`.

This module holds no data set; :mod:`.tabular` and :mod:`.ladder` both build definitions with it,
so neither imports the other's definitions (no import cycle).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import networkx as nx
from torch import Tensor

#: ``f(parents, u) -> x``: a vectorised structural equation; ``parents`` maps names to tensors.
Equation = Callable[[Mapping[str, Tensor], Tensor], Tensor]

#: "nonlinear": additive noise ``x = f(pa) + scale * u``; "nonadditive": noise enters ``f``.
KINDS = ("nonlinear", "nonadditive")


def root_equation(p: Mapping[str, Tensor], u: Tensor) -> Tensor:
    """The equation of a root: ``x = u``."""
    return u.clone()


@dataclass(frozen=True, eq=False)
class StructuralEquations:
    """A fully known SCM, validated on construction: ``name`` (``"chain-nonlinear"``), ``graph_name``,
    ``kind`` (one of :data:`KINDS`), ``nodes`` in the topological order noise is drawn in, ``edges``
    ``(parent, child)``, ``equations`` (node -> ``f(parents, u)``), ``event_shapes`` (missing: scalar),
    ``intervention_nodes`` (default: every node with descendants, sorted)."""

    name: str
    graph_name: str
    kind: str
    nodes: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    equations: Mapping[str, Equation]
    event_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    intervention_nodes: tuple[str, ...] = ()
    #: the DAG (built from ``nodes`` and ``edges``; read it, do not edit it)
    graph: nx.DiGraph = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"SCM {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        g = nx.DiGraph()
        g.add_nodes_from(self.nodes)
        for a, b in self.edges:
            if a not in g or b not in g:
                raise ValueError(f"SCM {self.name!r}: edge {a}->{b} names an unknown node")
            g.add_edge(a, b)
        order = {v: i for i, v in enumerate(self.nodes)}
        for a, b in self.edges:
            if order[a] >= order[b]:
                raise ValueError(f"SCM {self.name!r}: nodes are not topologically ordered ({a}->{b})")
        if set(self.equations) != set(self.nodes):
            raise ValueError(f"SCM {self.name!r}: equations must cover exactly the nodes {self.nodes}")
        shapes = {v: tuple(self.event_shapes.get(v, ())) for v in self.nodes}
        object.__setattr__(self, "event_shapes", MappingProxyType(shapes))
        object.__setattr__(self, "equations", MappingProxyType(dict(self.equations)))
        if not self.intervention_nodes:
            inter = tuple(sorted(v for v in self.nodes if nx.descendants(g, v)))
            object.__setattr__(self, "intervention_nodes", inter)
        object.__setattr__(self, "graph", g)

    def parents(self, node: str) -> tuple[str, ...]:
        """Parents of ``node`` in causaldiff's order (``sorted``)."""
        return tuple(sorted(self.graph.predecessors(node)))


__all__ = ["Equation", "KINDS", "StructuralEquations", "root_equation"]
