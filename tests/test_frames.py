"""pandas DataFrames in and out of every query and fit (causaldiff.frames)."""

from __future__ import annotations

import subprocess
import sys

import networkx as nx
import numpy as np
import pyro.distributions as dist
import pytest
import torch

import causaldiff as cd
from causaldiff.mechanisms import AdditiveNoiseMechanism, CategoricalMechanism

pd = pytest.importorskip("pandas", reason="needs the optional extra causaldiff[pandas]")

N = 12
LABELS = ["lo", "mid", "hi"]


def scm() -> cd.SCM:
    """c (categorical root), x (normal root), y = x + c + noise."""
    g = nx.DiGraph([("x", "y"), ("c", "y")])
    return cd.SCM(g, {"c": dist.Categorical(torch.tensor([0.3, 0.3, 0.4])), "x": dist.Normal(0.0, 1.0),
                      "y": lambda c, x: dist.Normal(x + c.to(x.dtype), 0.5)})


def frame(seed: int = 0):
    """Columns in a non-topological order, a string index, float32 and categorical columns."""
    s = scm().sample(N, seed=seed)
    return pd.DataFrame({"y": s["y"].numpy(), "c": pd.Categorical.from_codes(s["c"].numpy(), categories=LABELS),
                         "x": s["x"].numpy()}, index=[f"r{i}" for i in range(N)])


def tensors(df) -> dict[str, torch.Tensor]:
    return {"y": torch.tensor(df["y"].to_numpy()), "x": torch.tensor(df["x"].to_numpy()),
            "c": torch.tensor(df["c"].cat.codes.to_numpy(), dtype=torch.long)}


def same(out, df, ref: dict[str, torch.Tensor]) -> None:
    """``out`` has ``df``'s index and column order, categorical dtype, and ``ref``'s values."""
    assert list(out.columns) == list(df.columns) and out.index.equals(df.index)
    assert out["c"].dtype == df["c"].dtype
    for k in out.columns:
        got = out[k].cat.codes.to_numpy() if k == "c" else out[k].to_numpy()
        assert np.array_equal(got, ref[k].numpy()), k


def test_counterfactual_round_trip():
    df, model = frame(), scm()
    out = model.counterfactual(df, do={"x": 1.0}, seed=0)
    same(out, df, model.counterfactual(tensors(df), do={"x": 1.0}, seed=0))


def test_counterfactual_on_a_category_label():
    df, model = frame(), scm()
    out = model.counterfactual(df, do={"c": "hi"}, seed=0)
    assert (out["c"] == "hi").all() and list(out["c"].cat.categories) == LABELS
    same(out, df, model.counterfactual(tensors(df), do={"c": 2}, seed=0))
    with pytest.raises(cd.DataError, match="not one of its categories"):
        model.counterfactual(df, do={"c": "huge"})


def test_columns_that_are_not_nodes_are_ignored_and_kept_out_of_the_result():
    df, model = frame(), scm()
    with_id = df.assign(patient_id=[f"p{i}" for i in range(N)], visits=np.arange(N))
    out = model.counterfactual(with_id, do={"x": 1.0}, seed=0)
    same(out, df, model.counterfactual(tensors(df), do={"x": 1.0}, seed=0))
    assert list(with_id.columns)[-2:] == ["patient_id", "visits"]  # the caller's frame is untouched


def test_a_python_list_is_a_per_row_do_and_labels_too():
    df, model = frame(), scm()
    xs = [float(i) for i in range(N)]
    same(model.counterfactual(df, do={"x": xs}, seed=0), df,
         model.counterfactual(tensors(df), do={"x": torch.tensor(xs)}, seed=0))
    labels = [LABELS[i % 3] for i in range(N)]
    out = model.counterfactual(df, do={"c": labels}, seed=0)
    assert list(out["c"]) == labels
    with pytest.raises(cd.DataError, match="'huge' is not one of its categories"):
        model.counterfactual(df, do={"c": labels[:-1] + ["huge"]})


def test_abduct_returns_the_frame_and_the_vector_noise_beside_it():
    df, model = frame(), scm()
    noise, rest = model.abduct(df, seed=1)
    ref = model.abduct(tensors(df), seed=1)
    assert list(noise.columns) == ["y", "x"] and noise.index.equals(df.index)  # the input's order
    assert np.array_equal(noise["y"].to_numpy(), ref["y"].numpy())
    assert set(rest) == {"c"} and torch.equal(rest["c"], ref["c"])  # Gumbel noise (n, 3): a tensor


def test_predict_takes_the_mixed_form():
    df, model = frame(), scm()
    noise, rest = model.abduct(df, seed=1)
    out = model.predict((noise, rest))
    assert list(out.columns) == ["y", "x", "c"] and out.index.equals(df.index)
    ref = model.predict({**{k: torch.tensor(noise[k].to_numpy()) for k in noise}, **rest})
    for k in out.columns:
        assert np.array_equal(out[k].to_numpy(), ref[k].numpy()), k
    # abduct then predict returns the factual rows (exact Pyro nodes, Gumbel-max class)
    assert np.allclose(out["y"].to_numpy(), df["y"].to_numpy(), atol=1e-5)


def test_sample_and_interventional_samples_as_frames():
    model = scm()
    out = model.sample(N, seed=3, frame=True)
    ref = model.sample(N, seed=3)
    assert list(out.columns) == list(model.nodes) and out.index.equals(pd.RangeIndex(N))
    assert all(np.array_equal(out[k].to_numpy(), ref[k].numpy()) for k in out)
    assert out["c"].dtype == np.int64  # no categories known: integer codes
    do = model.interventional_samples(N, do={"x": 2.0}, seed=3, frame=True)
    assert (do["x"] == 2.0).all()
    assert isinstance(model.sample(N), dict)  # the default form is unchanged


def test_fit_from_a_frame_equals_fit_from_tensors():
    g = nx.DiGraph([("x", "y"), ("c", "y")])

    def learnable():
        config = AdditiveNoiseMechanism.quick(AdditiveNoiseMechanism.Config())
        return cd.SCM(g, {"c": CategoricalMechanism(), "x": dist.Normal(0.0, 1.0),
                          "y": AdditiveNoiseMechanism.from_config(config)})

    df = frame()
    a, b = learnable(), learnable()
    assert a.fit(df) is a
    b.fit(tensors(df))
    out = a.counterfactual(df, do={"x": 0.5})
    same(out, df, b.counterfactual(tensors(df), do={"x": 0.5}))


@pytest.mark.parametrize("edit,match", [
    (lambda df: df.assign(x=df["x"].astype(str)), "column 'x' has dtype"),
    (lambda df: df.drop(columns="x"), r"lacks node\(s\) \['x'\]"),
    (lambda df: df.assign(x=df["x"].where(df.index != "r3")), "column 'x': missing values .* 'r3'"),
    (lambda df: df.assign(c=df["c"].cat.remove_categories(["hi", "mid"])), "column 'c': missing values"),
    (lambda df: df.assign(c=df["c"] == "lo"), "column 'c' has dtype bool"),
    (lambda df: pd.concat([df, df["x"]], axis=1), "duplicated columns"),
])
def test_bad_frames_are_refused_naming_the_column(edit, match):
    df = frame()
    bad = edit(df.copy())
    before = bad.copy()
    with pytest.raises(cd.DataError, match=match):
        scm().counterfactual(bad, do={"x": 1.0})
    assert bad.equals(before)


def test_a_node_given_twice_is_refused():
    df = frame()
    with pytest.raises(cd.DataError, match="both as DataFrame columns and as tensors"):
        scm().abduct((df, {"x": torch.zeros(N)}))


def test_without_pandas_the_package_imports_and_dicts_work(monkeypatch):
    code = ("import sys; sys.modules['pandas'] = None; import causaldiff as cd, networkx as nx, torch, "
            "pyro.distributions as dist; g = nx.DiGraph(); g.add_node('x', mechanism=dist.Normal(0., 1.)); "
            "s = cd.SCM(g); assert isinstance(s.sample(3), dict)\n"
            "try:\n    s.sample(3, frame=True)\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "causaldiff[pandas]" in out


def test_causaldiff_does_not_import_pandas_until_a_frame_is_seen():
    code = "import sys, causaldiff; print('pandas' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
