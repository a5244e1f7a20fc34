"""Image-axiom evaluation on SCMs whose counterfactuals are known in closed form.

``label -> image`` with an exact location model: ``image = loc(label) + u``, ``u ~ N(0, I)``, where
``loc`` writes the label into the first pixel. Abduction is exact, so ``do(label = t)`` moves the
first pixel by ``t - label`` and leaves every other pixel alone: effectiveness 1 for a classifier
that reads the first pixel, minimality ``|t - label| / P``, composition and reversibility 0 (up to
float rounding). A model whose image ignores the label scores effectiveness 0 and minimality 0.
"""

from __future__ import annotations

import math

import networkx as nx
import pyro.distributions as dist
import pytest
import torch

from causaldiff import SCM, PyroMechanism
from causaldiff.errors import DataError, GraphError
from causaldiff.mechanisms import DiffusionMechanism
from causaldiff.evaluation.axioms import (axiom_metrics, counterfactual_fn, counterfactual_image_scores,
                                          guidance_sweep, image_counterfactual_metrics, mean_sem, other_class,
                                          shared_abduction_counterfactuals, with_inference)


K, SHAPE = 4, (1, 3, 3)
P = math.prod(SHAPE)


def _loc(label: torch.Tensor, scale: float) -> torch.Tensor:
    loc = torch.zeros(label.shape[0], *SHAPE, dtype=torch.float64)
    loc[:, 0, 0, 0] = scale * label.double()
    return loc


def _scm(reads_label: bool = True, with_root: bool = False) -> SCM:
    """``label -> image`` (and ``z -> image`` with ``with_root``, ``z`` not abductable): the first
    pixel is ``label`` (0 if not ``reads_label``), the second ``z``, plus unit Gaussian noise."""
    g = nx.DiGraph([("label", "image")] + ([("z", "image")] if with_root else []))
    g.nodes["label"]["mechanism"] = dist.Categorical(torch.full((K,), 1.0 / K))
    scale = 1.0 if reads_label else 0.0
    if with_root:
        # a root that cannot be abducted: a counterfactual on the label never needs its noise
        g.nodes["z"]["mechanism"] = dist.Gamma(torch.tensor(2.0, dtype=torch.float64), 1.0)

        def image(label, z):
            loc = _loc(label, scale)
            loc[:, 0, 0, 1] = z
            return dist.Normal(loc, 1.0).to_event(3)
    else:
        def image(label):
            return dist.Normal(_loc(label, scale), 1.0).to_event(3)
    g.nodes["image"]["mechanism"] = image
    return SCM(g)


def first_pixel_classifier(images: torch.Tensor) -> torch.Tensor:
    """Logits of the class nearest the first pixel: exact on this SCM up to the noise."""
    return -(images[:, 0, 0, 0, None].double() - torch.arange(K, dtype=torch.float64)).pow(2)


def _factual(scm: SCM, n: int = 32) -> dict:
    rows = dict(scm.sample(n, seed=1))
    rows["image"] = rows["image"].clone()
    rows["image"][:, 0, 0, 0] = rows["label"].double()  # noise-free first pixel: the classifier is exact
    return rows


def test_exact_model_known_scores():
    scm = _scm()
    factual = _factual(scm)
    target = other_class(factual["label"], K, torch.Generator().manual_seed(0))
    m = image_counterfactual_metrics(scm, factual, {"label": target}, image_node="image", label="label",
                                     classifier=first_pixel_classifier, cycles=(1, 3), batch_size=5)
    assert m["effectiveness"] == 1.0
    expected = float(((target - factual["label"]).abs().double() / P).mean())
    assert m["minimality_l1"] == pytest.approx(expected, abs=1e-12)
    assert m["reversibility_l1"] < 1e-12 and m["composition_l1_1"] < 1e-12 and m["composition_l1_3"] < 1e-12
    assert m["counterfactual_seconds"] > 0


def test_model_that_ignores_the_label_scores_zero_effectiveness_and_minimality():
    scm = _scm(reads_label=False)
    factual = dict(scm.sample(16, seed=2))
    target = other_class(factual["label"], K, torch.Generator().manual_seed(0))
    m = image_counterfactual_metrics(scm, factual, {"label": target}, image_node="image", label="label",
                                     classifier=lambda x: torch.nn.functional.one_hot(factual["label"], K).double(),
                                     summary=mean_sem)
    assert m["effectiveness"] == 0.0  # the image keeps telling the factual label
    assert m["minimality_l1"] == {"mean": 0.0, "sem": 0.0}
    assert m["reversibility_l1"]["mean"] == 0.0 and m["composition_l1_10"]["mean"] == 0.0


def test_scores_against_the_true_counterfactual():
    x = torch.rand(6, *SHAPE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cf = x.clone()
    cf[:, 0, 0, 0] = 1.0
    labels = torch.zeros(6, dtype=torch.long)
    s = counterfactual_image_scores(x, cf, labels, truth_images=cf)
    assert s["true_cf_mse"] == 0.0 and s["true_cf_psnr"] == 100.0  # identical images: capped at 100 dB
    assert s["unchanged_factual_mse"] == pytest.approx(float(((x - cf) ** 2).mean()), rel=1e-6)
    assert "effectiveness" not in s and "CLD" not in s  # only what was asked for


def test_counterfactual_fn_batches_equal_one_call():
    scm = _scm()
    factual = _factual(scm, 11)
    do = {"label": other_class(factual["label"], K, torch.Generator().manual_seed(3))}
    whole = counterfactual_fn(scm)(factual, do)
    chunks = counterfactual_fn(scm, batch_size=4)(factual, do)
    assert all(torch.equal(whole[k], chunks[k]) for k in whole)


def test_axiom_metrics_composition_on_the_first_rows():
    scm = _scm()
    factual = _factual(scm, 10)
    m = axiom_metrics(scm, factual, {"label": 0}, image_node="image", label="label", cycles=(2,),
                      reversibility=False, n_composition=3, summary=lambda v: v.shape[0])
    assert m == {"composition_l1_2": 3}


@pytest.mark.parametrize("with_root", [False, True])
def test_sweep_rows_are_the_counterfactuals(with_root):
    """Shared abduction then generation equals scm.counterfactual bit for bit; a non-descendant
    parent (``z``) keeps its factual value and is never abducted, as in a counterfactual."""
    scm = _scm(with_root=with_root)
    factual = _factual(scm, 8)
    do = {"label": other_class(factual["label"], K, torch.Generator().manual_seed(0))}
    seen = []
    sweeps, rows = guidance_sweep(scm, factual, do, image_node="image", scales=(0.0, 2.0), nodes=[],
                                  score=lambda s, r: {"n": r["image"].shape[0]}, batch_size=3,
                                  on_row=lambda f, s, r: seen.append((f, s)))
    assert sweeps == {None: {0.0: {"n": 8}, 2.0: {"n": 8}}} and seen == [(None, 0.0), (None, 2.0)]
    cf = scm.counterfactual(factual, do=do, seed=0)
    for key in [(None, 0.0), (None, 2.0)]:
        assert all(torch.equal(rows[key][k], cf[k]) for k in cf)


def test_with_inference_without_settings_is_the_same_scm_and_refuses_other_nodes():
    scm = _scm()
    assert with_inference(scm, guidance_scale=None) is scm
    with pytest.raises(GraphError, match=r"\['image'\] are not"):
        with_inference(scm, ["image"], guidance_scale=1.0)


def test_a_guidance_scale_sweep_leaves_conditional_nodes_as_they_are():
    """A conditional denoiser refuses guidance_scale (it would change nothing): the sweep helper gives it
    to the anti-causal nodes only."""
    scm = SCM(nx.DiGraph([("y", "x")]), {"y": dist.Normal(0.0, 1.0), "x": DiffusionMechanism(guidance="conditional")})
    assert with_inference(scm, guidance_scale=3.0) is scm
    half = with_inference(scm, guidance_scale=3.0, abduction_fraction=0.5).mechanisms["x"].config
    assert half.abduction_fraction == 0.5 and half.guidance_scale == 1.0


def test_missing_inputs_are_named():
    scm = _scm()
    factual = _factual(scm, 4)
    with pytest.raises(DataError, match="'lbl'"):
        image_counterfactual_metrics(scm, factual, {"label": 0}, image_node="image", label="lbl")
    x = factual["image"]
    with pytest.raises(DataError, match="reference"):
        counterfactual_image_scores(x, x, factual["label"], factual_label=factual["label"], vae=object())
    with pytest.raises(DataError, match="factual_label"):
        counterfactual_image_scores(x, x, factual["label"], autoencoders=object())


def test_other_class_differs_and_covers_the_others():
    labels = torch.arange(K).repeat(200)
    other = other_class(labels, K, torch.Generator().manual_seed(0))
    assert not bool((other == labels).any())
    for k in range(K):
        assert set(other[labels == k].tolist()) == set(range(K)) - {k}


def test_mean_sem():
    ms = mean_sem(torch.tensor([1.0, 3.0]))
    assert ms["mean"] == 2.0 and ms["sem"] == pytest.approx(1.0)
    assert math.isnan(mean_sem(torch.tensor([1.0]))["sem"])


def test_shared_abduction_gives_the_counterfactuals():
    def y(x):
        return dist.Normal(2 * x + 1, 0.5)

    scm = SCM(nx.DiGraph([("x", "y"), ("x", "z"), ("y", "z")]),
              {"x": PyroMechanism(dist.Normal(0.0, 1.0)), "y": PyroMechanism(y),
               "z": PyroMechanism(lambda x, y: dist.Normal(x - y, 1.0))})
    rows = scm.sample(9, seed=0)
    dos = {"x": {"x": torch.linspace(-1, 1, 9)}, "y": {"y": torch.zeros(9)}}
    got = shared_abduction_counterfactuals(scm, rows, dos, batch_size=4, seed=0)
    for name, do in dos.items():
        want = scm.counterfactual(rows, do=do, seed=0)
        for k in want:
            torch.testing.assert_close(got[name][k], want[k], rtol=0, atol=1e-6)
        assert torch.equal(got["y"]["x"], rows["x"])  # a non-descendant kept bit for bit
