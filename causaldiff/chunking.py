"""Memory-bounded queries: a planned query executed over chunks of at most ``batch_size`` rows.

Each chunk runs the whole plan (:func:`causaldiff.engine.execute`) on its slice of the rows, so a
query holds one chunk's intermediates at a time; the results are written into tensors of the full
batch allocated once. Deterministic queries give bit-for-bit the unchunked result when the mechanisms'
arithmetic is row-wise (Pyro distributions, codecs, elementwise maps; networks agree to float
rounding, since BLAS chooses its kernels by the number of rows); stochastic ones
(sampling, Gumbel-max abduction) draw from one generator per fixed RNG block of rows
(:mod:`causaldiff.rng`), so a seed gives the same rows whatever ``batch_size`` is, in any thread;
their chunks hold whole blocks (``batch_size`` rounded up to a multiple of
:data:`~causaldiff.rng.ROW_BLOCK`). Under
:func:`causaldiff.sharding.sharded_queries` each process runs the chunks of its span of the rows.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from . import engine
from .errors import DataError, InterventionError
from .mechanisms.base import Abduction
from .progress import progress
from .rng import ROW_BLOCK, RowStreams, query_seed
from .sharding import current_sharding, shard_unit

Columns = Mapping[str, Tensor]


def check_batch_size(batch_size: Any) -> int | None:
    """``None`` (one chunk) or a positive integer; anything else is refused."""
    if batch_size is None:
        return None
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    return batch_size


def chunk_size(batch_size: int | None, stochastic: bool) -> int | None:
    """Rows per chunk: ``batch_size``, rounded up to whole RNG blocks for a stochastic query."""
    if batch_size is None:
        return None
    return ROW_BLOCK * math.ceil(batch_size / ROW_BLOCK) if stochastic else batch_size


def chunk_bounds(n: int, batch_size: int | None, stochastic: bool) -> list[tuple[int, int]]:
    """``(start, stop)`` of each chunk; a stochastic query's chunks hold whole RNG blocks."""
    size = chunk_size(batch_size, stochastic)
    if size is None or size >= n:
        return [(0, n)]
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def draws_randomly(plan: engine.Plan, noise: Columns | None, factual: engine.Conditionals | None,
                   chunked: bool = True) -> bool:
    """Whether the plan may draw random numbers: some recomputed node samples its noise, or some
    abducted node's abduction is a sample (Gumbel-max). In one chunk an abducted node is assumed to
    draw (its conditional is built only when its counterfactual step runs); over several chunks,
    whose bounds depend on the answer, its conditional is asked."""
    if factual is not None and plan.abduct:
        return not chunked or any(factual(v).abduction is Abduction.STOCHASTIC for v in plan.abduct)
    return any(not (plan.target.is_hard(v) or v in plan.keep_natural or (noise and v in noise))
               for v in plan.recompute)


def _streams(seed: int | None, stochastic: bool, device: torch.device) -> Callable[[int, int], Any]:
    """``streams(start, m)``: the generators of a chunk's RNG blocks (None for a query that draws
    nothing); an unseeded query takes its seed from the global RNG."""
    if not stochastic:
        return lambda start, m: None
    base = query_seed(seed)
    return lambda start, m: RowStreams(base, start, m, device)


def _slice(columns: Columns | None, a: int, b: int, n: int) -> dict[str, Tensor] | None:
    if columns is None:
        return None
    return dict(columns) if (a, b) == (0, n) else {k: v[a:b] for k, v in columns.items()}


def _per_row(value: Any, n: int, shape: tuple[int, ...] | None) -> bool:
    """Whether an intervention's value gives one entry per row (``(n, *event_shape)``)."""
    if not isinstance(value, Tensor) and hasattr(value, "__array__"):
        value = torch.as_tensor(value)
    return isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] == n and \
        (shape is None or tuple(value.shape[1:]) == tuple(shape))


def plan_rows(plan: engine.Plan, a: int, b: int, n: int, rows: Columns | None) -> engine.Plan:
    """``plan`` for rows ``a:b``: per-row intervention values (``Hard``'s value, ``Shift``'s delta)
    sliced to the chunk; a ``Transform`` sees the chunk's natural values (it must act row-wise)."""
    if (a, b) == (0, n):
        return plan
    sliced = {}
    for node, iv in plan.target.interventions.items():
        shape = tuple(rows[node].shape[1:]) if rows is not None and node in rows else None
        update = {f.name: _chunk_value(node, getattr(iv, f.name), a, b, n, shape) for f in dataclasses.fields(iv)
                  if _per_row(getattr(iv, f.name), n, shape) or _per_row(getattr(iv, f.name), b - a, shape)}
        sliced[node] = dataclasses.replace(iv, **update) if update else iv
    return dataclasses.replace(plan, target=dataclasses.replace(plan.target, interventions=sliced))


def _chunk_value(node: str, value: Any, a: int, b: int, n: int, shape: tuple[int, ...] | None) -> Tensor:
    """A value's rows ``a:b`` if it has one per row of the query; else (one row that a chunk of
    ``b - a`` rows would read as one per row) that row repeated, so the chunk refuses what the
    whole query refuses (a value of ``b - a`` rows on ``n``) and takes what it takes."""
    t = torch.as_tensor(value)
    if _per_row(t, n, shape):
        return t[a:b]
    if shape is not None:  # the node's shape is known: refused as the whole query refuses it
        raise InterventionError(f"node {node!r}: intervention value of shape {tuple(t.shape)} fits neither one row {shape} nor the "
                                f"batch {(n, *shape)}")
    return t.unsqueeze(0).expand(b - a, *t.shape)


class _Gather:
    """The results of rows ``start:stop`` (a whole query, or this rank's span of a sharded one),
    filled chunk by chunk (each tensor allocated once)."""

    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop, self.out = start, stop, {}

    def put(self, a: int, b: int, values: Columns, nodes: Any) -> None:
        if (a, b) == (self.start, self.stop):
            self.out.update({k: values[k] for k in nodes})
            return
        for k in nodes:
            v = values[k]
            if k not in self.out:
                self.out[k] = torch.empty((self.stop - self.start, *v.shape[1:]), dtype=v.dtype, device=v.device)
            self.out[k][a - self.start:b - self.start] = v


Chunk = Callable[[int, int, Any], Columns]


def _run(n: int, batch_size: int | None, stochastic: bool, seed: int | None, device: torch.device,
         nodes: Any, chunk: Chunk, desc: str) -> tuple[dict[str, Tensor], tuple[int, int]]:
    """``chunk(a, b, streams)`` over the chunks of this process's rows (all ``n``, or its span of a
    sharded query: :mod:`causaldiff.sharding`), gathered into the values of ``nodes``; with the
    rows they hold (all, or this rank's of a sharded query that does not gather)."""
    sharding = current_sharding()
    span = (0, n) if sharding is None else sharding.span(n, shard_unit(chunk_size(batch_size, stochastic), stochastic))
    seed = seed if sharding is None or not stochastic else sharding.common_seed(seed)

    def local() -> dict[str, Tensor]:
        gather = _Gather(*span)
        bounds = [(span[0] + a, span[0] + b) for a, b in chunk_bounds(span[1] - span[0], batch_size, stochastic)]
        streams = _streams(seed, stochastic, device)
        for a, b in progress(bounds, desc=desc, total=len(bounds)) if len(bounds) > 1 else bounds:
            gather.put(a, b, chunk(a, b, streams(a, b - a)), nodes)
        return gather.out

    if sharding is None:
        return local(), span
    return sharding.gather(local, span, n, device), sharding.result_span(span, n)


def device_memory(device: torch.device) -> int:
    """Bytes of memory of ``device``: a GPU's own, else the machine's physical memory."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_result_size(n: int, like: Columns, nodes: Any, device: torch.device) -> None:
    """Before the first chunk: refuse a result of ``n`` rows of ``nodes`` (each row the size of its
    row in ``like``) that exceeds the memory of ``device``, naming its largest node."""
    per_row = {k: like[k][0].numel() * like[k].element_size() for k in nodes if k in like}
    total, limit = n * sum(per_row.values()), device_memory(device)
    if total > limit:
        big = max(per_row, key=per_row.get)
        raise DataError(f"the result of {n} rows would take {total / 2**30:,.1f} GiB ({per_row[big]:,} bytes a row for "
                        f"node {big!r}), more than the {limit / 2**30:,.1f} GiB of {device} memory; ask for fewer rows")


def _one_row(plan: engine.Plan, n: int, device: torch.device | None) -> dict[str, Tensor]:
    """One row of a sample (its own generator, seed 0): the shape and dtype of each node's rows."""
    streams = RowStreams(0, 0, 1, device or plan.target.device)
    return engine.execute(plan_rows(plan, 0, 1, n, None), 1, streams=streams)


def execute(plan: engine.Plan, n: int, *, rows: Columns | None = None, noise: Columns | None = None,
            factual: engine.Conditionals | None = None, batch_size: int | None = None,
            seed: int | None = None, desc: str = "query", device: torch.device | None = None) -> dict[str, Tensor]:
    """:func:`causaldiff.engine.execute` over chunks of ``batch_size`` rows (``factual``: the
    factual conditionals of the whole batch, already checked; each chunk builds its own) on
    ``device`` (default: the mechanisms')."""
    def chunk(a: int, b: int, streams: Any) -> Columns:
        rows_c = _slice(rows, a, b, n)
        fac = factual if (a, b) == (0, n) or factual is None else \
            engine.Conditionals(factual.structure, rows_c, b - a)
        return engine.execute(plan_rows(plan, a, b, n, rows), b - a, rows_c, _slice(noise, a, b, n), fac, streams)

    chunked = batch_size is not None and batch_size < n
    if chunked:
        given = rows if rows is not None else noise
        check_result_size(n, given if given is not None else _one_row(plan, n, device), plan.recompute,
                          device or plan.target.device)
    out, (a, b) = _run(n, batch_size, draws_randomly(plan, noise, factual, chunked), seed, device or plan.target.device,
                       plan.recompute, chunk, desc)
    kept = {k: v if (a, b) == (0, n) else v[a:b] for k, v in (rows or {}).items() if k not in out}
    return {v: out[v] if v in out else kept[v] for v in plan.target.order if v in out or v in kept}


def abduct(structure: engine.Structure, conds: engine.Conditionals, rows: Columns, nodes: tuple[str, ...],
           n: int, *, batch_size: int | None = None, seed: int | None = None,
           desc: str = "abduct") -> dict[str, Tensor]:
    """:func:`causaldiff.engine.abduct_nodes` over chunks of ``batch_size`` rows."""
    def chunk(a: int, b: int, streams: Any) -> Columns:
        rows_c = _slice(rows, a, b, n)
        c = conds if (a, b) == (0, n) else engine.Conditionals(structure, rows_c, b - a)
        return engine.abduct_nodes(structure, c, rows_c, nodes, streams)

    stochastic = any(conds(v).abduction is Abduction.STOCHASTIC for v in nodes)
    if batch_size is not None and batch_size < n:
        check_result_size(n, rows, nodes, structure.device)
    out, _ = _run(n, batch_size, stochastic, seed, structure.device, nodes, chunk, desc)
    return {v: out[v] for v in nodes if v in out}


__all__ = ["execute", "abduct", "chunk_bounds", "chunk_size", "check_batch_size", "check_result_size",
           "device_memory", "draws_randomly"]
