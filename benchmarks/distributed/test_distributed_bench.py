"""The distributed benchmark's ``--quick`` setting runs 1 and 2 processes and finds them bit-identical."""

from __future__ import annotations

import json
import math

from benchmarks.distributed import __main__ as bench


def test_quick_run_times_both_world_sizes_and_finds_identical_results(tmp_path):
    res = bench.main(["--quick", "--out", str(tmp_path)])
    assert res["identical_results"] is True
    assert res["one_process"]["world_size"] == 1 and [r["rank"] for r in res["two_processes"]] == [0, 1]
    assert all(math.isfinite(v) and v > 0 for k in ("speedup_1_over_2", "speedup_cpu_1_over_2") for v in res[k].values())
    saved = json.loads((tmp_path / "distributed_cpu_quick.json").read_text())
    assert saved["speedup_1_over_2"] == res["speedup_1_over_2"]
    assert "bit-identical to 1 process" in (tmp_path / "distributed_cpu_quick.md").read_text()
