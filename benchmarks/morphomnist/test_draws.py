"""The benchmark's intervention-value draw rule: a known answer on a hand-made value set, never the
factual's region on the published test split, and uniform draws."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from benchmarks.morphomnist import published
from benchmarks.morphomnist.draws import DrawRule, draw_digit, t10k_rules
from benchmarks.morphomnist.scaling import scale

#: a hand-made set of scaled values: bins of linspace(-1, 1, 10) hold
#: {-.9, -.8} {-.7} {-.5, -.4} {-.2} {0} {.2, .3} {.4} {.6, .7} {.9}
VALUES = np.array([-0.9, -0.8, -0.7, -0.5, -0.4, -0.2, 0.0, 0.2, 0.3, 0.4, 0.6, 0.7, 0.9], np.float32)
#: their means, by hand: the cut points (five of them are values themselves)
CUTS = [-0.85, -0.7, -0.45, -0.2, 0.0, 0.25, 0.4, 0.65, 0.9]
#: regions by hand: candidates (a value on a cut goes above it) and factuals (below it)
CANDIDATE_REGION = [0, 1, 2, 2, 3, 4, 5, 5, 6, 7, 7, 8, 9]
FACTUAL_REGION = [0, 1, 1, 2, 3, 3, 4, 5, 6, 6, 7, 8, 8]
#: the values a factual may not get, by hand (for -0.7 only -0.8: it may get itself)
EXCLUDED = {-0.9: [-0.9], -0.7: [-0.8], -0.5: [-0.7, -0.5], 0.2: [0.0, 0.2], 0.9: [0.7]}


@pytest.fixture
def rule() -> DrawRule:
    return DrawRule.from_scaled("thickness", VALUES[::-1].copy(), 10 * VALUES[::-1])


def test_known_answer_regions(rule):
    np.testing.assert_array_equal(rule.values, VALUES)
    np.testing.assert_array_equal(rule.raw, 10 * VALUES)
    np.testing.assert_allclose(rule.cuts, CUTS, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(rule.candidate_region(VALUES), CANDIDATE_REGION)
    np.testing.assert_array_equal(rule.factual_region(VALUES), FACTUAL_REGION)


def test_known_answer_candidate_sets(rule):
    rng = np.random.default_rng(0)
    for factual, excluded in EXCLUDED.items():
        drawn = rule.values[rule.draw(np.full(2000, factual, np.float32), rng)]
        expected = set(VALUES[~np.isin(VALUES, np.float32(excluded))].tolist())
        assert len(expected) == len(VALUES) - len(excluded)
        assert set(drawn.tolist()) == expected, factual


def test_draws_are_uniform_over_the_candidates(rule):
    n = 22_000  # 2,000 per candidate
    idx = rule.draw(np.full(n, -0.5, np.float32), np.random.default_rng(1))
    counts = np.bincount(idx, minlength=len(VALUES))
    assert counts[2] == counts[3] == 0  # -0.7 and -0.5: the factual's region
    observed = counts[counts > 0]
    assert len(observed) == 11
    statistic = ((observed - n / 11) ** 2 / (n / 11)).sum()
    assert statistic < stats.chi2.ppf(1 - 1e-6, df=10)


def test_digit_is_one_of_the_nine_others_uniformly():
    rng = np.random.default_rng(2)
    digits = np.tile(np.arange(10), 1800)
    drawn = draw_digit(digits, rng)
    assert (drawn != digits).all() and drawn.min() >= 0 and drawn.max() <= 9
    counts = np.bincount(drawn[digits == 3], minlength=10)
    assert counts[3] == 0
    statistic = ((counts[counts > 0] - 200) ** 2 / 200).sum()
    assert statistic < stats.chi2.ppf(1 - 1e-6, df=8)
    with pytest.raises(ValueError, match="0..9"):
        draw_digit(np.array([10]), rng)


def test_seeded_draws_repeat(rule):
    factual = VALUES[np.arange(100) % len(VALUES)]
    a = rule.draw(factual, np.random.default_rng(5))
    np.testing.assert_array_equal(a, rule.draw(factual, np.random.default_rng(5)))
    assert not np.array_equal(a, rule.draw(factual, np.random.default_rng(6)))


def test_an_empty_bin_is_refused():
    with pytest.raises(ValueError, match=r"thickness: no value in the bin\(s\) \[4\]"):
        DrawRule.from_scaled("thickness", np.delete(VALUES, 5), np.delete(VALUES, 5))


@pytest.mark.skipif(published.data_dir() is None,
                    reason=f"needs ../shared/data/{published.FOLDER} (or ${published.ENV_VAR})")
def test_never_the_factuals_region_on_the_published_test_split():
    rules = t10k_rules()
    t, i = published.targets("test")
    rng = np.random.default_rng(3)
    for node, factual in (("thickness", t), ("intensity", i)):
        rule = rules[node]
        assert len(rule.values) == 9995 and len(rule.cuts) == 9
        drawn = rule.draw_raw(factual, rng)
        assert drawn.dtype == np.float32 and np.isin(drawn, rule.raw).all()
        assert (rule.candidate_region(scale(node, drawn))
                != rule.factual_region(scale(node, factual))).all()


@pytest.mark.skipif(published.data_dir() is None,
                    reason=f"needs ../shared/data/{published.FOLDER} (or ${published.ENV_VAR})")
def test_draws_match_the_benchmarks_own_candidate_mask():
    """evaluate.py's ``different_value``: digitize(values, bins) != searchsorted(bins, value)."""
    rule = t10k_rules()["thickness"]
    rng = np.random.default_rng(4)
    factuals = np.concatenate([rule.values[rng.choice(len(rule.values), 40)], rule.values[-1:]])
    for value in factuals:
        mask = np.digitize(rule.values, rule.cuts) != np.searchsorted(rule.cuts, value)
        drawn = rule.draw(np.full(4000, value, np.float32), rng)
        assert mask[drawn].all()
        counts = np.bincount(drawn, minlength=len(mask))[mask]
        assert counts.sum() == 4000 and (counts > 0).sum() > 0.25 * mask.sum()
    assert rule.values[-1] == rule.cuts[-1]  # the thickest test image is its own cut ...
    own = rule.draw(np.full(100_000, rule.values[-1], np.float32), rng)
    assert (own == len(rule.values) - 1).any()  # ... and may be drawn for itself
