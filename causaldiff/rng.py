"""Per-row randomness: a query's random draws depend on the seed and the row index, not on how
the rows are chunked.

Rows are grouped into fixed blocks of :data:`ROW_BLOCK` rows (block ``b`` holds rows
``b * ROW_BLOCK ... (b + 1) * ROW_BLOCK - 1``, whatever the query's ``batch_size``). Block ``b``
draws from its own stream, the global RNG seeded with :func:`block_seed` ``(seed, b)``, and that
stream continues across the nodes of the query in topological order. Block 0's stream is the one
``torch.manual_seed(seed)`` gives, so a query of at most ``ROW_BLOCK`` rows draws exactly what it
drew before chunking existed. Every swap of the global state happens inside the query's
``fork_rng`` (see :func:`seeded`): the caller's RNG is never touched.

Threads: torch's global RNG is one per process (and Pyro distributions draw from it), so every
query runs under :data:`QUERY_LOCK`, a process-wide re-entrant lock: queries in several threads
run one at a time and each gets exactly the rows it gets alone. Code outside causaldiff that draws
from the global RNG in another thread while a query runs is not covered by the lock.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

#: rows per RNG block (fixed: the unit of randomness, independent of ``batch_size``)
ROW_BLOCK = 1024

_MASK = (1 << 64) - 1


#: held by every query while it draws from (or swaps) the global RNG; re-entrant
QUERY_LOCK = threading.RLock()


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block under ``torch.manual_seed(seed)`` without touching the global RNG state,
    holding :data:`QUERY_LOCK` (also when ``seed`` is None: an unseeded query draws from the
    global RNG, which a seeded query in another thread owns while it runs)."""
    with QUERY_LOCK:
        if seed is None:
            yield
            return
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            if devices:
                torch.manual_seed(seed)
            else:  # the CPU generator alone: what torch.manual_seed seeds here, without its device probes
                torch.default_generator.manual_seed(seed)
            yield


def block_seed(seed: int, block: int) -> int:
    """The seed of block ``block``'s stream: ``seed`` for block 0, else a SplitMix64 mix of both
    (Steele et al. 2014), so neighbouring blocks' streams are unrelated."""
    if block == 0:
        return seed
    z = (seed * 0x9E3779B97F4A7C15 + block * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return (z ^ (z >> 31)) >> 1  # a non-negative 63-bit seed


def query_seed(seed: int | None) -> int | None:
    """The seed the blocks derive from; ``None`` (unseeded) draws one from the global RNG."""
    if seed is not None:
        return int(seed)
    return int(torch.randint(0, 2 ** 62, (1,)).item())


class RowStreams:
    """The RNG streams of the blocks of rows ``start ... start + n - 1`` of a query.

    ``start`` is a multiple of :data:`ROW_BLOCK`. :meth:`draw` runs a draw once per block in that
    block's stream and concatenates the results. A chunk within one block (:attr:`single`) seeds
    that block's stream when it is made, and then draws in place from the global RNG.
    """

    def __init__(self, seed: int, start: int, n: int, device: torch.device) -> None:
        if start % ROW_BLOCK:
            raise ValueError(f"a chunk of stochastic rows starts at {start}, not a multiple of {ROW_BLOCK}")
        self.seed, self.start, self.n = seed, start, n
        self.cuda = device.type == "cuda"
        self.device = device
        first = start // ROW_BLOCK
        self.blocks = [(first + i, slice(o, min(o + ROW_BLOCK, n))) for i, o in enumerate(range(0, n, ROW_BLOCK))]
        self._states: dict[int, tuple[Tensor, Tensor | None]] = {}
        self._current: int | None = None
        if self.single:
            self._enter(first)

    @property
    def single(self) -> bool:
        return len(self.blocks) == 1

    def _enter(self, block: int) -> None:
        if self._current == block:
            return
        if self._current is not None:
            self._states[self._current] = self._get()
        state = self._states.get(block)
        if state is None:
            torch.manual_seed(block_seed(self.seed, block))
        else:
            torch.set_rng_state(state[0])
            if state[1] is not None:
                torch.cuda.set_rng_state(state[1], self.device)
        self._current = block

    def _get(self) -> tuple[Tensor, Tensor | None]:
        return torch.get_rng_state(), (torch.cuda.get_rng_state(self.device) if self.cuda else None)

    def draw(self, fn: Callable[[slice, int], Tensor]) -> Tensor:
        """``cat(fn(rows, m) for each block)``: ``rows`` the block's slice of the chunk, ``m`` its
        length; each call runs in its block's stream."""
        parts = []
        for block, rows in self.blocks:
            self._enter(block)
            parts.append(fn(rows, rows.stop - rows.start))
        return parts[0] if len(parts) == 1 else torch.cat(parts)


__all__ = ["ROW_BLOCK", "QUERY_LOCK", "RowStreams", "block_seed", "query_seed", "seeded"]
