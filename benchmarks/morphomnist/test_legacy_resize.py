"""scikit-image 0.16's pyramids: the warp is cubic convolution, the matrix is the metric resize,
the medial-axis tie-breaker is ``RandomState(0)``'s."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import morphology, transform

from benchmarks.morphomnist import legacy_morpho, legacy_resize


def _catmull_rom(d: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 at distances ``d``."""
    d = np.abs(d)
    near = 1.5 * d ** 3 - 2.5 * d ** 2 + 1
    far = -0.5 * d ** 3 + 2.5 * d ** 2 - 4 * d + 2
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _separable_reference(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Separable cubic convolution at ``f (x + 0.5) - 0.5``, numpy's 'reflect' border."""
    return _axis_matrix(image.shape[0], shape[0]) @ image @ _axis_matrix(image.shape[1], shape[1]).T


def _axis_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` cubic-convolution weights of one axis (numpy 'reflect' border)."""
    y = n_in / n_out * (np.arange(n_out) + 0.5) - 0.5
    taps = np.floor(y)[:, None] + np.arange(-1, 3)[None, :]
    weights = _catmull_rom(y[:, None] - taps)
    period = 2 * (n_in - 1)
    idx = taps.astype(int) % period
    idx = np.where(idx > n_in - 1, period - idx, idx)
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.repeat(np.arange(n_out), 4), idx.ravel()), weights.ravel())
    return m


@pytest.mark.parametrize("shape_in,shape_out", [((7, 9), (28, 36)), ((48, 32), (3, 2)),
                                                ((28, 28), (112, 112))])
def test_resize_is_cubic_convolution(shape_in, shape_out):
    image = np.random.default_rng(0).random(shape_in)
    expected = np.clip(_separable_reference(image, shape_out), image.min(), image.max())
    got = legacy_resize.resize(image, shape_out, order=3)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_resize_matrix_is_the_metric_resize():
    for shape_in, shape_out in [((28, 28), (448, 448)), ((448, 448), (28, 28)), ((609, 609), (39, 39))]:
        f = np.asarray(shape_in, float) / np.asarray(shape_out, float)
        exact = np.array([[f[1], 0, 0.5 * f[1] - 0.5], [0, f[0], 0.5 * f[0] - 0.5], [0, 0, 1]])
        m = legacy_resize.resize_matrix(shape_in, shape_out)
        assert m[0, 1] == m[1, 0] == 0 and tuple(m[2]) == (0, 0, 1)
        np.testing.assert_allclose(m, exact, rtol=0, atol=1e-12)
    one = legacy_resize.resize_matrix((5, 8), (1, 1))
    np.testing.assert_array_equal(one[:2, 2], [3.5, 2.0])


def test_pyramids_differ_from_todays_scikit_image():
    """Today's pyramid_expand (a B-spline zoom) is not the published renderer's."""
    image = np.zeros((8, 8), np.uint8)
    image[2:6, 3:5] = 200
    ours = legacy_resize.pyramid_expand(image, 4, order=3)
    todays = transform.pyramid_expand(image, upscale=4, order=3, channel_axis=None)
    assert ours.shape == todays.shape == (32, 32) and ours.dtype == np.float64
    assert np.abs(ours - todays).max() > 1e-3


def test_pyramid_reduce_keeps_float64_and_range():
    image = (np.random.default_rng(1).random((64, 48)) > 0.5).astype(np.float32)
    out = legacy_resize.pyramid_reduce(image, 16, order=3)
    assert out.shape == (4, 3) and out.dtype == np.float64
    assert 0 <= out.min() and out.max() <= 1


def test_resize_refuses_what_it_does_not_rebuild():
    with pytest.raises(ValueError, match="order 1 or 3"):
        legacy_resize.resize(np.zeros((4, 4)), (8, 8), order=2)
    with pytest.raises(ValueError, match="uint8"):
        legacy_resize.resize(np.zeros((4, 4), np.uint8), (8, 8), order=3)


def test_medial_axis_ties_are_random_state_zeros():
    tiebreak = legacy_morpho._RandomStateTiebreak()
    assert np.random.default_rng(tiebreak) is tiebreak  # medial_axis uses it as given
    np.testing.assert_array_equal(tiebreak.permutation(np.arange(50)),
                                  np.random.RandomState(0).permutation(np.arange(50)))
    np.testing.assert_array_equal(tiebreak.permutation(np.arange(50)),
                                  tiebreak.permutation(np.arange(50)))  # fresh every call
    square = np.zeros((12, 12), bool)
    square[2:10, 2:10] = True  # a symmetric shape: many ties
    skeleton, distance = legacy_morpho.medial_axis(square)
    assert skeleton.any() and distance.max() == 4


def test_footprint_is_the_reduced_disk_support():
    assert legacy_morpho.footprint(0).shape == (1, 1)
    for r in (1, 5, 19):
        fp = legacy_morpho.footprint(r)
        disk = legacy_resize.pyramid_reduce(morphology.disk(16 * r, dtype=np.float64), 16, order=1)
        np.testing.assert_array_equal(fp, disk != 0)
        assert fp.shape == (2 * r + 1, 2 * r + 1) and not fp.flags.writeable
