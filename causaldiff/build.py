"""Turn a :class:`~causaldiff.spec.GraphSpec` into rows and an SCM: lookups in the registries.

Used by the CLI and the benchmarks. Adding a mechanism kind or a data set needs no change here:
both are found by name in :data:`~causaldiff.registry.MECHANISMS` and
:data:`~causaldiff.registry.DATASETS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from .datasets.base import DataSet, Draw, GroundTruth
from .errors import GraphError, SpecError
from .registry import DATASETS, MECHANISMS
from .scm import SCM
from .spec import TRUTH, DatasetSpec, GraphSpec, train_fields
from .training.checkpoint import checkpoint_dir_problem


@dataclass(frozen=True)
class Rows:
    """A split of a data set: the SCM's columns, the data set (with its truth, if it has one) and
    the draw they came from (its exogenous variables give exact counterfactuals)."""

    values: dict[str, Tensor]
    dataset: DataSet
    draw: Draw

    @property
    def truth(self) -> GroundTruth | None:
        """The data set when it knows the true SCM, else None."""
        return self.dataset if isinstance(self.dataset, GroundTruth) else None


def build_dataset(ds: DatasetSpec) -> DataSet:
    """The registered data set of a spec, built from its validated options."""
    return DATASETS.get(ds.kind)(ds.config())


def load_rows(ds: DatasetSpec, split: str, n: int | None = None) -> Rows:
    """Rows of ``split`` ("train" or "test"); ``n`` defaults to the spec's split size."""
    dataset = build_dataset(ds)
    size = n if n is not None else (ds.n_train if split == "train" else ds.n_test)
    draw = dataset.load(split, size, ds.seed)
    return Rows(draw.values, dataset, draw)


def build_mechanism(spec: GraphSpec, node: str, dataset: DataSet | None = None, run: Path | None = None) -> Any:
    """The unfitted mechanism of ``node``: its registered kind built from its options, or the
    data set's true mechanism for ``mechanism = "truth"``. ``run``: the run folder its trainings'
    ``checkpoint_dir`` (relative, see :mod:`causaldiff.spec`) lie in (None: the current folder)."""
    ns = spec.nodes[node]
    if ns.mechanism == TRUTH:
        known = dataset.true_mechanisms() if isinstance(dataset, GroundTruth) else {}
        if node not in known:
            what = f"data set {spec.dataset.kind!r}"
            raise GraphError(f"node {node!r}: mechanism 'truth' needs a true mechanism of the node, and the "
                             f"{what} has {'none' if not known else 'only ' + str(sorted(known))}")
        return known[node]
    cls = MECHANISMS.get(ns.mechanism)
    config = cls.Config.model_validate(ns.options)
    if run is not None:
        trainings = {f: t for f, t in train_fields(config).items() if t.checkpoint_dir is not None}
        for f, t in trainings.items():
            if (problem := checkpoint_dir_problem(run, t.checkpoint_dir)) is not None:
                raise SpecError(f"nodes.{node}.options.{f}.checkpoint_dir: {problem}")
        rooted = {f: t.model_copy(update={"checkpoint_dir": str(Path(run) / t.checkpoint_dir)}) for f, t in trainings.items()}
        config = config.model_copy(update=rooted) if rooted else config
    return cls.from_config(config)


def build_scm(spec: GraphSpec, dataset: DataSet | None = None, run: Path | None = None) -> SCM:
    """An unfitted SCM with the spec's graph and mechanisms (checkpoints in ``run``)."""
    return SCM(spec.graph(), {node: build_mechanism(spec, node, dataset, run) for node in spec.nodes})


__all__ = ["Rows", "build_dataset", "load_rows", "build_mechanism", "build_scm"]
