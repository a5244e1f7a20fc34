"""The abduction–action–prediction engine: a :class:`Plan` built once per query, then executed.

A query (sample, predict, abduct, counterfactual) is planned before any tensor work: which nodes are
recomputed, which need their exogenous noise abducted from the rows, which intervened nodes keep
their factual natural value. Execution then visits the planned nodes once each in topological
order, and asks each node's mechanism for one :class:`~causaldiff.mechanisms.base.Conditional` per
parent set: the one object the engine talks to about a node (its noise, its structural equation and
inverse, its shape, support and dtype, its counterfactual step). The four queries' entries, which
validate, plan and run these over chunks of rows, are :mod:`causaldiff.queries`.

The engine knows mechanisms only through that contract and interventions only through the generic
functions of :mod:`causaldiff.interventions`: it imports no concrete class of either. Every random
draw takes the generator of its block of rows (:mod:`causaldiff.rng`).

Counterfactuals (Pearl's three steps) on an SCM ``M`` that may already carry interventions, under
new interventions ``I``:

1. abduction under ``M`` (its factual parents; a soft intervention already in ``M`` is inverted);
2. action: ``M`` with ``I`` merged over its own interventions (graph surgery for hard ones);
3. prediction of ``I``'s nodes and their descendants only; every other node is the factual tensor.

Steps 1 and 3 of one node are its factual conditional's
:meth:`~causaldiff.mechanisms.base.Conditional.counterfactual` toward its new parents.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import networkx as nx
import torch
from torch import Tensor

from .errors import AbductionError, DataError, InterventionError, NotFittedError
from .interventions import Intervention, intervene, invertible, natural_value
from .mechanisms.base import Abduction, Conditional, Mechanism
from .rng import RowStreams


@dataclass(frozen=True)
class Structure:
    """What a query needs to know of an SCM: bindings, parents before and after surgery, order,
    interventions in force. :class:`~causaldiff.SCM` holds one; the device is its mechanisms'."""

    mechanisms: Mapping[str, Mechanism]
    #: parents in the SCM's own (possibly surgered) graph, sorted
    parents: Mapping[str, tuple[str, ...]]
    #: parents in the graph before any surgery, sorted
    base_parents: Mapping[str, tuple[str, ...]]
    #: topological order of the graph before any surgery (valid for every intervened copy)
    order: tuple[str, ...]
    interventions: Mapping[str, Intervention]
    #: the device of a model whose mechanisms hold no tensors (Pyro callables): ``SCM.to``'s
    idle_device: torch.device = torch.device("cpu")

    @property
    def device(self) -> torch.device:
        """Where the mechanisms' tensors live (the first that holds any), else :attr:`idle_device`."""
        return next((d for m in self.mechanisms.values() if (d := m.device) is not None), self.idle_device)

    @functools.cached_property
    def descendants(self) -> dict[str, frozenset[str]]:
        """Node -> its strict descendants in this (surgered) graph (computed on first use)."""
        return descendants_of(self.parents, self.order)

    @functools.cached_property
    def learnable(self) -> frozenset[str]:
        """The nodes whose mechanism learns from data (the ones a query must find fitted)."""
        return frozenset(v for v, m in self.mechanisms.items() if m.learnable)

    def is_hard(self, node: str) -> bool:
        iv = self.interventions.get(node)
        return iv is not None and iv.cuts_edges

    def merged(self, ivs: Mapping[str, Intervention]) -> "Structure":
        """This structure with ``ivs`` merged over its interventions (graph surgery, no copies of
        the mechanisms; a later intervention on a node replaces an earlier one)."""
        merged = {**self.interventions, **ivs}
        parents = {v: () if (v in merged and merged[v].cuts_edges) else self.base_parents[v]
                   for v in self.order}
        out = Structure(self.mechanisms, parents, self.base_parents, self.order, merged, self.idle_device)
        out.__dict__["learnable"] = self.learnable  # the same mechanisms: computed once per SCM
        return out


def descendants_of(parents: Mapping[str, tuple[str, ...]], order: tuple[str, ...]) -> dict[str, frozenset[str]]:
    """Strict descendants of every node, from a parent map in topological order."""
    children: dict[str, list[str]] = {v: [] for v in order}
    for v in order:
        for p in parents[v]:
            children[p].append(v)
    out: dict[str, frozenset[str]] = {}
    for v in reversed(order):
        acc: set[str] = set()
        for c in children[v]:
            acc.add(c)
            acc |= out[c]
        out[v] = frozenset(acc)
    return out


def structure_of(graph: nx.DiGraph, mechanisms: Mapping[str, Mechanism],
                 base_parents: Mapping[str, tuple[str, ...]], order: tuple[str, ...],
                 interventions: Mapping[str, Intervention]) -> Structure:
    parents = {v: tuple(sorted(graph.predecessors(v))) for v in order}
    return Structure(mechanisms, parents, base_parents, order, dict(interventions))


# ==================================================================================== the plan
@dataclass(frozen=True)
class Plan:
    """What one query computes; built once, before any tensor work."""

    #: the structure prediction runs under (the factual one merged with the query's interventions)
    target: Structure
    #: nodes whose values are computed, in topological order
    recompute: tuple[str, ...]
    #: nodes whose exogenous noise is abducted from the rows (under the factual structure)
    abduct: tuple[str, ...] = ()
    #: intervened nodes whose natural value is the factual one (soft, with unchanged parents)
    keep_natural: frozenset[str] = frozenset()


def plan_sample(structure: Structure) -> Plan:
    return Plan(structure, structure.order)


def plan_predict(structure: Structure, ivs: Mapping[str, Intervention]) -> Plan:
    return Plan(structure.merged(ivs), structure.order)


def plan_abduct(structure: Structure) -> Plan:
    return Plan(structure, (), tuple(v for v in structure.order if not structure.is_hard(v)))


def plan_counterfactual(structure: Structure, ivs: Mapping[str, Intervention]) -> Plan:
    """Recompute the intervened nodes and their descendants; abduct the noise of every recomputed
    node except hard-intervened ones and soft-intervened ones whose parents keep their values."""
    changed = set(ivs)
    for node in ivs:
        changed |= structure.descendants[node]
    recompute = tuple(v for v in structure.order if v in changed)
    keep, abduct = set(), []
    for v in recompute:
        iv = ivs.get(v)
        if iv is not None and (iv.cuts_edges or not any(p in changed for p in structure.parents[v])):
            if not iv.cuts_edges:
                keep.add(v)
            continue
        abduct.append(v)
    return Plan(structure.merged(ivs), recompute, tuple(abduct), frozenset(keep))


# ==================================================================================== execution
class Conditionals:
    """One :class:`Conditional` per node and parent set within a query (built on first use)."""

    def __init__(self, structure: Structure, values: Mapping[str, Tensor], n: int) -> None:
        self.structure, self.values, self.n = structure, values, n
        self._cache: dict[str, Conditional] = {}

    def __call__(self, node: str) -> Conditional:
        cond = self._cache.get(node)
        if cond is None:
            pa = {p: self.values[p] for p in self.structure.parents[node]}
            cond = self._cache[node] = self.structure.mechanisms[node].given(pa, self.n)
        return cond

    def block(self, node: str, rows: slice, m: int) -> Conditional:
        """The node's conditional for one RNG block of these rows (its parents' rows ``rows``)."""
        s = self.structure
        return s.mechanisms[node].given({p: self.values[p][rows] for p in s.parents[node]}, m)

    def release(self, node: str) -> None:
        """Forget a node's conditional once the query no longer needs it (frees its tensors)."""
        self._cache.pop(node, None)


def require_fitted(structure: Structure, nodes: Any) -> None:
    for node in nodes if structure.learnable else ():
        m = structure.mechanisms[node]
        if m.learnable and not m.is_fitted and not structure.is_hard(node):
            raise NotFittedError(f"node {node!r}: {type(m).__name__} is not fitted; call scm.fit(data)")


def check_observed(conds: Conditionals, rows: Mapping[str, Tensor], nodes: Any, what: str) -> None:
    """Each node's rows have the shape and lie in the support its mechanism gives (first bad node
    in topological order is the one named)."""
    for node in nodes:
        conds(node).check(rows[node], what)


def check_carried(structure: Structure, nodes: Any) -> None:
    """Refuse before any work to abduct through an intervention the SCM carries with no inverse."""
    for node in nodes if structure.interventions else ():
        iv = structure.interventions.get(node)
        if iv is not None and not invertible(iv):
            natural_value(iv, node, torch.empty(0))  # raises, naming the node and the intervention


def precheck_counterfactual(conds: Conditionals, rows: Mapping[str, Tensor], nodes: Any, what: str) -> None:
    """Before any work, the rows and the abduction of a counterfactual's abducted ``nodes``, in
    order: a node may defer them to its counterfactual step (cheap set-up) only before the first
    node that did not, so no costly step ever runs before a refusal."""
    check_carried(conds.structure, nodes)
    defer = True
    for node in nodes:
        defer = not conds(node).precheck(rows[node], what, defer=defer) and defer


def precheck_abduction(structure: Structure, conds: Conditionals, nodes: Any) -> None:
    """Refuse before any work if some node cannot be abducted (naming it and why)."""
    require_fitted(structure, nodes)
    check_carried(structure, nodes)
    for node in nodes:
        cond = conds(node)
        if cond.abduction is Abduction.IMPOSSIBLE:
            raise AbductionError(f"node {node!r} cannot be abducted: {cond.why_not_abductable()}")


def _generator(streams: RowStreams | None) -> torch.Generator | None:
    return None if streams is None else streams.single


def _per_block(streams: RowStreams | None, cond: Conditional) -> bool:
    """Whether a chunk of several RNG blocks must draw block by block (a stochastic abduction)."""
    return streams is not None and streams.single is None and cond.abduction is Abduction.STOCHASTIC


def _natural_rows(structure: Structure, rows: Mapping[str, Tensor], node: str) -> Tensor:
    """The node's observed rows, through an intervention the SCM already carries."""
    iv = structure.interventions.get(node)
    return rows[node] if iv is None else natural_value(iv, node, rows[node])


def abduct_nodes(structure: Structure, conds: Conditionals, rows: Mapping[str, Tensor],
                 nodes: Any, streams: RowStreams | None = None) -> dict[str, Tensor]:
    """Exogenous noise of ``nodes`` from their rows under their factual parents."""
    out = {}
    for node in nodes:
        x, cond = _natural_rows(structure, rows, node), conds(node)
        if _per_block(streams, cond):
            out[node] = streams.draw(lambda sl, m, g: conds.block(node, sl, m).abduct(x[sl], g))
        else:
            out[node] = cond.abduct(x, _generator(streams))
    return out


def draw_noise(conds: Conditionals, node: str, streams: RowStreams | None) -> Tensor:
    """The node's exogenous noise for the chunk's rows, each RNG block from its own generator."""
    if streams is None or streams.single is not None:
        return conds(node).sample_noise(_generator(streams))
    return streams.draw(lambda sl, m, g: conds.block(node, sl, m).sample_noise(g))


def check_hard_support(structure: Structure, node: str, iv: Intervention, values: Mapping[str, Tensor],
                       n: int) -> None:
    """A hard value must lie in a *discrete* node's support under its base parents."""
    m = structure.mechanisms[node]
    support = m.support({p: values[p] for p in structure.base_parents[node]}, n)
    if support is not None and support.is_discrete:
        _check_in_support(node, iv, support)


def _check_in_support(node: str, iv: Intervention, support: Any) -> None:
    if not bool(support.check(torch.as_tensor(iv.value)).all()):
        raise InterventionError(f"node {node!r}: intervention value {iv.value!r} is outside the "
                                f"node's support {support}")


def _fixed_bounds(support: Any) -> bool:
    """A discrete support whose bounds are plain numbers (a Categorical's ``0 .. K-1``, Boolean, the
    non-negative integers), not per-row tensors that could change with the parents' values."""
    return bool(getattr(support, "is_discrete", False)) and not any(
        isinstance(getattr(support, b, None), Tensor) for b in ("lower_bound", "upper_bound"))


def probe_hard_support(structure: Structure, node: str, iv: Intervention) -> None:
    """``do`` time: refuse a hard value outside a node's discrete support when that support does not
    depend on its parents' values, from the node's conditional given one row of its ancestors drawn
    from the model (seed 0, its own generator). Skipped (left to the query) when an ancestor is
    learnable (costly, or unfitted) or the probe fails; roots use :func:`check_hard_support`."""
    base, seen, stack = structure.base_parents[node], set(), list(structure.base_parents[node])
    while stack:
        v = stack.pop()
        if v not in seen:
            seen.add(v)
            stack.extend(structure.parents[v])
    if any(structure.mechanisms[v].learnable and not structure.is_hard(v) for v in seen):
        return
    try:
        with torch.no_grad():
            plan = Plan(structure, tuple(v for v in structure.order if v in seen))
            values = execute(plan, 1, streams=RowStreams(0, 0, 1, structure.device))
            support = structure.mechanisms[node].support({p: values[p] for p in base}, 1)
    except Exception:  # noqa: BLE001  (a best-effort probe: the query checks again with the real parents)
        return
    if _fixed_bounds(support):
        _check_in_support(node, iv, support)


def _intervened(target: Structure, conds: Conditionals, node: str, iv: Intervention, natural: Tensor,
                n: int) -> Tensor:
    """A soft intervention's value from the natural one, kept within a discrete node's support."""
    out = intervene(iv, node, natural, n, tuple(natural.shape[1:]), natural.dtype, natural.device)
    support = conds(node).support()
    if support is not None and support.is_discrete and not bool(support.check(out).all()):
        raise InterventionError(f"node {node!r}: {iv!r} moves values outside the node's support {support}")
    return out


def predict_node(plan: Plan, conds: Conditionals, node: str, values: dict[str, Tensor],
                 noise: Mapping[str, Tensor], n: int, ref: Tensor | None,
                 streams: RowStreams | None = None) -> Tensor:
    """One node's value under ``plan.target``; samples the noise it is not given."""
    target = plan.target
    iv = target.interventions.get(node)
    if iv is not None and iv.cuts_edges:
        return _hard_value(target, node, iv, values, n, ref)
    if node in plan.keep_natural:
        natural = ref
    else:
        cond = conds(node)
        u = noise.get(node)
        natural = cond.forward(draw_noise(conds, node, streams)) if u is None else _forward_noise(cond, node, u, n)
    return natural if iv is None else _intervened(target, conds, node, iv, natural, n)


def counterfactual_node(plan: Plan, factual: Conditionals, conds: Conditionals, node: str,
                        rows: Mapping[str, Tensor], streams: RowStreams | None) -> Tensor:
    """An abducted node's counterfactual value: its factual conditional's counterfactual step
    toward its new parents (Pearl's steps 1 and 3), then the intervention in force on it."""
    x, fcond = _natural_rows(factual.structure, rows, node), factual(node)
    new = {p: conds.values[p] for p in plan.target.parents[node]}
    gen = None if streams is None else streams.single
    if gen is None and streams is not None and fcond.abduction is Abduction.STOCHASTIC:
        natural = streams.draw(lambda sl, m, g: factual.block(node, sl, m).counterfactual(
            x[sl], {p: v[sl] for p, v in new.items()}, g))
    else:
        natural = fcond.counterfactual(x, new, gen)
    iv = plan.target.interventions.get(node)
    return natural if iv is None else _intervened(plan.target, conds, node, iv, natural, factual.n)


def _forward_noise(cond: Conditional, node: str, u: Tensor, n: int) -> Tensor:
    """The node's value from noise it is given, refused (naming the node) when the noise's shape
    does not give values of the node's shape (e.g. ``(n, 1)`` noise of a scalar node)."""
    try:
        x = cond.forward(u)
    except torch.cuda.OutOfMemoryError:
        raise
    except RuntimeError as e:
        raise DataError(f"node {node!r} in the noise: noise of shape {tuple(u.shape[1:])} per row does not fit "
                        f"the node's mechanism ({str(e).splitlines()[0]})") from None
    shape = cond.event_shape()
    if x.shape[0] != n or (shape is not None and tuple(x.shape[1:]) != tuple(shape)):
        want = "" if shape is None else f"; the node's values have shape {tuple(shape)}"
        raise DataError(f"node {node!r} in the noise: noise of shape {tuple(u.shape[1:])} per row gives values of "
                        f"shape {tuple(x.shape)} for {n} rows{want}")
    return x


def _hard_value(target: Structure, node: str, iv: Intervention, values: Mapping[str, Tensor], n: int,
                ref: Tensor | None) -> Tensor:
    if ref is not None:
        shape, dtype = tuple(ref.shape[1:]), ref.dtype
    else:
        check_hard_support(target, node, iv, values, n)
        base = target.mechanisms[node].given({p: values[p] for p in target.base_parents[node]}, n)
        shape, dtype = base.event_shape(), base.value_dtype() or _value_dtype(iv.value)
    return intervene(iv, node, None, n, shape, dtype, target.device if ref is None else ref.device).clone()


def _value_dtype(value: Any) -> torch.dtype:
    t = torch.as_tensor(value)
    return t.dtype if t.is_floating_point() else torch.get_default_dtype()


def execute(plan: Plan, n: int, rows: Mapping[str, Tensor] | None = None,
            noise: Mapping[str, Tensor] | None = None, factual: Conditionals | None = None,
            streams: RowStreams | None = None) -> dict[str, Tensor]:
    """Values of every node: the planned ones computed in order, the others taken from ``rows``.
    ``streams``: the generators of these rows' RNG blocks (None: torch's global RNG).

    With ``factual`` (the factual conditionals; every node but the abducted ones already checked),
    each node of ``plan.abduct`` takes its factual conditional's counterfactual step (which checks
    its rows), and conditionals are released as soon as they are used, so a query holds a few
    nodes' tensors at a time rather than every node's.
    """
    values: dict[str, Tensor] = dict(rows or {})
    conds = Conditionals(plan.target, values, n)
    noise = dict(noise or {})
    pending = set(plan.abduct) if factual is not None else set()
    for node in plan.recompute:
        if node in pending:
            values[node] = counterfactual_node(plan, factual, conds, node, rows, streams)
            factual.release(node)
        else:
            ref = rows[node] if rows is not None else None
            values[node] = predict_node(plan, conds, node, values, noise, n, ref, streams)
            noise.pop(node, None)
        conds.release(node)
    return values


__all__ = ["Structure", "Plan", "plan_sample", "plan_predict", "plan_abduct", "plan_counterfactual",
           "Conditionals", "execute", "abduct_nodes", "check_observed", "check_carried", "precheck_abduction",
           "precheck_counterfactual",
           "require_fitted", "check_hard_support", "probe_hard_support", "descendants_of", "structure_of"]
