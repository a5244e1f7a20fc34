"""Tabular counterfactual benchmark on the DCM protocol (BENCHMARKS.md section 2), three systems.

The protocol is :mod:`benchmarks.dcm.protocol`, the systems :mod:`benchmarks.dcm.systems`,
all fitted on the same rows and queried on the same factual rows and values:

* ``diffusion``: causaldiff, DCM-style diffusion mechanisms on every non-root node;
* ``anm``: causaldiff, additive-noise MLP mechanisms;
* ``dowhy``: DoWhy gcm, auto-assigned mechanisms (quality GOOD); skipped when DoWhy is not installed.

Usage::

    python -m benchmarks.dcm                 # the full run: 8 SCMs x 10 seeds
    python -m benchmarks.dcm --quick         # seconds: the CI setting
    python -m benchmarks.dcm --scms chain-nonlinear --seeds 0-1 --systems anm,dowhy
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script (python benchmarks/dcm): the checkout on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from causaldiff import (AdditiveNoiseConfig, AdditiveNoiseMechanism, DDIMConfig, DiffusionMechanism, MLPConfig,  # noqa: E402
                        ScheduleConfig, TrainConfig)
from causaldiff.datasets import TABULAR_SCMS, get_tabular_scm  # noqa: E402
from causaldiff.evaluation import report  # noqa: E402
from causaldiff.progress import progress, progress_enabled  # noqa: E402

from benchmarks.dcm import protocol as dcm  # noqa: E402
from benchmarks.dcm.systems import (DOWHY_MISSING, CausaldiffSystem, DowhySystem, configure_dowhy,
                                           dowhy_version)

ALL_SYSTEMS = ("diffusion", "anm", "dowhy")
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"


def mechanism_settings(a: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The hyperparameters of the two causaldiff mechanisms, as recorded in the results."""
    return {"diffusion": {
        "num_train_timesteps": a.diff_T, "beta_start": a.diff_beta_start, "beta_end": a.diff_beta_end,
        "hidden": a.diff_hidden, "num_layers": a.diff_layers, "time_embedding": a.diff_time_embedding,
        "steps": a.diff_steps, "batch_size": a.diff_batch, "lr": a.diff_lr, "ema_decay": a.diff_ema,
        "ddim_steps": a.diff_ddim_steps or a.diff_T, "roots": a.diff_roots},
        "anm": {"hidden": list(a.anm_hidden), "steps": a.anm_steps, "batch_size": a.anm_batch, "lr": a.anm_lr}}


def factories(a: argparse.Namespace) -> dict[str, Any]:
    """``make_mechanism(node, is_root, seed)`` per causaldiff system. Diffusion: a conditional MLP
    denoiser on ``[x, parents, t/T]``, linear betas, DDIM inversion and generation."""
    c, m = mechanism_settings(a).values()

    def anm(node: str, is_root: bool, seed: int):
        return AdditiveNoiseMechanism(AdditiveNoiseConfig(hidden=tuple(m["hidden"]), steps=m["steps"],
                                                          batch_size=m["batch_size"], lr=m["lr"], seed=seed))

    def diffusion(node: str, is_root: bool, seed: int):
        if is_root and c["roots"] == "normal":
            return anm(node, is_root, seed)  # a fitted Normal(mean, std): the roots are N(0, 1)
        return DiffusionMechanism(
            schedule=ScheduleConfig(kind="linear", num_train_timesteps=c["num_train_timesteps"],
                                    beta_start=c["beta_start"], beta_end=c["beta_end"]),
            sampler=DDIMConfig(num_inference_steps=c["ddim_steps"], spacing="leading"),
            net=MLPConfig(hidden=c["hidden"], num_layers=c["num_layers"], time_embedding=c["time_embedding"]),
            guidance="conditional",
            train=TrainConfig(steps=c["steps"], batch_size=c["batch_size"], lr=c["lr"],
                              ema_decay=c["ema_decay"], seed=seed))

    return {"diffusion": diffusion, "anm": anm}


def make_systems(names: Sequence[str], a: argparse.Namespace, device: torch.device):
    """A function of the truth giving the requested systems that can run (DoWhy only if installed)."""
    make = factories(a)
    return lambda truth: [DowhySystem(dcm.truth_graph(truth), truth.event_shapes) if s == "dowhy" else
                          CausaldiffSystem(s, dcm.truth_graph(truth), make[s], device) for s in names]


def parser() -> argparse.ArgumentParser:
    _list = lambda text: [t.strip() for t in text.split(",") if t.strip()]  # noqa: E731
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI setting: 1 seed, one SCM per kind, 500 rows, "
                   "3 values, tiny training (explicit flags still override)")
    p.add_argument("--seeds", type=_seeds, default=None, help="e.g. 0-9 or 0,3,5 (default 0-9)")
    p.add_argument("--scms", type=_list, default=None, help=f"comma list of {sorted(TABULAR_SCMS)}, "
                   "ladder-nonlinear, ladder-nonadditive (default: the eight)")
    p.add_argument("--systems", type=_list, default=None, help=f"comma list of {ALL_SYSTEMS}")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="output directory")
    p.add_argument("--name", default=None, help="output file stem (default tabular_dcm[_quick])")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's)")
    for flag, default, what in (("rows", None, "training rows (5000)"), ("values", None, "values per node (20)"),
                                ("quantile-draws", None, "draws for the grid (5000)"),
                                ("n-cf", 100, "factual rows per value"), ("n-int", 100, "samples per value")):
        p.add_argument(f"--{flag}", type=int, default=default, help=what)
    p.add_argument("--dowhy-jobs", type=int, default=1, help="DoWhy/joblib workers (1: as the anchor)")
    g = p.add_argument_group("diffusion mechanism (DCM: T=100, betas 1e-4..0.1, MLP 64-128, SiLU)")
    for flag, typ, default in (("T", int, 100), ("beta-start", float, 1e-4), ("beta-end", float, 0.1),
                               ("hidden", int, 128), ("layers", int, 3), ("ema", float, 0.999),
                               ("batch", int, 256), ("lr", float, 1e-3)):
        g.add_argument(f"--diff-{flag}", type=typ, default=default)
    g.add_argument("--diff-time-embedding", choices=("scalar", "sinusoidal"), default="scalar")
    g.add_argument("--diff-steps", type=int, default=None, help="optimiser steps (8000; 2000 left "
                   "diamond-nonlinear undertrained, see results/tabular_dcm_2000steps.md)")
    g.add_argument("--diff-ddim-steps", type=int, default=None, help="DDIM steps (default: all T)")
    g.add_argument("--diff-roots", choices=("normal", "diffusion"), default="normal",
                   help="roots as a fitted Normal (they are N(0, 1)) or as diffusion nodes")
    g = p.add_argument_group("additive-noise mechanism")
    g.add_argument("--anm-hidden", type=int, nargs="+", default=[64, 64])
    g.add_argument("--anm-steps", type=int, default=None, help="optimiser steps (1000)")
    for flag, typ, default in (("batch", int, 256), ("lr", float, 3e-3)):
        g.add_argument(f"--anm-{flag}", type=typ, default=default)
    return p


def _seeds(text: str) -> list[int]:
    seeds = [s for part in text.split(",") if part.strip() for s in
             (range(int(part.split("-")[0]), int(part.split("-")[1]) + 1) if "-" in part else [int(part)])]
    if not seeds:
        raise argparse.ArgumentTypeError(f"no seeds in {text!r}")
    return seeds


def resolve(a: argparse.Namespace) -> argparse.Namespace:
    """Fill the defaults that depend on ``--quick``; refuse unknown systems and SCMs."""
    q = a.quick
    for k, v in {"seeds": [0] if q else list(range(10)), "systems": list(ALL_SYSTEMS),
                 "scms": ["chain-nonlinear", "chain-nonadditive"] if q else sorted(TABULAR_SCMS),
                 "rows": 500 if q else 5000, "values": 3 if q else 20, "quantile_draws": 1000 if q else 5000,
                 "diff_steps": 150 if q else 8000, "anm_steps": 150 if q else 1000,
                 "name": "tabular_dcm_quick" if q else "tabular_dcm"}.items():
        setattr(a, k, v if getattr(a, k) is None else getattr(a, k))
    if unknown := [s for s in a.systems if s not in ALL_SYSTEMS]:
        raise SystemExit(f"unknown system(s) {unknown}; choose from {ALL_SYSTEMS}")
    for name in a.scms:
        get_tabular_scm(name)  # raises KeyError naming the known SCMs
    return a


def to_markdown(res: dict[str, Any]) -> str:
    env, st, lines = res["env"], res["settings"], []
    lines += [f"# Tabular counterfactuals on the DCM protocol{' (quick)' if st['quick'] else ''}", "",
              f"Command: `{res['command']}`", "",
              f"Date {env['date']}; device {env['device_name']}; commit {env['git_commit']}; torch {env['torch']}; "
              f"DoWhy {env['dowhy'] or 'not installed'}; {env['threads']} torch threads; wall time "
              f"{res['wall_s']:.0f} s.", "",
              "Settings: " + ", ".join(f"{k}={v}" for k, v in st.items() if k not in ("diffusion", "anm")), "",
              "Diffusion mechanism: " + json.dumps(st["diffusion"]), "",
              "Additive-noise mechanism: " + json.dumps(st["anm"]), ""]
    if res["skipped"]:
        lines += ["Skipped: " + "; ".join(f"{k}: {v}" for k, v in res["skipped"].items()), ""]
    lines += dcm.markdown_body(res["rows"], res["timings"], res["systems"])
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = resolve(parser().parse_args(argv))
    torch.set_num_threads(a.threads or torch.get_num_threads())
    device, skipped = torch.device(a.device), {}
    if "dowhy" in a.systems and dowhy_version() is None:
        skipped["dowhy"] = DOWHY_MISSING
        print(f"[tabular_dcm] skipped system 'dowhy': {DOWHY_MISSING}", file=sys.stderr)
    elif "dowhy" in a.systems:
        configure_dowhy(a.dowhy_jobs, progress_enabled())
    settings = dcm.DCMSettings(**{k: getattr(a, k) for k in ("rows", "values", "n_cf", "n_int", "quantile_draws")})
    res: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "benchmarks.dcm", *argv]),
        "settings": {"quick": a.quick, "seeds": a.seeds, "scms": a.scms, **settings.model_dump(),
                     "scale": dcm.SCALE, "std": "population (ddof=0) over seeds", "model_dtype": "float32",
                     "truth_dtype": "float64", "threads": a.threads, "dowhy_jobs": a.dowhy_jobs,
                     "device": a.device, **mechanism_settings(a)},
        "env": {**report.environment(device), "dowhy": dowhy_version()}, "systems": list(a.systems),
        "rows": [], "timings": {}, "skipped": skipped, "wall_s": 0.0}
    t_start = time.perf_counter()
    for scm_name in progress(a.scms, desc="SCMs"):
        scm0 = get_tabular_scm(scm_name, seed=a.seeds[0])
        out = dcm.run_dcm(lambda seed, n=scm_name: get_tabular_scm(n, seed=seed), a.seeds,
                          make_systems([s for s in a.systems if s not in skipped], a, device), settings,
                          device=device, label=scm_name, log=lambda msg: print(msg, flush=True))
        res["rows"] += [{"scm": scm_name, "label": scm0.graph_name, "kind": scm0.kind, **r,
                         "anchor": dcm.dowhy_anchor(scm0.graph_name, scm0.kind, r["node"])} for r in out["rows"]]
        res["timings"][scm_name] = out["timings"]
        res["wall_s"] = time.perf_counter() - t_start
        report.write_results(a.out, a.name, res, to_markdown(res))  # after every SCM: keep what is done
    return res


if __name__ == "__main__":
    main()
