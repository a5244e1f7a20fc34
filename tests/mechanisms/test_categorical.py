"""The learnable categorical root: fitted frequencies, Gumbel-max counterfactuals, save/load."""

from __future__ import annotations

import networkx as nx
import pyro.distributions as dist
import pytest
import torch

import causaldiff as cd
from causaldiff.mechanisms import CategoricalMechanism


def _scm():
    g = nx.DiGraph([("c", "y")])
    g.nodes["c"]["mechanism"] = CategoricalMechanism()
    g.nodes["y"]["mechanism"] = lambda c: dist.Normal(c.double() * 2.0, 0.1)
    return cd.SCM(g)


def test_fit_recovers_frequencies_and_null_intervention_is_exact(tmp_path):
    c = torch.tensor([0] * 600 + [1] * 300 + [2] * 100)
    y = c.double() * 2 + 0.1 * torch.randn(1000, dtype=torch.float64)
    scm = _scm().fit({"c": c, "y": y})
    probs = scm.mechanisms["c"].logits.exp()
    # smoothed frequencies (count + 1) / (n + k)
    assert torch.allclose(probs.double(), torch.tensor([601, 301, 101], dtype=torch.float64) / 1003, atol=1e-6)
    rows = {"c": c[:50], "y": y[:50]}
    cf = scm.counterfactual(rows, do={"c": rows["c"]}, seed=0)
    assert torch.equal(cf["c"], rows["c"]) and torch.allclose(cf["y"], rows["y"])
    cf2 = scm.counterfactual(rows, do={"c": 2}, seed=0)
    assert torch.allclose(cf2["y"] - rows["y"], (2 - rows["c"]).double() * 2.0)
    scm.save(tmp_path / "m")
    again = cd.load(tmp_path / "m", mechanisms={"y": lambda c: dist.Normal(c.double() * 2.0, 0.1)})
    assert torch.equal(again.mechanisms["c"].logits, scm.mechanisms["c"].logits)
    assert torch.equal(again.sample(20, seed=3)["c"], scm.sample(20, seed=3)["c"])


def test_refuses_out_of_support_intervention_and_unfitted_use():
    scm = _scm()
    with pytest.raises(cd.NotFittedError, match="'c'"):
        scm.sample(3)
    scm.fit({"c": torch.tensor([0, 1, 2, 1]), "y": torch.zeros(4, dtype=torch.float64)})
    with pytest.raises(cd.InterventionError, match="'c'.*outside"):
        scm.do({"c": 5}).sample(2)


def test_refuses_float_values():
    with pytest.raises(cd.DataError, match="non-negative integers"):
        _scm().fit({"c": torch.tensor([0.0, 1.0]), "y": torch.zeros(2)})
