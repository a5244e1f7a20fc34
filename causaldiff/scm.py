"""The structural causal model: validation, bindings, ``do()`` and the public queries.

Conventions
-----------
* Nodes are strings; values are batch-first tensors: ``(n,)`` for scalar nodes, ``(n, *shape)``
  otherwise. Categorical nodes hold ``torch.long`` values.
* **Parent order** is ``sorted(parents)`` (lexicographic by name) everywhere: neural mechanisms
  concatenate parents in that order and record it at fit time.
* **Topological order** is networkx's lexicographical topological sort of the graph *before* any
  surgery, so it stays valid (and the same) for every intervened copy.
* Hard interventions cut the node's incoming edges (graph surgery); :class:`~causaldiff.Shift` and
  callables are soft: the node keeps its parents and its would-be value is transformed.

The SCM validates and holds the model and parses ``do``; each query is one entry of
:mod:`causaldiff.queries` (validation, plan, chunked execution by :mod:`causaldiff.engine`). The
SCM's device is its mechanisms' (:attr:`SCM.device`), so copies sharing them agree on it.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

import networkx as nx
import pyro
import torch
import torch.distributions as tdist
from torch import Tensor

from . import engine, queries
from .devices import check_device
from .errors import DataError, GraphError, InterventionError
from .frames import accepts_frames
from .interventions import Intervention, as_intervention
from .mechanisms.base import Mechanism
from .mechanisms.moves import Move
from .mechanisms.pyro import PyroMechanism
from .serialization import read_scm, save_scm

Rows = Mapping[str, Tensor]


class Samples(dict):
    """A ``dict[str, Tensor]`` of batch-first values that says what it holds when printed."""

    def __init__(self, values: Mapping[str, Tensor], query: str = "",
                 interventions: Mapping[str, Intervention] | None = None):
        super().__init__(values)
        self._query, self._interventions = query, interventions

    @property
    def query(self) -> str:
        """The query that produced these values, e.g. ``counterfactual do(x=Hard(1.0))``."""
        return self._query + _fmt_do(self._interventions or {})

    @property
    def n(self) -> int:
        return next(iter(self.values())).shape[0] if self else 0

    def __repr__(self) -> str:
        """The query, each node's shape and dtype (with mean and std for vector and image nodes),
        then the first rows of the scalar nodes, as a DataFrame's head shows them."""
        lines = [f"Samples({self.query + ', ' if self.query else ''}n={self.n})"]
        for k, v in self.items():
            desc = f"{tuple(v.shape)} {str(v.dtype).replace('torch.', '')}"
            if v.dim() > 1 and v.is_floating_point() and v.numel():
                desc += f"  mean {v.float().mean().item():.4g}  std {v.float().std().item() if v.numel() > 1 else 0.0:.4g}"
            lines.append(f"  {k}: {desc}")
        scalar = {k: v for k, v in self.items() if v.dim() == 1}
        if scalar and self.n:
            lines += _head(scalar, min(HEAD_ROWS, self.n), self.n)
        return "\n".join(lines)


#: rows a printed :class:`Samples` shows
HEAD_ROWS = 5


def _head(columns: Mapping[str, Tensor], m: int, n: int) -> list[str]:
    """The first ``m`` rows of scalar columns as right-aligned text lines, row numbers first."""
    cells = [[""] + list(columns)] + [
        [str(i)] + [f"{v[i].item():.4g}" if v.is_floating_point() else str(v[i].item()) for v in columns.values()]
        for i in range(m)]
    widths = [max(len(row[j]) for row in cells) for j in range(len(cells[0]))]
    title = f"first {m} of {n} rows:" if m < n else f"{n} rows:"
    return [title] + ["  " + "  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]


def _bind(node: str, spec: Any) -> Mechanism:
    if isinstance(spec, Mechanism):
        return spec
    if isinstance(spec, tdist.Distribution) or callable(spec):
        return PyroMechanism(spec)
    raise GraphError(f"node {node!r}: mechanism must be a Pyro distribution, a callable returning one, "
                     f"or a causaldiff Mechanism; got {type(spec).__name__}")


def _check_graph(graph: Any) -> None:
    if not isinstance(graph, nx.DiGraph) or graph.is_multigraph():
        raise GraphError(f"the causal graph must be a networkx.DiGraph, got {type(graph).__name__}")
    if graph.number_of_nodes() == 0:
        raise GraphError("the causal graph has no nodes; an SCM needs at least one")
    bad = [n for n in graph.nodes if not isinstance(n, str) or not n]
    if bad:
        raise GraphError(f"node names must be non-empty strings; got {bad[0]!r}")
    loops = list(nx.selfloop_edges(graph))
    if loops:
        raise GraphError(f"node {loops[0][0]!r} has a self-loop; a causal graph must be acyclic")
    if not nx.is_directed_acyclic_graph(graph):
        cycle = nx.find_cycle(graph)
        raise GraphError(f"the graph has a cycle: {' -> '.join(u for u, _ in cycle)} -> {cycle[0][0]}")


def _bind_all(graph: nx.DiGraph, mechanisms: Mapping[str, Any]) -> dict[str, Mechanism]:
    unknown = sorted(set(mechanisms) - set(graph.nodes))
    if unknown:
        raise GraphError(f"mechanisms given for unknown node(s) {unknown}; nodes are {sorted(graph.nodes)}")
    bound: dict[str, Mechanism] = {}
    seen: dict[int, str] = {}
    for node in graph.nodes:
        spec = mechanisms.get(node, graph.nodes[node].get("mechanism"))
        if spec is None:
            raise GraphError(f"node {node!r} is not bound to a mechanism: set "
                             f"graph.nodes[{node!r}]['mechanism'] or pass mechanisms={{{node!r}: ...}}")
        m = bound[node] = _bind(node, spec)
        if id(m) in seen:
            raise GraphError(f"nodes {seen[id(m)]!r} and {node!r} share one mechanism object; "
                             "bind a separate instance to each node")
        seen[id(m)] = node
    return bound


class SCM:
    """A structural causal model over a networkx DAG whose nodes are bound to mechanisms.

    >>> g = nx.DiGraph([("x", "y")])
    >>> g.nodes["x"]["mechanism"] = dist.Normal(0.0, 1.0)
    >>> g.nodes["y"]["mechanism"] = lambda x: dist.Normal(2.0 * x, 0.5)
    >>> scm = SCM(g)
    """

    def __init__(self, graph: nx.DiGraph, mechanisms: Mapping[str, Any] | None = None):
        _check_graph(graph)
        bound = _bind_all(graph, dict(mechanisms or {}))
        parents = {n: tuple(sorted(graph.predecessors(n))) for n in graph.nodes}
        for node, m in bound.items():
            m.check_binding(node, parents[node])  # every binding checked before anything is set
        g = graph.copy()
        for node, m in bound.items():
            g.nodes[node]["mechanism"] = m
        order = tuple(nx.lexicographical_topological_sort(g))
        self._init(nx.freeze(g), engine.structure_of(g, bound, parents, order, {}))
        self._categories: dict[str, tuple[Any, ...]] = {}

    def _init(self, graph: nx.DiGraph, structure: engine.Structure) -> None:
        self._graph, self._s = graph, structure

    @classmethod
    def _surgered(cls, base: "SCM", ivs: Mapping[str, Intervention]) -> "SCM":
        """A copy of ``base`` under ``ivs`` (merged over its own): no re-validation of bindings."""
        s = base._s.merged(ivs)
        g = nx.DiGraph(base._graph)
        g.remove_edges_from(list(g.edges))
        g.add_edges_from((p, v) for v in s.order for p in s.parents[v])
        new = cls.__new__(cls)
        new._init(nx.freeze(g), s)
        new._categories = base._categories  # shared: a later fit's labels hold for every copy
        return new

    # ------------------------------------------------------------------------------ introspection
    @property
    def graph(self) -> nx.DiGraph:
        """The (frozen) causal graph; intervened nodes have lost their incoming edges."""
        return self._graph

    @property
    def nodes(self) -> tuple[str, ...]:
        """Nodes in topological order."""
        return self._s.order

    @property
    def mechanisms(self) -> dict[str, Mechanism]:
        return dict(self._s.mechanisms)

    @property
    def interventions(self) -> dict[str, Intervention]:
        return dict(self._s.interventions)

    @property
    def device(self) -> torch.device:
        """Where the mechanisms live (and queries run): the first mechanism holding tensors, else the CPU."""
        return self._s.device

    @property
    def categories(self) -> dict[str, tuple[Any, ...]]:
        """Each categorical column's labels in code order, recorded by the first ``fit`` on a
        DataFrame holding it (and saved by :meth:`save`): later frames are read by label in this
        order (:mod:`causaldiff.frames`)."""
        return dict(self._categories)

    def _record_categories(self, labels: Mapping[str, tuple[Any, ...]]) -> None:
        for node, order in labels.items():
            self._categories.setdefault(node, order)

    def parents(self, node: str) -> tuple[str, ...]:
        """The node's parents in the fixed (sorted) order."""
        self._require_node(node, "parents")
        return self._s.parents[node]

    def _require_node(self, node: Any, where: str) -> None:
        if not isinstance(node, str) or node not in self._s.mechanisms:
            raise DataError(f"unknown node {node!r} in {where}; the SCM's nodes are {list(self.nodes)}")

    def __repr__(self) -> str:
        lines = [f"SCM({len(self.nodes)} nodes, {self._graph.number_of_edges()} edges)"]
        for node in self.nodes:
            pa = ", ".join(self._s.parents[node])
            iv = self._s.interventions.get(node)
            lines.append(f"  {node}({pa}): {self._s.mechanisms[node]!r}" + (f"  <- do {iv!r}" if iv else ""))
        return "\n".join(lines)

    # ------------------------------------------------------------------------------ action
    def _parse_do(self, do: Mapping[str, Any] | None, probe: bool = True) -> dict[str, Intervention]:
        """Validated, snapshotted interventions; hard values outside a discrete support are refused
        here for roots, and (``probe``) for nodes whose support does not depend on their parents
        (:func:`causaldiff.engine.probe_hard_support`)."""
        if do is None:
            return {}
        if not isinstance(do, Mapping):
            raise InterventionError(f"`do` must map node names to interventions, got {type(do).__name__}")
        out = {}
        for node, value in do.items():
            if node not in self._s.mechanisms:
                raise InterventionError(f"cannot intervene on unknown node {node!r}; the SCM's nodes are "
                                        f"{list(self.nodes)}")
            out[node] = iv = as_intervention(node, value)
            if iv.cuts_edges and not self._s.base_parents[node]:
                engine.check_hard_support(self._s, node, iv, {}, 1)  # roots: checked at do time
            elif iv.cuts_edges and probe:
                engine.probe_hard_support(self._s, node, iv)
        return out

    def do(self, interventions: Mapping[str, Any]) -> "SCM":
        """Graph surgery: a new SCM with the interventions applied; ``self`` is untouched."""
        return SCM._surgered(self, self._parse_do(interventions))

    def with_mechanisms(self, mechanisms: Mapping[str, Any]) -> "SCM":
        """A new SCM with some nodes bound to other mechanisms (e.g. ``m.with_inference(...)``);
        the graph and interventions are kept, ``self`` is untouched."""
        if self._s.interventions:
            raise GraphError("rebind mechanisms before intervening (this SCM carries interventions on "
                             f"{sorted(self._s.interventions)})")
        return SCM(self._graph, {**self._s.mechanisms, **dict(mechanisms)})

    # ------------------------------------------------------------------------------ queries
    @accepts_frames
    def sample(self, n: int, *, seed: int | None = None, batch_size: int | None = None) -> Samples:
        """``n`` draws from the model (observational, or interventional on an intervened SCM).

        ``batch_size``: rows per chunk (memory grows with it, not with ``n``); the same ``seed``
        gives the same rows whatever it is, in any thread (see :mod:`causaldiff.rng`). ``n`` above
        :data:`~causaldiff.limits.MAX_ROWS_PER_CALL` needs ``batch_size`` (and stays within
        :data:`~causaldiff.limits.MAX_ROWS`); every query has the same bounds on its rows.
        ``seed``: an integer (a float, a bool, a string is refused); queries in several threads
        run at the same time and give the rows they give alone."""
        return Samples(queries.sample(self._s, n, seed=seed, batch_size=batch_size), "sample",
                       self._s.interventions)

    @accepts_frames
    def interventional_samples(self, n: int, do: Mapping[str, Any], *, seed: int | None = None,
                               batch_size: int | None = None) -> Samples:
        """``n`` draws from ``P(V | do(...))``."""
        return self.do(do).sample(n, seed=seed, batch_size=batch_size)

    @accepts_frames
    def predict(self, noise: Rows, do: Mapping[str, Any] | None = None, *, seed: int | None = None,
                batch_size: int | None = None) -> Samples:
        """Push exogenous noise through the (intervened) model: every node is recomputed."""
        values, plan = queries.predict(self._s, noise, self._parse_do(do), seed=seed, batch_size=batch_size)
        return Samples(values, "predict", plan.target.interventions)

    @accepts_frames
    def abduct(self, data: Rows, *, seed: int | None = None, batch_size: int | None = None) -> Samples:
        """Exogenous noise of every (non hard-intervened) node given observed rows."""
        return Samples(queries.abduct(self._s, data, seed=seed, batch_size=batch_size), "abducted noise")

    @accepts_frames
    def counterfactual(self, factual: Rows, do: Mapping[str, Any], *, seed: int | None = None,
                       batch_size: int | None = None) -> Samples:
        """What each factual row would have been under ``do`` (Pearl's three steps).

        Only the intervened nodes and their descendants are recomputed; every other node is the
        factual tensor itself. ``seed`` fixes stochastic abduction (Gumbel-max nodes);
        ``batch_size`` bounds the rows computed at once (results do not depend on it).
        """
        ivs = self._parse_do(do, probe=False)  # checked by the query against the factual parents
        values = queries.counterfactual(self._s, factual, ivs, seed=seed, batch_size=batch_size)
        return Samples(values, "counterfactual", ivs)

    # ------------------------------------------------------------------------------ learning
    @accepts_frames
    def fit(self, data: Rows, *, nodes: Any = None) -> "SCM":
        """Fit every learnable mechanism (or those of ``nodes``) on its own, from its node's and its
        parents' columns. All or nothing: each node trains a copy of its mechanism (a network you
        passed is copied, not trained in place), and the copies replace the mechanisms' state only
        once every node has trained; an error or a KeyboardInterrupt leaves every mechanism as it was."""
        rows, n = queries.check_columns(self._s, data, None, "the training rows", batch_size=1)  # minibatches: MAX_ROWS only
        nodes = self._fit_nodes(nodes)
        learn = [v for v in self.nodes if self._s.mechanisms[v].learnable and not self._s.is_hard(v)]
        if learn and n < 2:
            raise DataError(f"fit needs at least 2 training rows, got {n} (learnable node(s) {learn})")
        staged = {}
        for node in self.nodes:
            m = self._s.mechanisms[node]
            if m.learnable and not self._s.is_hard(node) and (nodes is None or node in nodes):
                pa = {p: rows[p] for p in self._s.parents[node]}
                staged[node] = new = copy.deepcopy(m)
                new.fit(rows[node], pa, parent_order=self._s.parents[node], desc=f"fit {node}")
        for node, new in staged.items():
            _commit(self._s.mechanisms[node], new)
        return self

    def _fit_nodes(self, nodes: Any) -> list[str] | None:
        """``fit(nodes=...)``: None, or a list (tuple, set) of known node names; a str is one name,
        not a list of them, and is refused like any other non-collection."""
        if nodes is None:
            return None
        if isinstance(nodes, (str, bytes, Mapping)) or not isinstance(nodes, (list, tuple, set, frozenset)):
            raise DataError(f"fit(nodes=...) takes a list of node names, got {type(nodes).__name__} {nodes!r}")
        for node in nodes:
            self._require_node(node, "fit(nodes=...)")
        return list(nodes)

    def to(self, device: torch.device | str) -> "SCM":
        """Move every mechanism to ``device``; later queries run there, and in every SCM sharing
        these mechanisms (``do`` copies, the SCM a copy was made from). All or nothing: the device
        is checked first (:func:`~causaldiff.devices.check_device`), every mechanism's tensors are
        copied there, and only then assigned; a failure leaves every weight where it was."""
        move = Move(check_device(device, "scm.to"))
        for m in self._s.mechanisms.values():
            m.stage_to(move)
        move.commit()
        self._s = dataclasses.replace(self._s, idle_device=move.device)
        return self

    # ------------------------------------------------------------------------------ pyro interop
    def model(self, n: int = 1) -> dict[str, Tensor]:
        """A Pyro model with one sample site per node: pass ``scm.model`` (uncalled) to
        ``pyro.poutine.do`` / ``condition`` or to Pyro inference; calling it runs the model once.

        Nodes whose mechanism has no tractable density are ``pyro.deterministic`` sites.
        """
        plan = engine.plan_sample(self._s)
        values: dict[str, Tensor] = {}
        conds = engine.Conditionals(self._s, values, n)
        with pyro.plate("rows", n):
            for node in self.nodes:
                iv = self._s.interventions.get(node)
                pa = {p: values[p] for p in self._s.parents[node]}
                d = None if iv is not None else self._s.mechanisms[node].pyro_distribution(pa, n)
                if d is None:
                    x = engine.predict_node(plan, conds, node, values, {}, n, None)
                    values[node] = pyro.deterministic(node, x, event_dim=x.dim() - 1)
                else:
                    values[node] = pyro.sample(node, d)
        return values

    # ------------------------------------------------------------------------------ persistence
    def save(self, path: Any) -> None:
        """Save graph and learnable mechanisms (JSON config + safetensors; no pickled code)."""
        save_scm(self, path)


def _commit(mechanism: Mechanism, trained: Mechanism) -> None:
    """Give ``mechanism`` (the object every holder of it sees) the state of its ``trained`` copy."""
    state = vars(mechanism)
    state.clear()
    state.update(vars(trained))


def load(path: Any, mechanisms: Mapping[str, Any] | None = None,
         map_location: str | torch.device = "cpu") -> SCM:
    """Load an SCM saved by :meth:`SCM.save`; ``mechanisms`` rebinds nodes that were code (a Pyro
    callable, a custom module), which is never saved."""
    graph, bound, categories = read_scm(path, mechanisms, map_location)
    scm = SCM(graph, bound)
    scm._record_categories(categories)
    return scm


def _fmt_do(ivs: Mapping[str, Intervention]) -> str:
    if not ivs:
        return ""
    return " do(" + ", ".join(f"{k}={v!r}" for k, v in ivs.items()) + ")"


__all__ = ["SCM", "Samples", "load"]
