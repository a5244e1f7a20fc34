"""The DCM protocol: the true model scores 0, a wrong one does not; draws are reproducible; the
summaries and tables say what they hold."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from causaldiff.datasets.tabular import get_tabular_scm
from benchmarks.dcm import protocol as dcm
from benchmarks.dcm.systems import CausaldiffSystem
from benchmarks.dcm.true_mechanisms import true_factory

TRUTH = get_tabular_scm("triangle-nonlinear")
TINY = dcm.DCMSettings(rows=16, values=2, n_cf=32, n_int=32, quantile_draws=200)


def _system(name: str, **kw):
    return CausaldiffSystem(name, dcm.truth_graph(TRUTH), true_factory(TRUTH, **kw), dtype=torch.float64)


def test_the_true_model_scores_zero_and_a_wrong_one_does_not():
    res = dcm.evaluate_seed(TRUTH, [_system("true"), _system("wrong", ignore_parents=True)], 0, TINY)
    for node in TRUTH.intervention_nodes:
        assert res.cf_mse[(node, "true")] < 1e-24
        assert res.cf_mse[(node, "wrong")] > 1e-2
        assert res.floor[node] > 0
        # the true model's interventional samples come from the truth's distribution: near the floor
        assert res.mmd[(node, "true")] < 5 * res.floor[node] + 0.05
    assert set(res.fit_s) == {"true", "wrong"} and len(res.cf_ms["true"]) == 2 * TINY.values


def test_queries_are_reproducible_and_exact():
    a = list(dcm.queries(TRUTH, "x1", TINY, torch.Generator().manual_seed(5)))
    b = list(dcm.queries(TRUTH, "x1", TINY, torch.Generator().manual_seed(5)))
    assert len(a) == TINY.values
    for qa, qb in zip(a, b, strict=True):
        assert torch.equal(qa.cf_truth, qb.cf_truth) and torch.equal(qa.int_truth, qb.int_truth)
        assert qa.cf_truth.shape == (TINY.n_cf, 2) and qa.int_truth.shape == (TINY.n_int, 2)
    grid = TRUTH.quantile_grid("x1", TINY.values, n_draws=TINY.quantile_draws,
                               generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.stack([q.value for q in a]), grid)
    assert dcm.query_seed(2, 1, 0) != dcm.query_seed(2, 0, 1)


def test_counterfactual_mse_over_rows_and_coordinates():
    truth = {"a": torch.zeros(4), "b": torch.zeros(4, 2)}
    pred = {"a": torch.ones(4), "b": torch.full((4, 2), 2.0)}
    p, t = dcm.stack_nodes(pred, ["a", "b"]), dcm.stack_nodes(truth, ["a", "b"])
    assert p.shape == (4, 3) and p.dtype == torch.float64
    assert dcm.counterfactual_mse(p, t) == pytest.approx((1 + 4 + 4) / 3)
    with pytest.raises(ValueError, match="shape"):
        dcm.counterfactual_mse(p, t[:, :2])


def test_run_summaries_and_tables():
    out = dcm.run_dcm(lambda seed: TRUTH, [0, 1], lambda truth: [_system("true")], TINY, label="tri")
    assert [r["node"] for r in out["rows"]] == list(TRUTH.intervention_nodes)
    row = out["rows"][0]
    assert row["descendants"] == list(TRUTH.descendants(row["node"]))
    floor = row["mmd_noise_floor"]
    assert len(floor["per_seed"]) == 2
    assert floor["mean"] == pytest.approx(np.mean(floor["per_seed"]))
    assert floor["std"] == pytest.approx(np.std(floor["per_seed"]))  # population std, x100 already
    assert out["timings"]["true"]["fit_s"]["n"] == 2
    rows = [{**r, "label": "triangle", "kind": "nonlinear",
             "anchor": dcm.dowhy_anchor("triangle", "nonlinear", r["node"])} for r in out["rows"]]
    text = "\n".join(dcm.markdown_body(rows, {"tri": out["timings"]}, ["true"]))
    assert "| triangle | x1 |" in text and "19.07 ± 5.13" in text and "## nonlinear" in text
    assert "| tri | true |" in text
    assert dcm.dowhy_anchor("chain", "nonlinear", "x3") is None


def test_settings_are_frozen_and_checked():
    with pytest.raises(Exception, match="frozen"):
        TINY.rows = 3
    with pytest.raises(Exception, match="extra"):
        dcm.DCMSettings(row=3)
    assert dcm.DCMSettings.quick().rows == 500
