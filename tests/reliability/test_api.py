"""Reliability catalogue, API (issue 14, points 4-6): every bad value given to ``do``, ``predict``,
``fit`` and the configs is refused early, naming the node or field, and nothing changes."""

from __future__ import annotations

import time

import networkx as nx
import numpy as np
import pyro.distributions as dist
import pytest
import torch
from bad_inputs import F64, make_scm, refuse, t

import causaldiff as cd
from causaldiff.diffusion import DDIMConfig, DiTConfig, MLPConfig, ScheduleConfig, UNetConfig
from causaldiff.limits import LABEL_FLOOR, MAX_ROWS, MAX_ROWS_PER_CALL
from causaldiff.mechanisms.categorical import CategoricalConfig, CategoricalMechanism
from causaldiff.mechanisms.neural import AdditiveNoiseConfig, AdditiveNoiseMechanism
from causaldiff.training import TrainConfig


@pytest.fixture
def scm():
    return make_scm()


@pytest.fixture
def data(scm):
    return dict(scm.sample(6, seed=0))


@pytest.fixture
def noise(scm, data):
    return dict(scm.abduct(data, seed=1))


# ============================================================================ 4. interventions
@pytest.mark.parametrize("wrap", [lambda v: v, cd.Hard, lambda v: v.numpy()], ids=["tensor", "Hard", "numpy"])
def test_a_hard_value_is_snapshotted_at_do(scm, wrap):
    value = torch.zeros(6, dtype=F64)
    done = scm.do({"y": wrap(value)})
    value += 7.0  # (the numpy view shares the tensor's memory)
    assert torch.equal(done.sample(6, seed=0)["y"], torch.zeros(6, dtype=F64))


def test_a_shift_is_snapshotted_at_do(scm, data):
    delta = torch.ones(6, dtype=F64)
    done = scm.do({"y": cd.Shift(delta)})
    delta += 100.0
    cf = done.counterfactual(data, do={"x": data["x"]})  # the shift is in force, unchanged
    assert float((cf["y"] - data["y"]).abs().max()) < 1e-12


@pytest.mark.parametrize("node,value", [("c", 1.0), ("c", 2.0), ("r", 1.0), ("c", torch.tensor([0.0, 1.0, 2.0, 0.0, 1.0, 2.0])),
                                        ("c", np.float32(2.0)), ("c", True)])
def test_the_dtype_of_a_hard_value_follows_the_node(scm, data, node, value):
    for out in (scm.do({node: value}).sample(6, seed=0), scm.counterfactual(data, do={node: value})):
        assert out[node].dtype == torch.long
        assert torch.equal(out[node], torch.as_tensor(value).long().expand(6))


@pytest.mark.parametrize("node,value,support", [
    ("c", 5, "IntegerInterval"), ("c", -1, "IntegerInterval"), ("c", 1.5, "IntegerInterval"), ("c", 3.0, "IntegerInterval"),
    ("r", 3, "IntegerInterval"), ("r", 0.5, "IntegerInterval"), ("b", 2.0, "Boolean"), ("b", 0.5, "Boolean"),
    ("c", torch.tensor([0, 1, 7]), "IntegerInterval"),
])
def test_values_outside_a_discrete_support_are_refused_at_do(scm, node, value, support):
    refuse(cd.InterventionError, rf"node '{node}': intervention value .* is outside the node's support {support}",
           lambda: scm.do({node: value}), scm=scm)
    refuse(cd.InterventionError, rf"node '{node}'.*outside the node's support",
           lambda: scm.interventional_samples(4, do={node: value}, seed=0), scm=scm)


@pytest.mark.parametrize("value", [1 + 2j, np.complex128(1.0), torch.tensor([1.0 + 0j]), np.array([1j, 2.0]),
                                   cd.Shift(2j), cd.Hard(torch.ones(6, dtype=torch.complex128))])
def test_complex_values_are_refused(scm, data, value):
    refuse(cd.InterventionError, r"node 'y': intervention value .*complex", lambda: scm.do({"y": value}), scm=scm)
    refuse(cd.InterventionError, r"node 'y': intervention value .*complex",
           lambda: scm.counterfactual(data, do={"y": value}), scm=scm, data=data)


@pytest.mark.parametrize("value,match", [
    (float("nan"), "is not finite"), (float("-inf"), "is not finite"), (np.float64("inf"), "is not finite"),
    (torch.tensor([0.0, float("nan")]), "contains NaN or Inf"), (np.array([1.0, np.inf]), "contains NaN or Inf"),
    (cd.Shift(float("nan")), "is not finite"), (cd.Shift(torch.tensor([float("inf")])), "contains NaN or Inf"),
    (torch.zeros(0), "is empty"), (torch.zeros(2, device="meta"), "meta device"),
    ("high", "cannot intervene with str"), (None, "cannot intervene with NoneType"), (["a", "b"], "cannot read"),
    ({"a": 1}, "cannot intervene with dict"), (cd.Transform(5), "Transform needs a callable"),
    (cd.Hard("x"), "cannot intervene with str"), (np.array(["a", "b"]), "cannot read|cannot intervene"),
])
def test_invalid_values_are_refused_at_do(scm, data, value, match):
    refuse(cd.InterventionError, rf"node 'y': .*{match}", lambda: scm.do({"y": value}), scm=scm)
    refuse(cd.InterventionError, rf"node 'y': .*{match}", lambda: scm.predict(data, do={"y": value}), scm=scm, data=data)


@pytest.mark.parametrize("query", ["sample", "counterfactual", "predict"])
@pytest.mark.parametrize("wrap", [lambda v: v, cd.Shift], ids=["hard", "shift"])
def test_per_row_values_of_the_wrong_length(scm, data, noise, query, wrap):
    do = {"y": wrap(torch.zeros(4, dtype=F64))}
    call = {"sample": lambda: scm.do(do).sample(6, seed=0), "counterfactual": lambda: scm.counterfactual(data, do=do, seed=0),
            "predict": lambda: scm.predict(noise, do=do)}[query]
    refuse(cd.InterventionError, r"node 'y': intervention value of shape \(4,\) fits neither one row \(\) nor the batch \(6,\)",
           call, scm=scm, data=data)


@pytest.mark.parametrize("fn,match", [
    (lambda v: v * float("nan"), "returned NaN or Inf"), (lambda v: v + float("inf"), "returned NaN or Inf"),
    (lambda v: v.to(torch.complex128), "returned complex values"), (lambda v: v[:2], r"returned shape \(2,\)"),
    (lambda v: v[:, None], r"returned shape \(6, 1\)"), (lambda v: "x", "returned str, not a tensor"),
    (lambda v: None, "returned NoneType, not a tensor"),
])
@pytest.mark.parametrize("query", ["sample", "counterfactual"])
def test_callable_interventions_returning_bad_values(scm, data, fn, match, query):
    call = (lambda: scm.do({"y": fn}).sample(6, seed=0)) if query == "sample" else \
        (lambda: scm.counterfactual(data, do={"y": fn}, seed=0))
    refuse(cd.InterventionError, rf"node 'y': callable intervention {match}", call, scm=scm, data=data)


def test_a_fractional_shift_of_a_categorical_node_is_refused(scm, data):
    refuse(cd.InterventionError, r"node 'c': intervention value 0.5 is not an integer; the node's values are int64",
           lambda: scm.counterfactual(data, do={"c": cd.Shift(0.5)}, seed=0), scm=scm, data=data)


# ============================================================================ 5. predict noise = counterfactual rows
def _bad_columns(kind, cols):
    cols = dict(cols)
    if kind == "nan":
        cols["x"] = cols["x"].clone().index_fill_(0, torch.tensor([2]), float("nan"))
    elif kind == "inf":
        cols["y"] = cols["y"] + float("inf")
    elif kind == "empty":
        cols = {k: v[:0] for k, v in cols.items()}
    elif kind == "short":
        cols["y"] = cols["y"][:3]
    elif kind == "column":
        cols["x"] = cols["x"][:, None]
    elif kind == "wide":
        cols["x"] = cols["x"][:, None].expand(6, 3)
    elif kind == "meta":
        cols["x"] = torch.zeros(6, dtype=F64, device="meta")
    elif kind == "missing":
        del cols["z"]
    elif kind == "unknown":
        cols["q"] = cols["x"]
    elif kind == "scalar":
        cols["x"] = cols["x"][0]
    elif kind == "strings":
        cols["x"] = ["a"] * 6
    elif kind == "complex":
        cols["x"] = cols["x"].to(torch.complex128)
    return cols


BAD = {"nan": r"node 'x' in {}: contains NaN or Inf", "inf": r"node 'y' in {}: contains NaN or Inf",
       "empty": r"{} is an empty batch", "short": r"node '(y|z)' in {}: batch size \d differs from \d",
       "column": r"node 'x' in {}: .*shape", "wide": r"node 'x' in {}: .*shape",
       "meta": r"node 'x' in {}: a tensor on the meta device holds no values", "missing": r"{} lacks node\(s\) \['z'\]",
       "unknown": r"unknown node 'q' in {}", "scalar": r"node 'x' in {}: expected a batch of shape \(n, \.\.\.\), got a scalar",
       "strings": r"node 'x' in {}: cannot convert list to a tensor", "complex": r"node 'x' in {}: unsupported dtype"}


@pytest.mark.parametrize("kind", list(BAD))
def test_predict_validates_noise_as_counterfactual_validates_rows(scm, data, noise, kind):
    refuse(cd.DataError, BAD[kind].format("the noise"), lambda: scm.predict(_bad_columns(kind, noise)),
           scm=scm, data=noise)
    refuse(cd.DataError, BAD[kind].format("the factual rows"),
           lambda: scm.counterfactual(_bad_columns(kind, data), do={"x": 0.0}), scm=scm, data=data)


def test_numpy_noise_gives_what_tensor_noise_gives(scm, noise):
    a = scm.predict(noise)
    b = scm.predict({k: v.numpy() for k, v in noise.items()})
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("bad", [[1, 2], "noise", None, 3.0])
def test_noise_that_is_not_a_mapping(scm, bad):
    refuse(cd.DataError, r"noise must be a dict of node name -> tensor", lambda: scm.predict(bad), scm=scm)


def test_integer_noise_is_refused(scm, noise):
    refuse(cd.DataError, r"node 'x' in the noise: noise must be floating point, got torch.int64",
           lambda: scm.predict({**noise, "x": torch.zeros(6, dtype=torch.long)}), scm=scm, data=noise)


# ============================================================================ 6. sizes before allocation
@pytest.mark.parametrize("n,batch_size,match", [
    (10 ** 12, None, r"n=1000000000000 exceeds MAX_ROWS_PER_CALL=\d+ .*pass batch_size"),
    (MAX_ROWS_PER_CALL + 1, None, r"exceeds MAX_ROWS_PER_CALL"),
    (10 ** 12, 4096, r"n=1000000000000 exceeds MAX_ROWS=\d+"), (MAX_ROWS + 1, 10 ** 6, r"exceeds MAX_ROWS="),
    (0, None, r"n must be a positive integer, got 0"), (-5, None, r"n must be a positive integer, got -5"),
    (1.5, None, r"n must be a positive integer, got 1.5"), (True, None, r"n must be a positive integer, got True"),
    ("3", None, r"n must be a positive integer, got '3'"), (None, None, r"n must be a positive integer, got None"),
    (5, 0, r"batch_size must be a positive integer or None, got 0"), (5, 2.0, r"batch_size must be a positive integer"),
])
def test_sample_sizes_are_refused_before_any_allocation(scm, n, batch_size, match):
    start = time.perf_counter()
    refuse(cd.DataError, match, lambda: scm.sample(n, seed=0, batch_size=batch_size), scm=scm)
    assert time.perf_counter() - start < 2.0


def test_a_large_n_in_chunks_is_accepted(scm):
    assert scm.sample(3000, seed=0, batch_size=1024).n == 3000
    assert np.int64(7) == scm.sample(np.int64(7), seed=0).n


@pytest.mark.parametrize("config,field", [
    (lambda: AdditiveNoiseConfig(hidden=(10 ** 9,)), "hidden.0"), (lambda: AdditiveNoiseConfig(hidden=(64,) * 1000), "hidden"),
    (lambda: AdditiveNoiseConfig(steps=10 ** 12), "steps"), (lambda: AdditiveNoiseConfig(steps=-1), "steps"),
    (lambda: AdditiveNoiseConfig(batch_size=10 ** 9), "batch_size"), (lambda: AdditiveNoiseConfig(lr=float("inf")), "lr"),
    (lambda: MLPConfig(hidden=10 ** 9), "hidden"), (lambda: MLPConfig(num_layers=10 ** 6), "num_layers"),
    (lambda: UNetConfig(base_channels=10 ** 9), "base_channels"), (lambda: UNetConfig(channel_mult=(10 ** 6,)), "channel_mult.0"),
    (lambda: UNetConfig(channel_mult=()), "channel_mult"), (lambda: DiTConfig(depth=10 ** 6), "depth"),
    (lambda: DiTConfig(mlp_ratio=1e9), "mlp_ratio"), (lambda: TrainConfig(steps=10 ** 12), "steps"),
    (lambda: TrainConfig(steps=-1), "steps"), (lambda: TrainConfig(lr=float("nan")), "lr"),
    (lambda: TrainConfig(seed=-1), "seed"), (lambda: TrainConfig(checkpoint_every=0), "checkpoint_every"),
    (lambda: DDIMConfig(num_inference_steps=10 ** 12), "num_inference_steps"),
    (lambda: ScheduleConfig(num_train_timesteps=10 ** 12), "num_train_timesteps"),
    (lambda: CategoricalConfig(num_classes=10 ** 9), "num_classes"),
    (lambda: AdditiveNoiseMechanism(hidden=(10 ** 9,)), "hidden.0"),
])
def test_config_sizes_are_bounded(config, field):
    refuse(ValueError, rf"(?s){field}\n.*(less than or equal|greater than or equal|at least|at most|finite|should have)",
           config)


def test_a_huge_categorical_label_is_refused_before_allocating():
    scm = cd.SCM(nx.DiGraph([("a", "b")]), {"a": CategoricalMechanism(), "b": AdditiveNoiseMechanism(steps=5)})
    rows = {"a": torch.tensor([0, 10 ** 9, 1, 2]), "b": t([2.0, 1.0, 1.0, 1.0])}
    refuse(cd.DataError, r"node 'a': label 1000000000 implies 1000000001 classes, more than max\(rows=4, 1024\)",
           lambda: scm.fit(rows), scm=scm, data=rows)
    root = cd.SCM(nx.DiGraph([("b", "a")]), {"b": dist.Normal(t(0.0), t(1.0)), "a": AdditiveNoiseMechanism(steps=5)})
    parent = {"b": torch.tensor([0, 10 ** 9, 1, 2]), "a": t([2.0, 1.0, 1.0, 1.0])}
    gated = cd.SCM(nx.DiGraph([("b", "a")]), {"b": CategoricalMechanism(num_classes=3), "a": AdditiveNoiseMechanism(steps=5)})
    refuse(cd.DataError, r"node 'a': categorical parent 'b': label 1000000000 implies",
           lambda: gated.mechanisms["a"].fit(parent["a"], {"b": parent["b"]}, parent_order=("b",)), scm=gated)
    assert root.nodes == ("b", "a")


def test_labels_below_the_floor_are_accepted():
    scm = cd.SCM(nx.DiGraph(), {}) if False else None  # (an empty graph is refused: see below)
    m = CategoricalMechanism()
    cd.SCM(nx.DiGraph([("a", "b")]), {"a": m, "b": AdditiveNoiseMechanism(steps=3)}).fit(
        {"a": torch.tensor([0, LABEL_FLOOR - 1, 1, 2]), "b": t([2.0, 1.0, 1.0, 1.0])})
    assert m.num_classes == LABEL_FLOOR and scm is None


def test_an_empty_graph_is_refused():
    refuse(cd.GraphError, r"the causal graph has no nodes", lambda: cd.SCM(nx.DiGraph()))


@pytest.mark.parametrize("n", [1])
def test_fit_on_one_row_is_refused(n):
    scm = cd.SCM(nx.DiGraph([("a", "b")]), {"a": dist.Normal(t(0.0), t(1.0)), "b": AdditiveNoiseMechanism(steps=5)})
    rows = {"a": t([1.0] * n), "b": t([2.0] * n)}
    refuse(cd.DataError, r"fit needs at least 2 training rows, got 1 \(learnable node\(s\) \['b'\]\)",
           lambda: scm.fit(rows), scm=scm, data=rows)
    assert not scm.mechanisms["b"].is_fitted
    refuse(cd.DataError, r"the training rows is an empty batch", lambda: scm.fit({"a": t([]), "b": t([])}), scm=scm)


def test_the_scm_still_answers_after_every_refusal(scm, data):
    for bad in ({"c": 5}, {"y": 1j}, {"y": float("nan")}, {"q": 1.0}):
        with pytest.raises(cd.CausalDiffError):
            scm.do(bad)
    cf = scm.counterfactual(data, do={"x": 0.0})
    torch.testing.assert_close(cf["y"], data["y"] - 2.0 * data["x"], rtol=0, atol=1e-12)
