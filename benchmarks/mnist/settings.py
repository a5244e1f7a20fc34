"""Settings of the Diff-SCM MNIST benchmark (``benchmarks/mnist/``): what one run is
made of (networks, training, budgets, metric models, sweep), recorded in its results.

* ``gpu``: the reference architecture, training budgeted in seconds to fit 9 minutes on one H100;
* ``cpu``: a clearly smaller setting for a 2-core machine (~15 minutes), not comparable with the paper;
* ``quick``: seconds, for CI; :func:`smoke`: any setting's pipeline with tiny counts.

``causaldiff fit graphs/mnist.toml --setting NAME`` fits the same networks with the same training
(:meth:`Setting.diffusion_config`, at the setting's ``fit_guidance_scale`` and
``fit_abduction_fraction``), without the benchmark's time budgets.
"""

from __future__ import annotations

from pydantic import Field

from causaldiff import metrics as M
from causaldiff.diffusion.ddim import DDIMConfig
from causaldiff.diffusion.nets import ImagePredictorConfig, UNetConfig
from causaldiff.diffusion.schedule import ScheduleConfig
from causaldiff.mechanisms.diffusion.config import DiffusionConfig
from causaldiff.training import TrainConfig

from benchmarks.common.budget import Budget
from benchmarks.common.setting import ImageSetting

NUM_CLASSES = 10
IMAGE_SHAPE = (1, 28, 28)

#: Diff-SCM's published figures on MNIST (BENCHMARKS.md section 1); lower is better.
PAPER = {"IM1": 0.94, "IM2": 0.04,
         "CLD": {0.0: 1.31, 0.75: 1.06, 2.0: 1.11, 3.0: 1.12}}  # CLD minimum ~1.06 near s = 0.7-0.8


class Setting(ImageSetting):
    """Everything one run of the benchmark is made of (recorded in the results)."""

    label: str
    n_train: int = Field(ge=100, le=60000)
    n_test: int = Field(ge=2, le=10000)
    n_composition: int = Field(ge=1)
    n_reference: int = Field(ge=100, le=10000, description="test images the CLD divergences are ranked against")
    eval_batch: int = Field(ge=1)
    unet: UNetConfig
    predictor: ImagePredictorConfig
    schedule: ScheduleConfig = ScheduleConfig(kind="cosine", num_train_timesteps=1000)
    inversion_fixed_point_iters: int = 0
    #: clip the predicted x_0 to [-c, c] in generation, never in inversion (guided-diffusion's
    #: clip_denoised, on in Diff-SCM's sampling); None: no clipping
    clip_sample: float | None = 1.0
    #: abduction fractions evaluated (Diff-SCM's later revision: the first 75%; 1: the whole trajectory)
    abduction_fractions: tuple[float, ...] = (0.75, 1.0)
    denoiser_train: TrainConfig
    predictor_train: TrainConfig
    classifier: M.ClassifierConfig
    autoencoders: M.AutoencoderConfig
    vae: M.VAEConfig
    #: main guidance scale; None: the (fraction, scale) pair chosen by
    #: :func:`benchmarks.common.choose.choose_main` (rule ``"cld"``)
    scale: float | None = None
    scales: tuple[float, ...] = (0.0, 0.3, 0.7, 1.0, 2.0, 3.0, 5.0, 10.0)
    #: what ``causaldiff fit --setting`` saves: the benchmark's main pair in the cpu and gpu runs
    #: (s = 10, whole-trajectory abduction; effectiveness 0.72 cpu, 0.95 gpu)
    fit_guidance_scale: float = Field(10.0, ge=0.0)
    fit_abduction_fraction: float = Field(1.0, gt=0.0, le=1.0)

    def diffusion_config(self, scale: float | None = None, abduction_fraction: float | None = None,
                         denoiser_train: TrainConfig | None = None,
                         predictor_train: TrainConfig | None = None) -> DiffusionConfig:
        """The image node of this setting: an unconditional UNet guided by a noisy digit classifier,
        unguided DDIM inversion (Diff-SCM's Algorithm 1); defaults: the ``fit_*`` fields and the
        setting's training."""
        return DiffusionConfig(
            guidance="anticausal", guide_abduction=False,
            guidance_scale=self.fit_guidance_scale if scale is None else scale,
            abduction_fraction=self.fit_abduction_fraction if abduction_fraction is None else abduction_fraction,
            schedule=self.schedule, net=self.unet, predictor=self.predictor,
            sampler=DDIMConfig(num_inference_steps=self.ddim_steps, clip_sample=self.clip_sample,
                               inversion_fixed_point_iters=self.inversion_fixed_point_iters),
            train=denoiser_train or self.denoiser_train, predictor_train=predictor_train or self.predictor_train)


SETTINGS: dict[str, Setting] = {
    # One H100, at most 9 minutes in all. Expected split (estimated from BENCHMARKS.md section 3's
    # throughputs, to be confirmed by the recorded timings): start-up and data ~15 s, probes ~10 s,
    # denoiser 210 s (budgeted), noisy classifier <= 40 s (budgeted), metric models ~30 s,
    # evaluation ~60-120 s (1000 images x 8 scales, composition 256 x 10 cycles).
    "gpu": Setting(
        label="GPU setting: reference architecture, training budgeted to fit 9 minutes on one H100",
        n_train=60000, n_test=1000, n_composition=256, n_reference=10000, eval_batch=500,
        unet=UNetConfig(base_channels=64, channel_mult=(1, 2, 4), num_res_blocks=1, mid_attention=True),
        predictor=ImagePredictorConfig(base_channels=64, channel_mult=(1, 2, 4), num_res_blocks=1),
        denoiser_train=TrainConfig(steps=12000, batch_size=256, lr=2e-4, weight_decay=0.01,
                                   warmup_steps=200, ema_decay=0.999, log_every=200),
        predictor_train=TrainConfig(steps=3000, batch_size=256, lr=3e-4, weight_decay=0.01,
                                    warmup_steps=100, ema_decay=0.999, log_every=200),
        denoiser_budget=Budget(seconds=210, probe_steps=30, warm=10, min_steps=500),
        predictor_budget=Budget(seconds=40, probe_steps=30, warm=10, min_steps=300),
        classifier=M.ClassifierConfig(steps=2000, batch_size=256),
        autoencoders=M.AutoencoderConfig(steps=2000, batch_size=64),
        vae=M.VAEConfig(steps=3000, batch_size=256),
    ),
    # Two shared CPU cores, ~15 minutes: a 16-channel UNet (a 32-channel one costs ~2 s per step
    # of 64 images here, too slow to train in minutes), 50 DDIM steps, 100 test images.
    "cpu": Setting(
        label="small CPU setting (16-channel UNet, 700 steps; 16-channel classifier, 2000 steps; K = 50): "
              "NOT comparable with the paper",
        n_train=60000, n_test=100, n_composition=32, n_reference=2000, eval_batch=100,
        unet=UNetConfig(base_channels=16, channel_mult=(1, 2, 4), num_res_blocks=1, mid_attention=True,
                        num_groups=8),
        predictor=ImagePredictorConfig(base_channels=16, channel_mult=(1, 2, 2), num_res_blocks=1,
                                       num_groups=8),
        ddim_steps=50,
        denoiser_train=TrainConfig(steps=700, batch_size=64, lr=1e-3, weight_decay=0.01,
                                   warmup_steps=50, ema_decay=0.995, log_every=50),
        predictor_train=TrainConfig(steps=2000, batch_size=64, lr=1e-3, weight_decay=0.01,
                                    warmup_steps=50, ema_decay=0.995, log_every=50),
        classifier=M.ClassifierConfig(steps=400, batch_size=64),
        autoencoders=M.AutoencoderConfig(steps=300, batch_size=16),
        vae=M.VAEConfig(steps=600, batch_size=64),
    ),
    # CI: seconds on one CPU thread; checks the pipeline, not the figures.
    "quick": Setting(
        label="CI quick setting (tiny networks, tens of steps): checks the pipeline only",
        n_train=600, n_test=8, n_composition=4, n_reference=200, eval_batch=8,
        unet=UNetConfig(base_channels=8, channel_mult=(1, 2), num_res_blocks=1, mid_attention=True,
                        num_groups=4),
        predictor=ImagePredictorConfig(base_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_groups=4),
        ddim_steps=4,
        denoiser_train=TrainConfig(steps=20, batch_size=16, lr=2e-3, log_every=10),
        predictor_train=TrainConfig(steps=20, batch_size=16, lr=2e-3, log_every=10),
        classifier=M.ClassifierConfig(steps=30, batch_size=32),
        autoencoders=M.AutoencoderConfig(steps=10, batch_size=4, hidden=8),
        vae=M.VAEConfig(steps=20, batch_size=32),
        scales=(0.0, 1.0),
    ),
}


def smoke(setting: Setting) -> Setting:
    """The same architectures with tiny data and iteration counts: runs anywhere in a minute."""
    return setting.model_copy(update={
        **setting.smoke_update(batch_size=4),
        "label": setting.label + " [SMOKE: tiny iteration counts, not a measurement]",
        "n_train": 200, "n_test": 4, "n_composition": 2, "n_reference": 200, "eval_batch": 4, "ddim_steps": 4,
        "classifier": setting.classifier.model_copy(update={"steps": 2, "batch_size": 8}),
        "autoencoders": setting.autoencoders.model_copy(update={"steps": 2, "batch_size": 2}),
    })


__all__ = ["NUM_CLASSES", "IMAGE_SHAPE", "PAPER", "Setting", "SETTINGS", "smoke"]
