"""Several processes and GPUs through torch.distributed: what a ``torchrun`` run of causaldiff uses::

    with causaldiff.distributed.launch() as run:     # under torchrun --nproc-per-node N
        scm.fit(rows)                                 # every network: DDP over the N ranks
        cf = scm.counterfactual(rows, do={"x": 1.0}, seed=0)  # split, gathered: bit-identical
        if run.is_main:
            save(cf)

:func:`launch` joins the process group, trains with :class:`~causaldiff.training.DDPStrategy`,
shards every query (:func:`~causaldiff.sharding.sharded_queries`; ``gather=False``: each rank keeps
its rows, for :func:`save_shards`) and silences the progress bars of ranks but 0.
:func:`fit_per_node`: each learnable node trained whole on one rank, then broadcast.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from .progress import progress_enabled, set_progress
from .shard_files import MANIFEST, load_shards, new_run_id, write_manifest, write_shard
from .sharding import QuerySharding, current_sharding, row_span, shard_unit, sharded_queries
from .errors import LaunchError
from .training.ddp import DEFAULT_TIMEOUT, DDPStrategy, init_process_group, launcher_env
from .training.strategy import LocalStrategy, use_strategy


@dataclass(frozen=True)
class Launch:
    """This process's place in a launched run."""

    rank: int
    world_size: int
    device: torch.device
    strategy: DDPStrategy

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints and writes."""
        return self.rank == 0


@contextlib.contextmanager
def launch(device: str | None = None, timeout: float | None = None, gather: bool = True) -> Iterator[Launch]:
    """Join the torchrun process group (see :func:`init_process_group`: ``device`` and ``timeout``),
    train with DDP and shard queries inside the block (``gather``: see :func:`sharded_queries`);
    the group is left at its end if this call created it."""
    created = not dist.is_initialized()
    dev = init_process_group(device, timeout)
    strategy = DDPStrategy()
    bars = progress_enabled()
    set_progress(bars and strategy.is_main)
    try:
        with use_strategy(strategy), sharded_queries(gather):
            yield Launch(strategy.rank, strategy.world_size, dev, strategy)
        if created:  # ranks leave together: none tears the group down while rank 0 still writes
            dist.barrier()
    finally:
        set_progress(bars)
        if created:
            dist.destroy_process_group()


def is_main() -> bool:
    """Whether this process prints and writes: rank 0 of a run, or a process on its own."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def under_launcher() -> bool:
    """Whether torchrun (or a launcher like it) started this process: ``RANK``, ``WORLD_SIZE`` and
    ``MASTER_ADDR`` set."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR"))


def launcher_rank() -> int:
    """This process's rank as the launcher set it (0 on its own, or when the launcher's variables
    are invalid: that process reports the :class:`~causaldiff.errors.LaunchError` it meets)."""
    if not under_launcher():
        return 0
    try:
        return launcher_env()[0]
    except LaunchError:
        return 0


def run_launched(fn: Callable[[], int], device: str | None = None) -> int:
    """``fn()`` inside :func:`launch` (``device``: where it trains, the CPU by default), with the
    standard output of every rank but 0 discarded: what the command line runs under torchrun."""
    with launch("cpu" if device is None else device) as run, open(os.devnull, "w") as null, \
            contextlib.redirect_stdout(sys.stdout if run.is_main else null):
        return fn()


def save_shards(values: Mapping[str, torch.Tensor], directory: str | os.PathLike, name: str = "shards") -> Path:
    """Write this rank's rows of the last query of :func:`sharded_queries` ``(gather=False)`` to
    ``<directory>/<name>.rank<r>.pt`` (atomically), and rank 0 the manifest
    ``<name>.manifest.json`` (each shard's file and rows, in order, and the run id every shard
    carries); every rank calls it. Returns the manifest's path; :func:`load_shards` reads them back."""
    sharding = current_sharding()
    if sharding is None or sharding.gather_results or not sharding.spans:
        raise RuntimeError("save_shards writes the rows of a query run under sharded_queries(gather=False)")
    start, stop, n = sharding.spans[-1]
    run = [new_run_id() if sharding.rank == 0 else None]
    dist.broadcast_object_list(run, src=0)
    file = write_shard(values, directory, name, sharding.rank, run[0])
    shards: list = [None] * sharding.world_size
    dist.all_gather_object(shards, {"file": file, "start": start, "stop": stop})
    manifest = Path(directory) / MANIFEST.format(name=name)
    if sharding.rank == 0:
        write_manifest(directory, name, n, run[0], shards)
    dist.barrier()
    return manifest


def assign_nodes(nodes: Sequence[str], world_size: int) -> dict[str, int]:
    """The rank that trains each node: round-robin over ``nodes`` in the order given."""
    return {v: i % world_size for i, v in enumerate(nodes)}


def fit_per_node(scm: Any, data: Mapping[str, Any], wait: float = 86400.0) -> Any:
    """The SCM with every learnable node fitted, on every rank: each node trained whole on one rank
    (:func:`assign_nodes`), then broadcast (the weights one process gets); an error on any rank is
    raised on all. ``wait``: seconds a rank done waits for the others (its own gloo group)."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=wait)) if world > 1 else None
    nodes = [v for v in scm.nodes if scm.mechanisms[v].learnable and v not in scm.interventions]
    owner = assign_nodes(nodes, world)
    error = None
    try:
        with use_strategy(LocalStrategy()):
            scm.fit(data, nodes=[v for v in nodes if owner[v] == rank])
    except Exception as exc:
        error = exc
    if world == 1:
        if error is not None:
            raise error
        return scm
    try:
        _agree(error, world, group)
        return scm.with_mechanisms(_broadcast_fitted(scm, nodes, owner, rank, group))
    finally:  # every rank gets here after the same collectives: the group ends on all of them
        dist.destroy_process_group(group)


def _agree(error: Exception | None, world: int, group: Any) -> None:
    """Raise on every rank the first error any rank met."""
    errors: list = [None] * world
    dist.all_gather_object(errors, None if error is None else f"{type(error).__name__}: {error}", group=group)
    if error is not None:
        raise error
    failed = [(r, e) for r, e in enumerate(errors) if e is not None]
    if failed:
        raise RuntimeError(f"fit_per_node: rank {failed[0][0]} failed: {failed[0][1]}")


def _broadcast_fitted(scm: Any, nodes: Sequence[str], owner: Mapping[str, int], rank: int,
                      group: Any) -> dict[str, Any]:
    """Each node's fitted mechanism, sent from its owner (config and CPU tensors), rebuilt elsewhere."""
    fitted = {}
    for v in nodes:
        m = scm.mechanisms[v]
        box = [(m.get_config(), {k: t.detach().cpu() for k, t in m.state_tensors().items()})
               if owner[v] == rank else None]
        dist.broadcast_object_list(box, src=owner[v], group=group)
        if owner[v] != rank:
            fitted[v] = type(m).from_saved(*box[0]).to(scm.device)
    return fitted


__all__ = ["launch", "Launch", "is_main", "save_shards", "load_shards", "under_launcher", "launcher_rank", "run_launched", "fit_per_node", "assign_nodes", "sharded_queries", "current_sharding",
           "QuerySharding", "row_span", "shard_unit", "DDPStrategy", "init_process_group", "DEFAULT_TIMEOUT"]
