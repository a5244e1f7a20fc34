"""Fréchet Inception Distance (Heusel et al. 2017) through torchmetrics, weights from local files only.

``FID = ||mu_r - mu_f||^2 + tr(S_r + S_f - 2 (S_r S_f)^{1/2})`` (eq. 6) over features, in float64:
InceptionV3's pool features (the ``fid`` extra) from the local ``pt_inception-2015-12-05`` checkpoint
(``weights=`` or ``$CAUSALDIFF_FID_WEIGHTS``; nothing is downloaded), or any ``feature`` module mapping
images to ``(n, d)``. Images ``(n, C, H, W)`` in ``[-1, 1]`` reach the extractor in ``[0, 1]``
(clipped; greyscale repeated to three channels for Inception).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import DataError
from ..optional import optional_import

#: environment variable naming the local Inception weights file
WEIGHTS_ENV = "CAUSALDIFF_FID_WEIGHTS"


def _torchmetrics_fid():
    return optional_import("torchmetrics.image.fid", "fid", "FID").FrechetInceptionDistance


def weights_path(weights: str | Path | None = None) -> Path:
    """The local Inception weights file: ``weights``, else ``$CAUSALDIFF_FID_WEIGHTS``."""
    given = weights if weights is not None else os.environ.get(WEIGHTS_ENV)
    if not given:
        raise FileNotFoundError(f"FID needs the Inception weights as a local file: pass weights=... or set "
                                f"{WEIGHTS_ENV} (torch-fidelity's pt_inception-2015-12-05 checkpoint); "
                                "nothing is downloaded")
    path = Path(given)
    if not path.is_file():
        raise FileNotFoundError(f"FID: no Inception weights file at {path} (nothing is downloaded)")
    return path


def _check(name: str, x: Tensor, like: Tensor | None = None) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise DataError(f"fid: {name} must be floating images (n, C, H, W), got "
                        f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")
    if x.shape[0] < 2:
        raise DataError(f"fid: {name} needs at least 2 images for a covariance, got {x.shape[0]}")
    if like is not None and x.shape[1:] != like.shape[1:]:
        raise DataError(f"fid: fake images {tuple(x.shape[1:])} differ in shape from real {tuple(like.shape[1:])}")


def fid(real: Tensor, fake: Tensor, *, feature: nn.Module | None = None, weights: str | Path | None = None,
        batch_size: int = 256, device: torch.device | str | None = None) -> float:
    """FID between ``real`` and ``fake`` images in ``[-1, 1]`` (module docstring); ``feature``: a
    custom extractor, else Inception with ``weights`` (or ``$CAUSALDIFF_FID_WEIGHTS``)."""
    _check("real", real)
    _check("fake", fake, real)
    FID = _torchmetrics_fid()
    device = torch.device(device) if device is not None else real.device
    if feature is not None:
        metric = FID(feature=feature, normalize=True, input_img_size=tuple(real.shape[1:]))
        rgb = False
    else:
        metric = FID(feature=2048, normalize=True, feature_extractor_weights_path=str(weights_path(weights)))
        rgb = True
    metric = metric.to(device)  # its feature sums and covariances are float64
    with torch.no_grad():
        for images, is_real in ((real, True), (fake, False)):
            for batch in images.split(batch_size):
                x = ((batch.to(device, torch.float32) + 1.0) / 2.0).clamp(0.0, 1.0)
                metric.update(x.expand(-1, 3, -1, -1) if rgb and x.shape[1] == 1 else x, real=is_real)
        return float(metric.compute())


def fid_if_configured(real: Tensor, fake: Tensor, *, weights: str | Path | None = None,
                      **kwargs) -> float | None:
    """:func:`fid` with Inception when weights are given (argument or ``$CAUSALDIFF_FID_WEIGHTS``)
    and torchmetrics is installed; ``None`` otherwise (what the image benchmarks report as n/a)."""
    if weights is None and not os.environ.get(WEIGHTS_ENV):
        return None
    try:
        _torchmetrics_fid()
    except ImportError:
        return None
    return fid(real, fake, weights=weights, **kwargs)


__all__ = ["WEIGHTS_ENV", "fid", "fid_if_configured", "weights_path"]
