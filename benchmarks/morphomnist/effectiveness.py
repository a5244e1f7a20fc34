"""Effectiveness scored by the benchmark's released predictors, in both BatchNorm modes.

counterfactual-benchmark 581dbb4 ``evaluation/metrics/effectiveness.py`` and
``methods/deepscm/evaluate.py``: each predictor reads the counterfactual image (padded, ``[-1, 1]``);
the thickness predictor also reads the scaled counterfactual intensity; the error is
``|target - prediction|`` in unscaled units (thickness, grey levels), digit accuracy on the argmax.
Here the targets are the *true* counterfactual parents (the benchmark's are the model's own
counterfactual parents, intensity after do(t) through its learned flow: ours is the stricter
target), and the intensity prediction is used raw (no sigmoid).  Both BatchNorm modes are
returned: ``"batch"`` (the benchmark's: each batch of 256, in the rows' order, normalised by its own
statistics) and ``"eval"`` (running statistics).  Means are over images (the README's floors;
the benchmark's ``evaluate.py`` averages batch means, which weighs its last 16 images 16 times).

Floors (the released predictors on the 10k published test images, csv targets and the csv
intensity as the thickness predictor's context; ``batch`` / ``eval``): digit accuracy
0.9894 / 0.9905, intensity MAE 1.514 / 1.543, thickness MAE 0.0778 / 0.1220.  With the *measured*
intensity as context the thickness MAE is 0.0778 / 0.1225: the csv target is what reproduces them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import published
from .predictors import BATCH, OUTPUTS, BNMode, Predictor, load_predictor
from .scaling import benchmark_images, scale, unscale

#: BatchNorm modes scored, the benchmark's first
BN_MODES: tuple[BNMode, ...] = ("batch", "eval")
#: metric names, per predictor
METRICS = {"thickness": "thickness_mae", "intensity": "intensity_mae", "digit": "digit_acc"}


@dataclass(frozen=True)
class ReleasedPredictors:
    """The three released predictors (eval-mode modules, never trained or mutated here)."""

    thickness: Predictor
    intensity: Predictor
    digit: Predictor

    @classmethod
    def load(cls, folder: str | Path | None = None) -> "ReleasedPredictors":
        """From ``{thickness,intensity,digit}.safetensors`` in ``folder`` (default: the
        published data's ``predictors/``)."""
        folder = Path(folder) if folder is not None else published.require_dir() / "predictors"
        return cls(**{name: load_predictor(folder / f"{name}.safetensors", name) for name in OUTPUTS})

    @torch.inference_mode()
    def predict(self, images: Tensor, intensity_context: Tensor, bn: BNMode,
                batch: int = BATCH) -> dict[str, Tensor]:
        """Unscaled thickness and intensity (float64 ``(n,)``) and digit (long ``(n,)``) of padded
        ``[-1, 1]`` images ``(n, 1, 32, 32)``; ``intensity_context``: scaled float32 ``(n,)``."""
        if images.ndim != 4 or tuple(images.shape[1:]) != (1, 32, 32):
            raise ValueError(f"images must be (n, 1, 32, 32) in [-1, 1], got {tuple(images.shape)}")
        if intensity_context.shape != (len(images),):
            raise ValueError(f"intensity_context must be ({len(images)},), "
                             f"got {tuple(intensity_context.shape)}")
        chunks = {name: [] for name in OUTPUTS}
        for k in range(0, len(images), batch):
            x = images[k:k + batch].float()
            chunks["thickness"].append(self.thickness(x, intensity_context[k:k + batch].float(), bn)[:, 0])
            chunks["intensity"].append(self.intensity(x, None, bn)[:, 0])
            chunks["digit"].append(self.digit(x, None, bn).argmax(1))
        out = {name: torch.cat(c) for name, c in chunks.items()}
        return {"thickness": unscale("thickness", out["thickness"].double()),
                "intensity": unscale("intensity", out["intensity"].double()), "digit": out["digit"]}


def errors(predictors: ReleasedPredictors, images: Tensor, thickness: np.ndarray,
           intensity: np.ndarray, digit: np.ndarray, bn: BNMode,
           context: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-image absolute errors (thickness, intensity) and hits (digit) against the targets;
    the thickness predictor's context is the scaled target intensity unless ``context`` (unscaled)
    is given."""
    n = len(images)
    for name, v in (("thickness", thickness), ("intensity", intensity), ("digit", digit)):
        if np.shape(v) != (n,):
            raise ValueError(f"{name} targets must be ({n},), got {np.shape(v)}")
    ctx = torch.as_tensor(scale("intensity", intensity if context is None else context))
    pred = predictors.predict(images, ctx, bn)
    return {"thickness": np.abs(pred["thickness"].numpy() - np.asarray(thickness, np.float64)),
            "intensity": np.abs(pred["intensity"].numpy() - np.asarray(intensity, np.float64)),
            "digit": (pred["digit"].numpy() == np.asarray(digit)).astype(np.float64)}


def score(predictors: ReleasedPredictors, images: Tensor, thickness: np.ndarray,
          intensity: np.ndarray, digit: np.ndarray,
          context: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """``{bn_mode: {"thickness_mae", "intensity_mae", "digit_acc"}}``, means over images, for
    both :data:`BN_MODES`."""
    return {bn: {METRICS[name]: float(e.mean()) for name, e in
                 errors(predictors, images, thickness, intensity, digit, bn, context).items()}
            for bn in BN_MODES}


def floors(predictors: ReleasedPredictors, n: int | None = None) -> dict[str, dict[str, float]]:
    """:func:`score` of the published test images (the first ``n``) against their csv targets:
    each column's floor."""
    t, i = published.targets("test")
    images = published.t10k_images()[:n]
    return score(predictors, benchmark_images(images), t[:n], i[:n], published.labels("test")[:n])


__all__ = ["BN_MODES", "METRICS", "ReleasedPredictors", "errors", "score", "floors"]
