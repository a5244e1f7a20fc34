"""The data-set contract: test classes every registered data set's tests inherit (after diffusers'
common scheduler tests)::

    class TestShapes(GroundTruthContract):
        dataset_class = ShapesSCM
        config = ShapesConfig(resolution=16)

:class:`DataSetContract` checks any data set (``Config``, ``quick``, seeded ``load``);
:class:`GroundTruthContract` adds the laws truth satisfies: a null intervention returns the draw,
non-descendants are unchanged bit-for-bit, a hard ``do`` is effective, and a slice of a draw has
the slice of its counterfactual (to a few hundred ulps: BLAS kernels change with the row count).
Intervention values come from the draw itself (another row's), so they lie in the support.
"""

from __future__ import annotations

from typing import ClassVar

import networkx as nx
import pytest
import torch
from pydantic import BaseModel, ValidationError
from torch import Tensor

from ..datasets.base import DataSet, Draw, GroundTruth
from ..errors import InterventionError
from ..registry import DATASETS


#: the rounding a batch-size change may bring, in units of the dtype's epsilon (relative and absolute)
ROUNDING_ULPS = 256


def _equal(a: dict[str, Tensor], b: dict[str, Tensor], atol: float | None = 0.0) -> list[str]:
    """The keys whose tensors differ (dtype, shape, or values beyond ``atol``; ``None``: beyond
    :data:`ROUNDING_ULPS` epsilons of each floating dtype, relative and absolute)."""
    bad = [k for k in a if k not in b or a[k].dtype != b[k].dtype or a[k].shape != b[k].shape]
    for k in a.keys() - set(bad):
        tol = ROUNDING_ULPS * torch.finfo(a[k].dtype).eps if atol is None and a[k].is_floating_point() else atol
        same = torch.equal(a[k], b[k]) if not tol or not a[k].is_floating_point() else \
            torch.allclose(a[k], b[k], rtol=tol, atol=tol)
        if not same:
            bad.append(k)
    return sorted(bad) + sorted(b.keys() - a.keys())


class DataSetContract:
    """What every registered data set does. Subclasses set ``dataset_class`` (and ``config``)."""

    #: the registered class under test
    dataset_class: ClassVar[type[DataSet]]
    #: its configuration (``None``: ``dataset_class.Config()``)
    config: ClassVar[BaseModel | None] = None
    #: rows per draw, split and seed the tests load
    n: ClassVar[int] = 12
    split: ClassVar[str] = "train"
    seed: ClassVar[int] = 0

    def make(self) -> DataSet:
        config = self.config if self.config is not None else self.dataset_class.Config()
        return self.dataset_class(config)

    def test_is_registered(self):
        name = self.dataset_class.name
        assert name in DATASETS and DATASETS.get(name) is self.dataset_class

    def test_config_is_frozen_and_forbids_extras(self):
        cfg = self.make().config
        assert isinstance(cfg, self.dataset_class.Config)
        with pytest.raises(ValidationError, match="no_such_option"):
            type(cfg).model_validate({**cfg.model_dump(), "no_such_option": 1})
        for field in type(cfg).model_fields:
            with pytest.raises(ValidationError, match="frozen"):
                setattr(cfg, field, getattr(cfg, field))

    def test_quick_returns_a_valid_config(self):
        quick = self.dataset_class.quick(self.make().config)
        assert isinstance(quick, self.dataset_class.Config)
        assert type(quick).model_validate(quick.model_dump()) == quick
        assert len(self.dataset_class(quick).load(self.split, 2, self.seed)) == 2

    def test_load_gives_the_graph_columns(self):
        ds = self.make()
        g = ds.graph()
        assert isinstance(g, nx.DiGraph) and nx.is_directed_acyclic_graph(g)
        assert not any("mechanism" in g.nodes[v] for v in g), "graph() must be unbound"
        draw = ds.load(self.split, self.n, self.seed)
        assert isinstance(draw, Draw) and set(draw.values) == set(g.nodes)
        assert len(draw) == self.n
        assert all(v.shape[0] == self.n for v in {**draw.values, **draw.exogenous}.values())

    def test_load_is_seeded(self):
        ds = self.make()
        a, b = ds.load(self.split, self.n, self.seed), ds.load(self.split, self.n, self.seed)
        assert _equal(a.values, b.values) == [] and _equal(a.exogenous, b.exogenous) == []
        other = ds.load(self.split, self.n, self.seed + 1)
        assert _equal(a.values, other.values), "another seed must give other rows"

    def test_truth_is_checked_by_the_truth_contract(self):
        if isinstance(self.make(), GroundTruth):
            assert isinstance(self, GroundTruthContract), \
                f"{self.dataset_class.__name__} has ground truth: test it with GroundTruthContract"


class GroundTruthContract(DataSetContract):
    """What every data set with ground truth does, exactly."""

    #: tolerance of the batch-consistency check for floating values (0: bit-identical; None: the
    #: rounding a batch-size change may bring, :data:`ROUNDING_ULPS` epsilons of the dtype)
    batch_atol: ClassVar[float | None] = None

    def draw(self) -> tuple[GroundTruth, Draw]:
        ds = self.make()
        return ds, ds.sample(self.n, torch.Generator().manual_seed(self.seed))

    def value(self, draw: Draw, node: str) -> Tensor:
        """A hard value inside the support: row 0's value of ``node`` (for every row)."""
        return draw.values[node][0]

    def test_sample_gives_the_columns_and_the_exogenous(self):
        ds, draw = self.draw()
        assert set(draw.values) == set(ds.graph().nodes) and draw.exogenous and len(draw) == self.n
        again = ds.sample(self.n, torch.Generator().manual_seed(self.seed))
        assert _equal(draw.values, again.values) == [] and _equal(draw.exogenous, again.exogenous) == []

    def test_intervention_nodes_are_nodes_with_descendants(self):
        ds = self.make()
        g = ds.graph()
        assert ds.intervention_nodes, "a data set with truth names the nodes to intervene on"
        for node in ds.intervention_nodes:
            assert node in g and nx.descendants(g, node), node

    def test_null_intervention_returns_the_draw(self):
        ds, draw = self.draw()
        nodes = ds.intervention_nodes
        for do in [{v: draw.values[v]} for v in nodes] + [{v: draw.values[v] for v in nodes}]:
            assert _equal(draw.values, ds.counterfactual(draw, do)) == [], list(do)

    def test_non_descendants_are_unchanged(self):
        ds, draw = self.draw()
        g = ds.graph()
        for node in ds.intervention_nodes:
            cf = ds.counterfactual(draw, {node: self.value(draw, node)})
            keep = set(g.nodes) - nx.descendants(g, node) - {node}
            assert _equal({v: draw.values[v] for v in keep}, {v: cf[v] for v in keep}) == [], node
            changed = [v for v in nx.descendants(g, node) if not torch.equal(cf[v], draw.values[v])]
            assert changed, f"do({node}) changed none of its descendants"

    def test_hard_do_is_effective(self):
        ds, draw = self.draw()
        for node in ds.intervention_nodes:
            value = self.value(draw, node)
            per_row = draw.values[node].roll(1, 0)
            for do, want in (({node: value}, value.expand_as(draw.values[node])), ({node: per_row}, per_row)):
                cf = ds.counterfactual(draw, do)
                assert cf[node].dtype == draw.values[node].dtype and torch.equal(cf[node], want), node

    def test_a_slice_has_the_slice_of_the_counterfactual(self):
        ds, draw = self.draw()
        index = torch.tensor([self.n - 1, 0, 2, 3])
        for node in ds.intervention_nodes:
            per_row = draw.values[node].roll(1, 0)
            whole = ds.counterfactual(draw, {node: per_row})
            part = ds.counterfactual(draw[index], {node: per_row[index]})
            assert _equal({k: v[index] for k, v in whole.items()}, part, self.batch_atol) == [], node

    def test_unknown_node_is_refused_by_name(self):
        ds, draw = self.draw()
        with pytest.raises(InterventionError, match="no_such_node"):
            ds.counterfactual(draw, {"no_such_node": 0.0})


__all__ = ["DataSetContract", "GroundTruthContract"]
