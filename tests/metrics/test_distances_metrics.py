"""L1, MSE, PSNR, minimality and the tabular counterfactual error on known answers."""

from __future__ import annotations

import math

import pytest
import torch

from causaldiff.errors import DataError
from causaldiff.metrics import counterfactual_error, l1_distance, minimality, mse, psnr


def test_l1_and_minimality_known_values():
    a = torch.zeros(3, 1, 4, 4)
    b = a.clone()
    b[0] += 0.5
    b[1, 0, 0, 0] = 1.6  # one pixel of 16
    assert l1_distance(a, b).tolist() == pytest.approx([0.5, 0.1, 0.0])
    assert torch.equal(minimality(a, b), l1_distance(a, b))
    assert l1_distance(a, b).dtype == torch.float64


def test_psnr_of_a_known_noise_level():
    """Noise of exactly +-sigma on every pixel: MSE = sigma^2, PSNR = 10 log10(2^2 / sigma^2)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 16, 16, generator=g) * 2 - 1
    sign = torch.randint(0, 2, x.shape, generator=g) * 2 - 1
    for sigma in (0.01, 0.1, 0.5):
        noisy = x.double() + sigma * sign
        torch.testing.assert_close(mse(noisy, x), torch.full((5,), sigma ** 2, dtype=torch.float64))
        expected = 10 * math.log10(4 / sigma ** 2)
        torch.testing.assert_close(psnr(noisy, x), torch.full((5,), expected, dtype=torch.float64))
    assert torch.isinf(psnr(x, x)).all()
    assert psnr(x + 0.1, x, data_range=1.0)[0].item() == pytest.approx(20.0, abs=1e-4)


def test_counterfactual_error_mean_and_sum():
    pred = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([[0.0, 0.0], [1.0, 1.0]])}
    truth = {"a": torch.tensor([0.0, 2.0]), "b": torch.tensor([[2.0, 0.0], [1.0, 3.0]])}
    # row 0: a -> 1, b -> mean(4, 0) = 2; row 1: a -> 0, b -> mean(0, 4) = 2
    assert counterfactual_error(pred, truth, ["a", "b"]).tolist() == [1.5, 1.0]
    assert counterfactual_error(pred, truth, ["a", "b"], reduction="sum").tolist() == [3.0, 2.0]
    assert counterfactual_error(pred, truth, ["a"]).tolist() == [1.0, 0.0]


def test_errors():
    with pytest.raises(DataError, match="shapes differ"):
        l1_distance(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(DataError, match="missing"):
        counterfactual_error({"a": torch.zeros(2)}, {"a": torch.zeros(2)}, ["b"])
    with pytest.raises(DataError, match="data_range"):
        psnr(torch.zeros(2, 1), torch.zeros(2, 1), data_range=0)
