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


def _three(r: Mapping[str, Any], group: str, key: str, fmt: str, nodes: tuple[str, ...] = NODES) -> str:
    return " / ".join(format(r[n][group][key], fmt) if n in r and key in r[n][group] else "-" for n in nodes)


def row(name: str, scores: Mapping[str, Any]) -> list[str]:
    """One table row of :func:`benchmarks.morphomnist.protocol.score_counterfactuals`' output."""
    c, r = scores["composition_l1"], scores["interventions"]
    comp = [f"{c[k]['mean']:.3f} ({c[k]['std']:.3f})" if k in c else "-" for k in ("1", "10")]
    cld = [r[n]["cld"]["mean"] for n in NODES if n in r and "cld" in r[n]]
    true = " / ".join(f"{r[n]['true_counterfactual']['mse']:.4f} ({r[n]['true_counterfactual']['unchanged_mse']:.4f})"
                      for n in ("thickness", "intensity") if n in r)
    return [name, *comp, _three(r, "effectiveness", "thickness_mae", ".3f"),
            _three(r, "effectiveness", "intensity_mae", ".2f"), _three(r, "effectiveness", "digit_acc", ".3f"),
            _three(r, "measured", "thickness_mae", ".3f", ("thickness", "intensity")),
            f"{sum(cld) / len(cld):.3f}" if cld else "-", true or "-"]


def _run_facts(results: Mapping[str, Any]) -> list[str]:
    """Bullets: rows scored, the main scale and its rule, the training steps, the time limit."""
    st, out = results.get("settings", {}), []
    if st.get("n_sweep") or st.get("n_detail"):
        out.append(f"- rows: {st['n_test']} scored; composition, reversibility and the measured MAEs on the first "
                   f"{st.get('n_detail') or st['n_test']}; scales {st['scales']} swept on {st.get('n_sweep') or st['n_test']}")
    if st.get("n_sweep") and results.get("main"):
        main = ", ".join(f"{net} abduction fraction {m['abduction_fraction']:g}, s = {m['guidance_scale']:g}"
                         for net, m in results["main"].items())
        out.append(f"- main: {main} (the best mean rank over thickness MAE do(t), intensity MAE do(i), "
                   f"digit accuracy do(digit) on the swept rows; fractions {list(st.get('fractions') or [])})")
    for net, b in (results.get("budgets") or {}).items():
        if b.get("denoiser", {}).get("budgeted"):
            out.append(f"- {net}: denoiser {b['denoiser']['steps']} steps, anti-causal predictor "
                       f"{b['predictor']['steps']} steps (fitted into their budgets by timed probes)")
    if st.get("time_limit_s"):
        verdict = "within it" if results.get("within_time_limit") else "**over it**"
        out.append(f"- time: {results.get('total_s', 0):.0f} s of wall clock (imports to results), limit {st['time_limit_s']:g} s: {verdict}")
    return [*out, ""] if out else []


def markdown(results: Mapping[str, Any]) -> str:
    """The results page: stamp, table (ours beside the paper's), figures."""
    env = results["environment"]
    rows = [row(name, s) for name, s in results["scores"].items()] + PAPER
    lines = [f"# Morpho-MNIST counterfactuals ({results['setting']})", "",
             f"{env['date']} on {env['device']}; `{results['command']}`; {sum(results['seconds'].values()):.0f} s",
             "", results.get("note", ""), "", *_run_facts(results), markdown_table(HEADER, rows), "",
             "Composition and L1 on the 0-255 scale; MAE in unscaled units; true-cf MSE on [-1, 1] "
             "pixels against the exact counterfactual (the unchanged image's in brackets).", ""]
    for name in ("grid", "plot"):
        if results.get(name):
            lines += [f"![{name}]({results[name]})", ""]
    return "\n".join(lines)


def plot_effectiveness(sweeps: Mapping[str, Mapping[float, Mapping[str, float]]], path: str | os.PathLike,
                       keys: tuple[str, ...] = ("thickness MAE do(t)", "intensity MAE do(i)", "digit acc do(digit)"),
                       title: str = "effectiveness against guidance scale") -> Path:
    """One panel per metric, one line per denoiser (``{net: {scale: {metric: value}}}``), saved atomically."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for net, per_scale in sweeps.items():
            xs = sorted(per_scale)
            ax.plot(xs, [per_scale[x][key] for x in xs], "o-", label=net)
        ax.set_xlabel("guidance scale s")
        ax.set_title(key, fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


__all__ = ["HEADER", "PAPER", "row", "markdown", "plot_effectiveness"]
