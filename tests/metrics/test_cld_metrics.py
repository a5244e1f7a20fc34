"""CLD: pairwise Gaussian KL, the probabilities on hand-built posteriors, bounds, VAE smoke test."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from causaldiff.errors import DataError
from causaldiff.metrics import CLD_UNCHANGED, VAEConfig, cld, cld_from_posteriors, train_vae
from causaldiff.metrics.cld import pairwise_gaussian_kl


def test_pairwise_kl_matches_torch():
    g = torch.Generator().manual_seed(0)
    mp, lp = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    mq, lq = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    ours = pairwise_gaussian_kl(mp, lp, mq, lq)
    ref = kl_divergence(Normal(mp[:, None].double(), (0.5 * lp[:, None].double()).exp()),
                        Normal(mq[None].double(), (0.5 * lq[None].double()).exp())).sum(-1)
    torch.testing.assert_close(ours, ref)


def _post(mus):
    m = torch.tensor(mus, dtype=torch.float64)[:, None]
    return m, torch.zeros_like(m)


def _case(cf_mu, target_mus, factual_mus):
    """One factual at N(0, 1); references N(m, 1): KL(ref || factual) = m^2 / 2."""
    ref = _post(list(target_mus) + list(factual_mus))
    ref_labels = torch.tensor([1] * len(target_mus) + [0] * len(factual_mus))
    return cld_from_posteriors(_post([0.0]), _post([cf_mu]), ref, torch.tensor([0]),
                               torch.tensor([1]), ref_labels).item()


def test_known_probabilities():
    # target KLs 0.5, 2, 4.5, 8; factual KLs 0.125, 1.125; div = 2.5^2 / 2 = 3.125
    assert _case(2.5, [1, 2, 3, 4], [0.5, 1.5]) == pytest.approx(math.log(math.exp(0.5) + 1))
    # lower bound: no target image closer, every factual-class image closer -> log 2
    assert _case(1.6, [2, 3, 4, 5], [0.5, 1.5]) == pytest.approx(math.log(2))
    # upper bound: every target image closer, no factual-class image closer -> log(2e)
    assert _case(1.0, [0.1, 0.2], [3, 4]) == pytest.approx(math.log(2 * math.e))
    # unchanged image: div = 0
    assert _case(0.0, [1, 2], [0.5, 3]) == pytest.approx(CLD_UNCHANGED)
    assert CLD_UNCHANGED == pytest.approx(1.3133, abs=1e-4)


def test_bounds_on_random_posteriors():
    g = torch.Generator().manual_seed(3)
    n, r, d = 20, 60, 4
    mf, lf = torch.randn(n, d, generator=g), 0.3 * torch.randn(n, d, generator=g)
    mc, lc = torch.randn(n, d, generator=g), 0.3 * torch.randn(n, d, generator=g)
    mr, lr = torch.randn(r, d, generator=g), 0.3 * torch.randn(r, d, generator=g)
    out = cld_from_posteriors((mf, lf), (mc, lc), (mr, lr), torch.randint(0, 3, (n,), generator=g),
                              torch.randint(0, 3, (n,), generator=g), torch.arange(r) % 3)
    assert out.shape == (n,)
    assert (out >= math.log(2) - 1e-12).all() and (out <= math.log(2 * math.e) + 1e-12).all()


def test_train_vae_smoke_and_unchanged_images():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(48) % 3
    images = (labels.float()[:, None, None, None] - 1) * 0.6 + 0.1 * torch.randn(
        48, 1, 16, 16, generator=g)
    vae = train_vae(images.clamp(-1, 1), config=VAEConfig(steps=60, batch_size=16, log_every=10,
                                                          latent_dim=4, hidden=8), seed=0)
    assert vae.history[-1] < vae.history[0]
    mu, logvar = vae.posterior(images)
    assert mu.shape == (48, 4) and mu.dtype == torch.float64
    same = cld(vae, images[:6], images[:6], labels[:6], (labels[:6] + 1) % 3, images, labels)
    torch.testing.assert_close(same, torch.full((6,), CLD_UNCHANGED, dtype=torch.float64))


def test_errors():
    with pytest.raises(DataError, match="no reference image"):
        cld_from_posteriors(_post([0.0]), _post([1.0]), _post([1.0]), torch.tensor([0]),
                            torch.tensor([1]), torch.tensor([0]))
    with pytest.raises(DataError, match="multiples of 4"):
        train_vae(torch.zeros(4, 1, 10, 10))
