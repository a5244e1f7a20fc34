"""The SCM engine on linear-Gaussian models with closed-form counterfactuals, structural
validation, graph surgery, devices and printing."""

from __future__ import annotations

import networkx as nx
import pyro.distributions as dist
import pytest
import torch

import causaldiff as cd
from causaldiff.mechanisms.base import Abduction

F64 = torch.float64


def t(v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=F64)


# ============================================================================ linear-Gaussian oracles
# chain: x = 1 + 2 u_x ; y = 0.5 x + 1 + 0.7 u_y ; z = -2 y + 0.3 + 0.3 u_z
CHAIN = dict(ax=1.0, sx=2.0, by=0.5, cy=1.0, sy=0.7, dz=-2.0, ez=0.3, sz=0.3)


def chain_scm() -> cd.SCM:
    p = CHAIN
    g = nx.DiGraph([("x", "y"), ("y", "z")])
    g.nodes["x"]["mechanism"] = dist.Normal(t(p["ax"]), t(p["sx"]))
    g.nodes["y"]["mechanism"] = lambda x: dist.Normal(p["by"] * x + p["cy"], t(p["sy"]))
    g.nodes["z"]["mechanism"] = lambda y: dist.Normal(p["dz"] * y + p["ez"], t(p["sz"]))
    return cd.SCM(g)


def chain_noise(d):
    p = CHAIN
    ux = (d["x"] - p["ax"]) / p["sx"]
    uy = (d["y"] - p["by"] * d["x"] - p["cy"]) / p["sy"]
    uz = (d["z"] - p["dz"] * d["y"] - p["ez"]) / p["sz"]
    return ux, uy, uz


def chain_oracle(d, x=None, y=None):
    """Closed form: abduct by hand, then recompute with x and/or y given as functions of their
    natural values (None: left alone)."""
    p = CHAIN
    ux, uy, uz = chain_noise(d)
    xn = p["ax"] + p["sx"] * ux
    xc = x(xn) if x else xn
    yn = p["by"] * xc + p["cy"] + p["sy"] * uy
    yc = y(yn) if y else yn
    zc = p["dz"] * yc + p["ez"] + p["sz"] * uz
    return {"x": xc, "y": yc, "z": zc}


# confounded triangle: c -> t, c -> o, t -> o  (c confounds the effect of t on o)
def triangle_scm() -> cd.SCM:
    g = nx.DiGraph([("c", "t"), ("c", "o"), ("t", "o")])
    g.nodes["c"]["mechanism"] = dist.Normal(t(0.0), t(1.0))
    g.nodes["t"]["mechanism"] = lambda c: dist.Normal(1.5 * c, t(0.5))
    g.nodes["o"]["mechanism"] = lambda c, t: dist.Normal(2.0 * t - 3.0 * c + 0.25, t_(0.4))
    return cd.SCM(g)


t_ = t


def triangle_oracle(d, c=None, tr=None):
    uc = d["c"]
    ut = (d["t"] - 1.5 * d["c"]) / 0.5
    uo = (d["o"] - 2.0 * d["t"] + 3.0 * d["c"] - 0.25) / 0.4
    cc = c(uc) if c else uc
    tn = 1.5 * cc + 0.5 * ut
    tc = tr(tn) if tr else tn
    oc = 2.0 * tc - 3.0 * cc + 0.25 + 0.4 * uo
    return {"c": cc, "t": tc, "o": oc}


def assert_close(a, b, atol=1e-5):
    torch.testing.assert_close(a, b, rtol=0, atol=atol)


def test_chain_sample_is_float64_and_abduction_is_the_hand_noise():
    scm = chain_scm()
    d = scm.sample(64, seed=1)
    assert all(v.dtype == F64 and v.shape == (64,) for v in d.values())
    u = scm.abduct(d)
    for name, hand in zip("xyz", chain_noise(d)):
        assert_close(u[name], hand, atol=1e-12)
    again = scm.predict(u)
    for k in "xyz":
        assert_close(again[k], d[k], atol=1e-12)


@pytest.mark.parametrize("case", ["hard_x", "hard_y", "per_row_x", "shift_y", "shift_x", "callable_y",
                                  "callable_x", "x_and_y", "shift_x_hard_y"])
def test_chain_counterfactuals_match_the_closed_form(case):
    scm = chain_scm()
    d = scm.sample(50, seed=2)
    rows = torch.linspace(-3, 3, 50, dtype=F64)
    spec = {
        "hard_x": ({"x": 2.5}, dict(x=lambda v: torch.full_like(v, 2.5))),
        "hard_y": ({"y": -1.0}, dict(y=lambda v: torch.full_like(v, -1.0))),
        "per_row_x": ({"x": rows}, dict(x=lambda v: rows)),
        "shift_y": ({"y": cd.Shift(0.75)}, dict(y=lambda v: v + 0.75)),
        "shift_x": ({"x": cd.Shift(rows)}, dict(x=lambda v: v + rows)),
        "callable_y": ({"y": lambda v: v ** 2}, dict(y=lambda v: v ** 2)),
        "callable_x": ({"x": torch.sin}, dict(x=torch.sin)),
        "x_and_y": ({"x": 1.0, "y": rows}, dict(x=lambda v: torch.full_like(v, 1.0), y=lambda v: rows)),
        "shift_x_hard_y": ({"x": cd.Shift(-1.0), "y": 0.5},
                           dict(x=lambda v: v - 1.0, y=lambda v: torch.full_like(v, 0.5))),
    }[case]
    do, oracle = spec
    cf = scm.counterfactual(d, do=do)
    want = chain_oracle(d, **oracle)
    for k in "xyz":
        assert cf[k].dtype == F64
        assert_close(cf[k], want[k])


def test_chain_counterfactual_far_from_the_data_is_still_exact():
    scm = chain_scm()
    d = scm.sample(10, seed=3)
    cf = scm.counterfactual(d, do={"y": 1e3})
    assert_close(cf["z"], chain_oracle(d, y=lambda v: torch.full_like(v, 1e3))["z"], atol=1e-8)


@pytest.mark.parametrize("case", ["hard_c", "hard_t", "per_row_t", "shift_t", "callable_t", "both"])
def test_confounded_triangle_counterfactuals_match_the_closed_form(case):
    scm = triangle_scm()
    d = scm.sample(40, seed=4)
    rows = torch.linspace(-2, 2, 40, dtype=F64)
    do, oracle = {
        "hard_c": ({"c": 1.0}, dict(c=lambda v: torch.full_like(v, 1.0))),
        "hard_t": ({"t": 0.0}, dict(tr=lambda v: torch.zeros_like(v))),
        "per_row_t": ({"t": rows}, dict(tr=lambda v: rows)),
        "shift_t": ({"t": cd.Shift(2.0)}, dict(tr=lambda v: v + 2.0)),
        "callable_t": ({"t": lambda v: -v}, dict(tr=lambda v: -v)),
        "both": ({"c": rows, "t": cd.Shift(1.0)}, dict(c=lambda v: rows, tr=lambda v: v + 1.0)),
    }[case]
    cf = scm.counterfactual(d, do=do)
    want = triangle_oracle(d, **oracle)
    for k in "cto":
        assert_close(cf[k], want[k])
    # the unit-level effect of t on o is 2 (a confounded regression of o on t would not say so)
    if case == "shift_t":
        assert_close(cf["o"] - d["o"], torch.full_like(d["o"], 4.0))


def test_non_descendants_are_the_factual_tensors_bit_for_bit():
    scm = triangle_scm()
    d = scm.sample(20, seed=5)
    cf = scm.counterfactual(d, do={"t": 3.0})
    assert torch.equal(cf["c"], d["c"])
    cf = scm.counterfactual(d, do={"o": cd.Shift(1.0)})
    assert torch.equal(cf["c"], d["c"]) and torch.equal(cf["t"], d["t"])


def test_interventional_samples_match_the_closed_form_moments():
    scm = chain_scm()
    n = 20000
    s = scm.interventional_samples(n, do={"x": 2.0}, seed=6)
    assert torch.all(s["x"] == 2.0)
    assert all(v.dtype == F64 for v in s.values())  # a hard value takes the node's dtype
    # y | do(x=2) ~ N(2, 0.7^2); z ~ N(-2 * 2 + 0.3, (2 * 0.7)^2 + 0.3^2)
    sd_z = (4 * 0.49 + 0.09) ** 0.5
    assert abs(s["y"].mean().item() - 2.0) < 5 * 0.7 / n ** 0.5
    assert abs(s["z"].mean().item() - (-3.7)) < 5 * sd_z / n ** 0.5
    assert abs(s["z"].std().item() - sd_z) < 5 * sd_z / (2 * n) ** 0.5
    again = scm.do({"x": 2.0}).sample(n, seed=6)
    assert all(torch.equal(s[k], again[k]) for k in s)


def test_sample_seed_is_reproducible_and_leaves_global_rng_alone():
    scm = chain_scm()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b = scm.sample(7, seed=9), scm.sample(7, seed=9)
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = scm.sample(7, seed=10)
    assert not torch.equal(a["x"], c["x"])


def test_predict_with_do_recomputes_from_noise():
    scm = chain_scm()
    d = scm.sample(16, seed=11)
    u = scm.abduct(d)
    out = scm.predict(u, do={"y": 0.0})
    assert_close(out["z"], CHAIN["ez"] + CHAIN["sz"] * u["z"], atol=1e-12)
    assert_close(out["x"], d["x"], atol=1e-12)


# ============================================================================ validation
def _chain_graph():
    g = nx.DiGraph([("x", "y")])
    g.nodes["x"]["mechanism"] = dist.Normal(0.0, 1.0)
    g.nodes["y"]["mechanism"] = lambda x: dist.Normal(x, 1.0)
    return g


def test_cycle_is_refused_naming_the_nodes():
    g = nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a")])
    for v in g.nodes:
        g.nodes[v]["mechanism"] = dist.Normal(0.0, 1.0)
    with pytest.raises(cd.GraphError, match=r"cycle: .*a.*b.*c"):
        cd.SCM(g)


def test_self_loop_is_refused_naming_the_node():
    g = nx.DiGraph([("a", "a")])
    g.nodes["a"]["mechanism"] = lambda a: dist.Normal(a, 1.0)
    with pytest.raises(cd.GraphError, match=r"node 'a' has a self-loop"):
        cd.SCM(g)


def test_unbound_node_is_refused_naming_the_node():
    g = _chain_graph()
    g.add_edge("y", "w")
    with pytest.raises(cd.GraphError, match=r"node 'w' is not bound"):
        cd.SCM(g)


def test_callable_parameters_must_equal_the_parents():
    g = _chain_graph()
    g.nodes["y"]["mechanism"] = lambda z: dist.Normal(z, 1.0)
    with pytest.raises(cd.GraphError, match=r"node 'y': its callable takes \['z'\] but the node's parents are \['x'\]"):
        cd.SCM(g)
    g.nodes["y"]["mechanism"] = lambda x, extra: dist.Normal(x, 1.0)
    with pytest.raises(cd.GraphError, match=r"node 'y'.*\['extra', 'x'\]"):
        cd.SCM(g)
    g.nodes["y"]["mechanism"] = lambda **kw: dist.Normal(kw["x"], 1.0)
    with pytest.raises(cd.GraphError, match=r"node 'y'.*\*\*kwargs"):
        cd.SCM(g)


@pytest.mark.parametrize("name", [1, ("a", "b"), ""])
def test_non_string_node_names_are_refused(name):
    g = nx.DiGraph()
    g.add_node(name, mechanism=dist.Normal(0.0, 1.0))
    with pytest.raises(cd.GraphError, match=r"node names must be non-empty strings"):
        cd.SCM(g)


def test_raw_distribution_on_a_node_with_parents_is_refused():
    g = _chain_graph()
    g.nodes["y"]["mechanism"] = dist.Normal(0.0, 1.0)
    with pytest.raises(cd.GraphError, match=r"node 'y' has parents \['x'\] but is bound to a raw distribution"):
        cd.SCM(g)


def test_a_mechanism_object_shared_by_two_nodes_is_refused():
    m = cd.PyroMechanism(dist.Normal(0.0, 1.0))
    g = nx.DiGraph()
    g.add_nodes_from(["a", "b"])
    with pytest.raises(cd.GraphError, match=r"nodes 'a' and 'b' share one mechanism object"):
        cd.SCM(g, mechanisms={"a": m, "b": m})


def test_mechanisms_mapping_with_unknown_nodes_is_refused():
    g = _chain_graph()
    with pytest.raises(cd.GraphError, match=r"unknown node\(s\) \['q'\]"):
        cd.SCM(g, mechanisms={"q": dist.Normal(0.0, 1.0)})


def test_a_mechanism_that_is_not_one_is_refused():
    g = _chain_graph()
    g.nodes["x"]["mechanism"] = 3.0
    with pytest.raises(cd.GraphError, match=r"node 'x': mechanism must be"):
        cd.SCM(g)


def test_mechanisms_mapping_overrides_graph_attributes_and_graph_is_copied():
    g = _chain_graph()
    scm = cd.SCM(g, mechanisms={"x": dist.Normal(t(5.0), t(1e-9))})
    assert torch.allclose(scm.sample(3, seed=0)["x"], torch.full((3,), 5.0, dtype=F64))
    g.add_edge("y", "w")  # editing the caller's graph afterwards does not reach the SCM
    assert set(scm.graph.nodes) == {"x", "y"}
    with pytest.raises(nx.NetworkXError):
        scm.graph.add_edge("x", "q")  # frozen


def test_learnable_mechanism_fitted_with_other_parents_is_refused_after_graph_edit():
    torch.manual_seed(0)
    x = torch.randn(200, dtype=F64)
    w = torch.randn(200, dtype=F64)
    data = {"x": x, "w": w, "y": x + 0.1 * torch.randn(200, dtype=F64)}
    g = nx.DiGraph([("x", "y")])
    g.add_node("w")
    ynode = cd.AdditiveNoiseMechanism(steps=5)
    scm = cd.SCM(g, mechanisms={"x": dist.Normal(t(0.0), t(1.0)), "w": dist.Normal(t(0.0), t(1.0)),
                                "y": ynode})
    scm.fit(data)
    g.add_edge("w", "y")
    with pytest.raises(cd.GraphError, match=r"node 'y' was fitted with parents \['x'\] but the graph now "
                                            r"gives it \['w', 'x'\]; refit it"):
        cd.SCM(g, mechanisms={"x": dist.Normal(t(0.0), t(1.0)), "w": dist.Normal(t(0.0), t(1.0)),
                              "y": ynode})


def test_parent_order_is_sorted_by_name():
    g = nx.DiGraph([("zeta", "y"), ("alpha", "y"), ("mid", "y")])
    for r in ("zeta", "alpha", "mid"):
        g.nodes[r]["mechanism"] = dist.Normal(0.0, 1.0)
    g.nodes["y"]["mechanism"] = lambda mid, zeta, alpha: dist.Normal(alpha + mid + zeta, 1.0)
    scm = cd.SCM(g)
    assert scm.parents("y") == ("alpha", "mid", "zeta")
    assert scm.nodes.index("y") == 3


# ============================================================================ surgery
def test_do_returns_a_new_scm_and_leaves_the_original_untouched():
    scm = triangle_scm()
    edges, mechs = set(scm.graph.edges), scm.mechanisms
    new = scm.do({"t": 1.0})
    assert new is not scm
    assert set(new.graph.in_edges("t")) == set()
    assert set(new.graph.edges) == edges - {("c", "t")}
    assert set(scm.graph.edges) == edges and scm.interventions == {} and scm.mechanisms == mechs
    assert isinstance(new.interventions["t"], cd.Hard)
    # soft interventions keep the edges
    soft = scm.do({"t": cd.Shift(1.0)})
    assert set(soft.graph.edges) == edges
    # a hard then a soft intervention on the same node: the later one wins and restores the edges
    assert set(new.do({"t": cd.Shift(1.0)}).graph.edges) == edges
    # do of a do is cumulative
    both = new.do({"c": 0.0})
    assert set(both.interventions) == {"c", "t"} and set(both.graph.edges) == {("c", "o"), ("t", "o")}


def test_intervened_scm_samples_respect_the_intervention():
    scm = triangle_scm()
    s = scm.do({"t": 1.0}).sample(10, seed=0)
    assert torch.equal(s["t"], torch.ones(10, dtype=F64))


def test_counterfactual_on_an_already_intervened_scm_composes():
    scm = chain_scm()
    d = scm.do({"x": 1.0}).sample(20, seed=3)
    cf = scm.do({"x": 1.0}).counterfactual(d, do={"y": cd.Shift(1.0)})
    assert_close(cf["z"], d["z"] + CHAIN["dz"] * 1.0)
    assert torch.equal(cf["x"], d["x"])


# ============================================================================ device
def test_to_cpu_keeps_queries_on_cpu():
    scm = chain_scm().to("cpu")
    assert scm.device == torch.device("cpu")
    d = scm.sample(4, seed=0)
    cf = scm.counterfactual(d, do={"x": 0.0})
    assert all(v.device.type == "cpu" for v in list(d.values()) + list(cf.values()))


@pytest.mark.gpu
def test_to_cuda_keeps_queries_on_cuda():
    scm = cd.SCM(_gpu_graph()).to("cuda")
    assert scm.device.type == "cuda"
    d = scm.sample(8, seed=0)
    assert all(v.device.type == "cuda" for v in d.values())
    cf = scm.counterfactual(d, do={"x": 1.0})
    assert all(v.device.type == "cuda" for v in cf.values())
    cpu = cd.SCM(_gpu_graph())
    cf_cpu = cpu.counterfactual({k: v.cpu() for k, v in d.items()}, do={"x": 1.0})
    for k in cf:
        assert_close(cf[k].cpu(), cf_cpu[k])
    # rows given on the CPU are moved to the SCM's device
    cf2 = scm.counterfactual({k: v.cpu() for k, v in d.items()}, do={"x": 1.0})
    assert cf2["y"].device.type == "cuda"


def _gpu_graph():
    g = nx.DiGraph([("x", "y")])
    g.nodes["x"]["mechanism"] = dist.Normal(t(0.0), t(1.0))
    g.nodes["y"]["mechanism"] = lambda x: dist.Normal(2.0 * x, 0.5)
    return g


# ============================================================================ printing
def test_repr_of_scm_names_nodes_parents_and_interventions():
    scm = triangle_scm()
    r = repr(scm)
    assert r.startswith("SCM(3 nodes, 3 edges)")
    for line in ("c(): PyroMechanism(Normal", "t(c): PyroMechanism(", "o(c, t): PyroMechanism("):
        assert line in r
    r2 = repr(scm.do({"t": 2.0}))
    assert "SCM(3 nodes, 2 edges)" in r2 and "<- do Hard(2.0)" in r2


def test_repr_of_samples_names_the_query_and_nodes():
    scm = chain_scm()
    d = scm.sample(5, seed=0)
    assert repr(d).splitlines()[0] == "Samples(sample, n=5)"
    cf = scm.counterfactual(d, do={"x": 1.0, "y": cd.Shift(2.0)})
    r = repr(cf)
    assert r.splitlines()[0] == "Samples(counterfactual do(x=Hard(1.0), y=Shift(2.0)), n=5)"
    for k in "xyz":
        assert f"  {k}: (5,) float64" in r
    assert "abducted noise" in repr(scm.abduct(d))
    assert "sample do(x=Hard(0.0))" in repr(scm.do({"x": 0.0}).sample(2, seed=0))


def test_printed_samples_show_the_first_rows():
    d = chain_scm().sample(8, seed=0)
    lines = repr(d).splitlines()
    head = lines.index("first 5 of 8 rows:")
    assert lines[head + 1].split() == ["x", "y", "z"] and len(lines) == head + 7
    for i in range(5):
        assert lines[head + 2 + i].split() == [str(i)] + [f"{d[k][i].item():.4g}" for k in "xyz"]
    assert "2 rows:" in repr(chain_scm().sample(2, seed=0))


def test_read_only_numpy_rows_give_no_warning():
    """No torch UserWarning on read-only arrays (warnings are errors here)."""
    scm = chain_scm()
    d = scm.sample(4, seed=0)
    arrays = {k: v.numpy().copy() for k, v in d.items()}
    for a in arrays.values():
        a.flags.writeable = False
    cf, ref = scm.counterfactual(arrays, do={"x": 1.0}), scm.counterfactual(d, do={"x": 1.0})
    assert all(torch.equal(cf[k], ref[k]) for k in "xyz")
    assert all(torch.equal(v, d[k]) for k, v in scm.predict(scm.abduct(arrays)).items())


def test_a_list_is_a_per_row_do():
    scm = chain_scm()
    d = scm.sample(4, seed=0)
    arrays = {k: v.numpy() for k, v in d.items()}
    cf = scm.counterfactual(arrays, do={"x": [0.0, 1.0, 2.0, 3.0]})
    ref = scm.counterfactual(d, do={"x": torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=d["x"].dtype)})
    for k in "xyz":
        assert torch.equal(cf[k], ref[k]), k
    assert torch.equal(scm.predict(scm.abduct(arrays), do={"x": (1.0, 1.0, 1.0, 1.0)})["x"], torch.ones(4, dtype=d["x"].dtype))


def test_abduction_capability_of_location_scale_nodes_is_exact():
    scm = chain_scm()
    assert scm.mechanisms["y"].abduction({"x": torch.zeros(2, dtype=F64)}) is Abduction.EXACT


# ============================================================================ DCM "nonlinear" SCMs
# BENCHMARKS.md section 2, written out by hand: every root x = u, u ~ N(0, 1).
def _sig(v):
    return 1.0 / (1.0 + torch.exp(-v))


DCM_EQUATIONS = {  # node -> (parents, f(pa, u)) exactly as printed in the table
    "chain": {
        "x2": (("x1",), lambda p, u: (torch.exp(p["x1"] / 2) + u / 4) / 0.65),
        "x3": (("x2",), lambda p, u: ((p["x2"] - 5) ** 3 / 15 + u) / 2.13),
    },
    "triangle": {
        "x2": (("x1",), lambda p, u: (u + 2 * p["x1"] ** 2) / 3),
        "x3": (("x1", "x2"), lambda p, u: (u + 20 / (1 + torch.exp(-p["x2"] ** 2 + p["x1"]))) / 2.41),
    },
    "diamond": {
        "x2": (("x1",), lambda p, u: (p["x1"] ** 2 + u / 2) / 1.5),
        "x3": (("x1", "x2"), lambda p, u: (p["x2"] ** 2 - 2 / (1 + torch.exp(-p["x1"])) + u / 2) / 1.27),
        "x4": (("x2", "x3"), lambda p, u: (p["x3"] / ((p["x2"] + p["x3"]).abs() + 0.5) + u / 5) / 0.54),
    },
    "Y": {
        "x3": (("x1", "x2"), lambda p, u: (-p["x2"] ** 2 + 4 / (1 + torch.exp(-p["x1"] - p["x2"])) + u / 2) / 1.83),
        "x4": (("x3",), lambda p, u: (20 / (1 + torch.exp(p["x3"] ** 2 / 2 - p["x3"])) + u) / 3.26),
    },
}
DCM_ROOTS = {"chain": ("x1",), "triangle": ("x1",), "diamond": ("x1",), "Y": ("x1", "x2")}
# the same SCMs as location-scale Pyro mechanisms: Normal(loc(pa), scale), read off the table by hand
DCM_PYRO = {
    "chain": {
        "x2": lambda x1: dist.Normal(torch.exp(x1 / 2) / 0.65, 0.25 / 0.65),
        "x3": lambda x2: dist.Normal((x2 - 5) ** 3 / 15 / 2.13, 1 / 2.13),
    },
    "triangle": {
        "x2": lambda x1: dist.Normal(2 * x1 ** 2 / 3, 1 / 3),
        "x3": lambda x1, x2: dist.Normal(20 * _sig(x2 ** 2 - x1) / 2.41, 1 / 2.41),
    },
    "diamond": {
        "x2": lambda x1: dist.Normal(x1 ** 2 / 1.5, 0.5 / 1.5),
        "x3": lambda x1, x2: dist.Normal((x2 ** 2 - 2 * _sig(x1)) / 1.27, 0.5 / 1.27),
        "x4": lambda x2, x3: dist.Normal(x3 / ((x2 + x3).abs() + 0.5) / 0.54, 0.2 / 0.54),
    },
    "Y": {
        "x3": lambda x1, x2: dist.Normal((-x2 ** 2 + 4 * _sig(x1 + x2)) / 1.83, 0.5 / 1.83),
        "x4": lambda x3: dist.Normal(20 * _sig(-(x3 ** 2 / 2 - x3)) / 3.26, 1 / 3.26),
    },
}


def dcm_simulate(name, noise, do=None):
    """The hand simulator: roots x = u, then the table's equations, hard do() by surgery."""
    do, values = do or {}, {}
    for v in sorted(noise):  # x1 < x2 < x3 < x4 is a topological order of all four graphs
        if v in do:
            values[v] = torch.as_tensor(do[v], dtype=F64).expand_as(noise[v]).clone()
        elif v in DCM_ROOTS[name]:
            values[v] = noise[v]
        else:
            parents, f = DCM_EQUATIONS[name][v]
            values[v] = f({p: values[p] for p in parents}, noise[v])
    return values


def dcm_scm(name):
    g = nx.DiGraph()
    for v, (parents, _) in DCM_EQUATIONS[name].items():
        g.add_edges_from((p, v) for p in parents)
    for r in DCM_ROOTS[name]:
        g.nodes[r]["mechanism"] = dist.Normal(t(0.0), t(1.0))
    for v, mech in DCM_PYRO[name].items():
        g.nodes[v]["mechanism"] = mech
    return cd.SCM(g)


@pytest.mark.parametrize("name", sorted(DCM_EQUATIONS))
def test_dcm_nonlinear_counterfactuals_equal_the_ground_truth(name):
    scm = dcm_scm(name)
    gen = torch.Generator().manual_seed(0)
    nodes = sorted(scm.nodes)
    noise = {v: torch.randn(500, generator=gen, dtype=F64) for v in nodes}
    factual = dcm_simulate(name, noise)
    # the engine's abduction recovers the true noise
    u = scm.abduct(factual)
    for v in nodes:
        assert_close(u[v], noise[v], atol=1e-8)
    for node in nodes:
        if not nx.descendants(scm.graph, node):
            continue
        q = torch.quantile(factual[node], torch.tensor([0.1, 0.5, 0.9], dtype=F64))
        per_row = torch.linspace(q[0].item(), q[2].item(), 500, dtype=F64)
        for value in (q[0].item(), q[1].item(), q[2].item(), per_row):
            truth = dcm_simulate(name, noise, do={node: value})
            cf = scm.counterfactual(factual, do={node: value})
            for v in nodes:
                assert_close(cf[v], truth[v])
    # several nodes at once
    both = {nodes[0]: 0.5, nodes[-2]: -0.25}
    truth, cf = dcm_simulate(name, noise, do=both), scm.counterfactual(factual, do=both)
    for v in nodes:
        assert_close(cf[v], truth[v])


@pytest.mark.parametrize("name", sorted(DCM_EQUATIONS))
def test_dcm_hand_simulator_agrees_with_the_dataset_module(name):
    """Cross-check of two independent transcriptions of BENCHMARKS.md (and of to_pyro_scm)."""
    tabular = pytest.importorskip("causaldiff.datasets.tabular")
    ref = tabular.TABULAR_SCMS[f"{name.lower()}-nonlinear"]
    noise = ref.sample_noise(200, torch.Generator().manual_seed(1))
    ours, theirs = dcm_simulate(name, noise), ref.simulate(noise)
    for v in ours:
        assert_close(ours[v], theirs[v], atol=1e-10)
    node = ref.intervention_nodes[0]
    bound = cd.SCM(ref.scm_graph())
    cf, truth = bound.counterfactual(theirs, do={node: 0.3}), dcm_simulate(name, noise, do={node: 0.3})
    for v in ours:
        assert_close(cf[v].to(F64), truth[v])


def test_a_second_do_on_a_node_replaces_the_first():
    g = nx.DiGraph([("x", "y")])
    g.nodes["x"]["mechanism"] = dist.Normal(0.0, 1.0)
    g.nodes["y"]["mechanism"] = lambda x: dist.Normal(2.0 * x, 0.5)
    scm = cd.SCM(g)
    twice = scm.do({"x": cd.Shift(1.0)}).do({"x": cd.Shift(2.0)})
    once = scm.do({"x": cd.Shift(2.0)})
    a, b = twice.sample(64, seed=3), once.sample(64, seed=3)
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["y"], b["y"])
    assert "Shift(2.0)" in repr(twice) and "Shift(1.0)" not in repr(twice)
