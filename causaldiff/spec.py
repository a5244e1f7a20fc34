"""Declarative SCM specs (``graphs/*.toml``): validated, frozen, and unable to run code.

A spec names its dataset, its nodes with their parents, and each node's mechanism type from a
fixed registry with its hyperparameters::

    name = "mnist"
    [dataset]
    kind = "mnist"
    n_train = 60000
    [nodes.digit]
    mechanism = "categorical"
    [nodes.image]
    parents = ["digit"]
    mechanism = "diffusion"
    options = { net = "unet", base_channels = 64 }

Mechanism types: ``categorical`` (learned root class frequencies), ``additive_noise`` (MLP
additive-noise model), ``diffusion`` (a diffusion mechanism), ``normal`` (a fixed Normal root:
``options = {loc, scale}``), ``truth`` (the dataset's own true mechanism, for datasets that
know it). Nothing in a spec is imported or evaluated.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

import networkx as nx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import GraphError

MechanismType = Literal["categorical", "additive_noise", "diffusion", "normal", "truth"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatasetSpec(_Frozen):
    """Where the rows come from."""

    kind: Literal["mnist", "shapes", "tabular"]
    name: str | None = Field(None, description="tabular SCM name, e.g. 'chain-nonlinear'")
    n_train: int = Field(5000, ge=1)
    n_test: int = Field(1000, ge=1)
    root: str | None = Field(None, description="MNIST folder (default: CAUSALDIFF_MNIST_DIR or ../shared/data/mnist)")
    resolution: int | None = Field(None, ge=8, le=256, description="shapes: image size in pixels")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> "DatasetSpec":
        if self.kind == "tabular" and not self.name:
            raise ValueError("a tabular dataset needs `name` (e.g. 'chain-nonlinear')")
        return self


class NodeSpec(_Frozen):
    parents: tuple[str, ...] = ()
    mechanism: MechanismType
    options: dict[str, Any] = Field(default_factory=dict)


class GraphSpec(_Frozen):
    """A whole declarative SCM."""

    name: str
    description: str = ""
    dataset: DatasetSpec
    nodes: dict[str, NodeSpec]

    @model_validator(mode="after")
    def _check(self) -> "GraphSpec":
        if not self.nodes:
            raise ValueError("a spec needs at least one node")
        for node, ns in self.nodes.items():
            unknown = [p for p in ns.parents if p not in self.nodes]
            if unknown:
                raise ValueError(f"node {node!r}: unknown parent(s) {unknown}")
            if node in ns.parents:
                raise ValueError(f"node {node!r} lists itself as a parent")
        g = self.graph()
        if not nx.is_directed_acyclic_graph(g):
            raise ValueError(f"the spec's graph has a cycle: {nx.find_cycle(g)}")
        return self

    def graph(self) -> nx.DiGraph:
        """The DAG (no mechanisms bound)."""
        g = nx.DiGraph()
        g.add_nodes_from(self.nodes)
        for node, ns in self.nodes.items():
            g.add_edges_from((p, node) for p in ns.parents)
        return g


def load_spec(path: str | Path) -> GraphSpec:
    """Read and validate a ``.toml`` spec; errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no spec file at {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise GraphError(f"{path}: invalid TOML: {e}") from e
    try:
        return GraphSpec.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise GraphError(f"{path}: {where}: {first['msg']}") from e
