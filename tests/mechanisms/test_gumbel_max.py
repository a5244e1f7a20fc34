"""Discrete nodes through the Gumbel-max SCM (Oberst & Sontag 2019): null interventions, counterfactual
stability, the posterior of the Gumbel noise, and reproducibility."""

from __future__ import annotations

import math

import networkx as nx
import pyro.distributions as dist
import pytest
import torch

import causaldiff as cd
from causaldiff.mechanisms.base import Abduction
from causaldiff.testing import check_counterfactual_laws

F64 = torch.float64
EULER_GAMMA = 0.5772156649015329
GUMBEL_SD = math.pi / math.sqrt(6.0)
W = torch.tensor([2.0, -1.0, 0.5, 0.0], dtype=F64)
B = torch.tensor([0.0, 0.5, -0.5, 1.0], dtype=F64)


def logits_of(x):
    """Logits of the 4-class node y given the scalar parent x (different slopes: ratios move)."""
    return x.unsqueeze(-1) * W + B


def categorical_scm() -> cd.SCM:
    g = nx.DiGraph([("x", "y"), ("y", "z")])
    g.nodes["x"]["mechanism"] = dist.Normal(torch.tensor(0.0, dtype=F64), torch.tensor(1.5, dtype=F64))
    g.nodes["y"]["mechanism"] = lambda x: dist.Categorical(logits=logits_of(x))
    g.nodes["z"]["mechanism"] = lambda y: dist.Normal(y.to(F64) * 2.0 - 1.0, torch.tensor(0.1, dtype=F64))
    return cd.SCM(g)


def bernoulli_scm() -> cd.SCM:
    g = nx.DiGraph([("x", "b"), ("b", "z")])
    g.nodes["x"]["mechanism"] = dist.Normal(torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64))
    g.nodes["b"]["mechanism"] = lambda x: dist.Bernoulli(logits=3.0 * x - 0.5)
    g.nodes["z"]["mechanism"] = lambda b: dist.Normal(5.0 * b, torch.tensor(0.2, dtype=F64))
    return cd.SCM(g)


def test_discrete_abduction_is_declared_stochastic():
    scm = categorical_scm()
    pa = {"x": torch.zeros(3, dtype=F64)}
    assert scm.mechanisms["y"].abduction(pa) is Abduction.STOCHASTIC
    assert bernoulli_scm().mechanisms["b"].abduction(pa) is Abduction.STOCHASTIC
    d = categorical_scm().sample(5, seed=0)
    assert d["y"].dtype == torch.long and d["y"].shape == (5,)
    assert bernoulli_scm().sample(5, seed=0)["b"].dtype == F64


@pytest.mark.parametrize("make,node", [(categorical_scm, "y"), (bernoulli_scm, "b")])
def test_null_intervention_returns_the_observation_exactly(make, node):
    scm = make()
    d = scm.sample(2000, seed=1)
    for do in ({"x": d["x"]}, {"x": cd.Shift(0.0)}, {"x": lambda v: v}):
        for seed in (0, 1, None):
            cf = scm.counterfactual(d, do=do, seed=seed)
            for k in d:
                assert torch.equal(cf[k], d[k]), (do, k)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_counterfactual_stability_categorical(seed):
    """Oberst & Sontag (2019), Definition 2: if Y = i was observed and the intervention changes the
    probabilities from p to p' with p'_i / p_i >= p'_j / p_j, the counterfactual Y' is not j."""
    scm = categorical_scm()
    n = 4000
    d = scm.sample(n, seed=10 + seed)
    x_new = torch.linspace(-3, 3, n, dtype=F64)
    cf = scm.counterfactual(d, do={"x": x_new}, seed=seed)
    logp = torch.log_softmax(logits_of(d["x"]), -1)
    logq = torch.log_softmax(logits_of(x_new), -1)
    gain = logq - logp                                     # log(p'_k / p_k)
    i = d["y"]
    gain_i = gain.gather(-1, i.unsqueeze(-1))
    forbidden = gain <= gain_i                             # j with p'_i/p_i >= p'_j/p_j (i itself too)
    forbidden.scatter_(-1, i.unsqueeze(-1), False)
    moved_to_forbidden = forbidden.gather(-1, cf["y"].unsqueeze(-1)).squeeze(-1)
    assert not moved_to_forbidden.any(), f"{int(moved_to_forbidden.sum())} rows violate stability"
    # not vacuous: many rows change category, and many rows had a forbidden alternative
    assert (cf["y"] != i).double().mean() > 0.2
    assert forbidden.any(-1).double().mean() > 0.5
    # a category whose probability ratio went up cannot be left for one whose ratio dropped further:
    # in particular, if p'_i >= p_i is the largest ratio, Y' = i
    best = gain.argmax(-1)
    stays = best == i
    assert torch.equal(cf["y"][stays], i[stays])


def test_counterfactual_stability_bernoulli():
    """Binary case: raising P(b=1) never turns an observed 1 into 0, lowering never turns 0 into 1."""
    scm = bernoulli_scm()
    n = 4000
    d = scm.sample(n, seed=3)
    up = scm.counterfactual(d, do={"x": cd.Shift(1.0)}, seed=0)  # logits increase
    down = scm.counterfactual(d, do={"x": cd.Shift(-1.0)}, seed=0)
    assert torch.all(up["b"][d["b"] == 1] == 1)
    assert torch.all(down["b"][d["b"] == 0] == 0)
    assert (up["b"] != d["b"]).any() and (down["b"] != d["b"]).any()
    # the downstream Gaussian keeps its own noise: z' - 5 b' == z - 5 b
    torch.testing.assert_close(up["z"] - 5.0 * up["b"], d["z"] - 5.0 * d["b"], rtol=0, atol=1e-10)


def test_counterfactual_marginal_is_the_interventional_distribution():
    """Averaged over factual rows, the abducted Gumbels are prior draws, so Y' | do(x = a) is
    Categorical(softmax(logits(a))) marginally."""
    scm = categorical_scm()
    n = 20000
    d = scm.sample(n, seed=4)
    cf = scm.counterfactual(d, do={"x": 0.7}, seed=5)
    p = torch.softmax(logits_of(torch.tensor(0.7, dtype=F64)), -1)
    freq = torch.bincount(cf["y"], minlength=4).double() / n
    assert ((freq - p).abs() <= 5 * (p * (1 - p) / n).sqrt()).all(), (freq, p)


@pytest.mark.parametrize("make,node", [(categorical_scm, "y"), (bernoulli_scm, "b")])
def test_posterior_gumbels_reproduce_the_observation(make, node):
    scm = make()
    d = scm.sample(3000, seed=6)
    u = scm.abduct(d, seed=0)
    m, pa = scm.mechanisms[node], {"x": d["x"]}
    assert torch.equal(m.forward(u[node], pa), d[node])
    logits = logits_of(d["x"]) if node == "y" else torch.stack([torch.zeros_like(d["x"]), 3.0 * d["x"] - 0.5], -1)
    # the argmax is invariant to the normalisation of the logits
    assert torch.equal(torch.argmax(logits + u[node], -1), d[node].long())


@pytest.mark.parametrize("make,node,k", [(categorical_scm, "y", 4), (bernoulli_scm, "b", 2)])
def test_posterior_gumbels_are_standard_gumbel_marginally(make, node, k):
    """If x ~ Categorical(p) and g ~ p(g | x), then g ~ Gumbel(0, 1)^K i.i.d. (the prior)."""
    scm = make()
    n = 20000
    u = scm.abduct(scm.sample(n, seed=7), seed=8)[node]
    assert u.shape == (n, k)
    tol = 5 * GUMBEL_SD / math.sqrt(n)
    col_means = u.mean(0)
    assert ((col_means - EULER_GAMMA).abs() < tol).all(), col_means
    assert abs(u.mean().item() - EULER_GAMMA) < 5 * GUMBEL_SD / math.sqrt(n * k)
    # the cdf at 0 is exp(-1), per category
    below = (u < 0).double().mean(0)
    p0 = math.exp(-1)
    assert ((below - p0).abs() < 5 * math.sqrt(p0 * (1 - p0) / n)).all(), below
    # the variance is pi^2 / 6 (var of the sample variance of a Gumbel: (mu4 - sigma^4) / n, mu4 = 5.4 sigma^4)
    var_tol = 5 * math.sqrt((5.4 - 1) / n) * GUMBEL_SD ** 2
    assert ((u.var(0) - GUMBEL_SD ** 2).abs() < var_tol).all()


def test_posterior_given_the_observation_is_not_the_prior():
    """Conditioned on Y = i, the winning coordinate's noise is shifted up (it won)."""
    scm = categorical_scm()
    n = 5000
    d = scm.sample(n, seed=9)
    u = scm.abduct(d, seed=1)["y"]
    won = u.gather(-1, d["y"].unsqueeze(-1)).squeeze(-1)
    assert won.mean() > EULER_GAMMA + 10 * GUMBEL_SD / math.sqrt(n)


def test_stochastic_abduction_is_reproducible_with_seed():
    scm = categorical_scm()
    d = scm.sample(500, seed=11)
    x_new = torch.full((500,), 2.0, dtype=F64)
    a = scm.counterfactual(d, do={"x": x_new}, seed=3)
    b = scm.counterfactual(d, do={"x": x_new}, seed=3)
    c = scm.counterfactual(d, do={"x": x_new}, seed=4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["y"], c["y"])  # a different posterior draw changes some rows
    ua, ub = scm.abduct(d, seed=5), scm.abduct(d, seed=5)
    assert torch.equal(ua["y"], ub["y"])
    assert not torch.equal(ua["y"], scm.abduct(d, seed=6)["y"])


def test_intervening_on_the_discrete_node_itself():
    scm = categorical_scm()
    d = scm.sample(100, seed=12)
    cf = scm.counterfactual(d, do={"y": 2})
    assert cf["y"].dtype == torch.long and torch.all(cf["y"] == 2)
    torch.testing.assert_close(cf["z"], d["z"] - (2.0 * d["y"] - 1.0) + 3.0, rtol=0, atol=1e-10)
    s = scm.do({"y": 3}).sample(10, seed=0)
    assert s["y"].dtype == torch.long and torch.all(s["y"] == 3)


def test_laws_hold_for_an_scm_with_discrete_nodes():
    report = check_counterfactual_laws(categorical_scm(), n=16, seed=2)
    assert any("effectiveness" in c for c in report.checked)
    report = check_counterfactual_laws(bernoulli_scm(), n=16, seed=3)
    assert any("composition" in c for c in report.checked)
