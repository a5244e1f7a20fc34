"""Settings of the Morpho-MNIST benchmark (``benchmarks/morphomnist/``): what one run is made
of (the image node's networks, training, budgets, the protocol's sizes), recorded in its results.

* ``quick``: tiny models, seconds (a CI test);
* ``cpu``: a small UNet and DiT on the same training budget, 2 cores, a 3k-image subset (not
  comparable with the paper's rows);
* ``gpu``: the full protocol on the 10k test split, training included, within
  ``time_limit_s`` = 6 minutes on one H100/H200 (checked and reported): the denoiser and the
  predictor train for the seconds of their budgets.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from causaldiff import metrics as M
from causaldiff.diffusion.ddim import DDIMConfig
from causaldiff.diffusion.nets import DenoiserConfig, UNetConfig
from causaldiff.diffusion.schedule import ScheduleConfig
from causaldiff.mechanisms.diffusion import DiffusionConfig

from benchmarks.common.setting import ImageSetting


class Setting(ImageSetting):
    """One benchmark setting (``quick``, ``cpu``, ``gpu`` in :data:`SETTINGS`)."""

    subset: int | None = None
    workers: int = 2
    nets: dict[str, DenoiserConfig] = {"unet": UNetConfig()}
    parents_steps: int = 2000
    abduction_fraction: float = 0.75
    metric_models: M.ClassifierConfig = M.ClassifierConfig()
    #: rows the guidance scales are swept on (None: every scale scored on every row)
    n_sweep: int | None = Field(None, ge=2)
    #: abduction fractions swept with the scales on the n_sweep rows (empty: abduction_fraction)
    fractions: tuple[Annotated[float, Field(gt=0.0, le=1.0)], ...] = ()
    #: rows of composition, reversibility and the measured MAEs (None: all n_test)
    n_detail: int | None = Field(None, ge=2)
    #: the wall-clock the whole run must fit (checked and reported; None: no limit)
    time_limit_s: float | None = Field(None, gt=0)


def _tiny_net(kind: str) -> dict[str, Any]:
    return {"kind": kind, "base_channels": 8, "channel_mult": (1, 2), "mid_attention": False,
            "num_groups": 4} if kind == "unet" else {"kind": kind, "patch_size": 4, "hidden": 32, "depth": 2}


SETTINGS: dict[str, Setting] = {
    "quick": Setting.model_validate({
        "subset": 32, "workers": 1, "n_train": 32, "n_test": 6, "n_reference": 16,
        "nets": {"unet": _tiny_net("unet")}, "predictor": {"base_channels": 8, "channel_mult": (1, 2), "num_groups": 4},
        "denoiser_train": {"steps": 4, "batch_size": 16}, "predictor_train": {"steps": 4, "batch_size": 16},
        "parents_steps": 20, "ddim_steps": 4, "scales": (0.0, 1.0), "cycles": (1, 10),
        "metric_models": {"steps": 4, "batch_size": 16, "hidden": 4},
        "vae": {"steps": 4, "batch_size": 16, "hidden": 4, "latent_dim": 4}}),
}


def _net(kind: str, width: int) -> dict[str, Any]:
    if kind == "unet":
        return {"kind": "unet", "base_channels": width, "channel_mult": (1, 2, 2), "mid_attention": True,
                "num_groups": 8}
    return {"kind": "dit", "patch_size": 4, "hidden": 4 * width, "depth": 4, "num_heads": 4}


SETTINGS["cpu"] = Setting.model_validate({
    "subset": 3000, "workers": 2, "n_train": 3000, "n_test": 200, "n_reference": 1000,
    "nets": {"unet": _net("unet", 16), "dit": _net("dit", 16)},
    "predictor": {"base_channels": 16, "channel_mult": (1, 2, 2), "num_groups": 8},
    "denoiser_train": {"steps": 800, "batch_size": 64, "lr": 1e-3},
    "predictor_train": {"steps": 400, "batch_size": 64, "lr": 1e-3},
    "parents_steps": 1000, "ddim_steps": 10, "scales": (0.0, 1.0, 3.0),
    "metric_models": {"steps": 500, "batch_size": 64}, "vae": {"steps": 500, "batch_size": 64}})
# One H100/H200, 6 minutes for everything: the reference UNet (the DiT's comparison is the cpu
# setting's), bf16 training; the denoiser trains for 150 s, the predictor for 30 s; K = 20 DDIM steps; abduction fractions 0.75 and 1 (do(t), do(i) did
# best at 0.75 on the cpu setting, do(digit) needed 1 on MNIST) and four guidance scales swept on
# 500 test rows, the pair chosen by choose_main(rule="rank") scored on all 10k; composition, reversibility and the measured MAEs on the first 500 (a CPU measurement:
# ~35 ms an image); the true counterfactuals rendered by 15 processes while the networks train.
SETTINGS["gpu"] = Setting.model_validate({
    "subset": None, "workers": 15, "n_train": 60_000, "n_test": 10_000, "n_reference": 10_000,
    "nets": {"unet": {"kind": "unet", "base_channels": 64, "channel_mult": (1, 2, 4)}},
    "predictor": {"base_channels": 64, "channel_mult": (1, 2, 4)},
    "denoiser_train": {"steps": 12_000, "batch_size": 256, "lr": 2e-4, "weight_decay": 0.01, "bf16": True},
    "predictor_train": {"steps": 3000, "batch_size": 256, "lr": 3e-4, "bf16": True},
    "denoiser_budget": {"seconds": 150, "probe_steps": 30, "warm": 10, "min_steps": 500},
    "predictor_budget": {"seconds": 30, "probe_steps": 30, "warm": 10, "min_steps": 300},
    "parents_steps": 1000, "ddim_steps": 20, "fractions": (0.75, 1.0), "scales": (0.0, 1.0, 3.0, 10.0),
    "n_sweep": 500, "n_detail": 500, "eval_batch": 2048, "time_limit_s": 360,
    "metric_models": {"steps": 2000, "batch_size": 256}, "vae": {"steps": 2000, "batch_size": 256}})


def image_config(setting: Setting, net: Any) -> DiffusionConfig:
    """The image node: an unconditional denoiser guided by an anti-causal predictor of all three
    parents (Diff-SCM's Algorithm 1), abduction by unguided DDIM inversion."""
    return DiffusionConfig(
        guidance="anticausal", guidance_scale=1.0, guide_abduction=False,
        abduction_fraction=setting.abduction_fraction, schedule=ScheduleConfig(kind="cosine"),
        sampler=DDIMConfig(num_inference_steps=setting.ddim_steps, inversion_fixed_point_iters=0),
        net=net, predictor=setting.predictor, train=setting.denoiser_train,
        predictor_train=setting.predictor_train)




def smoke(setting: Setting) -> Setting:
    """The same networks, budgets and protocol with tiny data and step counts: a setting's whole
    pipeline in a minute (the device script runs ``gpu``'s on the GPU before the real run)."""
    return setting.model_copy(update={
        **setting.smoke_update(batch_size=8), "subset": 32, "workers": min(setting.workers, 2), "n_train": 32, "n_test": 6, "n_reference": 16,
        "n_sweep": None if setting.n_sweep is None else 4, "n_detail": None if setting.n_detail is None else 3,
        "eval_batch": 4, "ddim_steps": 2, "parents_steps": 2, "cycles": (1, 2),
        "metric_models": setting.metric_models.model_copy(update={"steps": 2, "batch_size": 8})})


__all__ = ["Setting", "SETTINGS", "image_config", "smoke"]
