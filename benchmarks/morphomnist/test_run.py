"""The Morpho-MNIST run: its sweep lines, a swept run's main pair, the gpu setting's pipeline (slow)."""

from __future__ import annotations

import tempfile

import pytest

from benchmarks.morphomnist import published
from benchmarks.morphomnist import run as R
from benchmarks.morphomnist.settings import SETTINGS, smoke
from causaldiff.datasets.mnist import ENV_VAR, locate

needs_mnist = pytest.mark.skipif(
    published.data_dir() is None or locate("train") is None or locate("test") is None,
    reason=f"needs the published files (${published.ENV_VAR}) and MNIST (${ENV_VAR})")


def test_sweep_lines_one_line_per_net_and_fraction():
    one = R.sweep_lines({"unet": {(0.75, 0.0): "a", (0.75, 1.0): "b"}})
    assert one == {"unet": {0.0: "a", 1.0: "b"}}
    two = R.sweep_lines({"unet": {(0.75, 1.0): "a", (1.0, 1.0): "b"}})
    assert two == {"unet f=0.75": {1.0: "a"}, "unet f=1": {1.0: "b"}}


def quick_swept():
    return SETTINGS["quick"].model_copy(update={"n_test": 6, "n_sweep": 4, "n_detail": 3, "scales": (0.0, 1.0, 2.0)})


@needs_mnist
def test_a_swept_run_scores_the_main_pair_on_all_rows():
    s = quick_swept().model_copy(update={"anticausal_row": True})
    out = R.run(s, cache_dir=tempfile.mkdtemp())
    m = out["main"]["unet"]["null"]  # one pair for every intervention
    assert set(out["main"]["unet"]) == {"null"}
    assert m["guidance_scale"] in s.scales and set(out["sweeps"]["unet"]) == {(0.75, x) for x in s.scales}
    comp = {out["sweeps"]["unet"][(0.75, x)]["composition L1 1 cycle"] for x in s.scales}
    assert len(comp) == 1, "an anchored null intervention does not depend on the anchor scale"
    main = out["scores"][f"unet f={m['abduction_fraction']:g} s={m['guidance_scale']:g}"]
    assert main["n"] == 6 and main["n_detail"] == 3 and "reversibility_l1" in main["interventions"]["digit"]
    assert out["scores"]["truth"]["composition_l1"]["10"]["mean"] == 0.0
    a = out["main"]["unet anticausal"]["null"]  # Diff-SCM's anti-causal guidance: its own row
    assert f"unet anticausal f={a['abduction_fraction']:g} s={a['guidance_scale']:g}" in out["scores"]


def test_per_intervention_pairs_are_each_the_best_on_their_own_column():
    sweep = {(f, w): {"thickness MAE do(t)": 1 + f - w / 10, "intensity MAE do(i)": 9 - f * w,
                      "digit acc do(digit)": f * w / 10, "composition L1 1 cycle": f}
             for f in (0.5, 1.0) for w in (1.0, 2.0, 3.0)}
    assert R.per_intervention(sweep) == {"thickness": (0.5, 3.0), "intensity": (1.0, 3.0), "digit": (1.0, 3.0),
                                         "null": (0.5, 1.0)}
    sweep[(1.0, 3.0)]["digit acc do(digit)"] = 0.0
    assert R.per_intervention(sweep)["digit"] == (1.0, 2.0)


def test_dispatch_sends_a_one_node_do_to_its_function_and_any_other_to_null():
    fns = {k: (lambda rows, do, k=k: {"by": k}) for k in ("thickness", "digit", "null")}
    fn = R.dispatch(fns)
    assert fn({}, {"thickness": 1.0}) == {"by": "thickness"} and fn({}, {"digit": 3}) == {"by": "digit"}
    assert fn({}, {"intensity": 2.0}) == {"by": "null"}  # no function of its own
    assert fn({}, {"thickness": 1.0, "digit": 3}) == {"by": "null"}


@needs_mnist
def test_a_run_per_intervention_scores_each_do_with_its_own_pair():
    s = quick_swept().model_copy(update={"per_intervention": True, "fractions": (0.5, 1.0)})
    out = R.run(s, cache_dir=tempfile.mkdtemp())
    pairs, sweep = out["main"]["unet"], out["sweeps"]["unet"]
    assert set(pairs) == {"null", "thickness", "intensity", "digit"}
    for node, col, best in (("digit", "digit acc do(digit)", max), ("thickness", "thickness MAE do(t)", min)):
        chosen = (pairs[node]["abduction_fraction"], pairs[node]["guidance_scale"])
        assert sweep[chosen][col] == best(v[col] for v in sweep.values())
    assert set(out["scores"]) == {"truth", "unchanged", "unet per-intervention"}


@needs_mnist
def test_evaluate_rescores_the_saved_models_without_training(tmp_path):
    s = SETTINGS["quick"].model_copy(update={"n_test": 4, "cycles": (1,)})
    fitted = R.run(s, cache_dir=str(tmp_path / "cache"), save_dir=str(tmp_path / "models"))
    assert (tmp_path / "models" / "unet" / "weights.safetensors").exists()
    again = R.run(s, cache_dir=str(tmp_path / "cache"), evaluate=str(tmp_path / "models"))
    assert again["budgets"]["unet"] == {"loaded": str(tmp_path / "models" / "unet")}
    for name in ("unet s=0", "unet s=1"):
        assert again["scores"][name]["interventions"] == fitted["scores"][name]["interventions"]
    # a loaded SCM is scored with the setting's sampler, not the one it was saved with
    plain = s.model_copy(update={"refinements": 0, "spacing": "quadratic"})
    other = R.run(plain, cache_dir=str(tmp_path / "cache"), evaluate=str(tmp_path / "models"))
    assert other["scores"]["unet s=1"]["composition_l1"] != again["scores"]["unet s=1"]["composition_l1"]


@pytest.mark.slow
@needs_mnist
def test_the_gpu_setting_runs_end_to_end_at_its_real_network_sizes():
    """About 40 s on 2 cores: the UNet and predictor of the gpu setting and its budgets, on tiny counts."""
    gpu = smoke(SETTINGS["gpu"])
    assert gpu.nets == SETTINGS["gpu"].nets and gpu.time_limit_s == 360
    out = R.run(gpu, cache_dir=tempfile.mkdtemp())
    assert out["budgets"]["unet"]["denoiser"]["budgeted"]
    m = out["main"]["unet"]["null"]
    assert m["abduction_fraction"] in (0.75, 1.0) and len(out["sweeps"]["unet"]) == 2 * 4
    assert set(out["scores"]) == {"truth", "unchanged", f"unet f={m['abduction_fraction']:g} s={m['guidance_scale']:g}"}
