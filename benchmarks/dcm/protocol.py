"""The DCM counterfactual protocol (``BENCHMARKS.md`` section 2; Chao et al., TMLR 2024) as functions.

Per truth (a known SCM) and seed: fit every system on ``rows`` observational rows; for every
intervention node, take ``values`` hard values ``linspace(q_low, q_high)`` of the node's true
marginal (from ``quantile_draws`` draws); for each value

* counterfactual: ``n_cf`` fresh factual rows with their true noise; truth = the true SCM re-run
  with that noise under the intervention; score = MSE over every coordinate of every descendant;
* interventional: ``n_int`` model samples vs ``n_int`` true samples of the descendants; score =
  :func:`causaldiff.metrics.mmd2` (biased MMD^2, RBF kernel, gamma from the cross distances);
* noise floor: the MMD of two independent true samples of ``n_int`` rows;

scores averaged over the values, then mean ± population std over seeds, x100 (as DCM's code).

The truth object needs ``nodes`` (topological), ``parents(v)``, ``descendants(v)``,
``intervention_nodes``, ``sample_noise(n, generator)``, ``simulate(noise, do)`` and
``quantile_grid(node, num, n_draws=, generator=, low=, high=)``. Every random draw of the truth
comes from one ``torch.Generator`` seeded with the seed, in a fixed order, so a run is reproducible.
"""

from __future__ import annotations

import math

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from causaldiff.evaluation.report import Timer, markdown_table
from causaldiff.metrics.mmd import mmd2
from causaldiff.progress import progress

from benchmarks.dcm.systems import System

#: Scores are reported x100, as in DCM's tables.
SCALE = 100.0

#: DoWhy 0.14 measured with this protocol (``BENCHMARKS.md`` section 2, 10 seeds), x100:
#: (graph, node) -> kind -> (CF MSE mean, CF MSE std, MMD); see :func:`dowhy_anchor`.
DOWHY_ANCHOR: Mapping[tuple[str, str], Mapping[str, tuple[float, float, float]]] = {
    ("chain", "x1"): {"nonlinear": (2.65, 1.08, 1.55), "nonadditive": (117.82, 3.36, 2.13)},
    ("chain", "x2"): {"nonlinear": (2.79, 2.46, 1.96), "nonadditive": (16.37, 0.95, 10.76)},
    ("triangle", "x1"): {"nonlinear": (1.34, 0.09, 1.42), "nonadditive": (51.18, 7.12, 8.24)},
    ("triangle", "x2"): {"nonlinear": (19.07, 5.13, 4.65), "nonadditive": (79.27, 11.76, 2.20)},
    ("diamond", "x1"): {"nonlinear": (0.75, 0.05, 1.22), "nonadditive": (10.64, 0.88, 4.20)},
    ("diamond", "x2"): {"nonlinear": (1.48, 0.17, 1.40), "nonadditive": (6.52, 0.50, 3.58)},
    ("diamond", "x3"): {"nonlinear": (11.98, 3.42, 4.15), "nonadditive": (1.06, 0.05, 2.40)},
    ("Y", "x1"): {"nonlinear": (2.22, 0.11, 1.33), "nonadditive": (34.20, 2.03, 2.17)},
    ("Y", "x2"): {"nonlinear": (2.07, 0.07, 1.54), "nonadditive": (69.82, 2.51, 3.06)},
    ("Y", "x3"): {"nonlinear": (0.72, 0.09, 1.95), "nonadditive": (99.73, 4.94, 11.44)},
}

#: How to read :func:`markdown_body`'s tables.
TABLE_NOTE = ("All scores x100, mean ± std over seeds. CF = counterfactual MSE over all descendants; MMD = "
              "interventional biased MMD^2 (RBF, median heuristic). `floor` = the MMD of two independent "
              "true samples of the same size. `anchor` = DoWhy 0.14 as measured in BENCHMARKS.md section 2 "
              "(10 seeds).")


def dowhy_anchor(graph: str, kind: str, node: str) -> dict[str, float] | None:
    """DoWhy's published figures for ``do(node)`` on a DCM SCM, as a table's ``anchor``, or None."""
    got = DOWHY_ANCHOR.get((graph, node), {}).get(kind)
    return None if got is None else dict(zip(("cf_mse_mean", "cf_mse_std", "mmd"), got, strict=True))


class DCMSettings(BaseModel):
    """The protocol's sizes (defaults: the full protocol of ``BENCHMARKS.md`` section 2)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rows: int = Field(5000, ge=1, description="training rows per seed")
    values: int = Field(20, ge=1, description="intervention values per node")
    n_cf: int = Field(100, ge=1, description="factual rows per value")
    n_int: int = Field(100, ge=2, description="interventional samples per value")
    quantile_draws: int = Field(5000, ge=2, description="draws for the intervention grid")
    low: float = Field(0.1, ge=0.0, le=1.0, description="lower quantile of the grid")
    high: float = Field(0.9, ge=0.0, le=1.0, description="upper quantile of the grid")

    @classmethod
    def quick(cls) -> "DCMSettings":
        """The CI setting: 500 rows, 3 values, 1000 quantile draws."""
        return cls(rows=500, values=3, quantile_draws=1000)


def truth_graph(truth: Any) -> nx.DiGraph:
    """The truth's DAG from ``nodes`` and ``parents`` (nodes in the truth's topological order)."""
    g = nx.DiGraph()
    g.add_nodes_from(truth.nodes)
    g.add_edges_from((p, v) for v in truth.nodes for p in truth.parents(v))
    return g


def stack_nodes(values: Mapping[str, Tensor], nodes: Sequence[str]) -> Tensor:
    """The columns of ``nodes`` side by side on the CPU, float64, shape ``(n, total_dim)``."""
    n = values[nodes[0]].shape[0]
    return torch.cat([values[v].detach().to("cpu", torch.float64).reshape(n, -1) for v in nodes], 1)


def counterfactual_mse(pred: Tensor, truth: Tensor) -> float:
    """Mean squared error over every row and coordinate of stacked descendants (:func:`stack_nodes`)."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != truth shape {tuple(truth.shape)}")
    return float((pred - truth).pow(2).mean())


@dataclass(frozen=True)
class Query:
    """One intervention value of one node with its ground truth (descendants stacked)."""

    node: str
    index: int
    value: Tensor
    factual: dict[str, Tensor]
    cf_truth: Tensor
    int_truth: Tensor
    floor: float


def queries(truth: Any, node: str, settings: DCMSettings, generator: torch.Generator) -> Iterator[Query]:
    """The grid of ``node`` then, per value, factual rows, their true counterfactual, a true
    interventional sample and a second one for the noise floor, all drawn from ``generator``."""
    desc = truth.descendants(node)
    grid = truth.quantile_grid(node, settings.values, n_draws=settings.quantile_draws,
                               generator=generator, low=settings.low, high=settings.high)
    for k in range(settings.values):
        do = {node: grid[k]}
        noise = truth.sample_noise(settings.n_cf, generator)
        factual = truth.simulate(noise)
        cf_truth = stack_nodes(truth.simulate(noise, do=do), desc)
        int_truth = stack_nodes(truth.simulate(truth.sample_noise(settings.n_int, generator), do=do), desc)
        int_other = stack_nodes(truth.simulate(truth.sample_noise(settings.n_int, generator), do=do), desc)
        yield Query(node, k, grid[k], factual, cf_truth, int_truth, float(mmd2(int_truth, int_other)))


def query_seed(seed: int, index: int, node_position: int) -> int:
    """The seed of a system's interventional sample for value ``index`` of the node at
    ``node_position`` in ``truth.nodes``."""
    return int(seed) * 1_000_003 + index * 101 + node_position


@dataclass
class SeedResult:
    """One seed: per ``(node, system)`` the scores averaged over the values, the noise floor per
    node, and per system the fit seconds and the ms per 100 counterfactuals / samples per call."""

    cf_mse: dict[tuple[str, str], float] = field(default_factory=dict)
    mmd: dict[tuple[str, str], float] = field(default_factory=dict)
    floor: dict[str, float] = field(default_factory=dict)
    fit_s: dict[str, list[float]] = field(default_factory=dict)
    cf_ms: dict[str, list[float]] = field(default_factory=dict)
    int_ms: dict[str, list[float]] = field(default_factory=dict)


def _timed(device: torch.device | str, fn: Callable[[], Any]) -> tuple[Any, float]:
    timer = Timer(device)
    with timer("call"):
        out = fn()
    return out, timer.seconds["call"]


def _score_node(truth: Any, node: str, systems: Sequence[System], seed: int, settings: DCMSettings,
                generator: torch.Generator, device: Any, res: SeedResult) -> None:
    desc, pos = truth.descendants(node), list(truth.nodes).index(node)
    cf: dict[str, list[float]] = {s.name: [] for s in systems}
    mmd: dict[str, list[float]] = {s.name: [] for s in systems}
    floor = []
    for q in progress(queries(truth, node, settings, generator), total=settings.values,
                      desc=f"seed {seed} do({node})"):
        floor.append(q.floor)
        for s in systems:
            pred, dt = _timed(device, lambda: s.counterfactual(q.factual, {node: q.value}))
            res.cf_ms.setdefault(s.name, []).append(dt * 1e3 * 100 / settings.n_cf)
            smp, dt = _timed(device, lambda: s.interventional(settings.n_int, {node: q.value},
                                                              query_seed(seed, q.index, pos)))
            res.int_ms.setdefault(s.name, []).append(dt * 1e3 * 100 / settings.n_int)
            cf[s.name].append(counterfactual_mse(stack_nodes(pred, desc), q.cf_truth))
            mmd[s.name].append(float(mmd2(stack_nodes(smp, desc), q.int_truth)))
    res.floor[node] = float(np.mean(floor))
    for s in systems:
        res.cf_mse[(node, s.name)] = float(np.mean(cf[s.name]))
        res.mmd[(node, s.name)] = float(np.mean(mmd[s.name]))


def evaluate_seed(truth: Any, systems: Sequence[System], seed: int, settings: DCMSettings, *,
                  device: torch.device | str = "cpu") -> SeedResult:
    """The protocol for one seed: train rows, fits, then every intervention node in order."""
    gen = torch.Generator().manual_seed(int(seed))
    train = truth.simulate(truth.sample_noise(settings.rows, gen))
    res = SeedResult()
    for s in systems:
        _, dt = _timed(device, lambda: s.fit(train, seed))
        res.fit_s[s.name] = [dt]
    for node in truth.intervention_nodes:
        _score_node(truth, node, systems, seed, settings, gen, device, res)
    return res


def summary(xs: Sequence[float]) -> dict[str, Any]:
    """Mean and population std over seeds, and the per-seed values, all x100."""
    a = np.asarray(xs, dtype=np.float64) * SCALE
    return {"mean": float(a.mean()), "std": float(a.std()), "per_seed": [float(v) for v in a]}


def stats(xs: Sequence[float]) -> dict[str, float]:
    """Mean, population std, median and count of timings."""
    a = np.asarray(xs, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std()), "median": float(np.median(a)), "n": int(a.size)}


def run_dcm(make_truth: Callable[[int], Any], seeds: Sequence[int],
            make_systems: Callable[[Any], Sequence[System]], settings: DCMSettings, *,
            device: torch.device | str = "cpu", log: Callable[[str], None] = lambda msg: None,
            label: str = "") -> dict[str, Any]:
    """The protocol over ``seeds`` (the truth and the systems built afresh per seed): one row per
    intervention node, ``{"node", "descendants", "systems": {name: {"cf_mse", "mmd"}},
    "mmd_noise_floor"}`` (summaries x100), and per system the timing statistics."""
    per_seed: list[SeedResult] = []
    first = make_truth(seeds[0])
    for seed in progress(seeds, desc=f"{label} seeds"):
        truth = make_truth(seed)
        res = evaluate_seed(truth, make_systems(truth), seed, settings, device=device)
        for (node, name), v in res.cf_mse.items():
            log(f"  {label} seed {seed} do({node}) {name:9s} CF MSE x100 {SCALE * v:8.3f}  "
                f"MMD x100 {SCALE * res.mmd[(node, name)]:7.3f}")
        per_seed.append(res)
    names = list(dict.fromkeys(name for _, name in per_seed[0].cf_mse))
    rows = [{"node": node, "descendants": list(first.descendants(node)),
             "systems": {name: {"cf_mse": summary([r.cf_mse[(node, name)] for r in per_seed]),
                                "mmd": summary([r.mmd[(node, name)] for r in per_seed])}
                         for name in names},
             "mmd_noise_floor": summary([r.floor[node] for r in per_seed])}
            for node in first.intervention_nodes]
    timings = {name: {key: stats([t for r in per_seed for t in getattr(r, attr)[name]])
                      for key, attr in (("fit_s", "fit_s"), ("cf_ms_per_100", "cf_ms"),
                                        ("int_ms_per_100", "int_ms"))}
               for name in per_seed[0].fit_s}
    return {"rows": rows, "timings": timings}


def _fmt(stat: Mapping[str, Any] | None) -> str:
    return "—" if stat is None else f"{stat['mean']:.2f} ± {stat['std']:.2f}"


def dcm_table(rows: Sequence[Mapping[str, Any]], systems: Sequence[str]) -> str:
    """Markdown: per row its ``label`` and node, each system's CF and MMD (mean ± std x100), the
    ``anchor`` (a published reference ``{"cf_mse_mean", "cf_mse_std", "mmd"}``, or None) and the floor."""
    head = (["SCM", "do"] + [f"{s} CF" for s in systems] + ["anchor CF"]
            + [f"{s} MMD" for s in systems] + ["anchor MMD", "floor MMD"])
    body = []
    for r in rows:
        a, got = r.get("anchor"), r["systems"]
        body.append([r.get("label", ""), r["node"]] + [_fmt(got.get(s, {}).get("cf_mse")) for s in systems]
                    + ["—" if a is None else f"{a['cf_mse_mean']:.2f} ± {a['cf_mse_std']:.2f}"]
                    + [_fmt(got.get(s, {}).get("mmd")) for s in systems]
                    + ["—" if a is None else f"{a['mmd']:.2f}", _fmt(r["mmd_noise_floor"])])
    return markdown_table(head, body)


def timings_table(timings: Mapping[str, Mapping[str, Any]], systems: Sequence[str]) -> str:
    """Markdown: per truth and system, fit s (mean) and ms per 100 counterfactuals / samples."""
    body = [[label, s, f"{t[s]['fit_s']['mean']:.2f}", f"{t[s]['cf_ms_per_100']['mean']:.1f}",
             f"{t[s]['int_ms_per_100']['mean']:.1f}"]
            for label, t in timings.items() for s in systems if s in t]
    return markdown_table(["SCM", "system", "fit s", "CF ms / 100", "interventional ms / 100"], body)


def markdown_body(rows: Sequence[Mapping[str, Any]], timings: Mapping[str, Mapping[str, Any]],
                  systems: Sequence[str]) -> list[str]:
    """Markdown lines: :data:`TABLE_NOTE`, one :func:`dcm_table` per ``kind`` of the rows (in order
    of appearance), then the :func:`timings_table`."""
    lines = [TABLE_NOTE, ""]
    for kind in dict.fromkeys(r.get("kind", "") for r in rows):
        lines += [f"## {kind or 'results'}", "", dcm_table([r for r in rows if r.get("kind", "") == kind],
                                                          systems), ""]
    return lines + ["## Timings", "", "Fit time per seed (s); time per 100 counterfactuals and per 100 "
                    "interventional samples (ms), mean over calls.", "", timings_table(timings, systems), ""]


def overall(rows: Sequence[Mapping[str, Any]], timings: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per system: its CF MSE (x100, the seed mean) on each row (``per_row``) and their mean, and the
    median over every truth of its median ms per 100 counterfactuals."""
    names = list(dict.fromkeys(s for r in rows for s in r["systems"]))
    out = {}
    for s in names:
        per_row = [float(r["systems"][s]["cf_mse"]["mean"]) for r in rows]
        out[s] = {"cf_mse": float(np.mean(per_row)), "per_row": per_row,
                  "cf_ms": float(np.median([t[s]["cf_ms_per_100"]["median"] for t in timings.values()]))}
    return out


def cheapest_within(scores: Mapping[str, Mapping[str, Any]], tolerance: float) -> str:
    """The cheapest system (``cf_ms``) whose CF MSE is at most ``1 + tolerance`` times the best
    system's on every row (``per_row`` of :func:`overall`: rows differ in scale, so each is compared
    on its own); a system with a non-finite row (it diverged on some query) is never chosen."""
    finite = {k: v for k, v in scores.items() if all(math.isfinite(x) for x in v["per_row"])}
    if not finite:
        raise ValueError(f"no system with a finite CF MSE on every row among {sorted(scores)}")
    best = [min(col) for col in zip(*(v["per_row"] for v in finite.values()))]
    good = [k for k, v in finite.items() if all(x <= (1.0 + tolerance) * b for x, b in zip(v["per_row"], best))]
    if not good:
        raise ValueError(f"none within {tolerance:.0%} of the best on every row among {sorted(finite)}")
    return min(good, key=lambda k: finite[k]["cf_ms"])


__all__ = ["SCALE", "DOWHY_ANCHOR", "TABLE_NOTE", "dowhy_anchor", "markdown_body", "DCMSettings", "truth_graph",
           "stack_nodes", "counterfactual_mse", "Query", "queries",
           "query_seed", "SeedResult", "evaluate_seed", "summary", "stats", "run_dcm", "dcm_table",
           "timings_table", "overall", "cheapest_within"]
