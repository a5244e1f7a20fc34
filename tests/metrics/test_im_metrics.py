"""IM1 / IM2 with hand-made autoencoders (analytic values) and a training smoke test."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from causaldiff.errors import DataError
from causaldiff.metrics import AutoencoderConfig, AutoencoderSet, im1, im2, train_autoencoders
from causaldiff.metrics.autoencoders import GroupedConvAutoencoder


class Scales(nn.Module):
    """A fixed 'autoencoder' per output channel: channel c reconstructs x as scales[c] * x."""

    def __init__(self, scales):
        super().__init__()
        self.register_buffer("scales", torch.tensor(scales)[None, :, None, None])

    def forward(self, x):
        return x * self.scales


@pytest.fixture
def aes() -> AutoencoderSet:
    # class 0 outputs zeros, class 1 halves, class 2 is the identity; the global AE quarters.
    return AutoencoderSet(Scales([0.0, 0.5, 1.0]), Scales([0.25]), num_classes=3)


def test_im1_known_values(aes):
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x01 = (x + 1) / 2
    sq = x01.pow(2).flatten(1).sum(1).double()
    # target 0 (zeros), original 1 (halves): ||x||^2 / (||x/2||^2 + eps) = 4 (up to eps)
    t, o = torch.zeros(6, dtype=torch.long), torch.ones(6, dtype=torch.long)
    torch.testing.assert_close(im1(aes, x, t, o), sq / (sq / 4 + 1e-8))
    # target 2 (identity): the numerator is exactly zero
    assert im1(aes, x, torch.full((6,), 2), o).abs().max() == 0
    # per-row targets select per-row autoencoders
    mixed = im1(aes, x, torch.tensor([0, 2, 0, 2, 0, 2]), o)
    assert mixed[1::2].abs().max() == 0
    torch.testing.assert_close(mixed[0::2], torch.full((3,), 4.0, dtype=torch.float64), rtol=1e-6, atol=0)


def test_im2_known_values(aes):
    v = 0.6  # constant image in [0, 1]: IM2 = sum((s_t - 1/4)^2 v^2) / sum(v) = (s_t - 1/4)^2 v
    x = torch.full((3, 1, 8, 8), 2 * v - 1)
    out = im2(aes, x, torch.tensor([0, 1, 2]))
    expected = torch.tensor([(0 - 0.25) ** 2, (0.5 - 0.25) ** 2, (1 - 0.25) ** 2]) * v
    torch.testing.assert_close(out, expected.double(), rtol=1e-6, atol=1e-7)


def test_value_range_maps_to_unit_interval():
    aes01 = AutoencoderSet(Scales([0.0, 0.5]), Scales([1.0]), num_classes=2, value_range=(0.0, 1.0))
    aes11 = AutoencoderSet(Scales([0.0, 0.5]), Scales([1.0]), num_classes=2)
    x01 = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 1, 0, 1])
    torch.testing.assert_close(im2(aes01, x01, t), im2(aes11, 2 * x01 - 1, t))


def test_grouped_autoencoders_are_independent():
    """Output channel c of the grouped network depends on input channel c only."""
    torch.manual_seed(0)
    net = GroupedConvAutoencoder(3, 4, 2, 2)
    x = torch.rand(2, 3, 16, 16)
    y = x.clone()
    y[:, 1] += 1.0
    d = (net(x) - net(y)).abs().amax(dim=(0, 2, 3))
    assert d[0] == 0 and d[2] == 0 and d[1] > 0


def test_train_autoencoders_smoke():
    """Two classes of constant images (0.2 and 0.8 in [0, 1]); 60 steps reduce the losses."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 2
    images = (torch.where(labels == 0, -0.6, 0.6)[:, None, None, None]
              + 0.05 * torch.randn(40, 1, 16, 16, generator=g))
    cfg = AutoencoderConfig(steps=60, batch_size=8, hidden=4, lr=3e-3, log_every=10)
    aes = train_autoencoders(images, labels, config=cfg, seed=0)
    assert aes.history["class"][-1] < 0.5 * aes.history["class"][0]
    assert aes.history["global"][-1] < 0.5 * aes.history["global"][0]
    again = train_autoencoders(images, labels, config=cfg, seed=0)
    assert aes.history == again.history
    scores = im1(aes, images, labels, 1 - labels)
    assert scores.shape == (40,) and torch.isfinite(scores).all()
    # each class is better reconstructed by its own autoencoder than by the other one
    assert (scores < 1).float().mean() > 0.9


def test_errors(aes):
    with pytest.raises(DataError, match="no training image of class 1"):
        train_autoencoders(torch.zeros(4, 1, 8, 8), torch.tensor([0, 0, 2, 2]))
    with pytest.raises(DataError, match="multiples of 4"):
        train_autoencoders(torch.zeros(4, 1, 10, 10), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(DataError, match="num_classes"):
        im1(aes, torch.zeros(2, 1, 8, 8), torch.tensor([0, 3]), torch.tensor([0, 1]))
