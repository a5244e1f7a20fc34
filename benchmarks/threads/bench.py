"""Training and query throughput with 0, 1 and 2 competing CPU-bound processes, for torch's
default threads (spin-waits, one thread a core), one thread, and causaldiff's import-time
policy (:mod:`causaldiff.threads`: torch's threads fitted to the cores free at import, waits as
libgomp sets them).

Every measurement is a fresh process (:mod:`.worker`) started after the competitors, so the policy
sees them as a user's process would; ``repeats`` rounds rotate the order of competitor counts and
of arms, so background load from other jobs hits every arm alike. Before each measurement the
1-minute load average and the cores busy (competitors included) are recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.throughput.machine import Worker, load
from causaldiff.evaluation import report

#: environment of each arm (on top of the caller's, less the thread and allocator variables)
ARMS = {
    "torch default": {"CAUSALDIFF_THREADS": "torch"},
    "1 thread": {"CAUSALDIFF_THREADS": "1"},
    "policy": {},
}
WORKLOADS = ("train_unet", "train_mlp", "query")
SETTINGS = {
    "cpu": dict(channels=16, batch=8, seconds=2.0, repeats=3, competitors=(0, 1, 2), arms=tuple(ARMS)),
    # the test's (torch's spin-waits crawl on a loaded machine: left out)
    "smoke": dict(channels=8, batch=2, seconds=0.1, repeats=1, competitors=(0, 1), arms=("1 thread", "policy")),
}


def _rotated(items: Sequence, r: int) -> list:
    return list(items[r % len(items):]) + list(items[:r % len(items)])


def measure(s: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per (round, competitors, arm): the worker's answer and the load before it."""
    args = ("--seconds", str(s["seconds"]), "--channels", str(s["channels"]), "--batch", str(s["batch"]))
    records = []
    for r in range(s["repeats"]):
        for c in _rotated(s["competitors"], r):
            print(f"round {r + 1} of {s['repeats']}: {c} competitors", file=sys.stderr, flush=True)
            spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(c)]
            try:
                time.sleep(0.5)
                for arm in _rotated(s["arms"], r):
                    before = load()
                    worker = Worker("benchmarks.threads.worker", ARMS[arm], args)
                    worker.close()
                    records.append({"round": r, "competitors": c, "arm": arm, **before, **worker.hello})
            finally:
                for p in spinners:
                    p.kill()
                    p.wait()
    return records


def table(records: list[dict[str, Any]], s: dict[str, Any]) -> list[dict[str, Any]]:
    """Median rows/s of each (competitors, arm, workload) over the rounds."""
    out = []
    for c in s["competitors"]:
        for arm in s["arms"]:
            mine = [x for x in records if x["competitors"] == c and x["arm"] == arm]
            out.append({"competitors": c, "arm": arm, "threads": sorted({x["threads"] for x in mine}),
                        "wait_policy": mine[0]["wait_policy"], "allocator": mine[0]["allocator"],
                        "loadavg_1min_median": statistics.median(x["loadavg_1min"] for x in mine),
                        "busy_cores_median": statistics.median(x["busy_cores"] or 0.0 for x in mine),
                        **{w: statistics.median(x[w]["rows_per_s"] for x in mine) for w in WORKLOADS}})
    return out


def summary(rows: list[dict[str, Any]], s: dict[str, Any]) -> dict[str, Any]:
    """The policy over torch's default per competitor count: the smallest ratio over the workloads."""
    by = {(r["competitors"], r["arm"]): r for r in rows}
    if "torch default" not in s["arms"]:
        return {}
    out: dict[str, Any] = {}
    for c in s["competitors"]:
        ratios = {w: by[c, "policy"][w] / by[c, "torch default"][w] for w in WORKLOADS}
        key = "idle" if c == 0 else f"{c}_competitor{'s' * (c > 1)}"
        out[f"policy_over_default_{key}"] = min(ratios.values())
        out[f"policy_over_default_{key}_per_workload"] = ratios
    return out


def to_markdown(res: dict[str, Any]) -> str:
    env, s = res["env"], res["config"]
    head = (f"# Thread policy under competing processes ({res['setting']})\n\n{env['device_name']}, torch {env['torch']}, "
            f"{env['date']}, commit {env['git_commit']}, {res['seconds']:.0f} s\n\nCommand: `{res['command']}`\n\n"
            f"Competitors: `python -c 'while True: pass'`. Workloads: a {s['channels']}-channel UNet training step and the library's "
            f"image counterfactual (K = 5 + 5), batch {s['batch']}, and an MLP training step (batch 256, width 64), "
            f"each run for {s['seconds']} s after a warm-up in a fresh process; {s['repeats']} rotated rounds, medians "
            "(rows per second). Load average and busy cores (competitors included) recorded before each "
            f"measurement; with no competitor, other jobs kept {res['busy_cores_0'][0]:.2f} to "
            f"{res['busy_cores_0'][1]:.2f} of {res['cpus']} cores busy, so \"idle\" means no competitor of ours.\n\n")
    rows = report.markdown_table(
        ["competitors", "arm", "threads", "waits", "train UNet img/s", "train MLP rows/s", "query img/s", "load avg",
         "busy cores"],
        [[r["competitors"], r["arm"], ",".join(map(str, r["threads"])), r["wait_policy"], f"{r['train_unet']:.1f}",
          f"{r['train_mlp']:.0f}", f"{r['query']:.2f}", f"{r['loadavg_1min_median']:.2f}",
          f"{r['busy_cores_median']:.2f}"] for r in res["rows"]])
    return head + rows + res.get("note", "") + "\n\n## Summary\n\n```json\n" + json.dumps(res["summary"], indent=2) + "\n```\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setting", choices=sorted(SETTINGS), default="cpu")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    a = ap.parse_args(argv)
    s = SETTINGS[a.setting]
    t0 = time.perf_counter()
    records = measure(s)
    rows = table(records, s)
    idle = [x["busy_cores"] or 0.0 for x in records if x["competitors"] == 0]
    res = {"setting": a.setting, "config": s, "cpus": len(os.sched_getaffinity(0)), "rows": rows,
           "summary": summary(rows, s), "records": records, "busy_cores_0": [min(idle), max(idle)],
           "env": report.environment("cpu"), "seconds": time.perf_counter() - t0,
           "command": shlex.join(["python", "-m", "benchmarks.threads", *(argv if argv is not None else sys.argv[1:])])}
    report.write_results(a.out, f"threads_{a.setting}", res, md := to_markdown(res))
    print(md)
    return res
