"""Counterfactual latent divergence (CLD), as used by Diff-SCM (Sanchez & Tsaftaris 2022).

With ``q(z | x)`` the Gaussian posterior of a VAE trained on the data set,
``div = KL(q(z | x_cf) || q(z | x_f))``, ``S_cf`` / ``S_f`` the same KL of the reference images of the
target / factual class to ``x_f``, and ``CLD = log(exp(P(S_cf <= div)) + exp(P(S_f >= div)))`` in
``[log 2, log(2e)]``, lower is better: the counterfactual stayed closer than most target-class
images and moved further than most of its own class. An unchanged image scores ``log(1 + e) = 1.3133``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ..errors import DataError
from ..training import seeded_module
from ._checks import check_images, check_labels, resolve_device
from ._fit import MetricTrainConfig, fit_metric_model, with_seed

#: CLD of an unchanged image: ``log(exp(0) + exp(1))``.
CLD_UNCHANGED = math.log(1 + math.e)


class VAEConfig(MetricTrainConfig):
    """Hyperparameters of the CLD VAE and its training (Bernoulli decoder on ``[0, 1]`` pixels)."""

    latent_dim: int = Field(16, ge=1)
    hidden: int = Field(32, ge=1)
    beta: float = Field(1.0, gt=0)


class ConvVAE(nn.Module):
    """Two stride-2 convolutions down, a diagonal Gaussian posterior, two transposed convs up."""

    def __init__(self, height: int, width: int, latent_dim: int, hidden: int):
        super().__init__()
        h4, w4 = height // 4, width // 4
        self.encoder = nn.Sequential(
            nn.Conv2d(1, hidden, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(hidden, 2 * hidden, 4, 2, 1), nn.ReLU(), nn.Flatten(),
            nn.Linear(2 * hidden * h4 * w4, 2 * latent_dim))
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 2 * hidden * h4 * w4), nn.ReLU(),
            nn.Unflatten(1, (2 * hidden, h4, w4)),
            nn.ConvTranspose2d(2 * hidden, hidden, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(hidden, 1, 4, 2, 1))
        self.latent_dim = latent_dim

    def posterior(self, x01: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, logvar)`` of ``q(z | x)``, each ``(n, latent_dim)``, for ``[0, 1]`` images."""
        mu, logvar = self.encoder(x01).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 8)

    def forward(self, x01: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.posterior(x01)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decoder(z), mu, logvar


class TrainedVAE(nn.Module):
    """A trained :class:`ConvVAE` with the pixel range of the images it is given."""

    def __init__(self, vae: ConvVAE, value_range: tuple[float, float],
                 history: list[float] | None = None):
        super().__init__()
        self.vae, self.value_range = vae, value_range
        #: training loss (negative ELBO per image), the mean of each ``log_every`` window
        self.history = list(history or [])

    @torch.no_grad()
    def posterior(self, images: Tensor, batch_size: int = 1024) -> tuple[Tensor, Tensor]:
        """Posterior ``(mu, logvar)`` of images in ``value_range`` (float64, in batches)."""
        check_images(images, "VAE posterior", multiple_of=4)
        lo, hi = self.value_range
        dev = next(self.vae.parameters()).device
        mus, logvars = [], []
        for start in range(0, images.shape[0], batch_size):
            x = ((images[start:start + batch_size] - lo) / (hi - lo)).to(dev, torch.float32)
            mu, logvar = self.vae.posterior(x)
            mus.append(mu.double())
            logvars.append(logvar.double())
        return torch.cat(mus), torch.cat(logvars)


def train_vae(images: Tensor, *, config: VAEConfig | None = None,
              device: torch.device | str | None = None, seed: int | None = None,
              value_range: tuple[float, float] = (-1.0, 1.0)) -> TrainedVAE:
    """Train the CLD VAE by maximising the ELBO (Bernoulli likelihood, ``beta``-weighted KL);
    ``seed`` (initial weights, batches, posterior samples) replaces ``config.seed`` when given."""
    config = with_seed(config or VAEConfig(), seed)
    check_images(images, "train_vae", multiple_of=4)
    dev = resolve_device(device, images)
    lo, hi = value_range
    x = ((images - lo) / (hi - lo)).clamp(0, 1).to(dev, torch.float32)
    h, w = x.shape[-2:]
    vae = seeded_module(lambda: ConvVAE(h, w, config.latent_dim, config.hidden), config.seed, dev)

    def loss(net: nn.Module, idx: Tensor, _: torch.Generator) -> Tensor:
        batch = x[idx]
        logits, mu, logvar = net(batch)
        rec = F.binary_cross_entropy_with_logits(logits, batch, reduction="sum")
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum()
        return (rec + config.beta * kl) / len(batch)

    history = fit_metric_model(vae, loss, len(x), config, desc="CLD VAE", global_rng=True)  # the reparameterisation
    return TrainedVAE(vae.eval(), (float(lo), float(hi)), history)


def pairwise_gaussian_kl(mu_p: Tensor, logvar_p: Tensor, mu_q: Tensor, logvar_q: Tensor) -> Tensor:
    """``KL(N(mu_p[i], diag) || N(mu_q[j], diag))`` for all pairs: ``(n_p, n_q)``, by matmuls.

    ``KL = 1/2 sum_d [logvar_q - logvar_p + (var_p + (mu_p - mu_q)^2) / var_q - 1]``.
    """
    mu_p, logvar_p, mu_q, logvar_q = (t.double() for t in (mu_p, logvar_p, mu_q, logvar_q))
    inv_q = (-logvar_q).exp()  # (n_q, d)
    second = (logvar_p.exp() + mu_p ** 2) @ inv_q.T - 2 * mu_p @ (mu_q * inv_q).T \
        + (mu_q ** 2 * inv_q).sum(1)[None, :]
    logdet = logvar_q.sum(1)[None, :] - logvar_p.sum(1)[:, None]
    return (0.5 * (logdet + second - mu_p.shape[1])).clamp_min(0)


def cld_from_posteriors(factual: tuple[Tensor, Tensor], counterfactual: tuple[Tensor, Tensor],
                        reference: tuple[Tensor, Tensor], factual_labels: Tensor,
                        target_labels: Tensor, reference_labels: Tensor,
                        weights: tuple[float, float] = (1.0, 1.0)) -> Tensor:
    """CLD per row ``(n,)`` from posteriors ``(mu, logvar)`` (see the module docstring);
    ``weights`` ``(w_cf, w_f)`` give ``log(w_cf e^{P(S_cf <= div)} + w_f e^{P(S_f >= div)})``
    (Melistas et al. 2024 use ``(0.8, 0.2)``; Diff-SCM ``(1, 1)``)."""
    if len(weights) != 2 or min(weights) < 0 or sum(weights) <= 0:
        raise DataError(f"cld: weights must be two non-negative numbers, not both 0, got {weights}")
    mu_f, lv_f = factual
    mu_c, lv_c = counterfactual
    n = mu_f.shape[0]
    if mu_c.shape != mu_f.shape:
        raise DataError("cld: factual and counterfactual batches differ in shape")
    check_labels(factual_labels, n, None, "cld factual_labels")
    check_labels(target_labels, n, None, "cld target_labels")
    check_labels(reference_labels, reference[0].shape[0], None, "cld reference_labels")
    dev = mu_f.device
    fl, tl, rl = (t.to(dev) for t in (factual_labels, target_labels, reference_labels))
    for name, lab in (("factual", fl), ("target", tl)):
        absent = set(lab.unique().tolist()) - set(rl.unique().tolist())
        if absent:
            raise DataError(f"cld: no reference image of {name} class(es) {sorted(absent)}")
    # div_i = KL(q(z | x_cf_i) || q(z | x_f_i)): the diagonal of the pairwise matrix, per row.
    var_c, var_f = lv_c.double().exp(), lv_f.double().exp()
    div = 0.5 * (lv_f - lv_c + (var_c + (mu_c - mu_f) ** 2) / var_f - 1).double().sum(1)
    div = div.clamp_min(0)
    # S[i, j] = KL(q(z | x_ref_j) || q(z | x_f_i)), shape (n, n_ref).
    s = pairwise_gaussian_kl(reference[0], reference[1], mu_f, lv_f).T
    in_target = rl[None, :] == tl[:, None]
    in_factual = rl[None, :] == fl[:, None]
    p_cf = ((s <= div[:, None]) & in_target).sum(1) / in_target.sum(1)
    p_f = ((s >= div[:, None]) & in_factual).sum(1) / in_factual.sum(1)
    return torch.log(weights[0] * torch.exp(p_cf.double()) + weights[1] * torch.exp(p_f.double()))


def cld(vae: TrainedVAE, factual: Tensor, counterfactual: Tensor, factual_labels: Tensor,
        target_labels: Tensor, reference_images: Tensor, reference_labels: Tensor,
        batch_size: int = 1024, weights: tuple[float, float] = (1.0, 1.0)) -> Tensor:
    """CLD per row ``(n,)`` of counterfactual against factual images, ranked against the reference
    images and labels (e.g. the test split; every factual and target class represented)."""
    if factual.shape != counterfactual.shape:
        raise DataError(f"cld: factual {tuple(factual.shape)} and counterfactual "
                        f"{tuple(counterfactual.shape)} shapes differ")
    return cld_from_posteriors(vae.posterior(factual, batch_size),
                               vae.posterior(counterfactual, batch_size),
                               vae.posterior(reference_images, batch_size),
                               factual_labels, target_labels, reference_labels, weights)
