"""The Morpho-MNIST run and its timing: the main-scale rule, the workload against a real run's
network calls, the projection, the time limit, the reference device's units, the shared abduction."""

from __future__ import annotations

import tempfile

import networkx as nx
import pyro.distributions as dist
import pytest
import torch

from causaldiff import SCM, PyroMechanism
from causaldiff.datasets.mnist import ENV_VAR, locate
from causaldiff.evaluation import morphomnist_plan as P
from causaldiff.evaluation import morphomnist_run as R
from causaldiff.evaluation.axioms import shared_abduction_counterfactuals
from causaldiff.evaluation.budget import Budget
from causaldiff.evaluation.morphomnist_settings import SETTINGS, smoke

needs_mnist = pytest.mark.skipif(locate("train") is None or locate("test") is None,
                                 reason=f"MNIST files not found: set {ENV_VAR} to their folder")
UNITS = {"denoiser_step": 0.05, "predictor_step": 0.01, "small_step": 0.004, "unguided": 1e-4, "guided": 2e-4,
         "small_batch": 0.02, "render": 0.07, "measure": 0.03}


def sweep_of(t: list[float], i: list[float], d: list[float], scales=(0.0, 1.0, 3.0), fraction=1.0) -> dict:
    return {(fraction, s): {"thickness MAE do(t)": a, "intensity MAE do(i)": b, "digit acc do(digit)": c}
            for s, a, b, c in zip(scales, t, i, d)}


def test_choose_main_known_answers():
    # best on all three at s = 3
    assert R.choose_main(sweep_of([0.5, 0.4, 0.3], [20, 10, 5], [0.1, 0.5, 0.9])) == (1.0, 3.0)
    # s = 1 wins two of three figures; s = 3 the digit one: mean ranks 1.0, 0.67, 1.33
    assert R.choose_main(sweep_of([0.5, 0.2, 0.3], [20, 4, 5], [0.1, 0.2, 0.9])) == (1.0, 1.0)
    # a tie in every figure goes to the smaller fraction, then the smaller scale
    tie = {**sweep_of([0.3] * 3, [5] * 3, [0.5] * 3), **sweep_of([0.3] * 3, [5] * 3, [0.5] * 3, fraction=0.75)}
    assert R.choose_main(tie) == (0.75, 0.0)
    mixed = {**sweep_of([0.3, 0.3], [5, 5], [0.1, 0.2], (1.0, 3.0)), **sweep_of([0.2, 0.25], [4, 6], [0.1, 0.1], (1.0, 3.0), 0.75)}
    assert R.choose_main(mixed) == (0.75, 1.0)  # rank sums: (0.75, 1) 1, (0.75, 3) 6, (1, 1) 6, (1, 3) 5


def test_sweep_lines_one_line_per_net_and_fraction():
    one = R.sweep_lines({"unet": {(0.75, 0.0): "a", (0.75, 1.0): "b"}})
    assert one == {"unet": {0.0: "a", 1.0: "b"}}
    two = R.sweep_lines({"unet": {(0.75, 1.0): "a", (1.0, 1.0): "b"}})
    assert two == {"unet f=0.75": {1.0: "a"}, "unet f=1": {1.0: "b"}}


def quick_swept():
    return SETTINGS["quick"].model_copy(update={"n_test": 6, "n_sweep": 4, "n_detail": 3, "scales": (0.0, 1.0, 2.0)})


def test_workload_counts_known_answers():
    s = quick_swept()  # K = 4, fraction 0.75: I = 3 steps
    w = P.workload(s)
    assert w["sweep unet"] == {"unguided": 3 * 4 * 3 * 2, "guided": 3 * 4 * 3 * 2, "measure": 3 * 3}
    # one abduction of 6 rows, three guided generations; 3 reversals and 10 cycles on 3 rows
    assert w["score unet"] == {"unguided": 6 * 3 + (3 * 3 + 10 * 3) * 3, "guided": (18 + 39) * 3, "measure": 9}
    assert w["truth and unchanged"] == {"measure": 5 * 3}
    assert w["true counterfactuals (background)"] == {"render": 2 * 6}
    every = P.workload(SETTINGS["quick"])  # no sweep: every scale fully scored, s = 0 unguided
    assert every["score unet s=0"]["guided"] == 0 and every["score unet s=1"]["guided"] > 0


def test_projection_caps_budgets_divides_cpu_work_and_hides_the_background():
    s = quick_swept().model_copy(update={"denoiser_budget": Budget(seconds=0.1, probe_steps=2, warm=1),
                                         "workers": 3})
    p = P.project(s, UNITS)
    assert p["costs"]["fit unet/denoiser_step"] == pytest.approx(0.1 + 2 * 0.05)  # budget + probe
    assert p["costs"]["fit unet/predictor_step"] == pytest.approx(4 * 0.01)  # unbudgeted: its steps
    assert p["costs"]["truth and unchanged/measure"] == pytest.approx(15 * 0.03 / 3)
    assert p["background_render_s"] == pytest.approx(12 * 0.07 / 3)
    assert p["phases"]["true counterfactuals (waited for)"] == 0.0  # hidden behind the training
    assert p["total_s"] == pytest.approx(sum(p["phases"].values()))


def test_fit_time_limit_shares_what_the_limit_leaves():
    q = quick_swept()
    base = q.model_copy(update={"denoiser_budget": Budget(seconds=100, probe_steps=2, warm=1),
                                "denoiser_train": q.denoiser_train.model_copy(update={"steps": 10_000})})
    assert P.fit_time_limit(base, UNITS, elapsed=0.0) == (base, {"fitted": False})
    limited = base.model_copy(update={"time_limit_s": 60.0})
    fitted, info = P.fit_time_limit(limited, UNITS, elapsed=10.0, margin=0.1)
    expect = 60 * 0.9 - 10 - info["projected_rest_s"] - 2 * 0.05
    assert fitted.denoiser_budget.seconds == pytest.approx(expect) and info["feasible"]
    # then the projected run ends at the limit less the margin, once the elapsed part is added
    assert P.project(fitted, UNITS)["total_s"] - P.project(fitted, UNITS)["phases"]["metric models"] + 10.0 \
        == pytest.approx(54.0)
    roomy, _ = P.fit_time_limit(limited.model_copy(update={"time_limit_s": 1e6}), UNITS, elapsed=0.0)
    assert roomy.denoiser_budget.seconds == 100  # capped by the budget
    tight, info = P.fit_time_limit(limited.model_copy(update={"time_limit_s": 1.0}), UNITS, elapsed=5.0)
    assert not info["feasible"] and tight.denoiser_budget.seconds < 1e-6  # min_steps, with a warning


def test_reference_units_from_a_recorded_run():
    record = {"settings": {"ddim_steps": 10, "abduction_fractions": [0.5, 1.0], "n_test": 100,
                           "scales": [0.0, 1.0, 2.0], "classifier": {"iterations": 50}},
              "timings_s": {"abduction": 1.5, "generation (sweep)": 1.5 + 2 * 1500 * 2e-3,
                            "effectiveness classifier": 0.25, "grid": 11 * 10 * 0.02},
              "training": {"denoiser": {"probe_seconds_per_step": 0.04}, "predictor": {"probe_seconds_per_step": 0.01}},
              "run": {"abduction_fraction": 1.0}}
    flops = {"denoiser_step": 2.0, "predictor_step": 1.0, "unguided": 3.0, "guided": 1.0}
    ref = {"denoiser_step": 1.0, "predictor_step": 1.0, "unguided": 1.0, "guided": 2.0}
    u = P.reference_units(record, flops, ref, {"render": 0.07, "measure": 0.03})
    # abduction: 100 rows x (5 + 10) steps in 1.5 s = 1e-3 s an image-step, x3 FLOPs
    assert u["unguided"] == pytest.approx(3e-3) and u["guided"] == pytest.approx(1e-3)
    assert u["denoiser_step"] == pytest.approx(0.08) and u["small_step"] == pytest.approx(0.005)
    assert u["small_batch"] == pytest.approx(0.02) and u["render"] == 0.07


def test_unit_flops_of_the_gpu_networks_are_counted_and_scale_with_the_image():
    gpu = SETTINGS["gpu"]
    f = P.unit_flops(gpu, gpu.nets["unet"])
    assert f["guided"] > f["unguided"] > 0 and f["denoiser_step"] > 2 * f["unguided"]
    import json
    from pathlib import Path
    record = json.loads((Path(__file__).parents[2] / "benchmarks/results/mnist_diffscm_gpu.json").read_text())
    ref = P.mnist_reference_flops(record)  # the same UNet at 28x28: (32/28)^2 = 1.31 as many FLOPs
    assert 1.2 < f["unguided"] / ref["unguided"] < 1.45


def test_shared_abduction_gives_the_counterfactuals():
    def y(x):
        return dist.Normal(2 * x + 1, 0.5)

    scm = SCM(nx.DiGraph([("x", "y"), ("x", "z"), ("y", "z")]),
              {"x": PyroMechanism(dist.Normal(0.0, 1.0)), "y": PyroMechanism(y),
               "z": PyroMechanism(lambda x, y: dist.Normal(x - y, 1.0))})
    rows = scm.sample(9, seed=0)
    dos = {"x": {"x": torch.linspace(-1, 1, 9)}, "y": {"y": torch.zeros(9)}}
    got = shared_abduction_counterfactuals(scm, rows, dos, batch_size=4, seed=0)
    for name, do in dos.items():
        want = scm.counterfactual(rows, do=do, seed=0)
        for k in want:
            torch.testing.assert_close(got[name][k], want[k], rtol=0, atol=1e-6)
        assert torch.equal(got["y"]["x"], rows["x"])  # a non-descendant kept bit for bit


@needs_mnist
def test_a_swept_run_makes_the_network_calls_its_workload_counts(monkeypatch):
    s = quick_swept()
    rows = {"denoiser": 0, "predictor": 0}
    fit = R.fit_scm

    def counted(*a, **kw):
        scm, info = fit(*a, **kw)
        m = scm.mechanisms["image"]
        for name, net in (("denoiser", m.denoiser), ("predictor", m.predictor)):
            net.register_forward_hook(lambda _m, args, _o, name=name: rows.__setitem__(name, rows[name] + len(args[0])))
        return scm, info

    monkeypatch.setattr(R, "fit_scm", counted)
    out = R.run(s, cache_dir=tempfile.mkdtemp())
    w = P.workload(s)
    I, grid = 3, 3 * 6 * 3  # grid: three counterfactuals of its 6 rows, 3 steps each way
    evaluated = [w["sweep unet"], w["score unet"]]
    assert rows["predictor"] == sum(p["guided"] for p in evaluated) + grid
    assert rows["denoiser"] == sum(p["guided"] + p["unguided"] for p in evaluated) + 2 * grid
    m = out["main"]["unet"]
    assert m["guidance_scale"] in s.scales and set(out["sweeps"]["unet"]) == {(0.75, x) for x in s.scales}
    main = out["scores"][f"unet f={m['abduction_fraction']:g} s={m['guidance_scale']:g}"]
    assert main["n"] == 6 and main["n_detail"] == 3 and "reversibility_l1" in main["interventions"]["digit"]
    assert out["scores"]["truth"]["composition_l1"]["10"]["mean"] == 0.0


@pytest.mark.slow
@needs_mnist
def test_the_gpu_setting_runs_end_to_end_at_its_real_network_sizes():
    """About 40 s on 2 cores: the UNet and predictor of the gpu setting, its budgets and its time
    limit (units timed, the denoiser cut), on tiny counts."""
    gpu = smoke(SETTINGS["gpu"])
    assert gpu.nets == SETTINGS["gpu"].nets and gpu.time_limit_s == 360
    out = R.run(gpu, cache_dir=tempfile.mkdtemp())
    assert out["budgets"]["time_limit"]["fitted"] and out["budgets"]["unet"]["denoiser"]["budgeted"]
    m = out["main"]["unet"]
    assert m["abduction_fraction"] in (0.75, 1.0) and len(out["sweeps"]["unet"]) == 2 * 4
    assert set(out["scores"]) == {"truth", "unchanged", f"unet f={m['abduction_fraction']:g} s={m['guidance_scale']:g}"}
