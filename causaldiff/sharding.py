"""Sharded queries: the rows of one query split between the processes of a torch.distributed run.

Inside :func:`sharded_queries` every query computes this rank's contiguous rows (:func:`row_span`),
then all-gathers them (shards padded to the longest), so every rank returns the whole result. The
ranks split in whole units (:func:`shard_unit`: the chunks of a ``batch_size``, else RNG blocks when
it draws, else rows), so the result is bit-identical to one process's: always for row-wise
arithmetic (Pyro distributions, codecs), and for networks given a ``batch_size`` (otherwise BLAS
kernels chosen by row count make them agree to rounding). An unseeded query's seed is drawn on
rank 0; an error on one rank is raised on every rank.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from .errors import DataError, SeedError
from .rng import ROW_BLOCK, query_seed

Values = dict[str, Tensor]


def row_span(n: int, rank: int, world_size: int, unit: int = 1) -> tuple[int, int]:
    """Rank ``rank``'s contiguous rows ``(start, stop)`` of ``n``: an even split of units of ``unit``
    rows (the last shorter; a rank may get none)."""
    units = math.ceil(n / unit)
    a, b = units * rank // world_size, units * (rank + 1) // world_size
    return min(a * unit, n), min(b * unit, n)


def shard_unit(chunk: int | None, stochastic: bool) -> int:
    """The rows the ranks split a query in: its chunks, else RNG blocks when it draws, else rows."""
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
        """``seed`` when every rank passed the same one; unseeded on every rank: one drawn on rank 0
        and shared; else a :class:`~causaldiff.errors.SeedError` on every rank naming their seeds."""
        if self.world_size == 1:
            return seed
        seeds = _all_gather("choosing the seed", (seed, query_seed(None) if seed is None and self.rank == 0 else None),
                            self.world_size)
        given = [s for s, _ in seeds]
        if any(s != given[0] for s in given):
            raise SeedError("sharded query: the ranks passed different seeds (" +
                            ", ".join(f"rank {r}: {s}" for r, s in enumerate(given)) +
                            "); every rank must run the same query with the same seed")
        return given[0] if given[0] is not None else seeds[0][1]

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
        metas = _exchange(n, span, local, error, self.world_size)
        _agree_on_rows(metas)
        _raise_first(metas, error)
        if not self.gather_results:
            return local
        lengths = [m[1][1] - m[1][0] for m in metas]
        shapes = next(m[2] for m, k in zip(metas, lengths) if k)
        comm = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else \
            torch.device("cpu")
        return {k: _all_gather_rows(local.get(k), lengths, shape, dtype, comm).to(device)
                for k, (shape, dtype) in shapes.items()}


def portable(error: Exception) -> Exception:
    """``error`` if it survives the pickle round trip to another rank, else a RuntimeError with its
    type and message (an exception taking two arguments would fail to unpickle there)."""
    try:
        back = pickle.loads(pickle.dumps(error))
        if type(back) is type(error) and str(back) == str(error):
            return error
    except Exception:  # noqa: BLE001: any failure of the round trip
        pass
    return RuntimeError(f"{type(error).__name__}: {error}")


def _exchange(n: int, span: tuple[int, int], local: Values, error: Exception | None, world_size: int) -> list:
    """Every rank's (query rows, its span of them, {node: (shape, dtype)}, error)."""
    meta = (n, tuple(span), {k: (tuple(v.shape[1:]), v.dtype) for k, v in local.items()},
            None if error is None else portable(error))
    return _all_gather("joining the rows", meta, world_size)


def _all_gather(step: str, payload: Any, world_size: int) -> list:
    """Every rank's ``payload`` of the same ``step`` of a query; ranks at different steps (which
    ran different queries, e.g. with different ``batch_size``) are refused on every rank alike."""
    got: list = [None] * world_size
    dist.all_gather_object(got, (step, payload))
    if any(s != step for s, _ in got):
        raise DataError("sharded query: the ranks are not running the same query (" +
                        ", ".join(f"rank {r}: {s}" for r, (s, _) in enumerate(got)) +
                        "); every rank must run the same queries with the same rows, seed and batch_size")
    return [p for _, p in got]


def _agree_on_rows(metas: list) -> None:
    """Refuse, on every rank alike, a query whose ranks were given different numbers of rows, or
    whose spans do not tile them (ranks that passed different ``batch_size``)."""
    if any(m[0] != metas[0][0] for m in metas):
        raise DataError("sharded query: the ranks passed different numbers of rows (" +
                        ", ".join(f"rank {r}: {m[0]}" for r, m in enumerate(metas)) +
                        "); every rank must run the same query on the same rows")
    stops = [0] + [m[1][1] for m in metas]
    if any(m[1][0] != stops[r] for r, m in enumerate(metas)) or stops[-1] != metas[0][0]:
        raise DataError("sharded query: the ranks' rows do not tile the query (" +
                        ", ".join(f"rank {r}: {m[1][0]}..{m[1][1]}" for r, m in enumerate(metas)) +
                        "); every rank must pass the same batch_size")


def _raise_first(metas: list, error: Exception | None) -> None:
    failed = [(r, m[3]) for r, m in enumerate(metas) if m[3] is not None]
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
    """Shard every query in the block over the default process group (every rank runs the same
    queries in order); ``gather=False``: each returns this rank's rows only (for
    :func:`causaldiff.distributed.save_shards`), so give queries whole inputs, not a shard."""
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("sharded_queries needs an initialised torch.distributed process group "
                           "(causaldiff.training.init_process_group(), under torchrun)")
    token = _CURRENT.set(QuerySharding(dist.get_rank(), dist.get_world_size(), gather))
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)


__all__ = ["QuerySharding", "portable", "row_span", "shard_unit", "sharded_queries", "current_sharding"]
