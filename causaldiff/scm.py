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

The SCM validates and holds the model; every query is planned and executed by
:mod:`causaldiff.engine`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import networkx as nx
import pyro
import torch
import torch.distributions as tdist
from torch import Tensor

from . import chunking, engine
from .chunking import check_batch_size
from .devices import check_device
from .errors import DataError, GraphError, InterventionError
from .frames import accepts_frames
from .interventions import Intervention, as_intervention
from .mechanisms.base import Mechanism
from .mechanisms.moves import Move
from .mechanisms.pyro import PyroMechanism
from .rng import seeded
from .serialization import read_scm, save_scm
from .validation import check_count, check_rows, check_seed

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
        lines = [f"Samples({self.query + ', ' if self.query else ''}n={self.n})"]
        for k, v in self.items():
            desc = f"{tuple(v.shape)} {str(v.dtype).replace('torch.', '')}"
            if v.is_floating_point() and v.numel():
                desc += f"  mean {v.float().mean().item():.4g}  std {v.float().std().item() if v.numel() > 1 else 0.0:.4g}"
            lines.append(f"  {k}: {desc}")
        return "\n".join(lines)


@contextlib.contextmanager
def _query(seed: int | None) -> Iterator[None]:
    """The context every query runs in: seeded, without autograd, without torch's argument
    validation of the distributions mechanisms build (the engine validates its inputs itself)."""
    with seeded(check_seed(seed)), torch.no_grad(), engine.distribution_checks_off():
        yield


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
        ref = next((t for m in bound.values() for t in m.state_tensors().values()), None)
        device = ref.device if ref is not None else torch.device("cpu")
        order = tuple(nx.lexicographical_topological_sort(g))
        self._init(nx.freeze(g), engine.structure_of(g, bound, parents, order, {}, device))

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
        return self._s.device

    def parents(self, node: str) -> tuple[str, ...]:
        """The node's parents in the fixed (sorted) order."""
        self._require_node(node, "parents")
        return self._s.parents[node]

    def _require_node(self, node: Any, where: str) -> None:
        if node not in self._s.mechanisms:
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

    # ------------------------------------------------------------------------------ rows
    def _check_rows(self, rows: Any, need: tuple[str, ...] | None, what: str,
                    batch_size: int | None = None) -> tuple[dict[str, Tensor], int]:
        """Validate each column once (type, batch, dtype, device, finiteness, the row bounds of
        :mod:`causaldiff.limits`) and move it to the device."""
        if not isinstance(rows, Mapping):
            raise DataError(f"{what} must be a dict of node name -> tensor or a pandas DataFrame, "
                            f"got {type(rows).__name__}")
        for k in rows:
            self._require_node(k, what)
        missing = [k for k in (self.nodes if need is None else need) if k not in rows]
        if missing:
            raise DataError(f"{what} lacks node(s) {missing}")
        out, n = {}, None
        for k in self.nodes:
            if k in rows:
                out[k] = v = _as_column(k, rows[k], what, self.device)
                n = v.shape[0] if n is None else n
                if v.shape[0] != n:
                    raise DataError(f"node {k!r} in {what}: batch size {v.shape[0]} differs from {n}")
        if not n:
            raise DataError(f"{what} is an empty batch")
        check_rows(f"the number of rows in {what}", n, batch_size)
        bad = first_non_finite(out)
        if bad is not None:
            raise DataError(f"node {bad!r} in {what}: contains NaN or Inf")
        return out, n

    # ------------------------------------------------------------------------------ queries
    @accepts_frames
    def sample(self, n: int, *, seed: int | None = None, batch_size: int | None = None) -> Samples:
        """``n`` draws from the model (observational, or interventional on an intervened SCM).

        ``batch_size``: rows per chunk (memory grows with it, not with ``n``); the same ``seed``
        gives the same rows whatever it is (see :mod:`causaldiff.rng`). ``n`` above
        :data:`~causaldiff.limits.MAX_ROWS_PER_CALL` needs ``batch_size`` (and stays within
        :data:`~causaldiff.limits.MAX_ROWS`); every query has the same bounds on its rows.
        ``seed``: an integer (a float, a bool, a string is refused); queries in several threads
        run one at a time (:data:`causaldiff.rng.QUERY_LOCK`) and give the rows they give alone."""
        seed, batch_size = check_seed(seed), check_batch_size(batch_size)
        n = check_count("n", n, batch_size)
        engine.require_fitted(self._s, self.nodes)
        with _query(seed):
            values = chunking.execute(engine.plan_sample(self._s), n, batch_size=batch_size, seed=seed,
                                      desc="sample")
        return Samples(values, "sample", self._s.interventions)

    @accepts_frames
    def interventional_samples(self, n: int, do: Mapping[str, Any], *, seed: int | None = None,
                               batch_size: int | None = None) -> Samples:
        """``n`` draws from ``P(V | do(...))``."""
        return self.do(do).sample(n, seed=seed, batch_size=batch_size)

    @accepts_frames
    def predict(self, noise: Rows, do: Mapping[str, Any] | None = None, *, seed: int | None = None,
                batch_size: int | None = None) -> Samples:
        """Push exogenous noise through the (intervened) model: every node is recomputed."""
        seed, batch_size = check_seed(seed), check_batch_size(batch_size)
        plan = engine.plan_predict(self._s, self._parse_do(do))
        if not isinstance(noise, Mapping):
            raise DataError(f"noise must be a dict of node name -> tensor, got {type(noise).__name__}")
        need = tuple(v for v in self.nodes if not plan.target.is_hard(v))
        u, n = self._check_rows(noise, need, "the noise", batch_size)
        check_noise(u, "the noise")
        engine.require_fitted(plan.target, self.nodes)
        with _query(seed):
            values = chunking.execute(plan, n, noise=u, batch_size=batch_size, seed=seed, desc="predict")
        return Samples(values, "predict", plan.target.interventions)

    @accepts_frames
    def abduct(self, data: Rows, *, seed: int | None = None, batch_size: int | None = None) -> Samples:
        """Exogenous noise of every (non hard-intervened) node given observed rows."""
        seed, batch_size = check_seed(seed), check_batch_size(batch_size)
        rows, n = self._check_rows(data, None, "the observed rows", batch_size)
        nodes = engine.plan_abduct(self._s).abduct
        conds = engine.Conditionals(self._s, rows, n)
        engine.require_fitted(self._s, nodes)
        with engine.distribution_checks_off():
            engine.check_observed(conds, rows, nodes, "the observed rows")
            engine.precheck_abduction(self._s, conds, nodes)
            with seeded(seed), torch.no_grad():
                u = chunking.abduct(self._s, conds, rows, nodes, n, batch_size=batch_size, seed=seed)
        return Samples(u, "abducted noise")

    @accepts_frames
    def counterfactual(self, factual: Rows, do: Mapping[str, Any], *, seed: int | None = None,
                       batch_size: int | None = None) -> Samples:
        """What each factual row would have been under ``do`` (Pearl's three steps).

        Only the intervened nodes and their descendants are recomputed; every other node is the
        factual tensor itself. ``seed`` fixes stochastic abduction (Gumbel-max nodes);
        ``batch_size`` bounds the rows computed at once (results do not depend on it).
        """
        seed, batch_size = check_seed(seed), check_batch_size(batch_size)
        ivs = self._parse_do(do, probe=False)  # checked below against the factual parents
        rows, n = self._check_rows(factual, None, "the factual rows", batch_size)
        plan = engine.plan_counterfactual(self._s, ivs, n)
        conds = engine.Conditionals(self._s, rows, n)
        engine.require_fitted(plan.target, plan.recompute)
        with engine.distribution_checks_off():
            upfront = [v for v in self.nodes if not self._s.is_hard(v) and v not in plan.paired]
            engine.check_observed(conds, rows, upfront, "the factual rows")
            engine.precheck_abduction(self._s, conds, [v for v in plan.abduct if v not in plan.paired])
            for node, iv in ivs.items():
                if iv.cuts_edges:
                    engine.check_hard_support(self._s, node, iv, rows, n)
            with seeded(seed), torch.no_grad():
                values = chunking.execute(plan, n, rows=rows, factual=conds, batch_size=batch_size, seed=seed,
                                          desc="counterfactual")
        return Samples(values, "counterfactual", ivs)

    # ------------------------------------------------------------------------------ learning
    @accepts_frames
    def fit(self, data: Rows, *, nodes: Any = None) -> "SCM":
        """Fit every learnable mechanism (or those of ``nodes``) on its own, from its node's and its
        parents' columns."""
        rows, n = self._check_rows(data, None, "the training rows", batch_size=1)  # minibatches: MAX_ROWS only
        for node in [] if nodes is None else nodes:
            self._require_node(node, "fit(nodes=...)")
        learn = [v for v in self.nodes if self._s.mechanisms[v].learnable and not self._s.is_hard(v)]
        if learn and n < 2:
            raise DataError(f"fit needs at least 2 training rows, got {n} (learnable node(s) {learn})")
        for node in self.nodes:
            m = self._s.mechanisms[node]
            if m.learnable and not self._s.is_hard(node) and (nodes is None or node in nodes):
                pa = {p: rows[p] for p in self._s.parents[node]}
                m.fit(rows[node], pa, parent_order=self._s.parents[node], desc=f"fit {node}")
        return self

    def to(self, device: torch.device | str) -> "SCM":
        """Move every mechanism to ``device``; later queries run there. All or nothing: the device
        is checked first (:func:`~causaldiff.devices.check_device`), every mechanism's tensors are
        copied there, and only then assigned; a failure leaves every weight where it was."""
        device = check_device(device, "scm.to")
        move = Move(device)
        for m in self._s.mechanisms.values():
            m.stage_to(move)
        move.commit()
        self._s = engine.Structure(self._s.mechanisms, self._s.parents, self._s.base_parents, self._s.order,
                                   self._s.interventions, device)
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


def load(path: Any, mechanisms: Mapping[str, Any] | None = None,
         map_location: str | torch.device = "cpu") -> SCM:
    """Load an SCM saved by :meth:`SCM.save`; ``mechanisms`` rebinds nodes that were code (a Pyro
    callable, a custom module), which is never saved."""
    graph, bound = read_scm(path, mechanisms, map_location)
    return SCM(graph, bound)


def _as_column(node: str, v: Any, what: str, device: torch.device) -> Tensor:
    if not isinstance(v, Tensor):
        try:
            v = torch.as_tensor(v)
        except Exception as e:
            raise DataError(f"node {node!r} in {what}: cannot convert {type(v).__name__} to a tensor") from e
    if v.dim() == 0:
        raise DataError(f"node {node!r} in {what}: expected a batch of shape (n, ...), got a scalar")
    if v.dtype == torch.bool or v.is_complex():
        raise DataError(f"node {node!r} in {what}: unsupported dtype {v.dtype}")
    if v.device.type == "meta":
        raise DataError(f"node {node!r} in {what}: a tensor on the meta device holds no values")
    if v.device == device:
        return v
    try:
        return v.to(device)
    except (RuntimeError, NotImplementedError) as e:
        raise DataError(f"node {node!r} in {what}: cannot move it from {v.device} to {device}: {e}") from None


def check_noise(noise: Mapping[str, Tensor], what: str) -> None:
    """Exogenous noise is real-valued: integer columns are refused (naming the node)."""
    for k, v in noise.items():
        if not v.is_floating_point():
            raise DataError(f"node {k!r} in {what}: noise must be floating point, got {v.dtype}")


def first_non_finite(columns: Mapping[str, Tensor]) -> str | None:
    """The first column holding NaN or Inf, or None. One reduction per column (a finite sum proves
    every entry finite; the elementwise check runs only when it does not), and for small batches
    one check over all columns of a dtype at once."""
    floating = [(k, v) for k, v in columns.items() if v.is_floating_point() and v.numel()]
    small = sum(v.numel() for _, v in floating) <= 4096
    if small and floating and len({(v.dtype, v.device) for _, v in floating}) == 1:
        if bool(torch.isfinite(torch.cat([v if v.dim() == 1 else v.reshape(-1) for _, v in floating])).all()):
            return None
    for k, v in floating:
        if not (bool(torch.isfinite(v.sum())) or bool(torch.isfinite(v).all())):
            return k
    return None


def _fmt_do(ivs: Mapping[str, Intervention]) -> str:
    if not ivs:
        return ""
    return " do(" + ", ".join(f"{k}={v!r}" for k, v in ivs.items()) + ")"


__all__ = ["SCM", "Samples", "load", "seeded"]
