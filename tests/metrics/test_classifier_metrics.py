"""Effectiveness with a hand-made classifier, and a training smoke test."""

from __future__ import annotations

import pytest
import torch

from causaldiff.errors import DataError
from causaldiff.metrics import ClassifierConfig, effectiveness, predict, train_classifier


def _bright_or_dark(images):
    """Logits for class 1 when the mean pixel is positive, class 0 otherwise."""
    m = images.flatten(1).mean(1)
    return torch.stack([-m, m], dim=1)


def test_effectiveness_known_accuracy():
    images = torch.tensor([-0.5, 0.5, 0.5, -0.5])[:, None, None, None].expand(4, 1, 4, 4)
    targets = torch.tensor([0, 1, 0, 0])  # rows 0, 1, 3 are right
    assert effectiveness(_bright_or_dark, images, targets).item() == 0.75
    assert predict(_bright_or_dark, images, batch_size=3).tolist() == [0, 1, 1, 0]


def test_train_classifier_smoke():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (200,), generator=g)
    # class 1: a bright top half, class 0: a bright bottom half (same mean brightness)
    images = torch.full((200, 1, 8, 8), -1.0)
    images[labels == 1, :, :4] = 1.0
    images[labels == 0, :, 4:] = 1.0
    images += 0.1 * torch.randn(images.shape, generator=g)
    model = train_classifier(images[:150], labels[:150],
                             config=ClassifierConfig(steps=40, batch_size=32, hidden=8, lr=3e-3,
                                                     log_every=10))
    assert model.history[-1] < model.history[0]
    assert effectiveness(model, images[150:], labels[150:]).item() == 1.0
    assert model.predict(images[150:]).dtype == torch.long


def test_errors():
    with pytest.raises(DataError, match="integer labels"):
        effectiveness(_bright_or_dark, torch.zeros(3, 1, 4, 4), torch.zeros(3))
    with pytest.raises(DataError, match="logits"):
        predict(lambda x: x.flatten(1).mean(1), torch.zeros(3, 1, 4, 4))
    with pytest.raises(DataError, match=r"\(n, 1, H, W\)"):
        train_classifier(torch.zeros(3, 4, 4), torch.zeros(3, dtype=torch.long))
