"""Diffusion building blocks: schedules, DDIM, guidance, networks and training objectives.

The node-level API is :class:`causaldiff.mechanisms.diffusion.DiffusionMechanism`; these pieces
are usable on their own (any callable ``eps(x_t, t, cond)`` is a denoiser).
"""

from .ddim import DDIMConfig, DDIMOutput, DDIMSampler, DDIMStepOutput, Denoiser, ddim_timesteps
from .guidance import (AnchoredGuidance, AntiCausalGuidance, ClassifierFreeGuidance, ParentHead, PredictorLikelihood,
                       categorical_log_prob, gaussian_log_prob, guidance_gradient, heads_log_prob)
from .nets import (DiT, DiTConfig, ImagePredictor, ImagePredictorConfig, MLPConfig, MLPDenoiser,
                   MLPPredictor, MLPPredictorConfig, ParentEmbedding, UNet, UNetConfig, build_denoiser,
                   build_predictor)
from .schedule import NoiseSchedule, ScheduleConfig, cosine_betas, linear_betas
from .fast import CapturedEps, FastNet, FixedRows, InferenceConfig, fast_eps, fast_net, pad_rows
from .train import (TrainConfig, TrainResult, denoiser_loss, predictor_loss, train_denoiser,
                    train_predictor)

__all__ = [
    "DDIMConfig", "DDIMOutput", "DDIMSampler", "DDIMStepOutput", "Denoiser", "ddim_timesteps",
    "AnchoredGuidance", "AntiCausalGuidance", "ClassifierFreeGuidance", "ParentHead", "PredictorLikelihood",
    "categorical_log_prob", "gaussian_log_prob", "guidance_gradient", "heads_log_prob",
    "DiT", "DiTConfig", "ImagePredictor", "ImagePredictorConfig", "MLPConfig", "MLPDenoiser",
    "MLPPredictor", "MLPPredictorConfig", "ParentEmbedding", "UNet", "UNetConfig", "build_denoiser", "build_predictor",
    "CapturedEps", "FastNet", "FixedRows", "InferenceConfig", "fast_eps", "fast_net", "pad_rows",
    "NoiseSchedule", "ScheduleConfig", "cosine_betas", "linear_betas",
    "TrainConfig", "TrainResult", "denoiser_loss", "predictor_loss", "train_denoiser", "train_predictor",
]
