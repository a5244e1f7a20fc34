"""Sharded queries on 2 gloo processes are bit-identical to one process (n not divisible by W,
n < W, stochastic queries split on RNG blocks, any batch_size), an error on one rank is raised on
both, and per-node fitting gives the weights one process fits."""

from __future__ import annotations

import json

import networkx as nx
import pyro.distributions as dist
import pytest
import torch

import causaldiff as cd
from causaldiff.distributed import fit_per_node, launch, load_shards, row_span, save_shards, shard_unit
from causaldiff.rng import ROW_BLOCK
from causaldiff.testing import run_distributed

F64 = torch.float64
N_BIG = 2 * ROW_BLOCK + 5  # three RNG blocks
ENV = {"CAUSALDIFF_DIST_TIMEOUT": "30", "CAUSALDIFF_PROGRESS": "0"}


def pyro_scm() -> cd.SCM:
    """x -> c (categorical: Gumbel-max abduction), x -> y (exact), (y, c) -> z (exact)."""
    g = nx.DiGraph([("x", "c"), ("x", "y"), ("y", "z"), ("c", "z")])
    return cd.SCM(g, {
        "x": dist.Normal(torch.tensor(0.0, dtype=F64), 1.0),
        "c": lambda x: dist.Categorical(logits=torch.stack([x, -x, 0.5 * x], -1)),
        "y": lambda x: dist.Normal(2.0 * x, torch.tensor(0.5, dtype=F64)),
        "z": lambda y, c: dist.Normal(torch.sin(y) + c.to(F64), torch.tensor(0.3, dtype=F64))})


SIZES: list[int] = []


def recording_scm() -> cd.SCM:
    """x -> y, y's callable recording how many rows it is asked for."""
    def y(x: torch.Tensor) -> dist.Normal:
        SIZES.append(x.shape[0])
        return dist.Normal(x, torch.tensor(1.0, dtype=F64))

    return cd.SCM(nx.DiGraph([("x", "y")]), {"x": dist.Normal(torch.tensor(0.0, dtype=F64), 1.0), "y": y})


def neural_scm() -> cd.SCM:
    """x -> y -> z, y and z additive-noise MLPs fitted (seeded) on 64 rows."""
    g = nx.DiGraph([("x", "y"), ("y", "z")])
    cfg = cd.AdditiveNoiseConfig(hidden=(16,), steps=30, batch_size=16, eval_every=10)
    return cd.SCM(g, {"x": dist.Normal(torch.tensor(0.0), 1.0), "y": cd.AdditiveNoiseMechanism(cfg),
                      "z": cd.AdditiveNoiseMechanism(cfg.model_copy(update={"seed": 1}))})


def training_rows() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, generator=g)
    y = torch.tanh(x) + 0.1 * torch.randn(64, generator=g)
    return {"x": x, "y": y, "z": y ** 2 + 0.1 * torch.randn(64, generator=g)}


def queries(scm: cd.SCM, neural: cd.SCM) -> dict[str, dict]:
    """The queries compared; the same code runs on one process and on each rank."""
    exact = {k: v for k, v in pyro_scm().sample(7, seed=1).items()}
    big = pyro_scm().sample(N_BIG, seed=2)
    return {
        "cf_exact_n7": scm.counterfactual({k: exact[k] for k in ("x", "y")} | {"c": exact["c"], "z": exact["z"]},
                                          {"y": 1.5}),
        "cf_exact_n1": scm.counterfactual({k: v[:1] for k, v in exact.items()}, {"y": -0.5}),
        "cf_gumbel_n1": scm.counterfactual({k: v[:1] for k, v in exact.items()}, {"x": -0.5}, seed=4),
        "sample": scm.sample(N_BIG, seed=5),
        "sample_chunked": scm.sample(N_BIG, seed=5, batch_size=1000),
        "interventional": scm.interventional_samples(N_BIG, {"x": 0.3}, seed=6),
        "abduct_gumbel": scm.abduct(big, seed=7),
        "cf_gumbel": scm.counterfactual(big, {"x": 1.0}, seed=8, batch_size=700),
        "cf_neural_n7_chunked": neural.counterfactual(neural.sample(7, seed=9), {"y": 0.2}, batch_size=2),
    }


def network_query(neural: cd.SCM) -> dict:
    """Without a batch_size a network computes other numbers of rows per rank than one process."""
    return dict(neural.counterfactual(neural.sample(7, seed=9), {"y": 0.2}))


def _sharded() -> dict:
    neural = neural_scm().fit(training_rows())
    with launch(device="cpu"):
        out = {k: dict(v) for k, v in queries(pyro_scm(), neural).items()}
        out["unseeded"] = dict(pyro_scm().sample(N_BIG))
        out["network"] = network_query(neural)
        SIZES.clear()
        out["recorded"] = dict(recording_scm().sample(N_BIG, seed=3))
        out["sizes"] = list(SIZES)
        return out


@pytest.fixture(scope="module")
def sharded():
    return run_distributed(_sharded, 2, timeout=180, env=ENV)


def test_row_spans_split_rows_chunks_or_whole_rng_blocks():
    assert shard_unit(None, False) == 1 and shard_unit(None, True) == ROW_BLOCK and shard_unit(2048, True) == 2048
    assert [row_span(7, r, 2) for r in range(2)] == [(0, 3), (3, 7)]
    assert [row_span(1, r, 2) for r in range(2)] == [(0, 0), (0, 1)]  # n < W: rank 0 idle
    assert [row_span(7, r, 2, 2) for r in range(2)] == [(0, 4), (4, 7)]  # whole chunks of 2 rows
    assert [row_span(N_BIG, r, 2, ROW_BLOCK) for r in range(2)] == [(0, ROW_BLOCK), (ROW_BLOCK, N_BIG)]
    assert [row_span(7, r, 2, ROW_BLOCK) for r in range(2)] == [(0, 0), (0, 7)]  # one block: one rank
    for n, w, unit in ((10 * ROW_BLOCK + 3, 4, ROW_BLOCK), (11, 3, 1), (11, 5, 3), (2, 8, 1)):
        spans = [row_span(n, r, w, unit) for r in range(w)]
        assert spans[0][0] == 0 and spans[-1][1] == n
        assert all(a % unit == 0 and spans[i - 1][1] == a for i, (a, _) in enumerate(spans) if i)


def test_sharded_queries_are_bit_identical_to_one_process(sharded):
    neural = neural_scm().fit(training_rows())
    alone = queries(pyro_scm(), neural)
    for name, want in alone.items():
        for rank, got in enumerate(sharded):
            assert list(got[name]) == list(want), (name, rank)
            for k in want:
                assert torch.equal(got[name][k], want[k]), (name, rank, k)
    assert not torch.equal(alone["sample"]["x"], alone["interventional"]["x"])


def test_a_network_without_batch_size_agrees_to_float_rounding(sharded):
    want = network_query(neural_scm().fit(training_rows()))
    for got in sharded:
        assert got["network"].keys() == want.keys()
        for k in want:
            torch.testing.assert_close(got["network"][k], want[k], rtol=1e-6, atol=1e-6)


def test_each_rank_computes_only_its_rows(sharded):
    SIZES.clear()
    alone = recording_scm().sample(N_BIG, seed=3)
    assert max(SIZES) == N_BIG
    assert max(sharded[0]["sizes"]) == ROW_BLOCK and max(sharded[1]["sizes"]) == N_BIG - ROW_BLOCK
    assert all(torch.equal(alone[k], s["recorded"][k]) for s in sharded for k in alone)


def test_an_unseeded_sharded_query_agrees_on_every_rank(sharded):
    a, b = (s["unseeded"] for s in sharded)
    assert all(torch.equal(a[k], b[k]) for k in a) and a["x"].shape == (N_BIG,)


def _failing_rank() -> str:
    with launch(device="cpu"):
        x = torch.arange(8, dtype=F64)  # rows 4..7 go to rank 1, whose shard the transform refuses

        def refuse_big(v: torch.Tensor) -> torch.Tensor:
            if bool((v > 3.5).any()):
                raise ValueError("a value above 3.5")
            return v + 1.0

        g = nx.DiGraph([("x", "y")])
        scm = cd.SCM(g, {"x": dist.Normal(torch.tensor(0.0, dtype=F64), 1.0),
                         "y": lambda x: dist.Normal(x, torch.tensor(1.0, dtype=F64))})
        try:
            scm.counterfactual({"x": x, "y": x}, {"x": cd.Transform(refuse_big)})
        except Exception as exc:  # noqa: BLE001: the test compares what each rank raised
            return f"{type(exc).__name__}: {exc}"
        return "no error"


def test_an_error_on_one_rank_is_raised_on_every_rank():
    r0, r1 = run_distributed(_failing_rank, 2, timeout=120, env=ENV)
    assert r0 == r1 and "a value above 3.5" in r0


def _per_node() -> dict:
    with launch(device="cpu"):
        scm = fit_per_node(neural_scm(), training_rows())
        return {v: scm.mechanisms[v].state_tensors() for v in ("y", "z")}


def test_fit_per_node_gives_the_weights_of_one_process():
    alone = neural_scm().fit(training_rows())
    for got in run_distributed(_per_node, 2, timeout=120, env=ENV):
        for v in ("y", "z"):
            want = alone.mechanisms[v].state_tensors()
            assert want.keys() == got[v].keys() and all(torch.equal(want[k], got[v][k]) for k in want), v


def _shards(directory: str) -> dict:
    factual = pyro_scm().sample(N_BIG, seed=2)  # whole, before the queries return shards
    with launch(device="cpu", gather=False):
        cf = pyro_scm().counterfactual(factual, {"x": 1.0}, seed=8)
        save_shards(cf, directory, name="cf")
        return {k: v.shape[0] for k, v in cf.items()}


def test_shards_with_a_manifest_hold_the_one_process_result(tmp_path):
    local = run_distributed(_shards, 2, str(tmp_path), timeout=120, env=ENV)
    assert [r["x"] for r in local] == [ROW_BLOCK, N_BIG - ROW_BLOCK]  # each rank kept its own rows
    manifest = json.loads((tmp_path / "cf.manifest.json").read_text())
    assert manifest["n"] == N_BIG and [(s["start"], s["stop"]) for s in manifest["shards"]] == \
        [(0, ROW_BLOCK), (ROW_BLOCK, N_BIG)]
    want = pyro_scm().counterfactual(pyro_scm().sample(N_BIG, seed=2), {"x": 1.0}, seed=8)
    got = load_shards(tmp_path, "cf")
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)
