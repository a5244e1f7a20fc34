"""Chunked queries: the same results whatever ``batch_size`` (bit for bit), per-row randomness
independent of chunking, the global RNG untouched, peak memory bounded by the chunk, a progress
bar over chunks."""

from __future__ import annotations

import tracemalloc

import networkx as nx
import numpy as np
import pyro.distributions as dist
import pytest
import torch

import causaldiff as cd
from causaldiff.chunking import chunk_bounds
from causaldiff.mechanisms.base import Abduction, Mechanism
from causaldiff.progress import progress_enabled, set_progress
from causaldiff.rng import ROW_BLOCK, block_seed

F64 = torch.float64


class WideMechanism(Mechanism):
    """``y = mean_j sin(x + j / W) + u``: each row builds a ``W``-wide float64 intermediate in
    numpy (which tracemalloc sees), so a query's peak memory is ``8 W`` bytes per row at once."""

    def __init__(self, width: int = 2048) -> None:
        super().__init__()
        self.width = width

    def abduction(self, parents=None) -> Abduction:
        return Abduction.EXACT

    def _mean(self, x: torch.Tensor) -> torch.Tensor:
        wide = x.numpy()[:, None] + np.arange(self.width, dtype=np.float64)[None, :] / self.width
        return torch.from_numpy(np.sin(wide).mean(axis=1))

    def sample_noise(self, n, parents, generator=None):
        return torch.randn(n, generator=generator, dtype=F64)

    def forward(self, noise, parents):
        return self._mean(parents["x"]) + noise

    def abduct(self, x, parents, generator=None):
        return x - self._mean(parents["x"])


def mixed_scm(width: int = 64) -> cd.SCM:
    """x ~ N(0, 1); c | x categorical (Gumbel-max abduction: stochastic); y | x, c Normal;
    w | x wide (exact abduction)."""
    g = nx.DiGraph([("x", "c"), ("x", "y"), ("c", "y"), ("x", "w")])
    mechs = {
        "x": dist.Normal(torch.tensor(0.0, dtype=F64), 1.0),
        "c": lambda x: dist.Categorical(logits=torch.stack([x, -x, 0.5 * x], -1)),
        "y": lambda x, c: dist.Normal(torch.sin(x) + c.to(F64), torch.tensor(0.3, dtype=F64)),
        "w": WideMechanism(width),
    }
    return cd.SCM(g, mechs)


def exact_scm(width: int) -> cd.SCM:
    g = nx.DiGraph([("x", "w"), ("w", "z")])
    mechs = {"x": dist.Normal(torch.tensor(0.0, dtype=F64), 1.0), "w": WideMechanism(width),
             "z": lambda w: dist.Normal(2.0 * w + 1.0, torch.tensor(0.5, dtype=F64))}
    return cd.SCM(g, mechs)


def same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_chunk_bounds_cover_the_rows_once_and_stochastic_chunks_hold_whole_blocks():
    assert chunk_bounds(10, None, False) == [(0, 10)]
    assert chunk_bounds(10, 4, False) == [(0, 4), (4, 8), (8, 10)]
    bounds = chunk_bounds(3 * ROW_BLOCK + 5, 10, True)
    assert all(a % ROW_BLOCK == 0 for a, _ in bounds) and bounds[-1][1] == 3 * ROW_BLOCK + 5
    assert block_seed(7, 0) == 7 and len({block_seed(7, b) for b in range(100)}) == 100


def test_deterministic_counterfactual_is_bit_identical_whatever_the_batch_size():
    scm = exact_scm(16)
    rows = scm.sample(1000, seed=0)
    ref = scm.counterfactual(rows, do={"x": 0.5})
    for bs in (1, 7, 333, 999, 1000, 5000):
        assert same(scm.counterfactual(rows, do={"x": 0.5}, batch_size=bs), ref), bs
    assert same(scm.abduct(rows, batch_size=7), scm.abduct(rows))
    u = scm.abduct(rows)
    assert same(scm.predict(u, do={"w": cd.Shift(1.0)}, batch_size=13), scm.predict(u, do={"w": cd.Shift(1.0)}))
    assert ref["z"].shape == (1000,) and not torch.equal(ref["z"], rows["z"])
    per_row = {"x": torch.linspace(-1.0, 1.0, 1000, dtype=F64), "w": cd.Shift(torch.arange(1000.0, dtype=F64))}
    whole = scm.counterfactual(rows, do=per_row)
    assert same(scm.counterfactual(rows, do=per_row, batch_size=64), whole)
    assert torch.equal(whole["x"], per_row["x"])


def test_stochastic_queries_give_the_same_rows_for_a_seed_whatever_the_batch_size():
    scm = mixed_scm()
    n = 3 * ROW_BLOCK + 17
    ref = scm.sample(n, seed=5)
    for bs in (1, ROW_BLOCK, 2 * ROW_BLOCK + 1, n):
        assert same(scm.sample(n, seed=5, batch_size=bs), ref), bs
    assert not torch.equal(scm.sample(n, seed=6)["x"], ref["x"])
    do = {"x": cd.Shift(0.7)}
    cf = scm.counterfactual(ref, do=do, seed=1)
    for bs in (3, ROW_BLOCK + 1, n - 1):
        assert same(scm.counterfactual(ref, do=do, seed=1, batch_size=bs), cf), bs
    assert not torch.equal(scm.counterfactual(ref, do=do, seed=2)["y"], cf["y"])  # Gumbel-max draws
    ab = scm.abduct(ref, seed=4)
    assert same(scm.abduct(ref, seed=4, batch_size=50), ab)
    # the rows of a whole block do not depend on how many rows follow it (blocks are fixed)
    short = scm.sample(ROW_BLOCK + 3, seed=5)
    assert same({k: v[:ROW_BLOCK] for k, v in ref.items()}, {k: v[:ROW_BLOCK] for k, v in short.items()})


def test_queries_leave_the_global_rng_untouched_and_unseeded_queries_take_their_seed_from_it():
    scm = mixed_scm()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    scm.sample(2 * ROW_BLOCK + 1, seed=0, batch_size=10)
    scm.counterfactual(scm.sample(600, seed=1), do={"x": 1.0}, seed=2, batch_size=100)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(9)
    nine = torch.get_rng_state()
    a = scm.sample(10)
    assert not torch.equal(torch.get_rng_state(), nine)  # one seed drawn from the global RNG
    torch.manual_seed(9)
    assert same(a, scm.sample(10))  # so the global RNG's state fixes an unseeded query's rows
    torch.manual_seed(9)
    b, c = scm.sample(600, batch_size=256), None
    torch.manual_seed(9)
    c = scm.sample(600)
    assert same(b, c)


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_grows_with_the_batch_size_not_with_n():
    width = 2048  # 16 KiB of intermediates per row
    scm = exact_scm(width)
    small, large = scm.sample(1000, seed=0), scm.sample(4000, seed=1)
    do = {"x": 0.3}
    chunked_small = _peak_bytes(lambda: scm.counterfactual(small, do=do, batch_size=100))
    chunked_large = _peak_bytes(lambda: scm.counterfactual(large, do=do, batch_size=100))
    whole_large = _peak_bytes(lambda: scm.counterfactual(large, do=do))
    per_chunk = 100 * width * 8
    assert whole_large > 4000 * width * 8  # the unchunked query holds every row's intermediates
    assert chunked_large < 3 * per_chunk and chunked_small < 3 * per_chunk
    assert chunked_large < 1.5 * chunked_small  # 4x the rows, the same peak
    sampled = _peak_bytes(lambda: scm.sample(4000, seed=0, batch_size=ROW_BLOCK))
    assert sampled < 3 * ROW_BLOCK * width * 8


def test_batch_size_is_validated_and_a_progress_bar_runs_over_chunks(capsys):
    scm = exact_scm(4)
    rows = scm.sample(50, seed=0)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(cd.DataError, match="batch_size"):
            scm.counterfactual(rows, do={"x": 0.0}, batch_size=bad)
    was = progress_enabled()
    set_progress(True)
    try:
        scm.counterfactual(rows, do={"x": 0.0}, batch_size=10)
    finally:
        set_progress(was)
    err = capsys.readouterr().err
    assert "counterfactual" in err and "/5 " in err  # one step per chunk


def test_cli_counterfactual_batch_size_gives_the_same_rows(tmp_path, capsys):
    """Network mechanisms: BLAS picks its kernels by the number of rows, so chunks agree with the
    whole batch to float32 rounding, not bit for bit (row-wise mechanisms above are bit-exact)."""
    import json
    from pathlib import Path

    from causaldiff.cli import main

    spec = Path(__file__).resolve().parents[1] / "graphs" / "tabular_chain_nonlinear_anm.toml"
    run = tmp_path / "run"
    assert main(["fit", str(spec), "--out", str(run), "--quick", "--device", "cpu"]) == 0
    outs = []
    for extra in ([], ["--batch-size", "3"]):
        out = tmp_path / f"cf{len(extra)}.json"
        assert main(["counterfactual", str(run), "--do", "x1=1.0", "--n", "10", "--out", str(out), *extra]) == 0
        outs.append(json.loads(out.read_text())["counterfactual"])
    assert outs[0].keys() == outs[1].keys() and outs[0]["x1"] == outs[1]["x1"] == [1.0] * 10
    for k in outs[0]:
        a, b = torch.tensor(outs[0][k]), torch.tensor(outs[1][k])
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-6), k
    assert outs[0]["x3"] != outs[0]["x2"]
    assert main(["counterfactual", str(run), "--do", "x1=1.0", "--batch-size", "0"]) == 2
    assert "--batch-size must be positive" in capsys.readouterr().err
