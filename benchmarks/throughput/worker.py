"""A measuring process of ``benchmarks/throughput``: started with one process-wide setting (wait
policy, allocator: fixed when torch loads), it reads one JSON request a line on stdin and answers
one JSON line on stdout: ``{"prepare": ROW, "spec": {...}}`` builds and warms a row up,
``{"time": ROW}`` times one call of it."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import causaldiff as cd  # applies the import-time policy of this process's environment
import torch

from benchmarks.throughput import loops
from causaldiff.diffusion import InferenceConfig


def build(spec: dict[str, Any]) -> tuple[Any, Any]:
    """(the callable one timed call runs, the workload when it is a counterfactual)."""
    if spec["loop"] in ("train", "forward"):
        net = loops.denoiser(spec["family"], spec["channels"])
        if spec["loop"] == "forward":
            return loops.forward(net.eval(), spec["batch"]), None
        schedule = loops.NoiseSchedule(kind="linear", num_train_timesteps=1000)
        return loops.train_step(net.train(), schedule, spec["batch"]), None
    w = loops.workload(spec["channels"], spec["steps"], spec["batch"])
    if spec["loop"] == "hand":
        return loops.hand_loop(w, spec["precision"]), w
    default = spec["precision"] == "fp32" and not spec["compile"]
    config = None if default else InferenceConfig(precision=spec["precision"], compile=spec["compile"])
    return loops.library_loop(w, config), w


def main() -> None:
    policy = cd.threads.current_policy()
    own_threads = torch.get_num_threads()
    rows: dict[str, tuple[Any, dict[str, Any], float | None]] = {}
    print(json.dumps({"threads": own_threads, "threads_reason": policy.threads_reason,
                      "wait_policy": policy.wait_policy, "allocator": policy.allocator}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if "prepare" in req:
            spec = req["spec"]
            torch.set_num_threads(spec.get("threads") or own_threads)
            fn, w = build(spec)
            t0 = time.perf_counter()
            out = fn()  # warm-up (compiles)
            diff = None
            if w is not None:  # agreement with causaldiff's exact default loop
                diff = (out - loops.library_loop(w)()).abs().max().item()
            rows[req["prepare"]] = (fn, spec, diff)
            print(json.dumps({"warmup_s": time.perf_counter() - t0, "max_abs_diff": diff}), flush=True)
        else:
            fn, spec, _ = rows[req["time"]]
            torch.set_num_threads(spec.get("threads") or own_threads)
            t0 = time.perf_counter()
            fn()
            print(json.dumps({"seconds": time.perf_counter() - t0, "threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    main()
