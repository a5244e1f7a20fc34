"""A fitted SCM with a small diffusion node passes the laws at its stated tolerances, and the report
shows the errors it measured; the same model as parametrised tests through ``law_tests`` (one line)."""

from __future__ import annotations

import functools

import networkx as nx
import pyro.distributions as dist
import pytest
import torch

import causaldiff as cd
from causaldiff.testing import LawViolation, Tolerances, check_counterfactual_laws, law_tests

F64 = torch.float64


@functools.cache
def fitted_diffusion_scm() -> cd.SCM:
    """x ~ N(0, 1) -> y, fitted to y = tanh(2x) + 0.3 u by a 1-D diffusion node (about 5 s)."""
    truth = nx.DiGraph([("x", "y")])
    truth.nodes["x"]["mechanism"] = dist.Normal(torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64))
    truth.nodes["y"]["mechanism"] = lambda x: dist.Normal(torch.tanh(2.0 * x), torch.tensor(0.3, dtype=F64))
    data = cd.SCM(truth).sample(1000, seed=0)
    y = cd.DiffusionMechanism(
        net=cd.MLPConfig(hidden=32, num_layers=2),
        schedule=cd.ScheduleConfig(kind="linear", num_train_timesteps=50, beta_end=0.1),
        sampler=cd.DDIMConfig(num_inference_steps=20, inversion_fixed_point_iters=3),
        train=cd.TrainConfig(steps=300, batch_size=128, lr=3e-3))
    torch.manual_seed(0)
    return cd.SCM(nx.DiGraph(truth.edges), {"x": truth.nodes["x"]["mechanism"], "y": y}).fit(data)


# the one-line pytest helper: one test per law, the model fitted once
test_the_fitted_diffusion_scm_obeys = law_tests(fitted_diffusion_scm)


def test_the_diffusion_node_passes_at_its_stated_tolerance_and_the_report_shows_the_errors():
    report = check_counterfactual_laws(fitted_diffusion_scm(), n=8)
    rows = {r["law"]: r for r in report.rows()}
    for law in ("composition", "reversibility", "round trip", "batch invariance"):
        assert rows[law]["node"] == "y" and rows[law]["tolerance"] == Tolerances().approximate == 1e-2
        assert 0.0 < rows[law]["max_error"] <= 1e-2  # an approximate abduction, measured
    assert rows["shift effectiveness"]["max_error"] == 0.0  # the engine's arithmetic is exact
    text = repr(report)
    line = next(x for x in text.splitlines() if " round trip " in x)
    assert "all passed" in text and f"max error {rows['round trip']['max_error']:.3g} (tolerance 0.01; node 'y'" in line
    print(report)


def test_the_tolerance_of_the_diffusion_node_can_be_overridden():
    scm = fitted_diffusion_scm()
    with pytest.raises(LawViolation, match=r"node 'y'") as e:
        check_counterfactual_laws(scm, n=8, tolerances=Tolerances(nodes={"y": 1e-9}))
    assert {"composition", "round trip"} <= e.value.report.failed
    assert "shift effectiveness" not in e.value.report.failed
    with pytest.raises(ValueError, match=r"unknown node\(s\) \['w'\]"):
        check_counterfactual_laws(scm, tolerances=Tolerances(nodes={"w": 0.1}))
