"""Throughput of the image counterfactual loop on CPU: the library's default against each process
setting, bf16, compile and a hand-written loop, interleaved in one run.

Each process setting (torch's threads and spin-waits, passive waits, the allocator kept, the
library's import-time policy) is its own process (:mod:`.worker`); the parent runs ``repeats``
rounds, each timing every row once in a rotated order, so a busy spell of the shared machine hits
every row alike, and records the load average and the cores others kept busy before each call.
Rows report the median images/s. The hand-written loop (:func:`.loops.hand_loop`) is the
reference; its best row per precision is "best".
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.throughput.loops import counterfactual_flops, workload
from benchmarks.throughput.machine import Worker, load
from causaldiff.evaluation import report

#: environment of each process setting (on top of the caller's, less what the settings control)
PROCESSES = {
    "torch": {"CAUSALDIFF_THREADS": "torch", "CAUSALDIFF_MALLOC": "0"},
    "passive": {"CAUSALDIFF_THREADS": "torch", "CAUSALDIFF_MALLOC": "0", "OMP_WAIT_POLICY": "PASSIVE"},
    "allocator": {"CAUSALDIFF_THREADS": "torch"},
    "library": {},
}
TORCH_DEFAULT = "torch default (spin-waits, glibc default)"
SETTINGS = {
    "cpu": dict(channels=16, steps=5, batch=32, repeats=5, compile=False, processes=tuple(PROCESSES)),
    # the test's: two processes (a spin-waiting one crawls when the machine is loaded)
    "smoke": dict(channels=8, steps=2, batch=4, repeats=2, compile=False, processes=("passive", "library")),
}


def rows(s: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Row name -> (process, spec) of the setting ``s``."""
    cf = dict(loop="library", channels=s["channels"], steps=s["steps"], batch=s["batch"], precision="fp32",
              compile=False, threads=None)
    hand = {**cf, "loop": "hand"}
    out = {
        TORCH_DEFAULT: ("torch", cf),
        "1 thread": ("torch", {**cf, "threads": 1}),
        "passive waits": ("passive", cf),
        "allocator kept": ("allocator", cf),
        "allocator kept, 1 thread": ("allocator", {**cf, "threads": 1}),
        "library default": ("library", cf),
        "library bf16": ("library", {**cf, "precision": "bf16"}),
    }
    if s["compile"]:
        out["library bf16 + compile"] = ("library", {**cf, "precision": "bf16", "compile": True})
    for precision in ("fp32", "bf16"):
        for n in (1, 2):
            out[f"hand-written {precision}, {n} thread{'s' * (n > 1)}"] = (
                "library", {**hand, "precision": precision, "threads": n})
        out[f"hand-written {precision}, 2 threads, spin-waits"] = ("allocator", {**hand, "precision": precision,
                                                                                 "threads": 2})
    for family in ("unet", "dit"):
        for loop in ("train", "forward"):
            out[f"{family} {loop}"] = ("library", dict(loop=loop, family=family, channels=s["channels"],
                                                       batch=s["batch"], threads=None))
    return {name: row for name, row in out.items() if row[0] in s["processes"]}


def measure(table: dict[str, tuple[str, dict[str, Any]]], repeats: int) -> dict[str, Any]:
    """Warm every row up, then ``repeats`` rotated rounds of one timed call per row."""
    workers = {p: Worker("benchmarks.throughput.worker", PROCESSES[p]) for p in dict.fromkeys(p for p, _ in table.values())}
    try:
        warm = {name: workers[p].ask({"prepare": name, "spec": spec}) for name, (p, spec) in table.items()}
        names = list(table)
        seconds: dict[str, list[float]] = {name: [] for name in names}
        loads: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for r in range(repeats):
            print(f"round {r + 1} of {repeats}", file=sys.stderr, flush=True)
            for name in names[r % len(names):] + names[:r % len(names)]:
                loads[name].append(load())
                seconds[name].append(workers[table[name][0]].ask({"time": name})["seconds"])
    finally:
        for w in workers.values():
            w.close()
    return {"processes": {p: {"env": PROCESSES[p], **w.hello} for p, w in workers.items()},
            "warm": warm, "seconds": seconds, "loads": loads}


def summarise(table, m: dict[str, Any], batch: int, flops: dict[str, float]) -> list[dict[str, Any]]:
    """One result row per table row: median images/s and GFLOP/s, the setting and the load."""
    out = []
    for name, (p, spec) in table.items():
        sec = statistics.median(m["seconds"][name])
        hello = m["processes"][p]
        key = name if spec["loop"] in ("train", "forward") else "counterfactual"
        out.append({"row": name, "process": p, "loop": spec["loop"], "precision": spec.get("precision", "fp32"),
                    "threads": spec["threads"] or hello["threads"], "wait_policy": hello["wait_policy"],
                    "allocator": hello["allocator"], "images_per_s": batch / sec, "gflop_per_s": flops[key] / sec / 1e9,
                    "seconds_median": sec, "seconds": m["seconds"][name], "warmup_s": m["warm"][name]["warmup_s"],
                    "max_abs_diff": m["warm"][name]["max_abs_diff"],
                    "loadavg_1min_median": statistics.median(x["loadavg_1min"] for x in m["loads"][name]),
                    "busy_cores_median": statistics.median(x["busy_cores"] or 0.0 for x in m["loads"][name])})
    return out


def best_ratio(rows_: list[dict[str, Any]], precision: str) -> float:
    """images/s of the library default (of ``precision``) over the best hand-written row of it."""
    ips = {r["row"]: r["images_per_s"] for r in rows_}
    best = max(r["images_per_s"] for r in rows_ if r["loop"] == "hand" and r["precision"] == precision)
    return ips["library default" if precision == "fp32" else f"library {precision}"] / best


def flops_per_call(s: dict[str, Any]) -> dict[str, float]:
    """FLOPs of one call of each row kind: the counterfactual of the batch, each family's step."""
    from benchmarks.throughput import loops

    out = {"counterfactual": counterfactual_flops(workload(s["channels"], s["steps"], 1)) * s["batch"]}
    schedule = loops.NoiseSchedule(kind="linear", num_train_timesteps=1000)
    for family in ("unet", "dit"):
        out[f"{family} train"] = loops.flops_of(loops.train_step(loops.denoiser(family, s["channels"]), schedule,
                                                                 s["batch"]))
        out[f"{family} forward"] = loops.flops_of(loops.forward(loops.denoiser(family, s["channels"]), s["batch"]))
    return out


def to_markdown(res: dict[str, Any]) -> str:
    env, s = res["env"], res["config"]
    procs = "\n".join(f"- `{p}` ({', '.join(f'{k}={v}' for k, v in h['env'].items()) or 'no variables: the library default'}): "
                      f"{h['threads']} threads ({h['threads_reason']}), waits {h['wait_policy']}, allocator {h['allocator']}"
                      for p, h in res["processes"].items())
    head = (f"# Throughput of the image counterfactual loop ({res['setting']})\n\n{env['device_name']}, torch {env['torch']}, "
            f"{env['date']}, commit {env['git_commit']}, {res['seconds']:.0f} s\n\nCommand: `{res['command']}`\n\n"
            f"Load while measuring: 1-minute load average {res['loadavg_1min'][0]:.2f} to {res['loadavg_1min'][1]:.2f}, "
            f"cores busy with other jobs {res['busy_cores'][0]:.2f} to {res['busy_cores'][1]:.2f} (of {res['cpus']}).\n\n"
            f"UNet {s['channels']} ch x (1, 2, 4) + time-conditioned classifier, 28x28, batch {s['batch']}, "
            f"K = {s['steps']} + {s['steps']}, {res['gflop_per_image']:.2f} GFLOP per image; {s['repeats']} interleaved "
            "repeats per row, medians. Untrained seeded networks; max abs diff: the counterfactual images against "
            "the library's exact default (images in [-1, 1]).\n\nProcesses:\n" + procs + "\n\n")
    ips = {r["row"]: r["images_per_s"] for r in res["rows"]}
    cf = report.markdown_table(
        ["row", "threads", "images/s", "GFLOP/s", "x library default", "max abs diff", "load avg", "busy cores"],
        [[r["row"], r["threads"], f"{r['images_per_s']:.2f}", f"{r['gflop_per_s']:.1f}",
          f"{r['images_per_s'] / ips['library default']:.2f}", "—" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}",
          f"{r['loadavg_1min_median']:.2f}", f"{r['busy_cores_median']:.2f}"]
         for r in res["rows"] if r["loop"] in ("library", "hand")])
    fam = report.markdown_table(
        ["denoiser", "step", "threads", "images/s", "GFLOP/s", "ms per call"],
        [[r["row"].split()[0], r["loop"], r["threads"], f"{r['images_per_s']:.1f}", f"{r['gflop_per_s']:.1f}",
          f"{1e3 * r['seconds_median']:.1f}"] for r in res["rows"] if r["loop"] in ("train", "forward")])
    return (head + cf + "\n\n## Denoiser families (batch " + str(s["batch"]) + ", the library's process)\n\n" + fam
            + "\n\n## Summary\n\n```json\n" + json.dumps(res["summary"], indent=2) + "\n```\n" + res.get("note", ""))


def run(setting: str) -> dict[str, Any]:
    s = SETTINGS[setting]
    table = rows(s)
    flops = flops_per_call(s)
    m = measure(table, s["repeats"])
    result_rows = summarise(table, m, s["batch"], flops)
    every = [x for v in m["loads"].values() for x in v]
    la, busy = [x["loadavg_1min"] for x in every], [x["busy_cores"] or 0.0 for x in every]
    ips = {r["row"]: r["images_per_s"] for r in result_rows}
    summary = {"default_over_best": best_ratio(result_rows, "fp32"), "bf16_default_over_best": best_ratio(result_rows, "bf16"),
               "bf16_over_fp32": ips["library bf16"] / ips["library default"]}
    if TORCH_DEFAULT in ips:
        summary["default_over_torch_default"] = ips["library default"] / ips[TORCH_DEFAULT]
    return {"setting": setting, "config": s, "cpus": torch.multiprocessing.cpu_count(), "processes": m["processes"],
            "gflop_per_image": flops["counterfactual"] / s["batch"] / 1e9, "rows": result_rows, "summary": summary,
            "loadavg_1min": [min(la), max(la)], "busy_cores": [min(busy), max(busy)]}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setting", choices=sorted(SETTINGS), default="cpu")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    ap.add_argument("--compile", action="store_true",
                    help="add a torch.compile row (its warm-up did not finish in 400 s on 2 loaded cores)")
    a = ap.parse_args(argv)
    if a.compile:
        SETTINGS[a.setting] = {**SETTINGS[a.setting], "compile": True}
    t0 = time.perf_counter()
    res = run(a.setting)
    res.update(env=report.environment("cpu"), seconds=time.perf_counter() - t0,
               command=shlex.join(["python", "-m", "benchmarks.throughput", *(argv if argv is not None else sys.argv[1:])]))
    report.write_results(a.out, f"throughput_{a.setting}", res, md := to_markdown(res))
    print(md)
    return res
