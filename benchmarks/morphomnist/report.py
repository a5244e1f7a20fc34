"""The Morpho-MNIST results table beside the published VAE / HVAE / GAN rows (Melistas et al. 2024)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from causaldiff.evaluation.plotting import pyplot, save_figure
from causaldiff.evaluation.report import markdown_table

HEADER = ["system", "composition L1, 1 cycle", "10 cycles", "thickness MAE do(t) / do(i) / do(y)",
          "intensity MAE do(t) / do(i) / do(y)", "digit acc do(t) / do(i) / do(y)",
          "measured thickness MAE do(t) / do(i)", "CLD (0.8/0.2)", "true-cf MSE do(t) / do(i) (unchanged)"]
#: Melistas et al. 2024, mean (std); FID and CLD as published
PAPER = [
    ["VAE (paper)", "2.600 (1.454)", "7.698 (4.199)", "0.109 / 0.333 / 0.139", "3.15 / 5.33 / 4.64",
     "0.989 / 0.988 / 0.775", "-", "0.268", "-"],
    ["HVAE (paper)", "0.438 (0.178)", "1.550 (0.541)", "0.086 / 0.224 / 0.117", "1.99 / 3.52 / 2.10",
     "0.985 / 0.935 / 0.972", "-", "0.272", "-"],
    ["GAN (paper)", "3.807 (1.822)", "11.697 (5.750)", "0.228 / 0.680 / 0.393", "9.43 / 15.14 / 12.39",
     "0.961 / 0.966 / 0.451", "-", "0.286", "-"],
]
NODES = ("thickness", "intensity", "digit")
#: the effectiveness metrics, per predictor, and their formats
METRICS = (("thickness_mae", ".3f"), ("intensity_mae", ".2f"), ("digit_acc", ".3f"))


def _effect(r: Mapping[str, Any], node: str, key: str, bn: str) -> float | None:
    e = r.get(node, {}).get("effectiveness", {}).get(bn, {})
    return e.get(key)


def _three(values: list[float | None], fmt: str) -> str:
    return " / ".join("-" if v is None else format(v, fmt) for v in values)


def row(name: str, scores: Mapping[str, Any], bn: str = "batch") -> list[str]:
    """One table row of :meth:`benchmarks.morphomnist.protocol.Protocol.score`'s output, its
    effectiveness in BatchNorm mode ``bn``."""
    c, r = scores["composition_l1"], scores["interventions"]
    comp = [f"{c[k]['mean']:.3f} ({c[k]['std']:.3f})" if k in c else "-" for k in ("1", "10")]
    cld = [r[n]["cld"]["mean"] for n in NODES if n in r and "cld" in r[n]]
    true = " / ".join(f"{r[n]['true_counterfactual']['mse']:.4f} ({r[n]['true_counterfactual']['unchanged_mse']:.4f})"
                      for n in ("thickness", "intensity") if n in r)
    effect = [_three([_effect(r, n, key, bn) for n in NODES], fmt) for key, fmt in METRICS]
    measured = _three([r[n]["measured"]["thickness_mae"] if n in r and "measured" in r[n] else None
                       for n in ("thickness", "intensity")], ".3f")
    return [name, *comp, *effect, measured, f"{sum(cld) / len(cld):.3f}" if cld else "-", true or "-"]


def floor_row(floors: Mapping[str, Mapping[str, float]], bn: str = "batch") -> list[str]:
    """The released predictors on the real test images (each column's floor)."""
    f = floors[bn]
    return ["real test images (predictors' floor)", "-", "-",
            *(format(f[key], fmt) for key, fmt in METRICS), "-", "-", "-"]


def summary(results: Mapping[str, Any], bn: str = "batch") -> dict[str, Any]:
    """The issue's ``summary`` block: ``{"n_test", "predictors": "released", "bn_mode", "rows":
    {system: {"composition_l1": [c1, c10], "thickness_mae": [t, i, y], "intensity_mae": [t, i, y],
    "digit_acc": [t, i, y]}}}`` (columns do(thickness), do(intensity), do(digit); None where a
    system has no such column)."""
    rows = {}
    for name, s in results["scores"].items():
        c, r = s.get("composition_l1", {}), s["interventions"]
        rows[name] = {"composition_l1": [c[k]["mean"] if k in c else None for k in ("1", "10")],
                      **{key: [_effect(r, n, key, bn) for n in NODES] for key, _ in METRICS}}
    return {"n_test": results["settings"]["n_test"], "predictors": "released", "bn_mode": bn, "rows": rows}


def _run_facts(results: Mapping[str, Any]) -> list[str]:
    """Bullets: rows scored, the main scale and its rule, the training steps, the time limit."""
    st, out = results.get("settings", {}), []
    if st.get("n_sweep") or st.get("n_detail"):
        swept = (f"{st['n_sweep']} validation rows of the training split" if st.get("n_sweep")
                 else f"the {st['n_test']} test rows")
        out.append(f"- rows: {st['n_test']} scored; composition, reversibility and the measured MAEs on the first "
                   f"{st.get('n_detail') or st['n_test']}; scales {st['scales']} swept on {swept}")
    if st.get("n_sweep") and results.get("main"):
        main = "; ".join(f"{net} " + ", ".join(f"{'' if node == 'null' else f'do({node}) '}abduction fraction "
                                               f"{p['abduction_fraction']:g}, s = {p['guidance_scale']:g}"
                                               for node, p in m.items()) for net, m in results["main"].items())
        rule = ("each intervention's pair the best on its own effectiveness column, the null intervention's on the "
                "1-cycle composition" if st.get("per_intervention") else "the best mean rank over thickness MAE "
                "do(t), intensity MAE do(i), digit accuracy do(digit) and the 1-cycle composition")
        out.append(f"- main: {main} ({rule} on the validation rows; "
                   f"fractions {list(st.get('fractions') or [])}; s: the anchor scale w of a conditional "
                   f"row, the guidance scale of an anti-causal one)")
    if st.get("ddim_steps"):
        out.append(f"- sampler: K = {st['ddim_steps']} DDIM steps ({st.get('spacing', 'leading')} table), "
                   f"{st.get('refinements', 0)} {st.get('inversion_solver', 'picard')} refinements per inversion step")
    for net, b in (results.get("budgets") or {}).items():
        if "loaded" in b:
            out.append(f"- {net}: the saved SCM {b['loaded']} re-scored (no training)")
        elif b.get("denoiser", {}).get("budgeted"):
            predictor = (f", anti-causal predictor {b['predictor']['steps']} steps"
                         if b.get("predictor", {}).get("budgeted") else "")
            out.append(f"- {net}: denoiser {b['denoiser']['steps']} steps{predictor} (fitted into the "
                       "budgets by timed probes)")
        elif st.get("denoiser_train"):
            t = st["denoiser_train"]
            out.append(f"- {net}: denoiser trained {t['steps']} steps of {t['batch_size']} rows")
    if st.get("time_limit_s"):
        verdict = "within it" if results.get("within_time_limit") else "**over it**"
        out.append(f"- time: {results.get('total_s', 0):.0f} s of wall clock (imports to results), limit {st['time_limit_s']:g} s: {verdict}")
    return [*out, ""] if out else []


def markdown(results: Mapping[str, Any]) -> str:
    """The results page: stamp, table (ours beside the paper's), figures."""
    env = results["environment"]
    tables = []
    for bn, title in (("batch", "the benchmark's train-mode BatchNorm, batches of 256"),
                      ("eval", "eval-mode BatchNorm")):
        rows = [row(name, s, bn) for name, s in results["scores"].items()]
        floors = [floor_row(results["floors"], bn)] if results.get("floors") else []
        tables += [f"Effectiveness by the released predictors in {title}:", "",
                   markdown_table(HEADER, rows + floors + (PAPER if bn == "batch" else [])), ""]
    lines = [f"# Morpho-MNIST counterfactuals ({results['setting']})", "",
             f"{env['date']} on {env['device']}; `{results['command']}`; {sum(results['seconds'].values()):.0f} s",
             "", results.get("note", ""), "", *_run_facts(results), *tables,
             "Composition and L1 on the padded 32x32 image, 0-255 scale; MAE in unscaled units against "
             "the true counterfactual parents (intensity after do(t) through the true mechanism: stricter "
             "than the benchmark's, which uses its model's learned flow); true-cf MSE on [-1, 1] "
             "pixels against the exact counterfactual (the unchanged image's in brackets).", ""]
    for name in ("grid", "plot"):
        if results.get(name):
            lines += [f"![{name}]({results[name]})", ""]
    return "\n".join(lines)


def plot_effectiveness(sweeps: Mapping[str, Mapping[float, Mapping[str, float]]], path: str | os.PathLike,
                       keys: tuple[str, ...] = ("thickness MAE do(t)", "intensity MAE do(i)", "digit acc do(digit)"),
                       title: str = "validation figures against the scale") -> Path:
    """One panel per metric, one line per denoiser (``{net: {scale: {metric: value}}}``), saved atomically."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for net, per_scale in sweeps.items():
            xs = sorted(per_scale)
            ax.plot(xs, [per_scale[x][key] for x in xs], "o-", label=net)
        ax.set_xlabel("scale s (anchor w; anti-causal: guidance)")
        ax.set_title(key, fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


__all__ = ["HEADER", "PAPER", "row", "floor_row", "summary", "markdown", "plot_effectiveness"]
