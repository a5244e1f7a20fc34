"""Pyro mechanisms: exact abduction for every supported continuous family, with hand oracles,
and refusal (before any work) of families that cannot be abducted."""

from __future__ import annotations

import networkx as nx
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.transforms import conditional_affine_coupling, conditional_spline
from torch.distributions import transforms as T

import causaldiff as cd
from causaldiff.mechanisms.base import Abduction

F64 = torch.float64


def t(v):
    return torch.tensor(v, dtype=F64)


def two_node(child, root=None) -> cd.SCM:
    """x -> y with x ~ N(0, 1) (float64) unless ``root`` is given."""
    g = nx.DiGraph([("x", "y")])
    g.nodes["x"]["mechanism"] = root if root is not None else dist.Normal(t(0.0), t(1.0))
    g.nodes["y"]["mechanism"] = child
    return cd.SCM(g)


def close(a, b, atol=1e-5):
    torch.testing.assert_close(a, b, rtol=0, atol=atol)


# ============================================================================ location-scale
def loc_of(x):
    return torch.sin(x) + 0.5 * x


SCALE = 0.8

LOC_SCALE = {
    "Normal": lambda loc: dist.Normal(loc, t(SCALE)),
    "Laplace": lambda loc: dist.Laplace(loc, t(SCALE)),
    "Logistic": lambda loc: dist.Logistic(loc, t(SCALE)),
    "StudentT": lambda loc: dist.StudentT(t(3.0), loc, t(SCALE)),
    "Cauchy": lambda loc: dist.Cauchy(loc, t(SCALE)),
    "Gumbel": lambda loc: dist.Gumbel(loc, t(SCALE)),
}


@pytest.mark.parametrize("family", sorted(LOC_SCALE))
def test_location_scale_round_trip_and_counterfactual_oracle(family):
    make = LOC_SCALE[family]
    scm = two_node(lambda x: make(loc_of(x)))
    assert scm.mechanisms["y"].abduction({"x": torch.zeros(3, dtype=F64)}) is Abduction.EXACT
    d = scm.sample(200, seed=1)
    u = scm.abduct(d)
    close(u["y"], (d["y"] - loc_of(d["x"])) / SCALE, atol=1e-10)  # the standard member's draw
    back = scm.predict(u)
    close(back["y"], d["y"])
    xs = torch.linspace(-2, 2, 200, dtype=F64)
    cf = scm.counterfactual(d, do={"x": xs})
    close(cf["y"], d["y"] - loc_of(d["x"]) + loc_of(xs))


def test_location_scale_noise_has_the_standard_distribution():
    """The abducted noise of a Laplace node is standard Laplace: mean 0, E|u| = 1."""
    scm = two_node(lambda x: dist.Laplace(3.0 * x, t(2.0)))
    n = 20000
    u = scm.abduct(scm.sample(n, seed=2))["y"]
    assert abs(u.mean().item()) < 5 * (2.0 / n) ** 0.5  # var of standard Laplace is 2
    assert abs(u.abs().mean().item() - 1.0) < 5 / n ** 0.5  # var of |u| is 1


def test_studentt_keeps_its_degrees_of_freedom():
    scm = two_node(lambda x: dist.StudentT(t(2.5), x, t(1.0)))
    n = 20000
    u = scm.abduct(scm.sample(n, seed=3))["y"]
    # P(|T_2.5| > 3) = 0.0577 (vs 0.0027 for a normal): heavy tails survive abduction
    frac = (u.abs() > 3).double().mean().item()
    grid = torch.linspace(0.0, 3.0, 200001, dtype=F64)  # torch's StudentT has no cdf
    p = 1.0 - 2.0 * torch.trapezoid(dist.StudentT(t(2.5)).log_prob(grid).exp(), grid).item()
    assert abs(frac - p) < 5 * (p * (1 - p) / n) ** 0.5


def test_location_scale_root():
    scm = two_node(lambda x: dist.Normal(x, t(1.0)), root=dist.Gumbel(t(1.0), t(2.0)))
    d = scm.sample(50, seed=4)
    u = scm.abduct(d)
    close(u["x"], (d["x"] - 1.0) / 2.0, atol=1e-12)
    cf = scm.counterfactual(d, do={"x": cd.Shift(1.0)})
    close(cf["y"], d["y"] + 1.0)


# ============================================================================ multivariate normal
def test_multivariate_normal_vector_node_round_trip_and_oracle():
    A = torch.tensor([[1.0, -0.5, 0.0], [0.3, 0.2, 2.0]], dtype=F64).T  # (3, 2)
    L = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.7, 0.0], [-0.3, 0.2, 0.4]], dtype=F64)
    root = dist.MultivariateNormal(torch.zeros(2, dtype=F64), scale_tril=torch.eye(2, dtype=F64))
    scm = two_node(lambda x: dist.MultivariateNormal(x @ A.T, scale_tril=L), root=root)
    d = scm.sample(100, seed=5)
    assert d["x"].shape == (100, 2) and d["y"].shape == (100, 3)
    u = scm.abduct(d)
    hand = torch.linalg.solve_triangular(L, (d["y"] - d["x"] @ A.T).T, upper=False).T
    close(u["y"], hand, atol=1e-10)
    close(scm.predict(u)["y"], d["y"])
    x_new = torch.tensor([1.0, -2.0], dtype=F64)
    cf = scm.counterfactual(d, do={"x": x_new})
    assert torch.equal(cf["x"], x_new.expand(100, 2))
    close(cf["y"], x_new @ A.T + hand @ L.T)
    # the noise is white: its covariance is close to the identity
    u_big = scm.abduct(scm.sample(20000, seed=6))["y"]
    cov = torch.cov(u_big.T)
    assert (cov - torch.eye(3, dtype=F64)).abs().max() < 5 * (2 / 20000) ** 0.5


# ============================================================================ transformed
def test_lognormal_round_trip_and_oracle():
    scm = two_node(lambda x: dist.LogNormal(x, t(0.5)))
    d = scm.sample(100, seed=7)
    u = scm.abduct(d)
    close(u["y"], (d["y"].log() - d["x"]) / 0.5, atol=1e-10)
    close(scm.predict(u)["y"], d["y"])
    cf = scm.counterfactual(d, do={"x": 1.0})
    close(cf["y"], torch.exp(1.0 + 0.5 * u["y"]))


def test_affine_exp_chain_round_trip_and_oracle():
    def chain(x):
        base = dist.Normal(torch.zeros_like(x), torch.ones_like(x))
        return dist.TransformedDistribution(base, [T.AffineTransform(x, 2.0), T.ExpTransform(),
                                                   T.AffineTransform(1.0, 3.0)])
    scm = two_node(chain)
    d = scm.sample(100, seed=8)
    u = scm.abduct(d)
    hand_u = (torch.log((d["y"] - 1.0) / 3.0) - d["x"]) / 2.0
    close(u["y"], hand_u, atol=1e-10)
    close(scm.predict(u)["y"], d["y"])
    cf = scm.counterfactual(d, do={"x": -0.5})
    close(cf["y"], 1.0 + 3.0 * torch.exp(-0.5 + 2.0 * hand_u))


@pytest.mark.parametrize("flow", ["spline", "affine_coupling"])
def test_conditional_normalizing_flow_round_trip_and_oracle(flow):
    torch.manual_seed(0)
    f = (conditional_spline(2, context_dim=1, count_bins=6) if flow == "spline"
         else conditional_affine_coupling(2, context_dim=1, hidden_dims=[8])).to(F64)
    with torch.no_grad():  # make the flow far from the identity
        for p in f.parameters():
            p.add_(0.5 * torch.randn_like(p))
    base = dist.Normal(torch.zeros(2, dtype=F64), torch.ones(2, dtype=F64)).to_event(1)
    cflow = dist.ConditionalTransformedDistribution(base, [f])
    scm = two_node(lambda x: cflow.condition(x.unsqueeze(-1)))
    assert scm.mechanisms["y"].abduction({"x": torch.zeros(3, dtype=F64)}) is Abduction.EXACT
    d = scm.sample(64, seed=9)
    assert d["y"].shape == (64, 2)
    u = scm.abduct(d)
    with torch.no_grad():
        hand_u = f.condition(d["x"].unsqueeze(-1)).inv(d["y"])
        close(u["y"], hand_u, atol=1e-8)
        close(scm.predict(u)["y"], d["y"])
        x_new = torch.linspace(-1, 1, 64, dtype=F64)
        cf = scm.counterfactual(d, do={"x": x_new})
        close(cf["y"], f.condition(x_new.unsqueeze(-1))(hand_u))
        # a different parent value really changes the answer (the flow is conditional)
        assert (cf["y"] - d["y"]).abs().max() > 1e-2


def test_non_bijective_transform_is_refused():
    def folded(x):
        return dist.TransformedDistribution(dist.Normal(x, t(1.0)), [T.AbsTransform()])
    scm = two_node(folded)
    d = scm.sample(5, seed=0)
    with pytest.raises(cd.AbductionError, match=r"node 'y' cannot be abducted: transform AbsTransform is not bijective"):
        scm.counterfactual(d, do={"x": 0.0})


# ============================================================================ cdf / icdf
def test_exponential_cdf_icdf_round_trip_and_oracle():
    scm = two_node(lambda x: dist.Exponential(torch.exp(x)))
    d = scm.sample(200, seed=10)
    u = scm.abduct(d)
    assert ((u["y"] > 0) & (u["y"] < 1)).all()
    close(u["y"], 1 - torch.exp(-torch.exp(d["x"]) * d["y"]), atol=1e-10)
    close(scm.predict(u)["y"], d["y"])
    # quantile preservation: y' = y * rate(x) / rate(x')
    cf = scm.counterfactual(d, do={"x": 0.3})
    close(cf["y"], d["y"] * torch.exp(d["x"]) / torch.exp(t(0.3)))


def test_uniform_cdf_icdf_round_trip_and_oracle():
    scm = two_node(lambda x: dist.Uniform(x, x + 2.0))
    d = scm.sample(200, seed=11)
    u = scm.abduct(d)
    close(u["y"], (d["y"] - d["x"]) / 2.0, atol=1e-12)
    close(scm.predict(u)["y"], d["y"])
    cf = scm.counterfactual(d, do={"x": cd.Shift(5.0)})
    close(cf["y"], d["y"] + 5.0)


@pytest.mark.parametrize("family", ["HalfNormal", "HalfCauchy"])
def test_transformed_family_with_its_own_cdf_icdf_is_abducted_through_them(family):
    """|Normal| is not invertible through its AbsTransform, but HalfNormal has an exact cdf/icdf."""
    scm = two_node(lambda x: getattr(dist, family)(torch.exp(x)))
    assert scm.mechanisms["y"].abduction({"x": torch.zeros(2, dtype=F64)}) is Abduction.EXACT
    d = scm.sample(100, seed=13)
    u = scm.abduct(d)
    close(scm.predict(u)["y"], d["y"])
    # quantile preservation under a scale family: y' = y * scale(x') / scale(x)
    cf = scm.counterfactual(d, do={"x": 0.5})
    close(cf["y"], d["y"] * torch.exp(t(0.5)) / torch.exp(d["x"]))


def test_cdf_icdf_root_noise_is_uniform():
    g = nx.DiGraph()
    g.add_node("r", mechanism=dist.Exponential(t(2.0)))
    scm = cd.SCM(g)
    n = 20000
    u = scm.abduct(scm.sample(n, seed=12))["r"]
    assert abs(u.mean().item() - 0.5) < 5 * (1 / 12 / n) ** 0.5


# ============================================================================ no abduction
class Spy(cd.PyroMechanism):
    """A Pyro mechanism counting the engine's calls into its noise machinery."""

    def __init__(self, spec):
        super().__init__(spec)
        self.calls = {"forward": 0, "abduct": 0, "sample_noise": 0}

    def forward(self, noise, parents):
        self.calls["forward"] += 1
        return super().forward(noise, parents)

    def abduct(self, x, parents, generator=None):
        self.calls["abduct"] += 1
        return super().abduct(x, parents, generator)

    def sample_noise(self, n, parents, generator=None):
        self.calls["sample_noise"] += 1
        return super().sample_noise(n, parents, generator)


@pytest.mark.parametrize("family", ["Gamma", "Dirichlet", "Poisson"])
def test_family_without_abduction_is_refused_before_any_work(family):
    child = {
        "Gamma": lambda y: dist.Gamma(torch.exp(y), t(1.0)),
        "Dirichlet": lambda y: dist.Dirichlet(torch.exp(torch.stack([y, -y, 0 * y], -1))),
        "Poisson": lambda y: dist.Poisson(torch.exp(y)),
    }[family]
    spies = {"x": Spy(dist.Normal(t(0.0), t(1.0))), "y": Spy(lambda x: dist.Normal(x, t(1.0))),
             "z": Spy(child)}
    g = nx.DiGraph([("x", "y"), ("y", "z")])
    scm = cd.SCM(g, mechanisms=spies)
    d = scm.sample(8, seed=0)
    assert scm.mechanisms["z"].abduction({"y": d["y"]}) is Abduction.IMPOSSIBLE
    for s in spies.values():
        s.calls = dict.fromkeys(s.calls, 0)
    with pytest.raises(cd.AbductionError, match=rf"node 'z' cannot be abducted: {family} is neither"):
        scm.counterfactual(d, do={"x": 1.0})
    assert all(c == 0 for s in spies.values() for c in s.calls.values()), {k: s.calls for k, s in spies.items()}
    with pytest.raises(cd.AbductionError, match=r"node 'z'"):
        scm.abduct(d)
    assert all(c == 0 for s in spies.values() for c in s.calls.values())
    # a counterfactual that never needs z's noise works: z is not downstream of the intervention
    cf = scm.counterfactual(d, do={"z": d["z"]})
    assert all(torch.equal(cf[k], d[k]) for k in "xyz")


def test_unabductable_root_does_not_block_counterfactuals_on_other_nodes():
    g = nx.DiGraph([("x", "y")])
    g.nodes["x"]["mechanism"] = dist.Gamma(t(2.0), t(1.0))
    g.nodes["y"]["mechanism"] = lambda x: dist.Normal(x, t(1.0))
    scm = cd.SCM(g)
    d = scm.sample(10, seed=1)
    cf = scm.counterfactual(d, do={"x": 1.0})
    close(cf["y"], d["y"] - d["x"] + 1.0)
    # a soft intervention on x itself needs x's factual value, not its noise
    cf = scm.counterfactual(d, do={"x": cd.Shift(1.0)})
    close(cf["x"], d["x"] + 1.0)
    close(cf["y"], d["y"] + 1.0)
    with pytest.raises(cd.AbductionError, match=r"node 'x' cannot be abducted: Gamma"):
        scm.abduct(d)


# ----------------------------------------------------------------------------- binding and given()
def test_check_binding_refuses_what_cannot_work():
    from causaldiff.mechanisms import PyroMechanism

    with pytest.raises(cd.GraphError, match="node 'y' has parents \\['x'\\] but is bound to a raw"):
        PyroMechanism(dist.Normal(0.0, 1.0)).check_binding("y", ("x",))
    with pytest.raises(cd.GraphError, match="node 'y': its callable takes \\['z'\\]"):
        PyroMechanism(lambda z: dist.Normal(z, 1.0)).check_binding("y", ("x",))
    with pytest.raises(cd.GraphError, match="node 'y': .*no \\*args"):
        PyroMechanism(lambda **kw: dist.Normal(0.0, 1.0)).check_binding("y", ("x",))
    m = PyroMechanism(lambda x: dist.Normal(x, 1.0))
    m.check_binding("y", ("x",))
    assert m.node == "y"


def test_given_builds_the_distribution_once():
    """Every question a query asks of a Pyro node is served by one call of its callable."""
    from causaldiff.mechanisms import PyroMechanism

    calls = []

    def mech(x):
        calls.append(1)
        return dist.Normal(2.0 * x, 0.5)

    m = PyroMechanism(mech)
    m.check_binding("y", ("x",))
    pa = {"x": torch.randn(7)}
    c = m.given(pa, 7)
    assert c.abduction is Abduction.EXACT and c.why_not_abductable() == ""
    u = c.sample_noise()
    y = c.forward(u)
    torch.testing.assert_close(c.abduct(y), u)
    assert c.event_shape() == () and c.value_dtype() == torch.float32 and c.support() is not None
    assert len(calls) == 1
    assert torch.equal(m.forward(u, pa), y)  # the mechanism's own methods agree with given()


def test_normal_mechanism_is_a_fixed_root():
    from causaldiff.mechanisms import NormalMechanism
    from causaldiff.registry import MECHANISMS

    m = MECHANISMS.get("normal").from_config(NormalMechanism.Config(loc=1.0, scale=2.0))
    with pytest.raises(cd.GraphError, match="node 'r': a 'normal' mechanism is a root"):
        m.check_binding("r", ("p",))
    scm = cd.SCM(nx.DiGraph([("r", "s")]), {"r": m, "s": lambda r: dist.Normal(r, 1.0)})
    x = scm.sample(20000, seed=0)["r"]
    assert abs(x.mean() - 1.0) < 0.05 and abs(x.std() - 2.0) < 0.05
    plain = cd.SCM(nx.DiGraph([("r", "s")]), {"r": dist.Normal(1.0, 2.0), "s": lambda r: dist.Normal(r, 1.0)})
    assert torch.equal(plain.sample(50, seed=1)["r"], scm.sample(50, seed=1)["r"])  # the raw Normal's values
    with pytest.raises(ValueError):
        NormalMechanism.Config(scale=0.0)


def test_pyro_config_builds_a_raw_distribution():
    from causaldiff.mechanisms import PyroConfig, PyroMechanism

    m = PyroMechanism.from_config(PyroConfig(family="Laplace", params={"loc": 1.0, "scale": 0.5}))
    assert isinstance(m.spec, dist.Laplace) and float(m.spec.loc) == 1.0
    with pytest.raises(ValueError, match="unknown Pyro distribution family 'Nope'"):
        PyroConfig(family="Nope")
    with pytest.raises(ValueError, match="Normal"):
        PyroConfig(family="Normal", params={"loc": 0.0})
