"""The workloads timed by ``benchmarks/throughput`` and ``benchmarks/threads``.

The image counterfactual of Diff-SCM (Sanchez & Tsaftaris 2022, Algorithm 1) on MNIST-sized
inputs: a UNet denoiser (channels x (1, 2, 4)) and a time-conditioned classifier, 28x28 images,
K guided DDIM inversion steps toward the factual class then K guided generation steps toward
another; each step one denoiser forward and one classifier forward + backward. Two versions:

* :func:`library_loop`: causaldiff's ``DDIMSampler`` + ``AntiCausalGuidance`` (through ``FastNet``
  for a non-default :class:`InferenceConfig`);
* :func:`hand_loop`: the same equations written out in plain torch, the reference.

Plus one training step and one forward of each denoiser family (UNet, DiT). Networks are seeded
and untrained: throughput and agreement do not need training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from causaldiff.diffusion import (AntiCausalGuidance, DDIMConfig, DDIMSampler, DiT, FastNet, ImagePredictor,
                                  InferenceConfig, NoiseSchedule, ParentHead, PredictorLikelihood, UNet, fast_eps)

HEADS = [ParentHead("digit", "categorical", 10)]
_AUTOCAST = {"fp32": None, "bf16": torch.bfloat16}


@dataclass
class Workload:
    """Seeded networks and inputs of one batch size."""

    unet: nn.Module
    pred: nn.Module
    schedule: NoiseSchedule
    sampler: DDIMSampler
    x: Tensor
    y: Tensor
    y_cf: Tensor


def workload(channels: int, steps: int, batch: int) -> Workload:
    torch.manual_seed(0)
    unet = UNet(1, base_channels=channels, channel_mult=(1, 2, 4), num_groups=min(32, channels // 2)).eval()
    pred = ImagePredictor(1, 10, base_channels=channels // 2, num_groups=min(32, channels // 4)).eval()
    schedule = NoiseSchedule(kind="linear", num_train_timesteps=1000)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 1, 28, 28, generator=g).clamp(-1, 1)
    y = torch.randint(0, 10, (batch,), generator=g)
    return Workload(unet, pred, schedule, DDIMSampler(schedule, DDIMConfig(num_inference_steps=steps)), x, y,
                    (y + 1) % 10)


def library_loop(w: Workload, config: InferenceConfig | None = None) -> Callable[[], Tensor]:
    """The counterfactual through causaldiff (``config`` None: its default, eager fp32)."""
    if config is None:
        eps = AntiCausalGuidance(w.unet, PredictorLikelihood(w.pred, HEADS), w.schedule)
    else:
        eps = fast_eps(AntiCausalGuidance(FastNet(w.unet, config), PredictorLikelihood(FastNet(w.pred, config), HEADS),
                                          w.schedule), config)

    def run() -> Tensor:
        u = w.sampler.invert(eps, w.x, [w.y], fixed_point_iters=0).sample
        return w.sampler.generate(eps, u, [w.y_cf]).sample
    return run


def hand_loop(w: Workload, precision: str = "fp32") -> Callable[[], Tensor]:
    """The same counterfactual written by hand: guided eps (Dhariwal & Nichol 2021, eq. 14), DDIM
    inversion and generation (Song et al. 2021, eq. 12 with eta = 0), the networks under autocast."""
    dtype = _AUTOCAST[precision]
    a = w.sampler.alphas_cumprod  # state 0 is data (alpha_bar = 1)
    taus = w.sampler.timesteps
    n = w.x.shape[0]

    def eps(x: Tensor, i: int, y: Tensor) -> Tensor:
        t = torch.full((n,), taus[i - 1], dtype=torch.long)
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            e = w.unet(x, t, None).float()
        x_in = x.detach().requires_grad_(True)
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            logits = w.pred(x_in, t)
        log_p = F.log_softmax(logits.float(), dim=-1).gather(1, y[:, None]).sum()
        (grad,) = torch.autograd.grad(log_p, x_in)
        return e - math.sqrt(1.0 - a[i]) * grad

    def run() -> Tensor:
        x = w.x
        for i in range(1, len(a)):  # inversion: x_i from x_{i-1}
            e = eps(x, i, w.y)
            x = math.sqrt(a[i]) * (x - math.sqrt(1.0 - a[i - 1]) * e) / math.sqrt(a[i - 1]) + math.sqrt(1.0 - a[i]) * e
        for i in range(len(a) - 1, 0, -1):  # generation: x_{i-1} from x_i
            e = eps(x, i, w.y_cf)
            x = math.sqrt(a[i - 1]) * (x - math.sqrt(1.0 - a[i]) * e) / math.sqrt(a[i]) + math.sqrt(1.0 - a[i - 1]) * e
        return x
    return run


def counterfactual_flops(w: Workload) -> float:
    """FLOPs of one image's counterfactual: 2K steps of a denoiser forward and a classifier forward
    counted three times (its backward to the input costs about twice its forward)."""
    x, t = w.x[:1], torch.full((1,), 500)
    with torch.no_grad():
        f_unet = flops_of(lambda: w.unet(x, t, None))
        f_pred = flops_of(lambda: w.pred(x, t))
    return 2.0 * w.sampler.num_steps * (f_unet + 3.0 * f_pred)


def denoiser(family: str, channels: int) -> nn.Module:
    """The two denoiser families at the Morpho-MNIST cpu sizes."""
    torch.manual_seed(0)
    if family == "unet":
        return UNet(1, base_channels=channels, channel_mult=(1, 2, 4), num_groups=min(32, channels // 2))
    return DiT(1, (28, 28), patch_size=4, hidden=4 * channels, depth=4, num_heads=4)


def train_step(net: nn.Module, schedule: NoiseSchedule, batch: int) -> Callable[[], None]:
    """One epsilon-prediction step (Ho et al. 2020, eq. 14) with Adam, on seeded data."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(batch, 1, 28, 28, generator=g).clamp(-1, 1)
    t = torch.randint(0, schedule.num_train_timesteps, (batch,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    x_t = schedule.q_sample(x0, t, noise)

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        F.mse_loss(net(x_t, t, None), noise).backward()
        opt.step()
    return run


def forward(net: nn.Module, batch: int) -> Callable[[], None]:
    """One no-grad denoiser forward."""
    x, t = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(3)), torch.full((batch,), 500)

    def run() -> None:
        with torch.no_grad():
            net(x, t, None)
    return run


def flops_of(fn: Callable[[], None]) -> float:
    """FLOPs of one call of ``fn`` (torch's FLOP counter)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())
