"""One measurement of ``benchmarks/threads``: a fresh process (its thread policy is chosen at
import, with the competitors already running) runs each workload for ``--seconds`` after one
warm-up call and prints one JSON line: calls per second and images per second of each."""

from __future__ import annotations

import argparse
import json
import time

import causaldiff as cd  # applies the import-time policy of this process's environment
import torch

from benchmarks.throughput import loops


def workloads(channels: int, batch: int) -> dict:
    """Training: a UNet step of ``batch`` images and an MLP step (small ops, many parallel regions);
    query: the library's counterfactual of ``batch`` images, K = 5 + 5."""
    schedule = loops.NoiseSchedule(kind="linear", num_train_timesteps=1000)
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.SiLU(), torch.nn.Linear(64, 64), torch.nn.SiLU(),
                              torch.nn.Linear(64, 1))
    opt = torch.optim.Adam(mlp.parameters(), lr=1e-3)
    x = torch.randn(256, 8, generator=torch.Generator().manual_seed(1))

    def mlp_step() -> None:
        opt.zero_grad(set_to_none=True)
        mlp(x).square().mean().backward()
        opt.step()
    return {"train_unet": (loops.train_step(loops.denoiser("unet", channels).train(), schedule, batch), batch),
            "train_mlp": (mlp_step, 256),
            "query": (loops.library_loop(loops.workload(channels, 5, batch)), batch)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    a = ap.parse_args()
    policy = cd.threads.current_policy()
    out = {"threads": torch.get_num_threads(), "threads_reason": policy.threads_reason,
           "wait_policy": policy.wait_policy, "allocator": policy.allocator}
    for name, (fn, rows) in workloads(a.channels, a.batch).items():
        fn()
        calls, t0 = 0, time.perf_counter()
        while calls < 2 or time.perf_counter() - t0 < a.seconds:
            fn()
            calls += 1
        dt = time.perf_counter() - t0
        out[name] = {"calls_per_s": calls / dt, "rows_per_s": calls * rows / dt}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
