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

if __package__ in (None, ""):  # run as a script (python benchmarks/distributed): the checkout on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import causaldiff as cd  # noqa: E402
from causaldiff.diffusion import MLPDenoiser, NoiseSchedule, ScheduleConfig, denoiser_loss  # noqa: E402
from causaldiff.distributed import launch  # noqa: E402
from causaldiff.evaluation import report  # noqa: E402
from causaldiff.testing import run_distributed  # noqa: E402
from causaldiff.training import LocalStrategy, TrainConfig, fit_model, seeded_module, use_strategy  # noqa: E402

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


def _timed(fn: Any, repeats: int) -> tuple[float, float, Any]:
    """Median wall-clock and this thread's CPU seconds of ``fn()`` (after one warm-up call)."""
    out, wall, cpu = fn(), [], []
    for _ in range(repeats):
        tdist.barrier()
        t0, c0 = time.perf_counter(), time.thread_time()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    return statistics.median(wall), statistics.median(cpu), out


def _digest(values: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(values):
        h.update(k.encode() + values[k].contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _train_steps(s: dict[str, Any]) -> tuple[list[float], list[float], int]:
    """Step times of ``s["steps"]`` steps of an MLP denoiser on 4096 rows of 2 features, 1 parent."""
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(4096, 2, generator=g), torch.randn(4096, 1, generator=g)
    model = seeded_module(lambda: MLPDenoiser((2,), 1, s["train_hidden"], 4), 0, "cpu")
    stamps: list[tuple[float, float]] = []
    fit_model(model, denoiser_loss(NoiseSchedule(ScheduleConfig()), x, c), len(x),
              TrainConfig(steps=s["steps"], batch_size=s["train_batch"], bf16=False, log_every=s["steps"]),
              callback=lambda step, m: stamps.append((time.perf_counter(), time.thread_time())))
    steps = list(zip(stamps, stamps[1:]))[3:]
    return ([b[0] - a[0] for a, b in steps], [b[1] - a[1] for a, b in steps],
            sum(p.numel() for p in model.parameters()))


def worker(s: dict[str, Any]) -> dict[str, Any]:
    """One process of a setting: its timings (rank 0's, after the gather) and result digests."""
    with launch(device="cpu") as run:
        scm = chain_scm(s["hidden"])
        out: dict[str, Any] = {"world_size": run.world_size, "rank": run.rank}
        t, c, rows = _timed(lambda: scm.sample(s["n"], seed=1, batch_size=s["batch_size"]), s["repeats"])
        out.update(sample_s=t, sample_cpu_s=c, sample_digest=_digest(rows))
        t, c, cf = _timed(lambda: scm.counterfactual(rows, {"y": 0.5}, batch_size=s["batch_size"]), s["repeats"])
        out.update(counterfactual_s=t, counterfactual_cpu_s=c, counterfactual_digest=_digest(cf))
        wall, cpu, params = _train_steps(s)
        out.update(train_step_s=statistics.median(wall), train_step_cpu_s=statistics.median(cpu), params=params)
        if run.world_size > 1:
            buf = torch.zeros(params)
            out["allreduce_s"] = _timed(lambda: tdist.all_reduce(buf), 20)[0]
        return out


def measure(setting: str) -> dict[str, Any]:
    s = SETTINGS[setting]
    env = {"CAUSALDIFF_PROGRESS": "0", "OMP_NUM_THREADS": "1", "CAUSALDIFF_DIST_TIMEOUT": "600"}
    one = run_distributed(worker, 1, s, timeout=1800, env=env)[0]
    two = run_distributed(worker, 2, s, timeout=1800, env=env)
    work = ("sample", "counterfactual", "train_step")
    speedup = {k: one[f"{k}_s"] / two[0][f"{k}_s"] for k in work}
    speedup_cpu = {k: one[f"{k}_cpu_s"] / max(r[f"{k}_cpu_s"] for r in two) for k in work}
    identical = all(one[f"{q}_digest"] == r[f"{q}_digest"] for q in ("sample", "counterfactual") for r in two)
    return {"settings": s, "one_process": one, "two_processes": two, "speedup_1_over_2": speedup,
            "speedup_cpu_1_over_2": speedup_cpu, "identical_results": identical}


def to_markdown(res: dict[str, Any]) -> str:
    env, one, two, s = res["env"], res["one_process"], res["two_processes"], res["settings"]
    sizes = {"sample": f"n = {s['n']:,}, batch_size {s['batch_size']:,}",
             "counterfactual": f"n = {s['n']:,}, do(y), batch_size {s['batch_size']:,}",
             "train_step": f"DDP step, global batch {s['train_batch']}, {one['params']:,} params"}
    ms = lambda v: f"{v * 1e3:.1f}"  # noqa: E731
    rows = [[k, sizes[k], ms(one[f"{k}_s"]), ms(two[0][f"{k}_s"]), f"{res['speedup_1_over_2'][k]:.2f}",
             ms(one[f"{k}_cpu_s"]), " / ".join(ms(r[f"{k}_cpu_s"]) for r in two),
             f"{res['speedup_cpu_1_over_2'][k]:.2f}"] for k in sizes]
    header = ["workload", "size", "1 proc wall ms", "2 procs wall ms", "wall speed-up", "1 proc CPU ms",
              "2 procs CPU ms (rank 0 / 1)", "CPU speed-up"]
    return "\n".join([
        f"# Distributed on the CPU: 1 vs 2 gloo processes{' (quick)' if s is SETTINGS['quick'] else ''}", "",
        f"Command: `{res['command']}` ({res['seconds']:.0f} s)", "",
        f"Date {env['date']}; device {env['device_name']}; commit {env['git_commit']}; torch {env['torch']}; "
        f"one torch thread per process; {os.cpu_count()} CPU cores, shared with other jobs (load average after the "
        f"run {', '.join(f'{x:.2f}' for x in res['load_average_1_5_15_min'])}): 2 is the most a speed-up can be "
        "here, and the wall-clock one is less whenever other jobs hold the cores. `CPU` is each process's own "
        "thread time (immune to preemption); its speed-up, 1-process CPU over the busiest rank's, is the "
        "speed-up on idle cores, communication waits excluded.", "",
        report.markdown_table(header, rows), "",
        f"2-process results bit-identical to 1 process (sha256 of every tensor): **{res['identical_results']}**. "
        f"One `all_reduce` of the training model's {one['params']:,} float32 parameters (gloo, loopback): "
        f"{ms(two[0]['allreduce_s'])} ms, against a 1-process step of {ms(one['train_step_s'])} ms.", ""])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI setting: small sizes, seconds")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    res = {"command": shlex.join(["python", "-m", "benchmarks.distributed", *argv]), "env": report.environment("cpu"),
           **measure("quick" if a.quick else "full")}
    res["seconds"], res["load_average_1_5_15_min"] = time.perf_counter() - t0, os.getloadavg()
    report.write_results(a.out, "distributed_cpu_quick" if a.quick else "distributed_cpu", res, md := to_markdown(res))
    print(md)
    return res


if __name__ == "__main__":
    main()
