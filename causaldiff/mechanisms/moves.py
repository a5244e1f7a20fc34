"""All-or-nothing moves of mechanisms to a device, in two phases.

:meth:`Move.tensors` and :meth:`Move.module` *stage*: they copy tensors onto the target device
(the allocations, where a move can fail) and change nothing. :meth:`Move.commit` then only
assigns what was staged, so a failure while staging any mechanism of an SCM leaves every
weight where it was (``SCM.to``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn


class Move:
    """The staged move of one or more mechanisms to ``device``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._commits: list[Callable[[], None]] = []
        self._first: list[Callable[[], None]] = []

    def tensor(self, t: Tensor) -> Tensor:
        """``t`` on the device (a copy; ``t`` itself unchanged)."""
        return t.to(self.device)

    def tensors(self, d: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """A new dict of ``d``'s tensors on the device."""
        return {k: self.tensor(v) for k, v in d.items()}

    def module(self, net: nn.Module | None) -> None:
        """Stage every parameter and buffer of ``net``; the commit moves them in place (the module
        keeps its identity, so networks shared between mechanisms stay shared)."""
        if net is None:
            return
        staged = {id(t): self.tensor(t) for t in itertools.chain(net.parameters(), net.buffers())}

        def commit() -> None:
            net._apply(lambda t: staged[id(t)] if id(t) in staged else t.to(self.device))

        self._commits.append(commit)

    def set(self, obj: Any, **values: Any) -> None:
        """Assign ``values`` to ``obj``'s attributes at commit."""
        self._commits.append(lambda: [setattr(obj, k, v) for k, v in values.items()])

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` first at commit (a mechanism that only implements ``to``: not all-or-nothing)."""
        self._first.append(fn)

    def commit(self) -> None:
        for fn in self._first + self._commits:
            fn()


__all__ = ["Move"]
