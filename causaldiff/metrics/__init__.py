"""Metrics of counterfactual models.

Per-row functions return ``(n,)`` float64 tensors (average with ``.mean()``); ``effectiveness``
and ``mmd2`` return scalars; ``fid`` (optional extra ``causaldiff[fid]``) a float. Images are
batch-first ``(n, 1, H, W)`` in ``[-1, 1]``.
"""

from .autoencoders import AutoencoderConfig, AutoencoderSet, im1, im2, train_autoencoders
from .axioms import CounterfactualFn, composition, reversibility
from .classifier import ClassifierConfig, ImageClassifier, effectiveness, predict, train_classifier
from .cld import CLD_UNCHANGED, TrainedVAE, VAEConfig, cld, cld_from_posteriors, train_vae
from .fid import WEIGHTS_ENV as FID_WEIGHTS_ENV
from .fid import fid, fid_if_configured
from .distances import counterfactual_error, l1_distance, minimality, mse, psnr
from .mmd import median_heuristic_gamma, mmd2

__all__ = [
    "AutoencoderConfig", "AutoencoderSet", "train_autoencoders", "im1", "im2",
    "VAEConfig", "TrainedVAE", "train_vae", "cld", "cld_from_posteriors", "CLD_UNCHANGED",
    "ClassifierConfig", "ImageClassifier", "train_classifier", "effectiveness", "predict",
    "CounterfactualFn", "composition", "reversibility", "minimality",
    "l1_distance", "mse", "psnr", "counterfactual_error",
    "mmd2", "median_heuristic_gamma", "fid", "fid_if_configured", "FID_WEIGHTS_ENV",
]
