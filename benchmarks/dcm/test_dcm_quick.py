"""The tabular DCM benchmark in its ``--quick`` setting (CI); the protocol and its metrics are tested in
tests/evaluation/test_dcm.py and tests/metrics/test_mmd_metrics.py."""

from __future__ import annotations

import json
import math

import pytest
import torch


from benchmarks.dcm import __main__ as bench


def test_seed_and_list_parsing():
    assert bench._seeds("0-2,5") == [0, 1, 2, 5]
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--systems", "nope", "--out", "/nonexistent/never"])


def test_quick_run_writes_finite_results(tmp_path):
    results = bench.main(["--quick", "--out", str(tmp_path)])
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
