"""Property testing of counterfactual laws, for this project's tests and for users' own SCMs.

One line checks a user's model::

    from causaldiff.testing import check_counterfactual_laws
    check_counterfactual_laws(scm)          # raises AssertionError naming the law and the node

Hypothesis strategies generate random DAGs (:func:`dags`) and random SCMs with exactly
abductable mechanisms (:func:`scms`) to run the laws over many models::

    @given(scm=scms())
    def test_laws(scm):
        check_counterfactual_laws(scm)

Laws (Pearl; Monteiro et al. 2023 for the image-model vocabulary):

* effectiveness: ``do(X = a)`` yields ``X == a``;
* composition: intervening on ``X`` with its own factual value returns the factual row;
* non-descendants of intervened nodes come back bit-for-bit;
* reversibility: intervening back to the factual value undoes a counterfactual;
* idempotence: ``do(a).do(a) == do(a)``; commutation: ``do(a).do(b) == do(b).do(a)`` on disjoint nodes;
* batch invariance: a batch's counterfactuals equal those of its rows one at a time.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import pyro.distributions as dist
import torch
from hypothesis import strategies as st
from torch import Tensor

from ..interventions import Hard
from ..mechanisms.base import Abduction
from ..scm import SCM

FAMILIES = ("Normal", "Laplace", "Logistic", "Gumbel", "StudentT", "Cauchy")
LINKS = ("linear", "tanh", "sin", "softplus")


# ====================================================================================== strategies
@st.composite
def dags(draw: Any, min_nodes: int = 1, max_nodes: int = 6, edge_probability: float | None = None) -> nx.DiGraph:
    """Random DAGs on nodes ``v0..v{k-1}`` with edges only from lower to higher index."""
    k = draw(st.integers(min_nodes, max_nodes))
    g = nx.DiGraph()
    g.add_nodes_from(f"v{i}" for i in range(k))
    p = edge_probability if edge_probability is not None else draw(st.sampled_from((0.2, 0.5, 0.8)))
    for j in range(k):
        for i in range(j):
            if draw(st.floats(0, 1)) < p:
                g.add_edge(f"v{i}", f"v{j}")
    return g


def named_callable(fn: Any, names: list[str]) -> Any:
    """Give ``fn(**kwargs)`` an explicit keyword signature with ``names`` (as SCM validation wants)."""
    def bound(**kwargs: Tensor) -> Any:
        return fn(kwargs)
    bound.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in names])
    bound.__name__ = getattr(fn, "__name__", "mechanism")
    return bound


def _link(name: str, v: Tensor) -> Tensor:
    return {"linear": lambda t: t, "tanh": torch.tanh, "sin": torch.sin,
            "softplus": torch.nn.functional.softplus}[name](v)


def _family(name: str, loc: Any, scale: Any) -> dist.Distribution:
    if name == "StudentT":
        return dist.StudentT(torch.as_tensor(5.0, dtype=torch.as_tensor(loc).dtype), loc, scale)
    return getattr(dist, name)(loc, scale)


@st.composite
def scms(draw: Any, min_nodes: int = 1, max_nodes: int = 6, families: tuple[str, ...] = FAMILIES,
         links: tuple[str, ...] = LINKS, dtype: torch.dtype = torch.float64) -> SCM:
    """Random SCMs whose mechanisms are exactly abductable location-scale Pyro families.

    ``x_j = loc_j(pa) + scale_j * u_j`` with ``loc_j = b + sum_p w_p * link(p)``.
    """
    g = draw(dags(min_nodes=min_nodes, max_nodes=max_nodes))
    coef = st.floats(-1.5, 1.5, allow_nan=False, allow_infinity=False)
    for node in g.nodes:
        fam = draw(st.sampled_from(families))
        scale = torch.tensor(draw(st.floats(0.2, 2.0)), dtype=dtype)
        bias = torch.tensor(draw(coef), dtype=dtype)
        parents = sorted(g.predecessors(node))
        if not parents:
            g.nodes[node]["mechanism"] = _family(fam, bias, scale)
            continue
        terms = [(p, draw(coef), draw(st.sampled_from(links))) for p in parents]

        def loc_scale(pa: Mapping[str, Tensor], terms: Any = terms, bias: Tensor = bias,
                      scale: Tensor = scale, fam: str = fam) -> dist.Distribution:
            loc = bias + sum(w * _link(link, pa[p]) for p, w, link in terms)
            return _family(fam, loc, scale)
        g.nodes[node]["mechanism"] = named_callable(loc_scale, parents)
    return SCM(g)


# ====================================================================================== the laws
class LawViolation(AssertionError):
    """A counterfactual law does not hold; the message names the law and the node."""


def _close(a: Tensor, b: Tensor, atol: float, rtol: float) -> bool:
    if a.shape != b.shape:
        return False
    if not a.is_floating_point():
        return bool(torch.equal(a, b))
    return bool(torch.allclose(a, b.to(a.dtype), atol=atol, rtol=rtol))


def _maxdiff(a: Tensor, b: Tensor) -> float:
    return float((a.double() - b.double()).abs().max()) if a.shape == b.shape else float("inf")


def check_effectiveness(scm: SCM, data: Mapping[str, Tensor], do: Mapping[str, Any], **kw: Any) -> None:
    """Hard-intervened nodes take exactly their intervention values."""
    cf = scm.counterfactual(data, do=do, **kw)
    for node, value in do.items():
        if isinstance(value, (Hard, Tensor, int, float)):
            v = value.value if isinstance(value, Hard) else value
            expect = torch.as_tensor(v, dtype=cf[node].dtype, device=cf[node].device).expand_as(cf[node])
            if not torch.equal(cf[node], expect):
                raise LawViolation(f"effectiveness: node {node!r} is not its intervention value "
                                   f"(max diff {_maxdiff(cf[node], expect):.3g})")


def check_non_descendants(scm: SCM, data: Mapping[str, Tensor], do: Mapping[str, Any], **kw: Any) -> None:
    """Nodes that are neither intervened nor descendants of intervened nodes are bit-for-bit factual."""
    cf = scm.counterfactual(data, do=do, **kw)
    affected = set(do)
    for node in do:
        affected |= nx.descendants(scm.graph, node)
    for node in scm.nodes:
        if node not in affected and not torch.equal(cf[node], torch.as_tensor(data[node]).to(cf[node].device)):
            raise LawViolation(f"non-descendants: node {node!r} changed although no ancestor was intervened on")


def check_composition(scm: SCM, data: Mapping[str, Tensor], node: str, atol: float = 1e-6,
                      rtol: float = 1e-6, **kw: Any) -> None:
    """``do(node = its factual value)`` returns the factual rows."""
    cf = scm.counterfactual(data, do={node: data[node]}, **kw)
    for v in scm.nodes:
        if not _close(cf[v], data[v], atol, rtol):
            raise LawViolation(f"composition: null intervention on {node!r} changed node {v!r} "
                               f"(max diff {_maxdiff(cf[v], data[v]):.3g})")


def check_reversibility(scm: SCM, data: Mapping[str, Tensor], do: Mapping[str, Any], atol: float = 1e-5,
                        rtol: float = 1e-5, **kw: Any) -> None:
    """Intervening back to the factual values undoes a counterfactual."""
    cf = scm.counterfactual(data, do=do, **kw)
    back = scm.counterfactual(cf, do={k: data[k] for k in do}, **kw)
    for v in scm.nodes:
        if not _close(back[v], data[v], atol, rtol):
            raise LawViolation(f"reversibility: node {v!r} does not return to its factual value after "
                               f"do({sorted(do)}) and back (max diff {_maxdiff(back[v], data[v]):.3g})")


def _same_samples(a: SCM, b: SCM, n: int, seed: int) -> bool:
    sa, sb = a.sample(n, seed=seed), b.sample(n, seed=seed)
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def check_idempotence(scm: SCM, do: Mapping[str, Any], n: int = 8, seed: int = 0) -> None:
    """``do(a).do(a)`` is the same model as ``do(a)``."""
    once, twice = scm.do(do), scm.do(do).do(do)
    if set(once.graph.edges) != set(twice.graph.edges) or not _same_samples(once, twice, n, seed):
        raise LawViolation(f"idempotence: do({sorted(do)}) applied twice differs from once")


def check_commutation(scm: SCM, do_a: Mapping[str, Any], do_b: Mapping[str, Any], n: int = 8,
                      seed: int = 0) -> None:
    """Interventions on disjoint nodes commute."""
    if set(do_a) & set(do_b):
        raise ValueError("commutation is a law of interventions on disjoint nodes")
    ab, ba = scm.do(do_a).do(do_b), scm.do(do_b).do(do_a)
    if set(ab.graph.edges) != set(ba.graph.edges) or not _same_samples(ab, ba, n, seed):
        raise LawViolation(f"commutation: do({sorted(do_a)}) and do({sorted(do_b)}) do not commute")


def check_batch_invariance(scm: SCM, data: Mapping[str, Tensor], do: Mapping[str, Any], atol: float = 1e-6,
                           rtol: float = 1e-6, **kw: Any) -> None:
    """The counterfactuals of a batch equal those of its rows taken one at a time."""
    cf = scm.counterfactual(data, do=do, **kw)
    n = next(iter(data.values())).shape[0]
    for i in range(n):  # a test of the vectorised engine, so one row at a time on purpose
        row = {k: v[i:i + 1] for k, v in data.items()}
        row_do = {k: (v[i:i + 1] if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == n else v)
                  for k, v in do.items()}
        one = scm.counterfactual(row, do=row_do, **kw)
        for v in scm.nodes:
            if not _close(one[v][0], cf[v][i], atol, rtol):
                raise LawViolation(f"batch invariance: row {i} of node {v!r} differs between the batch and "
                                   f"the single row (max diff {_maxdiff(one[v][0], cf[v][i]):.3g})")


@dataclass
class LawReport:
    """Which laws were checked on which interventions."""

    checked: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"LawReport({len(self.checked)} checks passed)\n" + "\n".join(f"  ok  {c}" for c in self.checked)


def check_counterfactual_laws(scm: SCM, data: Mapping[str, Tensor] | None = None, *, n: int = 8,
                              seed: int = 0, atol: float = 1e-5, rtol: float = 1e-5,
                              batch_invariance: bool = True) -> LawReport:
    """Check every law on ``scm`` (rows sampled from it if ``data`` is None); raise on a violation.

    Interventions are drawn from the data itself (another row's value), so they are in support.
    Nodes whose abduction is stochastic are checked for the laws that hold for them.
    """
    data = scm.sample(n, seed=seed) if data is None else data
    n = next(iter(data.values())).shape[0]
    report = LawReport()
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    deterministic = all(scm.mechanisms[v].abduction({p: data[p] for p in scm.parents(v)})
                        in (Abduction.EXACT, Abduction.APPROXIMATE) for v in scm.nodes)
    nodes = list(scm.nodes)
    for node in nodes:
        do = {node: data[node][perm]}
        check_effectiveness(scm, data, do, seed=seed)
        check_non_descendants(scm, data, do, seed=seed)
        check_composition(scm, data, node, atol=atol, rtol=rtol, seed=seed)
        check_idempotence(scm, do, n=n, seed=seed)
        report.checked += [f"effectiveness do({node})", f"non-descendants do({node})",
                           f"composition do({node})", f"idempotence do({node})"]
        if deterministic:
            check_reversibility(scm, data, do, atol=atol, rtol=rtol)
            report.checked.append(f"reversibility do({node})")
            if batch_invariance:
                check_batch_invariance(scm, data, do, atol=atol, rtol=rtol)
                report.checked.append(f"batch invariance do({node})")
    for a, b in zip(nodes, nodes[1:]):
        check_commutation(scm, {a: data[a][perm]}, {b: data[b][perm.flip(0)]}, n=n, seed=seed)
        report.checked.append(f"commutation do({a}), do({b})")
    if len(nodes) > 1:
        pair = {nodes[0]: data[nodes[0]][perm], nodes[-1]: data[nodes[-1]][perm]}
        check_effectiveness(scm, data, pair, seed=seed)
        check_non_descendants(scm, data, pair, seed=seed)
        report.checked += [f"effectiveness do({nodes[0]}, {nodes[-1]})"]
    return report


__all__ = ["dags", "scms", "named_callable", "LawViolation", "LawReport", "check_counterfactual_laws",
           "check_effectiveness", "check_non_descendants", "check_composition", "check_reversibility",
           "check_idempotence", "check_commutation", "check_batch_invariance", "FAMILIES", "LINKS"]
