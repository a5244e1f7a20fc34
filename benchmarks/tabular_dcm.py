"""Tabular counterfactual benchmark on the DCM protocol (BENCHMARKS.md section 2), three systems.

Per SCM and seed: train on ``--rows`` observational rows; for every node with descendants, take
``--values`` intervention values ``linspace(q10, q90)`` of the node's true marginal (from
``--quantile-draws`` draws); for each value

* counterfactual: ``--n-cf`` fresh factual rows with their true noise; truth = the true SCM re-run
  with that noise under the intervention; score = MSE over all descendants;
* interventional: ``--n-int`` model samples vs ``--n-int`` true samples of the descendants; score =
  biased MMD^2 with an RBF kernel ``exp(-gamma ||x - y||^2)``, gamma = 1 / median of the positive
  squared distances between the two sets;

averaged over the values; mean ± std (population std, as DCM's code) over seeds, x100.

Systems, all fitted on the same rows and queried on the same factual rows and values:

* ``diffusion``: causaldiff, DCM-style diffusion mechanisms on every non-root node;
* ``anm``: causaldiff, additive-noise MLP mechanisms;
* ``dowhy``: DoWhy gcm with auto-assigned mechanisms (quality GOOD); optional (``pip install
  causaldiff[bench]``), skipped with a message when DoWhy is not installed.

Usage::

    python benchmarks/tabular_dcm.py                 # the full run: 8 SCMs x 10 seeds
    python benchmarks/tabular_dcm.py --quick         # seconds: the CI setting
    python benchmarks/tabular_dcm.py --scms chain-nonlinear --seeds 0-1 --systems anm,dowhy
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import platform
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

import causaldiff as cd
from causaldiff.datasets.tabular import TABULAR_SCMS, TabularSCM, get_tabular_scm
from causaldiff.progress import progress, progress_enabled

ALL_SYSTEMS = ("diffusion", "anm", "dowhy")
SCALE = 100.0
RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: DoWhy 0.14 measured with this protocol (BENCHMARKS.md section 2), x100:
#: (graph, node) -> kind -> (CF MSE mean, CF MSE std, MMD).
DOWHY_ANCHOR: dict[tuple[str, str], dict[str, tuple[float, float, float]]] = {
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


# ===================================================================================== metrics
def stack_nodes(values: Mapping[str, Tensor], nodes: Sequence[str]) -> Tensor:
    """The columns of ``nodes`` side by side, float64, shape ``(n, total_dim)``."""
    n = values[nodes[0]].shape[0]
    return torch.cat([values[v].detach().to("cpu", torch.float64).reshape(n, -1) for v in nodes], 1)


def cf_mse(pred: Tensor, truth: Tensor) -> float:
    """Mean squared error over all rows and descendant coordinates."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != truth shape {tuple(truth.shape)}")
    return float((pred - truth).pow(2).mean())


def median_gamma(x: Tensor, y: Tensor) -> float:
    """``1 / median`` of the positive squared distances between the rows of ``x`` and ``y``."""
    d = torch.cdist(x, y).pow(2)
    d = d[d > 0]
    if d.numel() == 0:
        return 1.0
    return float(1.0 / d.median())


def mmd2_rbf(x: Tensor, y: Tensor, gamma: float | None = None) -> float:
    """Biased MMD^2 with ``k(a, b) = exp(-gamma ||a - b||^2)``, gamma by the median heuristic."""
    x, y = x.to(torch.float64), y.to(torch.float64)
    g = median_gamma(x, y) if gamma is None else gamma

    def k(a: Tensor, b: Tensor) -> Tensor:
        return torch.exp(-g * torch.cdist(a, b).pow(2)).mean()

    return float(k(x, x) + k(y, y) - 2 * k(x, y))


# ===================================================================================== systems
class System:
    """One method under test: fit on rows, answer counterfactual and interventional queries."""

    name = "?"

    def fit(self, train: Mapping[str, Tensor], seed: int) -> None:
        raise NotImplementedError

    def counterfactual(self, factual: Mapping[str, Tensor], node: str, value: Tensor) -> Mapping[str, Tensor]:
        raise NotImplementedError

    def interventional(self, n: int, node: str, value: Tensor, seed: int) -> Mapping[str, Tensor]:
        raise NotImplementedError


class CausaldiffSystem(System):
    """A ``causaldiff.SCM`` over the true graph with mechanisms from ``make(node, is_root, seed)``."""

    def __init__(self, name: str, scm: TabularSCM, make: Callable[[str, bool, int], Any],
                 device: torch.device, dtype: torch.dtype = torch.float32):
        self.name, self.truth, self.make, self.device, self.dtype = name, scm, make, device, dtype
        self.model: cd.SCM | None = None

    def _cast(self, values: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {k: v.to(self.device, self.dtype) for k, v in values.items()}

    def _value(self, node: str, value: Tensor) -> Any:
        return float(value) if value.dim() == 0 else value.to(self.device, self.dtype)

    def fit(self, train: Mapping[str, Tensor], seed: int) -> None:
        g = self.truth.as_networkx()
        mechs = {v: self.make(v, not self.truth.parents(v), seed) for v in self.truth.nodes}
        self.model = cd.SCM(g, mechanisms=mechs).to(self.device)
        self.model.fit(self._cast(train))

    def counterfactual(self, factual, node, value):
        return self.model.counterfactual(self._cast(factual), do={node: self._value(node, value)})

    def interventional(self, n, node, value, seed):
        return self.model.interventional_samples(n, do={node: self._value(node, value)}, seed=seed)


class DowhySystem(System):
    """DoWhy gcm: auto-assigned invertible mechanisms (quality GOOD), counterfactuals by DoWhy's
    own abduction of the observed factual rows. Vector nodes become one column per coordinate."""

    name = "dowhy"

    def __init__(self, scm: TabularSCM):
        import networkx as nx
        from dowhy import gcm

        self.gcm, self.truth = gcm, scm
        self.columns = {v: self._cols(v) for v in scm.nodes}
        g = nx.DiGraph()
        for v in scm.nodes:
            g.add_nodes_from(self.columns[v])
        for a, b in scm.edges:
            g.add_edges_from((ca, cb) for ca in self.columns[a] for cb in self.columns[b])
        self.graph = g
        self.model = None

    def _cols(self, v: str) -> list[str]:
        shape = self.truth.event_shapes[v]
        if not shape:
            return [v]
        return [f"{v}_{i}" for i in range(math.prod(shape))]

    def _frame(self, values: Mapping[str, Tensor]):
        import pandas as pd

        data = {}
        for v in self.truth.nodes:
            x = values[v].detach().to("cpu", torch.float64).numpy().reshape(values[v].shape[0], -1)
            for i, c in enumerate(self.columns[v]):
                data[c] = x[:, i]
        return pd.DataFrame(data)

    def _unframe(self, df) -> dict[str, Tensor]:
        out = {}
        for v in self.truth.nodes:
            x = torch.tensor(df[self.columns[v]].to_numpy(dtype=np.float64, copy=True))
            out[v] = x.reshape(len(df), *self.truth.event_shapes[v])
        return out

    def _interventions(self, node: str, value: Tensor) -> dict[str, Callable]:
        flat = value.reshape(-1).tolist()
        return {c: (lambda x, _v=float(val): _v) for c, val in zip(self.columns[node], flat, strict=True)}

    def fit(self, train, seed):
        gcm = self.gcm
        np.random.seed(seed)
        with _quiet():
            self.model = gcm.InvertibleStructuralCausalModel(self.graph.copy())
            df = self._frame(train)
            gcm.auto.assign_causal_mechanisms(self.model, df, quality=gcm.auto.AssignmentQuality.GOOD)
            gcm.fit(self.model, df)

    def counterfactual(self, factual, node, value):
        with _quiet():
            out = self.gcm.counterfactual_samples(self.model, self._interventions(node, value),
                                                  observed_data=self._frame(factual))
        return self._unframe(out)

    def interventional(self, n, node, value, seed):
        np.random.seed(seed)
        with _quiet():
            out = self.gcm.interventional_samples(self.model, self._interventions(node, value),
                                                  num_samples_to_draw=n)
        return self._unframe(out)


class _quiet(warnings.catch_warnings):
    """Silence third-party (DoWhy / scikit-learn / pandas) warnings inside the baseline."""

    def __enter__(self):
        out = super().__enter__()
        warnings.simplefilter("ignore")
        return out


def dowhy_version() -> str | None:
    try:
        import dowhy
    except ImportError:
        return None
    return getattr(dowhy, "__version__", "unknown")


# ------------------------------------------------------------------------------ mechanism factories
def anm_factory(args: argparse.Namespace) -> Callable[[str, bool, int], Any]:
    from causaldiff.mechanisms.neural import AdditiveNoiseConfig, AdditiveNoiseMechanism

    def make(node: str, is_root: bool, seed: int):
        cfg = AdditiveNoiseConfig(hidden=tuple(args.anm_hidden), steps=args.anm_steps,
                                  batch_size=args.anm_batch, lr=args.anm_lr, seed=seed)
        return AdditiveNoiseMechanism(cfg)

    return make


def diffusion_config(args: argparse.Namespace) -> dict[str, Any]:
    """The diffusion mechanism's hyperparameters as recorded in the results."""
    return {"num_train_timesteps": args.diff_T, "beta_start": args.diff_beta_start,
            "beta_end": args.diff_beta_end, "hidden": args.diff_hidden, "num_layers": args.diff_layers,
            "time_embedding": args.diff_time_embedding, "steps": args.diff_steps,
            "batch_size": args.diff_batch, "lr": args.diff_lr, "ema_decay": args.diff_ema,
            "ddim_steps": args.diff_ddim_steps or args.diff_T, "roots": args.diff_roots}


def diffusion_factory(args: argparse.Namespace) -> Callable[[str, bool, int], Any]:
    """DCM-style diffusion mechanisms: a conditional MLP denoiser on ``[x, parents, t/T]``,
    linear betas, deterministic DDIM inversion (abduction) and DDIM generation (prediction)."""
    from causaldiff.diffusion.ddim import DDIMConfig
    from causaldiff.diffusion.nets import MLPConfig
    from causaldiff.diffusion.schedule import ScheduleConfig
    from causaldiff.diffusion.train import TrainConfig
    from causaldiff.mechanisms.diffusion import DiffusionMechanism

    c = diffusion_config(args)
    anm = anm_factory(args)

    def make(node: str, is_root: bool, seed: int):
        if is_root and c["roots"] == "normal":
            return anm(node, is_root, seed)  # a fitted Normal(mean, std): the roots are N(0, 1)
        return DiffusionMechanism(
            schedule=ScheduleConfig(kind="linear", num_train_timesteps=c["num_train_timesteps"],
                                    beta_start=c["beta_start"], beta_end=c["beta_end"]),
            sampler=DDIMConfig(num_inference_steps=c["ddim_steps"], spacing="leading"),
            net=MLPConfig(hidden=c["hidden"], num_layers=c["num_layers"],
                          time_embedding=c["time_embedding"]),
            guidance="conditional",
            train=TrainConfig(steps=c["steps"], batch_size=c["batch_size"], lr=c["lr"],
                              ema_decay=c["ema_decay"], seed=seed))

    return make


# ===================================================================================== protocol
@dataclass
class Cell:
    """Per-seed scores of one system on one (SCM, intervened node)."""

    cf_mse: list[float] = field(default_factory=list)
    mmd: list[float] = field(default_factory=list)


def _summary(xs: Sequence[float]) -> dict[str, Any]:
    a = np.asarray(xs, dtype=np.float64) * SCALE
    return {"mean": float(a.mean()), "std": float(a.std()), "per_seed": [float(v) for v in a]}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_systems(names: Sequence[str], scm: TabularSCM, args: argparse.Namespace,
                  device: torch.device) -> tuple[list[System], dict[str, str]]:
    """The requested systems that can run here, and a reason for each one that cannot."""
    systems, skipped = [], {}
    for name in names:
        try:
            if name == "anm":
                systems.append(CausaldiffSystem("anm", scm, anm_factory(args), device))
            elif name == "diffusion":
                systems.append(CausaldiffSystem("diffusion", scm, diffusion_factory(args), device))
            elif name == "dowhy":
                if dowhy_version() is None:
                    raise ImportError("DoWhy is not installed (pip install 'causaldiff[bench]')")
                systems.append(DowhySystem(scm))
            else:
                raise ValueError(f"unknown system {name!r}; choose from {ALL_SYSTEMS}")
        except ImportError as e:
            skipped[name] = str(e)
    return systems, skipped


def run_scm(scm_name: str, seeds: Sequence[int], system_names: Sequence[str], args: argparse.Namespace,
            device: torch.device, log: Callable[[str], None]) -> dict[str, Any]:
    """The protocol on one SCM for every seed; returns its rows and timings."""
    cells: dict[tuple[str, str], Cell] = {}
    floor: dict[str, list[float]] = {}
    fit_s: dict[str, list[float]] = {}
    cf_ms: dict[str, list[float]] = {}
    int_ms: dict[str, list[float]] = {}
    skipped: dict[str, str] = {}
    nodes_seen: tuple[str, ...] = ()
    scm0 = get_tabular_scm(scm_name, seed=seeds[0])
    for seed in progress(seeds, desc=f"{scm_name} seeds"):
        scm = get_tabular_scm(scm_name, seed=seed)  # the ladder redraws its mechanisms per seed
        nodes_seen = scm.intervention_nodes
        gen = torch.Generator().manual_seed(int(seed))
        train = scm.sample(args.rows, gen)
        systems, skipped = build_systems(system_names, scm, args, device)
        for s in systems:
            _sync(device)
            t0 = time.perf_counter()
            s.fit(train, seed)
            _sync(device)
            fit_s.setdefault(s.name, []).append(time.perf_counter() - t0)
        for node in scm.intervention_nodes:
            desc = scm.descendants(node)
            grid = scm.quantile_grid(node, args.values, n_draws=args.quantile_draws, generator=gen)
            per_value: dict[str, Cell] = {s.name: Cell() for s in systems}
            floor_vals = []
            for k in progress(range(args.values), desc=f"seed {seed} do({node})"):
                value = grid[k]
                noise = scm.sample_noise(args.n_cf, gen)
                factual = scm.simulate(noise)
                truth_cf = stack_nodes(scm.simulate(noise, do={node: value}), desc)
                truth_int = stack_nodes(scm.sample(args.n_int, gen, do={node: value}), desc)
                truth_int2 = stack_nodes(scm.sample(args.n_int, gen, do={node: value}), desc)
                floor_vals.append(mmd2_rbf(truth_int, truth_int2))
                qseed = int(seed) * 1_000_003 + k * 101 + scm.nodes.index(node)
                for s in systems:
                    _sync(device)
                    t0 = time.perf_counter()
                    cf = s.counterfactual(factual, node, value)
                    _sync(device)
                    cf_ms.setdefault(s.name, []).append((time.perf_counter() - t0) * 1e3 * 100 / args.n_cf)
                    t0 = time.perf_counter()
                    smp = s.interventional(args.n_int, node, value, qseed)
                    _sync(device)
                    int_ms.setdefault(s.name, []).append((time.perf_counter() - t0) * 1e3 * 100 / args.n_int)
                    per_value[s.name].cf_mse.append(cf_mse(stack_nodes(cf, desc), truth_cf))
                    per_value[s.name].mmd.append(mmd2_rbf(stack_nodes(smp, desc), truth_int))
            floor.setdefault(node, []).append(float(np.mean(floor_vals)))
            for s in systems:
                c = cells.setdefault((node, s.name), Cell())
                c.cf_mse.append(float(np.mean(per_value[s.name].cf_mse)))
                c.mmd.append(float(np.mean(per_value[s.name].mmd)))
                log(f"  {scm_name} seed {seed} do({node}) {s.name:9s} CF MSE x100 "
                    f"{100 * c.cf_mse[-1]:8.3f}  MMD x100 {100 * c.mmd[-1]:7.3f}")
    rows = []
    for node in nodes_seen:
        anchor = DOWHY_ANCHOR.get((scm0.graph_name, node), {}).get(scm0.kind)
        rows.append({
            "scm": scm_name, "graph": scm0.graph_name, "kind": scm0.kind, "node": node,
            "descendants": list(scm0.descendants(node)),
            "systems": {name: {"cf_mse": _summary(cells[(node, name)].cf_mse),
                               "mmd": _summary(cells[(node, name)].mmd)}
                        for (nd, name) in cells if nd == node},
            "mmd_noise_floor": _summary(floor[node]),
            "dowhy_anchor": None if anchor is None else
            {"cf_mse_mean": anchor[0], "cf_mse_std": anchor[1], "mmd": anchor[2]},
        })
    timings = {name: {"fit_s": _stats(fit_s[name]), "cf_ms_per_100": _stats(cf_ms[name]),
                      "int_ms_per_100": _stats(int_ms[name])} for name in fit_s}
    return {"rows": rows, "timings": timings, "skipped": skipped}


def _stats(xs: Sequence[float]) -> dict[str, float]:
    a = np.asarray(xs, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std()), "median": float(np.median(a)),
            "n": int(a.size)}


# ===================================================================================== reporting
def _fmt(stat: Mapping[str, Any] | None, with_std: bool = True) -> str:
    if stat is None:
        return "—"
    return f"{stat['mean']:.2f} ± {stat['std']:.2f}" if with_std else f"{stat['mean']:.2f}"


def to_markdown(results: Mapping[str, Any]) -> str:
    systems = results["systems"]
    lines = [f"# Tabular counterfactuals on the DCM protocol{' (quick)' if results['settings']['quick'] else ''}",
             "", f"Command: `{results['command']}`", "",
             f"Date {results['env']['date']}; device {results['env']['device']}; torch "
             f"{results['env']['torch']}; DoWhy {results['env']['dowhy'] or 'not installed'}; "
             f"{results['env']['threads']} torch threads; wall time {results['wall_s']:.0f} s.", "",
             "Settings: " + ", ".join(f"{k}={v}" for k, v in results["settings"].items()
                                      if k not in ("diffusion", "anm")), "",
             "Diffusion mechanism: " + json.dumps(results["settings"]["diffusion"]), "",
             "Additive-noise mechanism: " + json.dumps(results["settings"]["anm"]), ""]
    if results["skipped"]:
        lines += ["Skipped: " + "; ".join(f"{k}: {v}" for k, v in results["skipped"].items()), ""]
    lines += ["All scores x100, mean ± std over seeds. CF = counterfactual MSE over all descendants; "
              "MMD = interventional biased MMD^2 (RBF, median heuristic). `floor` = the MMD of two "
              "independent true samples of the same size. `anchor` = DoWhy 0.14 as measured in "
              "BENCHMARKS.md section 2 (10 seeds).", ""]
    for kind in ("nonlinear", "nonadditive"):
        rows = [r for r in results["rows"] if r["kind"] == kind]
        if not rows:
            continue
        head = (["SCM", "do"] + [f"{s} CF" for s in systems] + ["anchor CF"]
                + [f"{s} MMD" for s in systems] + ["anchor MMD", "floor MMD"])
        lines += [f"## {kind}", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head)]
        for r in rows:
            a = r["dowhy_anchor"]
            cells = [r["graph"], r["node"]]
            cells += [_fmt(r["systems"].get(s, {}).get("cf_mse")) for s in systems]
            cells += ["—" if a is None else f"{a['cf_mse_mean']:.2f} ± {a['cf_mse_std']:.2f}"]
            cells += [_fmt(r["systems"].get(s, {}).get("mmd")) for s in systems]
            cells += ["—" if a is None else f"{a['mmd']:.2f}", _fmt(r["mmd_noise_floor"])]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Timings", "", "Fit time per seed (s); time per 100 counterfactuals and per 100 "
              "interventional samples (ms), mean over calls.", "",
              "| SCM | system | fit s | CF ms / 100 | interventional ms / 100 |", "|---|---|---|---|---|"]
    for scm_name, t in results["timings"].items():
        for s in systems:
            if s in t:
                lines.append(f"| {scm_name} | {s} | {t[s]['fit_s']['mean']:.2f} | "
                             f"{t[s]['cf_ms_per_100']['mean']:.1f} | {t[s]['int_ms_per_100']['mean']:.1f} |")
    lines.append("")
    return "\n".join(lines)


# ===================================================================================== CLI
def _parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-")
            seeds.extend(range(int(a), int(b) + 1))
        elif part:
            seeds.append(int(part))
    if not seeds:
        raise argparse.ArgumentTypeError(f"no seeds in {text!r}")
    return seeds


def _parse_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="CI setting: 1 seed, one SCM per kind, 500 rows, 3 values, tiny training "
                        "(explicit flags still override)")
    p.add_argument("--seeds", type=_parse_seeds, default=None, help="e.g. 0-9 or 0,3,5 (default 0-9)")
    p.add_argument("--scms", type=_parse_list, default=None,
                   help=f"comma list of {sorted(TABULAR_SCMS)}, ladder-nonlinear, ladder-nonadditive "
                        "(default: the eight)")
    p.add_argument("--systems", type=_parse_list, default=None, help=f"comma list of {ALL_SYSTEMS}")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="output directory")
    p.add_argument("--name", default=None, help="output file stem (default tabular_dcm[_quick])")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (small MLPs: one thread is fastest on a shared CPU; 0 = torch's)")
    p.add_argument("--rows", type=int, default=None, help="training rows (5000)")
    p.add_argument("--values", type=int, default=None, help="intervention values per node (20)")
    p.add_argument("--n-cf", type=int, default=100, help="factual rows per value")
    p.add_argument("--n-int", type=int, default=100, help="interventional samples per value")
    p.add_argument("--quantile-draws", type=int, default=None, help="draws for the grid (5000)")
    g = p.add_argument_group("diffusion mechanism (DCM: T=100, betas 1e-4..0.1, MLP 64-128, SiLU)")
    g.add_argument("--diff-T", type=int, default=100)
    g.add_argument("--diff-beta-start", type=float, default=1e-4)
    g.add_argument("--diff-beta-end", type=float, default=0.1)
    g.add_argument("--diff-hidden", type=int, default=128)
    g.add_argument("--diff-layers", type=int, default=3)
    g.add_argument("--diff-time-embedding", choices=("scalar", "sinusoidal"), default="scalar")
    g.add_argument("--diff-ema", type=float, default=0.999, help="EMA decay of the weights")
    g.add_argument("--diff-steps", type=int, default=None, help="optimiser steps (8000; 2000 left diamond-nonlinear undertrained, see results/tabular_dcm_2000steps.md)")
    g.add_argument("--diff-batch", type=int, default=256)
    g.add_argument("--diff-lr", type=float, default=1e-3)
    g.add_argument("--diff-ddim-steps", type=int, default=None,
                   help="DDIM steps for abduction/prediction (default: all T)")
    g.add_argument("--diff-roots", choices=("normal", "diffusion"), default="normal",
                   help="roots as a fitted Normal (they are N(0, 1)) or as diffusion nodes")
    p.add_argument("--dowhy-jobs", type=int, default=1,
                   help="DoWhy/joblib workers (1: one core, as the anchor; -1: all)")
    g = p.add_argument_group("additive-noise mechanism")
    g.add_argument("--anm-hidden", type=int, nargs="+", default=[64, 64])
    g.add_argument("--anm-steps", type=int, default=None, help="optimiser steps (1000)")
    g.add_argument("--anm-batch", type=int, default=256)
    g.add_argument("--anm-lr", type=float, default=3e-3)
    return p


def _resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill defaults that depend on ``--quick``."""
    quick = args.quick
    defaults = {
        "seeds": [0] if quick else list(range(10)),
        "scms": ["chain-nonlinear", "chain-nonadditive"] if quick else sorted(TABULAR_SCMS),
        "systems": list(ALL_SYSTEMS),
        "rows": 500 if quick else 5000,
        "values": 3 if quick else 20,
        "quantile_draws": 1000 if quick else 5000,
        "diff_steps": 150 if quick else 8000,
        "anm_steps": 150 if quick else 1000,
        "name": "tabular_dcm_quick" if quick else "tabular_dcm",
    }
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    unknown = [s for s in args.systems if s not in ALL_SYSTEMS]
    if unknown:
        raise SystemExit(f"unknown system(s) {unknown}; choose from {ALL_SYSTEMS}")
    for name in args.scms:
        get_tabular_scm(name)  # raises KeyError naming the known SCMs
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _resolve(parser().parse_args(argv))
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if "dowhy" in args.systems and dowhy_version() is not None:
        from dowhy import gcm

        (gcm.config.enable_progress_bars if progress_enabled() else gcm.config.disable_progress_bars)()
        gcm.config.set_default_n_jobs(args.dowhy_jobs)
    args.out.mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    settings = {
        "quick": args.quick, "seeds": args.seeds, "scms": args.scms, "rows": args.rows,
        "values": args.values, "n_cf": args.n_cf, "n_int": args.n_int,
        "quantile_draws": args.quantile_draws, "quantiles": [0.1, 0.9], "scale": SCALE,
        "std": "population (ddof=0) over seeds", "model_dtype": "float32", "truth_dtype": "float64",
        "threads": args.threads, "dowhy_jobs": args.dowhy_jobs, "device": args.device,
        "diffusion": diffusion_config(args),
        "anm": {"hidden": list(args.anm_hidden), "steps": args.anm_steps,
                "batch_size": args.anm_batch, "lr": args.anm_lr},
    }
    env = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": _device_name(device), "torch": torch.__version__, "dowhy": dowhy_version(),
        "python": platform.python_version(), "platform": platform.platform(),
        "threads": torch.get_num_threads(),
    }
    results: dict[str, Any] = {
        "command": "python benchmarks/tabular_dcm.py " + " ".join(shlex.quote(a) for a in argv),
        "settings": settings, "env": env, "systems": list(args.systems), "rows": [],
        "timings": {}, "skipped": {}, "wall_s": 0.0,
    }
    t_start = time.perf_counter()
    for scm_name in progress(args.scms, desc="SCMs"):
        out = run_scm(scm_name, args.seeds, args.systems, args, device, log)
        results["rows"].extend(out["rows"])
        results["timings"][scm_name] = out["timings"]
        results["skipped"].update(out["skipped"])
        results["wall_s"] = time.perf_counter() - t_start
        _write(results, args)  # after every SCM: a long run keeps what it has done
    for name, why in results["skipped"].items():
        print(f"[tabular_dcm] skipped system {name!r}: {why}", file=sys.stderr)
    results["wall_s"] = time.perf_counter() - t_start
    _write(results, args)
    return results


def _write(results: Mapping[str, Any], args: argparse.Namespace) -> None:
    (args.out / f"{args.name}.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / f"{args.name}.md").write_text(to_markdown(results))


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {name}"


if __name__ == "__main__":
    main()
