"""The throughput benchmark: the hand-written reference computes the library's counterfactual,
and the smoke setting runs every row of its processes and writes the table and summary."""

from __future__ import annotations

import json

import torch

from benchmarks.throughput import bench, loops


def test_hand_written_loop_is_the_library_loop():
    torch.set_num_threads(1)
    w = loops.workload(channels=8, steps=2, batch=3)
    assert (loops.hand_loop(w)() - loops.library_loop(w)()).abs().max() < 1e-5
    assert loops.counterfactual_flops(w) > 0


def test_smoke_setting_measures_every_row_and_writes_its_summary(tmp_path):
    res = bench.main(["--setting", "smoke", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "throughput_smoke.json").read_text())
    md = (tmp_path / "throughput_smoke.md").read_text()
    s = bench.SETTINGS["smoke"]
    assert [r["row"] for r in saved["rows"]] == list(bench.rows(s))
    for r in res["rows"]:
        assert len(r["seconds"]) == s["repeats"] and r["images_per_s"] > 0 and r["gflop_per_s"] > 0
        assert r["loadavg_1min_median"] >= 0 and 0 <= r["busy_cores_median"] <= saved["cpus"]
        if r["loop"] in ("library", "hand"):
            assert r["max_abs_diff"] < (1e-5 if r["precision"] == "fp32" else 0.2)
    assert saved["processes"]["passive"]["wait_policy"] == "PASSIVE (user)"
    assert saved["processes"]["library"]["wait_policy"] == "libgomp default"  # the library never sets passive waits
    assert set(saved["summary"]) == {"default_over_best", "bf16_default_over_best", "bf16_over_fp32"}
    assert saved["summary"]["default_over_best"] > 0 and "## Summary" in md and "| library default |" in md
