"""Systems under evaluation: one method that is fitted on rows and answers interventional and
counterfactual queries, whatever it is built from.

* :class:`System`: the protocol (``name``, ``fit``, ``counterfactual``, ``interventional``);
* :class:`CausaldiffSystem`: a :class:`causaldiff.SCM` over a known graph, one mechanism per node
  from a factory ``make_mechanism(node, is_root, seed)``;
* :class:`InferenceVariant`: a fitted causaldiff system queried with other inference settings;
* :class:`DowhySystem`: DoWhy gcm (optional dependency, imported when the system is built) with
  auto-assigned invertible mechanisms; counterfactuals by DoWhy's own abduction.

Rows are dicts of batch-first tensors (scalar nodes ``(n,)``, others ``(n, *shape)``); ``do`` maps
nodes to hard values (a scalar, an event-shaped tensor or a per-row tensor).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import networkx as nx
import numpy as np
import torch
from torch import Tensor

from causaldiff.mechanisms.diffusion import DiffusionMechanism
from causaldiff.scm import SCM

Rows = Mapping[str, Tensor]

DOWHY_MISSING = "DoWhy is not installed (pip install 'causaldiff[bench]')"


@runtime_checkable
class System(Protocol):
    """One method under test: fit on rows, then answer queries about ``do`` (hard values)."""

    name: str

    def fit(self, train: Rows, seed: int) -> None:
        """Fit on observational rows; ``seed`` makes the fit reproducible."""

    def counterfactual(self, factual: Rows, do: Mapping[str, Any]) -> Rows:
        """What each factual row would have been under ``do``."""

    def interventional(self, n: int, do: Mapping[str, Any], seed: int) -> Rows:
        """``n`` samples of ``P(V | do)``, reproducible from ``seed``."""


class CausaldiffSystem:
    """A ``causaldiff.SCM`` over ``graph`` with the mechanism ``make_mechanism(node, is_root, seed)``
    on every node (built afresh at each ``fit``), fitted and queried on ``device`` in ``dtype``."""

    def __init__(self, name: str, graph: nx.DiGraph, make_mechanism: Callable[[str, bool, int], Any],
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        if not isinstance(graph, nx.DiGraph) or not nx.is_directed_acyclic_graph(graph):
            raise TypeError(f"system {name!r}: graph must be a networkx.DiGraph without cycles")
        self.name, self.graph, self.make_mechanism = name, graph.copy(), make_mechanism
        self.device, self.dtype = torch.device(device), dtype
        self.model: SCM | None = None

    def _cast(self, values: Rows) -> dict[str, Tensor]:
        return {k: v.to(self.device, self.dtype) for k, v in values.items()}

    def _do(self, do: Mapping[str, Any]) -> dict[str, Tensor]:
        """Values as tensors on the system's device and dtype (a Python float would be read as
        float32 by the SCM, whatever the model's dtype)."""
        return {node: torch.as_tensor(v).to(self.device, self.dtype) for node, v in do.items()}

    def _fitted(self) -> SCM:
        if self.model is None:
            raise RuntimeError(f"system {self.name!r} is not fitted: call fit(train, seed) first")
        return self.model

    def fit(self, train: Rows, seed: int) -> None:
        mechs = {v: self.make_mechanism(v, self.graph.in_degree(v) == 0, seed) for v in self.graph.nodes}
        model = SCM(self.graph.copy(), mechanisms=mechs).to(self.device)
        model.fit(self._cast(train))
        self.model = model

    def counterfactual(self, factual: Rows, do: Mapping[str, Any]) -> Rows:
        return self._fitted().counterfactual(self._cast(factual), do=self._do(do))

    def interventional(self, n: int, do: Mapping[str, Any], seed: int) -> Rows:
        return self._fitted().interventional_samples(n, do=self._do(do), seed=seed)


class InferenceVariant(CausaldiffSystem):
    """A fitted :class:`CausaldiffSystem` queried with other inference settings on its diffusion
    nodes (``DiffusionMechanism.with_inference(**settings)``: the networks are shared, nothing is
    refitted). ``fit`` takes the base system's fitted model, so list the base first in a protocol."""

    def __init__(self, name: str, base: CausaldiffSystem, **settings: Any) -> None:
        super().__init__(name, base.graph, base.make_mechanism, base.device, base.dtype)
        self.base, self.settings = base, dict(settings)

    def fit(self, train: Rows, seed: int) -> None:
        model = self.base._fitted()
        diffusion = {v: m for v, m in model.mechanisms.items() if isinstance(m, DiffusionMechanism)}
        if not diffusion:
            raise TypeError(f"system {self.name!r}: the base system {self.base.name!r} has no diffusion node")
        self.model = model.with_mechanisms({v: m.with_inference(**self.settings) for v, m in diffusion.items()})


def dowhy_version() -> str | None:
    """DoWhy's version, or None when it is not installed."""
    try:
        import dowhy
    except ImportError:
        return None
    return getattr(dowhy, "__version__", "unknown")


def configure_dowhy(n_jobs: int = 1, progress_bars: bool = False) -> None:
    """DoWhy gcm's global settings: joblib workers and progress bars (DoWhy must be installed)."""
    try:
        from dowhy import gcm
    except ImportError as e:
        raise ImportError(DOWHY_MISSING) from e
    (gcm.config.enable_progress_bars if progress_bars else gcm.config.disable_progress_bars)()
    gcm.config.set_default_n_jobs(n_jobs)


class _quiet(warnings.catch_warnings):
    """Silence third-party (DoWhy / scikit-learn / pandas) warnings inside the baseline."""

    def __enter__(self):
        out = super().__enter__()
        warnings.simplefilter("ignore")
        return out


class DowhySystem:
    """DoWhy gcm: an ``InvertibleStructuralCausalModel`` over ``graph`` with auto-assigned mechanisms
    (``quality``, default GOOD), counterfactuals by DoWhy's abduction of the observed rows. A
    node of shape ``event_shapes[v]`` becomes one DoWhy column per coordinate (``v_0, v_1, ...``)."""

    name = "dowhy"

    def __init__(self, graph: nx.DiGraph, event_shapes: Mapping[str, tuple[int, ...]],
                 quality: str = "GOOD") -> None:
        try:
            from dowhy import gcm
        except ImportError as e:
            raise ImportError(DOWHY_MISSING) from e
        missing = [v for v in graph.nodes if v not in event_shapes]
        if missing:
            raise ValueError(f"DowhySystem: event_shapes misses nodes {missing}")
        self.gcm, self.quality = gcm, getattr(gcm.auto.AssignmentQuality, quality)
        self.nodes = tuple(graph.nodes)
        self.shapes = {v: tuple(event_shapes[v]) for v in self.nodes}
        self.columns = {v: [v] if not s else [f"{v}_{i}" for i in range(math.prod(s))]
                        for v, s in self.shapes.items()}
        self.graph = nx.DiGraph()
        for v in self.nodes:
            self.graph.add_nodes_from(self.columns[v])
        for a, b in graph.edges:
            self.graph.add_edges_from((ca, cb) for ca in self.columns[a] for cb in self.columns[b])
        self.model = None

    def _frame(self, values: Rows):
        import pandas as pd

        data = {}
        for v in self.nodes:
            x = values[v].detach().to("cpu", torch.float64).numpy().reshape(values[v].shape[0], -1)
            for i, c in enumerate(self.columns[v]):
                data[c] = x[:, i]
        return pd.DataFrame(data)

    def _unframe(self, df) -> dict[str, Tensor]:
        return {v: torch.tensor(df[self.columns[v]].to_numpy(dtype=np.float64, copy=True))
                .reshape(len(df), *self.shapes[v]) for v in self.nodes}

    def _interventions(self, do: Mapping[str, Any]) -> dict[str, Callable]:
        """DoWhy's per-column interventions (constant functions) for per-row-constant values."""
        out = {}
        for node, value in do.items():
            flat = torch.as_tensor(value, dtype=torch.float64).reshape(-1).tolist()
            out.update({c: (lambda x, _v=float(val): _v) for c, val in zip(self.columns[node], flat, strict=True)})
        return out

    def _fitted(self):
        if self.model is None:
            raise RuntimeError("system 'dowhy' is not fitted: call fit(train, seed) first")
        return self.model

    def fit(self, train: Rows, seed: int) -> None:
        gcm = self.gcm
        np.random.seed(seed)
        with _quiet():
            model = gcm.InvertibleStructuralCausalModel(self.graph.copy())
            df = self._frame(train)
            gcm.auto.assign_causal_mechanisms(model, df, quality=self.quality)
            gcm.fit(model, df)
        self.model = model

    def counterfactual(self, factual: Rows, do: Mapping[str, Any]) -> Rows:
        with _quiet():
            out = self.gcm.counterfactual_samples(self._fitted(), self._interventions(do),
                                                  observed_data=self._frame(factual))
        return self._unframe(out)

    def interventional(self, n: int, do: Mapping[str, Any], seed: int) -> Rows:
        model = self._fitted()
        np.random.seed(seed)
        with _quiet():
            out = self.gcm.interventional_samples(model, self._interventions(do), num_samples_to_draw=n)
        return self._unframe(out)


__all__ = ["Rows", "System", "CausaldiffSystem", "InferenceVariant", "DowhySystem", "dowhy_version", "configure_dowhy", "DOWHY_MISSING"]
