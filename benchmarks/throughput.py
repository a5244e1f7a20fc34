"""Throughput of the image counterfactual loop: eager fp32 against each fast setting, in one run.

The MNIST-sized workload of Diff-SCM (Sanchez & Tsaftaris 2022): a UNet denoiser (64 channels x
(1, 2, 4)) and the time-conditioned classifier, 28x28 images; a counterfactual is K guided DDIM
inversion steps then K guided generation steps toward another class, each step one denoiser
forward and one predictor forward + backward (``causaldiff.diffusion``: ``DDIMSampler``,
``AntiCausalGuidance``, ``fast``). Per setting and batch: images per second, the ratio to eager
fp32, the share of the bf16 matmul peak measured in the same run (FLOPs counted on one step:
denoiser forward + 3x predictor forward),
peak memory (CUDA) and agreement (max abs difference of the counterfactual images to eager fp32).
Networks are seeded, untrained (throughput and agreement do not need training).

``--setting cpu``: 16 channels, K = 5 + 5, batches 1, 8, 32 (committed; ``smoke``: the test's). ``--setting gpu``: the
full workload at batches 1, 64, 256, 1024 (one device command of at most 3 minutes, see README).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from causaldiff.diffusion import (AntiCausalGuidance, DDIMConfig, DDIMSampler, FastNet, ImagePredictor,
                                  InferenceConfig, NoiseSchedule, ParentHead, PredictorLikelihood, UNet, fast_eps)
from causaldiff.evaluation import report

SETTINGS = {
    "cpu": dict(channels=16, steps=5, batches=(1, 8, 32), reps=1, fast={
        "bf16": InferenceConfig(precision="bf16"),
        "channels_last": InferenceConfig(channels_last=True),
        "bf16+fixed": InferenceConfig(precision="bf16", fixed_batch=32)}),
    "smoke": dict(channels=8, steps=2, batches=(1, 3), reps=1, fast={  # the test's setting
        "bf16+fixed": InferenceConfig(precision="bf16", fixed_batch=2),
        "fp16+compile": InferenceConfig(precision="fp16", compile=True, compile_backend="eager")}),
    "gpu": dict(channels=64, steps=100, batches=(1, 64, 256, 1024), reps=1, fast={
        "bf16": InferenceConfig(precision="bf16"),
        "bf16+graphs": InferenceConfig(precision="bf16", cuda_graphs=True),
        "bf16+graphs+cl": InferenceConfig(precision="bf16", channels_last=True, cuda_graphs=True),
        # compiling costs tens of seconds per shape: measured at two batches only
        "bf16+compile+graphs": (InferenceConfig(precision="bf16", compile=True, cuda_graphs=True), (1, 256))}),
}
HEADS = [ParentHead("digit", "categorical", 10)]


def networks(channels: int, device: torch.device) -> tuple[UNet, ImagePredictor]:
    torch.manual_seed(0)
    unet = UNet(1, base_channels=channels, channel_mult=(1, 2, 4), num_groups=min(32, channels // 2))
    pred = ImagePredictor(1, 10, base_channels=channels // 2, num_groups=min(32, channels // 4))
    return unet.to(device).eval(), pred.to(device).eval()


def guided_eps(unet, pred, schedule: NoiseSchedule, config: InferenceConfig | None):
    """The guided noise prediction of one step under ``config`` (None: eager fp32)."""
    if config is None:
        return AntiCausalGuidance(unet, PredictorLikelihood(pred, HEADS), schedule)
    eps = AntiCausalGuidance(FastNet(unet, config), PredictorLikelihood(FastNet(pred, config), HEADS), schedule)
    return fast_eps(eps, config)


def counterfactual(sampler: DDIMSampler, eps, x: torch.Tensor, y: torch.Tensor, y_cf: torch.Tensor) -> torch.Tensor:
    """K guided inversion steps toward the factual class, then K guided steps toward ``y_cf``."""
    u = sampler.invert(eps, x, [y], fixed_point_iters=0).sample
    return sampler.generate(eps, u, [y_cf]).sample


def bf16_peak(device: torch.device) -> float:
    """Dense bf16 matmul FLOP/s measured now (the roof the loop is compared to)."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    timer = report.Timer(device)
    a @ a
    with timer("mm"):
        for _ in range(5):
            a @ a
    return 5 * 2 * n ** 3 / timer.seconds["mm"]


def step_flops(unet, pred, x: torch.Tensor) -> float:
    """FLOPs of one guided step on ``x``'s rows: the denoiser forward plus the predictor forward
    counted three times (its backward to the input costs about twice its forward)."""
    t = torch.full((x.shape[0],), 500, device=x.device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(x, t, None)
        f_unet = counter.get_total_flops()
        pred(x, t)
    return float(f_unet + 3 * (counter.get_total_flops() - f_unet))


def measure(sampler, eps, x, y, y_cf, reps: int, device: torch.device) -> tuple[float, torch.Tensor, float | None]:
    """(seconds per counterfactual of the batch, the images, CUDA peak GiB) after one warm-up."""
    out = counterfactual(sampler, eps, x, y, y_cf)  # warm-up: compiles, captures
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    timer = report.Timer(device)
    with timer("run"):
        for _ in range(reps):
            out = counterfactual(sampler, eps, x, y, y_cf)
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else None
    return timer.seconds["run"] / reps, out, peak


def run(setting: str, device: torch.device) -> dict[str, Any]:
    s = SETTINGS[setting]
    unet, pred = networks(s["channels"], device)
    schedule = NoiseSchedule(kind="linear", num_train_timesteps=1000)
    sampler = DDIMSampler(schedule, DDIMConfig(num_inference_steps=s["steps"]))
    g = torch.Generator().manual_seed(1)
    n_max = max(s["batches"])
    x_all = torch.randn(n_max, 1, 28, 28, generator=g).clamp(-1, 1).to(device)
    y_all = torch.randint(0, 10, (n_max,), generator=g).to(device)
    peak = bf16_peak(device)
    flops_per_image = step_flops(unet, pred, x_all[:1]) * 2 * s["steps"]
    rows = []
    for b in s["batches"]:
        x, y = x_all[:b], y_all[:b]
        y_cf = (y + 1) % 10
        ref_s, ref, ref_mem = measure(sampler, guided_eps(unet, pred, schedule, None), x, y, y_cf, s["reps"], device)
        rows.append(_row("eager fp32", b, ref_s, ref_s, 0.0, ref_mem, flops_per_image, peak))
        for name, cfg in s["fast"].items():
            cfg, only = cfg if isinstance(cfg, tuple) else (cfg, s["batches"])
            if b not in only:
                continue
            sec, out, mem = measure(sampler, guided_eps(unet, pred, schedule, cfg), x, y, y_cf, s["reps"], device)
            rows.append(_row(name, b, sec, ref_s, (out - ref).abs().max().item(), mem, flops_per_image, peak))
            print(rows[-1], flush=True)
    return {"setting": setting, "channels": s["channels"], "K": s["steps"], "bf16_peak_tflops": peak / 1e12,
            "gflops_per_image": flops_per_image / 1e9, "rows": rows}


def _row(name, batch, sec, ref_sec, diff, mem, flops_per_image, peak) -> dict[str, Any]:
    ips = batch / sec
    return {"setting": name, "batch": batch, "images_per_s": ips, "seconds_per_batch": sec, "latency_s": sec if batch == 1 else None,
            "ratio_to_eager": ref_sec / sec, "share_of_bf16_peak": ips * flops_per_image / peak,
            "peak_gib": mem, "max_abs_diff": diff}


def to_markdown(res: dict[str, Any]) -> str:
    env = res["env"]
    head = (f"# Throughput of the image counterfactual loop ({res['setting']})\n\n{env['device_name']}, torch "
            f"{env['torch']}, {env['threads']} threads, {env['date']}, commit {env['git_commit']}\n\n"
            f"Command: `{res['command']}`\n\nUNet {res['channels']} ch x (1, 2, 4) + time-conditioned classifier, "
            f"28x28, K = {res['K']} + {res['K']}; {res['gflops_per_image']:.2f} GFLOP per image; bf16 matmul peak "
            f"measured {res['bf16_peak_tflops']:.2f} TFLOP/s. Untrained seeded networks (agreement: max abs "
            "difference of the counterfactual images to eager fp32; images in [-1, 1]).\n\n")
    table = report.markdown_table(
        ["setting", "batch", "images/s", "x eager fp32", "share of bf16 peak", "peak GiB", "max abs diff"],
        [[r["setting"], r["batch"], f"{r['images_per_s']:.2f}", f"{r['ratio_to_eager']:.2f}",
          f"{r['share_of_bf16_peak']:.4f}", "—" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}",
          f"{r['max_abs_diff']:.1e}"] for r in res["rows"]])
    return head + table + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setting", choices=sorted(SETTINGS), default="cpu")
    ap.add_argument("--device", default=None, help="default: cuda for --setting gpu, else cpu")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    a = ap.parse_args(argv)
    device = torch.device(a.device or ("cuda" if a.setting == "gpu" else "cpu"))
    t0 = time.perf_counter()
    res = run(a.setting, device)
    res.update(env=report.environment(device), seconds=time.perf_counter() - t0,
               command=shlex.join(["python", "benchmarks/throughput.py", *(argv if argv is not None else sys.argv[1:])]))
    report.write_results(a.out, f"throughput_{a.setting}", res, md := to_markdown(res))
    print(md)
    return res


if __name__ == "__main__":
    main()
