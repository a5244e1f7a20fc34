"""The structural causal model and its abduction–action–prediction engine.

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

from .errors import AbductionError, DataError, GraphError, InterventionError, NotFittedError
from .interventions import Hard, Intervention, Shift, Transform, as_intervention, intervene
from .mechanisms.base import Abduction, Mechanism
from .mechanisms.pyro import PyroMechanism

Rows = Mapping[str, Tensor]


class Samples(dict):
    """A ``dict[str, Tensor]`` of batch-first values that says what it holds when printed."""

    def __init__(self, values: Mapping[str, Tensor], query: str = ""):
        super().__init__(values)
        self.query = query

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
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block under ``torch.manual_seed(seed)`` without touching the global RNG state."""
    if seed is None:
        yield
        return
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _bind(node: str, spec: Any) -> Mechanism:
    if isinstance(spec, Mechanism):
        return spec
    if isinstance(spec, tdist.Distribution) or callable(spec):
        return PyroMechanism(spec)
    raise GraphError(f"node {node!r}: mechanism must be a Pyro distribution, a callable returning one, "
                     f"or a causaldiff Mechanism; got {type(spec).__name__}")


class SCM:
    """A structural causal model over a networkx DAG whose nodes are bound to mechanisms.

    >>> g = nx.DiGraph([("x", "y")])
    >>> g.nodes["x"]["mechanism"] = dist.Normal(0.0, 1.0)
    >>> g.nodes["y"]["mechanism"] = lambda x: dist.Normal(2.0 * x, 0.5)
    >>> scm = SCM(g)
    """

    def __init__(self, graph: nx.DiGraph, mechanisms: Mapping[str, Any] | None = None):
        self._setup(graph, mechanisms, interventions={}, base_parents=None, order=None)

    # ------------------------------------------------------------------------------ construction
    def _setup(self, graph: nx.DiGraph, mechanisms: Mapping[str, Any] | None,
               interventions: dict[str, Intervention], base_parents: dict[str, tuple[str, ...]] | None,
               order: tuple[str, ...] | None) -> None:
        if not isinstance(graph, nx.DiGraph) or graph.is_multigraph():
            raise GraphError(f"the causal graph must be a networkx.DiGraph, got {type(graph).__name__}")
        bad = [n for n in graph.nodes if not isinstance(n, str) or not n]
        if bad:
            raise GraphError(f"node names must be non-empty strings; got {bad[0]!r}")
        loops = list(nx.selfloop_edges(graph))
        if loops:
            raise GraphError(f"node {loops[0][0]!r} has a self-loop; a causal graph must be acyclic")
        if not nx.is_directed_acyclic_graph(graph):
            cycle = " -> ".join(u for u, _ in nx.find_cycle(graph)) + f" -> {nx.find_cycle(graph)[0][0]}"
            raise GraphError(f"the graph has a cycle: {cycle}")
        mechanisms = dict(mechanisms or {})
        unknown = sorted(set(mechanisms) - set(graph.nodes))
        if unknown:
            raise GraphError(f"mechanisms given for unknown node(s) {unknown}; nodes are {sorted(graph.nodes)}")
        g = graph.copy()
        bound: dict[str, Mechanism] = {}
        for node in g.nodes:
            spec = mechanisms.get(node, g.nodes[node].get("mechanism"))
            if spec is None:
                raise GraphError(f"node {node!r} is not bound to a mechanism: set "
                                 f"graph.nodes[{node!r}]['mechanism'] or pass mechanisms={{{node!r}: ...}}")
            bound[node] = _bind(node, spec)
        seen: dict[int, str] = {}
        for node, m in bound.items():
            if id(m) in seen:
                raise GraphError(f"nodes {seen[id(m)]!r} and {node!r} share one mechanism object; "
                                 "bind a separate instance to each node")
            seen[id(m)] = node
        parents = {n: tuple(sorted(g.predecessors(n))) for n in g.nodes}
        for node, m in bound.items():
            if node in interventions and isinstance(interventions[node], Hard):
                continue
            self._check_binding(node, m, parents[node])
        for node, m in bound.items():
            m.node = node
            g.nodes[node]["mechanism"] = m
        self._graph = nx.freeze(g)
        self._mechanisms = bound
        self._parents = parents
        self._base_parents = dict(base_parents or parents)
        self._order = order or tuple(nx.lexicographical_topological_sort(g))
        self._interventions = dict(interventions)
        ref = next((t for m in bound.values() for t in m.state_tensors().values()), None) if bound else None
        self.device = ref.device if ref is not None else torch.device("cpu")

    @staticmethod
    def _check_binding(node: str, m: Mechanism, parents: tuple[str, ...]) -> None:
        if isinstance(m, PyroMechanism):
            m.node = node
            names = m.parameter_names()
            if names is None and parents:
                raise GraphError(f"node {node!r} has parents {list(parents)} but is bound to a raw "
                                 "distribution; bind a callable taking those parents by name")
            if names is not None and set(names) != set(parents):
                raise GraphError(f"node {node!r}: its callable takes {sorted(names)} but the node's "
                                 f"parents are {list(parents)}")
        if m.learnable and m.fitted_parents is not None and tuple(m.fitted_parents) != parents:
            raise GraphError(f"node {node!r} was fitted with parents {list(m.fitted_parents)} but the graph "
                             f"now gives it {list(parents)}; refit it")

    # ------------------------------------------------------------------------------ introspection
    @property
    def graph(self) -> nx.DiGraph:
        """The (frozen) causal graph; intervened nodes have lost their incoming edges."""
        return self._graph

    @property
    def nodes(self) -> tuple[str, ...]:
        """Nodes in topological order."""
        return self._order

    @property
    def mechanisms(self) -> dict[str, Mechanism]:
        return dict(self._mechanisms)

    @property
    def interventions(self) -> dict[str, Intervention]:
        return dict(self._interventions)

    def parents(self, node: str) -> tuple[str, ...]:
        """The node's parents in the fixed (sorted) order."""
        self._require_node(node, "parents")
        return self._parents[node]

    def _require_node(self, node: Any, where: str) -> None:
        if node not in self._mechanisms:
            raise DataError(f"unknown node {node!r} in {where}; the SCM's nodes are {list(self._order)}")

    def __repr__(self) -> str:
        lines = [f"SCM({len(self._order)} nodes, {self._graph.number_of_edges()} edges)"]
        for node in self._order:
            pa = ", ".join(self._parents[node])
            iv = f"  <- do {self._interventions[node]!r}" if node in self._interventions else ""
            lines.append(f"  {node}({pa}): {self._mechanisms[node]!r}{iv}")
        return "\n".join(lines)

    # ------------------------------------------------------------------------------ action
    def _parse_do(self, do: Mapping[str, Any] | None) -> dict[str, Intervention]:
        if do is None:
            return {}
        if not isinstance(do, Mapping):
            raise InterventionError(f"`do` must map node names to interventions, got {type(do).__name__}")
        out = {}
        for node, value in do.items():
            if node not in self._mechanisms:
                raise InterventionError(f"cannot intervene on unknown node {node!r}; the SCM's nodes are "
                                        f"{list(self._order)}")
            out[node] = as_intervention(node, value)
            if isinstance(out[node], Hard) and not self._base_parents[node]:
                self._check_support(node, out[node], {}, 1, early=True)
        return out

    def do(self, interventions: Mapping[str, Any]) -> "SCM":
        """Graph surgery: a new SCM with the interventions applied; ``self`` is untouched."""
        ivs = self._parse_do(interventions)
        merged = {**self._interventions, **ivs}
        g = nx.DiGraph(self._graph)
        for node, iv in merged.items():
            if isinstance(iv, Hard):
                g.remove_edges_from(list(g.in_edges(node)))
            else:
                g.add_edges_from((p, node) for p in self._base_parents[node])
        new = SCM.__new__(SCM)
        new._setup(g, self._mechanisms, merged, self._base_parents, self._order)
        new.device = self.device
        return new

    def _check_support(self, node: str, iv: Hard, base_pa: Mapping[str, Tensor], n: int,
                       early: bool = False) -> None:
        m = self._mechanisms[node]
        try:
            support = m.support(base_pa, n)
        except Exception:  # the support of a callable may need parents we do not have yet
            if early:
                return
            raise
        if support is None:
            return
        value = torch.as_tensor(iv.value)
        if support.is_discrete and not support.check(value).all():
            raise InterventionError(f"node {node!r}: intervention value {iv.value!r} is outside the "
                                    f"node's support {support}")

    # ------------------------------------------------------------------------------ rows
    def _check_rows(self, rows: Any, need: tuple[str, ...] | None, what: str) -> tuple[dict[str, Tensor], int]:
        if not isinstance(rows, Mapping):
            raise DataError(f"{what} must be a dict of node name -> tensor, got {type(rows).__name__}")
        for k in rows:
            self._require_node(k, what)
        need = self._order if need is None else need
        missing = [k for k in need if k not in rows]
        if missing:
            raise DataError(f"{what} lacks node(s) {missing}")
        out, n = {}, None
        for k in self._order:
            if k not in rows:
                continue
            v = rows[k]
            if not isinstance(v, Tensor):
                try:
                    v = torch.as_tensor(v)
                except Exception as e:
                    raise DataError(f"node {k!r} in {what}: cannot convert {type(v).__name__} to a tensor") from e
            if v.dim() == 0:
                raise DataError(f"node {k!r} in {what}: expected a batch of shape (n, ...), got a scalar")
            if v.dtype == torch.bool or v.is_complex():
                raise DataError(f"node {k!r} in {what}: unsupported dtype {v.dtype}")
            if n is None:
                n = v.shape[0]
            if v.shape[0] != n:
                raise DataError(f"node {k!r} in {what}: batch size {v.shape[0]} differs from {n}")
            if v.is_floating_point() and not torch.isfinite(v).all():
                raise DataError(f"node {k!r} in {what}: contains NaN or Inf")
            out[k] = v.to(self.device)
        if n == 0 or n is None:
            raise DataError(f"{what} is an empty batch")
        return out, n

    def _check_shape(self, node: str, x: Tensor, pa: Mapping[str, Tensor], n: int, what: str) -> None:
        shape = self._mechanisms[node].event_shape(pa, n)
        if shape is not None and tuple(x.shape[1:]) != tuple(shape):
            raise DataError(f"node {node!r} in {what}: rows have shape {tuple(x.shape[1:])}, the mechanism "
                            f"gives {tuple(shape)}")
        support = self._mechanisms[node].support(pa, n)
        if support is not None and not support.check(x).all():
            raise DataError(f"node {node!r} in {what}: values outside the mechanism's support {support}")

    # ------------------------------------------------------------------------------ prediction
    def _node_value(self, node: str, values: Mapping[str, Tensor], noise: dict[str, Tensor], n: int,
                    natural: Tensor | None = None, ref: Tensor | None = None) -> Tensor:
        """One node's value under this SCM's interventions; samples missing noise."""
        m, iv = self._mechanisms[node], self._interventions.get(node)
        if isinstance(iv, Hard):
            base_pa = {p: values[p] for p in self._base_parents[node]}
            self._check_support(node, iv, base_pa, n)
            if ref is not None:
                shape, dtype = tuple(ref.shape[1:]), ref.dtype
            else:
                shape = m.event_shape(base_pa, n)
                dtype = m.value_dtype(base_pa, n) or _value_dtype(iv.value)
            return intervene(node, iv, None, n, shape, dtype, self.device).clone()
        if natural is None:
            pa = {p: values[p] for p in self._parents[node]}
            if node not in noise:
                noise[node] = m.sample_noise(n, pa)
            natural = m.forward(noise[node], pa)
        if iv is None:
            return natural
        out = intervene(node, iv, natural, n, tuple(natural.shape[1:]), natural.dtype, self.device)
        support = m.support({p: values[p] for p in self._parents[node]}, n)
        if support is not None and support.is_discrete and not support.check(out).all():
            raise InterventionError(f"node {node!r}: {iv!r} moves values outside the node's support {support}")
        return out

    def _require_fitted(self, nodes: Any) -> None:
        for node in nodes:
            m = self._mechanisms[node]
            if not isinstance(self._interventions.get(node), Hard) and not m.is_fitted:
                raise NotFittedError(f"node {node!r}: {type(m).__name__} is not fitted; call scm.fit(data)")

    def predict(self, noise: Rows, do: Mapping[str, Any] | None = None, *, seed: int | None = None) -> Samples:
        """Push exogenous noise through the (intervened) model: every node is recomputed."""
        target = self.do(do) if do else self
        if not isinstance(noise, Mapping):
            raise DataError(f"noise must be a dict of node name -> tensor, got {type(noise).__name__}")
        for k in noise:
            self._require_node(k, "noise")
        need = [v for v in self._order if not isinstance(target._interventions.get(v), Hard)]
        missing = [v for v in need if v not in noise]
        if missing:
            raise DataError(f"noise lacks node(s) {missing}")
        target._require_fitted(self._order)
        u = {k: v.to(self.device) for k, v in noise.items()}
        n = next(iter(u.values())).shape[0] if u else None
        if n is None:
            raise DataError("predict needs noise for at least one node")
        values: dict[str, Tensor] = {}
        with seeded(seed):
            for node in self._order:
                values[node] = target._node_value(node, values, u, n)
        return Samples(values, f"predict{_fmt_do(target._interventions)}")

    def sample(self, n: int, *, seed: int | None = None) -> Samples:
        """``n`` draws from the model (observational, or interventional on an intervened SCM)."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise DataError(f"n must be a positive integer, got {n!r}")
        self._require_fitted(self._order)
        values: dict[str, Tensor] = {}
        noise: dict[str, Tensor] = {}
        with seeded(seed), torch.no_grad():
            for node in self._order:
                values[node] = self._node_value(node, values, noise, n)
        return Samples(values, "sample" + _fmt_do(self._interventions))

    def interventional_samples(self, n: int, do: Mapping[str, Any], *, seed: int | None = None) -> Samples:
        """``n`` draws from ``P(V | do(...))``."""
        return self.do(do).sample(n, seed=seed)

    # ------------------------------------------------------------------------------ abduction
    def _abduct_node(self, node: str, x: Tensor, pa: Mapping[str, Tensor]) -> Tensor:
        m, iv = self._mechanisms[node], self._interventions.get(node)
        if isinstance(iv, Shift):
            x = x - torch.as_tensor(iv.delta, dtype=x.dtype, device=x.device)
        return m.abduct(x, pa)

    def _check_observed(self, data: Mapping[str, Tensor], n: int, what: str) -> None:
        """Every (non hard-intervened) node's rows have the shape and support its mechanism gives,
        checked in topological order so the first bad node is the one named."""
        for node in self._order:
            if not isinstance(self._interventions.get(node), Hard):
                pa = {p: data[p] for p in self._parents[node]}
                self._check_shape(node, data[node], pa, n, what)

    def _precheck_abduction(self, nodes: list[str], data: Mapping[str, Tensor], n: int) -> None:
        """Refuse before any work if some node cannot be abducted."""
        self._require_fitted(nodes)
        for node in nodes:
            m, iv = self._mechanisms[node], self._interventions.get(node)
            pa = {p: data[p] for p in self._parents[node]}
            if isinstance(iv, Transform):
                raise AbductionError(f"node {node!r}: cannot abduct through the callable intervention "
                                     "this SCM already carries")
            if m.abduction(pa) is Abduction.IMPOSSIBLE:
                why = m.why_not_abductable(pa) if isinstance(m, PyroMechanism) else m.why_not_abductable()
                raise AbductionError(f"node {node!r} cannot be abducted: {why}")

    def abduct(self, data: Rows, *, seed: int | None = None) -> Samples:
        """Exogenous noise of every (non hard-intervened) node given observed rows."""
        rows, n = self._check_rows(data, None, "the observed rows")
        nodes = [v for v in self._order if not isinstance(self._interventions.get(v), Hard)]
        self._check_observed(rows, n, "the observed rows")
        self._precheck_abduction(nodes, rows, n)
        with seeded(seed), torch.no_grad():
            u = {v: self._abduct_node(v, rows[v], {p: rows[p] for p in self._parents[v]}) for v in nodes}
        return Samples(u, "abducted noise")

    def counterfactual(self, factual: Rows, do: Mapping[str, Any], *, seed: int | None = None) -> Samples:
        """What each factual row would have been under ``do`` (Pearl's three steps).

        Only the intervened nodes and their descendants are recomputed; every other node is the
        factual tensor itself. ``seed`` fixes stochastic abduction (Gumbel-max nodes).
        """
        ivs = self._parse_do(do)
        rows, n = self._check_rows(factual, None, "the factual rows")
        target = self.do(ivs)
        changed: set[str] = set(ivs)
        for node in ivs:
            changed |= nx.descendants(self._graph, node)
        recompute = [v for v in self._order if v in changed]
        needs_noise = [v for v in recompute if v not in ivs or (
            not isinstance(ivs[v], Hard) and any(p in changed for p in self._parents[v]))]
        # 1. checks before any work: shapes, abduction capability, supports of hard values
        self._check_observed(rows, n, "the factual rows")
        self._precheck_abduction(needs_noise, rows, n)
        target._require_fitted(recompute)
        for node, iv in ivs.items():
            if isinstance(iv, Hard):
                target._check_support(node, iv, {p: rows[p] for p in self._base_parents[node]}, n)
        with seeded(seed), torch.no_grad():
            # 2. abduction under the factual parents
            noise = {v: self._abduct_node(v, rows[v], {p: rows[p] for p in self._parents[v]})
                     for v in needs_noise}
            # 3. action + prediction, descendants only
            values = dict(rows)
            for v in recompute:
                natural = rows[v] if v in ivs and v not in needs_noise else None
                values[v] = target._node_value(v, values, noise, n, natural=natural, ref=rows[v])
        return Samples(values, "counterfactual" + _fmt_do(ivs))

    # ------------------------------------------------------------------------------ learning
    def fit(self, data: Rows) -> "SCM":
        """Fit every learnable mechanism on its own, from its node's and its parents' columns."""
        rows, n = self._check_rows(data, None, "the training rows")
        todo = [v for v in self._order if self._mechanisms[v].learnable
                and not isinstance(self._interventions.get(v), Hard)]
        for node in todo:
            m = self._mechanisms[node]
            pa = {p: rows[p] for p in self._parents[node]}
            m.fit(rows[node], pa, parent_order=self._parents[node], desc=f"fit {node}")
        return self

    def to(self, device: torch.device | str) -> "SCM":
        """Move every mechanism to ``device``; later queries run there."""
        device = torch.device(device)
        for m in self._mechanisms.values():
            m.to(device)
        self.device = device
        return self

    # ------------------------------------------------------------------------------ pyro interop
    def model(self, n: int = 1) -> dict[str, Tensor]:
        """A Pyro model with one sample site per node (use with ``pyro.poutine.do``/``condition``).

        Nodes whose mechanism has no tractable density are ``pyro.deterministic`` sites.
        """
        values: dict[str, Tensor] = {}
        with pyro.plate("rows", n):
            for node in self._order:
                m, iv = self._mechanisms[node], self._interventions.get(node)
                pa = {p: values[p] for p in self._parents[node]}
                d = None if iv is not None else m.pyro_distribution(pa, n)
                if d is None:
                    x = self._node_value(node, values, {}, n)
                    values[node] = pyro.deterministic(node, x, event_dim=x.dim() - 1)
                else:
                    values[node] = pyro.sample(node, d)
        return values

    # ------------------------------------------------------------------------------ persistence
    def save(self, path: Any) -> None:
        """Save graph and learnable mechanisms (JSON config + safetensors; no pickled code)."""
        from .serialization import save_scm
        save_scm(self, path)


def _value_dtype(value: Any) -> torch.dtype:
    t = torch.as_tensor(value)
    return t.dtype if t.is_floating_point() else torch.get_default_dtype()


def _fmt_do(ivs: Mapping[str, Intervention]) -> str:
    if not ivs:
        return ""
    return " do(" + ", ".join(f"{k}={v!r}" for k, v in ivs.items()) + ")"


__all__ = ["SCM", "Samples", "seeded"]
