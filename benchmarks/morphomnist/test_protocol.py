"""The Morpho-MNIST protocol: known answers of every score, and the reference systems."""

from __future__ import annotations

import math
import tempfile

import numpy as np
import pytest
import torch

from benchmarks.morphomnist import protocol as P
from benchmarks.morphomnist import published
from benchmarks.morphomnist.dataset import ATTRIBUTE_RANGES, MorphoMNIST
from benchmarks.morphomnist.draws import DrawRule
from benchmarks.morphomnist.effectiveness import ReleasedPredictors
from benchmarks.morphomnist.scaling import scale
from causaldiff.datasets.base import Draw
from causaldiff import metrics as M
from causaldiff.datasets.mnist import ENV_VAR, locate
from causaldiff.errors import DataError

needs_mnist = pytest.mark.skipif(
    published.data_dir() is None or locate("train") is None or locate("test") is None,
    reason=f"needs the published files (${published.ENV_VAR}) and MNIST (${ENV_VAR})")


def test_bins_cover_the_scaled_range_in_nine():
    lo, hi = ATTRIBUTE_RANGES["thickness"]
    x = torch.tensor([lo, lo + (hi - lo) / 2, hi, hi + 1.0, lo - 1.0])
    assert P.bins("thickness", x).tolist() == [0, 4, 8, 8, 0]
    assert P.bins("digit", torch.tensor([3, 7])).tolist() == [3, 7]


def test_benchmark_interventions_follow_the_draw_rule():
    """Hand-made rules: the values come from the rule's candidates, outside the factual's region."""
    values = np.linspace(1.0, 6.0, 50, dtype=np.float32)
    rules = {"thickness": DrawRule.from_values("thickness", values),
             "intensity": DrawRule.from_values("intensity", np.linspace(70.0, 250.0, 50, dtype=np.float32))}
    factual = Draw({"thickness": torch.from_numpy(values[::5].copy()),
                    "intensity": torch.linspace(70.0, 250.0, 10), "digit": torch.arange(10)}, {})
    ivs = P.benchmark_interventions(factual, np.random.default_rng(0), rules)
    assert (ivs["digit"]["digit"] != factual.values["digit"]).all()
    for node, rule in rules.items():
        got = ivs[node][node].numpy()
        assert set(got.tolist()) <= set(rule.raw.tolist())
        f = rule.factual_region(scale(node, factual.values[node].numpy()))
        assert (rule.candidate_region(scale(node, got)) != f).all()


def test_effectiveness_scores_known_answer():
    targets = {"thickness": torch.tensor([2.0, 3.0]), "intensity": torch.tensor([100.0, 200.0]),
               "digit": torch.tensor([1, 2])}
    pred = {"thickness": torch.tensor([2.5, 2.5]), "intensity": torch.tensor([103.0, 199.0]),
            "digit": torch.tensor([1, 7])}
    assert P.effectiveness_scores(pred, targets) == {"thickness_mae": 0.5, "intensity_mae": 2.0, "digit_acc": 0.5}


def test_true_error_known_answer():
    truth = torch.zeros(3, 1, 4, 4)
    got = P.true_error(truth + 0.1, truth, truth + 0.2)
    assert got["mse"] == pytest.approx(0.01) and got["unchanged_mse"] == pytest.approx(0.04)
    assert got["psnr"] == pytest.approx(10 * math.log10(4 / 0.01))
    assert P.true_error(truth, truth, truth)["psnr"] == 100.0


def test_composition_on_the_grey_scale_known_answer():
    rows = {"thickness": torch.ones(2), "intensity": torch.ones(2), "digit": torch.zeros(2, dtype=torch.long),
            "image": torch.zeros(2, 1, 4, 4)}

    def drift(r, do):  # one grey level brighter per cycle
        return {**r, "image": r["image"] + 1 / 127.5}

    got = P.composition_scores(drift, rows)
    assert got["1"]["mean"] == pytest.approx(1.0) and got["10"]["mean"] == pytest.approx(10.0)
    assert P.composition_scores(P.unchanged_fn, rows)["10"] == {"mean": 0.0, "std": 0.0}


def test_weighted_cld_known_answers():
    mu = torch.tensor([[0.0], [5.0], [-5.0]])
    lv = torch.zeros(3, 1)
    f, labels = (mu[:1], lv[:1]), torch.tensor([0])
    ref = (mu, lv)
    ref_labels = torch.tensor([0, 1, 1])
    unchanged = M.cld_from_posteriors(f, f, ref, labels, torch.tensor([1]), ref_labels, weights=P.CLD_WEIGHTS)
    assert unchanged.item() == pytest.approx(math.log(0.8 + 0.2 * math.e))
    plain = M.cld_from_posteriors(f, f, ref, labels, torch.tensor([1]), ref_labels)
    assert plain.item() == pytest.approx(M.CLD_UNCHANGED)
    # moved as far as the target images: P(S_cf <= div) = 1, P(S_f >= div) = 0
    moved = M.cld_from_posteriors(f, (mu[1:2], lv[:1]), ref, labels, torch.tensor([1]), ref_labels,
                                  weights=P.CLD_WEIGHTS)
    assert moved.item() == pytest.approx(math.log(0.8 * math.e + 0.2))
    with pytest.raises(Exception, match="weights"):
        M.cld_from_posteriors(f, f, ref, labels, torch.tensor([1]), ref_labels, weights=(-1.0, 1.0))


@needs_mnist
def test_the_truth_scores_perfectly_and_the_unchanged_image_does_not():
    ds = MorphoMNIST(subset=16, workers=1, cache_dir=tempfile.mkdtemp())
    train, factual = ds.load("train", 16), ds.load("test", 6)
    ivs = P.benchmark_interventions(factual, np.random.default_rng(0))
    assert (ivs["digit"]["digit"] != factual.values["digit"]).all()
    predictors = ReleasedPredictors.load()
    true_ivs = {k: ivs[k] for k in ("thickness", "intensity")}
    truth = P.score_counterfactuals(P.truth_fn(ds, factual), ds, factual, true_ivs, predictors, None, train)
    assert truth["composition_l1"]["10"]["mean"] == 0.0
    for node in true_ivs:
        r = truth["interventions"][node]
        assert r["true_counterfactual"]["mse"] == 0.0 and r["reversibility_l1"]["mean"] == 0.0
        assert r["measured"]["thickness_mae"] < 0.4 and r["measured"]["intensity_mae"] < 4
    same = P.score_counterfactuals(P.unchanged_fn, ds, factual, ivs, predictors, None, train)
    t = same["interventions"]["thickness"]
    assert t["true_counterfactual"]["mse"] == t["true_counterfactual"]["unchanged_mse"] > 0
    assert t["measured"]["thickness_mae"] > truth["interventions"]["thickness"]["measured"]["thickness_mae"]
    assert same["interventions"]["digit"]["minimality_l1"]["mean"] == 0.0


@needs_mnist
def test_true_counterfactuals_render_once_and_serve_prefixes():
    ds = MorphoMNIST(subset=16, workers=1, cache_dir=tempfile.mkdtemp())
    train, factual = ds.load("train", 16), ds.load("test", 6)
    ivs = P.benchmark_interventions(factual, np.random.default_rng(0))
    truths = P.TrueCounterfactuals(ds, factual, ivs, background=True)
    assert set(truths.interventions) == {"thickness", "intensity"}  # do(digit) has no true image
    want = ds.counterfactual(factual, ivs["thickness"])
    got = truths.fn(factual.values, ivs["thickness"])
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert got["image"] is truths.rows("thickness")["image"]  # from the rendered cache
    head = {k: v[:3] for k, v in factual.values.items()}
    back = truths.fn(head, {"thickness": head["thickness"]})  # a null intervention: the factual rows
    assert torch.equal(back["image"], factual.values["image"][:3])
    part = truths.fn(head, {k: v[:3] for k, v in ivs["intensity"].items()})
    assert torch.equal(part["image"], truths.rows("intensity")["image"][:3])
    with pytest.raises(DataError, match="6 factual rows"):
        truths.fn({k: torch.cat([v, v]) for k, v in factual.values.items()}, ivs["thickness"])


@needs_mnist
def test_protocol_detail_rows_and_sweep_scores():
    ds = MorphoMNIST(subset=16, workers=1, cache_dir=tempfile.mkdtemp())
    train, factual = ds.load("train", 16), ds.load("test", 6)
    ivs = P.benchmark_interventions(factual, np.random.default_rng(0))
    predictors = ReleasedPredictors.load()
    protocol = P.Protocol(ds, factual, ivs, predictors, None, train, (1, 2), detail=2)
    full = protocol.score(P.unchanged_fn)
    assert full["n"] == 6 and full["n_detail"] == 2 and set(full["composition_l1"]) == {"1", "2"}
    assert set(full["interventions"]["digit"]["effectiveness"]) == {"batch", "eval"}
    floors = protocol.floors()
    assert floors["eval"]["digit_acc"] == 1.0, "the released digit predictor reads the 6 real images"
    digit = full["interventions"]["digit"]
    assert {"effectiveness", "measured", "minimality_l1", "reversibility_l1"} <= set(digit)
    swept = protocol.head(4).score(P.unchanged_fn, sweep=True)
    assert swept["n"] == 4 and "composition_l1" not in swept
    assert "reversibility_l1" not in swept["interventions"]["thickness"]
    given = {"thickness": P.unchanged_fn(factual.values, ivs["thickness"])}

    def never(rows, do):
        raise AssertionError("the given counterfactual rows are used, not recomputed")

    used = protocol.score(never, ("thickness",), sweep=True, counterfactuals=given)
    assert used["interventions"]["thickness"]["effectiveness"] == full["interventions"]["thickness"]["effectiveness"]
