"""The data-set contract: rows to fit on and, where the data set knows it, the ground truth.

* :class:`DataSet`: a registered source of rows with a frozen ``Config`` and ``quick(config)``;
  ``load(split, n, seed)`` returns a :class:`Draw` (MNIST: a data set without truth).
* :class:`GroundTruth`: a data set that *is* a known SCM: it samples rows with every exogenous
  variable (``Draw.exogenous``) and answers ``counterfactual(draw, do)`` exactly by re-running its
  mechanisms on them under the intervention; ``true_mechanisms()`` gives the causaldiff mechanisms
  of the nodes that have one.

``isinstance(ds, GroundTruth)`` says whether truth exists. Imports nothing from the top-level package.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import networkx as nx
import torch
from pydantic import BaseModel
from torch import Tensor

from ..errors import DataError

SPLITS = ("train", "test")


@dataclass(frozen=True)
class Draw:
    """Rows of a data set: the observed ``values`` (one batch-first tensor per node) and the
    ``exogenous`` variables that produced them (empty for a data set without truth)."""

    values: dict[str, Tensor]
    exogenous: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sizes = {k: v.shape[0] for k, v in {**self.values, **self.exogenous}.items()}
        if len(set(sizes.values())) > 1:
            raise DataError(f"a Draw's tensors must share their batch size, got {sizes}")

    def __len__(self) -> int:
        return next(iter(self.values.values())).shape[0] if self.values else 0

    def __getitem__(self, index: Any) -> "Draw":
        """Rows ``index`` (int, slice, index tensor or mask) of every tensor; stays batched."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Draw({k: v[index] for k, v in self.values.items()},
                    {k: v[index] for k, v in self.exogenous.items()})

    def to(self, device: torch.device | str) -> "Draw":
        return Draw({k: v.to(device) for k, v in self.values.items()},
                    {k: v.to(device) for k, v in self.exogenous.items()})


def split_seed(seed: int, split: str) -> int:
    """The generator seed of a split: ``seed`` for train, ``seed + 1`` for test."""
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    return seed + SPLITS.index(split)


class DataSet(ABC):
    """A registered data set; instances are built from a validated ``Config``."""

    #: registry key (set by ``DATASETS.register``)
    name: ClassVar[str | None] = None
    #: the options a spec may give (frozen, ``extra="forbid"``)
    Config: ClassVar[type[BaseModel]]
    #: what the codes of categorical nodes stand for (``{"shape": ("square", ...)}``: shape 0 is a square)
    value_labels: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(self, config: BaseModel | None = None, **options: Any) -> None:
        if config is not None and options:
            raise TypeError("pass either a Config or keyword options, not both")
        self.config = config if config is not None else self.Config(**options)

    @classmethod
    def quick(cls, config: BaseModel) -> BaseModel:
        """The tiny setting of ``config`` for tests and ``--quick`` (default: unchanged)."""
        return config

    @classmethod
    def rows_available(cls, config: BaseModel, split: str) -> int | None:
        """How many rows ``split`` holds under ``config`` (None: as many as asked for); a quick
        spec asks for no more."""
        return None

    @abstractmethod
    def graph(self) -> nx.DiGraph:
        """The causal DAG over the data set's columns (no mechanisms bound)."""

    @abstractmethod
    def load(self, split: str, n: int, seed: int = 0) -> Draw:
        """``n`` rows of ``split`` ("train" or "test"), reproducible from ``seed``."""


class GroundTruth(DataSet):
    """A data set that is a known SCM: exact interventional and counterfactual truth."""

    #: nodes a benchmark intervenes on (default: every node with descendants)
    @property
    def intervention_nodes(self) -> tuple[str, ...]:
        g = self.graph()
        return tuple(sorted(v for v in g.nodes if nx.descendants(g, v)))

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator | None = None) -> Draw:
        """``n`` observational rows with their exogenous variables."""

    @abstractmethod
    def counterfactual(self, draw: Draw, do: Mapping[str, Any]) -> dict[str, Tensor]:
        """The exact counterfactual values of every node of ``draw`` under ``do``."""

    def true_mechanisms(self) -> dict[str, Any]:
        """causaldiff mechanisms (Pyro distributions or callables) of the nodes whose true
        mechanism is expressible as one; ``{}`` when none is."""
        return {}

    def load(self, split: str, n: int, seed: int = 0) -> Draw:
        return self.sample(n, torch.Generator().manual_seed(split_seed(seed, split)))

    def quantile_grid(self, node: str, num: int = 20, *, n_draws: int = 5000,
                      generator: torch.Generator | None = None, low: float = 0.1,
                      high: float = 0.9) -> Tensor:
        """``num`` intervention values ``linspace(q_low, q_high)`` of ``node``'s true marginal
        (DCM's protocol, BENCHMARKS.md section 2), from ``n_draws`` observational draws in float64.
        Scalar nodes give ``(num,)``; vector nodes the grid per coordinate, ``(num, *event)``."""
        if node not in self.graph().nodes:
            raise DataError(f"data set {self.name!r} has no node {node!r}")
        if not 0.0 <= low < high <= 1.0:
            raise DataError(f"need 0 <= low < high <= 1, got low={low}, high={high}")
        values = self.sample(n_draws, generator).values[node]
        x = values.reshape(n_draws, -1).double()
        q = torch.quantile(x, torch.tensor([low, high], dtype=x.dtype), dim=0)  # (2, d)
        w = torch.linspace(0.0, 1.0, num, dtype=x.dtype).unsqueeze(-1)  # (num, 1)
        return (q[0] + w * (q[1] - q[0])).reshape(num, *values.shape[1:])


__all__ = ["Draw", "DataSet", "GroundTruth", "SPLITS", "split_seed"]
