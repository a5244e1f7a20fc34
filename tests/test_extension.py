"""Acceptance of the architecture: a toy mechanism and a toy data set registered *in this module
only* are used by name in a TOML spec, fitted and queried through the CLI, and pass both contract
suites; nothing in spec.py, build.py, runs.py or cli.py knows them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import networkx as nx
import pyro.distributions as dist
import pytest
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

import causaldiff as cd
from causaldiff.cli import main
from causaldiff.datasets import Draw, GroundTruth
from causaldiff.errors import DataError, InterventionError, NotFittedError
from causaldiff.interventions import as_intervention, intervene
from causaldiff.mechanisms import Abduction, Mechanism
from causaldiff.registry import DATASETS, MECHANISMS
from causaldiff.spec import load_spec
from causaldiff.testing.dataset_contract import GroundTruthContract
from causaldiff.testing.mechanism_contract import MechanismContract

F64 = torch.float64


# ================================================================= a toy mechanism: least squares
class AffineConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    #: ridge penalty of the least-squares fit
    ridge: float = Field(0.0, ge=0.0)


@MECHANISMS.register("toy_affine")
class AffineMechanism(Mechanism):
    """``x = w . pa + b + s u`` with ``u ~ N(0, 1)``, fitted in closed form (exact abduction)."""

    learnable = True
    Config = AffineConfig

    def __init__(self, config: AffineConfig | None = None) -> None:
        super().__init__()
        self.config = config or AffineConfig()
        self.coef: Tensor | None = None  # (p + 2,): weights, bias, noise scale

    def _design(self, parents: Mapping[str, Tensor], n: int) -> Tensor:
        cols = [parents[p].reshape(n).to(F64) for p in self.fitted_parents or ()]
        return torch.stack([*cols, torch.ones(n, dtype=F64)], dim=1)

    def fit(self, x, parents, *, parent_order, desc=""):
        self.fitted_parents = tuple(parent_order)
        a = self._design(parents, x.shape[0])
        gram = a.T @ a + self.config.ridge * torch.eye(a.shape[1], dtype=F64)
        w = torch.linalg.solve(gram, a.T @ x.to(F64))
        resid = x.to(F64) - a @ w
        self.coef = torch.cat([w, resid.std().reshape(1)])

    def _loc_scale(self, parents, n):
        if self.coef is None:
            raise NotFittedError(f"node {self.node!r}: fit the toy mechanism first")
        return self._design(parents, n) @ self.coef[:-1], self.coef[-1]

    def abduction(self, parents=None):
        return Abduction.EXACT

    def sample_noise(self, n, parents, generator=None):
        return torch.randn(n, generator=generator, dtype=F64)

    def forward(self, noise, parents):
        loc, scale = self._loc_scale(parents, noise.shape[0])
        return loc + scale * noise

    def abduct(self, x, parents, generator=None):
        loc, scale = self._loc_scale(parents, x.shape[0])
        return (x.to(F64) - loc) / scale

    def event_shape(self, parents, n):
        return ()

    def value_dtype(self, parents, n):
        return F64

    def get_config(self) -> dict[str, Any]:
        return {"config": self.config.model_dump(), "parents": list(self.fitted_parents or ())}

    def state_tensors(self) -> dict[str, Tensor]:
        return {"coef": self.coef} if self.coef is not None else {}

    @classmethod
    def from_saved(cls, config, tensors):
        m = cls(AffineConfig.model_validate(config["config"]))
        m.coef, m.fitted_parents = tensors["coef"], tuple(config["parents"])
        return m


# ================================================================= a toy data set with ground truth
class LineConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    slope: float = 2.0
    noise: float = Field(0.5, gt=0.0)


@DATASETS.register("toy_line")
class ToyLine(GroundTruth):
    """``a = u_a``, ``b = slope * a + noise * u_b``: exact counterfactuals from the stored noise."""

    Config = LineConfig

    def graph(self) -> nx.DiGraph:
        return nx.DiGraph([("a", "b")])

    def sample(self, n: int, generator: torch.Generator | None = None) -> Draw:
        u = torch.randn(2, n, generator=generator, dtype=F64)
        exogenous = {"u_a": u[0], "u_b": u[1]}
        return Draw(self._run(exogenous, {}), exogenous)

    def _run(self, exogenous: Mapping[str, Tensor], do: Mapping[str, Any]) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        natural = {"a": lambda: exogenous["u_a"],
                   "b": lambda: self.config.slope * out["a"] + self.config.noise * exogenous["u_b"]}
        for node in ("a", "b"):
            value = natural[node]()
            if node in do:
                iv = as_intervention(node, do[node])
                value = intervene(iv, node, value, value.shape[0], (), F64, value.device)
            out[node] = value
        return out

    def counterfactual(self, draw: Draw, do: Mapping[str, Any]) -> dict[str, Tensor]:
        unknown = [k for k in do if k not in ("a", "b")]
        if unknown:
            raise InterventionError(f"cannot intervene on unknown node(s) {unknown}; nodes are ['a', 'b']")
        if set(draw.exogenous) != {"u_a", "u_b"}:
            raise DataError("a toy_line draw needs its exogenous u_a and u_b")
        return self._run(draw.exogenous, do)

    def true_mechanisms(self) -> dict[str, Any]:
        c = self.config
        return {"a": dist.Normal(torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64)),
                "b": lambda a: dist.Normal(c.slope * a, torch.tensor(c.noise, dtype=F64))}


def teardown_module() -> None:
    MECHANISMS.unregister("toy_affine")
    DATASETS.unregister("toy_line")


# ================================================================= both contract suites
class TestAffineContract(MechanismContract):
    mechanism_class = AffineMechanism
    parent_order = ("a",)

    def make_data(self):
        g = torch.Generator().manual_seed(0)
        a = torch.randn(200, generator=g, dtype=F64)
        return 1.5 * a - 0.3 + 0.2 * torch.randn(200, generator=g, dtype=F64), {"a": a}


class TestToyLineContract(GroundTruthContract):
    dataset_class = ToyLine
    config = LineConfig(slope=3.0)


# ================================================================= used by name through the CLI
SPEC = """
name = "toy"
description = "a toy mechanism and a toy data set known to no file of the package"

[dataset]
kind = "toy_line"
slope = 3.0
n_train = 400
n_test = 20

[nodes.a]
mechanism = "toy_affine"

[nodes.b]
parents = ["a"]
mechanism = "toy_affine"
options = { ridge = 1e-9 }
"""


def test_toy_extensions_through_the_cli(tmp_path: Path, capsys):
    spec = tmp_path / "toy.toml"
    spec.write_text(SPEC)
    run = tmp_path / "run"
    assert main(["fit", str(spec), "--out", str(run)]) == 0
    out = tmp_path / "cf.json"
    assert main(["counterfactual", str(run), "--do", "a=1.0", "--n", "5", "--out", str(out)]) == 0
    cf = json.loads(out.read_text())["counterfactual"]
    assert cf["a"] == [1.0] * 5
    assert main(["evaluate", str(run), "--n", "20"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    # a least-squares fit of a linear truth: counterfactuals within the estimation error
    assert metrics["do(a)"]["cf_mse"] < 1e-2 and metrics["do(a)"]["descendants"] == ["b"]
    capsys.readouterr()
    # the saved run reloads with the registered toy class
    scm = cd.load(run / "scm")
    assert isinstance(scm.mechanisms["b"], AffineMechanism) and scm.mechanisms["b"].config.ridge == 1e-9


def test_the_toy_options_are_validated_by_its_config(tmp_path: Path):
    spec = tmp_path / "bad.toml"
    spec.write_text(SPEC.replace("ridge = 1e-9", "ridge = -1.0").replace("slope = 3.0", "slope = 'steep'"))
    with pytest.raises(cd.GraphError) as info:
        load_spec(spec)
    text = str(info.value)
    assert "nodes.b.options.ridge" in text and "dataset.options.slope" in text
