"""Settings of the Morpho-MNIST benchmark (``benchmarks/morphomnist/``): what one run is made
of (the image node's networks, training, budgets, the protocol's sizes), recorded in its results.

* ``quick``: tiny models, seconds (a CI test);
* ``cpu``: a small UNet on 2 cores, 2k rendered training images, 500 test rows (not comparable
  with the paper's rows);
* ``cpu_full``: the comparable CPU row: every effectiveness column on all 10k test rows, a small
  UNet trained on one core (12k rendered training images);
* ``gpu``: the full protocol on the 10k test split, training included, within
  ``time_limit_s`` = 6 minutes on one H100/H200 (checked and reported): the denoiser trains for
  the seconds of its budget (the anti-causal predictor's budget serves ``guidance="anticausal"``).

The scales are the anchor scales w of the conditional node (its default), or the guidance scales
of the anti-causal one.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from causaldiff.diffusion.ddim import DDIMConfig, InversionSolver, Spacing
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
    #: parents dropped (the learned null embedding) in the denoiser's training
    cond_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    #: fixed-point refinements of each DDIM inversion step (pilot on MNIST, K = 20: 0/1/3
    #: refinements gave composition L1 1.79/0.55/0.19)
    refinements: int = Field(3, ge=0)
    #: how they iterate and the DDIM timestep table (the sampler's ``inversion_solver`` and
    #: ``spacing``): on the cpu_full model, K = 10, 32 validation rows, 1/3-cycle composition L1
    #: was 2.47/5.30 (leading, 2 picard), 0.31/0.66 (leading, 8 picard), 0.07/0.21 (quadratic, 8
    #: picard), 0.078/0.224 (quadratic, 4 anderson), 0.019/0.047 (quadratic, 6 anderson)
    inversion_solver: InversionSolver = "picard"
    spacing: Spacing = "leading"
    #: the image node's guidance: the amortised conditional denoiser with anchored guidance
    #: (``scales`` are its anchor scales w), or Diff-SCM's anti-causal classifier guidance
    #: (``scales`` its guidance scales)
    guidance: str = Field("conditional", pattern="^(conditional|anticausal)$")
    #: also fit and score each net with Diff-SCM's anti-causal guidance, its own row ("NET anticausal")
    anticausal_row: bool = False
    #: validation rows of the TRAINING split (the last n_sweep of the n_train drawn, not fitted)
    #: the scales and fractions are swept on (None: every scale scored on every test row)
    n_sweep: int | None = Field(None, ge=2)
    #: abduction fractions swept with the scales on the n_sweep rows (empty: abduction_fraction)
    fractions: tuple[Annotated[float, Field(gt=0.0, le=1.0)], ...] = ()
    #: choose the (fraction, scale) pair per intervention on the validation rows: each do(node)'s
    #: pair the best on its own effectiveness column, the null intervention's (composition) the best
    #: on the 1-cycle composition (False: one pair for all, by the mean rank of :data:`run.RANKED`)
    per_intervention: bool = False
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
        "vae": {"steps": 4, "batch_size": 16, "hidden": 4, "latent_dim": 4}}),
}


def _net(kind: str, width: int) -> dict[str, Any]:
    if kind == "unet":
        return {"kind": "unet", "base_channels": width, "channel_mult": (1, 2, 2), "mid_attention": True,
                "num_groups": 8}
    return {"kind": "dit", "patch_size": 4, "hidden": 4 * width, "depth": 4, "num_heads": 4}


# Two shared cores (not comparable with the paper's rows: fewer test rows, a small UNet): 2,000
# rendered training rows (the last 100 the validation rows of the sweep), 500 test rows,
# composition on the first 200; K = 20 DDIM steps, 3 refinements per inversion step; Diff-SCM's
# anti-causal guidance (an unconditional UNet and a 1,000-step predictor) as its own row.
SETTINGS["cpu"] = Setting.model_validate({
    "subset": 2000, "workers": 2, "n_train": 2000, "n_sweep": 100, "n_test": 500, "n_reference": 500,
    "n_detail": 200, "nets": {"unet": _net("unet", 16)}, "anticausal_row": True,
    "predictor": {"base_channels": 16, "channel_mult": (1, 2, 2), "num_groups": 8},
    "denoiser_train": {"steps": 3000, "batch_size": 64, "lr": 1e-3},
    "predictor_train": {"steps": 1000, "batch_size": 64, "lr": 1e-3},
    "parents_steps": 1000, "ddim_steps": 20, "refinements": 3, "fractions": (0.75, 1.0),
    "scales": (1.0, 2.0, 3.0), "vae": {"steps": 500, "batch_size": 64}})
# The comparable CPU row (one core, about 50 minutes of training): every effectiveness column on
# all 10,000 published test rows, composition, reversibility, the measured MAEs and the true
# counterfactuals on the first 500; 12,000 rendered training rows (the last 150 the validation rows
# of the sweep); a 16-channel UNet without attention (1.6x faster here than with it), 4,500 steps of
# 64 (2 steps/s on a shared core); the abduction fraction and anchor scale chosen per intervention on
# the validation rows; no anti-causal row (a second training). K = 10 quadratic DDIM steps with 4
# Anderson refinements, full abduction, anchor scales 1-4 (its committed row was scored with K = 10
# leading steps, 2 Picard refinements, fractions 0.7 and 1, scales 1-3).
SETTINGS["cpu_full"] = Setting.model_validate({
    "subset": 12_000, "workers": 1, "n_train": 12_000, "n_sweep": 150, "n_test": 10_000, "n_reference": 2000,
    "n_detail": 500, "nets": {"unet": {**_net("unet", 16), "mid_attention": False}},
    "denoiser_train": {"steps": 4500, "batch_size": 64, "lr": 1e-3, "warmup_steps": 200, "lr_schedule": "cosine",
                       "checkpoint_every": 250},
    "parents_steps": 1000, "ddim_steps": 10, "refinements": 4, "inversion_solver": "anderson",
    "spacing": "quadratic", "fractions": (1.0,), "scales": (1.0, 1.5, 2.0, 3.0, 4.0), "per_intervention": True, "eval_batch": 500, "vae": {"steps": 500, "batch_size": 64}})
# cpu_full with twice the denoiser's training (9,000 steps of 64, cosine), on 2 threads: sampling
# from fresh noise under the validation rows' own parents, the 4,500-step UNet reached digit
# accuracy 0.75 and thickness MAE 0.21 (released predictors): its conditioning, not the sampler,
# bounds the do(t) and do(i) columns.
SETTINGS["cpu_long"] = SETTINGS["cpu_full"].model_copy(update={
    "denoiser_train": SETTINGS["cpu_full"].denoiser_train.model_copy(update={"steps": 9000})})
# One H100/H200, 6 minutes for everything once the 60k training renders are cached
# (render_split, ~0.2 s an image on one core: device.sh renders them first): the UNet trains for
# 150 s in bf16; K = 20 quadratic DDIM steps with 4 Anderson refinements; abduction fractions 0.75 and 1 and four
# anchor scales swept on 500 validation rows of the training split, the pair chosen by
# choose_main(rule="rank") scored on all 10k test rows; composition, reversibility and the measured
# MAEs on the first 1,000; the true counterfactuals rendered by 15 processes while the network trains.
SETTINGS["gpu"] = Setting.model_validate({
    "subset": None, "workers": 15, "n_train": 60_000, "n_test": 10_000, "n_reference": 10_000,
    "nets": {"unet": {"kind": "unet", "base_channels": 64, "channel_mult": (1, 2, 4)}},
    "predictor": {"base_channels": 64, "channel_mult": (1, 2, 4)},
    "denoiser_train": {"steps": 12_000, "batch_size": 256, "lr": 2e-4, "weight_decay": 0.01, "bf16": True},
    "predictor_train": {"steps": 3000, "batch_size": 256, "lr": 3e-4, "bf16": True},
    "denoiser_budget": {"seconds": 150, "probe_steps": 30, "warm": 10, "min_steps": 500},
    "predictor_budget": {"seconds": 30, "probe_steps": 30, "warm": 10, "min_steps": 300},
    "parents_steps": 1000, "ddim_steps": 20, "refinements": 4, "inversion_solver": "anderson", "spacing": "quadratic",
    "fractions": (0.75, 1.0), "scales": (1.0, 1.5, 2.0, 3.0), "n_sweep": 500, "n_detail": 1000, "eval_batch": 2048, "time_limit_s": 360,
    "vae": {"steps": 2000, "batch_size": 256}})


def image_config(setting: Setting, net: Any, checkpoint_dir: str | None = None) -> DiffusionConfig:
    """The image node. ``conditional``: the amortised denoiser conditioned on (thickness,
    intensity, digit), parents dropped with ``cond_dropout`` for a learned null embedding,
    counterfactuals by anchored guidance ``eps(pa) + w [eps(pa*) - eps(pa)]`` (a null intervention
    decodes with exactly the eps it was inverted with). ``anticausal``: an unconditional denoiser
    guided by an anti-causal predictor of all three parents (Diff-SCM's Algorithm 1). Abduction
    by DDIM inversion, each step refined by ``refinements`` fixed-point iterations; the
    denoiser's training checkpoints into ``checkpoint_dir`` (and resumes from it) when given."""
    train = setting.denoiser_train
    if checkpoint_dir is not None:
        every = train.checkpoint_every or max(1, train.steps // 10)
        train = train.model_copy(update={"checkpoint_dir": checkpoint_dir, "checkpoint_every": every})
    else:  # no folder given: the run does not checkpoint (the setting's cadence applies to a folder)
        train = train.model_copy(update={"checkpoint_every": None})
    sampler = DDIMConfig(**sampler_update(setting))
    common = {"abduction_fraction": setting.abduction_fraction, "schedule": ScheduleConfig(kind="cosine"),
              "sampler": sampler, "net": net, "train": train}
    if setting.guidance == "conditional":
        return DiffusionConfig(guidance="conditional", cond_dropout=setting.cond_dropout, anchor_scale=1.0,
                               **common)
    return DiffusionConfig(guidance="anticausal", guidance_scale=1.0, guide_abduction=False,
                           predictor=setting.predictor, predictor_train=setting.predictor_train, **common)




def sampler_update(setting: Setting) -> dict[str, Any]:
    """The setting's DDIM sampler fields (applied to a loaded SCM too: ``--evaluate`` scores with them)."""
    return {"num_inference_steps": setting.ddim_steps, "inversion_fixed_point_iters": setting.refinements,
            "inversion_solver": setting.inversion_solver, "spacing": setting.spacing}


def smoke(setting: Setting) -> Setting:
    """The same networks, budgets and protocol with tiny data and step counts: a setting's whole
    pipeline in a minute (the device script runs ``gpu``'s on the GPU before the real run)."""
    return setting.model_copy(update={
        **setting.smoke_update(batch_size=8), "subset": 32, "workers": min(setting.workers, 2), "n_train": 32, "n_test": 6, "n_reference": 16,
        "n_sweep": None if setting.n_sweep is None else 4, "n_detail": None if setting.n_detail is None else 3,
        "eval_batch": 4, "ddim_steps": 2, "parents_steps": 2, "cycles": (1, 2)})


__all__ = ["Setting", "SETTINGS", "image_config", "sampler_update", "smoke"]
