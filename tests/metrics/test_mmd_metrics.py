"""Biased MMD^2 with the RBF median heuristic of the DCM protocol (gamma from the distances
*between* the two sets): exact small cases, a direct computation and a closed-form Gaussian case."""

from __future__ import annotations

import math

import pytest
import torch

from causaldiff.errors import DataError
from causaldiff.metrics import median_heuristic_gamma, mmd2


def test_identical_sets_score_exactly_zero():
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    assert mmd2(x, x.clone()).item() == 0.0


def test_small_exact_values():
    x, y = torch.tensor([[0.0], [1.0], [2.0]]), torch.tensor([[10.0]])
    # cross squared distances 100, 81, 64 -> median 81 (the pooled set's median would be 4)
    assert median_heuristic_gamma(x, y).item() == pytest.approx(1 / 81, rel=1e-15)
    # x = {0}, y = {1}, gamma = 1: 1 + 1 - 2 exp(-1)
    v = mmd2(torch.zeros(1, 1), torch.ones(1, 1), gamma=1.0)
    assert v.item() == pytest.approx(2 - 2 / math.e)
    # zero distances are not "positive": cross {0, 1} -> positives {1} -> gamma 1
    assert median_heuristic_gamma(torch.tensor([[0.0], [1.0]]), torch.zeros(1, 1)).item() == 1.0
    # an even count takes the lower middle value: cross {4, 9} -> 1/4
    assert median_heuristic_gamma(torch.tensor([[1.0], [0.0]]), torch.full((1, 1), 3.0)).item() == 0.25


def test_matches_a_direct_computation():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 2, generator=g, dtype=torch.float64)
    y = torch.randn(5, 2, generator=g, dtype=torch.float64) + 0.5
    pos = sorted(float(((a - b) ** 2).sum()) for a in x for b in y)
    gamma = 1 / pos[(len(pos) - 1) // 2]  # 35 cross distances: the middle one
    k = lambda a, b: math.exp(-gamma * float(((a - b) ** 2).sum()))  # noqa: E731
    kxx = sum(k(a, b) for a in x for b in x) / 49
    kyy = sum(k(a, b) for a in y for b in y) / 25
    kxy = sum(k(a, b) for a in x for b in y) / 35
    assert median_heuristic_gamma(x, y).item() == pytest.approx(gamma, rel=1e-12)
    assert mmd2(x, y).item() == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-10)


def test_dict_rows_equal_stacked_columns():
    g = torch.Generator().manual_seed(1)
    a = {"u": torch.randn(30, generator=g), "v": torch.randn(30, generator=g)}
    b = {"u": torch.randn(30, generator=g) + 1, "v": torch.randn(30, generator=g)}
    stacked = mmd2(torch.stack([a["u"], a["v"]], 1), torch.stack([b["u"], b["v"]], 1))
    assert mmd2(a, b).item() == pytest.approx(stacked.item(), rel=1e-12)
    assert mmd2(a, b, nodes=["u"]).item() == pytest.approx(
        mmd2(a["u"], b["u"]).item(), rel=1e-12)


@pytest.mark.parametrize("shift", [0.0, 3.0])
def test_shifted_gaussians_match_the_closed_form(shift):
    """X ~ N(0, 1), Y ~ N(shift, 1), k = exp(-gamma d^2) with gamma = 1/2:
    MMD^2 = 2 (1 + 4 gamma)^(-1/2) (1 - exp(-gamma shift^2 / (1 + 4 gamma))).
    Tolerance: |MMD_b - MMD| <= 2 sqrt(1/m) + sqrt(4 log(2/alpha) / m) with probability
    1 - alpha (Gretton et al. 2012, Theorem 7, kernel bounded by 1), alpha = 1e-6."""
    m, gamma = 1000, 0.5
    g = torch.Generator().manual_seed(7)
    x = torch.randn(m, 1, generator=g, dtype=torch.float64)
    y = torch.randn(m, 1, generator=g, dtype=torch.float64) + shift
    c = 1 + 4 * gamma
    population = 2 / math.sqrt(c) * (1 - math.exp(-gamma * shift ** 2 / c))
    tol = 2 / math.sqrt(m) + math.sqrt(4 * math.log(2 / 1e-6) / m)
    estimate = mmd2(x, y, gamma=gamma).item()
    assert abs(math.sqrt(max(estimate, 0)) - math.sqrt(population)) <= tol
    if shift:
        assert mmd2(x, y).item() > mmd2(x, torch.randn(m, 1, generator=g, dtype=torch.float64))


def test_a_single_repeated_point_scores_zero():
    assert mmd2(torch.ones(3, 2), torch.ones(2, 2)).item() == 0.0


def test_errors():
    with pytest.raises(DataError, match="features"):
        mmd2(torch.ones(3, 2), torch.ones(3, 3))
    with pytest.raises(DataError, match="misses"):
        mmd2({"a": torch.ones(3)}, {"b": torch.ones(3)}, nodes=["a"])
    with pytest.raises(DataError, match="NaN"):
        mmd2(torch.tensor([[float("nan")]]), torch.ones(1, 1))
    with pytest.raises(DataError, match="gamma"):
        mmd2(torch.zeros(2, 1), torch.ones(2, 1), gamma=0.0)
