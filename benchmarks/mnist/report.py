"""The Diff-SCM MNIST benchmark's report: its markdown and its sweep figure."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from causaldiff import metrics as M
from benchmarks.common.choose import EFFECTIVE
from benchmarks.mnist.settings import PAPER
from causaldiff.evaluation.plotting import plot_sweep


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, dict):
        return f"{v['mean']:.{digits}f} ± {v['sem']:.{digits}f}"
    return f"{v:.{digits}f}"


def _setup(r: Mapping[str, Any]) -> list[str]:
    """The title and how the figures were made (device, networks, training, protocol)."""
    m, env, st, tr, mo = r["main"], r["env"], r["settings"], r["training"], r["model"]
    K = mo["sampler"]["num_inference_steps"]
    return [f"# Diff-SCM on MNIST: `{r['setting']}` setting", "",
             f"**{r['label']}**", "",
             f"- date: {r['date']}; device: **{env['device_name']}**; torch {env['torch']}; "
             f"causaldiff {env['causaldiff']} (commit {env.get('git_commit')})",
             f"- command: `{r['command']}`",
             f"- denoiser: UNet {mo['net']['base_channels']} channels x {tuple(mo['net']['channel_mult'])}, "
             f"{mo['net']['num_res_blocks']} res block(s), mid attention {mo['net']['mid_attention']} "
             f"({tr['denoiser_params'] / 1e6:.2f}M parameters); "
             f"{mo['train']['steps']} steps of batch {mo['train']['batch_size']}, "
             f"AdamW lr {mo['train']['lr']:g} wd {mo['train']['weight_decay']:g}, EMA "
             f"{mo['train']['ema_decay']:g}, bf16 autocast on CUDA; {mo['schedule']['kind']} schedule T = "
             f"{mo['schedule']['num_train_timesteps']}"
             + (f" (budget {tr['denoiser']['budget_s']:g} s at {tr['denoiser']['probe_seconds_per_step'] * 1000:.1f}"
                f" ms/step)" if tr["denoiser"]["budgeted"] else ""),
             f"- noisy classifier: time-conditioned encoder {mo['predictor']['base_channels']} channels x "
             f"{tuple(mo['predictor']['channel_mult'])} ({tr['predictor_params'] / 1e6:.2f}M parameters), "
             f"{mo['predictor_train']['steps']} steps of batch {mo['predictor_train']['batch_size']}, "
             f"lr {mo['predictor_train']['lr']:g}"
             + (f" (budget {tr['predictor']['budget_s']:g} s)" if tr["predictor"]["budgeted"] else "")
             + (f"; both loaded from `{tr['denoiser']['loaded_from']}`" if "loaded_from" in tr["denoiser"] else ""),
             f"- counterfactuals: unguided DDIM inversion over the first fraction of a K = {K}-step trajectory "
             f"({mo['sampler']['inversion_fixed_point_iters']} fixed-point refinements), classifier-guided DDIM "
             f"back (predicted x_0 clipped to ±{mo['sampler']['clip_sample']} in generation only); do(digit = k), k != factual, uniform; {st['n_test']} test images (composition on "
             f"{m['n_composition']}), CLD ranked against {st['n_reference']} test images",
             f"- effectiveness classifier (independent of the guidance one): test accuracy "
             f"{tr['effectiveness_classifier_test_accuracy']:.4f}"]


def _main_table(r: Mapping[str, Any]) -> list[str]:
    m, K = r["main"], r["model"]["sampler"]["num_inference_steps"]
    lines = ["", f"## Main results: abduction fraction {m['abduction_fraction']:g} ({m['abduction_steps']} of {K} "
             f"steps), s = {m['scale']:g}", "",
             ("Chosen by a rule fixed before any run: among the (fraction, scale) pairs of the sweeps whose "
              f"effectiveness reaches {EFFECTIVE}, the lowest CLD; else the most effective pair."
              if m["rule"] == "auto" else "Scale fixed by `--scale`, first abduction fraction."),
             "Mean ± standard error over images.", "",
             "| metric | causaldiff | Diff-SCM paper | better |", "|---|---|---|---|",
             f"| IM1 | {_fmt(m['IM1'])} | {PAPER['IM1']} | lower |",
             f"| IM2 | {_fmt(m['IM2'], 4)} | {PAPER['IM2']} | lower |",
             f"| CLD | {_fmt(m['CLD'])} | ~1.06 at s = 0.7-0.8 | lower |",
             f"| FID (counterfactuals vs factual test images) | {_fid(m.get('fid'))} | - | lower |",
             f"| effectiveness | {m['effectiveness']:.3f} | - | higher |",
             f"| minimality (L1) | {_fmt(m['minimality_l1'], 4)} | - | lower |",
             f"| reversibility (L1) | {_fmt(m['reversibility_l1'], 4)} | - | lower |"]
    for c in r["settings"]["cycles"]:
        lines.append(f"| composition, {c} cycle(s) (L1) | {_fmt(m[f'composition_l1_{c}'], 4)} | - | lower |")
    return lines


def _sweep_tables(r: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    paper_cld = {float(k): v for k, v in r["paper"]["CLD"].items()}
    for f, sweep in sorted(((float(k), v) for k, v in r["sweeps"].items())):
        lines += ["", f"## Guidance-scale sweep, abduction fraction {f:g}", "",
                  "| s | CLD | paper CLD | IM1 | IM2 | effectiveness | minimality (L1) |",
                  "|---|---|---|---|---|---|---|"]
        for s, row in sorted(((float(k), v) for k, v in sweep.items())):
            near = next((f"{v}" for k, v in paper_cld.items()
                         if abs(k - s) <= 0.05 or (k == 0.75 and 0.7 <= s <= 0.8)), "")
            lines.append(f"| {s:g} | {_fmt(row['CLD'])} | {near} | {_fmt(row['IM1'])} | {_fmt(row['IM2'], 4)} | "
                         f"{row['effectiveness']:.3f} | {_fmt(row['minimality_l1'], 4)} |")
    return lines


def _fid(value: float | None) -> str:
    return "n/a (set CAUSALDIFF_FID_WEIGHTS to local Inception weights)" if value is None else f"{value:.2f}"


def markdown(r: Mapping[str, Any]) -> str:
    """The results of one run as a markdown page (main table, sweeps, timings, figures)."""
    lines = _setup(r) + _main_table(r) + _sweep_tables(r)
    lines += ["", f"CLD of an unchanged image: {M.CLD_UNCHANGED:.3f}. Paper: IM1 0.94, IM2 0.04; CLD 1.31 at s = 0, "
              "minimum ~1.06 near s = 0.7-0.8, 1.11 at s = 2, 1.12 at s = 3.", "", "## Timings (s)", "",
              "| phase | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in r["timings_s"].items()]
    lines += ["", f"![grid]({r['files']['grid']})", "", f"![sweep]({r['files']['sweep']})", ""]
    return "\n".join(lines)


def plot_mnist_sweep(sweeps: Mapping[float, Mapping[float, Mapping[str, Any]]], path: Path, title: str) -> Path:
    """CLD, IM1, IM2 and effectiveness against the guidance scale, one line per abduction fraction
    (Diff-SCM's CLD figure, with its published CLD points and IM1/IM2 figures for comparison)."""
    px = sorted(PAPER["CLD"])
    references = {
        "CLD": [{"x": px, "y": [PAPER["CLD"][x] for x in px], "fmt": "s--", "color": "#c0504d", "ms": 4,
                 "label": "Diff-SCM paper"},
                {"y": M.CLD_UNCHANGED, "color": "grey", "lw": 0.8, "ls": ":", "label": "unchanged image"}],
        "IM1": [{"y": PAPER["IM1"], "color": "#c0504d", "lw": 1, "ls": "--", "label": "Diff-SCM paper"}],
        "IM2": [{"y": PAPER["IM2"], "color": "#c0504d", "lw": 1, "ls": "--", "label": "Diff-SCM paper"}],
        "effectiveness": [{"y": EFFECTIVE, "color": "grey", "lw": 0.8, "ls": ":"}],
    }
    return plot_sweep(sweeps, path, keys=("CLD", "IM1", "IM2", "effectiveness"), title=title,
                      references=references)


__all__ = ["markdown", "plot_mnist_sweep"]
