"""Sharded queries: the rows of one query split between the processes of a torch.distributed run.

Inside :func:`sharded_queries`, every query (``sample``, ``interventional_samples``, ``predict``,
``abduct``, ``counterfactual``) computes only this rank's contiguous range of rows
(:func:`row_span`) and the ranges are gathered back (``all_gather``, shards padded to the longest),
so every rank returns the whole result. Randomness is drawn per global row block
(:mod:`causaldiff.rng`), and the ranks split the rows in whole units (:func:`shard_unit`): the
query's chunks when it has a ``batch_size``, else whole RNG blocks when it draws, else single rows
(exact abduction counterfactuals). So at any world size the result is bit-identical to one
process's: always when the mechanisms' arithmetic is row-wise (Pyro distributions, codecs), and
for every mechanism, networks included, when the query is given a ``batch_size`` (each chunk is
then computed with the shapes one process computes it with; without one, a network's rows agree
to float rounding, since BLAS chooses its kernels by the number of rows). An unseeded query draws
its seed on rank 0 and broadcasts it. An error on one rank is raised on every rank.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor

from .rng import ROW_BLOCK, query_seed

Values = dict[str, Tensor]


def row_span(n: int, rank: int, world_size: int, unit: int = 1) -> tuple[int, int]:
    """Rank ``rank``'s contiguous rows ``(start, stop)`` of an ``n``-row query: an even split of its
    units of ``unit`` rows (the last one shorter); a rank may get none (``start == stop``)."""
    units = math.ceil(n / unit)
    a, b = units * rank // world_size, units * (rank + 1) // world_size
    return min(a * unit, n), min(b * unit, n)


def shard_unit(chunk: int | None, stochastic: bool) -> int:
    """The rows the ranks split a query in: its chunks (``chunk`` rows, which one process computes
    the same way), else whole RNG blocks when it draws, else single rows."""
    return chunk if chunk is not None else ROW_BLOCK if stochastic else 1


@dataclass(frozen=True)
class QuerySharding:
    """This process's place in the run (rank ``rank`` of ``world_size``) for sharded queries;
    ``gather=False``: each query returns this rank's rows only. ``spans`` records each query's
    ``(start, stop, n)`` on this rank, in order."""

    rank: int
    world_size: int
    gather_results: bool = True
    spans: list[tuple[int, int, int]] = field(default_factory=list, compare=False)

    def span(self, n: int, unit: int) -> tuple[int, int]:
        return row_span(n, self.rank, self.world_size, unit)

    def common_seed(self, seed: int | None) -> int | None:
        """``seed``, or (unseeded) one drawn on rank 0 and broadcast to every rank."""
        if seed is not None or self.world_size == 1:
            return seed
        box = [query_seed(None) if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def result_span(self, span: tuple[int, int], n: int) -> tuple[int, int]:
        """The rows a query returns here: all ``n``, or (``gather=False``) this rank's ``span``."""
        return span if not self.gather_results else (0, n)

    def gather(self, compute: Callable[[], Values], span: tuple[int, int], n: int, device: torch.device) -> Values:
        """``compute()`` (this rank's rows ``span``) joined with every other rank's, in rank order
        (or, ``gather=False``, alone, once every rank has computed its rows without error)."""
        self.spans.append((*span, n))
        if self.world_size == 1:
            return compute()
        local, error = {}, None
        try:
            if span[1] > span[0]:
                local = compute()
        except Exception as exc:  # every rank learns of it before any collective waits on this one
            error = exc
        metas = _exchange(span[1] - span[0], local, error, self.world_size)
        _raise_first(metas, error)
        if not self.gather_results:
            return local
        lengths = [m[0] for m in metas]
        shapes = next(m[1] for m in metas if m[0])
        comm = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else \
            torch.device("cpu")
        return {k: _all_gather_rows(local.get(k), lengths, shape, dtype, comm).to(device)
                for k, (shape, dtype) in shapes.items()}


def _exchange(m: int, local: Values, error: Exception | None, world_size: int) -> list:
    """Every rank's (rows, {node: (shape, dtype)}, error)."""
    if error is not None:
        try:
            pickle.dumps(error)
        except Exception:
            error = RuntimeError(f"{type(error).__name__}: {error}")
    meta = (m, {k: (tuple(v.shape[1:]), v.dtype) for k, v in local.items()}, error)
    metas: list = [None] * world_size
    dist.all_gather_object(metas, meta)
    return metas


def _raise_first(metas: list, error: Exception | None) -> None:
    failed = [(r, m[2]) for r, m in enumerate(metas) if m[2] is not None]
    if not failed:
        return
    if error is not None:
        raise error
    rank, exc = failed[0]
    exc.add_note(f"(raised on rank {rank} of the sharded query)")
    raise exc


def _all_gather_rows(value: Tensor | None, lengths: list[int], shape: tuple[int, ...], dtype: torch.dtype,
                     device: torch.device) -> Tensor:
    """The ranks' rows of one node, concatenated (each shard padded to the longest for all_gather)."""
    buf = torch.zeros((max(lengths), *shape), dtype=dtype, device=device)
    if value is not None:
        buf[:value.shape[0]] = value.to(device)
    parts = [torch.empty_like(buf) for _ in lengths]
    dist.all_gather(parts, buf)
    return torch.cat([p[:m] for p, m in zip(parts, lengths)])


_CURRENT: contextvars.ContextVar[QuerySharding | None] = contextvars.ContextVar("causaldiff_sharding", default=None)


def current_sharding() -> QuerySharding | None:
    """The sharding :func:`sharded_queries` set, or None (queries run whole on this process)."""
    return _CURRENT.get()


@contextlib.contextmanager
def sharded_queries(gather: bool = True) -> Iterator[QuerySharding]:
    """Shard every query in the block over the default process group (every rank must run the
    same queries in the same order, as under ``torchrun``); ``gather=False``: each query returns
    this rank's rows of its result only (e.g. for :func:`causaldiff.distributed.save_shards`,
    results larger than memory), so give the queries whole inputs, not another query's shard."""
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("sharded_queries needs an initialised torch.distributed process group "
                           "(causaldiff.training.init_process_group(), under torchrun)")
    token = _CURRENT.set(QuerySharding(dist.get_rank(), dist.get_world_size(), gather))
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)


__all__ = ["QuerySharding", "row_span", "shard_unit", "sharded_queries", "current_sharding"]
