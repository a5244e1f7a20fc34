"""The loop routes every process-dependent step through its Strategy."""

from __future__ import annotations

import torch
from torch import nn

from causaldiff.training import (CHECKPOINT_NAME, Checkpointer, LocalStrategy, Strategy, TrainConfig,
                                 fit_model)


class Recording(LocalStrategy):
    """The local strategy, recording each call; ``shard`` keeps the first half of the batch."""

    def __init__(self, is_main: bool = True) -> None:
        self.calls: list[str] = []
        self._main = is_main
        self.wrapped: nn.Module | None = None

    @property
    def is_main(self) -> bool:
        self.calls.append("is_main")
        return self._main

    def wrap(self, model):
        self.calls.append("wrap")
        self.wrapped = Wrapper(model)
        return self.wrapped

    def shard(self, indices):
        self.calls.append("shard")
        return indices[: len(indices) // 2]

    def reduce(self, tensor):
        self.calls.append("reduce")
        return tensor

    def barrier(self):
        self.calls.append("barrier")


class Wrapper(nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(x)


def _train(strategy, tmp_path, steps=6):
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(1))
    batches, models = [], []

    def loss(net, idx, gen):
        batches.append(len(idx))
        models.append(net)
        return net(x[idx]).pow(2).mean()

    cfg = TrainConfig(steps=steps, batch_size=8, log_every=3)
    res = fit_model(model, loss, 40, cfg, strategy=strategy,
                    checkpointer=Checkpointer(tmp_path / "ck", every=2))
    return res, batches, models


def test_the_loop_wraps_shards_reduces_and_waits(tmp_path):
    s = Recording()
    res, batches, models = _train(s, tmp_path)
    assert s.calls.count("wrap") == 1 and all(m is s.wrapped for m in models)
    assert s.calls.count("shard") == 6 and batches == [4] * 6  # the loss sees this rank's half
    assert s.calls.count("reduce") == 2 and len(res.losses) == 2  # one per log window
    # the progress bar on the main process only; checkpoints after steps 2, 4, 6: the main
    # process writes, then every process waits
    assert s.calls.count("barrier") == 3 and s.calls.count("is_main") == 4
    assert [c for c in s.calls if c in ("is_main", "barrier")] == ["is_main"] + ["is_main", "barrier"] * 3
    assert (tmp_path / "ck" / CHECKPOINT_NAME).exists()
    assert res.model is not s.wrapped and isinstance(res.model, nn.Linear)


def test_a_process_that_is_not_main_writes_nothing(tmp_path):
    s = Recording(is_main=False)
    _train(s, tmp_path, steps=5)  # checkpoints after steps 2, 4 and the last one
    assert s.calls.count("barrier") == 3
    assert not (tmp_path / "ck").exists() or not any((tmp_path / "ck").iterdir())


def test_local_strategy_is_the_identity():
    s = LocalStrategy()
    assert isinstance(s, Strategy) and s.is_main and (s.rank, s.world_size) == (0, 1)
    m, t = nn.Linear(1, 1), torch.arange(4)
    assert s.wrap(m) is m and s.shard(t) is t and s.reduce(t) is t and s.barrier() is None
