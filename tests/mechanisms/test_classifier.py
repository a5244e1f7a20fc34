"""The classifier node (categorical or binary with parents): the epidemiologist's SCM fitted from a
DataFrame through ``cd.auto`` against its true model, save/load, and the refusals."""

from __future__ import annotations

import math

import networkx as nx
import pyro.distributions as dist
import pytest
import torch

import causaldiff as cd
from causaldiff import auto
from causaldiff.mechanisms import AdditiveNoiseConfig, CategoricalMechanism, ClassifierConfig, ClassifierMechanism

N_FIT, N_QUERY = 4000, 2000


def _binary(logit: torch.Tensor) -> dist.Categorical:
    """A Bernoulli(sigmoid(logit)) on the integer codes {0, 1} (a Categorical of two classes)."""
    return dist.Categorical(logits=torch.stack([torch.zeros_like(logit), logit], -1))


def _truth() -> cd.SCM:
    """age -> treatment -> blood pressure -> stroke, age -> blood pressure (age and bp standardised)."""
    g = nx.DiGraph([("age", "treatment"), ("treatment", "bp"), ("age", "bp"), ("bp", "stroke")])
    return cd.SCM(g, {"age": dist.Normal(0.0, 1.0),
                      "treatment": lambda age: _binary(1.5 * age),
                      "bp": lambda age, treatment: dist.Normal(age - 1.5 * treatment.float(), 0.5),
                      "stroke": lambda bp: _binary(2.5 * bp - 1.0)})


def test_the_epidemiologists_scm_fitted_from_a_frame_matches_the_true_counterfactuals():
    """Fitted through ``auto`` from an integer-coded DataFrame: treatment and stroke get the
    classifier, and the counterfactuals of ``do(treatment = 1)`` agree with the true model's.

    Tolerance from the sample size: each stroke rate below is a mean of ``N_QUERY`` Bernoulli
    draws (standard error at most ``0.5 / sqrt(N_QUERY)`` = 0.011), the difference of two such
    means has at most 0.016, and the fitted model adds its own estimation error from ``N_FIT``
    rows, smaller: 5 standard errors of the difference, 0.079, bound both (measured: 0.001)."""
    pd = pytest.importorskip("pandas", reason="needs the optional extra causaldiff[pandas]")
    truth = _truth()
    rows = truth.sample(N_FIT + N_QUERY, seed=0)
    frame = pd.DataFrame({k: v.numpy() for k, v in rows.items()})
    assert frame["treatment"].dtype == "int64" and frame["stroke"].dtype == "int64"
    model = auto.assign_mechanisms(nx.DiGraph(truth.graph.edges), frame.iloc[:N_FIT], show=False, configs={
        "additive_noise": AdditiveNoiseConfig(hidden=(32,), steps=600),
        "classifier": ClassifierConfig(steps=600)})
    assert {v: type(m) for v, m in model.mechanisms.items() if v in ("treatment", "stroke")} == {
        "treatment": ClassifierMechanism, "stroke": ClassifierMechanism}
    model.fit(frame.iloc[:N_FIT])

    query = frame.iloc[N_FIT:]
    fitted = model.counterfactual(query, do={"treatment": 1}, seed=1)
    true = truth.counterfactual({k: v[N_FIT:] for k, v in rows.items()}, do={"treatment": 1}, seed=1)
    for v in ("treatment", "stroke"):
        assert set(fitted[v].unique().tolist()) <= {0, 1}, v
    tol = 5 * math.sqrt(2) * 0.5 / math.sqrt(N_QUERY)
    stroke, factual = torch.tensor(fitted["stroke"].to_numpy()), rows["stroke"][N_FIT:]
    rates = (stroke.float().mean(), true["stroke"].float().mean())
    flips = ((stroke != factual).float().mean(), (true["stroke"] != factual).float().mean())
    bp_error = (torch.tensor(fitted["bp"].to_numpy()) - true["bp"].float()).abs().mean()
    print(f"stroke rate under do(treatment=1): fitted {rates[0]:.4f}, true {rates[1]:.4f}; stroke changed: "
          f"fitted {flips[0]:.4f}, true {flips[1]:.4f} (tolerance {tol:.4f}); bp mean abs error {bp_error:.4f}")
    assert abs(rates[0] - rates[1]) < tol and abs(flips[0] - flips[1]) < tol
    assert bp_error < 0.1  # the bp shift is 1.5; its noise sd 0.5


def test_auto_chooses_the_classifier_for_a_categorical_column_with_parents():
    pd = pytest.importorskip("pandas", reason="needs the optional extra causaldiff[pandas]")
    g = nx.DiGraph([("bp", "stroke"), ("stroke", "care")])
    frame = pd.DataFrame({"bp": [0.1, -0.3, 1.2, 0.4], "stroke": pd.Categorical(["no", "yes", "yes", "no"]),
                          "care": pd.Categorical(["home", "ward", "icu", "home"])})
    assert [(c.node, c.kind, c.mechanism) for c in auto.choose(g, frame)] == [
        ("bp", "continuous", "additive_noise"), ("stroke", "categorical", "classifier"),
        ("care", "categorical", "classifier")]


def _fitted(gen: torch.Generator) -> tuple[cd.SCM, dict[str, torch.Tensor]]:
    a = torch.randn(400, generator=gen)
    c = torch.bernoulli(torch.sigmoid(3 * a), generator=gen).long()
    scm = cd.SCM(nx.DiGraph([("a", "c")]), {"a": dist.Normal(0.0, 1.0),
                                             "c": ClassifierMechanism(steps=200, hidden=())})
    return scm.fit({"a": a, "c": c}), {"a": a, "c": c}


def test_save_load_and_a_null_intervention(tmp_path):
    scm, rows = _fitted(torch.Generator().manual_seed(0))
    cf = scm.counterfactual(rows, do={"a": rows["a"]}, seed=2)
    assert torch.equal(cf["c"], rows["c"]) and cf["c"].dtype == torch.long
    scm.save(tmp_path / "m")
    again = cd.load(tmp_path / "m")
    assert torch.equal(again.sample(50, seed=3)["c"], scm.sample(50, seed=3)["c"])
    assert torch.equal(again.counterfactual(rows, do={"a": 2.0}, seed=4)["c"],
                       scm.counterfactual(rows, do={"a": 2.0}, seed=4)["c"])


def test_a_larger_parent_makes_the_class_more_likely():
    scm, _ = _fitted(torch.Generator().manual_seed(1))
    low, high = (scm.interventional_samples(2000, do={"a": v}, seed=5)["c"].float().mean() for v in (-1.0, 1.0))
    assert low < 0.2 and high > 0.8  # sigmoid(-3) = 0.05, sigmoid(3) = 0.95


def test_a_categorical_root_mechanism_on_a_node_with_parents_is_refused_at_binding():
    with pytest.raises(cd.GraphError, match="node 'c'.*root nodes.*ClassifierMechanism"):
        cd.SCM(nx.DiGraph([("a", "c")]), {"a": dist.Normal(0.0, 1.0), "c": CategoricalMechanism()})


def test_refusals_name_the_node():
    m = ClassifierMechanism(num_classes=2)
    m.check_binding("c", ("a",))
    with pytest.raises(cd.DataError, match="node 'c': value 2 >= num_classes 2"):
        m.fit(torch.tensor([0, 1, 2]), {"a": torch.randn(3)}, parent_order=("a",))
    with pytest.raises(cd.DataError, match="node 'c'.*non-negative integers"):
        m.fit(torch.tensor([0.0, 1.0, 1.0]), {"a": torch.randn(3)}, parent_order=("a",))
    with pytest.raises(cd.NotFittedError, match="node 'c'"):
        m.given({"a": torch.randn(3)}, 3)
