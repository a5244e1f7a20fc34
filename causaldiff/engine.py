"""The abduction–action–prediction engine: a :class:`Plan` built once per query, then executed.

A query (sample, predict, abduct, counterfactual) is planned before any tensor work: which nodes are
recomputed, which need their exogenous noise abducted from the rows, which intervened nodes keep
their factual natural value. Execution then visits the planned nodes once each in topological
order, and asks each node's mechanism for one :class:`~causaldiff.mechanisms.base.Conditional` per
parent set (a Pyro callable builds its distribution once per query and node, not once per step).

The engine knows mechanisms only through the base contract and interventions only through their
own methods (``cuts_edges``, ``apply``, ``invert``): it imports no concrete class of either.

Counterfactuals (Pearl's three steps) on an SCM ``M`` that may already carry interventions, under
new interventions ``I``:

1. abduction under ``M`` (its factual parents; a soft intervention already in ``M`` is inverted);
2. action: ``M`` with ``I`` merged over its own interventions (graph surgery for hard ones);
3. prediction of ``I``'s nodes and their descendants only; every other node is the factual tensor.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import networkx as nx
import torch
from torch import Tensor
from torch.distributions import constraints

from .errors import AbductionError, DataError, InterventionError, NotFittedError
from .interventions import Intervention
from .mechanisms.base import Abduction, Conditional, Mechanism, check_event_shape
from .rng import RowStreams, seeded


@dataclass(frozen=True)
class Structure:
    """What a query needs to know of an SCM: bindings, parents before and after surgery, order,
    interventions in force, device. :class:`~causaldiff.SCM` holds one."""

    mechanisms: Mapping[str, Mechanism]
    #: parents in the SCM's own (possibly surgered) graph, sorted
    parents: Mapping[str, tuple[str, ...]]
    #: parents in the graph before any surgery, sorted
    base_parents: Mapping[str, tuple[str, ...]]
    #: topological order of the graph before any surgery (valid for every intervened copy)
    order: tuple[str, ...]
    interventions: Mapping[str, Intervention]
    device: torch.device

    @functools.cached_property
    def descendants(self) -> dict[str, frozenset[str]]:
        """Node -> its strict descendants in this (surgered) graph (computed on first use)."""
        return descendants_of(self.parents, self.order)

    def is_hard(self, node: str) -> bool:
        iv = self.interventions.get(node)
        return iv is not None and iv.cuts_edges

    def merged(self, ivs: Mapping[str, Intervention]) -> "Structure":
        """This structure with ``ivs`` merged over its interventions (graph surgery, no copies of
        the mechanisms; a later intervention on a node replaces an earlier one)."""
        merged = {**self.interventions, **ivs}
        parents = {v: () if (v in merged and merged[v].cuts_edges) else self.base_parents[v]
                   for v in self.order}
        return Structure(self.mechanisms, parents, self.base_parents, self.order, merged, self.device)


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
                 interventions: Mapping[str, Intervention], device: torch.device) -> Structure:
    parents = {v: tuple(sorted(graph.predecessors(v))) for v in order}
    return Structure(mechanisms, parents, base_parents, order, dict(interventions), device)


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
    #: abducted nodes whose factual and counterfactual conditionals are built together
    #: (``Mechanism.given_pair``) and whose rows are checked when the node is reached
    paired: frozenset[str] = frozenset()


def plan_sample(structure: Structure) -> Plan:
    return Plan(structure, structure.order)


def plan_predict(structure: Structure, ivs: Mapping[str, Intervention]) -> Plan:
    return Plan(structure.merged(ivs), structure.order)


def plan_abduct(structure: Structure) -> Plan:
    return Plan(structure, (), tuple(v for v in structure.order if not structure.is_hard(v)))


def plan_counterfactual(structure: Structure, ivs: Mapping[str, Intervention], n: int | None = None) -> Plan:
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
    return Plan(structure.merged(ivs), recompute, tuple(abduct), frozenset(keep), _paired(structure, abduct, n))


#: batches up to this many rows build a pairing node's two conditionals in one call: there the set-up
#: per call dominates; above it stacking the parents would only copy them
PAIR_MAX_ROWS = 4096


def _paired(structure: Structure, abduct: list[str], n: int | None) -> frozenset[str]:
    """The abducted nodes that pair (cheap set-up), up to the first that does not: a node after a
    non-pairing (possibly costly) one is checked before any work, like that one."""
    out: set[str] = set()
    if n is None or n > PAIR_MAX_ROWS:  # the batch size unknown, or large: no pairing
        return frozenset()
    for v in abduct:
        if not structure.mechanisms[v].pairs():
            break
        out.add(v)
    return frozenset(out)


# ==================================================================================== execution
_validation_lock = threading.Lock()
_validation_depth = 0
_validation_saved = True


@contextmanager
def distribution_checks_off() -> Iterator[None]:
    """Turn off torch's argument validation of the distributions mechanisms build, for the span of a
    query: the engine validates rows, noise and interventions itself, and validation would cost
    two constraint checks (and host syncs) per node and parent set. Reentrant and thread-safe: the
    default is restored when the last query running in any thread ends."""
    global _validation_depth, _validation_saved
    with _validation_lock:
        if _validation_depth == 0:
            _validation_saved = torch.distributions.Distribution._validate_args
            torch.distributions.Distribution.set_default_validate_args(False)
        _validation_depth += 1
    try:
        yield
    finally:
        with _validation_lock:
            _validation_depth -= 1
            if _validation_depth == 0:
                torch.distributions.Distribution.set_default_validate_args(_validation_saved)


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

    def put(self, node: str, cond: Conditional) -> None:
        """Use ``cond`` as the node's conditional (one built together with another: ``given_pair``)."""
        self._cache[node] = cond

    def release(self, node: str) -> None:
        """Forget a node's conditional once the query no longer needs it (frees its tensors)."""
        self._cache.pop(node, None)


def require_fitted(structure: Structure, nodes: Any) -> None:
    for node in nodes:
        m = structure.mechanisms[node]
        if m.learnable and not m.is_fitted and not structure.is_hard(node):
            raise NotFittedError(f"node {node!r}: {type(m).__name__} is not fitted; call scm.fit(data)")


def check_observed(conds: Conditionals, rows: Mapping[str, Tensor], nodes: Any, what: str) -> None:
    """Each node's rows have the shape and lie in the support its mechanism gives (first bad node
    in topological order is the one named)."""
    for node in nodes:
        _check_rows_of(node, conds(node), rows[node], what)


def _check_rows_of(node: str, cond: Conditional, x: Tensor, what: str) -> None:
    shape = cond.event_shape()
    if shape is not None:
        check_event_shape(node, x, shape, what)
    support = cond.support()
    if _checkable(support) and not bool(support.check(x).all()):
        raise DataError(f"node {node!r} in {what}: values outside the mechanism's support {support}")


def _checkable(support: Any) -> bool:
    """Whether a support constrains finite rows at all (the rows were checked finite already)."""
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support is not None and support is not constraints.real


def precheck_abduction(structure: Structure, conds: Conditionals, nodes: Any) -> None:
    """Refuse before any work if some node cannot be abducted (naming it and why)."""
    require_fitted(structure, nodes)
    for node in nodes:
        _check_abductable(structure, node, conds(node))


def _check_abductable(structure: Structure, node: str, cond: Conditional) -> None:
    iv = structure.interventions.get(node)
    if iv is not None and not iv.invertible:
        raise AbductionError(f"node {node!r}: cannot abduct through the {iv.label} intervention "
                             f"{iv!r} this SCM already carries (it has no known inverse)")
    if cond.abduction is Abduction.IMPOSSIBLE:
        raise AbductionError(f"node {node!r} cannot be abducted: {cond.why_not_abductable()}")


def abduct_nodes(structure: Structure, conds: Conditionals, rows: Mapping[str, Tensor],
                 nodes: Any, streams: RowStreams | None = None) -> dict[str, Tensor]:
    """Exogenous noise of ``nodes`` from their rows under their factual parents."""
    return {node: _abduct(structure, conds, rows, node, streams) for node in nodes}


def _abduct(structure: Structure, conds: Conditionals, rows: Mapping[str, Tensor], node: str,
            streams: RowStreams | None = None, cond: Conditional | None = None) -> Tensor:
    x = rows[node]
    iv = structure.interventions.get(node)
    if iv is not None:  # an intervention the SCM already carries: its natural value is abducted
        x = iv.invert(node, x)
    cond = conds(node) if cond is None else cond
    if streams is None or streams.single or cond.abduction is not Abduction.STOCHASTIC:
        return cond.abduct(x)
    return streams.draw(lambda sl, m: _block_conditional(conds, node, sl, m).abduct(x[sl]))


def _block_conditional(conds: "Conditionals", node: str, rows: slice, m: int) -> Conditional:
    """The node's conditional for one RNG block of the chunk (its parents' rows ``rows``)."""
    s = conds.structure
    return s.mechanisms[node].given({p: conds.values[p][rows] for p in s.parents[node]}, m)


def draw_noise(conds: "Conditionals", node: str, streams: RowStreams | None) -> Tensor:
    """The node's exogenous noise for the chunk's rows, each RNG block in its own stream."""
    if streams is None or streams.single:
        return conds(node).sample_noise()
    return streams.draw(lambda sl, m: _block_conditional(conds, node, sl, m).sample_noise())


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
    from the model (seeded, the caller's RNG untouched). Skipped (left to the query) when an
    ancestor is learnable (costly, or unfitted) or the probe fails; roots use
    :func:`check_hard_support` directly."""
    base, seen, stack = structure.base_parents[node], set(), list(structure.base_parents[node])
    while stack:
        v = stack.pop()
        if v not in seen:
            seen.add(v)
            stack.extend(structure.parents[v])
    if any(structure.mechanisms[v].learnable and not structure.is_hard(v) for v in seen):
        return
    try:
        with seeded(0), torch.no_grad(), distribution_checks_off():
            values = execute(Plan(structure, tuple(v for v in structure.order if v in seen)), 1)
            support = structure.mechanisms[node].support({p: values[p] for p in base}, 1)
    except Exception:  # noqa: BLE001  (a best-effort probe: the query checks again with the real parents)
        return
    if _fixed_bounds(support):
        _check_in_support(node, iv, support)


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
    if iv is None:
        return natural
    out = iv.apply(node, natural, n, tuple(natural.shape[1:]), natural.dtype, target.device)
    support = conds(node).support()
    if support is not None and support.is_discrete and not bool(support.check(out).all()):
        raise InterventionError(f"node {node!r}: {iv!r} moves values outside the node's support {support}")
    return out


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
    return iv.apply(node, None, n, shape, dtype, target.device).clone()


def _value_dtype(value: Any) -> torch.dtype:
    t = torch.as_tensor(value)
    return t.dtype if t.is_floating_point() else torch.get_default_dtype()


def _pair(plan: Plan, factual: Conditionals, conds: Conditionals, node: str, n: int) -> Conditional | Tensor:
    """Build a paired node's factual and counterfactual conditionals together, then check its rows
    and its abduction as :func:`check_observed` and :func:`precheck_abduction` would have. Returns
    the factual conditional, or the node's counterfactual values when its mechanism computes them
    in one step (:meth:`~causaldiff.mechanisms.base.Mechanism.transport`: no intervention on it)."""
    fs, fv, cv = factual.structure, factual.values, conds.values
    require_fitted(fs, (node,))
    f_pa, cf_pa = {p: fv[p] for p in fs.parents[node]}, {p: cv[p] for p in plan.target.parents[node]}
    mechanism = plan.target.mechanisms[node]
    if node in plan.target.interventions:  # the factual ones merged with the query's
        pair = mechanism.given_pair(f_pa, cf_pa, n)
    else:
        pair = mechanism.transport(f_pa, cf_pa, fv[node], n)
        if isinstance(pair, Tensor):
            return pair
    if pair is None:
        fcond = factual(node)
    else:
        fcond = pair[0]
        factual.put(node, fcond)
        conds.put(node, pair[1])
    _check_rows_of(node, fcond, fv[node], "the factual rows")
    _check_abductable(fs, node, fcond)
    return fcond


def execute(plan: Plan, n: int, rows: Mapping[str, Tensor] | None = None,
            noise: Mapping[str, Tensor] | None = None, factual: Conditionals | None = None,
            streams: RowStreams | None = None) -> dict[str, Tensor]:
    """Values of every node: the planned ones computed in order, the others taken from ``rows``.
    ``streams``: the RNG blocks of these rows (None: draw from the global RNG as it stands).

    With ``factual`` (the factual conditionals, already checked), each node of ``plan.abduct`` is
    abducted just before it is predicted, and its conditionals are released as soon as they are
    used, so a query holds a few nodes' tensors at a time rather than every node's.
    """
    values: dict[str, Tensor] = dict(rows or {})
    conds = Conditionals(plan.target, values, n)
    noise = dict(noise or {})
    pending = set(plan.abduct) if factual is not None else set()
    for node in plan.recompute:
        fcond = _pair(plan, factual, conds, node, n) if factual is not None and node in plan.paired else None
        if isinstance(fcond, Tensor):  # computed in one step
            values[node] = fcond
            continue
        if node in pending:
            noise[node] = _abduct(factual.structure, factual, rows, node, streams, fcond)
            factual.release(node)
        ref = rows[node] if rows is not None else None
        values[node] = predict_node(plan, conds, node, values, noise, n, ref, streams)
        conds.release(node)
        noise.pop(node, None)
    return values


__all__ = ["Structure", "Plan", "plan_sample", "plan_predict", "plan_abduct", "plan_counterfactual",
           "Conditionals", "execute", "abduct_nodes", "check_observed", "precheck_abduction",
           "require_fitted", "check_hard_support", "probe_hard_support", "descendants_of", "structure_of"]
