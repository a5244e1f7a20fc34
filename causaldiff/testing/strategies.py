"""Hypothesis strategies: random DAGs, random SCMs (continuous, vector and discrete nodes) and random
interventions on them (hard, ``Shift`` and callables). hypothesis (the ``dev`` extra) is imported
when a strategy is built, not when this module is::

    @given(st.data())
    def test_laws(data):
        scm = data.draw(scms())
        check_counterfactual_laws(scm, interventions=[data.draw(interventions(scm))])
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import networkx as nx
import pyro.distributions as dist
import torch
from torch import Tensor

from ..interventions import Hard, Shift, Transform
from ..mechanisms.pyro import named_callable
from ..scm import SCM
from ..optional import optional_import
from .suite import halve, is_discrete

FAMILIES = ("Normal", "Laplace", "Logistic", "Gumbel", "StudentT", "Cauchy")
LINKS = ("linear", "tanh", "sin", "softplus")
#: node kinds of :func:`scms`: a location-scale scalar, a 2-vector, a Bernoulli and a 3-class Categorical
KINDS = ("continuous", "vector", "bernoulli", "categorical")
#: the callables :func:`interventions` applies to continuous nodes (row by row)
SOFT_FUNCTIONS = (halve, torch.tanh, torch.sin)


def _hypothesis() -> Any:
    """``hypothesis.strategies``, imported now."""
    return optional_import("hypothesis.strategies", "dev", "random models and interventions (hypothesis strategies)")


def _composite(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``hypothesis.strategies.composite(fn)``, built when the strategy is first asked for."""
    @functools.wraps(fn)
    def strategy(*args: Any, **kwargs: Any) -> Any:
        return _hypothesis().composite(fn)(*args, **kwargs)

    return strategy


@_composite
def dags(draw: Any, min_nodes: int = 1, max_nodes: int = 6, edge_probability: float | None = None) -> nx.DiGraph:
    """Random DAGs on nodes ``v0..v{k-1}`` with edges only from lower to higher index."""
    st = _hypothesis()
    k = draw(st.integers(min_nodes, max_nodes))
    g = nx.DiGraph()
    g.add_nodes_from(f"v{i}" for i in range(k))
    p = edge_probability if edge_probability is not None else draw(st.sampled_from((0.2, 0.5, 0.8)))
    for j in range(k):
        for i in range(j):
            if draw(st.floats(0, 1)) < p:
                g.add_edge(f"v{i}", f"v{j}")
    return g


def _link(name: str, v: Tensor) -> Tensor:
    return {"linear": lambda t: t, "tanh": torch.tanh, "sin": torch.sin,
            "softplus": torch.nn.functional.softplus}[name](v)


def _family(name: str, loc: Any, scale: Any) -> dist.Distribution:
    if name == "StudentT":
        return dist.StudentT(torch.as_tensor(5.0, dtype=torch.as_tensor(loc).dtype), loc, scale)
    return getattr(dist, name)(loc, scale)


def _distribution(kind: str, fam: str, loc: Tensor, scale: Tensor) -> dist.Distribution:
    """The node's distribution of kind ``kind`` around ``loc`` (batch ``loc.shape``)."""
    if kind == "continuous":
        return _family(fam, loc, scale)
    if kind == "vector":
        return _family(fam, loc.unsqueeze(-1) * torch.tensor([1.0, -0.5], dtype=loc.dtype), scale).to_event(1)
    if kind == "bernoulli":
        return dist.Bernoulli(logits=loc)
    return dist.Categorical(logits=loc.unsqueeze(-1) * torch.tensor([1.0, 0.0, -1.0], dtype=loc.dtype))


def _summary(v: Tensor, dtype: torch.dtype) -> Tensor:
    """A parent as one number per row (vectors summed, integers cast)."""
    v = v.to(dtype)
    return v.sum(-1) if v.dim() > 1 else v


@_composite
def scms(draw: Any, min_nodes: int = 1, max_nodes: int = 6, families: tuple[str, ...] = FAMILIES,
         links: tuple[str, ...] = LINKS, dtype: torch.dtype = torch.float64,
         kinds: tuple[str, ...] = KINDS) -> SCM:
    """Random SCMs of Pyro mechanisms whose abduction is exact (continuous and vector nodes,
    location-scale families) or a Gumbel-max posterior draw (Bernoulli and 3-class Categorical nodes).

    ``loc_j = b + sum_p w_p * link(p)``; continuous ``x_j = loc_j + scale_j u_j``, vectors
    ``loc_j (1, -1/2) + scale_j u_j``, discrete nodes take ``loc_j`` as logits.
    """
    st = _hypothesis()
    g = draw(dags(min_nodes=min_nodes, max_nodes=max_nodes))
    coef = st.floats(-1.5, 1.5, allow_nan=False, allow_infinity=False)
    for node in g.nodes:
        kind, fam = draw(st.sampled_from(kinds)), draw(st.sampled_from(families))
        scale = torch.tensor(draw(st.floats(0.2, 2.0)), dtype=dtype)
        bias = torch.tensor(draw(coef), dtype=dtype)
        parents = sorted(g.predecessors(node))
        if not parents:
            g.nodes[node]["mechanism"] = _distribution(kind, fam, bias, scale)
            continue
        terms = [(p, draw(coef), draw(st.sampled_from(links))) for p in parents]

        def mechanism(pa: Mapping[str, Tensor], terms: Any = terms, bias: Tensor = bias, scale: Tensor = scale,
                      kind: str = kind, fam: str = fam) -> dist.Distribution:
            loc = bias + sum(w * _link(link, _summary(pa[p], dtype)) for p, w, link in terms)
            return _distribution(kind, fam, loc, scale)
        mechanism.__name__ = kind
        g.nodes[node]["mechanism"] = named_callable(mechanism, parents)
    return SCM(g)


@_composite
def interventions(draw: Any, scm: SCM, max_nodes: int = 2) -> dict[str, Any]:
    """A ``do`` mapping on 1..``max_nodes`` nodes of ``scm``: hard values (a value the node takes in a
    sample, so in support and of its dtype), and on continuous nodes ``Shift(d)`` or a callable
    of :data:`SOFT_FUNCTIONS` (each row's value from that row only)."""
    st = _hypothesis()
    nodes = draw(st.lists(st.sampled_from(scm.nodes), min_size=1, max_size=max_nodes, unique=True))
    sample = scm.sample(2, seed=draw(st.integers(0, 2 ** 16)))
    do: dict[str, Any] = {}
    for v in nodes:
        kinds = ["hard"] if is_discrete(scm, sample, v) else ["hard", "shift", "callable"]
        kind = draw(st.sampled_from(kinds))
        if kind == "hard":
            do[v] = Hard(sample[v][0])
        elif kind == "shift":
            do[v] = Shift(draw(st.floats(-2.0, 2.0, allow_nan=False).filter(lambda d: d != 0.0)))
        else:
            do[v] = Transform(draw(st.sampled_from(SOFT_FUNCTIONS)))
    return do


__all__ = ["FAMILIES", "LINKS", "KINDS", "SOFT_FUNCTIONS", "dags", "scms", "interventions", "named_callable"]
