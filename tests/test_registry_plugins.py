"""Data sets defined outside the package resolve by name: through the entry-point group
``causaldiff.datasets`` of an installed distribution, or registered when their module is imported;
one that cannot be imported gives one error naming it and why."""

from __future__ import annotations

import importlib
import sys
import tomllib
from pathlib import Path

import pytest

from causaldiff.errors import RegistryError, SpecError
from causaldiff.registry import DATASETS
from causaldiff.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = '''
from pydantic import BaseModel, ConfigDict
from causaldiff.registry import DATASETS

@DATASETS.register("toy_plugin")
class ToyPlugin:
    class Config(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def quick(cls, config):
        return config
'''


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A distribution on ``sys.path`` declaring two data sets: one importable, one not."""
    (tmp_path / "toy_plugin_module.py").write_text(PLUGIN)
    info = tmp_path / "toy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[causaldiff.datasets]\ntoy_plugin = toy_plugin_module\n"
                                           "broken_plugin = no_such_module_of_causaldiff\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    if "toy_plugin" in DATASETS._classes:
        DATASETS.unregister("toy_plugin")
    sys.modules.pop("toy_plugin_module", None)


def test_an_entry_point_registers_its_data_set_on_first_lookup(installed):
    assert "toy_plugin" not in DATASETS.names()
    assert DATASETS.get("toy_plugin").__name__ == "ToyPlugin" and "toy_plugin" in DATASETS.names()
    spec = parse_spec({"name": "s", "dataset": {"kind": "toy_plugin"}, "nodes": {"x": {"mechanism": "normal"}}})
    assert spec.dataset.kind == "toy_plugin"


def test_an_entry_point_that_cannot_be_imported_gives_one_error_naming_the_data_set(installed):
    with pytest.raises(RegistryError, match=r"dataset 'broken_plugin' is declared by the entry point "
                                            r"'no_such_module_of_causaldiff'.*cannot be imported: ModuleNotFoundError"):
        DATASETS.get("broken_plugin")
    with pytest.raises(SpecError, match=r"dataset 'broken_plugin' is declared .* cannot be imported"):
        parse_spec({"name": "s", "dataset": {"kind": "broken_plugin"}, "nodes": {"x": {"mechanism": "normal"}}})
    with pytest.raises(RegistryError, match=r"unknown dataset 'nope'; registered: .*; declared by entry points "
                                            r"\(causaldiff.datasets\): .*toy_plugin"):
        DATASETS.get("nope")


def test_the_package_declares_the_morphomnist_benchmark_data_set_which_registers_on_import():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["causaldiff.datasets"]
    assert declared == {"morphomnist": "benchmarks.morphomnist.dataset"}
    module = importlib.import_module(declared["morphomnist"])
    assert DATASETS.get("morphomnist") is module.MorphoMNIST
