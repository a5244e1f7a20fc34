"""Morpho-MNIST's measurement and DeepSCM's thickness/intensity renderer, as the published files
were made (scikit-image 0.16 pyramids of :mod:`.legacy_resize`, ``RandomState(0)`` medial axis).

The steps (Morpho-MNIST ``morphomnist/morpho.py`` and ``perturb.py`` of 2019-2021; DeepSCM
``create_synth_thickness_intensity_data.py``; ``BENCHMARKS.md`` section 4), on uint8 28x28 images:

* **up-scaling**: cubic ``pyramid_expand`` by ``scale``, ``(255 * up).astype(uint8)``, binarised
  at ``min + 0.5 (max - min)`` (``>=``);
* **thickness**: ``2 mean(distance[skeleton]) / scale`` of ``medial_axis``; 0.16's medial axis broke
  ties with a fresh ``numpy.random.RandomState(0)`` permutation (0.26 draws it from a
  ``Generator``, which permutes differently): :func:`medial_axis` restores it (0.16 did the same);
* **set thickness**: ``delta = t - measured`` in float32 (the target was a torch float32 scalar),
  ``radius = int(16 |delta| / 2)``, footprint the non-zero pixels of
  ``pyramid_reduce(disk(16 radius), 16, order=1)``, grey dilation (``delta >= 0``) or erosion of
  the binary image (scipy's ``'reflect'`` border), then cubic ``pyramid_reduce`` (float64) of
  the image, ``(255 * down).astype(uint8)``;
* **set intensity**: ``clip(image * (float64(i) / median), 0, 255)`` truncated to uint8, the
  median being that of the pixels at or above 50% of the image's range.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage
from skimage import morphology

from .legacy_resize import pyramid_expand, pyramid_reduce

#: binarisation threshold (fraction of the image's range)
THRESHOLD = 0.5
#: up-scaling of the measurement (``measure_image``'s default)
MEASURE_SCALE = 4
#: up-scaling of the renderer (DeepSCM's ``ImageMorphology(image, scale=16)``)
RENDER_SCALE = 16


class _RandomStateTiebreak(np.random.Generator):
    """A ``Generator`` whose ``permutation`` is a fresh ``RandomState(0)``'s: scikit-image 0.16's
    ``medial_axis`` tie-breaker, handed to 0.26's ``medial_axis(rng=...)``."""

    def __init__(self) -> None:
        super().__init__(np.random.MT19937(0))

    def permutation(self, x):  # noqa: D102 - numpy's signature
        return np.random.RandomState(0).permutation(x)


def medial_axis(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """0.16's ``medial_axis(binary, return_distance=True)``: skeleton and distance map."""
    return morphology.medial_axis(binary, return_distance=True, rng=_RandomStateTiebreak())


def binarise_hires(image: np.ndarray, scale: int) -> np.ndarray:
    """The binarised ``scale``-times up-scaled uint8 image (bool ``(scale H, scale W)``)."""
    hires = (255.0 * pyramid_expand(image, scale, order=3)).astype(image.dtype)
    lo, hi = hires.min(), hires.max()
    return hires >= lo + (hi - lo) * THRESHOLD


def hires_thickness(binary: np.ndarray, scale: int) -> float:
    """Mean stroke thickness of a binarised high-resolution image, in low-resolution pixels
    (``nan`` for an image without a skeleton)."""
    skeleton, distance = medial_axis(binary)
    if not skeleton.any():
        return float("nan")
    return float(2.0 * np.mean(distance[skeleton]) / scale)


def thickness(image: np.ndarray, scale: int = MEASURE_SCALE) -> float:
    """Morpho-MNIST's mean thickness of a uint8 image (medial axis at ``scale``)."""
    return hires_thickness(binarise_hires(image, scale), scale)


def intensity(image: np.ndarray) -> float:
    """Median of the pixels at or above 50% of the image's range."""
    lo, hi = image.min(), image.max()
    return float(np.median(image[image >= lo + (hi - lo) * THRESHOLD]))


def handwriting_thickness(handwriting: np.ndarray) -> float:
    """The renderer's measured thickness of the original handwriting (scale 16)."""
    return hires_thickness(binarise_hires(handwriting, RENDER_SCALE), RENDER_SCALE)


@lru_cache(maxsize=64)
def footprint(radius: int, scale: int = RENDER_SCALE) -> np.ndarray:
    """``SetThickness``'s structuring element: the non-zero pixels of the reduced disk
    (read-only bool)."""
    disk = morphology.disk(scale * radius, dtype=np.float64)
    fp = pyramid_reduce(disk, scale, order=1) != 0
    fp.flags.writeable = False
    return fp


def set_thickness(binary: np.ndarray, measured: float, target: float,
                  scale: int = RENDER_SCALE) -> np.ndarray:
    """Dilate (``target >= measured``) or erode the binary high-resolution image by
    :func:`footprint` (float32 ``delta``, as the published generator's torch scalar)."""
    delta = np.float32(target) - np.float32(measured)
    fp = footprint(int(np.float32(scale) * abs(delta) / np.float32(2.0)), scale)
    if delta >= 0:  # skimage 0.16's dilation mirrors the footprint first
        return ndimage.grey_dilation(binary, footprint=fp[::-1, ::-1], output=np.empty_like(binary))
    return ndimage.grey_erosion(binary, footprint=fp, output=np.empty_like(binary))


def downscale(hires: np.ndarray, scale: int = RENDER_SCALE) -> np.ndarray:
    """Cubic ``pyramid_reduce`` of a (binary) high-resolution image, to uint8 (the generator
    passed float32; 0.16's pyramid computed in float64 all the same)."""
    down = pyramid_reduce(hires.astype(np.float32), scale, order=3)
    return (255.0 * down).astype(np.uint8)


def set_intensity(image: np.ndarray, target: float) -> np.ndarray:
    """Scale so that :func:`intensity` is ``target`` (before clipping and truncation); an image
    with nothing left to scale (an eroded-away stroke) is returned as it is."""
    current = intensity(image)
    if current <= 0:
        return image.copy()
    return np.clip(image * (np.float64(np.float32(target)) / current), 0, 255).astype(np.uint8)


def render(handwriting: np.ndarray, target_thickness: float, target_intensity: float,
           base_thickness: float | None = None) -> np.ndarray:
    """DeepSCM's image of ``handwriting`` (uint8 28x28) at the given thickness and intensity;
    ``base_thickness`` (:func:`handwriting_thickness`) is measured when not given."""
    binary = binarise_hires(handwriting, RENDER_SCALE)
    if base_thickness is None:
        base_thickness = hires_thickness(binary, RENDER_SCALE)
    thick = set_thickness(binary, base_thickness, target_thickness)
    return set_intensity(downscale(thick), target_intensity)


def measure_images(images: np.ndarray) -> np.ndarray:
    """``(n, 2)`` float64: thickness and intensity of each uint8 image ``(n, H, W)``."""
    return np.array([[thickness(im), intensity(im)] for im in images],
                    dtype=np.float64).reshape(-1, 2)


def render_rows(handwriting: np.ndarray, t: np.ndarray, i: np.ndarray) -> np.ndarray:
    """:func:`render` of each row: uint8 ``(n, 28, 28)``."""
    out = np.empty(handwriting.shape, dtype=np.uint8)
    for k in range(len(handwriting)):
        out[k] = render(handwriting[k], t[k], i[k])
    return out


__all__ = ["THRESHOLD", "MEASURE_SCALE", "RENDER_SCALE", "medial_axis", "binarise_hires",
           "hires_thickness", "thickness", "intensity", "handwriting_thickness", "footprint",
           "set_thickness", "downscale", "set_intensity", "render", "measure_images", "render_rows"]
