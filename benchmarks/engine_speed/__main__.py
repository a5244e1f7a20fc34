"""Engine speed: an exact-mechanism counterfactual answered three ways in one run.

A 10-node chain ``x1 -> ... -> x10`` of Pyro Normal location mechanisms with nonlinear means
(float64): ``x1 ~ N(0, 1)``, ``x_{i+1} ~ N(tanh(a_i x_i) + b_i sin(x_i), s_i^2)``, parameters drawn
from ``--seed``. The counterfactual ``do(x1 = v)`` of ``n`` factual rows by

* (a) ``causaldiff.SCM(...).counterfactual(rows, do={"x1": v})``;
* (b) the same math written by hand in vectorised torch: abduct ``u_i = (x_i - m_i(x_{i-1})) / s_i``
  for the descendants, then push forward from the new ``x1``;
* (c) DoWhy gcm's ``counterfactual_samples`` on the same rows with the same TRUE mechanisms
  (:func:`dowhy_chain`); optional, skipped when DoWhy is not installed.

(a) == (b) to 1e-12 is checked at every size before timing. Torch's argument validation of
distributions is off for the run (``--validate`` keeps it on): the caller's choice, which the
engine leaves as set; the hand-written loop (b) validates nothing either. One torch thread; after one warm-up call
each, repeats interleaved (a, b, a, b, ...) for (a)/(b), then (a, c, a, c, ...) for (c)/(a); medians of
wall clock and thread CPU time into ``results/engine_speed.{json,md}``; ``--quick``: the CI setting.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import pyro.distributions as dist
import torch
from torch import Tensor

if __package__ in (None, ""):  # run as a script (python benchmarks/engine_speed): the checkout on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import causaldiff as cd  # noqa: E402
from causaldiff.evaluation import report  # noqa: E402
from causaldiff.testing import named_callable  # noqa: E402

from benchmarks.dcm import systems  # noqa: E402

NODES = tuple(f"x{i}" for i in range(1, 11))
SIZES = (1, 10, 100, 1_000, 10_000, 100_000)
TARGETS = {1: 3.0, 100_000: 1.5}  # issue 9: (a)/(b) at most


def chain_parameters(seed: int) -> dict[str, list[float]]:
    """``a_i ~ U(0.5, 2)``, ``b_i ~ U(-1, 1)``, ``s_i ~ U(0.3, 1)`` for the nine non-root nodes."""
    u = torch.rand(3, len(NODES) - 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return {"a": (0.5 + 1.5 * u[0]).tolist(), "b": (2 * u[1] - 1).tolist(), "s": (0.3 + 0.7 * u[2]).tolist()}


def mean(p: dict[str, list[float]], i: int, x: Tensor) -> Tensor:
    """``m_i(x) = tanh(a_i x) + b_i sin(x)``, the mean of node ``i + 2`` given its parent ``x``."""
    return torch.tanh(p["a"][i] * x) + p["b"][i] * torch.sin(x)


def build_scm(p: dict[str, list[float]]) -> cd.SCM:
    """(a): the chain as a causaldiff SCM of Pyro Normal mechanisms."""
    mechs: dict[str, Any] = {"x1": dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0)}
    for i, (parent, node) in enumerate(zip(NODES, NODES[1:])):
        mechs[node] = named_callable(lambda pa, i=i, parent=parent: dist.Normal(mean(p, i, pa[parent]), p["s"][i]),
                                     [parent])
    return cd.SCM(nx.DiGraph(list(zip(NODES, NODES[1:]))), mechanisms=mechs)


def by_hand(p: dict[str, list[float]], rows: dict[str, Tensor], v: Tensor) -> dict[str, Tensor]:
    """(b): abduction ``u_i = (x_i - m(x_{i-1})) / s_i`` then prediction ``m(x'_{i-1}) + s_i u_i``."""
    out = {"x1": v.expand_as(rows["x1"])}
    for i, (parent, node) in enumerate(zip(NODES, NODES[1:])):
        u = (rows[node] - mean(p, i, rows[parent])) / p["s"][i]
        out[node] = mean(p, i, out[parent]) + p["s"][i] * u
    return out


def dowhy_chain(p: dict[str, list[float]], rows: dict[str, Tensor]) -> Callable[..., Callable[[], Any]]:
    """(c): DoWhy's invertible SCM with the TRUE mechanisms (``AdditiveNoiseModel``: the true mean, noise
    ``ScipyDistribution(norm, loc=0, scale=s_i)``, fixed), ``gcm.fit`` on ``rows`` (nothing is estimated).
    Returns ``prepare(factual, v)``: the query on a DataFrame made beforehand (DoWhy's native input)."""
    import numpy as np
    import pandas as pd
    from dowhy import gcm
    from scipy import stats

    class TrueMean(gcm.ml.PredictionModel):
        def __init__(self, i: int) -> None:
            self.i = i

        def fit(self, X, Y) -> None:  # noqa: N803 (DoWhy's names): the true mean, nothing to fit
            pass

        def predict(self, X):  # noqa: N803
            x = X[:, 0]
            return (np.tanh(p["a"][self.i] * x) + p["b"][self.i] * np.sin(x)).reshape(-1, 1)

        def clone(self):
            return TrueMean(self.i)

    gcm.config.disable_progress_bars()
    model = gcm.InvertibleStructuralCausalModel(nx.DiGraph(list(zip(NODES, NODES[1:]))))
    model.set_causal_mechanism("x1", gcm.ScipyDistribution(stats.norm, loc=0.0, scale=1.0))
    for i, node in enumerate(NODES[1:]):
        model.set_causal_mechanism(node, gcm.AdditiveNoiseModel(
            TrueMean(i), gcm.ScipyDistribution(stats.norm, loc=0.0, scale=p["s"][i])))
    frame = lambda rows: pd.DataFrame({v: rows[v].numpy() for v in NODES})  # noqa: E731
    gcm.fit(model, frame(rows))

    def prepare(factual: dict[str, Tensor], v: float) -> Callable[[], Any]:
        observed = frame(factual)
        return lambda: gcm.counterfactual_samples(model, {"x1": lambda x: v}, observed_data=observed)

    return prepare


def interleaved_times(ways: Mapping[str, Callable[[], Any]],
                      repeats: int) -> tuple[dict[str, list[float]], ...]:
    """``repeats`` rounds calling each of ``ways`` in turn (so a slow spell of a shared machine hits
    every way alike): per way, the wall-clock and this thread's CPU seconds of each call."""
    wall: dict[str, list[float]] = {k: [] for k in ways}
    cpu: dict[str, list[float]] = {k: [] for k in ways}
    for _ in range(repeats):
        for k, fn in ways.items():
            t0, c0 = time.perf_counter(), time.thread_time()
            fn()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.thread_time() - c0)
    return wall, cpu


def measure(n: int, repeats: int, p: dict[str, list[float]], scm: cd.SCM, dowhy: Callable | None,
            v: float, seed: int) -> dict[str, Any]:
    """One size: the (a) == (b) check, then interleaved timed repeats and their medians."""
    rows = dict(scm.sample(n, seed=seed + n))
    value = torch.tensor(v, dtype=torch.float64)  # a tensor: the SCM reads a Python float as float32
    ways: dict[str, Callable[[], Any]] = {"a": lambda: scm.counterfactual(rows, do={"x1": value}),
                                          "b": lambda: by_hand(p, rows, value)}
    if dowhy is not None:
        ways["c"] = dowhy(rows, v)
    first = {k: fn() for k, fn in ways.items()}  # also the warm-up
    diff_ab = max(float((first["a"][k] - first["b"][k]).abs().max()) for k in NODES)
    if not diff_ab <= 1e-12:  # the two must answer the same question before they are timed
        raise SystemExit(f"n={n}: (a) and (b) differ by {diff_ab:.3g} > 1e-12")
    out: dict[str, Any] = {"n": n, "repeats": repeats, "max_abs_diff_a_b": diff_ab}
    if "c" in first:
        out["max_abs_diff_c_b"] = max(float((torch.tensor(first["c"][k].to_numpy()) - first["b"][k]).abs().max())
                                      for k in NODES)
    wall, cpu = interleaved_times({k: ways[k] for k in "ab"}, repeats)
    if "c" in ways:  # a pass of its own: DoWhy's pandas work would evict (a)'s and (b)'s caches
        for times, times_c in zip((wall, cpu), interleaved_times({k: ways[k] for k in "ac"}, repeats)):
            times["a_with_c"], times["c"] = times_c["a"], times_c["c"]
    return {**out, "wall": _medians(wall), "cpu": _medians(cpu)}


def _medians(times: dict[str, list[float]]) -> dict[str, Any]:
    med = {k: statistics.median(t) for k, t in times.items()}
    return {"median_s": med, "ratio_a_b": med["a"] / med["b"],
            **({"ratio_c_a": med["c"] / med["a_with_c"]} if "c" in med else {})}


def to_markdown(res: dict[str, Any]) -> str:
    env, dowhy = res["env"], res["dowhy"] or "not installed"
    rows = [[f"{r['n']:g}", r["repeats"]] + [f"{1e3 * r['wall']['median_s'][k]:.3f}" if k in r["wall"]["median_s"]
                                            else "—" for k in "abc"]
            + [f"{r[c][q]:.2f}" if q in r[c] else "—" for c in ("wall", "cpu") for q in ("ratio_a_b", "ratio_c_a")]
            + [f"{r['max_abs_diff_a_b']:.1e}"] for r in res["sizes"]]
    table = report.markdown_table(["n", "repeats", "(a) causaldiff ms", "(b) by hand ms", "(c) DoWhy ms", "(a)/(b)",
                                   "(c)/(a)", "CPU (a)/(b)", "CPU (c)/(a)", "max abs (a)-(b)"], rows)
    return "\n".join([
        f"# Engine speed: exact counterfactual on a 10-node chain{' (quick)' if res['settings']['quick'] else ''}",
        "", f"Command: `{res['command']}`", "",
        f"Date {env['date']}; device {env['device_name']}; commit {env['git_commit']}; torch {env['torch']}; "
        f"DoWhy {dowhy}; {env['threads']} torch thread(s); load average after the run (1, 5, 15 min) "
        f"{', '.join(f'{x:.2f}' for x in res['load_average_1_5_15_min'])}.", "",
        "(a) `cd.SCM.counterfactual`, (b) the same math by hand in torch, (c) DoWhy gcm with the true mechanisms."
        " Medians of interleaved repeats, (a) with (b) for (a)/(b), then (a) with (c) in a pass of its own for "
        "(c)/(a): wall clock, and this thread's CPU time (`CPU`: immune to preemption). "
        "Targets of issue 9: (a)/(b) at most " + ", ".join(f"{t}x at n = {n:g}" for n, t in TARGETS.items()), "",
        "Settings: " + ", ".join(f"{k}={v}" for k, v in res["settings"].items()), "", table, ""])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI setting: n = 1, 10, 100, 3 repeats, 500 fit rows")
    ap.add_argument("--seed", type=int, default=0, help="chain parameters and factual rows")
    ap.add_argument("--value", type=float, default=0.5, help="v in do(x1 = v)")
    ap.add_argument("--repeats", type=int, default=None, help="per size (default 101 to n = 1e3, then 21, 9)")
    ap.add_argument("--fit-rows", type=int, default=None, help="rows DoWhy's gcm.fit sees (5000)")
    ap.add_argument("--no-dowhy", action="store_true", help="skip (c)")
    ap.add_argument("--validate", action="store_true", help="keep torch's distribution argument validation on")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.distributions.Distribution.set_default_validate_args(a.validate)
    sizes, p = (1, 10, 100) if a.quick else SIZES, chain_parameters(a.seed)
    scm, use_dowhy = build_scm(p), not a.no_dowhy and systems.dowhy_version() is not None
    fit_rows = a.fit_rows or (500 if a.quick else 5000)
    dowhy = dowhy_chain(p, dict(scm.sample(fit_rows, seed=a.seed))) if use_dowhy else None
    res: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "benchmarks.engine_speed", *argv]),
        "env": report.environment("cpu"), "dowhy": systems.dowhy_version() if use_dowhy else None,
        "settings": {"quick": a.quick, "seed": a.seed, "value": a.value, "fit_rows": fit_rows,
                     "dtype": "float64", "threads": 1, "validate_args": a.validate}, "chain_parameters": p,
        "sizes": [],
        "targets_a_over_b": {str(n): t for n, t in TARGETS.items()}}
    for n in sizes:
        repeats = a.repeats or (3 if a.quick else 101 if n <= 1_000 else 21 if n <= 10_000 else 9)
        res["sizes"].append(measure(n, repeats, p, scm, dowhy, a.value, a.seed))
    res["load_average_1_5_15_min"] = os.getloadavg()  # the machine may be shared: how busy it was
    report.write_results(a.out, "engine_speed_quick" if a.quick else "engine_speed", res, md := to_markdown(res))
    print(md)
    return res


if __name__ == "__main__":
    main()
