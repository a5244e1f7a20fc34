"""The MNIST Diff-SCM benchmark (``benchmarks/mnist/``): its ``quick`` setting end to end (CI), its settings
and arguments, and (slow) the ``gpu`` setting's pipeline with tiny iteration counts on the CPU.
``choose_main`` is tested in ``benchmarks/common/test_common.py``, ``mean_sem`` in ``tests/evaluation/test_axioms.py``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from benchmarks.mnist import __main__ as bench
from benchmarks.mnist.settings import SETTINGS
from causaldiff.build import build_scm
from causaldiff.datasets.mnist import candidate_dirs
from causaldiff.metrics import CLD_UNCHANGED
from causaldiff.runs import with_overrides, with_setting
from causaldiff.spec import load_spec

PNG = b"\x89PNG\r\n\x1a\n"
GRAPHS = Path(__file__).resolve().parents[2] / "graphs"
needs_mnist = pytest.mark.skipif(
    not any(list(d.glob("t10k-images-idx3-ubyte*")) for d in candidate_dirs() if d.is_dir()),
    reason="MNIST files not found: set CAUSALDIFF_MNIST_DIR to their folder (e.g. ../shared/data/mnist)")


def test_settings_are_labelled_and_gpu_uses_the_reference_architecture():
    gpu, cpu = SETTINGS["gpu"], SETTINGS["cpu"]
    assert gpu.unet.base_channels == 64 and gpu.unet.channel_mult == (1, 2, 4) and gpu.unet.mid_attention
    assert gpu.schedule.kind == "cosine" and gpu.schedule.num_train_timesteps == 1000
    assert gpu.ddim_steps == 100 and gpu.abduction_fractions == (0.75, 1.0)
    assert gpu.denoiser_train.batch_size == 256 and gpu.denoiser_train.weight_decay == 0.01
    assert gpu.denoiser_budget is not None and gpu.denoiser_budget.seconds + gpu.predictor_budget.seconds < 9 * 60
    assert set(gpu.scales) >= {0.0, 0.3, 0.7, 1.0, 2.0, 3.0} and gpu.cycles == (1, 10)  # Diff-SCM's sweep
    assert "NOT comparable" in cpu.label


@pytest.mark.parametrize("name", ["quick", "cpu", "gpu"])
def test_mnist_settings_of_the_benchmark_reach_the_fitted_spec(name):
    """``causaldiff fit graphs/mnist.toml --setting NAME`` fits the benchmark's setting (the spec's
    ``[settings.NAME]`` agree with :data:`benchmarks.mnist.settings.SETTINGS`): its data sizes and the
    image node's whole config."""
    setting = SETTINGS[name]
    spec = with_setting(load_spec(GRAPHS / "mnist.toml"), name)
    assert (spec.dataset.n_train, spec.dataset.n_test) == (setting.n_train, setting.n_test)
    cfg = build_scm(spec).mechanisms["image"].config
    assert cfg == setting.diffusion_config()
    assert cfg.guidance_scale == setting.fit_guidance_scale and cfg.abduction_fraction == setting.fit_abduction_fraction
    assert spec.nodes["digit"] == load_spec(GRAPHS / "mnist.toml").nodes["digit"]
    steps = build_scm(with_overrides(spec, steps=11)).mechanisms["image"].config
    assert steps.train.steps == steps.predictor_train.steps == 11
    assert steps.model_copy(update={"train": cfg.train, "predictor_train": cfg.predictor_train}) == cfg


def test_bad_arguments_exit(capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--setting", "quick", "--scales", "a,b"])
    assert e.value.code == 2 and "comma-separated" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        bench.main(["--setting", "quick", "--abduction-fractions", "0.5,0"])
    assert e.value.code == 2
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="needs a CUDA device"):
            bench.main(["--setting", "gpu", "--out", "/nonexistent/never"])


def _check_results(out: Path, stem: str, scales: list[float]) -> dict:
    r = json.loads((out / f"{stem}.json").read_text())
    assert r["env"]["torch"] == torch.__version__ and r["env"]["device_name"]
    assert r["command"].startswith("python -m benchmarks.mnist")
    assert sorted(float(f) for f in r["sweeps"]) == sorted(r["run"]["abduction_fractions"])
    assert r["main"]["abduction_fraction"] in r["run"]["abduction_fractions"]
    rows = []
    for sweep in r["sweeps"].values():
        assert sorted(float(s) for s in sweep) == sorted(set(scales) | {r["main"]["scale"]})
        rows += list(sweep.values())
    for row in rows:
        assert math.log(2) - 1e-9 <= row["CLD"]["mean"] <= math.log(2 * math.e) + 1e-9
        assert 0 <= row["effectiveness"] <= 1
        for key in ("IM1", "IM2", "minimality_l1"):
            assert math.isfinite(row[key]["mean"]) and row[key]["mean"] >= 0, key
    m = r["main"]
    for key in ("reversibility_l1", "composition_l1_1", "composition_l1_10"):
        assert math.isfinite(m[key]["mean"]) and m[key]["mean"] >= 0, key
    assert r["timings_s"]["total"] > 0
    assert r["paper"]["IM1"] == 0.94 and r["paper"]["IM2"] == 0.04
    md = (out / f"{stem}.md").read_text()
    assert "| IM1 |" in md and "0.94" in md and r["env"]["device_name"] in md
    for f in r["files"].values():
        assert (out / f).read_bytes()[:8] == PNG
    return r


@needs_mnist
def test_quick_setting_end_to_end(tmp_path):
    r = _check_results(tmp_path, "mnist_diffscm_quick",
                       bench.main(["--setting", "quick", "--out", str(tmp_path), "--no-progress"])["run"]["scales"])
    assert r["setting"] == "quick" and r["main"]["n_composition"] == 4
    assert r["main"]["abduction_steps"] == (3 if r["main"]["abduction_fraction"] == 0.75 else 4)  # of K = 4
    assert r["training"]["trained_on"] == "cpu"
    # s = 0 is an unguided regeneration of the factual image from its partial abduction: it stays
    # close to the factual image, so its CLD is near that of an unchanged image
    assert abs(r["sweeps"]["0.75"]["0.0"]["CLD"]["mean"] - CLD_UNCHANGED) < 0.2


@needs_mnist
@pytest.mark.slow
def test_gpu_setting_smoke_on_cpu(tmp_path):
    """The gpu setting's pipeline (its reference-size networks and budget probes) with tiny counts."""
    r = bench.main(["--setting", "gpu", "--smoke", "--device", "cpu", "--out", str(tmp_path), "--no-progress"])
    _check_results(tmp_path, "mnist_diffscm_gpu_smoke", r["run"]["scales"])
    assert r["training"]["denoiser"]["budgeted"] and r["training"]["denoiser"]["probe_seconds_per_step"] > 0
    assert r["settings"]["unet"]["base_channels"] == 64 and "SMOKE" in r["label"]


@needs_mnist
@pytest.mark.gpu
def test_quick_setting_trains_and_answers_on_cuda(tmp_path):
    r = bench.main(["--setting", "quick", "--device", "cuda", "--out", str(tmp_path), "--no-progress"])
    assert r["training"]["trained_on"].startswith("cuda") and "cuda" in r["env"]["device"]
    _check_results(tmp_path, "mnist_diffscm_quick", r["run"]["scales"])
