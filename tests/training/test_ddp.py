"""DDP training on 2 gloo processes: both ranks take the step one process takes on the global batch,
keep identical weights and EMA, resume exactly after a rank is killed, and refuse a checkpoint of
another world size."""

from __future__ import annotations

import os
import time

import pytest
import torch
from torch import nn

from causaldiff.distributed import launch
from causaldiff.errors import SerializationError
from causaldiff.testing import ProcessesFailed, run_distributed
from causaldiff.training import TrainConfig, fit_model, seeded_module

X = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
Y = (X @ torch.tensor([[1.0], [-2.0], [0.5]])).squeeze(1) + 0.1 * torch.randn(64, generator=torch.Generator().manual_seed(2))
SEEN: list[torch.Tensor] = []


def _net() -> nn.Module:
    return seeded_module(lambda: nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)), 0, "cpu")


def _loss(net: nn.Module, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    SEEN.append(idx.clone())
    return (net(X[idx]).squeeze(1) - Y[idx]).pow(2).mean()


def _config(steps: int, ckpt: str | None = None) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=8, lr=1e-2, ema_decay=0.9, bf16=False, log_every=1,
                       checkpoint_dir=ckpt, checkpoint_every=2 if ckpt else None)


def _train(steps: int, ckpt: str | None = None, die_at: int | None = None) -> dict:
    with launch(device="cpu") as run:
        def kill(step: int, model: nn.Module) -> None:
            if step == die_at and run.rank == 1:
                os._exit(3)  # a rank killed mid-run, after the checkpoint of step 2

        model = _net()
        res = fit_model(model, _loss, len(X), _config(steps, ckpt), callback=kill, data=[X])
        return {"params": model.state_dict(), "ema": res.ema.state_dict(), "losses": res.losses,
                "resumed_from": res.resumed_from, "seen": list(SEEN), "world": run.world_size}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


ENV = {"CAUSALDIFF_DIST_TIMEOUT": "30", "CAUSALDIFF_PROGRESS": "0"}


@pytest.fixture(scope="module")
def two_steps():
    return run_distributed(_train, 2, 2, timeout=120, env=ENV)


def test_two_ddp_steps_agree_on_both_ranks_and_with_one_process_at_the_global_batch(two_steps):
    r0, r1 = two_steps
    assert r0["world"] == r1["world"] == 2
    assert _same(r0["params"], r1["params"]) and _same(r0["ema"], r1["ema"])
    assert r0["losses"] == r1["losses"]
    SEEN.clear()
    model = _net()
    res = fit_model(model, _loss, len(X), _config(2))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(r0["params"][k], v, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(r0["ema"][k], res.ema.state_dict()[k], rtol=1e-6, atol=1e-7)
    assert not torch.equal(r0["params"]["0.weight"], _net().state_dict()["0.weight"])  # it did train
    # each rank computed its own half of the global batch one process computes whole
    for step, whole in enumerate(SEEN):
        assert len(r0["seen"][step]) == len(r1["seen"][step]) == 4
        assert torch.equal(torch.cat([r0["seen"][step], r1["seen"][step]]), whole)


def test_kill_and_resume_at_world_size_2_continues_exactly(tmp_path):
    whole = run_distributed(_train, 2, 6, timeout=120, env=ENV)
    ckpt = str(tmp_path / "ckpt")
    t0 = time.monotonic()
    with pytest.raises(ProcessesFailed, match=r"exit codes \[1, 3\]"):
        run_distributed(_train, 2, 6, ckpt, 3, timeout=120, env=ENV)
    assert time.monotonic() - t0 < 60  # the surviving rank ended with an error, it did not hang
    resumed = run_distributed(_train, 2, 6, ckpt, timeout=120, env=ENV)
    for a, b in zip(whole, resumed):
        assert b["resumed_from"] == 2
        assert _same(a["params"], b["params"]) and _same(a["ema"], b["ema"])
        assert a["losses"] == b["losses"]
    # a checkpoint of 2 processes is refused by 1, naming both sizes
    with pytest.raises(SerializationError, match=r"written by a run on 2 process\(es\); this run has 1"):
        fit_model(_net(), _loss, len(X), _config(8, ckpt), data=[X])


def test_a_checkpoint_of_one_process_is_refused_at_world_size_2(tmp_path):
    ckpt = str(tmp_path / "ckpt")
    fit_model(_net(), _loss, len(X), _config(2, ckpt), data=[X])
    with pytest.raises(ProcessesFailed, match=r"written by a run on 1 process\(es\); this run has 2"):
        run_distributed(_train, 2, 4, ckpt, timeout=120, env=ENV)
