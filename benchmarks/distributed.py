"""Distributed on the CPU: 1 against 2 gloo processes, sharded queries and DDP training, in one run.

Each setting runs in fresh spawned processes with torchrun's environment
(``causaldiff.testing.run_distributed``), one torch thread each, under
``causaldiff.distributed.launch()``:

* queries: an SCM ``x -> y -> z`` with additive-noise MLP mechanisms (``hidden`` x 2 layers, fitted
  briefly, seeded: the same weights in every process); ``sample(n)`` (draws: split on RNG blocks) and
  ``counterfactual(rows, do(y))`` (exact: split on rows), both with ``batch_size`` (so the 2-process
  results are bit-identical to the 1-process ones: checked by digest);
* training: ``fit_model`` on an MLP denoiser (``causaldiff.diffusion.denoiser_loss``) with the same
  global batch at 1 and 2 processes (DDP: each rank computes half); the median step time, and the
  median ``all_reduce`` time of a tensor of the model's size (the communication of one step).

Medians over ``--repeats`` (queries) and over the steps after the first 3 (training); speed-ups
``t(1) / t(2)`` into ``results/distributed_cpu.{json,md}`` (``--quick``: the CI setting).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import pyro.distributions as dist
import torch
import torch.distributed as tdist

import causaldiff as cd
from causaldiff.diffusion import MLPDenoiser, NoiseSchedule, ScheduleConfig, denoiser_loss
from causaldiff.distributed import launch
from causaldiff.evaluation import report
from causaldiff.testing import run_distributed
from causaldiff.training import LocalStrategy, TrainConfig, fit_model, seeded_module, use_strategy

SETTINGS = {"full": {"n": 200_000, "batch_size": 16_384, "hidden": 256, "repeats": 5, "steps": 40,
                     "train_batch": 1024, "train_hidden": 512},
            "quick": {"n": 4_096, "batch_size": 1_024, "hidden": 32, "repeats": 2, "steps": 8,
                      "train_batch": 64, "train_hidden": 32}}


def chain_scm(hidden: int) -> cd.SCM:
    """x ~ N(0, 1) -> y -> z, y and z additive-noise MLPs fitted (seeded, 40 steps) on 2000 rows."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, generator=g)
    y = torch.tanh(2 * x) + 0.2 * torch.randn(2000, generator=g)
    rows = {"x": x, "y": y, "z": torch.sin(y) + 0.2 * torch.randn(2000, generator=g)}
    cfg = cd.AdditiveNoiseConfig(hidden=(hidden, hidden), steps=40, batch_size=256, eval_every=20)
    scm = cd.SCM(nx.DiGraph([("x", "y"), ("y", "z")]),
                 {"x": dist.Normal(0.0, 1.0), "y": cd.AdditiveNoiseMechanism(cfg), "z": cd.AdditiveNoiseMechanism(cfg)})
    with use_strategy(LocalStrategy()):  # the same weights in every process, fitted by each alone
        return scm.fit(rows)


def _timed(fn: Any, repeats: int) -> tuple[float, Any]:
    out, times = fn(), []  # the first call warms up
    for _ in range(repeats):
        tdist.barrier()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _digest(values: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(values):
        h.update(k.encode() + values[k].contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _train_steps(s: dict[str, Any]) -> tuple[list[float], int]:
    """Step times of ``s["steps"]`` steps of an MLP denoiser on 4096 rows of 2 features, 1 parent."""
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(4096, 2, generator=g), torch.randn(4096, 1, generator=g)
    model = seeded_module(lambda: MLPDenoiser((2,), 1, s["train_hidden"], 4), 0, "cpu")
    stamps: list[float] = []
    fit_model(model, denoiser_loss(NoiseSchedule(ScheduleConfig()), x, c), len(x),
              TrainConfig(steps=s["steps"], batch_size=s["train_batch"], bf16=False, log_every=s["steps"]),
              callback=lambda step, m: stamps.append(time.perf_counter()))
    return [b - a for a, b in zip(stamps, stamps[1:])][3:], sum(p.numel() for p in model.parameters())


def worker(s: dict[str, Any]) -> dict[str, Any]:
    """One process of a setting: its timings (rank 0's, after the gather) and result digests."""
    with launch(device="cpu") as run:
        scm = chain_scm(s["hidden"])
        out: dict[str, Any] = {"world_size": run.world_size, "rank": run.rank}
        t, rows = _timed(lambda: scm.sample(s["n"], seed=1, batch_size=s["batch_size"]), s["repeats"])
        out["sample_s"], out["sample_digest"] = t, _digest(rows)
        t, cf = _timed(lambda: scm.counterfactual(rows, {"y": 0.5}, batch_size=s["batch_size"]), s["repeats"])
        out["counterfactual_s"], out["counterfactual_digest"] = t, _digest(cf)
        steps, params = _train_steps(s)
        out["train_step_s"], out["params"] = statistics.median(steps), params
        if run.world_size > 1:
            buf = torch.zeros(params)
            out["allreduce_s"] = _timed(lambda: tdist.all_reduce(buf), 20)[0]
        return out


def measure(setting: str) -> dict[str, Any]:
    s = SETTINGS[setting]
    env = {"CAUSALDIFF_PROGRESS": "0", "OMP_NUM_THREADS": "1", "CAUSALDIFF_DIST_TIMEOUT": "600"}
    one = run_distributed(worker, 1, s, timeout=1800, env=env)[0]
    two = run_distributed(worker, 2, s, timeout=1800, env=env)
    speedup = {k: one[f"{k}_s"] / two[0][f"{k}_s"] for k in ("sample", "counterfactual", "train_step")}
    identical = all(one[f"{q}_digest"] == r[f"{q}_digest"] for q in ("sample", "counterfactual") for r in two)
    return {"settings": s, "one_process": one, "two_processes": two, "speedup_1_over_2": speedup,
            "identical_results": identical}


def to_markdown(res: dict[str, Any]) -> str:
    env, one, two, sp, s = res["env"], res["one_process"], res["two_processes"][0], res["speedup_1_over_2"], res["settings"]
    rows = [["sample", f"n = {s['n']:,}, batch_size {s['batch_size']:,}", f"{one['sample_s']:.3f}", f"{two['sample_s']:.3f}",
             f"{sp['sample']:.2f}"],
            ["counterfactual do(y)", f"n = {s['n']:,}, batch_size {s['batch_size']:,}", f"{one['counterfactual_s']:.3f}",
             f"{two['counterfactual_s']:.3f}", f"{sp['counterfactual']:.2f}"],
            ["DDP training step", f"global batch {s['train_batch']}, {one['params']:,} params",
             f"{one['train_step_s'] * 1e3:.2f} ms", f"{two['train_step_s'] * 1e3:.2f} ms", f"{sp['train_step']:.2f}"]]
    return "\n".join([
        f"# Distributed on the CPU: 1 vs 2 gloo processes{' (quick)' if s is SETTINGS['quick'] else ''}", "",
        f"Command: `{res['command']}`", "",
        f"Date {env['date']}; device {env['device_name']}; commit {env['git_commit']}; torch {env['torch']}; "
        f"one torch thread per process; {os.cpu_count()} CPU cores, shared with other jobs (load average after the "
        f"run {', '.join(f'{x:.2f}' for x in res['load_average_1_5_15_min'])}): 2 is the most a speed-up can be "
        "here, and less when another job holds a core.", "",
        report.markdown_table(["workload", "size", "1 process (s)", "2 processes (s)", "speed-up"], rows), "",
        f"2-process results bit-identical to 1 process (sha256 of every tensor): **{res['identical_results']}**. "
        f"One `all_reduce` of the training model's {one['params']:,} float32 parameters (gloo, loopback): "
        f"{two['allreduce_s'] * 1e3:.2f} ms, against a 1-process step of {one['train_step_s'] * 1e3:.2f} ms.", ""])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI setting: small sizes, seconds")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    res = {"command": shlex.join(["python", "benchmarks/distributed.py", *argv]), "env": report.environment("cpu"),
           **measure("quick" if a.quick else "full")}
    res["seconds"], res["load_average_1_5_15_min"] = time.perf_counter() - t0, os.getloadavg()
    report.write_results(a.out, "distributed_cpu_quick" if a.quick else "distributed_cpu", res, md := to_markdown(res))
    print(md)
    return res


if __name__ == "__main__":
    main()
