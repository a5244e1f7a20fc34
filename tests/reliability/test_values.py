"""Reliability, second round (issue 25): values read as the node means them. Integer rows on a
continuous node are cast to its dtype (never NaN), a Categorical column there is refused; a
mechanism yielding NaN or Inf is named by every query; categories are read by the label order
recorded at fit; a pandas Series ``do`` is aligned on the frame's index; a chunked query refuses a
per-row value of the wrong length and a result larger than memory before its first chunk."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pyro.distributions as dist
import pytest
import torch
from bad_inputs import F64, t

import causaldiff as cd
from causaldiff.chunking import device_memory
from causaldiff.errors import DataError, DivergenceError, InterventionError

pd = pytest.importorskip("pandas", reason="needs the optional extra causaldiff[pandas]")


def chain(y=None) -> cd.SCM:
    """x ~ N(0, 1), y ~ N(2 x, 0.5), b ~ Bernoulli(logits=y), float64."""
    g = nx.DiGraph([("x", "y"), ("y", "b")])
    return cd.SCM(g, {"x": dist.Normal(t(0.0), t(1.0)), "y": y or (lambda x: dist.Normal(2.0 * x, t(0.5))),
                      "b": lambda y: dist.Bernoulli(logits=y)})


INTS = {"x": [1, 2, 3, -1], "y": [3, 4, 7, -2], "b": [0, 1, 1, 0]}


# ============================================================================ integer rows
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16, torch.uint8])
@pytest.mark.parametrize("query", ["abduct", "counterfactual"])
def test_integer_tensors_on_continuous_nodes_are_read_as_their_dtype(dtype, query):
    scm, ints = chain(), {k: torch.tensor(v).abs().to(dtype) for k, v in INTS.items()}
    floats = {k: v.to(F64) for k, v in ints.items()}
    run = (lambda rows: scm.abduct(rows, seed=0)) if query == "abduct" else (
        lambda rows: scm.counterfactual(rows, do={"x": 0.5}, seed=0))
    got, want = run(ints), run(floats)
    for k in want:
        assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), k


@pytest.mark.parametrize("form", ["numpy", "list-of-ints", "frame"])
def test_integer_arrays_and_int64_columns_are_cast(form):
    scm = chain()
    rows = {"numpy": {k: np.array(v, dtype=np.int64) for k, v in INTS.items()},
            "list-of-ints": {k: torch.tensor(v) for k, v in INTS.items()},
            "frame": pd.DataFrame(INTS)}[form]
    out = scm.counterfactual(rows, do={"x": 1.5}, seed=0)
    ref = scm.counterfactual({k: torch.tensor(v, dtype=F64) for k, v in INTS.items()}, do={"x": 1.5}, seed=0)
    y = out["y"] if isinstance(out["y"], torch.Tensor) else torch.tensor(out["y"].to_numpy())
    assert torch.isfinite(y).all() and torch.equal(y, ref["y"])


def test_a_categorical_node_keeps_its_integer_codes():
    g = nx.DiGraph([("c", "y")])
    scm = cd.SCM(g, {"c": dist.Categorical(torch.tensor([0.5, 0.5])), "y": lambda c: dist.Normal(c.float(), 1.0)})
    u = scm.abduct({"c": torch.tensor([0, 1]), "y": torch.tensor([1, 2])}, seed=0)
    assert torch.equal(u["y"], torch.tensor([1.0, 1.0]))
    assert scm.counterfactual({"c": torch.tensor([0, 1]), "y": torch.tensor([1, 2])}, do={"c": 1}, seed=0)["c"].dtype == torch.long


def test_fit_on_integer_rows_equals_fit_on_floats():
    def fitted(rows):
        g = nx.DiGraph([("x", "y")])
        m = cd.AdditiveNoiseMechanism(hidden=(4,), steps=5)
        return cd.SCM(g, {"x": dist.Normal(t(0.0), t(1.0)), "y": m}).fit(rows).mechanisms["y"].state_tensors()
    ints = {"x": torch.arange(20) % 5, "y": (torch.arange(20) * 3) % 7}  # x: a float64 root; y: unfitted, default dtype
    a, b = fitted(ints), fitted({"x": ints["x"].to(F64), "y": ints["y"].to(torch.get_default_dtype())})
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("query", ["abduct", "counterfactual", "fit"])
def test_a_categorical_column_on_a_continuous_node_is_refused(query):
    scm, df = chain(), pd.DataFrame({**INTS, "x": pd.Categorical([1.0, 2.0, 3.0, -1.0])})
    run = {"abduct": lambda: scm.abduct(df), "fit": lambda: scm.fit(df),
           "counterfactual": lambda: scm.counterfactual(df, do={"y": 0.0})}[query]
    with pytest.raises(DataError, match="node 'x'.*Categorical"):
        run()


# ============================================================================ non-finite outputs
def sqrt_y(x):
    """NaN where x < 0 (torch's argument validation switched off, as a user may)."""
    return dist.Normal(torch.sqrt(x), t(0.5), validate_args=False)


QUERIES = {
    "sample": lambda s, rows: s.sample(64, seed=0),
    "sample in chunks": lambda s, rows: s.sample(3000, seed=0, batch_size=1024),
    "interventional": lambda s, rows: s.interventional_samples(64, do={"x": -1.0}, seed=0),
    "predict": lambda s, rows: s.predict({k: torch.zeros(4, dtype=F64) for k in ("x", "y", "b")}, do={"x": -1.0}),
    "counterfactual": lambda s, rows: s.counterfactual(rows, do={"x": -2.0}, seed=0),
    "counterfactual in chunks": lambda s, rows: s.counterfactual(rows, do={"x": -2.0}, seed=0, batch_size=2),
    "abduct": lambda s, rows: s.abduct({**rows, "x": -rows["x"]}, seed=0),
}


@pytest.fixture
def default_validation():
    """torch's global argument validation at its default (on) for the test, restored after: with it
    switched off, a NaN parent reaches a child's Bernoulli unchecked (the query then fails there)."""
    before = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(True)
    yield
    torch.distributions.Distribution.set_default_validate_args(before)


@pytest.mark.parametrize("validate", [False, True], ids=["unvalidated", "validated"])
@pytest.mark.parametrize("query", list(QUERIES))
def test_a_mechanism_yielding_nan_is_named_by_every_query(query, validate, default_validation):
    def y(x):
        return dist.Normal(torch.sqrt(x), t(0.5), validate_args=validate)
    rows = {"x": t([1.0, 2.0, 0.5, 3.0]), "y": t([1.0, 1.0, 1.0, 1.0]), "b": t([0.0, 1.0, 1.0, 0.0])}
    with pytest.raises(DivergenceError, match="node 'y'"):
        QUERIES[query](chain(y), rows)


def test_the_message_counts_the_rows():
    g = nx.DiGraph([("x", "y")])
    scm = cd.SCM(g, {"x": dist.Normal(t(0.0), t(1.0)), "y": sqrt_y})
    with pytest.raises(DivergenceError, match=r"node 'y': 4 row\(s\) hold NaN or Inf after predict"):
        scm.predict({k: torch.zeros(4, dtype=F64) for k in ("x", "y")}, do={"x": -1.0})


@pytest.mark.parametrize("loc", [1e308, -1e308, 1e300])
def test_huge_finite_values_are_not_refused(loc):
    """A sum of finite values may overflow: the elementwise check then decides."""
    g = nx.DiGraph()
    g.add_node("x", mechanism=dist.Normal(t(loc), t(1.0)))
    g.add_node("z", mechanism=dist.Normal(t(loc), t(1.0)))
    assert torch.isfinite(cd.SCM(g).sample(8, seed=0)["x"]).all()


# ============================================================================ categories by label
LABELS = ["lo", "mid", "hi"]


def labelled() -> cd.SCM:
    g = nx.DiGraph([("c", "y")])
    return cd.SCM(g, {"c": dist.Categorical(torch.tensor([0.2, 0.3, 0.5])),
                      "y": lambda c: dist.Normal(c.float() * 2.0, 1.0)})


def frame(categories, codes=(0, 1, 2, 2, 1, 0)):
    labels = [LABELS[i] for i in codes]
    return pd.DataFrame({"c": pd.Categorical(labels, categories=categories), "y": [0.5, 2.0, 4.5, 3.0, 1.0, -1.0]},
                        index=[f"r{i}" for i in range(len(codes))])


@pytest.mark.parametrize("reorder", [["hi", "lo", "mid"], ["mid", "hi", "lo"], "astype"])
@pytest.mark.parametrize("query", ["counterfactual", "abduct", "predict-labels"])
def test_reordered_categories_answer_identically(reorder, query):
    scm = labelled().fit(frame(LABELS))
    other = frame(LABELS).assign(c=lambda d: d["c"].astype(str).astype("category")) if reorder == "astype" \
        else frame(reorder)
    assert list(other["c"].cat.categories) != LABELS
    run = {"counterfactual": lambda df: scm.counterfactual(df, do={"c": "hi"}, seed=0),
           "abduct": lambda df: scm.abduct(df, seed=0),
           "predict-labels": lambda df: scm.counterfactual(df, do={"y": 1.0}, seed=0)}[query]
    same(run(other), run(frame(LABELS)))


def same(a, b) -> None:
    """Two results equal: frames, or ``(frame, tensors)`` pairs."""
    if isinstance(a, tuple):
        assert a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in a[1])
        a, b = a[0], b[0]
    pd.testing.assert_frame_equal(a, b)


def test_the_recorded_order_is_kept_by_copies_and_a_later_fit():
    scm = labelled()
    scm.fit(frame(LABELS))
    scm.fit(frame(["hi", "lo", "mid"]))
    assert scm.categories == {"c": tuple(LABELS)} and scm.do({"y": 0.0}).categories == {"c": tuple(LABELS)}


def test_the_recorded_order_is_saved_and_loaded(tmp_path):
    scm = labelled().fit(frame(LABELS))
    scm.save(tmp_path / "m")
    loaded = cd.load(tmp_path / "m", mechanisms={"c": scm.mechanisms["c"], "y": scm.mechanisms["y"]})
    assert loaded.categories == {"c": tuple(LABELS)}
    same(loaded.counterfactual(frame(["mid", "hi", "lo"]), do={"y": 1.0}, seed=0),
         scm.counterfactual(frame(LABELS), do={"y": 1.0}, seed=0))


@pytest.mark.parametrize("labels, match", [([pd.Timestamp(0), pd.Timestamp(1)], "cannot save the category labels 'c'")])
def test_labels_that_json_cannot_hold_are_refused_at_save(tmp_path, labels, match):
    scm = labelled()
    scm.fit(pd.DataFrame({"c": pd.Categorical(labels), "y": [0.0, 1.0]}))
    with pytest.raises(cd.SerializationError, match=match):
        scm.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("bad", [{"c": [[1]]}, {"c": "lo"}, {"c": [None]}, ["lo"]])
def test_tampered_saved_labels_are_refused(tmp_path, bad):
    import json

    labelled().fit(frame(LABELS)).save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "scm.json").read_text())
    (tmp_path / "m" / "scm.json").write_text(json.dumps({**config, "categories": bad}))
    with pytest.raises(cd.SerializationError, match="field categories"):
        cd.load(tmp_path / "m", mechanisms={"c": dist.Categorical(torch.ones(3)), "y": lambda c: dist.Normal(c.float(), 1.0)})


def test_a_category_not_seen_at_fit_is_refused():
    scm = labelled().fit(frame(LABELS))
    with pytest.raises(DataError, match="column 'c': category 'huge' was not seen at fit"):
        scm.abduct(frame(LABELS + ["huge"]), seed=0)


def test_without_a_fit_the_frame_s_own_order_is_kept():
    assert labelled().categories == {}
    df = frame(["hi", "lo", "mid"])
    out, noise = labelled().abduct(df, seed=0)
    codes = torch.as_tensor(df["c"].cat.codes.to_numpy().copy())  # the frame's own codes: hi is 0
    assert torch.equal(noise["c"].argmax(-1), codes)


# ============================================================================ a Series as a do value
def test_a_series_is_aligned_on_the_frame_s_index():
    scm, df = chain(), pd.DataFrame({k: [float(v) for v in vals] for k, vals in INTS.items()}, index=list("abcd"))
    values = pd.Series([10.0, 20.0, 30.0, 40.0], index=list("dcba"))
    out = scm.counterfactual(df, do={"x": values}, seed=0)
    assert out["x"].tolist() == [40.0, 30.0, 20.0, 10.0]
    ref = scm.counterfactual(df, do={"x": torch.tensor([40.0, 30.0, 20.0, 10.0], dtype=F64)}, seed=0)
    pd.testing.assert_frame_equal(out, ref)


@pytest.mark.parametrize("wrap", [lambda s: s, cd.Hard, cd.Shift], ids=["plain", "Hard", "Shift"])
def test_a_series_inside_an_intervention_is_aligned(wrap):
    scm, df = chain(), pd.DataFrame({k: [float(v) for v in vals] for k, vals in INTS.items()}, index=[7, 5, 3, 1])
    out = scm.counterfactual(df, do={"y": wrap(pd.Series([1.0, 2.0, 3.0, 4.0], index=[1, 3, 5, 7]))}, seed=0)
    base = df["y"].to_numpy() if wrap is cd.Shift else 0.0
    np.testing.assert_allclose(out["y"].to_numpy(), base + np.array([4.0, 3.0, 2.0, 1.0]))


@pytest.mark.parametrize("index", [list("abcx"), list("abc"), list("abcdd"), list("aabc")])
def test_a_series_with_another_index_is_refused(index):
    scm, df = chain(), pd.DataFrame({k: [float(v) for v in vals] for k, vals in INTS.items()}, index=list("abcd"))
    with pytest.raises(DataError, match="do on 'x': the Series' index differs"):
        scm.counterfactual(df, do={"x": pd.Series(np.arange(len(index), dtype=float), index=index)}, seed=0)


def test_a_series_of_labels_on_a_categorical_node():
    scm, df = labelled(), frame(LABELS)
    out = scm.counterfactual(df, do={"c": pd.Series(["hi"] * 3 + ["lo"] * 3, index=df.index[::-1])}, seed=0)
    assert out["c"].tolist() == ["lo"] * 3 + ["hi"] * 3


# ============================================================================ chunked per-row values
@pytest.mark.parametrize("batch_size", [5, 3, 4])
@pytest.mark.parametrize("wrap", [lambda v: v, cd.Shift], ids=["hard", "shift"])
@pytest.mark.parametrize("query", ["predict", "counterfactual"])
def test_a_value_with_a_chunk_s_rows_is_refused_in_chunks_as_without(batch_size, wrap, query):
    scm = chain()
    rows = dict(scm.sample(10, seed=0))
    value = wrap(torch.arange(batch_size, dtype=F64))
    run = {"predict": lambda bs: scm.predict(dict(scm.abduct(rows, seed=0)), do={"x": value}, batch_size=bs),
           "counterfactual": lambda bs: scm.counterfactual(rows, do={"x": value}, seed=0, batch_size=bs)}[query]
    for bs in (None, batch_size):
        with pytest.raises(InterventionError, match="node 'x'"):
            run(bs)


def test_one_row_of_a_vector_node_as_long_as_a_chunk_is_still_one_row():
    g = nx.DiGraph([("v", "y")])
    scm = cd.SCM(g, {"v": dist.Normal(torch.zeros(4, dtype=F64), 1.0).to_event(1),
                     "y": lambda v: dist.Normal(v.sum(-1), t(1.0))})
    rows = dict(scm.sample(12, seed=0))
    value = torch.arange(4, dtype=F64)
    whole = scm.counterfactual(rows, do={"v": value}, seed=0)
    chunked = scm.counterfactual(rows, do={"v": value}, seed=0, batch_size=4)
    assert all(torch.equal(whole[k], chunked[k]) for k in whole)


# ============================================================================ result size
def images(calls=None) -> cd.SCM:
    def y(img):
        if calls is not None:
            calls.append(img.shape[0])
        return dist.Normal(img.mean((1, 2, 3)), 1.0)
    g = nx.DiGraph([("img", "y")])
    return cd.SCM(g, {"img": dist.Normal(torch.zeros(3, 256, 256), 1.0).to_event(3), "y": y})


@pytest.mark.parametrize("query", ["sample", "interventional"])
def test_a_result_larger_than_memory_is_refused_before_the_first_chunk(query):
    calls: list[int] = []
    scm, n = images(calls), 2 * device_memory(torch.device("cpu")) // (3 * 256 * 256 * 4) + 1
    run = scm.sample if query == "sample" else lambda n, **kw: scm.interventional_samples(n, do={"y": 0.0}, **kw)
    with pytest.raises(DataError, match=r"node 'img'.*more than the .* GiB of cpu memory"):
        run(n, batch_size=16, seed=0)
    assert all(m == 1 for m in calls)  # at most the one-row probe ran, no chunk


def test_a_result_that_fits_runs_in_chunks():
    out = images().sample(40, batch_size=16, seed=0)
    assert out["img"].shape == (40, 3, 256, 256) and math.isfinite(float(out["y"].sum()))
