"""The law checker's inputs (issue 25): a DataFrame is read as the queries read it, rows a law check
cannot run on (NaN from a mechanism, missing nodes, non-tensors) are refused naming the node;
Tolerances refuse NaN; batch sizes and counts beyond any bound are refused cleanly."""

from __future__ import annotations

import math

import networkx as nx
import pyro.distributions as dist
import pytest
import torch
from pydantic import ValidationError

import causaldiff as cd
from causaldiff.errors import DataError, DivergenceError, SeedError
from causaldiff.testing import Tolerances, check_counterfactual_laws

F64 = torch.float64


def chain(y_loc=lambda x: 2.0 * x) -> cd.SCM:
    return cd.SCM(nx.DiGraph([("x", "y")]), {"x": dist.Normal(torch.tensor(0.0, dtype=F64), 1.0),
                                             "y": lambda x: dist.Normal(y_loc(x), torch.tensor(0.5, dtype=F64))})


def test_a_dataframe_is_checked_like_its_tensors():
    scm = chain()
    rows = scm.sample(8, seed=1)
    frame = pytest.importorskip("pandas").DataFrame({k: v.numpy() for k, v in rows.items()})
    a, b = check_counterfactual_laws(scm, frame, seed=2), check_counterfactual_laws(scm, dict(rows), seed=2)
    assert [(m.law, m.node, m.error) for m in a.measurements] == [(m.law, m.node, m.error) for m in b.measurements]


def test_a_dataframe_column_that_is_no_node_is_ignored_as_by_the_queries():
    scm = chain()
    rows = scm.sample(8, seed=1)
    frame = pytest.importorskip("pandas").DataFrame({k: v.numpy() for k, v in rows.items()})
    a = check_counterfactual_laws(scm, frame.assign(patient_id=range(8)), seed=2)
    b = check_counterfactual_laws(scm, frame, seed=2)
    assert [(m.law, m.node, m.error) for m in a.measurements] == [(m.law, m.node, m.error) for m in b.measurements]


@pytest.mark.parametrize("frame, words", [
    ({"x": [0.1, 0.2]}, ["lack", "'y'"]),
    ({"x": [0.1, math.nan], "y": [0.3, 0.4]}, ["'x'"]),
])
def test_a_dataframe_the_check_cannot_read_is_refused(frame, words):
    frame = pytest.importorskip("pandas").DataFrame(frame)
    with pytest.raises(DataError) as info:
        check_counterfactual_laws(chain(), frame)
    assert all(w in str(info.value) for w in words), str(info.value)


@pytest.mark.parametrize("data, words", [
    ({"x": torch.zeros(4, dtype=F64)}, ["lack", "'y'"]),
    ({"x": torch.zeros(4, dtype=F64), "y": [0.0] * 4}, ["node 'y'", "list"]),
    ({"x": torch.zeros(4, dtype=F64), "y": torch.tensor(0.0, dtype=F64)}, ["node 'y'"]),
    ({"x": torch.zeros(4, dtype=F64), "y": torch.tensor([0, math.inf, 0, 0], dtype=F64)}, ["node 'y'", "rows [1]"]),
    ({"x": torch.tensor([math.nan] * 4, dtype=F64), "y": torch.zeros(4, dtype=F64)}, ["node 'x'", "4 row(s)"]),
    ({"x": torch.zeros(4, dtype=F64), "y": torch.zeros(3, dtype=F64)}, ["differ in length"]),
    ([1, 2, 3], ["list"]),
    ("rows", ["str"]),
])
def test_rows_the_check_cannot_run_on_are_refused_naming_the_node(data, words):
    with pytest.raises(DataError) as info:
        check_counterfactual_laws(chain(), data)
    assert all(w in str(info.value) for w in words), str(info.value)


@pytest.mark.parametrize("threshold", [0.0, -0.5, 1.0, -10.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_mechanism_that_yields_nan_is_named_by_the_law_check(threshold, seed):
    def y(x):
        loc = torch.where(x > threshold, torch.full_like(x, math.nan), 2.0 * x)
        return dist.Normal(loc, torch.tensor(0.5, dtype=F64), validate_args=False)

    scm = cd.SCM(nx.DiGraph([("x", "y")]), {"x": dist.Normal(torch.tensor(0.0, dtype=F64), 1.0), "y": y})
    with pytest.raises((DataError, DivergenceError), match=r"node 'y': \d+ row\(s\) hold NaN"):
        check_counterfactual_laws(scm, n=64, seed=seed)  # the sample itself names the node (issue 25)


@pytest.mark.parametrize("kw", [{"nodes": {"y": math.nan}}, {"nodes": {"y": math.inf}}, {"nodes": {"y": -1.0}},
                                {"exact": math.nan}, {"approximate": math.nan}, {"approximate": math.inf},
                                {"exact": -1e-3}, {"nodes": {"y": "small"}}])
def test_tolerances_refuse_nan_inf_and_negatives(kw):
    with pytest.raises(ValidationError):
        Tolerances(**kw)


def test_good_tolerances_are_kept():
    assert Tolerances(nodes={"y": 0.5}, exact=0.0, approximate=1.0).nodes == {"y": 0.5}


def _id(v) -> str:
    return f"int{v.bit_length()}bits" if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2 ** 64 else repr(v)


@pytest.mark.parametrize("batch_size", [10 ** 400, 2 ** 31, 2 ** 30 + 1, 0, -1, 2.0, True, "8", 10 ** 5000], ids=_id)
@pytest.mark.parametrize("query", ["sample", "counterfactual", "abduct", "predict", "interventional_samples"])
def test_a_batch_size_beyond_any_bound_is_refused_cleanly(batch_size, query):
    scm = chain()
    rows = scm.sample(4, seed=0)
    calls = {"sample": lambda: scm.sample(4, seed=0, batch_size=batch_size),
             "counterfactual": lambda: scm.counterfactual(rows, {"x": 1.0}, seed=0, batch_size=batch_size),
             "abduct": lambda: scm.abduct(rows, seed=0, batch_size=batch_size),
             "predict": lambda: scm.predict(scm.abduct(rows, seed=0), seed=0, batch_size=batch_size),
             "interventional_samples": lambda: scm.interventional_samples(4, {"x": 1.0}, seed=0, batch_size=batch_size)}
    with pytest.raises(DataError, match="batch_size") as info:
        calls[query]()
    assert len(str(info.value)) < 300


@pytest.mark.parametrize("n", [10 ** 400, 10 ** 5000, 2 ** 30 + 1], ids=_id)
def test_a_row_count_of_thousands_of_digits_is_refused_cleanly(n):
    with pytest.raises(DataError, match="exceeds") as info:
        chain().sample(n, seed=0, batch_size=1024)
    assert len(str(info.value)) < 300


@pytest.mark.parametrize("seed", [10 ** 5000, -(10 ** 5000), 2 ** 64], ids=_id)
def test_a_seed_of_thousands_of_digits_is_refused_cleanly(seed):
    with pytest.raises(SeedError, match="bits") as info:
        chain().sample(4, seed=seed)
    assert len(str(info.value)) < 300
