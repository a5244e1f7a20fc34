"""CPU defaults on evidence (issue 11, point 3): accuracy against cost of the tabular diffusion
node's abduction settings on the DCM protocol (BENCHMARKS.md section 2).

Per SCM and seed, two diffusion systems are fitted once each on the same rows, with the library's
former default sampler (K = 50 DDIM steps, 3 fixed-point refinements per inversion step) and the DCM networks: ``conditional`` (``eps(x_t, t, parents)``) and ``anticausal``
(unconditional ``eps`` + an MLP predictor's gradients, abduction guided: the former default). Every other
setting is the same fitted model queried through ``with_inference`` (:class:`InferenceVariant`):
fixed-point iterations 0, 1, 3, and for anticausal guided or unguided abduction. Reported: CF MSE
(x100) per intervention node, the ms per 100 counterfactuals, and the cheapest setting whose mean CF
MSE is within ``--tolerance`` of the best on every row (:func:`benchmarks.dcm.protocol.cheapest_within`).

Usage::

    python -m benchmarks.dcm.defaults                # chain-nonlinear x 2 seeds (about 10 minutes)
    python -m benchmarks.dcm.defaults --quick        # seconds: the CI setting
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script (python benchmarks/dcm/defaults.py): the checkout on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from causaldiff import DDIMConfig, DiffusionConfig, DiffusionMechanism, DivergenceError, MLPConfig, ScheduleConfig, TrainConfig  # noqa: E402
from causaldiff.datasets import get_tabular_scm  # noqa: E402
from causaldiff.evaluation import report  # noqa: E402

from benchmarks.dcm import protocol as dcm  # noqa: E402
from benchmarks.dcm.systems import CausaldiffSystem, InferenceVariant  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"


def mechanism(guidance: str, steps: int):
    """``make_mechanism`` of a system: the DCM schedule and MLP, the library's default sampler."""
    def make(node: str, is_root: bool, seed: int) -> DiffusionMechanism:
        return DiffusionMechanism(DiffusionConfig(
            schedule=ScheduleConfig(kind="linear", num_train_timesteps=100, beta_start=1e-4, beta_end=0.1),
            sampler=DDIMConfig(num_inference_steps=50, spacing="leading", inversion_fixed_point_iters=3),
            net=MLPConfig(hidden=128, num_layers=3), guidance=guidance, guide_abduction=guidance == "anticausal",
            train=TrainConfig(steps=steps, batch_size=256, lr=1e-3, ema_decay=0.999, seed=seed),
            predictor_train=TrainConfig(steps=steps, batch_size=256, lr=1e-3, seed=seed + 1)))
    return make


#: (fixed-point iterations, guided abduction) of the variants; the first of each is the default
SETTINGS = {"conditional": [(3, None), (0, None), (1, None)],
            "anticausal": [(3, True), (0, True), (0, False), (3, False)]}
DIVERGED: dict[str, int] = {}


class Guarded:
    """A system whose counterfactuals that diverge (:class:`~causaldiff.DivergenceError`) count as
    NaN rows, so its CF MSE is NaN, and are counted in :data:`DIVERGED` (never silently dropped)."""

    def __init__(self, system: CausaldiffSystem) -> None:
        self.system, self.name = system, system.name

    def fit(self, train: Any, seed: int) -> None:
        self.system.fit(train, seed)

    def interventional(self, n: int, do: Any, seed: int) -> Any:
        return self.system.interventional(n, do, seed)

    def counterfactual(self, factual: Any, do: Any) -> Any:
        try:
            return self.system.counterfactual(factual, do)
        except DivergenceError:
            DIVERGED[self.name] = DIVERGED.get(self.name, 0) + 1
            return {k: torch.full(v.shape, float("nan")) for k, v in factual.items()}


def variants(graph: Any, steps: int) -> list[Guarded]:
    """Per guidance, the fitted system with the defaults, then its variants (same weights)."""
    out: list[Guarded] = []
    for guidance, settings in SETTINGS.items():
        base = None
        for fp, guided in settings:
            name = f"{guidance} fp={fp}" + ("" if guided is None else " guided" if guided else " unguided")
            if base is None:
                base = CausaldiffSystem(name, graph, mechanism(guidance, steps))
                out.append(Guarded(base))
                continue
            extra = {} if guided is None else {"guide_abduction": guided}
            out.append(Guarded(InferenceVariant(name, base, sampler={"inversion_fixed_point_iters": fp}, **extra)))
    return out


def choose(scores: dict[str, Any], tolerance: float) -> str:
    """:func:`~benchmarks.dcm.protocol.cheapest_within`, or why nothing qualifies."""
    try:
        return dcm.cheapest_within(scores, tolerance)
    except ValueError as e:
        return f"none ({e})"


def to_markdown(res: dict[str, Any]) -> str:
    env, lines = res["env"], []
    names = res["systems"]
    lines += ["# Tabular diffusion: abduction settings, accuracy against cost (DCM protocol)", "",
              f"Command: `{res['command']}`", "",
              f"Date {env['date']}; device {env['device_name']}; commit {env['git_commit']}; torch {env['torch']}; "
              f"{env['threads']} torch thread(s); wall time {res['wall_s']:.0f} s.", "",
              "Settings: " + ", ".join(f"{k}={v}" for k, v in res["settings"].items()), ""]
    lines += ["CF MSE x100 (mean ± std over seeds) per intervention node; MMD and the noise floor are in the JSON.", "",
              report.markdown_table(["SCM", "do"] + names, [[r["scm"], r["node"]] + [
                  f"{r['systems'][s]['cf_mse']['mean']:.3f} ± {r['systems'][s]['cf_mse']['std']:.3f}" for s in names]
                  for r in res["rows"]]), "", "## Timings", "", dcm.timings_table(res["timings"], names)]
    lines += ["", "## Accuracy against cost", "",
              report.markdown_table(["system", "mean CF MSE x100 (all rows)", "CF ms / 100 (median)"],
                                    [[k, f"{v['cf_mse']:.3f}", f"{v['cf_ms']:.1f}"] for k, v in res["overall"].items()]),
              "", f"Chosen (cheapest within {res['settings']['tolerance']:.0%} of the best CF MSE on every row, per "
              f"guidance): {res['chosen']}", "",
              f"Queries whose counterfactual diverged (DivergenceError, scored NaN): {res['diverged_queries'] or 'none'}", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CI setting: 1 seed, 1 SCM, tiny training")
    p.add_argument("--scms", default="chain-nonlinear")
    p.add_argument("--seeds", type=int, default=2, help="seeds 0 .. N-1")
    p.add_argument("--steps", type=int, default=2000, help="optimiser steps of each network")
    p.add_argument("--values", type=int, default=5, help="intervention values per node")
    p.add_argument("--rows", type=int, default=50, help="factual rows and interventional samples per value")
    p.add_argument("--tolerance", type=float, default=0.10, help="relative CF MSE slack on every row")
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    scms, seeds = a.scms.split(","), list(range(1 if a.quick else a.seeds))
    steps, settings = (30 if a.quick else a.steps), (
        dcm.DCMSettings(rows=200, values=1, n_cf=8, n_int=8, quantile_draws=200) if a.quick else
        dcm.DCMSettings(values=a.values, n_cf=a.rows, n_int=a.rows))
    scms = scms[:1] if a.quick else scms
    res: dict[str, Any] = {"command": shlex.join(["python", "-m", "benchmarks.dcm.defaults", *argv]),
                           "settings": {"quick": a.quick, "scms": scms, "seeds": seeds, "steps": steps,
                                        "tolerance": a.tolerance, **settings.model_dump()},
                           "env": report.environment("cpu"), "rows": [], "timings": {}}
    t0 = time.perf_counter()
    for name in scms:
        out = dcm.run_dcm(lambda seed, n=name: get_tabular_scm(n, seed=seed), seeds,
                          lambda truth: variants(dcm.truth_graph(truth), steps), settings, label=name)
        res["rows"] += [{"scm": name, **r} for r in out["rows"]]
        res["timings"][name] = out["timings"]
    res["wall_s"], res["diverged_queries"] = time.perf_counter() - t0, dict(DIVERGED)
    res["systems"] = list(res["timings"][scms[0]])
    res["overall"] = dcm.overall(res["rows"], res["timings"])
    res["chosen"] = {g: choose({k: v for k, v in res["overall"].items() if k.startswith(g)}, a.tolerance)
                     for g in SETTINGS}
    stem = "tabular_defaults_quick" if a.quick else "tabular_defaults"
    report.write_results(a.out, stem, res, md := to_markdown(res))
    print(md)
    return res


if __name__ == "__main__":
    main()
