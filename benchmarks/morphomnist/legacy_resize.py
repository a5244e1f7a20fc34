"""scikit-image 0.16's image pyramids, rebuilt from public scikit-image 0.26 / scipy calls.

The published Morpho-MNIST files (Castro et al. 2019; DeepSCM, Pawlowski et al. 2020) were rendered
with an older scikit-image whose ``resize`` is an affine ``warp`` with cubic *convolution*
(Catmull-Rom, the Cython ``_warp_fast`` of ``skimage.transform.warp``, unchanged up to 0.26);
scikit-image >= 0.19 resizes with ``scipy.ndimage.zoom`` (a cubic B-spline), and its renders differ.
The pyramids' Gaussian wrote float64 up to 0.16 (``np.empty(shape, np.double)``; 0.17 and 0.18
keep a float32 input in float32): only the float64 pipeline re-renders the published images bit
for bit (the float32 one is 1 grey level off on 11 of the first 20), so it is 0.16's that is kept.
The steps (0.16.2 ``transform/pyramids.py``, ``transform/_warps.py``, ``transform/_geometric.py``;
``resize`` and the estimate are the same in 0.18.1) that matter bit for bit:

* the input goes through ``img_as_float`` (uint8: ``x * (1/255)`` in float64), the Gaussian writes
  float64, so the warp (and its matrix) run in float64;
* ``resize``'s transform is *estimated* from three corner correspondences
  ``dst = f (src + 0.5) - 0.5`` (``f`` = input / output size) by the normalised DLT (an SVD), then
  made exactly metric (off-diagonal terms and last row reset); a 1x1 output is a translation;
* the warp's border mode is numpy's (``'reflect'``: the edge pixel not repeated), the output
  clipped to the input's range;
* the Gaussian of ``pyramid_expand`` (after the resize) and of ``pyramid_reduce`` (before it) has
  ``sigma = 2 f / 6`` and gets the mode string unchanged, so ``'reflect'`` is scipy's
  (edge repeated): the two steps of one pyramid use different borders.

What is not rebuilt: the last bits of the estimated matrix depend on the LAPACK that ran the SVD.
They matter once among the radii in use: ``SetThickness``'s radius-19 disk (609 -> 39 pixels) is
sampled exactly on pixel centres along rows/columns 6 and 32, where the support's edge lies, so its
footprint differs from the published generator's by a few pixels (1351 here; 1349, with those rows
sampled just below and the columns just above, re-render its images).  The three radius-19
erosions among the first 300 test images are 1-2 grey levels off; every other one is identical.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage import transform, util


def _normalising_matrix(points: np.ndarray) -> np.ndarray:
    """Hartley's normalisation: centroid to 0, RMS distance to sqrt(2) (0.16's helper)."""
    centroid = np.mean(points, axis=0)
    rms = math.sqrt(np.sum((points - centroid) ** 2) / points.shape[0])
    k = math.sqrt(2) / rms
    return np.array([[k, 0, -k * centroid[0]], [0, k, -k * centroid[1]], [0, 0, 1]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    homogeneous = (matrix @ np.vstack([points.T, np.ones(points.shape[0])])).T
    return homogeneous[:, :2] / homogeneous[:, 2:]


def estimate_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """0.16's (and 0.18's) ``AffineTransform.estimate``: the normalised direct linear transform, the
    solution being the right singular vector of the smallest singular value."""
    src_m, dst_m = _normalising_matrix(src), _normalising_matrix(dst)
    s, d = _apply(src_m, src), _apply(dst_m, dst)
    n = len(s)
    a = np.zeros((2 * n, 7))
    a[:n, 0], a[:n, 1], a[:n, 2], a[:n, 6] = s[:, 0], s[:, 1], 1, d[:, 0]
    a[n:, 3], a[n:, 4], a[n:, 5], a[n:, 6] = s[:, 0], s[:, 1], 1, d[:, 1]
    v = np.linalg.svd(a)[2][-1]
    h = np.zeros((3, 3))
    h.flat[:6] = -v[:-1] / v[-1]
    h[2, 2] = 1
    return np.linalg.inv(dst_m) @ h @ src_m


def resize_matrix(input_shape: tuple[int, int], output_shape: tuple[int, int]) -> np.ndarray:
    """The (output -> input) ``(3, 3)`` matrix of 0.16's 2-D ``resize``."""
    rows, cols = output_shape
    if rows == 1 and cols == 1:
        return np.array([[1.0, 0, input_shape[1] / 2.0 - 0.5], [0, 1.0, input_shape[0] / 2.0 - 0.5],
                         [0, 0, 1.0]])
    factors = np.asarray(input_shape, dtype=float) / np.asarray(output_shape, dtype=float)
    src = np.array([[1, 1], [1, rows], [cols, rows]]) - 1
    dst = np.zeros(src.shape, dtype=np.double)
    dst[:, 0] = factors[1] * (src[:, 0] + 0.5) - 0.5
    dst[:, 1] = factors[0] * (src[:, 1] + 0.5) - 0.5
    matrix = estimate_affine(src, dst)
    matrix[2] = (0, 0, 1)
    matrix[0, 1] = matrix[1, 0] = 0
    return matrix


def resize(image: np.ndarray, output_shape: tuple[int, int], order: int) -> np.ndarray:
    """0.16's ``resize(image, output_shape, order, mode='reflect', anti_aliasing=False)`` of a
    float 2-D image: ``skimage.transform.warp`` with the affine matrix (its Cython path:
    cubic convolution for ``order=3``), clipped to the input's range."""
    if image.ndim != 2 or order not in (1, 3) or image.dtype not in (np.float32, np.float64):
        raise ValueError(f"resize: a float32/float64 2-D image and order 1 or 3, not "
                         f"{image.dtype} {image.shape}, order {order}")
    tform = transform.AffineTransform(matrix=resize_matrix(image.shape, output_shape))
    out = transform.warp(image, tform, output_shape=output_shape, order=order, mode="reflect",
                         clip=False, preserve_range=True)
    assert out.dtype == image.dtype
    return np.clip(out, image.min(), image.max(), out=out)


def _smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    """0.16's ``_smooth``: Gaussian written in float64, scipy's ``'reflect'`` border."""
    return ndimage.gaussian_filter(image, sigma, output=np.empty(image.shape, np.float64),
                                   mode="reflect")


def pyramid_expand(image: np.ndarray, upscale: int, order: int = 1) -> np.ndarray:
    """0.16's ``pyramid_expand`` of a 2-D image: resize by ``upscale``, then Gaussian
    ``sigma = upscale / 3``."""
    image = util.img_as_float(image)
    shape = tuple(math.ceil(upscale * d) for d in image.shape)
    return _smooth(resize(image, shape, order), 2 * upscale / 6.0)


def pyramid_reduce(image: np.ndarray, downscale: int, order: int = 1) -> np.ndarray:
    """0.16's ``pyramid_reduce`` of a 2-D image: Gaussian ``sigma = downscale / 3``, then resize
    by ``1 / downscale``."""
    image = util.img_as_float(image)
    shape = tuple(math.ceil(d / float(downscale)) for d in image.shape)
    return resize(_smooth(image, 2 * downscale / 6.0), shape, order)


__all__ = ["estimate_affine", "resize_matrix", "resize", "pyramid_expand", "pyramid_reduce"]
