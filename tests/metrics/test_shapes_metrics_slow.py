"""End to end on the shapes SCM: the true counterfactuals score well on every trained metric."""

from __future__ import annotations

import math

import pytest
import torch

from causaldiff.datasets import ShapesSCM
from causaldiff.metrics import (AutoencoderConfig, ClassifierConfig, VAEConfig, cld, effectiveness,
                                im1, im2, train_autoencoders, train_classifier, train_vae)


@pytest.mark.slow
def test_true_counterfactuals_score_well():
    scm = ShapesSCM()
    train = scm.sample(4000, torch.Generator().manual_seed(0))
    test = scm.sample(600, torch.Generator().manual_seed(1))
    y, yt = train.values["shape"], test.values["shape"]
    target = (yt + 1) % 3
    cf = scm.counterfactual(test, {"shape": target})["image"]

    clf = train_classifier(train.values["image"], y, config=ClassifierConfig(steps=400, batch_size=64,
                                                                   hidden=16, lr=3e-3))
    assert effectiveness(clf, cf, target) >= 0.95
    assert effectiveness(clf, test.values["image"], target) <= 0.05  # unchanged images fail

    aes = train_autoencoders(train.values["image"], y, config=AutoencoderConfig(steps=300, batch_size=32,
                                                                      lr=3e-3))
    good, unchanged = im1(aes, cf, target, yt).mean(), im1(aes, test.values["image"], target, yt).mean()
    assert good < 1 < unchanged
    assert im2(aes, cf, target).mean() < im2(aes, test.values["image"], target).mean()

    vae = train_vae(train.values["image"], config=VAEConfig(steps=300, batch_size=64, lr=2e-3))
    score = cld(vae, test.values["image"], cf, yt, target, test.values["image"], yt)
    assert math.log(2) <= score.min() and score.max() <= math.log(2 * math.e)
