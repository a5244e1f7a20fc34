"""The files of a sharded result: ``<name>.rank<r>.pt`` per rank and the manifest
``<name>.manifest.json`` (written by :func:`causaldiff.distributed.save_shards`).

:func:`load_shards` distrusts what it reads: each shard must be the rank's own file in the folder,
its rows contiguous from 0 to ``n`` in rank order, with the manifest's run id and the same nodes,
shapes and dtypes as the others; anything else is one :class:`~causaldiff.errors.SerializationError`
naming the file, before any shard is concatenated.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .errors import SerializationError
from .training.checkpoint import save_atomic

MANIFEST = "{name}.manifest.json"
SHARD = "{name}.rank{rank:05d}.pt"
#: layout of the manifest and its shards (1: with a run id, shards as {"run", "values"})
SHARD_FORMAT = 1


def new_run_id() -> str:
    """An identifier shared by the manifest and the shards of one :func:`save_shards` call."""
    return secrets.token_hex(16)


def write_shard(values: Mapping[str, Tensor], directory: str | os.PathLike, name: str, rank: int, run: str) -> str:
    """Write rank ``rank``'s rows atomically; returns the shard's file name (relative to ``directory``)."""
    file = SHARD.format(name=name, rank=rank)
    save_atomic({"run": run, "values": {k: v.detach().cpu().contiguous() for k, v in values.items()}},
                Path(directory) / file)
    return file


def write_manifest(directory: str | os.PathLike, name: str, n: int, run: str, shards: list[dict]) -> Path:
    """Write the manifest (each shard's file and rows ``start``/``stop``, in rank order) atomically."""
    from .evaluation.report import write_json

    return write_json(Path(directory) / MANIFEST.format(name=name),
                      {"format": SHARD_FORMAT, "name": name, "run": run, "n": n, "world_size": len(shards),
                       "shards": shards})


def _int(value: Any, what: str, where: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SerializationError(f"{where}: {what} must be a non-negative integer, got {value!r}")
    return value


def read_manifest(directory: Path, name: str) -> dict[str, Any]:
    """The manifest of ``name``, checked: its fields, the shards' names and contiguous rows."""
    path = directory / MANIFEST.format(name=name)
    try:
        manifest = json.loads(path.read_text())
        run, n, shards = manifest["run"], manifest["n"], manifest["shards"]
        if manifest.get("format") != SHARD_FORMAT or not isinstance(run, str) or not isinstance(shards, list):
            raise TypeError("not a manifest of save_shards (format, run or shards missing)")
        rows = [(s["file"], s["start"], s["stop"]) for s in shards]
    except FileNotFoundError:
        raise SerializationError(f"{path}: no manifest of {name!r} (written by save_shards)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
        raise SerializationError(f"{path}: malformed shard manifest ({type(exc).__name__}: {exc})") from None
    n, expect = _int(n, "n", path), 0
    if not rows:
        raise SerializationError(f"{path}: lists no shards")
    for rank, (file, start, stop) in enumerate(rows):
        if file != SHARD.format(name=name, rank=rank):
            raise SerializationError(f"{path}: shard {rank} is {file!r}; rank {rank}'s shard must be "
                                     f"{SHARD.format(name=name, rank=rank)!r} in the same folder")
        if _int(start, f"shard {rank} start", path) != expect or _int(stop, f"shard {rank} stop", path) < start:
            raise SerializationError(f"{path}: shard {rank} declares rows {start}..{stop}; expected rows "
                                     f"from {expect} on (shards contiguous, in rank order)")
        expect = stop
    if expect != n:
        raise SerializationError(f"{path}: the shards declare {expect} rows, the manifest n={n}")
    return {"run": run, "n": n, "rows": rows}


def _read_shard(directory: Path, file: str, run: str, rows: int) -> dict[str, Tensor]:
    path = directory / file
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        values = saved["values"]
        if saved["run"] != run:
            raise SerializationError(f"{path}: a shard of another run ({saved['run']!r}, the manifest's is {run!r})")
        if not all(isinstance(v, Tensor) and v.dim() >= 1 for v in values.values()):
            raise TypeError("values are not tensors of rows")
    except SerializationError:
        raise
    except Exception as exc:  # truncated, missing, or not a shard
        raise SerializationError(f"{path}: cannot read the shard ({type(exc).__name__}: {exc})") from None
    wrong = sorted(k for k, v in values.items() if v.shape[0] != rows)
    if wrong:
        raise SerializationError(f"{path}: node {wrong[0]!r} holds {values[wrong[0]].shape[0]} rows, "
                                 f"the manifest declares {rows}")
    return values


def load_shards(directory: str | os.PathLike, name: str = "shards") -> dict[str, Tensor]:
    """The whole result :func:`~causaldiff.distributed.save_shards` wrote: every shard's rows,
    concatenated in rank order, once every file passed the checks of the module docstring."""
    directory = Path(directory)
    manifest = read_manifest(directory, name)
    parts = [_read_shard(directory, f, manifest["run"], stop - start) for f, start, stop in manifest["rows"]]
    first = parts[0]
    for (file, _, _), part in zip(manifest["rows"], parts):
        for k in sorted(set(first) | set(part)):
            a, b = first.get(k), part.get(k)
            if a is None or b is None or a.dtype != b.dtype or a.shape[1:] != b.shape[1:]:
                got = "nothing" if b is None else f"{b.dtype} {tuple(b.shape[1:])}"
                want = "nothing" if a is None else f"{a.dtype} {tuple(a.shape[1:])}"
                raise SerializationError(f"{directory / file}: node {k!r} holds {got} per row, the first shard {want}")
    return {k: torch.cat([p[k] for p in parts]) for k in first}


__all__ = ["MANIFEST", "SHARD", "load_shards", "new_run_id", "read_manifest", "write_manifest", "write_shard"]
