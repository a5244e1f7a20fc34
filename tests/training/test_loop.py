"""The training loop: LR schedule, EMA, clipping, hooks, seeding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from causaldiff.training import TrainConfig, fit_model, lr_factor


class Weights(nn.Module):
    """A bare parameter vector; ``loss = scale * sum(w)`` has the constant gradient ``scale``."""

    def __init__(self, n: int = 4) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(n, dtype=torch.float64))


def linear_loss(scale: float = 1.0):
    return lambda model, idx, gen: scale * model.w.sum()


def _trajectory(config, **kw):
    """The weights after every step (index 0: before training)."""
    model = Weights()
    snaps = [model.w.detach().clone()]
    res = fit_model(model, kw.pop("loss", linear_loss()), 10, config,
                    callback=lambda step, m: snaps.append(m.w.detach().clone()), **kw)
    return res, torch.stack(snaps)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_each_step_uses_the_scheduled_learning_rate(schedule):
    """Adam's step on a constant gradient is ``lr`` (up to eps), so the weights move by
    ``lr * lr_factor(step)`` at every step."""
    cfg = TrainConfig(steps=30, lr=0.01, warmup_steps=5, lr_schedule=schedule, grad_clip=None,
                      ema_decay=None)
    _, traj = _trajectory(cfg)
    moved = -(traj[1:] - traj[:-1])[:, 0]
    expected = torch.tensor([0.01 * lr_factor(cfg, s) for s in range(30)], dtype=torch.float64)
    torch.testing.assert_close(moved, expected, rtol=1e-6, atol=1e-12)
    if schedule == "cosine":
        assert moved[5] > 0.99 * 0.01 and moved[-1] < 0.005 * 0.01


def test_a_torch_scheduler_replaces_the_config_schedule():
    cfg = TrainConfig(steps=10, lr=0.1, warmup_steps=5, grad_clip=None, ema_decay=None)
    _, traj = _trajectory(cfg, scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 3, 0.5))
    moved = -(traj[1:] - traj[:-1])[:, 0]
    expected = torch.tensor([0.1 * 0.5 ** (s // 3) for s in range(10)], dtype=torch.float64)
    torch.testing.assert_close(moved, expected, rtol=1e-6, atol=1e-12)


def test_ema_follows_its_recurrence_and_none_means_the_model_itself():
    d = 0.8
    res, traj = _trajectory(TrainConfig(steps=12, lr=0.05, ema_decay=d, ema_warmup=False))
    ema = traj[0]
    for w in traj[1:]:
        ema = d * ema + (1 - d) * w
    torch.testing.assert_close(res.ema.w, ema, rtol=0, atol=1e-15)
    assert res.ema is not res.model and not res.ema.training and not res.ema.w.requires_grad
    warm, traj = _trajectory(TrainConfig(steps=3, lr=0.05, ema_decay=0.99))
    ema = traj[0]
    for s, w in enumerate(traj[1:]):  # warm-up: decay (1 + s) / (10 + s) < 0.99
        dec = (1 + s) / (10 + s)
        ema = dec * ema + (1 - dec) * w
    torch.testing.assert_close(warm.ema.w, ema, rtol=0, atol=1e-15)
    none, _ = _trajectory(TrainConfig(steps=3, ema_decay=None))
    assert none.ema is none.model and not none.model.training


def test_gradients_are_clipped_to_the_configured_norm():
    norms = {}

    def grad_norm(step, model):  # the gradient of the step just taken is still in .grad
        norms.setdefault(model.tag, []).append(float(model.w.grad.norm()))

    for clip in (0.5, None):
        model = Weights()
        model.tag = clip
        fit_model(model, linear_loss(3.0), 10, TrainConfig(steps=3, grad_clip=clip), callback=grad_norm)
    assert norms[0.5] == pytest.approx([0.5] * 3)
    assert norms[None] == pytest.approx([6.0] * 3)  # 3 * sqrt(4)


def test_loss_history_sample_batch_hook_and_seeding():
    x = torch.arange(20, dtype=torch.float64)
    seen = []

    def loss(model, idx, gen):
        seen.append(idx.clone())
        return (model.w.sum() - x[idx].mean()) ** 2

    cfg = TrainConfig(steps=9, batch_size=5, log_every=4, seed=2)
    torch.manual_seed(11)
    before = torch.get_rng_state()
    res = fit_model(Weights(), loss, 20, cfg)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG is untouched
    assert len(res.losses) == 2 and res.steps == 9 and res.resumed_from is None
    assert all(i.shape == (5,) and 0 <= int(i.min()) and int(i.max()) < 20 for i in seen)
    first = seen[:]
    seen.clear()
    fit_model(Weights(), loss, 20, cfg)
    assert all(torch.equal(a, b) for a, b in zip(first, seen))  # seeded: the same batches
    seen.clear()
    fit_model(Weights(), loss, 20, cfg, sample_batch=lambda g, b: torch.full((b, 2), 7))
    assert all(torch.equal(i, torch.full((5, 2), 7)) for i in seen)


def test_no_rows_and_checkpoint_every_without_a_directory_are_refused():
    with pytest.raises(ValueError, match="denoiser: no training rows"):
        fit_model(Weights(), linear_loss(), 0, TrainConfig(steps=1), desc="denoiser")
    with pytest.raises(ValueError, match="checkpoint_every needs a checkpoint_dir"):
        fit_model(Weights(), linear_loss(), 3, TrainConfig(steps=1, checkpoint_every=1))
