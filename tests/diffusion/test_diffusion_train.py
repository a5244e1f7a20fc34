"""Training: loss goes down, EMA, repeatable seeds, untouched global RNG, checkpoints."""

from __future__ import annotations

import pytest
import torch

from causaldiff.diffusion.guidance import ParentHead
from causaldiff.diffusion.nets import MLPDenoiser, MLPPredictor
from causaldiff.diffusion.schedule import NoiseSchedule
from causaldiff.diffusion.train import train_denoiser, train_predictor
from causaldiff.errors import SerializationError
from causaldiff.training import TrainConfig, load_checkpoint, lr_factor

SCHED = NoiseSchedule(kind="linear", num_train_timesteps=100, beta_end=0.1)


def _data(n=512):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 2, generator=g) * torch.tensor([0.3, 2.0]) + 1.0


def _net(seed=0):
    torch.manual_seed(seed)
    return MLPDenoiser((2,), 0, hidden=32, num_layers=2, num_train_timesteps=100)


def _weights(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_denoiser_loss_decreases_and_ema_is_used():
    cfg = TrainConfig(steps=300, batch_size=64, lr=3e-3, log_every=50, ema_decay=0.95)
    res = train_denoiser(_net(), _data(), SCHED, cfg)
    assert res.steps == 300 and len(res.losses) == 6 and res.resumed_from is None
    assert res.losses[-1] < 0.8 * res.losses[0]
    assert not res.ema.training and all(not p.requires_grad for p in res.ema.parameters())
    diff = [not torch.equal(a, b) for a, b in zip(res.ema.state_dict().values(), res.model.state_dict().values())]
    assert any(diff)
    last = train_denoiser(_net(), _data(), SCHED, cfg.model_copy(update={"ema_decay": 0.0}))
    assert all(torch.equal(a, b) for a, b in zip(last.ema.state_dict().values(), last.model.state_dict().values()))


def test_cpu_runs_are_repeatable_and_leave_the_global_rng_alone():
    cfg = TrainConfig(steps=50, batch_size=32, seed=3)
    net, x = _net(), _data()
    torch.manual_seed(123)
    a = train_denoiser(net, x, SCHED, cfg)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after)  # training consumed none of the caller's randomness
    b = train_denoiser(_net(), _data(), SCHED, cfg)
    c = train_denoiser(_net(), _data(), SCHED, cfg.model_copy(update={"seed": 4}))
    assert all(torch.equal(x, y) for x, y in zip(_weights(a.ema).values(), _weights(b.ema).values()))
    assert not all(torch.equal(x, y) for x, y in zip(_weights(a.ema).values(), _weights(c.ema).values()))


def test_conditional_training_with_parent_dropout_runs():
    x = _data()
    cond = torch.cat([x[:, :1].sign(), torch.ones(len(x), 1)], 1)
    net = MLPDenoiser((2,), 2, hidden=16, num_layers=1, num_train_timesteps=100)
    with torch.no_grad():  # training enables autograd itself
        res = train_denoiser(net, x, SCHED, TrainConfig(steps=20, batch_size=16), cond=cond, cond_dropout=0.5)
    assert res.steps == 20 and res.losses == ()


def test_predictor_training_learns_the_class():
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 2, (512,), generator=g)
    x = (2.0 * y - 1.0)[:, None] * torch.ones(1, 2) + 0.3 * torch.randn(512, 2, generator=g)
    heads = [ParentHead("y", "categorical", 2)]
    res = train_predictor(MLPPredictor((2,), 2, hidden=32, num_layers=2, num_train_timesteps=100), x, [y],
                          heads, SCHED, TrainConfig(steps=200, batch_size=64, lr=3e-3, log_every=50))
    acc = (res.ema(x, torch.zeros(512, dtype=torch.long)).argmax(1) == y).float().mean()
    assert acc > 0.97 and res.losses[-1] < res.losses[0]


def test_checkpoint_resume_in_process_equals_one_run(tmp_path):
    x = _data()
    full = train_denoiser(_net(), x, SCHED, TrainConfig(steps=60, batch_size=32))
    d = tmp_path / "ck"
    cfg = TrainConfig(steps=30, batch_size=32, checkpoint_every=10, checkpoint_dir=str(d))
    first = train_denoiser(_net(), x, SCHED, cfg)
    assert first.steps == 30 and int(load_checkpoint(d)["step"]) == 30
    # a fresh (differently initialised) model picks up the checkpoint and finishes the run
    second = train_denoiser(_net(seed=9), x, SCHED, cfg.model_copy(update={"steps": 60}))
    assert second.resumed_from == 30 and second.steps == 60
    for a, b in zip(full.ema.state_dict().values(), second.ema.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(full.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)


def test_checkpoint_mismatch_and_corruption_are_refused(tmp_path):
    x = _data()
    d = tmp_path / "ck"
    cfg = TrainConfig(steps=10, batch_size=32, checkpoint_every=5, checkpoint_dir=str(d))
    train_denoiser(_net(), x, SCHED, cfg)
    with pytest.raises(SerializationError, match="another model, data or training config"):
        train_denoiser(_net(), x + 1.0, SCHED, cfg)
    with pytest.raises(SerializationError, match="another model, data or training config"):
        train_denoiser(_net(), x, SCHED, cfg.model_copy(update={"lr": 1e-2}))
    blob = (d / "checkpoint.pt").read_bytes()
    (d / "checkpoint.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(SerializationError, match="cannot read"):
        train_denoiser(_net(), x, SCHED, cfg)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        train_denoiser(_net(), x, SCHED, TrainConfig(steps=1, checkpoint_every=1))


@pytest.mark.gpu
def test_cuda_training_uses_bf16_autocast_and_resumes(tmp_path):
    x = _data().cuda()
    seen = []
    net = _net().cuda()
    net.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    cfg = TrainConfig(steps=40, batch_size=32, checkpoint_every=20, checkpoint_dir=str(tmp_path))
    res = train_denoiser(net, x, SCHED, cfg)
    assert seen[0] == torch.bfloat16 and next(res.ema.parameters()).is_cuda
    again = train_denoiser(_net().cuda(), x, SCHED, cfg.model_copy(update={"steps": 60}))
    assert again.resumed_from == 40 and again.steps == 60


def test_lr_factor_warms_up_then_decays_on_a_half_cosine():
    const = TrainConfig(steps=100, warmup_steps=10)
    assert [lr_factor(const, s) for s in (0, 4, 9, 10, 99)] == [0.1, 0.5, 1.0, 1.0, 1.0]
    cos = const.model_copy(update={"lr_schedule": "cosine"})
    assert lr_factor(cos, 9) == 1.0 and lr_factor(cos, 10) == 1.0
    assert lr_factor(cos, 55) == pytest.approx(0.5)  # half-way through the 90 decay steps
    assert 0.0 < lr_factor(cos, 99) < 1e-3
    with pytest.raises(ValueError):
        TrainConfig(lr_schedule="linear")


def test_cosine_schedule_shrinks_the_last_updates():
    """The size of the last optimiser step under a cosine schedule is a small fraction of the
    constant schedule's (same data, seed and gradients up to the schedule)."""
    def last_update(schedule):
        snaps = {}

        def keep(step, model):
            if step >= 198:
                snaps[step] = torch.cat([p.detach().flatten().clone() for p in model.parameters()])

        cfg = TrainConfig(steps=200, batch_size=64, lr=3e-3, lr_schedule=schedule, grad_clip=None)
        train_denoiser(_net(), _data(), SCHED, cfg, callback=keep)
        steps = sorted(snaps)
        return float((snaps[steps[-1]] - snaps[steps[-2]]).norm())

    assert last_update("cosine") < 0.05 * last_update("constant")
