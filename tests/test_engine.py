"""The engine plans once per query and builds each node's distribution once per parent set."""

from __future__ import annotations

import inspect

import networkx as nx
import pyro.distributions as dist
import pytest
import torch

import causaldiff as cd
from causaldiff import engine
from causaldiff.mechanisms.pyro import STACK_MAX_ROWS


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
    # small batches: the factual and the new parents stacked in one call (the counterfactual step)
    assert calls == {"x1": 0, "x2": 1, "x3": 1, "x4": 1}
    big = scm.sample(STACK_MAX_ROWS + 1, seed=0)
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


@pytest.mark.parametrize("validate", [True, False])
def test_queries_leave_argument_validation_as_the_caller_set_it(dtype, validate):
    """Torch's argument validation is the caller's (a global switch: the engine never flips it),
    and queries give the same rows with it on or off."""
    scm, _ = counting_chain(dtype)
    before = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(validate)
    try:
        seen = []
        rows = scm.sample(4, seed=0)
        cf = scm.counterfactual(rows, do={"x1": 0.0})
        seen.append(torch.distributions.Distribution._validate_args)
        with pytest.raises(cd.DataError):
            scm.counterfactual(dict(rows, x2=rows["x2"][:3]), do={"x1": 0.0})
        seen.append(torch.distributions.Distribution._validate_args)
        assert seen == [validate, validate]
        torch.distributions.Distribution.set_default_validate_args(not validate)
        again = scm.counterfactual(scm.sample(4, seed=0), do={"x1": 0.0})
        assert all(torch.equal(cf[k], again[k]) for k in cf)
    finally:
        torch.distributions.Distribution.set_default_validate_args(before)


def test_a_python_number_is_exact_on_a_float64_node():
    scm, _ = counting_chain(torch.float64)
    cf = scm.counterfactual(scm.sample(3, seed=0), do={"x1": 0.3})
    assert bool((cf["x1"] == 0.3).all())


def test_descendants_of_a_parent_map():
    parents = {"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c")}
    got = engine.descendants_of(parents, ("a", "b", "c", "d"))
    assert got == {"a": {"b", "c", "d"}, "b": {"d"}, "c": {"d"}, "d": set()}


@pytest.mark.parametrize("n", [1, 7, STACK_MAX_ROWS + 1])
def test_stacked_and_separate_counterfactual_steps_agree(dtype, n):
    """The Pyro counterfactual step (one call on the factual and new parents stacked, up to
    STACK_MAX_ROWS rows) is bit-identical to abduction and prediction from separate distributions
    (what a node whose factual conditional was already built takes)."""
    scm, _ = counting_chain(dtype)
    rows = scm.sample(n, seed=5)
    cf = scm.counterfactual(rows, do={"x1": 0.1})
    plan = engine.plan_counterfactual(scm._s, scm._parse_do({"x1": 0.1}))
    conds = engine.Conditionals(scm._s, rows, n)
    engine.check_observed(conds, rows, scm.nodes, "rows")  # builds every factual distribution
    values = engine.execute(plan, n, rows=rows, factual=conds)
    for k in cf:
        assert torch.equal(cf[k], values[k]), k


def test_a_recomputed_node_is_still_checked_and_refused_by_name(dtype):
    scm, _ = counting_chain(dtype)
    rows = scm.sample(5, seed=0)
    rows = dict(rows, x3=torch.zeros(5, 2, dtype=dtype))
    with pytest.raises(cd.DataError, match=r"node 'x3' in the factual rows: rows have shape \(2,\)"):
        scm.counterfactual(rows, do={"x1": 0.5})


@pytest.mark.parametrize("family", ["normal", "laplace", "studentt", "gumbel"])
def test_the_stacked_step_equals_abduct_then_predict(family):
    """A location-scale node's counterfactual step computed from one stacked distribution is
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
    expected = m.given(new, 33).forward(m.given({"a": rows["a"]}, 33).abduct(rows["y"]))
    assert torch.equal(cf["y"], expected)
    assert torch.equal(m.given({"a": rows["a"]}, 33).counterfactual(rows["y"], new), expected)


def test_the_counterfactual_step_checks_the_rows_shape_naming_the_node():
    g = nx.DiGraph([("a", "y")])
    scm = cd.SCM(g, mechanisms={"a": dist.Normal(0.0, 1.0), "y": lambda a: dist.Normal(a, 1.0)})
    m = scm._s.mechanisms["y"]
    with pytest.raises(cd.DataError, match="node 'y'.*shape"):
        m.given({"a": torch.zeros(3)}, 3).counterfactual(torch.zeros(3, 2), {"a": torch.ones(3)})


def test_a_non_location_scale_node_takes_the_default_step():
    """Families without a one-step form (here Bernoulli through Gumbel-max) abduct (a sample from
    the generator) then predict: the step equals forward(abduct(x)) with the same generator."""
    g = nx.DiGraph([("a", "y")])
    scm = cd.SCM(g, mechanisms={"a": dist.Normal(0.0, 1.0), "y": lambda a: dist.Bernoulli(logits=a)})
    m = scm._s.mechanisms["y"]
    x, f, new = torch.tensor([0.0, 1.0, 1.0]), {"a": torch.zeros(3)}, {"a": torch.ones(3)}
    out = m.given(f, 3).counterfactual(x, new, torch.Generator().manual_seed(0))
    expected = m.given(new, 3).forward(m.given(f, 3).abduct(x, torch.Generator().manual_seed(0)))
    assert torch.equal(out, expected)
