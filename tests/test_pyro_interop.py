"""``scm.model`` is a Pyro model: one sample site per node, ``poutine.do`` / ``poutine.condition``
work on it and agree with the engine, and Pyro inference runs on it."""

from __future__ import annotations

import math

import networkx as nx
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

import causaldiff as cd

F64 = torch.float64



def t(v):
    return torch.tensor(v, dtype=F64)


def make_scm() -> cd.SCM:
    """x ~ N(0, 1); y ~ N(2x, 0.5^2); z ~ N(-y, 0.3^2); c ~ Categorical(softmax([x, -x]))."""
    g = nx.DiGraph([("x", "y"), ("y", "z"), ("x", "c")])
    g.nodes["x"]["mechanism"] = dist.Normal(t(0.0), t(1.0))
    g.nodes["y"]["mechanism"] = lambda x: dist.Normal(2.0 * x, t(0.5))
    g.nodes["z"]["mechanism"] = lambda y: dist.Normal(-y, t(0.3))
    g.nodes["c"]["mechanism"] = lambda x: dist.Categorical(logits=torch.stack([x, -x], -1))
    return cd.SCM(g)


def node_sites(trace):
    return {k: s for k, s in trace.nodes.items() if s["type"] == "sample" and k != "rows"}


def test_model_has_one_sample_site_per_node():
    scm = make_scm()
    trace = poutine.trace(scm.model).get_trace(10)
    sites = node_sites(trace)
    assert sorted(sites) == sorted(scm.nodes)
    for name, site in sites.items():
        assert site["value"].shape == (10,)
        assert not site["is_observed"]
        assert not site["infer"].get("_deterministic", False), name
    assert isinstance(sites["c"]["fn"], dist.Categorical)


def test_model_of_vector_nodes_has_event_dims():
    g = nx.DiGraph([("x", "y")])
    g.nodes["x"]["mechanism"] = dist.MultivariateNormal(torch.zeros(3, dtype=F64), torch.eye(3, dtype=F64))
    g.nodes["y"]["mechanism"] = lambda x: dist.Normal(x[:, :2], t(1.0)).to_event(1)
    trace = poutine.trace(cd.SCM(g).model).get_trace(7)
    assert trace.nodes["x"]["value"].shape == (7, 3) and trace.nodes["y"]["value"].shape == (7, 2)
    trace.compute_log_prob()
    assert trace.nodes["y"]["log_prob"].shape == (7,)


def test_log_density_from_the_trace_matches_the_hand_formula():
    scm = make_scm()
    trace = poutine.trace(scm.model).get_trace(50)
    v = {k: s["value"] for k, s in node_sites(trace).items()}

    def normal(x, m, s):
        return -0.5 * ((x - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)
    logits = torch.stack([v["x"], -v["x"]], -1)
    hand = (normal(v["x"], 0.0, 1.0) + normal(v["y"], 2.0 * v["x"], 0.5) + normal(v["z"], -v["y"], 0.3)
            + torch.log_softmax(logits, -1).gather(-1, v["c"].unsqueeze(-1)).squeeze(-1)).sum()
    torch.testing.assert_close(trace.log_prob_sum(), hand, rtol=1e-10, atol=1e-10)


def test_pyro_do_and_scm_do_agree_in_distribution():
    scm = make_scm()
    n = 20000
    pyro.set_rng_seed(0)
    ours = scm.do({"x": 1.0}).sample(n, seed=1)
    theirs = poutine.do(scm.model, data={"x": t(1.0)})(n)
    assert torch.all(ours["x"] == 1.0)
    # y ~ N(2, 0.5^2), z ~ N(-2, 0.5^2 + 0.3^2), c ~ Bernoulli(sigmoid(-2)): both agree with the truth
    # and hence with each other (5 sigma of the difference of two independent means)
    sd = {"y": 0.5, "z": math.sqrt(0.25 + 0.09)}
    for k, s in sd.items():
        diff = ours[k].mean() - theirs[k].mean()
        assert abs(diff.item()) < 5 * s * math.sqrt(2 / n), k
        assert abs(ours[k].std().item() - theirs[k].std().item()) < 5 * s * math.sqrt(1 / n), k
    p = torch.sigmoid(t(-2.0)).item()
    for freq in (ours["c"].double().mean().item(), theirs["c"].double().mean().item()):
        assert abs(freq - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_pyro_do_with_per_row_values_agrees_with_scm_do():
    scm = make_scm()
    n = 20000
    x = torch.linspace(-2, 2, n, dtype=F64)
    pyro.set_rng_seed(2)
    theirs = poutine.do(scm.model, data={"x": x})(n)
    ours = scm.do({"x": x}).sample(n, seed=3)
    # y - 2x ~ N(0, 0.5^2) in both
    for s in (theirs, ours):
        r = s["y"] - 2.0 * x
        assert abs(r.mean().item()) < 5 * 0.5 / math.sqrt(n)
        assert abs(r.std().item() - 0.5) < 5 * 0.5 / math.sqrt(2 * n)


def test_intervened_nodes_are_deterministic_sites_in_the_intervened_model():
    trace = poutine.trace(make_scm().do({"x": 1.0}).model).get_trace(5)
    assert trace.nodes["x"]["infer"].get("_deterministic") is True
    assert torch.equal(trace.nodes["x"]["value"], torch.ones(5, dtype=F64))
    shifted = poutine.trace(make_scm().do({"y": cd.Shift(100.0)}).model).get_trace(5)
    assert (shifted.nodes["y"]["value"] - 2.0 * shifted.nodes["x"]["value"] > 95).all()


def test_pyro_condition_fixes_observed_sites():
    scm = make_scm()
    y_obs = torch.full((8,), 1.0, dtype=F64)
    trace = poutine.trace(poutine.condition(scm.model, data={"y": y_obs})).get_trace(8)
    assert trace.nodes["y"]["is_observed"]
    assert torch.equal(trace.nodes["y"]["value"], y_obs)
    # z is generated downstream of the observed y: z + y ~ N(0, 0.3^2)
    assert ((trace.nodes["z"]["value"] + 1.0).abs() < 6 * 0.3).all()


def test_importance_sampling_recovers_the_analytic_posterior_of_the_root():
    """x | y=1 is N(8/17, 1/17): prior 1, likelihood precision 2^2 / 0.5^2 = 16."""
    scm = make_scm()
    post_mean, post_sd = 8.0 / 17.0, 1.0 / math.sqrt(17.0)
    y_obs = torch.ones(1, dtype=F64)
    pyro.set_rng_seed(4)
    imp = pyro.infer.Importance(poutine.condition(scm.model, data={"y": y_obs}), num_samples=300).run(1)
    ess = float(imp.get_ESS())
    est = pyro.infer.EmpiricalMarginal(imp, sites="x").mean.item()
    assert ess > 30
    assert abs(est - post_mean) < 5 * post_sd / math.sqrt(ess)


def test_vectorised_likelihood_weighting_with_the_model():
    """Many particles at once: one plate row per particle, all conditioned on the same y."""
    scm = make_scm()
    n = 20000
    pyro.set_rng_seed(5)
    trace = poutine.trace(poutine.condition(scm.model, data={"y": torch.full((n,), 1.0, dtype=F64)})).get_trace(n)
    trace.compute_log_prob()
    logw = trace.nodes["y"]["log_prob"]
    w = torch.softmax(logw, 0)
    ess = 1.0 / (w ** 2).sum().item()
    x = trace.nodes["x"]["value"]
    mean = (w * x).sum().item()
    sd = math.sqrt(((w * (x - mean) ** 2).sum()).item())
    assert abs(mean - 8 / 17) < 5 / math.sqrt(17 * ess)
    assert abs(sd - 1 / math.sqrt(17)) < 0.05


def test_svi_learns_a_root_parameter_through_the_model():
    """Pyro SVI on the SCM's model: the MAP of a learnable root mean under condition()."""
    g = nx.DiGraph([("x", "y")])
    g.nodes["x"]["mechanism"] = dist.Normal(t(0.0), t(1.0))
    g.nodes["y"]["mechanism"] = lambda x: dist.Normal(x, t(0.1))
    scm = cd.SCM(g)
    pyro.clear_param_store()
    pyro.set_rng_seed(6)
    data = {"y": torch.full((4,), 2.0, dtype=F64)}
    guide = pyro.infer.autoguide.AutoDelta(poutine.condition(scm.model, data=data))
    svi = pyro.infer.SVI(poutine.condition(scm.model, data=data), guide, pyro.optim.Adam({"lr": 0.05}),
                         pyro.infer.Trace_ELBO())
    for _ in range(300):
        svi.step(4)
    x_map = guide.median(4)["x"]
    # MAP of x given y = 2: (2 / 0.01) / (1 + 1 / 0.01) = 200 / 101
    torch.testing.assert_close(x_map, torch.full((4,), 200 / 101, dtype=x_map.dtype), rtol=0, atol=5e-3)
    pyro.clear_param_store()


def test_learnable_mechanisms_expose_a_density():
    torch.manual_seed(0)
    x = torch.randn(300, dtype=F64)
    data = {"x": x, "y": 3.0 * x + 0.2 * torch.randn(300, dtype=F64)}
    scm = cd.SCM(nx.DiGraph([("x", "y")]), mechanisms={"x": dist.Normal(t(0.0), t(1.0)),
                                                        "y": cd.AdditiveNoiseMechanism(steps=200)})
    scm.fit(data)
    trace = poutine.trace(poutine.condition(scm.model, data=data)).get_trace(300)
    assert isinstance(trace.nodes["y"]["fn"], dist.Normal)
    trace.compute_log_prob()
    # the fitted density is close to the true one: mean log-likelihood within 0.2 nats
    true = dist.Normal(3.0 * x, 0.2).log_prob(data["y"]).mean().item()
    assert abs(trace.nodes["y"]["log_prob"].mean().item() - true) < 0.2
