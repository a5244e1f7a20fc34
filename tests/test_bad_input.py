"""Bad input gets an early error naming the node and the problem, and leaves every object as it was."""

from __future__ import annotations

import networkx as nx
import pyro.distributions as dist
import pytest
import torch
from bad_inputs import F64, make_scm, refuse

import causaldiff as cd

@pytest.fixture
def scm():
    return make_scm(categorical_root=False)


@pytest.fixture
def data(scm):
    return dict(scm.sample(6, seed=0))


# ============================================================================ unknown / missing nodes
def test_unknown_node_in_do(scm, data):
    msg = r"cannot intervene on unknown node 'q'; the SCM's nodes are \["
    refuse(cd.InterventionError, msg, lambda: scm.do({"q": 1.0}), scm=scm, data=data)
    refuse(cd.InterventionError, msg, lambda: scm.counterfactual(data, do={"q": 1.0}), scm=scm, data=data)
    refuse(cd.InterventionError, msg, lambda: scm.interventional_samples(3, do={"q": 1.0}), scm=scm, data=data)
    noise = scm.abduct(data, seed=0)  # (abducting the categorical nodes draws noise: not part of the refusal)
    refuse(cd.InterventionError, msg, lambda: scm.predict(noise, do={"q": 1.0}), scm=scm, data=noise)


def test_unknown_node_in_the_data(scm, data):
    data["q"] = data["x"]
    refuse(cd.DataError, r"unknown node 'q' in the factual rows",
           lambda: scm.counterfactual(data, do={"x": 1.0}), scm=scm, data=data)
    refuse(cd.DataError, r"unknown node 'q' in the observed rows", lambda: scm.abduct(data), scm=scm, data=data)
    refuse(cd.DataError, r"unknown node 'q' in the training rows", lambda: scm.fit(data), scm=scm, data=data)


def test_missing_parents_in_the_data(scm, data):
    del data["x"]
    refuse(cd.DataError, r"the factual rows lacks node\(s\) \['x'\]",
           lambda: scm.counterfactual(data, do={"y": 1.0}), scm=scm, data=data)
    refuse(cd.DataError, r"lacks node\(s\) \['x'\]", lambda: scm.abduct(data), scm=scm, data=data)


def test_missing_noise_in_predict(scm, data):
    u = dict(scm.abduct(data))
    del u["z"]
    refuse(cd.DataError, r"noise lacks node\(s\) \['z'\]", lambda: scm.predict(u), scm=scm, data=u)


# ============================================================================ shape / dtype / values
@pytest.mark.parametrize("node,do", [("y", {"x": 1.0}), ("y", {"y": 1.0}), ("x", {"y": 1.0}), ("z", {"x": 0.0})])
def test_wrong_event_shape_names_the_node(scm, data, node, do):
    data[node] = torch.zeros(6, 2, dtype=F64)
    refuse(cd.DataError, rf"node '{node}' in the factual rows: rows have shape \(2,\), the mechanism gives \(\)",
           lambda: scm.counterfactual(data, do=do), scm=scm, data=data, rng=False)


def test_batch_size_mismatch(scm, data):
    data["z"] = data["z"][:4]
    refuse(cd.DataError, r"node 'z' in the factual rows: batch size 4 differs from 6",
           lambda: scm.counterfactual(data, do={"x": 1.0}), scm=scm, data=data)


def test_scalar_instead_of_a_batch(scm, data):
    data["x"] = data["x"][0]
    refuse(cd.DataError, r"node 'x' in the factual rows: expected a batch of shape \(n, \.\.\.\), got a scalar",
           lambda: scm.counterfactual(data, do={"y": 1.0}), scm=scm, data=data)


@pytest.mark.parametrize("dtype", [torch.bool, torch.complex128])
def test_wrong_dtype(scm, data, dtype):
    node = "b" if dtype == torch.bool else "y"
    data[node] = data[node].to(dtype)
    refuse(cd.DataError, rf"node '{node}' in the factual rows: unsupported dtype {dtype}",
           lambda: scm.counterfactual(data, do={"x": 1.0}), scm=scm, data=data)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("node", ["x", "z"])
def test_nan_or_inf_in_the_factual_rows(scm, data, bad, node):
    v = data[node].clone()
    v[3] = bad
    data[node] = v
    refuse(cd.DataError, rf"node '{node}' in the factual rows: contains NaN or Inf",
           lambda: scm.counterfactual(data, do={"y": 0.0}), scm=scm, data=data)
    refuse(cd.DataError, rf"node '{node}'.*NaN or Inf", lambda: scm.abduct(data), scm=scm, data=data)


def test_factual_values_outside_a_discrete_support(scm, data):
    data["b"] = torch.full((6,), 2.0, dtype=F64)
    refuse(cd.DataError, r"node 'b' in the factual rows: values outside the mechanism's support",
           lambda: scm.counterfactual(data, do={"x": 1.0}), scm=scm, data=data, rng=False)
    data["b"], data["c"] = make_scm(categorical_root=False).sample(6, seed=0)["b"], torch.full((6,), 9)
    refuse(cd.DataError, r"node 'c' in the factual rows: values outside the mechanism's support",
           lambda: scm.counterfactual(data, do={"x": 1.0}), scm=scm, data=data, rng=False)


def test_empty_batch(scm, data):
    empty = {k: v[:0] for k, v in data.items()}
    refuse(cd.DataError, r"the factual rows is an empty batch",
           lambda: scm.counterfactual(empty, do={"x": 1.0}), scm=scm, data=empty)
    refuse(cd.DataError, r"empty batch", lambda: scm.abduct(empty), scm=scm, data=empty)
    refuse(cd.DataError, r"lacks node\(s\)", lambda: scm.counterfactual({}, do={"x": 1.0}), scm=scm, data={})
    for n in (0, -1, 2.0, True):
        refuse(cd.DataError, r"n must be a positive integer", lambda: scm.sample(n), scm=scm, data=data)


def test_rows_that_are_not_a_mapping(scm, data):
    refuse(cd.DataError, r"the factual rows must be a dict of node name -> tensor or a pandas DataFrame, got list",
           lambda: scm.counterfactual([data], do={"x": 1.0}), scm=scm, data=data)


# ============================================================================ interventions
@pytest.mark.parametrize("node,value,support", [("b", 3.0, "Boolean"), ("b", 0.5, "Boolean"),
                                                ("c", 7, "IntegerInterval"), ("c", -1, "IntegerInterval"),
                                                ("c", 1.5, "IntegerInterval")])
def test_intervention_outside_a_discrete_support(scm, data, node, value, support):
    msg = rf"node '{node}': intervention value {value!r} is outside the node's support {support}"
    refuse(cd.InterventionError, msg, lambda: scm.counterfactual(data, do={node: value}), scm=scm, data=data)
    refuse(cd.InterventionError, msg, lambda: scm.interventional_samples(4, do={node: value}), scm=scm, data=data)
    per_row = torch.tensor([0, 1, 0, 1, 0, value])
    refuse(cd.InterventionError, rf"node '{node}'.*outside the node's support",
           lambda: scm.counterfactual(data, do={node: per_row}), scm=scm, data=data)


def test_intervention_outside_support_on_a_discrete_root_is_refused_by_do():
    g = nx.DiGraph()
    g.add_node("r", mechanism=dist.Categorical(logits=torch.zeros(3, dtype=F64)))
    scm = cd.SCM(g)
    with pytest.raises(cd.InterventionError, match=r"node 'r': intervention value 7 is outside"):
        scm.do({"r": 7})


def test_soft_intervention_leaving_a_discrete_support(scm, data):
    refuse(cd.InterventionError, r"node 'c': Shift\(5\) moves values outside the node's support",
           lambda: scm.counterfactual(data, do={"c": cd.Shift(5)}), scm=scm, data=data, rng=False)
    refuse(cd.InterventionError, r"node 'b': Transform\(<lambda>\) moves values outside",
           lambda: scm.counterfactual(data, do={"b": lambda v: v + 2.0}), scm=scm, data=data, rng=False)
    refuse(cd.InterventionError, r"node 'c': Shift\(3\) moves values outside",
           lambda: scm.interventional_samples(5, do={"c": cd.Shift(3)}), scm=scm, data=data, rng=False)


@pytest.mark.parametrize("wrap", [lambda v: v, cd.Shift])
def test_per_row_intervention_of_the_wrong_length(scm, data, wrap):
    value = wrap(torch.zeros(4, dtype=F64))
    refuse(cd.InterventionError,
           r"node 'y': intervention value of shape \(4,\) fits neither one row \(\) nor the batch \(6,\)",
           lambda: scm.counterfactual(data, do={"y": value}), scm=scm, data=data, rng=False)


@pytest.mark.parametrize("value,match", [
    (float("nan"), r"node 'y': intervention value nan is not finite"),
    (float("inf"), r"node 'y': intervention value inf is not finite"),
    (torch.tensor([0.0, float("nan")]), r"node 'y': intervention value contains NaN or Inf"),
    (torch.zeros(0), r"node 'y': intervention value is empty"),
    ("high", r"node 'y': cannot intervene with str"),
    (None, r"node 'y': cannot intervene with NoneType"),
])
def test_invalid_intervention_values(scm, data, value, match):
    refuse(cd.InterventionError, match, lambda: scm.do({"y": value}), scm=scm, data=data)
    refuse(cd.InterventionError, match, lambda: scm.counterfactual(data, do={"y": value}), scm=scm, data=data)


def test_do_must_be_a_mapping(scm, data):
    refuse(cd.InterventionError, r"`do` must map node names to interventions, got list",
           lambda: scm.counterfactual(data, do=[("x", 1.0)]), scm=scm, data=data)


def test_callable_intervention_returning_the_wrong_shape(scm, data):
    refuse(cd.InterventionError,
           r"node 'y': callable intervention returned shape \(2,\), expected \(6,\)",
           lambda: scm.counterfactual(data, do={"y": lambda v: v[:2]}), scm=scm, data=data, rng=False)


def test_abduction_through_a_callable_intervention_is_refused(scm, data):
    soft = scm.do({"y": torch.tanh})
    refuse(cd.AbductionError, r"node 'y': cannot abduct through the callable intervention",
           lambda: soft.counterfactual(data, do={"x": 0.0}), scm=soft, data=data, rng=False)


def test_the_scm_still_works_after_every_refusal(scm, data):
    for bad in ({"q": 1.0}, {"c": 7}, {"b": 3.0}, {"y": float("nan")}):
        with pytest.raises(cd.CausalDiffError):
            scm.counterfactual(data, do=bad)
    cf = scm.counterfactual(data, do={"x": 0.0})
    torch.testing.assert_close(cf["y"], data["y"] - 2.0 * data["x"], rtol=0, atol=1e-12)
