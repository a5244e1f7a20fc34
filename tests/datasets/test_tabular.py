"""The DCM tabular SCMs: equations as in BENCHMARKS.md section 2, surgery, grids, Pyro binding,
the registered data set's rows and counterfactuals."""

from __future__ import annotations

import math

import networkx as nx
import pytest
import torch

from pydantic import ValidationError

from causaldiff.datasets.base import Draw
from causaldiff.datasets.ladder import LADDER_SUPER_EDGES
from causaldiff.datasets.tabular import TABULAR_NAMES, TABULAR_SCMS, TabularConfig, TabularSCM, get_tabular_scm
from causaldiff.errors import InterventionError
from causaldiff.interventions import Shift
from causaldiff.registry import DATASETS

ALL = sorted(TABULAR_SCMS)
LADDERS = [TabularSCM(name="ladder-nonlinear"), TabularSCM(name="ladder-nonadditive")]


def _sig(z: float) -> float:
    return 1 / (1 + math.exp(-z))


# Spot values typed independently from the table: (parents, u) -> expected value.
A, B, U = 0.7, -0.4, 0.3  # parent values and a noise value
SPOT = {
    ("chain-nonlinear", "x2"): ({"x1": A}, (math.exp(A / 2) + U / 4) / 0.65),
    ("chain-nonlinear", "x3"): ({"x2": A}, ((A - 5) ** 3 / 15 + U) / 2.13),
    ("chain-nonadditive", "x2"): ({"x1": A}, 1 / ((U + A) ** 2 + 0.5) / 0.63),
    ("chain-nonadditive", "x3"): ({"x2": A}, math.sqrt(A + abs(U)) / (0.1 + A)),
    ("triangle-nonlinear", "x2"): ({"x1": A}, (U + 2 * A**2) / 3),
    ("triangle-nonlinear", "x3"): ({"x1": A, "x2": B}, (U + 20 / (1 + math.exp(-B**2 + A))) / 2.41),
    ("triangle-nonadditive", "x2"): ({"x1": A}, (A / ((U + A) ** 2 + 1) + U / 4) / 0.47),
    ("triangle-nonadditive", "x3"): ({"x1": A, "x2": B},
                                     (abs(U) + 0.3) * (-A + B / 2 + abs(U) / 5) ** 2 / 0.93),
    ("diamond-nonlinear", "x2"): ({"x1": A}, (A**2 + U / 2) / 1.5),
    ("diamond-nonlinear", "x3"): ({"x1": A, "x2": B}, (B**2 - 2 * _sig(A) + U / 2) / 1.27),
    ("diamond-nonlinear", "x4"): ({"x2": A, "x3": B}, (B / (abs(A + B) + 0.5) + U / 5) / 0.54),
    ("diamond-nonadditive", "x2"): ({"x1": B},
                                    (math.sqrt(abs(B)) * (abs(U) + 0.1) / 2 + abs(B) + U / 5) / 0.83),
    ("diamond-nonadditive", "x3"): ({"x1": A, "x2": B}, 6 / (1 + (abs(U) + 0.5) * math.exp(-B + A))),
    ("diamond-nonadditive", "x4"): ({"x2": A, "x3": B}, ((B + A + U / 4 - 7) ** 2 - 20) / 7.27),
    ("y-nonlinear", "x3"): ({"x1": A, "x2": B}, (-B**2 + 4 * _sig(A + B) + U / 2) / 1.83),
    ("y-nonlinear", "x4"): ({"x3": A}, (20 / (1 + math.exp(A**2 / 2 - A)) + U) / 3.26),
    ("y-nonadditive", "x3"): ({"x1": A, "x2": B}, (A - 2 * B - 2) * (abs(U) + 0.2) / 2.87),
    ("y-nonadditive", "x4"): ({"x3": A}, 1 / (abs(U + 2 * A) + 0.5) / 0.43),
}


def test_registry_has_the_eight_scms():
    assert len(TABULAR_SCMS) == 8
    graphs = {s.graph_name for s in TABULAR_SCMS.values()}
    assert graphs == {"chain", "triangle", "diamond", "Y"}
    assert get_tabular_scm("Y-nonlinear") is TABULAR_SCMS["y-nonlinear"]
    with pytest.raises(KeyError, match="unknown tabular SCM"):
        get_tabular_scm("square-nonlinear")
    assert get_tabular_scm("ladder-nonlinear", seed=2).config == TabularConfig(name="ladder-nonlinear",
                                                                               mechanism_seed=2)


def test_config_validates_the_name_and_lists_the_known_ones():
    assert DATASETS.get("tabular") is TabularSCM
    assert TabularConfig(name="Y-Nonlinear").name == "y-nonlinear"
    assert len(TABULAR_NAMES) == 10 and "ladder-nonadditive" in TABULAR_NAMES
    with pytest.raises(ValidationError, match="unknown tabular SCM 'square'.*chain-nonlinear.*ladder-nonadditive"):
        TabularSCM(name="square")
    with pytest.raises(ValidationError, match="seed"):
        TabularConfig(name="chain-nonlinear", seed=1)


@pytest.mark.parametrize("key", sorted(SPOT), ids=lambda k: f"{k[0]}:{k[1]}")
def test_equations_match_the_table(key):
    name, node = key
    scm = TABULAR_SCMS[name]
    parents, expected = SPOT[key]
    assert set(parents) == set(scm.parents(node))
    pa = {p: torch.tensor([v], dtype=torch.float64) for p, v in parents.items()}
    got = scm.equations[node](pa, torch.tensor([U], dtype=torch.float64))
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_every_non_root_is_spot_checked_and_roots_are_their_noise():
    for name, scm in TABULAR_SCMS.items():
        for v in scm.nodes:
            if scm.parents(v):
                assert (name, v) in SPOT
            else:
                u = torch.randn(5, dtype=torch.float64)
                assert torch.equal(scm.equations[v]({}, u), u)


@pytest.mark.parametrize("name", ALL)
def test_graph_and_intervention_nodes(name):
    scm = TABULAR_SCMS[name]
    g = scm.graph()
    assert isinstance(g, nx.DiGraph) and set(g.edges) == set(scm.edges)
    assert list(scm.nodes) == [v for v in nx.topological_sort(g) if v in scm.nodes] or \
        all(scm.nodes.index(a) < scm.nodes.index(b) for a, b in scm.edges)
    assert scm.intervention_nodes == tuple(sorted(v for v in scm.nodes if nx.descendants(g, v)))
    g.add_edge("x1", "zz")  # a copy: the SCM's graph is untouched
    assert "zz" not in scm.graph() and "zz" not in scm.as_networkx()


@pytest.mark.parametrize("scm", [TABULAR_SCMS[n] for n in ALL] + LADDERS, ids=lambda s: s.scm_name)
def test_do_is_effective_and_leaves_non_descendants_unchanged(scm: TabularSCM):
    gen = torch.Generator().manual_seed(1)
    noise = scm.sample_noise(64, gen)
    factual = scm.simulate(noise)
    for node in scm.intervention_nodes:
        value = torch.full(scm.event_shapes[node], 0.37, dtype=torch.float64)
        cf = scm.simulate(noise, do={node: value})
        assert torch.equal(cf[node], value.expand_as(cf[node]))
        desc = set(scm.descendants(node))
        for v in scm.nodes:
            if v != node and v not in desc:
                assert torch.equal(cf[v], factual[v]), (node, v)
        # descendants follow the equations with the same noise
        for v in scm.descendants(node):
            pa = {p: cf[p] for p in scm.parents(v)}
            torch.testing.assert_close(cf[v], scm.equations[v](pa, noise[v]), rtol=0, atol=0)
            assert not torch.equal(cf[v], factual[v])
        # a null intervention (the factual value itself, per row) reproduces the factual rows
        null = scm.simulate(noise, do={node: factual[node]})
        for v in scm.nodes:
            torch.testing.assert_close(null[v], factual[v], rtol=0, atol=0)


def test_do_validates_its_arguments():
    scm = TABULAR_SCMS["chain-nonlinear"]
    noise = scm.sample_noise(4, torch.Generator().manual_seed(0))
    with pytest.raises(InterventionError, match="unknown nodes"):
        scm.simulate(noise, do={"x9": 1.0})
    with pytest.raises(InterventionError, match="x2"):
        scm.simulate(noise, do={"x2": torch.zeros(3)})
    with pytest.raises(KeyError, match="missing"):
        scm.simulate({"x1": noise["x1"]})
    per_row = torch.arange(4, dtype=torch.float64)
    assert torch.equal(scm.simulate(noise, do={"x2": per_row})["x2"], per_row)


def test_sampling_is_seeded_and_interventional_uses_fresh_noise():
    scm = TABULAR_SCMS["diamond-nonadditive"]
    a = scm.sample(10, torch.Generator().manual_seed(3))
    b = scm.sample(10, torch.Generator().manual_seed(3))
    assert isinstance(a, Draw) and all(torch.equal(a.values[v], b.values[v]) for v in scm.nodes)
    assert a.values["x1"].dtype == torch.float64
    noise = scm.sample_noise(10, torch.Generator().manual_seed(3))
    assert all(torch.equal(a.exogenous[v], noise[v]) for v in scm.nodes)
    c = scm.sample(10, torch.Generator().manual_seed(3), do={"x2": 0.5})
    assert torch.equal(c.values["x1"], a.values["x1"]) and (c.values["x2"] == 0.5).all()


def test_quantile_grid_matches_the_true_marginal():
    scm = TABULAR_SCMS["chain-nonlinear"]
    # x1 = u1 ~ N(0, 1): q10/q90 = -/+ 1.2816; 5000 draws give a quantile s.e. of about
    # sqrt(0.1 * 0.9 / 5000) / phi(1.2816) = 0.024, so 0.1 is > 4 standard errors.
    grid = scm.quantile_grid("x1", 20, n_draws=5000, generator=torch.Generator().manual_seed(0))
    assert grid.shape == (20,)
    assert grid[0].item() == pytest.approx(-1.2816, abs=0.1)
    assert grid[-1].item() == pytest.approx(1.2816, abs=0.1)
    steps = grid.diff()
    torch.testing.assert_close(steps, steps[:1].expand_as(steps))
    # the grid uses the quantiles of exactly those draws
    draws = scm.sample(5000, torch.Generator().manual_seed(0)).values["x2"]
    grid2 = scm.quantile_grid("x2", 3, generator=torch.Generator().manual_seed(0))
    q = torch.quantile(draws, torch.tensor([0.1, 0.9], dtype=torch.float64))
    torch.testing.assert_close(grid2, torch.stack([q[0], q.mean(), q[1]]), rtol=1e-12, atol=1e-12)


def test_ladder_structure_and_mechanisms():
    scm = TabularSCM(name="ladder-nonlinear", mechanism_seed=0)
    assert scm.nodes == tuple(f"x{i}" for i in range(1, 11))
    assert len(scm.edges) == len(LADDER_SUPER_EDGES) == 13
    assert scm.roots == ("x1",)
    assert all(scm.event_shapes[v] == (3,) for v in scm.nodes)
    assert scm.parents("x4") == ("x2", "x3") and scm.parents("x10") == ("x8", "x9")
    # as the module docstring says: x2 <- x1; odd i >= 3 <- i-2; even i >= 4 <- i-2, i-1
    assert scm.parents("x2") == ("x1",)
    for i in range(3, 11):
        want = (f"x{i - 2}",) if i % 2 else tuple(sorted((f"x{i - 2}", f"x{i - 1}")))
        assert scm.parents(f"x{i}") == want, i
    assert scm.intervention_nodes == ("x1", "x2")
    x = scm.sample(7, torch.Generator().manual_seed(0)).values
    assert all(x[v].shape == (7, 3) for v in scm.nodes)
    # additive noise: x_i - u_i depends on the parents only
    noise = scm.sample_noise(7, torch.Generator().manual_seed(1))
    vals = scm.simulate(noise)
    pa = {p: vals[p] for p in scm.parents("x5")}
    loc, scale = scm.additive_parts("x5")
    assert scale == pytest.approx(1.0)
    torch.testing.assert_close(vals["x5"], loc(**pa) + noise["x5"])
    # seeds draw different mechanisms; the same seed the same ones
    n1 = TabularSCM(name="ladder-nonlinear", mechanism_seed=1).simulate(noise)
    n0 = TabularSCM(name="ladder-nonlinear", mechanism_seed=0).simulate(noise)
    assert torch.equal(n0["x10"], vals["x10"]) and not torch.equal(n1["x10"], vals["x10"])


def test_ladder_nonadditive_coordinates_use_their_own_noise():
    scm = TabularSCM(name="ladder-nonadditive", mechanism_seed=0)
    noise = scm.sample_noise(5, torch.Generator().manual_seed(0))
    base = scm.simulate(noise)
    bumped = dict(noise)
    bumped["x3"] = noise["x3"].clone()
    bumped["x3"][:, 1] += 1.0
    out = scm.simulate(bumped)
    assert torch.equal(out["x3"][:, [0, 2]], base["x3"][:, [0, 2]])
    assert not torch.equal(out["x3"][:, 1], base["x3"][:, 1])
    with pytest.raises(ValueError, match="not additive"):
        scm.additive_parts("x3")


def test_additive_parts_rebuild_the_nonlinear_equations():
    gen = torch.Generator().manual_seed(2)
    for scm in TABULAR_SCMS.values():
        if scm.kind != "nonlinear":
            continue
        noise = scm.sample_noise(50, gen)
        vals = scm.simulate(noise)
        for v in scm.nodes:
            if not scm.parents(v):
                continue
            loc, scale = scm.additive_parts(v)
            pa = {p: vals[p] for p in scm.parents(v)}
            torch.testing.assert_close(loc(**pa) + scale * noise[v], vals[v], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in ALL if TABULAR_SCMS[n].kind == "nonlinear"])
def test_pyro_binding_counterfactuals_equal_the_truth(name):
    import causaldiff as cd

    scm = TABULAR_SCMS[name]
    model = cd.SCM(scm.scm_graph())
    assert set(scm.true_mechanisms()) == set(scm.nodes)
    noise = scm.sample_noise(200, torch.Generator().manual_seed(5))
    factual = scm.simulate(noise)
    for node in scm.intervention_nodes:
        value = scm.quantile_grid(node, 3, n_draws=500, generator=torch.Generator().manual_seed(6))[1]
        truth = scm.simulate(noise, do={node: value})
        cf = model.counterfactual(factual, do={node: float(value)})
        for v in scm.nodes:
            torch.testing.assert_close(cf[v].to(torch.float64), truth[v], rtol=0, atol=1e-5)


@pytest.mark.parametrize("scm", [TABULAR_SCMS["chain-nonadditive"]] + LADDERS, ids=lambda s: s.scm_name)
def test_no_pyro_form_without_additive_scalar_noise(scm):
    assert scm.true_mechanisms() == {}
    with pytest.raises(ValueError, match="no Pyro form"):
        scm.scm_graph()


@pytest.mark.parametrize("name", ["chain-nonlinear", "Y-nonadditive", "ladder-nonlinear", "ladder-nonadditive"])
@pytest.mark.parametrize("seed", [0, 3])
def test_load_rows_equal_the_spec_path_of_before(name, seed):
    """The rows ``causaldiff.build.load_rows`` gave before the data sets were registered, written
    out: mechanisms from ``seed``, a generator seeded ``seed + (0 train | 1 test)``, float32 noise
    drawn node by node in order, pushed through the equations."""
    ds = DATASETS.get("tabular")(TabularConfig.model_validate({"name": name, "mechanism_seed": seed}))
    for split, offset, n in (("train", 0, 50), ("test", 1, 20)):
        gen = torch.Generator().manual_seed(seed + offset)
        noise = {v: torch.randn((n, *ds.event_shapes[v]), generator=gen, dtype=torch.float32) for v in ds.nodes}
        values: dict = {}
        for v in ds.nodes:
            values[v] = ds.equations[v]({p: values[p] for p in ds.parents(v)}, noise[v])
        draw = ds.load(split, n, seed)
        for v in ds.nodes:
            assert draw.values[v].dtype == torch.float32 and torch.equal(draw.values[v], values[v]), (split, v)
            assert torch.equal(draw.exogenous[v], noise[v])
    assert TabularSCM(name=name, dtype="float64").load("train", 3).values["x1"].dtype == torch.float64


def test_counterfactual_is_the_simulation_of_the_draws_noise():
    scm = TABULAR_SCMS["diamond-nonlinear"]
    draw = scm.sample(30, torch.Generator().manual_seed(4))
    for do in ({"x2": 0.3}, {"x1": draw.values["x1"].flip(0), "x3": -0.2}):
        cf = scm.counterfactual(draw, do)
        truth = scm.simulate(draw.exogenous, do)
        assert all(torch.equal(cf[v], truth[v]) for v in scm.nodes)


def test_soft_interventions_act_on_the_natural_value():
    scm = TABULAR_SCMS["triangle-nonadditive"]
    draw = scm.sample(20, torch.Generator().manual_seed(7))
    shifted = scm.counterfactual(draw, {"x2": Shift(0.25)})
    hard = scm.counterfactual(draw, {"x2": draw.values["x2"] + 0.25})
    assert all(torch.equal(shifted[v], hard[v]) for v in scm.nodes)
    doubled = scm.counterfactual(draw, {"x1": lambda x: 2 * x})
    torch.testing.assert_close(doubled["x1"], 2 * draw.values["x1"], rtol=0, atol=0)
    with pytest.raises(InterventionError, match="x9"):
        scm.counterfactual(draw, {"x9": 1.0})
