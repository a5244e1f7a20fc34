"""The tabular-defaults benchmark (issue 11, point 3): --quick runs, every setting is scored and
timed, a divergence is recorded rather than dropped, and the choice rule is the documented one."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.dcm import protocol as dcm

from benchmarks.dcm import defaults as bench


def test_quick_run_scores_every_setting(tmp_path):
    res = bench.main(["--quick", "--out", str(tmp_path)])
    names = [f"{g} fp={fp}" + ("" if guided is None else " guided" if guided else " unguided")
             for g, settings in bench.SETTINGS.items() for fp, guided in settings]
    assert res["systems"] == names
    assert set(res["overall"]) == set(names)
    for name, v in res["overall"].items():
        assert v["cf_ms"] > 0
        assert math.isfinite(v["cf_mse"]) or res["diverged_queries"].get(name, 0) > 0  # NaN only when counted
    assert all(res["chosen"][g].startswith((g, "none (")) for g in ("conditional", "anticausal"))
    saved = json.loads((tmp_path / "tabular_defaults_quick.json").read_text())
    assert saved["chosen"] == res["chosen"]
    assert "Accuracy against cost" in (tmp_path / "tabular_defaults_quick.md").read_text()


def test_cheapest_within_tolerance_on_every_row():
    scores = {"a": {"per_row": [1.00, 10.0], "cf_ms": 9.0}, "b": {"per_row": [1.04, 10.2], "cf_ms": 3.0},
              "c": {"per_row": [1.30, 9.9], "cf_ms": 1.0}, "d": {"per_row": [0.5, float("nan")], "cf_ms": 0.5}}
    assert dcm.cheapest_within(scores, 0.05) == "b"  # c is best on row 2 but 30% worse on row 1
    with pytest.raises(ValueError, match="none within 0%"):  # a is best on row 1, c on row 2
        dcm.cheapest_within(scores, 0.0)
    assert dcm.cheapest_within(scores, 0.5) == "c"  # d is never chosen: it diverged on row 2
    assert dcm.cheapest_within({"a": scores["a"], "c": scores["c"]}, 0.12) == "a"
    with pytest.raises(ValueError, match="no system with a finite CF MSE"):
        dcm.cheapest_within({"d": scores["d"]}, 0.1)
