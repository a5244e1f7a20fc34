"""Synthetic tabular SCMs with known noise: the DCM benchmark (Chao et al., TMLR 2024).

Eight SCMs (chain, triangle, diamond, Y; each "nonlinear" with additive noise and "nonadditive"),
as in ``BENCHMARKS.md`` section 2, with noise ``u_i ~ N(0, 1)`` and roots ``x = u``, plus the DCM
ladder (:mod:`.ladder`): the registered data set ``"tabular"`` (``TabularSCM(name="chain-nonlinear")``).
Ground truth of every rung: ``scm.sample(n, g)`` (a :class:`Draw`: values and noise), with
``do={...}`` interventional, and ``scm.counterfactual(draw, do)`` = ``scm.simulate(draw.exogenous, do)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from types import MappingProxyType
from typing import Any, Literal

import networkx as nx
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor

from ..errors import InterventionError
from ..interventions import as_intervention, intervene
from ..mechanisms.pyro import named_callable
from ..registry import DATASETS
from .base import Draw, GroundTruth, split_seed
from .ladder import ladder_equations
from .structural import KINDS, Equation, StructuralEquations, root_equation

# --------------------------------------------------------------------------------- the equations
# Written as in BENCHMARKS.md section 2 (DCM, Chao et al., TMLR 2024). ``p`` = parents, ``u`` = noise.
_exp, _abs, _sqrt = torch.exp, torch.abs, torch.sqrt

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


def _dcm(graph_name: str, kind: str) -> StructuralEquations:
    nodes, edges = _GRAPHS[graph_name]
    eqs = _EQUATIONS[(graph_name, kind)]
    parented = {b for _, b in edges}
    equations = {v: (eqs[v] if v in parented else root_equation) for v in nodes}
    return StructuralEquations(name=f"{graph_name.lower()}-{kind}", graph_name=graph_name, kind=kind,
                               nodes=nodes, edges=edges, equations=equations)


_DCM = {d.name: d for d in (_dcm(g, k) for g in _GRAPHS for k in KINDS)}
#: name -> ``definition(mechanism_seed)``; only the ladder's mechanisms depend on the seed.
_DEFINITIONS: Mapping[str, Callable[[int], StructuralEquations]] = MappingProxyType({
    **{name: (lambda seed, _d=d: _d) for name, d in _DCM.items()},
    **{f"ladder-{k}": partial(ladder_equations, k) for k in KINDS}})
#: every name :class:`TabularConfig` accepts (lower case; the config lower-cases what it is given)
TABULAR_NAMES: tuple[str, ...] = tuple(sorted(_DEFINITIONS))


class TabularConfig(BaseModel):
    """Options of the ``"tabular"`` data set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="the SCM, e.g. 'chain-nonlinear' or 'ladder-nonadditive' "
                                  "(case-insensitive)")
    mechanism_seed: int = Field(0, description="seed of the ladder's random mechanisms "
                                               "(the DCM SCMs have none)")
    dtype: Literal["float32", "float64"] = Field("float32", description="dtype of load()'s rows")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name.lower() not in _DEFINITIONS:
            raise ValueError(f"unknown tabular SCM {name!r}; known: {', '.join(TABULAR_NAMES)}")
        return name.lower()


@DATASETS.register("tabular")
class TabularSCM(GroundTruth):
    """A fully known SCM ``x_i = f_i(pa_i, u_i)``, ``u_i ~ N(0, I)`` independent, built from a
    :class:`TabularConfig` (or its fields); equations in :attr:`definition`, noise in ``Draw.exogenous``."""

    Config = TabularConfig

    def __init__(self, config: TabularConfig | None = None, **options: Any) -> None:
        super().__init__(config, **options)
        self.definition = _DEFINITIONS[self.config.name](self.config.mechanism_seed)

    # ----------------------------------------------------------------------------- structure
    scm_name = property(lambda self: self.definition.name, doc="e.g. 'chain-nonlinear'")
    graph_name = property(lambda self: self.definition.graph_name, doc="e.g. 'chain'")
    kind = property(lambda self: self.definition.kind, doc="'nonlinear' or 'nonadditive'")
    nodes = property(lambda self: self.definition.nodes, doc="nodes in topological order")
    edges = property(lambda self: self.definition.edges, doc="edges (parent, child)")
    equations = property(lambda self: self.definition.equations, doc="node -> f(parents, u)")
    event_shapes = property(lambda self: self.definition.event_shapes, doc="node -> row shape")

    @property
    def intervention_nodes(self) -> tuple[str, ...]:
        return self.definition.intervention_nodes

    def graph(self) -> nx.DiGraph:
        """A fresh ``nx.DiGraph`` of the SCM (no mechanisms attached)."""
        return self.definition.graph.copy()

    as_networkx = graph  # the name the benchmark scripts use

    def parents(self, node: str) -> tuple[str, ...]:
        """Parents of ``node`` in causaldiff's order (``sorted``)."""
        self._check_node(node)
        return self.definition.parents(node)

    def descendants(self, node: str) -> tuple[str, ...]:
        """Strict descendants of ``node``, in topological order."""
        self._check_node(node)
        desc = nx.descendants(self.definition.graph, node)
        return tuple(v for v in self.nodes if v in desc)

    @property
    def roots(self) -> tuple[str, ...]:
        return tuple(v for v in self.nodes if not self.definition.parents(v))

    def _check_node(self, node: str) -> None:
        if node not in self.event_shapes:
            raise KeyError(f"SCM {self.scm_name!r} has no node {node!r}; nodes are {self.nodes}")

    # ----------------------------------------------------------------------------- sampling
    def sample_noise(self, n: int, generator: torch.Generator | None = None, *,
                     dtype: torch.dtype = torch.float64,
                     device: torch.device | str | None = None) -> dict[str, Tensor]:
        """``n`` rows of noise ``u_i ~ N(0, I)``, node by node in order, drawn on the CPU (where
        ``generator`` lives), then moved to ``device``."""
        if int(n) < 1:
            raise ValueError(f"n must be a positive integer, got {n}")
        return {v: torch.randn((int(n), *self.event_shapes[v]), generator=generator, dtype=dtype).to(device)
                for v in self.nodes}

    def simulate(self, noise: Mapping[str, Tensor],
                 do: Mapping[str, Any] | None = None) -> dict[str, Tensor]:
        """``noise`` pushed through the SCM under ``do``: a hard value (scalar, ``(n, *event)`` or
        ``event``) sets its node; ``Shift`` and callables act on the natural value. With a draw's
        noise this is its exact counterfactual."""
        ivs = self._interventions(do)
        n, ref = self._check_noise(noise)
        values: dict[str, Tensor] = {}
        for v in self.nodes:
            iv = ivs.get(v)
            if iv is not None and iv.cuts_edges:
                values[v] = self._hard_value(v, iv.value, n, ref)
                continue
            natural = self.equations[v]({p: values[p] for p in self.parents(v)}, noise[v])
            values[v] = natural if iv is None else intervene(
                iv, v, natural, n, self.event_shapes[v], natural.dtype, natural.device)
        return values

    def _interventions(self, do: Mapping[str, Any] | None) -> dict[str, Any]:
        unknown = [v for v in (do or {}) if v not in self.event_shapes]
        if unknown:
            raise InterventionError(f"SCM {self.scm_name!r}: cannot intervene on unknown nodes "
                                    f"{unknown}; nodes are {self.nodes}")
        return {v: as_intervention(v, x) for v, x in (do or {}).items()}

    def _check_noise(self, noise: Mapping[str, Tensor]) -> tuple[int, Tensor]:
        missing = [v for v in self.nodes if v not in noise]
        if missing:
            raise KeyError(f"SCM {self.scm_name!r}: noise is missing nodes {missing}")
        ref = noise[self.nodes[0]]
        n = ref.shape[0]
        for v in self.nodes:
            want = (n, *self.event_shapes[v])
            if tuple(noise[v].shape) != want:
                raise ValueError(f"SCM {self.scm_name!r}: noise of {v!r} has shape "
                                 f"{tuple(noise[v].shape)}, expected {want}")
        return n, ref

    def _hard_value(self, node: str, value: Any, n: int, ref: Tensor) -> Tensor:
        shape = (n, *self.event_shapes[node])
        val = torch.as_tensor(value, dtype=ref.dtype, device=ref.device)
        if val.shape not in (torch.Size(()), torch.Size(shape), torch.Size(shape[1:])):
            raise InterventionError(
                f"SCM {self.scm_name!r}: do({node}) value has shape {tuple(val.shape)}; expected a "
                f"scalar, {shape[1:]} or {shape}")
        return val.expand(shape).clone()

    def sample(self, n: int, generator: torch.Generator | None = None, *,
               do: Mapping[str, Any] | None = None, dtype: torch.dtype = torch.float64,
               device: torch.device | str | None = None) -> Draw:
        """Observational (or, with ``do``, interventional) rows from fresh noise, with the noise."""
        noise = self.sample_noise(n, generator, dtype=dtype, device=device)
        return Draw(self.simulate(noise, do=do), noise)

    def load(self, split: str, n: int, seed: int = 0) -> Draw:
        """``n`` rows of ``split`` in ``config.dtype``, from the generator seeded ``split_seed``."""
        gen = torch.Generator().manual_seed(split_seed(seed, split))
        return self.sample(n, gen, dtype=getattr(torch, self.config.dtype))

    def counterfactual(self, draw: Draw, do: Mapping[str, Any]) -> dict[str, Tensor]:
        """The exact counterfactual: ``draw``'s noise pushed through the SCM under ``do``."""
        return self.simulate(draw.exogenous, do=do)

    # ----------------------------------------------------------------------------- Pyro binding
    def additive_parts(self, node: str) -> tuple[Callable[..., Tensor], float]:
        """``(loc, scale)`` of an additive-noise node ``x = loc(pa) + scale * u``, read off the true
        equation: ``loc(pa) = f(pa, 0)`` (parents as keywords), ``scale = f(pa, 1) - f(pa, 0)``."""
        if self.kind != "nonlinear":
            raise ValueError(f"SCM {self.scm_name!r} is {self.kind}: its noise is not additive")
        self._check_node(node)
        f = self.equations[node]
        parents = self.parents(node)
        if not parents:
            return (lambda: torch.zeros(())), 1.0
        probe = {p: torch.zeros((1, *self.event_shapes[p]), dtype=torch.float64) for p in parents}
        zero = torch.zeros((1, *self.event_shapes[node]), dtype=torch.float64)
        scale = (f(probe, zero + 1.0) - f(probe, zero)).reshape(-1)
        if not torch.allclose(scale, scale[:1].expand_as(scale)):
            raise ValueError(f"SCM {self.scm_name!r}: node {node!r} has a non-constant noise scale")

        def loc(**pa: Tensor) -> Tensor:
            first = pa[parents[0]]
            shape = (first.shape[0], *self.event_shapes[node]) if first.dim() else self.event_shapes[node]
            return f(pa, torch.zeros(shape, dtype=first.dtype, device=first.device))

        return loc, float(scale[0])

    def true_mechanisms(self) -> dict[str, Any]:
        """Pyro mechanisms of the TRUE equations of an additive-noise SCM of scalar nodes (else
        ``{}``): roots ``Normal(0, 1)``, the others ``Normal(loc(pa), scale)``."""
        import pyro.distributions as dist

        if self.kind != "nonlinear" or any(self.event_shapes[v] for v in self.nodes):
            return {}
        mechanisms: dict[str, Any] = {}
        for v in self.nodes:
            parents = self.parents(v)
            if not parents:
                mechanisms[v] = dist.Normal(0.0, 1.0)
                continue
            loc, scale = self.additive_parts(v)
            mechanisms[v] = named_callable(lambda pa, _loc=loc, _s=scale: dist.Normal(_loc(**pa), _s),
                                           parents, name=f"mechanism[{self.scm_name}:{v}]")
        return mechanisms

    def scm_graph(self) -> nx.DiGraph:
        """:meth:`graph` with every node bound to its true mechanism: ``cd.SCM(scm.scm_graph())``
        is the true model (additive-noise SCMs of scalar nodes only)."""
        mechanisms = self.true_mechanisms()
        if not mechanisms:
            raise ValueError(f"SCM {self.scm_name!r} ({self.kind}, event shapes "
                             f"{dict(self.event_shapes)}) has no Pyro form: only additive-noise "
                             "SCMs of scalar nodes bind to location-scale distributions")
        g = self.graph()
        nx.set_node_attributes(g, mechanisms, "mechanism")
        return g

    def __repr__(self) -> str:
        return (f"TabularSCM({self.scm_name!r}, nodes={list(self.nodes)}, "
                f"edges={[f'{a}->{b}' for a, b in self.edges]})")


#: The eight SCMs of the DCM benchmark, keyed ``"<graph>-<kind>"`` (graph names lower-case).
TABULAR_SCMS: Mapping[str, TabularSCM] = MappingProxyType(
    {name: TabularSCM(name=name) for name in _DCM})


def get_tabular_scm(name: str, seed: int = 0) -> TabularSCM:
    """``TabularSCM(name=name, mechanism_seed=seed)`` (one of :data:`TABULAR_SCMS` for the DCM
    names); ``KeyError`` naming the known SCMs for an unknown name."""
    key = name.lower()
    if key in TABULAR_SCMS:
        return TABULAR_SCMS[key]
    if key not in _DEFINITIONS:
        raise KeyError(f"unknown tabular SCM {name!r}; known: {', '.join(TABULAR_NAMES)}")
    return TabularSCM(name=key, mechanism_seed=seed)


__all__ = ["TabularConfig", "TabularSCM", "TABULAR_SCMS", "TABULAR_NAMES", "get_tabular_scm", "KINDS"]
