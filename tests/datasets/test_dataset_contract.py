"""Every registered data set passes the data-set contract (causaldiff.testing.dataset_contract)."""

from __future__ import annotations

import pytest

from causaldiff.datasets import MNIST, ShapesConfig, ShapesSCM, TabularConfig, TabularSCM
from causaldiff.datasets.mnist import ENV_VAR, locate
from causaldiff.datasets.tabular import TABULAR_NAMES
from causaldiff.registry import DATASETS
from causaldiff.testing.dataset_contract import DataSetContract, GroundTruthContract


def _tabular_contract(name: str, mechanism_seed: int = 0) -> type:
    attrs = {"dataset_class": TabularSCM,
             "config": TabularConfig(name=name, mechanism_seed=mechanism_seed)}
    return type(f"TestTabular_{name.replace('-', '_')}", (GroundTruthContract,), attrs)


for _name in TABULAR_NAMES:  # one contract class per tabular SCM, e.g. TestTabular_chain_nonlinear
    globals()[f"TestTabular_{_name.replace('-', '_')}"] = _tabular_contract(_name, mechanism_seed=1)


class TestShapes(GroundTruthContract):
    dataset_class = ShapesSCM
    config = ShapesConfig(resolution=16)


class TestShapesAt28(GroundTruthContract):
    dataset_class = ShapesSCM
    config = ShapesConfig(resolution=28, rotation_range=0.5)
    seed = 3


@pytest.mark.skipif(locate("test") is None,
                    reason=f"MNIST files not found: set {ENV_VAR} to their folder "
                           "(e.g. ../shared/data/mnist)")
class TestMNIST(DataSetContract):
    dataset_class = MNIST
    split = "test"


def _subclasses(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


def test_every_registered_data_set_has_a_contract_test():
    """The package's own data sets here; one registered from outside it (benchmarks/morphomnist/) beside it."""
    tested = {c.dataset_class.name for c in _subclasses(DataSetContract) if hasattr(c, "dataset_class")}
    own = {n for n in DATASETS.names() if DATASETS.get(n).__module__.startswith("causaldiff.")}
    missing = sorted(own - tested)
    assert not missing, f"registered data sets without a contract test class: {missing}"


def test_every_tabular_scm_has_a_contract_class():
    names = {c.config.name for c in _subclasses(GroundTruthContract) if c.__dict__.get("dataset_class") is TabularSCM}
    assert names == set(TABULAR_NAMES)
