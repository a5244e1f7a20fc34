"""Checkpoints: atomic writes, fingerprints, resumption equal to an uninterrupted run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from causaldiff.errors import SerializationError
from causaldiff.training import CHECKPOINT_NAME, Checkpointer, LocalStrategy, TrainConfig, fit_model
from causaldiff.training.checkpoint import save_atomic

X = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Dropout(0.1), nn.Linear(8, 1))


def _loss(net, idx, gen):
    noise = torch.randn(len(idx), 1, generator=gen)
    return (net(X[idx]) - X[idx, :1] - noise).pow(2).mean()


def _cosine(opt):
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=40)


def test_resumed_run_equals_an_uninterrupted_one_with_a_torch_scheduler(tmp_path):
    """Model, EMA, optimizer, scheduler, batch generator and global RNG (dropout) all resume."""
    cfg = TrainConfig(steps=40, batch_size=16, lr=1e-2, ema_decay=0.9, log_every=5)
    full = fit_model(_model(), _loss, 64, cfg, scheduler=_cosine, data=[X], tag="t")
    ck = cfg.model_copy(update={"checkpoint_dir": str(tmp_path), "checkpoint_every": 10})
    half = fit_model(_model(), _loss, 64, ck.model_copy(update={"steps": 25}), scheduler=_cosine,
                     data=[X], tag="t")
    assert half.steps == 25  # checkpoints at 10, 20 and the last step, 25
    rest = fit_model(_model(seed=5), _loss, 64, ck, scheduler=_cosine, data=[X], tag="t")
    assert rest.resumed_from == 25 and rest.losses == full.losses
    for a, b in zip([*full.model.state_dict().values(), *full.ema.state_dict().values()],
                    [*rest.model.state_dict().values(), *rest.ema.state_dict().values()]):
        assert torch.equal(a, b)


def test_another_run_is_refused(tmp_path):
    cfg = TrainConfig(steps=4, batch_size=8, checkpoint_dir=str(tmp_path), checkpoint_every=2)
    fit_model(_model(), _loss, 64, cfg, data=[X], tag="a")
    for kw in ({"data": [X + 1], "tag": "a"}, {"data": [X], "tag": "b"}):
        with pytest.raises(SerializationError, match="another model, data or training config"):
            fit_model(_model(), _loss, 64, cfg, **kw)
    with pytest.raises(SerializationError, match="another model"):
        fit_model(nn.Linear(3, 1), _loss, 64, cfg, data=[X], tag="a")
    # what a resumed run may change: steps, log_every, the checkpoint cadence
    again = fit_model(_model(), _loss, 64, cfg.model_copy(update={"steps": 6, "log_every": 3,
                                                               "checkpoint_every": 3}),
                      data=[X], tag="a")
    assert again.resumed_from == 4


def test_a_failed_write_leaves_the_old_checkpoint_intact(tmp_path):
    ckpt = Checkpointer(tmp_path, every=1)
    ckpt.save({"step": 1, "w": torch.ones(3)}, LocalStrategy())
    with pytest.raises(Exception):
        ckpt.save({"step": 2, "w": torch.zeros(3), "code": lambda: None}, LocalStrategy())
    state = ckpt.load(expected_fingerprint=None)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_NAME]  # no temporary left
    save_atomic({"step": 3}, tmp_path / "other.pt")
    assert torch.load(tmp_path / "other.pt", weights_only=True) == {"step": 3}


def test_checkpointer_validation(tmp_path):
    with pytest.raises(ValueError, match="every must be >= 1"):
        Checkpointer(tmp_path, every=0)
    assert Checkpointer(tmp_path).due(5) is False and Checkpointer(tmp_path, 5).due(10)
    assert Checkpointer.from_config(TrainConfig()) is None
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    with pytest.raises(SerializationError, match="cannot read training checkpoint"):
        Checkpointer(tmp_path).load("x")
