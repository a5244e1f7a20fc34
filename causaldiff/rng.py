"""Per-row randomness through explicit generators: a query's draws depend on the seed and the row
index, not on the chunking nor on other threads.

Block ``b`` of :data:`ROW_BLOCK` rows (whatever the ``batch_size``) draws from its own
``torch.Generator`` on the query's device, seeded :func:`block_seed` ``(seed, b)`` and passed to every
draw of the block (codecs, Gumbel-max abduction, diffusion noise), across the nodes in order.

A query never touches torch's global RNG (an unseeded one takes one seed from it), so queries in
several threads run at once, each getting the rows it gets alone. The exception, a distribution
whose ``sample`` takes no generator and has no exact inverse CDF (:func:`opaque_draw`), draws in a
fork of the global RNG seeded from the block's generator, under a lock scoped to that draw.
:data:`RNG_SCHEME` (recorded in saved runs and results): 1 seeded the global RNG per block behind a
process-wide lock; 2 passes the generators.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor

#: rows per RNG block (fixed: the unit of randomness, independent of ``batch_size``)
ROW_BLOCK = 1024
#: version of the way seeded queries draw (recorded in saved runs and results)
RNG_SCHEME = 2

_MASK = (1 << 64) - 1
_OPAQUE = threading.Lock()


def block_seed(seed: int, block: int) -> int:
    """The seed of block ``block``'s stream: ``seed`` for block 0, else a SplitMix64 mix of both
    (Steele et al. 2014), so neighbouring blocks' streams are unrelated."""
    if block == 0:
        return seed
    z = (seed * 0x9E3779B97F4A7C15 + block * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return (z ^ (z >> 31)) >> 1  # a non-negative 63-bit seed


def query_seed(seed: int | None) -> int:
    """The seed the blocks derive from; ``None`` (unseeded) draws one from the global RNG."""
    if seed is not None:
        return int(seed)
    return int(torch.randint(0, 2 ** 62, (1,)).item())


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` seeded with ``seed``."""
    return torch.Generator(device=torch.device(device)).manual_seed(int(seed))


def _default_generators(devices: Sequence[int]) -> list[torch.Generator]:
    """The CPU's default generator and those of the CUDA ``devices``."""
    return [torch.default_generator, *(torch.cuda.default_generators[d] for d in devices)]


@contextlib.contextmanager
def forked_seed(seed: int, devices: Sequence[int] = ()) -> Iterator[None]:
    """Torch's global RNG seeded with ``seed`` for the block, then restored: the CPU generator and
    those of the CUDA ``devices``, and only those (``torch.manual_seed`` would reseed every GPU
    while ``fork_rng`` restores the ones named)."""
    if devices:
        torch.cuda.init()
    gens = _default_generators(devices)
    states = [g.get_state() for g in gens]
    try:
        for g in gens:
            g.manual_seed(int(seed))
        yield
    finally:
        for g, s in zip(gens, states):
            g.set_state(s)


def opaque_draw(gen: torch.Generator, draw: Callable[[], Tensor]) -> Tensor:
    """``draw()`` (code that takes no generator: an opaque distribution's ``sample``) made a draw
    of ``gen``: run in a fork of the global RNG seeded from ``gen``, holding a lock scoped to it."""
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=gen, device=gen.device).item())
    devices = [gen.device.index or 0] if gen.device.type == "cuda" else []
    with _OPAQUE, forked_seed(seed, devices):
        return draw()


class RowStreams:
    """The generators of the blocks of rows ``start ... start + n - 1`` of a query (``start`` a
    multiple of :data:`ROW_BLOCK`), made when the chunk starts."""

    def __init__(self, seed: int, start: int, n: int, device: torch.device) -> None:
        if start % ROW_BLOCK:
            raise ValueError(f"a chunk of stochastic rows starts at {start}, not a multiple of {ROW_BLOCK}")
        first = start // ROW_BLOCK
        self.blocks = [slice(o, min(o + ROW_BLOCK, n)) for o in range(0, n, ROW_BLOCK)]
        self.generators = [generator(block_seed(seed, first + i), device) for i in range(len(self.blocks))]

    @property
    def single(self) -> torch.Generator | None:
        """The generator of a chunk within one block, else None."""
        return self.generators[0] if len(self.generators) == 1 else None

    def draw(self, fn: Callable[[slice, int, torch.Generator], Tensor]) -> Tensor:
        """``cat(fn(rows, m, gen) for each block)``: ``rows`` the block's slice of the chunk, ``m``
        its length, ``gen`` its generator."""
        parts = [fn(rows, rows.stop - rows.start, gen) for rows, gen in zip(self.blocks, self.generators)]
        return parts[0] if len(parts) == 1 else torch.cat(parts)


__all__ = ["ROW_BLOCK", "RNG_SCHEME", "RowStreams", "block_seed", "forked_seed", "generator", "opaque_draw",
           "query_seed"]
