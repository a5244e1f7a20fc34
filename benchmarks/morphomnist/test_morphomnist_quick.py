"""The Morpho-MNIST benchmark (``python -m benchmarks.morphomnist``):
its ``quick`` setting end to end (CI), with the results files, the grid and the sweep plot."""

from __future__ import annotations

import json

import pytest

from causaldiff.datasets.mnist import ENV_VAR, locate
from benchmarks.morphomnist.run import SETTINGS

PNG = b"\x89PNG\r\n\x1a\n"
from benchmarks.morphomnist import __main__ as bench
from benchmarks.morphomnist import published
needs_mnist = pytest.mark.skipif(
    published.data_dir() is None or locate("train") is None or locate("test") is None,
    reason=f"needs the published files (${published.ENV_VAR}) and MNIST (${ENV_VAR})")


def test_the_settings_are_sized_as_the_issue_asks():
    cpu, gpu = SETTINGS["cpu"], SETTINGS["gpu"]
    assert set(cpu.nets) == {"unet"} and cpu.n_sweep < cpu.n_train  # validation rows of the training split
    assert gpu.n_test == 10_000 and gpu.subset is None and set(gpu.nets) == {"unet"} and gpu.n_detail == 1000
    assert all(s.guidance == "conditional" and s.cond_dropout == 0.1 for s in (cpu, gpu))
    assert gpu.time_limit_s == 360 and gpu.denoiser_budget is not None and gpu.predictor_budget is not None
    assert SETTINGS["quick"].cycles == (1, 10)


@needs_mnist
def test_quick_runs_end_to_end(tmp_path):
    res = bench.main(["--setting", "quick", "--out", str(tmp_path), "--cache-dir", str(tmp_path / "cache")])
    scores = res["scores"]
    assert {"truth", "unchanged", "unet s=0", "unet s=1"} <= set(scores)
    truth = scores["truth"]
    assert truth["composition_l1"]["10"]["mean"] == 0.0
    assert all(truth["interventions"][n]["true_counterfactual"]["mse"] == 0.0 for n in ("thickness", "intensity"))
    model = scores["unet s=1"]["interventions"]
    assert set(model) == {"thickness", "intensity", "digit"} and "true_counterfactual" not in model["digit"]
    saved = json.loads((tmp_path / "morphomnist_quick.json").read_text())
    assert saved["command"].startswith("python -m benchmarks.morphomnist") and saved["environment"]["device"]
    assert "HVAE (paper)" in (tmp_path / "morphomnist_quick.md").read_text()
    summary = saved["summary"]
    assert {k: summary[k] for k in ("n_test", "predictors", "bn_mode")} == {
        "n_test": 6, "predictors": "released", "bn_mode": "batch"}
    unet = summary["rows"]["unet s=1"]
    assert set(unet) == {"composition_l1", "thickness_mae", "intensity_mae", "digit_acc"}
    assert len(unet["composition_l1"]) == 2 and all(len(unet[k]) == 3 for k in ("thickness_mae", "digit_acc"))
    assert unet["thickness_mae"][0] == model["thickness"]["effectiveness"]["batch"]["thickness_mae"]
    assert summary["rows"]["truth"]["digit_acc"][2] is None and saved["summary_eval"]["bn_mode"] == "eval"
    assert set(saved["floors"]) == {"batch", "eval"}
    for name in ("grid", "sweep"):
        assert (tmp_path / f"morphomnist_quick_{name}.png").read_bytes()[:8] == PNG
