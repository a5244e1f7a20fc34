"""Systems under evaluation: a causaldiff system with the true mechanisms reproduces the true
counterfactuals; DoWhy's system (optional) answers with the right shapes and semantics."""

from __future__ import annotations

import networkx as nx
import pytest
import torch

from causaldiff.datasets.tabular import get_tabular_scm
from benchmarks.dcm.protocol import truth_graph
from benchmarks.dcm.systems import CausaldiffSystem, DowhySystem, System, dowhy_version
from benchmarks.dcm.true_mechanisms import true_factory

TRUTH = get_tabular_scm("chain-nonlinear")


def _rows(n: int, seed: int):
    noise = TRUTH.sample_noise(n, torch.Generator().manual_seed(seed))
    return noise, TRUTH.simulate(noise)


def test_true_mechanisms_give_the_true_counterfactual():
    system = CausaldiffSystem("true", truth_graph(TRUTH), true_factory(TRUTH), dtype=torch.float64)
    assert isinstance(system, System)
    noise, factual = _rows(64, 0)
    system.fit(factual, seed=0)
    do = {"x2": torch.tensor(0.7, dtype=torch.float64)}
    cf, truth = system.counterfactual(factual, do), TRUTH.simulate(noise, do=do)
    for v in TRUTH.nodes:
        torch.testing.assert_close(cf[v], truth[v], rtol=0, atol=1e-12)
    assert torch.equal(cf["x1"], factual["x1"])  # a non-descendant is the factual value itself


def test_interventional_samples_are_seeded():
    system = CausaldiffSystem("true", truth_graph(TRUTH), true_factory(TRUTH), dtype=torch.float64)
    system.fit(_rows(8, 0)[1], seed=0)
    a, b = system.interventional(50, {"x1": 1.0}, seed=3), system.interventional(50, {"x1": 1.0}, seed=3)
    c = system.interventional(50, {"x1": 1.0}, seed=4)
    assert all(torch.equal(a[v], b[v]) for v in TRUTH.nodes)
    assert not torch.equal(a["x3"], c["x3"])
    assert torch.all(a["x1"] == 1.0)


def test_refusals():
    system = CausaldiffSystem("true", truth_graph(TRUTH), true_factory(TRUTH))
    with pytest.raises(RuntimeError, match="not fitted"):
        system.counterfactual(_rows(4, 0)[1], {"x1": 0.0})
    with pytest.raises(TypeError, match="without cycles"):
        CausaldiffSystem("cyclic", nx.DiGraph([("a", "b"), ("b", "a")]), true_factory(TRUTH))


def test_truth_graph_matches_the_truth():
    g = truth_graph(TRUTH)
    assert list(g.nodes) == list(TRUTH.nodes)
    assert sorted(g.edges) == sorted(TRUTH.edges)


@pytest.mark.skipif(dowhy_version() is None, reason="DoWhy is not installed")
def test_dowhy_system_answers_counterfactual_and_interventional_queries():
    system = DowhySystem(truth_graph(TRUTH), TRUTH.event_shapes)
    system.fit(_rows(300, 1)[1], seed=0)
    noise, factual = _rows(20, 2)
    cf = system.counterfactual(factual, {"x2": torch.tensor(0.5, dtype=torch.float64)})
    assert set(cf) == set(TRUTH.nodes) and all(cf[v].shape == (20,) for v in TRUTH.nodes)
    torch.testing.assert_close(cf["x1"], factual["x1"])  # not a descendant of x2
    assert torch.all(cf["x2"] == 0.5)
    truth = TRUTH.simulate(noise, do={"x2": 0.5})["x3"]
    assert float((cf["x3"] - truth).pow(2).mean()) < 0.1 * float(truth.var())  # a fitted model, near
    a, b = system.interventional(30, {"x1": 1.0}, seed=5), system.interventional(30, {"x1": 1.0}, seed=5)
    assert torch.equal(a["x3"], b["x3"]) and torch.all(a["x1"] == 1.0)


@pytest.mark.skipif(dowhy_version() is None, reason="DoWhy is not installed")
def test_dowhy_columns_of_vector_nodes_round_trip():
    system = DowhySystem(nx.DiGraph([("a", "b")]), {"a": (2,), "b": ()})
    assert list(system.graph.edges) == [("a_0", "b"), ("a_1", "b")]
    rows = {"a": torch.arange(6.0, dtype=torch.float64).reshape(3, 2), "b": torch.ones(3, dtype=torch.float64)}
    back = system._unframe(system._frame(rows))
    assert all(torch.equal(back[v], rows[v]) for v in rows)
    with pytest.raises(ValueError, match="misses nodes"):
        DowhySystem(nx.DiGraph([("a", "b")]), {"a": ()})
