"""Training checkpoints: written atomically, by the main process only, resumed bit-identically.

A checkpoint holds the model, its EMA, the optimizer and LR scheduler, the step, the loss
history, the number of processes that wrote it (a resume on another number is refused) and
every RNG state (the batch generator, the global CPU RNG and the device's CUDA
RNG), so a run resumed after a kill ends with exactly the weights of an uninterrupted one. A
fingerprint of what must not change (config, parameter shapes, data, kind of model) guards
against resuming another run's checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import SerializationError
from ..storage import write_atomic
from .config import TrainConfig
from .strategy import Strategy

CHECKPOINT_NAME = "checkpoint.pt"

#: config fields a resumed run may change
_RESUMABLE = {"steps", "checkpoint_every", "checkpoint_dir", "log_every"}
#: layout of the saved state (2: with the LR scheduler's state); older checkpoints are refused
_FORMAT = 2


def fingerprint(config: TrainConfig, model: nn.Module, data: Sequence[Tensor], tag: str) -> str:
    """Hash of what must not change between a checkpoint and its resumption."""
    cfg = config.model_dump(mode="json", exclude=_RESUMABLE)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    stats = [[list(d.shape), str(d.dtype), float(d.double().sum())] for d in data]
    blob = json.dumps([cfg, shapes, stats, tag, _FORMAT], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def save_atomic(state: Any, path: str | os.PathLike) -> Path:
    """``torch.save(state)`` to ``path`` atomically (:func:`~causaldiff.storage.write_atomic`)."""
    return write_atomic(path, lambda f: torch.save(state, f), binary=True, mode=None)


def load_checkpoint(directory: str | os.PathLike) -> dict | None:
    """The checkpoint in ``directory`` (read with ``weights_only=True``), or None if there is none."""
    path = Path(directory) / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or not a checkpoint
        raise SerializationError(f"cannot read training checkpoint {path}: {exc}") from exc


def checkpoint_dir_problem(run: str | os.PathLike, relative: str) -> str | None:
    """Why the folder ``run / relative`` cannot hold a run's checkpoints (None: it can): a part of
    it that exists is a symlink (checkpoints would land outside the run) or a file, or it holds
    another run (a ``spec.json`` or a saved ``scm`` of its own)."""
    path = Path(run)
    for part in [*Path(relative).parts, CHECKPOINT_NAME]:
        path = path / part
        if path.is_symlink():
            return f"{path} is a symlink; checkpoints stay inside the run folder"
        if part != CHECKPOINT_NAME and path.exists() and not path.is_dir():
            return f"{path} is a file, not a folder"
    if (path.parent / "spec.json").exists() or (path.parent / "scm").exists():
        return f"{path.parent} holds another run (a spec.json or scm of its own)"
    return None


class Checkpointer:
    """Checkpoints of one run in ``directory``: resumed if present, saved every ``every`` steps
    (``every=None``: only resumed, never written)."""

    def __init__(self, directory: str | os.PathLike, every: int | None = None) -> None:
        if every is not None and every < 1:
            raise ValueError(f"Checkpointer: every must be >= 1, got {every}")
        self.directory, self.every = Path(directory), every

    @classmethod
    def from_config(cls, config: TrainConfig, desc: str = "train") -> "Checkpointer | None":
        """The checkpointer ``config.checkpoint_dir`` / ``checkpoint_every`` ask for, if any."""
        if config.checkpoint_dir is None:
            if config.checkpoint_every is not None:
                raise ValueError(f"{desc}: checkpoint_every needs a checkpoint_dir")
            return None
        return cls(config.checkpoint_dir, config.checkpoint_every)

    @property
    def path(self) -> Path:
        return self.directory / CHECKPOINT_NAME

    def due(self, step: int) -> bool:
        """Whether a checkpoint is written after ``step`` optimiser steps."""
        return self.every is not None and step % self.every == 0

    def load(self, expected_fingerprint: str, desc: str = "train", world_size: int = 1) -> dict | None:
        """The saved state, or None; refuses one written for another model, data or config, or
        by a run of another number of processes (``world_size``; older checkpoints: 1)."""
        state = load_checkpoint(self.directory)
        if state is None:
            return None
        if not isinstance(state, dict):
            raise SerializationError(f"{desc}: {self.path} is not a training checkpoint "
                                     f"(a {type(state).__name__}, not a dict)")
        if state.get("fingerprint") != expected_fingerprint:
            raise SerializationError(
                f"{desc}: checkpoint {self.path} was written for another model, data or "
                "training config; delete it or use another checkpoint_dir")
        saved = state.get("world_size", 1)
        if isinstance(saved, bool) or not isinstance(saved, int) or saved < 1:
            raise SerializationError(f"{desc}: checkpoint {self.path} records world_size={saved!r}, not a "
                                     "number of processes; delete it or use another checkpoint_dir")
        if saved != world_size:
            raise SerializationError(
                f"{desc}: checkpoint {self.path} was written by a run on {saved} process(es); this run has "
                f"{world_size}: resume it on {saved} (torchrun --nproc-per-node {saved}), or delete the "
                "checkpoint to start over")
        return state

    def save(self, state: dict, strategy: Strategy) -> None:
        """Write ``state`` atomically on the main process, then wait for every process."""
        if strategy.is_main:
            save_atomic(state, self.path)
        strategy.barrier()

    def __repr__(self) -> str:
        return f"Checkpointer({str(self.directory)!r}, every={self.every})"


__all__ = ["CHECKPOINT_NAME", "Checkpointer", "checkpoint_dir_problem", "fingerprint", "load_checkpoint", "save_atomic"]
