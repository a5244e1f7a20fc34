"""The throughput benchmark: its smoke setting runs every path and writes its table."""

from __future__ import annotations

import json

from benchmark_scripts import load_benchmark

bench = load_benchmark("throughput")


def test_smoke_setting_measures_every_setting_and_batch(tmp_path):
    res = bench.main(["--setting", "smoke", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "throughput_smoke.json").read_text())
    md = (tmp_path / "throughput_smoke.md").read_text()
    names = {r["setting"] for r in saved["rows"]}
    assert names == {"eager fp32", "bf16+fixed", "fp16+compile"} and {r["batch"] for r in saved["rows"]} == {1, 3}
    for r in res["rows"]:
        assert r["images_per_s"] > 0 and r["share_of_bf16_peak"] > 0
        assert r["max_abs_diff"] == 0.0 if r["setting"] == "eager fp32" else 0.0 < r["max_abs_diff"] < 0.2
    assert "| eager fp32 | 1 |" in md and saved["env"]["device"] == "cpu" and "--setting smoke" in saved["command"]
