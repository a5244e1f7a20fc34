"""Synthetic tabular SCMs with known noise: the DCM benchmark (Chao et al., TMLR 2024).

Eight SCMs (chain, triangle, diamond, Y; each "nonlinear" with additive noise and "nonadditive"),
written exactly as in ``BENCHMARKS.md`` section 2, with exogenous noise ``u_i ~ N(0, 1)`` and
roots ``x = u``. Because the true noise is known, ground truth for every rung is the SCM itself:

* observational rows:      ``scm.simulate(scm.sample_noise(n, g))``
* interventional samples:  ``scm.simulate(scm.sample_noise(n, g), do={...})`` (fresh noise)
* counterfactuals:         ``scm.simulate(noise_of_the_factual_rows, do={...})`` (same noise)

Each SCM is a frozen :class:`TabularSCM`; :data:`TABULAR_SCMS` maps ``"chain-nonlinear"`` etc. to
them. The DCM "ladder" SCM (vector nodes, random MLP mechanisms) lives in
:mod:`causaldiff.datasets.ladder` and uses the same class.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import networkx as nx
import torch
from torch import Tensor

from causaldiff.errors import InterventionError

#: ``f(parents, u) -> x``: a vectorised structural equation; ``parents`` maps names to tensors.
Equation = Callable[[Mapping[str, Tensor], Tensor], Tensor]

KINDS = ("nonlinear", "nonadditive")


@dataclass(frozen=True, eq=False)
class TabularSCM:
    """A fully known SCM ``x_i = f_i(pa_i, u_i)`` with independent ``u_i ~ N(0, I)``.

    Attributes:
        name: registry key, e.g. ``"chain-nonlinear"``.
        graph_name: ``"chain"``, ``"triangle"``, ``"diamond"``, ``"Y"`` or ``"ladder"``.
        kind: ``"nonlinear"`` (additive noise) or ``"nonadditive"``.
        nodes: node names in a topological order.
        edges: directed edges ``(parent, child)``.
        equations: node -> structural equation ``f(parents, u)``; roots are ``x = u``.
        event_shapes: node -> per-row shape (``()`` for scalar nodes).
        intervention_nodes: the nodes the benchmark intervenes on (default: every node with
            descendants, sorted).
    """

    name: str
    graph_name: str
    kind: str
    nodes: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    equations: Mapping[str, Equation]
    event_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    intervention_nodes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"SCM {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        g = nx.DiGraph()
        g.add_nodes_from(self.nodes)
        for a, b in self.edges:
            if a not in g or b not in g:
                raise ValueError(f"SCM {self.name!r}: edge {a}->{b} names an unknown node")
            g.add_edge(a, b)
        if not nx.is_directed_acyclic_graph(g):
            raise ValueError(f"SCM {self.name!r}: the edges contain a cycle")
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
        object.__setattr__(self, "_graph", g)

    # ----------------------------------------------------------------------------- structure
    def as_networkx(self) -> nx.DiGraph:
        """A fresh ``nx.DiGraph`` of the SCM (no mechanisms attached)."""
        return self._graph.copy()

    def parents(self, node: str) -> tuple[str, ...]:
        """Parents of ``node`` in causaldiff's order (``sorted``)."""
        self._check_node(node)
        return tuple(sorted(self._graph.predecessors(node)))

    def descendants(self, node: str) -> tuple[str, ...]:
        """Strict descendants of ``node``, in topological order."""
        self._check_node(node)
        desc = nx.descendants(self._graph, node)
        return tuple(v for v in self.nodes if v in desc)

    @property
    def roots(self) -> tuple[str, ...]:
        return tuple(v for v in self.nodes if self._graph.in_degree(v) == 0)

    def _check_node(self, node: str) -> None:
        if node not in self.event_shapes:
            raise KeyError(f"SCM {self.name!r} has no node {node!r}; nodes are {self.nodes}")

    # ----------------------------------------------------------------------------- sampling
    def sample_noise(self, n: int, generator: torch.Generator | None = None, *,
                     dtype: torch.dtype = torch.float64,
                     device: torch.device | str | None = None) -> dict[str, Tensor]:
        """Draw ``n`` rows of exogenous noise ``u_i ~ N(0, I)``, node by node in ``self.nodes`` order.

        The draws are made on the CPU (where ``generator`` lives) and then moved to ``device``.
        """
        if int(n) < 1:
            raise ValueError(f"n must be a positive integer, got {n}")
        out = {}
        for v in self.nodes:
            u = torch.randn((int(n), *self.event_shapes[v]), generator=generator, dtype=dtype)
            out[v] = u.to(device) if device is not None else u
        return out

    def simulate(self, noise: Mapping[str, Tensor],
                 do: Mapping[str, Any] | None = None) -> dict[str, Tensor]:
        """Push ``noise`` through the SCM, optionally under hard interventions ``do``.

        Graph surgery: an intervened node takes the given value (a scalar, a per-row tensor of
        shape ``(n, *event)``, or a per-row-constant tensor of shape ``event``) whatever its
        parents and noise; every other node is recomputed in topological order from its own
        noise, so with the factual rows' noise this is the exact counterfactual.
        """
        do = dict(do or {})
        missing = [v for v in self.nodes if v not in noise]
        if missing:
            raise KeyError(f"SCM {self.name!r}: noise is missing nodes {missing}")
        unknown = [v for v in do if v not in self.event_shapes]
        if unknown:
            raise InterventionError(f"SCM {self.name!r}: cannot intervene on unknown nodes {unknown}; "
                                    f"nodes are {self.nodes}")
        ref = noise[self.nodes[0]]
        n = ref.shape[0]
        for v in self.nodes:
            want = (n, *self.event_shapes[v])
            if tuple(noise[v].shape) != want:
                raise ValueError(f"SCM {self.name!r}: noise of {v!r} has shape {tuple(noise[v].shape)}, "
                                 f"expected {want}")
        values: dict[str, Tensor] = {}
        for v in self.nodes:
            if v in do:
                values[v] = self._intervened_value(v, do[v], n, ref)
            else:
                pa = {p: values[p] for p in self.parents(v)}
                values[v] = self.equations[v](pa, noise[v])
        return values

    def _intervened_value(self, node: str, value: Any, n: int, ref: Tensor) -> Tensor:
        shape = (n, *self.event_shapes[node])
        val = torch.as_tensor(value, dtype=ref.dtype, device=ref.device)
        if val.shape not in (torch.Size(()), torch.Size(shape), torch.Size(shape[1:])):
            raise InterventionError(
                f"SCM {self.name!r}: do({node}) value has shape {tuple(val.shape)}; expected a scalar, "
                f"{shape[1:]} or {shape}")
        return val.expand(shape).clone()

    def sample(self, n: int, generator: torch.Generator | None = None, *,
               do: Mapping[str, Any] | None = None, dtype: torch.dtype = torch.float64,
               device: torch.device | str | None = None) -> dict[str, Tensor]:
        """Observational (or, with ``do``, interventional) samples from fresh noise."""
        return self.simulate(self.sample_noise(n, generator, dtype=dtype, device=device), do=do)

    def quantile_grid(self, node: str, num: int = 20, *, n_draws: int = 5000,
                      generator: torch.Generator | None = None, low: float = 0.1,
                      high: float = 0.9) -> Tensor:
        """``num`` intervention values ``linspace(q_low, q_high)`` of ``node``'s true marginal.

        The quantiles come from ``n_draws`` observational draws (float64). Scalar nodes give a
        ``(num,)`` tensor; vector nodes get the grid per coordinate, ``(num, *event)``.
        """
        self._check_node(node)
        if not 0.0 <= low < high <= 1.0:
            raise ValueError(f"need 0 <= low < high <= 1, got low={low}, high={high}")
        x = self.sample(n_draws, generator)[node].reshape(n_draws, -1)
        q = torch.quantile(x, torch.tensor([low, high], dtype=x.dtype), dim=0)  # (2, d)
        w = torch.linspace(0.0, 1.0, num, dtype=x.dtype).unsqueeze(-1)  # (num, 1)
        grid = q[0] + w * (q[1] - q[0])
        return grid.reshape(num, *self.event_shapes[node])

    # ----------------------------------------------------------------------------- Pyro binding
    def additive_parts(self, node: str) -> tuple[Callable[..., Tensor], float]:
        """For an additive-noise node ``x = loc(pa) + scale * u``: ``(loc, scale)``.

        ``loc`` takes the parents as keyword arguments. Both parts are read off the true
        equation: ``loc(pa) = f(pa, 0)`` and ``scale = f(pa, 1) - f(pa, 0)``.
        """
        if self.kind != "nonlinear":
            raise ValueError(f"SCM {self.name!r} is {self.kind}: its noise is not additive")
        self._check_node(node)
        f = self.equations[node]
        parents = self.parents(node)
        if not parents:
            return (lambda: torch.zeros(())), 1.0
        probe = {p: torch.zeros((1, *self.event_shapes[p]), dtype=torch.float64) for p in parents}
        zero = torch.zeros((1, *self.event_shapes[node]), dtype=torch.float64)
        scale = (f(probe, zero + 1.0) - f(probe, zero)).reshape(-1)
        if not torch.allclose(scale, scale[:1].expand_as(scale)):
            raise ValueError(f"SCM {self.name!r}: node {node!r} has a non-constant noise scale")

        def loc(**pa: Tensor) -> Tensor:
            first = pa[parents[0]]
            shape = (first.shape[0], *self.event_shapes[node]) if first.dim() else self.event_shapes[node]
            return f(pa, torch.zeros(shape, dtype=first.dtype, device=first.device))

        return loc, float(scale[0])

    def to_pyro_scm(self):
        """A ``causaldiff.SCM`` whose nodes are bound to Pyro distributions of the TRUE equations.

        Roots get ``dist.Normal(0., 1.)``; a non-root ``x = loc(pa) + scale * u`` gets a callable
        whose parameter names are its parents, returning ``dist.Normal(loc(pa), scale)``. Only for
        additive-noise (``"nonlinear"``) scalar SCMs.
        """
        import pyro.distributions as dist

        import causaldiff as cd

        if self.kind != "nonlinear":
            raise ValueError(f"SCM {self.name!r} is {self.kind}: only additive-noise SCMs bind to "
                             "location-scale Pyro distributions")
        if any(self.event_shapes[v] for v in self.nodes):
            raise ValueError(f"SCM {self.name!r} has vector nodes; to_pyro_scm needs scalar nodes")
        g = self.as_networkx()
        for v in self.nodes:
            parents = self.parents(v)
            if not parents:
                g.nodes[v]["mechanism"] = dist.Normal(0.0, 1.0)
            else:
                loc, scale = self.additive_parts(v)
                g.nodes[v]["mechanism"] = _named_callable(
                    parents, lambda _loc=loc, _s=scale, **pa: dist.Normal(_loc(**pa), _s),
                    name=f"{self.name}:{v}")
        return cd.SCM(g)

    def __repr__(self) -> str:
        return (f"TabularSCM({self.name!r}, nodes={list(self.nodes)}, "
                f"edges={[f'{a}->{b}' for a, b in self.edges]})")


def _named_callable(names: tuple[str, ...], body: Callable[..., Any], *, name: str) -> Callable[..., Any]:
    """A function whose signature is exactly ``(*names)`` (positional or keyword), calling
    ``body(**{name: value})``: how parents are named for causaldiff's callable mechanisms."""
    sig = inspect.Signature([inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                             for p in names])

    def fn(*args: Any, **kwargs: Any) -> Any:
        bound = sig.bind(*args, **kwargs)
        return body(**bound.arguments)

    fn.__signature__ = sig  # type: ignore[attr-defined]
    fn.__name__ = fn.__qualname__ = f"mechanism[{name}]"
    return fn


# --------------------------------------------------------------------------------- the equations
# Written as in BENCHMARKS.md section 2 (DCM, Chao et al., TMLR 2024). ``p`` = parents, ``u`` = noise.
_exp, _abs, _sqrt = torch.exp, torch.abs, torch.sqrt


def _root(p: Mapping[str, Tensor], u: Tensor) -> Tensor:
    return u.clone()


_EQUATIONS: dict[tuple[str, str], dict[str, Equation]] = {
    ("chain", "nonlinear"): {
        "x2": lambda p, u: (_exp(p["x1"] / 2) + u / 4) / 0.65,
        "x3": lambda p, u: ((p["x2"] - 5) ** 3 / 15 + u) / 2.13,
    },
    ("chain", "nonadditive"): {
        "x2": lambda p, u: 1 / ((u + p["x1"]) ** 2 + 0.5) / 0.63,
        "x3": lambda p, u: _sqrt(p["x2"] + _abs(u)) / (0.1 + p["x2"]),
    },
    ("triangle", "nonlinear"): {
        "x2": lambda p, u: (u + 2 * p["x1"] ** 2) / 3,
        "x3": lambda p, u: (u + 20 / (1 + _exp(-p["x2"] ** 2 + p["x1"]))) / 2.41,
    },
    ("triangle", "nonadditive"): {
        "x2": lambda p, u: (p["x1"] / ((u + p["x1"]) ** 2 + 1) + u / 4) / 0.47,
        "x3": lambda p, u: (_abs(u) + 0.3) * (-p["x1"] + p["x2"] / 2 + _abs(u) / 5) ** 2 / 0.93,
    },
    ("diamond", "nonlinear"): {
        "x2": lambda p, u: (p["x1"] ** 2 + u / 2) / 1.5,
        "x3": lambda p, u: (p["x2"] ** 2 - 2 / (1 + _exp(-p["x1"])) + u / 2) / 1.27,
        "x4": lambda p, u: (p["x3"] / (_abs(p["x2"] + p["x3"]) + 0.5) + u / 5) / 0.54,
    },
    ("diamond", "nonadditive"): {
        "x2": lambda p, u: (_sqrt(_abs(p["x1"])) * (_abs(u) + 0.1) / 2 + _abs(p["x1"]) + u / 5) / 0.83,
        "x3": lambda p, u: 6 / (1 + (_abs(u) + 0.5) * _exp(-p["x2"] + p["x1"])),
        "x4": lambda p, u: ((p["x3"] + p["x2"] + u / 4 - 7) ** 2 - 20) / 7.27,
    },
    ("Y", "nonlinear"): {
        "x3": lambda p, u: (-p["x2"] ** 2 + 4 / (1 + _exp(-p["x1"] - p["x2"])) + u / 2) / 1.83,
        "x4": lambda p, u: (20 / (1 + _exp(p["x3"] ** 2 / 2 - p["x3"])) + u) / 3.26,
    },
    ("Y", "nonadditive"): {
        "x3": lambda p, u: (p["x1"] - 2 * p["x2"] - 2) * (_abs(u) + 0.2) / 2.87,
        "x4": lambda p, u: 1 / (_abs(u + 2 * p["x3"]) + 0.5) / 0.43,
    },
}

_GRAPHS: dict[str, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    "chain": (("x1", "x2", "x3"), (("x1", "x2"), ("x2", "x3"))),
    "triangle": (("x1", "x2", "x3"), (("x1", "x2"), ("x1", "x3"), ("x2", "x3"))),
    "diamond": (("x1", "x2", "x3", "x4"),
                (("x1", "x2"), ("x1", "x3"), ("x2", "x3"), ("x2", "x4"), ("x3", "x4"))),
    "Y": (("x1", "x2", "x3", "x4"), (("x1", "x3"), ("x2", "x3"), ("x3", "x4"))),
}


def _build(graph_name: str, kind: str) -> TabularSCM:
    nodes, edges = _GRAPHS[graph_name]
    eqs = _EQUATIONS[(graph_name, kind)]
    parented = {b for _, b in edges}
    equations = {v: (eqs[v] if v in parented else _root) for v in nodes}
    return TabularSCM(name=f"{graph_name.lower()}-{kind}", graph_name=graph_name, kind=kind,
                      nodes=nodes, edges=edges, equations=equations)


#: The eight SCMs of the DCM benchmark, keyed ``"<graph>-<kind>"`` (graph names lower-case).
TABULAR_SCMS: Mapping[str, TabularSCM] = MappingProxyType(
    {s.name: s for s in (_build(g, k) for g in _GRAPHS for k in KINDS)})


def get_tabular_scm(name: str, seed: int = 0) -> TabularSCM:
    """An SCM by name (case-insensitive): one of :data:`TABULAR_SCMS`, or ``"ladder-<kind>"`` whose random
    mechanisms are drawn from ``seed`` (:func:`causaldiff.datasets.ladder.ladder_scm`)."""
    key = name.lower()
    if key in TABULAR_SCMS:
        return TABULAR_SCMS[key]
    if key.startswith("ladder-"):
        from causaldiff.datasets.ladder import ladder_scm

        return ladder_scm(key.removeprefix("ladder-"), seed=seed)
    raise KeyError(f"unknown tabular SCM {name!r}; known: {sorted(TABULAR_SCMS)} and "
                   "'ladder-nonlinear', 'ladder-nonadditive'")
