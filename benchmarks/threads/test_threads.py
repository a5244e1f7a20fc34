"""The thread benchmark: its smoke setting measures each arm beside a competitor and writes the
table; the summary is the policy's smallest ratio to torch's default over the workloads."""

from __future__ import annotations

import json

from benchmarks.threads import bench


def test_smoke_setting_measures_each_arm_and_competitor_count(tmp_path):
    res = bench.main(["--setting", "smoke", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "threads_smoke.json").read_text())
    s = bench.SETTINGS["smoke"]
    assert [(r["competitors"], r["arm"]) for r in saved["rows"]] == [(c, a) for c in s["competitors"] for a in s["arms"]]
    assert len(saved["records"]) == s["repeats"] * len(s["competitors"]) * len(s["arms"])
    for r in res["rows"]:
        assert all(r[w] > 0 for w in bench.WORKLOADS) and r["busy_cores_median"] >= 0
    assert "| policy |" in (tmp_path / "threads_smoke.md").read_text()

    as_default = [{**r, "arm": "torch default" if r["arm"] == "1 thread" else r["arm"]} for r in res["rows"]]
    summary = bench.summary(as_default, {**s, "arms": ("torch default", "policy")})
    for c in s["competitors"]:
        key = "idle" if c == 0 else f"{c}_competitor"
        ratios = summary[f"policy_over_default_{key}_per_workload"]
        assert set(ratios) == set(bench.WORKLOADS) and summary[f"policy_over_default_{key}"] == min(ratios.values())
