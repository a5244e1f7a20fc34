"""Bit-identity with the three loops the one loop replaced (written out here as oracles, as they
were before the refactor): the diffusion trainer, the metric models' loop, the additive-noise fit.
The published figures (demo, benchmarks) depend on these seeded runs not moving by one bit."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from causaldiff.diffusion.nets import MLPDenoiser
from causaldiff.diffusion.schedule import NoiseSchedule
from causaldiff.diffusion.train import denoiser_loss, train_denoiser
from causaldiff.mechanisms.neural import AdditiveNoiseConfig, AdditiveNoiseMechanism, mlp
from causaldiff.metrics import ClassifierConfig, VAEConfig, train_classifier, train_vae
from causaldiff.metrics._fit import MetricTrainConfig, fit_metric_model
from causaldiff.metrics.classifier import ImageClassifier
from causaldiff.metrics.cld import ConvVAE
from causaldiff.training import TrainConfig, lr_factor


def _equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def old_diffusion_loop(model, loss_fn, num_rows, cfg):
    """The pre-refactor ``diffusion.train._train`` on CPU, without checkpoints."""
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                weight_decay=cfg.weight_decay, foreach=True)
        ema = copy.deepcopy(model).eval().requires_grad_(False)
        dst = [t for t in ema.state_dict().values() if t.is_floating_point()]
        src = [t for t in model.state_dict().values() if t.is_floating_point()]
        model.train()
        for step in range(cfg.steps):
            for group in opt.param_groups:
                group["lr"] = cfg.lr * lr_factor(cfg, step)
            idx = torch.randint(num_rows, (cfg.batch_size,), generator=gen)
            loss = loss_fn(model, idx, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            decay = min(cfg.ema_decay, (1 + step) / (10 + step)) if cfg.ema_warmup else cfg.ema_decay
            with torch.no_grad():
                torch._foreach_lerp_(dst, src, 1.0 - decay)
        model.eval()
    return model, ema


def old_metric_loop(model, loss_fn, n, cfg, seed, sample_batch=None):
    """The pre-refactor ``metrics._training.train_loop`` (``loss_fn(indices)``) on CPU."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        g = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(cfg.steps):
            idx = torch.randint(n, (cfg.batch_size,), generator=g) if sample_batch is None \
                else sample_batch(g, cfg.batch_size)
            loss = loss_fn(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def old_anm_train(net, zin, zy, gen, cfg):
    """The pre-refactor ``AdditiveNoiseMechanism._train``."""
    n = zin.shape[0]
    perm = torch.randperm(n, generator=gen)
    n_val = int(n * cfg.val_fraction) if n >= 20 else 0
    val, tr = perm[:n_val], perm[n_val:]
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
    best, best_state = math.inf, None
    bs = min(cfg.batch_size, len(tr))
    for step in range(cfg.steps):
        idx = tr[torch.randint(len(tr), (bs,), generator=gen)]
        loss = (net(zin[idx]) - zy[idx]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if n_val and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
            with torch.no_grad():
                v = (net(zin[val]) - zy[val]).pow(2).mean().item()
            if v < best:
                best, best_state = v, copy.deepcopy(net.state_dict())
    if best_state is not None:
        net.load_state_dict(best_state)
    rows = val if n_val else tr
    with torch.no_grad():
        return zy[rows] - net(zin[rows])


def test_denoiser_training_is_bit_identical_to_the_old_loop():
    sched = NoiseSchedule(kind="linear", num_train_timesteps=50, beta_end=0.1)
    x = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    cond = torch.randn(200, 3, generator=torch.Generator().manual_seed(1))

    def net():
        torch.manual_seed(3)
        return MLPDenoiser((2,), 3, hidden=16, num_layers=2, num_train_timesteps=50)

    cfg = TrainConfig(steps=40, batch_size=16, warmup_steps=6, lr_schedule="cosine", grad_clip=0.3,
                      weight_decay=0.01, ema_decay=0.95, seed=4)
    new = train_denoiser(net(), x, sched, cfg, cond=cond, cond_dropout=0.2)
    model, ema = old_diffusion_loop(net(), denoiser_loss(sched, x, cond, 0.2), 200, cfg)
    assert _equal(new.model, model) and _equal(new.ema, ema)


def test_metric_models_are_bit_identical_to_the_old_loop():
    g = torch.Generator().manual_seed(2)
    labels = torch.arange(32) % 2
    images = (labels.float() - 0.5)[:, None, None, None] + 0.2 * torch.randn(32, 1, 8, 8, generator=g)
    cfg = ClassifierConfig(steps=15, batch_size=8, hidden=4)
    new = train_classifier(images, labels, config=cfg, seed=5)
    torch.manual_seed(5)
    old = ImageClassifier(2, 4)
    old = old_metric_loop(old, lambda idx: F.cross_entropy(old(images[idx]), labels[idx]), 32, cfg, 5)
    assert _equal(new, old)

    vcfg = VAEConfig(steps=12, batch_size=8, latent_dim=2, hidden=4)
    new_vae = train_vae(images.clamp(-1, 1), config=vcfg, seed=6).vae
    x01 = ((images.clamp(-1, 1) + 1) / 2).clamp(0, 1)
    torch.manual_seed(6)
    vae = ConvVAE(8, 8, 2, 4)

    def vae_loss(idx):
        logits, mu, logvar = vae(x01[idx])
        rec = F.binary_cross_entropy_with_logits(logits, x01[idx], reduction="sum")
        return (rec + 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum()) / len(idx)

    assert _equal(new_vae, old_metric_loop(vae, vae_loss, 32, vcfg, 6))


def test_the_sample_batch_hook_is_bit_identical_to_the_old_loop():
    x = torch.randn(30, 3, generator=torch.Generator().manual_seed(7))

    def hook(g, b):  # like the class autoencoders': a CPU draw of its own
        return (torch.rand(b, 2, generator=g, dtype=torch.float64) * 30).long()

    cfg = MetricTrainConfig(steps=10, batch_size=4, seed=8)
    torch.manual_seed(0)
    a = nn.Linear(3, 3)
    b = copy.deepcopy(a)
    fit_metric_model(a, lambda net, idx, _: (net(x[idx]) - x[idx]).pow(2).mean(), 30, cfg,
                     desc="t", sample_batch=hook)
    old_metric_loop(b, lambda idx: (b(x[idx]) - x[idx]).pow(2).mean(), 30, cfg, 8, sample_batch=hook)
    assert _equal(a, b)


def test_additive_noise_training_is_bit_identical_to_the_old_fit():
    """In float64, where torch's recursive cosine annealing and the closed-form cosine differ."""
    g = torch.Generator().manual_seed(9)
    zin = torch.randn(120, 2, generator=g, dtype=torch.float64)
    zy = torch.sin(zin[:, :1]) + 0.1 * torch.randn(120, 1, generator=g, dtype=torch.float64)
    cfg = AdditiveNoiseConfig(steps=60, eval_every=7, batch_size=32, lr=1e-2, weight_decay=0.01, seed=1)
    torch.manual_seed(1)
    net = mlp(2, 1, (8,)).double()
    old_net = copy.deepcopy(net)
    new = AdditiveNoiseMechanism(cfg)._train(net, zin, zy, torch.Generator().manual_seed(1), "")
    old = old_anm_train(old_net, zin, zy, torch.Generator().manual_seed(1), cfg)
    assert torch.equal(new, old) and _equal(net, old_net)
