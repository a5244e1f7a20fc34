"""The tabular DCM benchmark in its ``--quick`` setting (CI), plus its metrics on known cases."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch

from benchmark_scripts import load_benchmark

bench = load_benchmark("tabular_dcm")


def test_mmd_of_identical_sets_is_zero_and_grows_with_a_shift():
    x = torch.randn(100, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert bench.mmd2_rbf(x, x.clone()) == pytest.approx(0.0, abs=1e-12)
    near, far = bench.mmd2_rbf(x, x + 0.1), bench.mmd2_rbf(x, x + 3.0)
    assert 0 < near < far


def test_mmd_matches_a_direct_computation():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 2, generator=g, dtype=torch.float64)
    y = torch.randn(5, 2, generator=g, dtype=torch.float64) + 0.5
    d = [[float(((a - b) ** 2).sum()) for b in y] for a in x]
    pos = sorted(v for row in d for v in row if v > 0)
    m = len(pos)
    med = pos[m // 2] if m % 2 else None  # torch.median takes the lower middle value
    med = pos[(m - 1) // 2] if med is None else med
    gamma = 1 / med
    k = lambda a, b: math.exp(-gamma * float(((a - b) ** 2).sum()))  # noqa: E731
    kxx = sum(k(a, b) for a in x for b in x) / 49
    kyy = sum(k(a, b) for a in y for b in y) / 25
    kxy = sum(k(a, b) for a in x for b in y) / 35
    assert bench.median_gamma(x, y) == pytest.approx(gamma, rel=1e-12)
    assert bench.mmd2_rbf(x, y) == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-10)


def test_cf_mse_averages_over_rows_and_descendants():
    truth = {"a": torch.zeros(4), "b": torch.zeros(4, 2)}
    pred = {"a": torch.ones(4), "b": torch.full((4, 2), 2.0)}
    p, t = bench.stack_nodes(pred, ["a", "b"]), bench.stack_nodes(truth, ["a", "b"])
    assert p.shape == (4, 3)
    assert bench.cf_mse(p, t) == pytest.approx((1 + 4 + 4) / 3)


def test_seed_and_list_parsing():
    assert bench._parse_seeds("0-2,5") == [0, 1, 2, 5]
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--systems", "nope", "--out", "/nonexistent/never"])


def test_quick_run_writes_finite_results(tmp_path):
    t0 = time.perf_counter()
    results = bench.main(["--quick", "--out", str(tmp_path)])
    elapsed = time.perf_counter() - t0
    js, md = tmp_path / "tabular_dcm_quick.json", tmp_path / "tabular_dcm_quick.md"
    assert js.exists() and md.exists()
    saved = json.loads(js.read_text())
    assert saved["settings"]["quick"] and saved["env"]["torch"] == torch.__version__
    ran = [s for s in saved["systems"] if s not in saved["skipped"]]
    assert "anm" in ran  # causaldiff's own mechanism always runs
    scms = {r["scm"] for r in saved["rows"]}
    assert scms == {"chain-nonlinear", "chain-nonadditive"}
    for row in saved["rows"]:
        assert set(row["systems"]) == set(ran)
        for s in ran:
            for metric in ("cf_mse", "mmd"):
                stat = row["systems"][s][metric]
                assert math.isfinite(stat["mean"]) and stat["mean"] >= 0, (row["scm"], row["node"], s)
                assert len(stat["per_seed"]) == 1
        assert math.isfinite(row["mmd_noise_floor"]["mean"])
    for scm_name, per_system in saved["timings"].items():
        for s in ran:
            assert per_system[s]["fit_s"]["mean"] > 0 and per_system[s]["cf_ms_per_100"]["mean"] > 0
    # the additive-noise model is the right model class for the nonlinear (additive) SCM:
    # its counterfactual error there is far below the spread of the descendants (x100 ~ 100)
    nl = [r for r in saved["rows"] if r["kind"] == "nonlinear"]
    assert all(r["systems"]["anm"]["cf_mse"]["mean"] < 20 for r in nl)
    text = md.read_text()
    assert "| chain | x1 |" in text and "## Timings" in text
    assert results["rows"] == saved["rows"]
    assert elapsed < 60, f"--quick took {elapsed:.1f} s"
