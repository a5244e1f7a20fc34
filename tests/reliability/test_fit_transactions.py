"""Reliability, second round (issue 25): ``fit`` is all or nothing. A fit refused for one node, or
interrupted (KeyboardInterrupt) mid-training, leaves every mechanism exactly as before (weights
and statistics); a network the user passed is copied, never trained in place; ``nodes`` must be a
list of node names."""

from __future__ import annotations

import networkx as nx
import pyro.distributions as dist
import pytest
import torch
from bad_inputs import F64, t
from torch import nn

import causaldiff as cd
from causaldiff.errors import DataError


class Interrupting(nn.Module):
    """A user's network that is ^C'ed after ``after`` forward passes."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.lin, self.after, self.calls = nn.Linear(1, 1), after, 0

    def forward(self, x):
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return self.lin(x)


def model(z) -> cd.SCM:
    """x -> y -> z: y a small additive-noise network, z ``z``."""
    g = nx.DiGraph([("x", "y"), ("y", "z")])
    return cd.SCM(g, {"x": dist.Normal(t(0.0), t(1.0)), "y": cd.AdditiveNoiseMechanism(hidden=(4,), steps=20), "z": z})


def rows(seed: int, z=None) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(40, generator=g, dtype=F64)
    y = torch.tanh(x) + 0.1 * torch.randn(40, generator=g, dtype=F64)
    return {"x": x, "y": y, "z": (y > 0).long() if z is None else z}


def snapshot(scm: cd.SCM) -> dict[str, dict[str, torch.Tensor]]:
    return {k: {n: v.clone() for n, v in m.state_tensors().items()} for k, m in scm.mechanisms.items()}


def unchanged(scm: cd.SCM, before) -> bool:
    after = snapshot(scm)
    return after.keys() == before.keys() and all(
        after[k].keys() == before[k].keys() and all(torch.equal(after[k][n], before[k][n]) for n in after[k])
        for k in after)


@pytest.mark.parametrize("bad_label", [2, 7, 5000])
def test_a_fit_refused_for_a_later_node_leaves_the_earlier_ones_as_they_were(bad_label):
    scm = model(cd.ClassifierMechanism(num_classes=2, steps=5)).fit(rows(0))
    before, parents = snapshot(scm), {k: m.fitted_parents for k, m in scm.mechanisms.items()}
    z = rows(1)["z"].clone()
    z[3] = bad_label
    with pytest.raises(DataError, match="node 'z'"):
        scm.fit(rows(1, z))
    assert unchanged(scm, before) and {k: m.fitted_parents for k, m in scm.mechanisms.items()} == parents


@pytest.mark.parametrize("fitted", [False, True], ids=["unfitted", "refit"])
@pytest.mark.parametrize("after", [0, 3, 15])
def test_a_keyboard_interrupt_mid_training_leaves_every_mechanism_as_it_was(fitted, after):
    net = Interrupting(after=10 ** 9)
    scm = model(cd.AdditiveNoiseMechanism(net=net, steps=20))
    if fitted:
        scm.fit(rows(0))
    before = snapshot(scm)
    mine = scm.mechanisms["z"].net  # the network the mechanism holds now (the user's, before any fit)
    weights = {k: v.clone() for k, v in mine.state_dict().items()}
    mine.after, mine.calls = after, 0
    with pytest.raises(KeyboardInterrupt):
        scm.fit(rows(1))
    assert unchanged(scm, before) and scm.mechanisms["z"].is_fitted == fitted
    assert all(torch.equal(v, weights[k]) for k, v in mine.state_dict().items())


def test_a_user_network_is_copied_not_trained_in_place():
    net = nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    scm = model(cd.AdditiveNoiseMechanism(net=net, steps=20)).fit(rows(0))
    trained = scm.mechanisms["z"].net
    assert trained is not net and all(torch.equal(v, weights[k]) for k, v in net.state_dict().items())
    assert not all(torch.equal(v, weights[k]) for k, v in trained.state_dict().items())


def test_a_successful_fit_is_seen_through_every_holder_of_the_mechanism():
    m = cd.AdditiveNoiseMechanism(hidden=(4,), steps=20)
    scm = model(cd.ClassifierMechanism(steps=5))
    copy = scm.do({"x": 1.0})
    g = nx.DiGraph([("x", "y")])
    other = cd.SCM(g, {"x": dist.Normal(t(0.0), t(1.0)), "y": m})
    other.fit({k: v for k, v in rows(0).items() if k != "z"})
    assert m.is_fitted and other.mechanisms["y"] is m
    scm.fit(rows(0))
    assert copy.mechanisms["y"].is_fitted and copy.mechanisms["y"] is scm.mechanisms["y"]


def test_refits_give_the_weights_of_a_first_fit():
    a = model(cd.ClassifierMechanism(steps=5)).fit(rows(0))
    b = model(cd.ClassifierMechanism(steps=5)).fit(rows(1)).fit(rows(0))
    assert unchanged(a, snapshot(b))


@pytest.mark.parametrize("nodes", [5, "y", "xy", b"y", {"y": 1}, 2.0, [["y"]], ["nope"], ("y", None)])
def test_fit_nodes_must_be_a_list_of_node_names(nodes):
    scm = model(cd.ClassifierMechanism(steps=5))
    before = snapshot(scm)
    with pytest.raises(DataError, match=r"fit\(nodes=...\)"):
        scm.fit(rows(0), nodes=nodes)
    assert unchanged(scm, before) and not scm.mechanisms["y"].is_fitted


@pytest.mark.parametrize("nodes", [["y"], ("y",), {"y"}, frozenset({"y"})])
def test_fit_nodes_as_a_list_tuple_or_set(nodes):
    scm = model(cd.ClassifierMechanism(steps=5)).fit(rows(0), nodes=nodes)
    assert scm.mechanisms["y"].is_fitted and not scm.mechanisms["z"].is_fitted
