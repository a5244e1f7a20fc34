"""The measured work of the distributed benchmark: the SCM and the DDP training each process runs
(:func:`worker`, importable by name: the spawned processes unpickle it) and the two runs (:func:`measure`)."""

from __future__ import annotations

import hashlib
import statistics
import time
from typing import Any

import networkx as nx
import pyro.distributions as dist
import torch
import torch.distributed as tdist

import causaldiff as cd
from causaldiff.diffusion import MLPDenoiser, NoiseSchedule, ScheduleConfig, denoiser_loss
from causaldiff.distributed import launch
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


__all__ = ["SETTINGS", "chain_scm", "worker", "measure"]
