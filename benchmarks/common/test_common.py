"""The image benchmarks' shared parts: the training budget and the main-pair rules."""

from __future__ import annotations

import pytest

from benchmarks.common.budget import Budget, budget_steps
from benchmarks.common.choose import choose_main
from causaldiff.training import TrainConfig

RANKED = {"thickness MAE do(t)": 1.0, "intensity MAE do(i)": 1.0, "digit acc do(digit)": -1.0}


def test_budget_takes_the_steps_that_fit_capped_by_the_setting():
    cfg = TrainConfig(steps=1000)
    fitted, info = budget_steps(cfg, Budget(seconds=10.0, min_steps=5), lambda: 0.05)
    assert fitted.steps == 200 and info["steps"] == 200 and info["expected_s"] == pytest.approx(10.0)
    assert budget_steps(cfg, Budget(seconds=1e6), lambda: 0.05)[0].steps == 1000  # capped
    assert budget_steps(cfg, Budget(seconds=0.01, min_steps=7), lambda: 0.05)[0].steps == 7
    same, info = budget_steps(cfg, None, lambda: pytest.fail("no probe without a budget"))
    assert same is cfg and info == {"budgeted": False, "steps": 1000}


def flat(sweeps: dict) -> dict:
    return {(f, s): r for f, sw in sweeps.items() for s, r in sw.items()}


def _row(cld, eff):
    return {"CLD": {"mean": cld, "sem": 0.0}, "effectiveness": eff}


def test_main_pair_is_the_lowest_cld_among_effective_ones_else_the_most_effective():
    sweeps = {0.75: {0.0: _row(1.31, 0.1), 1.0: _row(1.10, 0.92), 3.0: _row(1.15, 0.97)},
              1.0: {0.0: _row(1.30, 0.1), 1.0: _row(1.08, 0.89), 3.0: _row(1.12, 0.99)}}
    assert choose_main(flat(sweeps), "cld") == (0.75, 1.0)  # 1.0/1.0 has a lower CLD but misses 0.9
    assert choose_main(flat(sweeps), "cld", effective=0.85) == (1.0, 1.0)
    weak = {0.75: {0.0: _row(1.31, 0.1), 2.0: _row(1.2, 0.5)}, 1.0: {0.0: _row(1.3, 0.1), 2.0: _row(1.1, 0.5)}}
    assert choose_main(flat(weak), "cld") == (1.0, 2.0)  # equally effective: the lower CLD


def sweep_of(t: list[float], i: list[float], d: list[float], scales=(0.0, 1.0, 3.0), fraction=1.0) -> dict:
    return {(fraction, s): {"thickness MAE do(t)": a, "intensity MAE do(i)": b, "digit acc do(digit)": c}
            for s, a, b, c in zip(scales, t, i, d)}


def test_best_mean_rank_known_answers():
    # best on all three at s = 3
    assert choose_main(sweep_of([0.5, 0.4, 0.3], [20, 10, 5], [0.1, 0.5, 0.9]), "rank", ranked=RANKED) == (1.0, 3.0)
    # s = 1 wins two of three figures; s = 3 the digit one: mean ranks 1.0, 0.67, 1.33
    assert choose_main(sweep_of([0.5, 0.2, 0.3], [20, 4, 5], [0.1, 0.2, 0.9]), "rank", ranked=RANKED) == (1.0, 1.0)
    # a tie in every figure goes to the smaller fraction, then the smaller scale
    tie = {**sweep_of([0.3] * 3, [5] * 3, [0.5] * 3), **sweep_of([0.3] * 3, [5] * 3, [0.5] * 3, fraction=0.75)}
    assert choose_main(tie, "rank", ranked=RANKED) == (0.75, 0.0)
    mixed = {**sweep_of([0.3, 0.3], [5, 5], [0.1, 0.2], (1.0, 3.0)), **sweep_of([0.2, 0.25], [4, 6], [0.1, 0.1], (1.0, 3.0), 0.75)}
    assert choose_main(mixed, "rank", ranked=RANKED) == (0.75, 1.0)  # rank sums: (0.75, 1) 1, (0.75, 3) 6, (1, 1) 6, (1, 3) 5


def test_unknown_rules_and_empty_sweeps_are_refused():
    with pytest.raises(ValueError, match="unknown rule 'best'"):
        choose_main({(1.0, 0.0): {}}, "best")
    with pytest.raises(ValueError, match="needs the figures to rank"):
        choose_main({(1.0, 0.0): {}}, "rank")
    with pytest.raises(ValueError, match="empty"):
        choose_main({}, "cld")
