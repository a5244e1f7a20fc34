"""The engine plans once per query and builds each node's distribution once per parent set."""

from __future__ import annotations

import inspect

import networkx as nx
import pyro.distributions as dist
import pytest
import torch

import causaldiff as cd
from causaldiff import engine


def counting_chain(dtype: torch.dtype, k: int = 4):
    """x1 -> ... -> xk of Normal location mechanisms with nonlinear means; counts callable calls."""
    calls = {f"x{i}": 0 for i in range(1, k + 1)}
    g = nx.DiGraph([(f"x{i}", f"x{i + 1}") for i in range(1, k)])
    g.nodes["x1"]["mechanism"] = dist.Normal(torch.tensor(0.0, dtype=dtype), torch.tensor(1.0, dtype=dtype))

    def make(i: int):
        parent, scale = f"x{i - 1}", torch.tensor(0.3 + 0.1 * i, dtype=dtype)

        def mech(**pa):
            calls[f"x{i}"] += 1
            x = pa[parent]
            return dist.Normal(torch.tanh(x) + 0.5 * torch.sin(x), scale)

        mech.__signature__ = inspect.Signature([inspect.Parameter(parent, inspect.Parameter.KEYWORD_ONLY)])
        return mech

    for i in range(2, k + 1):
        g.nodes[f"x{i}"]["mechanism"] = make(i)
    return cd.SCM(g), calls


def test_plan_of_a_counterfactual(dtype):
    scm, _ = counting_chain(dtype)
    plan = engine.plan_counterfactual(scm._s, scm._parse_do({"x2": 1.0}))
    assert plan.recompute == ("x2", "x3", "x4")
    assert plan.abduct == ("x3", "x4")  # the hard-intervened node needs no noise
    assert plan.target.parents["x2"] == () and scm.parents("x2") == ("x1",)  # surgery on the plan only
    soft = engine.plan_counterfactual(scm._s, scm._parse_do({"x2": cd.Shift(1.0)}))
    assert soft.keep_natural == frozenset({"x2"}) and soft.abduct == ("x3", "x4")


def test_each_callable_runs_once_per_parent_set(dtype):
    scm, calls = counting_chain(dtype)
    rows = scm.sample(16, seed=0)
    calls.update({k: 0 for k in calls})
    scm.counterfactual(rows, do={"x1": 0.5})
    # small batches: the factual and the new parents stacked in one call (Mechanism.given_pair)
    assert calls == {"x1": 0, "x2": 1, "x3": 1, "x4": 1}
    big = scm.sample(engine.PAIR_MAX_ROWS + 1, seed=0)
    calls.update({k: 0 for k in calls})
    scm.counterfactual(big, do={"x1": 0.5})
    # large ones: one distribution under the factual parents (checks + abduction), one under the new
    assert calls == {"x1": 0, "x2": 2, "x3": 2, "x4": 2}
    calls.update({k: 0 for k in calls})
    scm.abduct(rows)
    assert calls == {"x1": 0, "x2": 1, "x3": 1, "x4": 1}
    calls.update({k: 0 for k in calls})
    scm.sample(8, seed=1)
    assert calls == {"x1": 0, "x2": 1, "x3": 1, "x4": 1}


def test_counterfactual_equals_the_hand_written_math(dtype):
    scm, _ = counting_chain(dtype, k=5)
    rows = scm.sample(64, seed=3)
    cf = scm.counterfactual(rows, do={"x1": 0.25})
    prev_f, prev_c = rows["x1"], torch.full_like(rows["x1"], 0.25)
    for i in range(2, 6):
        s = 0.3 + 0.1 * i
        mean = lambda x: torch.tanh(x) + 0.5 * torch.sin(x)  # noqa: E731
        u = (rows[f"x{i}"] - mean(prev_f)) / s
        prev_f, prev_c = rows[f"x{i}"], mean(prev_c) + s * u
        torch.testing.assert_close(cf[f"x{i}"], prev_c, rtol=0, atol=1e-12 if dtype == torch.float64 else 1e-5)


def test_distribution_checks_are_restored_after_a_query_even_on_error(dtype):
    scm, _ = counting_chain(dtype)
    before = torch.distributions.Distribution._validate_args
    rows = scm.sample(4, seed=0)
    scm.counterfactual(rows, do={"x1": 0.0})
    assert torch.distributions.Distribution._validate_args == before
    bad = dict(rows, x2=rows["x2"][:3])
    with pytest.raises(cd.DataError):
        scm.counterfactual(bad, do={"x1": 0.0})
    assert torch.distributions.Distribution._validate_args == before


def test_a_python_number_is_exact_on_a_float64_node():
    scm, _ = counting_chain(torch.float64)
    cf = scm.counterfactual(scm.sample(3, seed=0), do={"x1": 0.3})
    assert bool((cf["x1"] == 0.3).all())


def test_descendants_of_a_parent_map():
    parents = {"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c")}
    got = engine.descendants_of(parents, ("a", "b", "c", "d"))
    assert got == {"a": {"b", "c", "d"}, "b": {"d"}, "c": {"d"}, "d": set()}


@pytest.mark.parametrize("n", [1, 7, engine.PAIR_MAX_ROWS + 1])
def test_paired_and_separate_conditionals_agree(dtype, n):
    scm, _ = counting_chain(dtype)
    rows = scm.sample(n, seed=5)
    plan = engine.plan_counterfactual(scm._s, scm._parse_do({"x1": 0.1}), n)
    assert plan.paired == (frozenset({"x2", "x3", "x4"}) if n <= engine.PAIR_MAX_ROWS else frozenset())
    cf = scm.counterfactual(rows, do={"x1": 0.1})
    separate = engine.plan_counterfactual(scm._s, scm._parse_do({"x1": 0.1}))  # n unknown: never paired
    assert separate.paired == frozenset()
    conds = engine.Conditionals(scm._s, rows, n)
    engine.check_observed(conds, rows, scm.nodes, "rows")
    values = engine.execute(separate, n, rows=rows, factual=conds)
    for k in cf:
        torch.testing.assert_close(cf[k], values[k], rtol=0, atol=1e-12 if dtype == torch.float64 else 1e-6)


def test_a_paired_node_is_still_checked_and_refused_by_name(dtype):
    scm, _ = counting_chain(dtype)
    rows = scm.sample(5, seed=0)
    rows = dict(rows, x3=torch.zeros(5, 2, dtype=dtype))
    with pytest.raises(cd.DataError, match=r"node 'x3' in the factual rows: rows have shape \(2,\)"):
        scm.counterfactual(rows, do={"x1": 0.5})


@pytest.mark.parametrize("family", ["normal", "laplace", "studentt", "gumbel"])
def test_one_step_transport_equals_abduct_then_predict(family):
    """A location-scale node's counterfactual computed in one step (Mechanism.transport) is
    bit-identical to abducting under the factual parents and predicting under the new ones."""
    make = {"normal": lambda m, s: dist.Normal(m, s), "laplace": lambda m, s: dist.Laplace(m, s),
            "studentt": lambda m, s: dist.StudentT(4.0, m, s), "gumbel": lambda m, s: dist.Gumbel(m, s)}[family]
    g = nx.DiGraph([("a", "y")])
    scm = cd.SCM(g, mechanisms={"a": dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0),
                                "y": lambda a: make(torch.sin(a) + a, 0.5 + a.abs())})
    rows = scm.sample(33, seed=4)
    cf = scm.counterfactual(rows, do={"a": torch.linspace(-1, 1, 33, dtype=torch.float64)})
    m = scm._s.mechanisms["y"]
    new = {"a": cf["a"]}
    pair = m.given_pair({"a": rows["a"]}, new, 33)
    expected = pair[1].forward(pair[0].abduct(rows["y"]))
    assert torch.equal(cf["y"], expected)
    step = m.transport({"a": rows["a"]}, new, rows["y"], 33)
    assert isinstance(step, torch.Tensor) and torch.equal(step, expected)


def test_transport_checks_the_rows_shape_naming_the_node():
    g = nx.DiGraph([("a", "y")])
    scm = cd.SCM(g, mechanisms={"a": dist.Normal(0.0, 1.0), "y": lambda a: dist.Normal(a, 1.0)})
    m = scm._s.mechanisms["y"]
    with pytest.raises(cd.DataError, match="node 'y'.*shape"):
        m.transport({"a": torch.zeros(3)}, {"a": torch.ones(3)}, torch.zeros(3, 2), 3)


def test_a_non_location_scale_node_still_pairs():
    """Families without a one-step form (here Bernoulli through Gumbel-max) get the pair."""
    g = nx.DiGraph([("a", "y")])
    scm = cd.SCM(g, mechanisms={"a": dist.Normal(0.0, 1.0), "y": lambda a: dist.Bernoulli(logits=a)})
    m = scm._s.mechanisms["y"]
    out = m.transport({"a": torch.zeros(3)}, {"a": torch.ones(3)}, torch.zeros(3), 3)
    assert isinstance(out, tuple) and len(out) == 2
