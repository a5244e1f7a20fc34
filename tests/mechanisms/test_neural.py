"""Learnable additive-noise mechanisms: fitting recovers the mechanism, each node on its own."""

from __future__ import annotations

import networkx as nx
import pyro.distributions as dist
import pytest
import torch
from pydantic import ValidationError

import causaldiff as cd
from causaldiff.mechanisms import AdditiveNoiseConfig
from causaldiff.mechanisms.base import Abduction

F64 = torch.float64



def f_true(x):
    return torch.sin(2.0 * x) + 0.5 * x ** 2


def nonlinear_data(n=2000, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=gen, dtype=dtype)
    uy = torch.randn(n, generator=gen, dtype=dtype)
    return {"x": x, "y": f_true(x) + 0.3 * uy}, uy


def anm_scm(**kw) -> cd.SCM:
    g = nx.DiGraph([("x", "y")])
    return cd.SCM(g, mechanisms={"x": cd.AdditiveNoiseMechanism(**kw), "y": cd.AdditiveNoiseMechanism(**kw)})


def test_fit_recovers_a_nonlinear_additive_mechanism():
    """Counterfactual MSE below 0.05 (truth is exact; leaving y unchanged scores > 0.5)."""
    data, uy = nonlinear_data(n=1000)
    scm = anm_scm(steps=600, hidden=(32, 32)).fit(data)
    xs = torch.linspace(-1.5, 1.5, 1000)
    cf = scm.counterfactual(data, do={"x": xs})
    truth = f_true(xs) + 0.3 * uy
    mse = (cf["y"] - truth).pow(2).mean().item()
    baseline = (data["y"] - truth).pow(2).mean().item()
    assert baseline > 0.5
    assert mse < 0.05, mse
    # the learned noise scale is close to the true 0.3; the root is N(mean, std) of the data
    m = scm.mechanisms["y"]
    sigma = (m.stats["sigma"] * m.stats["out_std"]).item()
    assert 0.25 < sigma < 0.4, sigma
    assert m.abduction() is Abduction.EXACT
    u = scm.abduct(data)
    torch.testing.assert_close(scm.predict(u)["y"], data["y"], rtol=0, atol=1e-5)
    assert abs(u["x"].mean().item()) < 1e-5 and abs(u["x"].std().item() - 1.0) < 1e-3


def test_each_node_is_fitted_on_its_own():
    """Node y's fit depends only on the y and x columns: not on x's mechanism nor on other nodes."""
    data, _ = nonlinear_data(n=400)
    data["w"] = torch.randn(400)
    g = nx.DiGraph([("x", "y")])
    g.add_node("w")
    a = cd.SCM(g, mechanisms={"x": cd.AdditiveNoiseMechanism(steps=30), "w": cd.AdditiveNoiseMechanism(steps=30),
                              "y": cd.AdditiveNoiseMechanism(steps=30, seed=3)}).fit(data)
    b = cd.SCM(nx.DiGraph([("x", "y")]), mechanisms={"x": dist.Normal(5.0, 2.0),
                                                     "y": cd.AdditiveNoiseMechanism(steps=30, seed=3)}).fit(
        {"x": data["x"], "y": data["y"]})
    alone = cd.AdditiveNoiseMechanism(steps=30, seed=3)
    alone.fit(data["y"], {"x": data["x"]}, parent_order=("x",))
    for other in (b.mechanisms["y"], alone):
        sa, so = a.mechanisms["y"].state_tensors(), other.state_tensors()
        assert sa.keys() == so.keys()
        assert all(torch.equal(sa[k], so[k]) for k in sa)


def test_seeded_fit_is_repeatable_and_the_seed_matters():
    data, _ = nonlinear_data(n=300)
    runs = [anm_scm(steps=40, seed=s).fit(data).mechanisms["y"].state_tensors() for s in (0, 0, 1)]
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_fit_never_reseeds_the_global_rng():
    """The weights come from the seed's generator whatever the global RNG holds, and the global RNG
    is never reseeded or rewound: its next draws are fresh ones (building the network draws torch's
    default weights from it, which are then redrawn from the seed)."""
    data, _ = nonlinear_data(n=200)
    fits = []
    for global_seed in (7, 8):
        torch.manual_seed(global_seed)
        drawn = torch.rand(1000)
        fits.append(anm_scm(steps=10).fit(data).mechanisms["y"].state_tensors())
        assert not bool(torch.isin(torch.rand(1000), drawn).any())  # no value drawn again
    assert all(torch.equal(fits[0][k], fits[1][k]) for k in fits[0])


def test_vector_nodes():
    gen = torch.Generator().manual_seed(1)
    n = 1000
    x = torch.randn(n, 3, generator=gen)
    A = torch.tensor([[1.0, -1.0], [0.5, 2.0], [0.0, 1.0]])
    u = torch.randn(n, 2, generator=gen)
    y = torch.tanh(x @ A) + 0.1 * u
    g = nx.DiGraph([("x", "y")])
    scm = cd.SCM(g, mechanisms={"x": cd.AdditiveNoiseMechanism(), "y": cd.AdditiveNoiseMechanism(steps=400, hidden=(32, 32))})
    scm.fit({"x": x, "y": y})
    s = scm.sample(5, seed=0)
    assert s["x"].shape == (5, 3) and s["y"].shape == (5, 2)
    x_new = torch.tensor([0.5, -0.5, 1.0])
    cf = scm.counterfactual({"x": x, "y": y}, do={"x": x_new})
    assert cf["y"].shape == (n, 2) and torch.equal(cf["x"], x_new.expand(n, 3))
    truth = torch.tanh(x_new @ A) + 0.1 * u
    assert (cf["y"] - truth).pow(2).mean() < 0.04  # leaving y unchanged scores ~0.5
    with pytest.raises(cd.DataError, match=r"node 'y' in the factual rows: rows have shape \(3,\), the mechanism gives \(2,\)"):
        scm.counterfactual({"x": x, "y": torch.zeros(n, 3)}, do={"x": x_new})


def test_categorical_parents_are_one_hot():
    gen = torch.Generator().manual_seed(2)
    n = 1000
    c = torch.randint(0, 3, (n,), generator=gen)
    mu = torch.tensor([1.0, -2.0, 4.0])
    u = torch.randn(n, generator=gen)
    y = mu[c] + 0.1 * u
    g = nx.DiGraph([("c", "y")])
    scm = cd.SCM(g, mechanisms={"c": dist.Categorical(logits=torch.zeros(3)),
                                "y": cd.AdditiveNoiseMechanism(steps=300, hidden=(16,))})
    scm.fit({"c": c, "y": y})
    m = scm.mechanisms["y"]
    assert [(p.name, p.num_classes) for p in m.parent_codec.parents] == [("c", 3)]
    assert m.stats["in_mean"].shape == (3,)  # three one-hot columns
    cf = scm.counterfactual({"c": c, "y": y}, do={"c": 2})
    assert (cf["y"] - (4.0 + 0.1 * u)).abs().max() < 0.05


def test_not_fitted_error_names_the_node():
    scm = anm_scm()
    data, _ = nonlinear_data(n=10)
    for call in (lambda: scm.sample(3), lambda: scm.counterfactual(data, do={"x": 0.0}),
                 lambda: scm.abduct(data), lambda: scm.predict({"x": data["x"], "y": data["y"]})):
        with pytest.raises(cd.NotFittedError, match=r"node '(x|y)': AdditiveNoiseMechanism is not fitted; call scm.fit"):
            call()
    with pytest.raises(cd.NotFittedError, match=r"node 'y'"):
        scm.do({"x": 0.0}).sample(3)
    # only the nodes a query touches must be fitted: a hard-intervened unfitted root is fine
    half = cd.SCM(nx.DiGraph([("x", "y")]), mechanisms={"x": cd.AdditiveNoiseMechanism(),
                                                        "y": lambda x: dist.Normal(x, 1.0)})
    assert torch.equal(half.do({"x": 2.0}).sample(4, seed=0)["x"], torch.full((4,), 2.0))


def test_float64_fit_keeps_float64_everywhere():
    data, _ = nonlinear_data(n=300, dtype=F64)
    scm = anm_scm(steps=20).fit(data)
    for s in (scm.sample(4, seed=0), scm.do({"x": 1.0}).sample(4, seed=0),
              scm.counterfactual(data, do={"x": 1.0})):
        assert all(v.dtype == F64 for v in s.values())


def test_custom_torch_module():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(500, generator=gen)
    y = 3.0 * x - 1.0 + 0.05 * torch.randn(500, generator=gen)
    net = torch.nn.Linear(1, 1)
    scm = cd.SCM(nx.DiGraph([("x", "y")]), mechanisms={"x": dist.Normal(0.0, 1.0),
                                                       "y": cd.AdditiveNoiseMechanism(net=net, steps=300, lr=0.05)})
    weight = net.weight.detach().clone()
    scm.fit({"x": x, "y": y})
    assert scm.mechanisms["y"].net is not net and torch.equal(net.weight, weight)  # copied, not trained in place
    assert isinstance(scm.mechanisms["y"].net, torch.nn.Linear)
    cf = scm.counterfactual({"x": x, "y": y}, do={"x": cd.Shift(1.0)})
    assert ((cf["y"] - y) - 3.0).abs().max() < 0.05


def test_config_is_frozen_and_validated():
    cfg = AdditiveNoiseConfig()
    with pytest.raises(ValidationError):
        cfg.steps = 3
    with pytest.raises(ValidationError, match=r"steps"):
        cd.AdditiveNoiseMechanism(steps=0)
    with pytest.raises(ValidationError, match=r"stepz"):
        cd.AdditiveNoiseMechanism(stepz=10)
    with pytest.raises(ValidationError):
        AdditiveNoiseConfig(val_fraction=1.0)
    assert "unfitted" in repr(cd.AdditiveNoiseMechanism())


def test_tiny_data_and_a_single_row_fit():
    """Fewer than 20 rows: no validation split; two rows fit; one row is refused (issue 14)."""
    data, _ = nonlinear_data(n=12)
    scm = anm_scm(steps=5).fit(data)
    assert torch.isfinite(scm.mechanisms["y"].stats["sigma"]).all()
    two = anm_scm(steps=5).fit({k: v[:2] for k, v in data.items()})
    assert torch.isfinite(two.sample(3, seed=0)["y"]).all()
    with pytest.raises(cd.DataError, match=r"fit needs at least 2 training rows, got 1"):
        anm_scm(steps=5).fit({k: v[:1] for k, v in data.items()})


def test_unseen_parent_category_is_refused_not_clamped():
    """A 4-class parent of which only 0..2 were seen at fit time: do(c=3) must not answer as c=2."""
    gen = torch.Generator().manual_seed(4)
    c = torch.randint(0, 3, (300,), generator=gen)
    y = torch.tensor([1.0, -2.0, 4.0])[c] + 0.1 * torch.randn(300, generator=gen)
    scm = cd.SCM(nx.DiGraph([("c", "y")]), mechanisms={"c": dist.Categorical(logits=torch.tensor([0.0, 0.0, 0.0, -5.0])),
                                                       "y": cd.AdditiveNoiseMechanism(steps=20)})
    scm.fit({"c": c, "y": y})
    with pytest.raises(cd.DataError, match=r"node 'y': parent 'c' takes categories outside 0..2"):
        scm.counterfactual({"c": c, "y": y}, do={"c": 3})
    assert scm.counterfactual({"c": c, "y": y}, do={"c": 2})["y"].shape == (300,)
