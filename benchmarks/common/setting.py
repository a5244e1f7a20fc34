"""What every image benchmark's setting holds (MNIST's and Morpho-MNIST's ``Setting`` extend it): data
and evaluation sizes, the anti-causal predictor, the two trainings and their time budgets, the DDIM
steps, the guidance sweep, the composition cycles and the CLD VAE; and the smoke version of it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from causaldiff import metrics as M
from causaldiff.diffusion import ImagePredictorConfig
from causaldiff.training import TrainConfig

from benchmarks.common.budget import Budget


class ImageSetting(BaseModel):
    """One setting of an image benchmark (recorded in its results)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    n_train: int = Field(60_000, ge=8)
    n_test: int = Field(10_000, ge=2)
    #: test images the CLD divergences are ranked against
    n_reference: int = Field(1000, ge=10)
    eval_batch: int = Field(256, ge=1)
    predictor: ImagePredictorConfig = ImagePredictorConfig()
    denoiser_train: TrainConfig = TrainConfig()
    predictor_train: TrainConfig = TrainConfig()
    #: fit the denoiser's / the anti-causal predictor's steps into seconds (a timed probe)
    denoiser_budget: Budget | None = None
    predictor_budget: Budget | None = None
    ddim_steps: int = 100
    scales: tuple[float, ...] = (0.0, 1.0, 2.0)
    cycles: tuple[int, ...] = (1, 10)
    vae: M.VAEConfig = M.VAEConfig()

    def smoke_update(self, batch_size: int) -> dict[str, Any]:
        """The shared fields with tiny step counts (2 steps of ``batch_size``; budgets probe 3 steps)."""
        def tiny(cfg: TrainConfig) -> TrainConfig:
            return cfg.model_copy(update={"steps": 2, "batch_size": batch_size, "warmup_steps": 0, "log_every": 1})

        def tiny_budget(b: Budget | None) -> Budget | None:
            return None if b is None else b.model_copy(update={"probe_steps": 3, "warm": 1, "min_steps": 1})

        return {"denoiser_train": tiny(self.denoiser_train), "predictor_train": tiny(self.predictor_train),
                "denoiser_budget": tiny_budget(self.denoiser_budget),
                "predictor_budget": tiny_budget(self.predictor_budget),
                "vae": self.vae.model_copy(update={"steps": 2, "batch_size": 8})}


__all__ = ["ImageSetting"]
