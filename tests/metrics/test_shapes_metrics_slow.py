"""End to end on the shapes SCM: the true counterfactuals score well on every trained metric."""

from __future__ import annotations

import math

import pytest
import torch

from causaldiff.datasets.images import ShapesSCM
from causaldiff.metrics import (AutoencoderConfig, ClassifierConfig, VAEConfig, cld, effectiveness,
                                im1, im2, train_autoencoders, train_classifier, train_vae)


@pytest.mark.slow
def test_true_counterfactuals_score_well():
    scm = ShapesSCM()
    train = scm.sample(4000, torch.Generator().manual_seed(0))
    test = scm.sample(600, torch.Generator().manual_seed(1))
    y, yt = train.parents["shape"], test.parents["shape"]
    target = (yt + 1) % 3
    cf = scm.true_counterfactual(test, {"shape": target})

    clf = train_classifier(train.image, y, config=ClassifierConfig(steps=400, batch_size=64,
                                                                   hidden=16, lr=3e-3))
    assert effectiveness(clf, cf.image, target) >= 0.95
    assert effectiveness(clf, test.image, target) <= 0.05  # unchanged images fail

    aes = train_autoencoders(train.image, y, config=AutoencoderConfig(steps=300, batch_size=32,
                                                                      lr=3e-3))
    good, unchanged = im1(aes, cf.image, target, yt).mean(), im1(aes, test.image, target, yt).mean()
    assert good < 1 < unchanged
    assert im2(aes, cf.image, target).mean() < im2(aes, test.image, target).mean()

    vae = train_vae(train.image, config=VAEConfig(steps=300, batch_size=64, lr=2e-3))
    score = cld(vae, test.image, cf.image, yt, target, test.image, yt)
    assert math.log(2) <= score.min() and score.max() <= math.log(2 * math.e)
