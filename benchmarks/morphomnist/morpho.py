"""Morpho-MNIST's image operations: thickness measurement and the DeepSCM thickness renderer.

Definitions (Castro et al. 2019, ``morphomnist/morpho.py``; Pawlowski et al. 2020,
``create_synth_thickness_intensity_data.py``; ``BENCHMARKS.md`` section 4), on uint8 images:

* **up-scaling**: cubic ``pyramid_expand`` by ``scale``, back to uint8 (``255 * up``, truncated),
  binarised at ``min + threshold * (max - min)`` (``>=``), threshold 0.5;
* **thickness**: ``2 * mean(distance_map[skeleton]) / scale`` with ``medial_axis`` of the
  binarised high-resolution image (measurement: scale 4; rendering: scale 16); ``medial_axis``
  breaks ties at random, seeded here (``rng=0``; older scikit-image seeded it internally) so that a
  measurement is a function of the image;
* **intensity**: the median of the pixels at or above 50% of the image's range;
* **set thickness** (the renderer): ``delta = t - thickness``, ``radius = int(16 |delta| / 2)``,
  footprint = the support of ``pyramid_reduce(disk(16 radius), 16, order=1)`` (non-zero pixels:
  a ``(2 radius + 1)`` square, as ``scipy.ndimage`` reads a float footprint), dilation when
  ``delta >= 0`` else erosion, cubic ``pyramid_reduce`` back to 28x28, ``255 *``, uint8;
* **set intensity**: multiply by ``i / intensity(image)``, clip to ``[0, 255]``, uint8.

Every function is a pure function of its inputs (byte-identical outputs for identical inputs).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal
from skimage import morphology, transform

#: binarisation threshold (fraction of the image's range)
THRESHOLD = 0.5
#: up-scaling of the measurement (``measure_image``'s default)
MEASURE_SCALE = 4
#: up-scaling of the renderer (DeepSCM's ``ImageMorphology(image, scale=16)``)
RENDER_SCALE = 16


def binarise_hires(image: np.ndarray, scale: int) -> np.ndarray:
    """The binarised ``scale``-times up-scaled image (bool ``(scale H, scale W)``)."""
    up = transform.pyramid_expand(image, upscale=scale, order=3, channel_axis=None)
    hires = (255.0 * up).astype(image.dtype)
    lo, hi = hires.min(), hires.max()
    return hires >= lo + (hi - lo) * THRESHOLD


def hires_thickness(binary: np.ndarray, scale: int) -> float:
    """Mean stroke thickness of a binarised high-resolution image, in low-resolution pixels
    (``nan`` for an image without a skeleton)."""
    skeleton, distance = morphology.medial_axis(binary, return_distance=True, rng=0)  # seeded ties
    if not skeleton.any():
        return float("nan")
    return float(2.0 * distance[skeleton].mean() / scale)


def intensity(image: np.ndarray) -> float:
    """Median of the pixels at or above 50% of the image's range."""
    lo, hi = image.min(), image.max()
    return float(np.median(image[image >= lo + (hi - lo) * THRESHOLD]))


def thickness(image: np.ndarray, scale: int = MEASURE_SCALE) -> float:
    """Morpho-MNIST's mean thickness of a uint8 image (medial axis at ``scale``)."""
    return hires_thickness(binarise_hires(image, scale), scale)


@lru_cache(maxsize=64)
def footprint(radius: int, scale: int = RENDER_SCALE) -> np.ndarray:
    """The structuring element of ``SetThickness``: non-zero pixels of the reduced disk."""
    disk = morphology.disk(scale * radius, dtype=np.float64)
    reduced = transform.pyramid_reduce(disk, downscale=scale, order=1, channel_axis=None)
    fp = reduced != 0
    assert fp.shape[0] % 2 == 1 and np.array_equal(fp, fp[::-1, ::-1])
    fp.flags.writeable = False
    return fp


def set_thickness(binary: np.ndarray, measured: float, target: float,
                  scale: int = RENDER_SCALE) -> np.ndarray:
    """Dilate (``target >= measured``) or erode the binary high-resolution image by
    :func:`footprint`, borders reflected (``scipy.ndimage``'s default mode)."""
    delta = float(target) - float(measured)
    fp = footprint(int(scale * abs(delta) / 2.0), scale)
    return _dilate(binary, fp) if delta >= 0 else ~_dilate(~binary, fp)


def _dilate(binary: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Binary dilation by a symmetric footprint: a pixel is on when the footprint around it
    covers an on pixel (an integer count, computed exactly by FFT; erosion is its dual)."""
    r = fp.shape[0] // 2
    if r == 0:
        return binary.copy()
    padded = np.pad(binary, r, mode="symmetric").astype(np.float64)
    return signal.fftconvolve(padded, fp.astype(np.float64), mode="valid") > 0.5


def downscale(hires: np.ndarray, scale: int = RENDER_SCALE) -> np.ndarray:
    """Cubic ``pyramid_reduce`` of a (binary) high-resolution image to uint8."""
    down = transform.pyramid_reduce(hires.astype(np.float32), downscale=scale, order=3,
                                    channel_axis=None)
    return (255.0 * down).astype(np.uint8)


def set_intensity(image: np.ndarray, target: float) -> np.ndarray:
    """Scale so that :func:`intensity` is ``target`` (before clipping and truncation)."""
    current = intensity(image)
    if current <= 0:  # nothing left to scale (an eroded-away stroke)
        return image.copy()
    return np.clip(image * (float(target) / current), 0, 255).astype(np.uint8)


def render(handwriting: np.ndarray, base_thickness: float | None, target_thickness: float,
           target_intensity: float) -> tuple[np.ndarray, float]:
    """DeepSCM's image of ``handwriting`` (uint8 28x28) at the given thickness and intensity,
    and the handwriting's own thickness at scale 16 (``base_thickness``, measured when ``None``)."""
    binary = binarise_hires(handwriting, RENDER_SCALE)
    if base_thickness is None:
        base_thickness = hires_thickness(binary, RENDER_SCALE)
    thick = set_thickness(binary, base_thickness, target_thickness)
    return set_intensity(downscale(thick), target_intensity), base_thickness


def handwriting_thickness(handwriting: np.ndarray) -> float:
    """The renderer's measured thickness of the original handwriting (scale 16)."""
    return hires_thickness(binarise_hires(handwriting, RENDER_SCALE), RENDER_SCALE)


def measure_images(images: np.ndarray) -> np.ndarray:
    """``(n, 2)`` float64: thickness and intensity of each uint8 image ``(n, H, W)``."""
    return np.array([[thickness(im), intensity(im)] for im in images], dtype=np.float64).reshape(-1, 2)


def render_rows(handwriting: np.ndarray, base: np.ndarray | None, t: np.ndarray,
                i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`render` of each row: uint8 ``(n, 28, 28)`` and the float64 base thicknesses."""
    out = np.empty(handwriting.shape, dtype=np.uint8)
    bases = np.empty(len(handwriting), dtype=np.float64)
    for k in range(len(handwriting)):
        out[k], bases[k] = render(handwriting[k], None if base is None else float(base[k]),
                                  float(t[k]), float(i[k]))
    return out, bases


def base_thickness_rows(handwriting: np.ndarray) -> np.ndarray:
    """:func:`handwriting_thickness` of each row: float64 ``(n,)``."""
    return np.array([handwriting_thickness(h) for h in handwriting], dtype=np.float64)


__all__ = ["THRESHOLD", "MEASURE_SCALE", "RENDER_SCALE", "binarise_hires", "hires_thickness",
           "intensity", "thickness", "footprint", "set_thickness", "downscale", "set_intensity",
           "render", "handwriting_thickness", "measure_images", "render_rows", "base_thickness_rows"]
