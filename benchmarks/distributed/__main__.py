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
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script (python benchmarks/distributed): the checkout on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from causaldiff.evaluation import report  # noqa: E402

from benchmarks.distributed.measure import SETTINGS, measure  # noqa: E402


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
