"""The hyperparameters of a diffusion mechanism (what a user or a spec writes; nothing fitted)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...diffusion.ddim import DDIMConfig
from ...diffusion.fast import InferenceConfig
from ...diffusion.nets import DenoiserConfig, PredictorConfig
from ...diffusion.schedule import ScheduleConfig
from ...diffusion.train import TrainConfig


def abduction_steps(fraction: float, num_inference_steps: int) -> int:
    """The DDIM state index a partial abduction stops at: ``round(fraction * K)``, at least 1."""
    return max(1, round(fraction * num_inference_steps))


class DiffusionConfig(BaseModel):
    """Everything a user chooses for a :class:`DiffusionMechanism`; what fit records (the event
    shape, the parent codec, statistics) lives in :class:`DiffusionState`."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    schedule: ScheduleConfig = ScheduleConfig(kind="linear")
    #: 50 DDIM steps; abduction refines each inversion step once (fixed point, so that generation
    #: under the factual parents returns the observation): on the DCM protocol one refinement is
    #: within 6% of the best counterfactual MSE on every row at 0.6x the cost of three, none is
    #: 2.1x worse on one (benchmarks/results/tabular_defaults.md)
    sampler: DDIMConfig = DDIMConfig(num_inference_steps=50, spacing="leading",
                                     inversion_fixed_point_iters=1)
    #: denoiser network; None: a UNet for (C, H, W) nodes, the DCM MLP otherwise (chosen at fit)
    net: DenoiserConfig | None = None
    #: "conditional": eps(x_t, t, parents); "anticausal": unconditional eps + predictor gradients
    guidance: Literal["conditional", "anticausal"] = "conditional"
    #: anticausal: scale s of each parent's guidance term (one number for all, or per parent)
    guidance_scale: float | dict[str, float] = 1.0
    #: anticausal: predictor network; None: an image encoder for (C, H, W) nodes, an MLP otherwise
    predictor: PredictorConfig | None = None
    #: anticausal: guide the inversion toward the factual parents, so abduction inverts the very
    #: map that prediction applies and null interventions come back (default False: unguided
    #: inversion, Diff-SCM's Algorithm 1). Guided inversion diverged (DivergenceError) on 56 of 120
    #: DCM queries where the noisy predictor is confident and wrong (benchmarks/results/tabular_defaults.md)
    guide_abduction: bool = False
    #: conditional: classifier-free guidance weight w (0: plain conditional denoiser)
    cfg_scale: float = 0.0
    #: conditional: probability of dropping the parents in training (needed for cfg_scale != 0)
    cond_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    #: conditional: weight w of a counterfactual's guidance anchored at the factual parents,
    #: ``eps(pa) + w [eps(pa*) - eps(pa)]`` (:class:`~causaldiff.diffusion.guidance.AnchoredGuidance`);
    #: 1 is plain generation under the new parents pa*, w > 1 pushes further from the factual
    anchor_scale: float = Field(1.0, ge=0.0, le=100.0)
    #: abduct to state round(fraction * K) instead of x_T (partial trajectory)
    abduction_fraction: float = Field(1.0, gt=0.0, le=1.0)
    #: standardise values per feature; None: yes unless the node is an image
    standardize: bool | None = None
    train: TrainConfig = TrainConfig()
    predictor_train: TrainConfig = TrainConfig()
    #: how the DDIM loops run: precision, compile, channels_last, fixed batch, CUDA graphs
    inference: InferenceConfig = InferenceConfig()

    @model_validator(mode="after")
    def _consistent(self) -> "DiffusionConfig":
        if self.cfg_scale != 0.0 and self.cond_dropout == 0.0:
            raise ValueError("cfg_scale != 0 needs a denoiser trained with cond_dropout > 0")
        if self.cfg_scale != 0.0 and self.guidance != "conditional":
            raise ValueError("cfg_scale applies to guidance='conditional' only")
        if self.guidance_scale != 1.0 and self.guidance != "anticausal":
            raise ValueError("guidance_scale (s, the scale of the anti-causal predictor's gradient) applies to "
                             "guidance='anticausal' only; a conditional denoiser is guided by cfg_scale "
                             "(with cond_dropout) or anchor_scale")
        if self.anchor_scale != 1.0 and self.guidance != "conditional":
            raise ValueError("anchor_scale applies to guidance='conditional' only")
        return self

    @property
    def abduction_steps(self) -> int:
        """The state index abduction stops at (and generation starts from)."""
        return abduction_steps(self.abduction_fraction, self.sampler.num_inference_steps)

    def scale_of(self, parent: str) -> float:
        if isinstance(self.guidance_scale, dict):
            return float(self.guidance_scale.get(parent, 1.0))
        return float(self.guidance_scale)

    def check_scales(self, parents: tuple[str, ...]) -> None:
        """Refuse per-parent guidance scales for parents the node does not have."""
        if isinstance(self.guidance_scale, dict):
            extra = set(self.guidance_scale) - set(parents)
            if extra:
                raise ValueError(f"guidance_scale names unknown parents {sorted(extra)}")

    def quick(self) -> "DiffusionConfig":
        """The seconds-long setting: 30 training steps of at most 32 rows, K = 5 DDIM steps,
        explicitly given image networks at most 16 channels wide."""
        def short(train: TrainConfig) -> TrainConfig:
            return train.model_copy(update={"steps": 30, "batch_size": min(train.batch_size, 32)})

        def narrow(net: BaseModel | None) -> BaseModel | None:
            if net is None or getattr(net, "kind", None) not in ("unet", "image"):
                return net
            return net.model_copy(update={"base_channels": min(net.base_channels, 16)})

        return DiffusionConfig.model_validate({
            **self.model_dump(), "train": short(self.train), "predictor_train": short(self.predictor_train),
            "sampler": self.sampler.model_copy(update={"num_inference_steps": 5}),
            "net": narrow(self.net), "predictor": narrow(self.predictor)})
