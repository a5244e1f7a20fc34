"""Checks of the arguments every query takes, before any work or allocation: seeds, row counts,
categorical labels. Each raises a :mod:`causaldiff.errors` type whose message names the argument
(or the node) and the bound (:mod:`causaldiff.limits`)."""

from __future__ import annotations

import math
import operator
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .errors import DataError, SeedError
from .limits import LABEL_FLOOR, MAX_ROWS, MAX_ROWS_PER_CALL, SEED_MAX, SEED_MIN
from .storage import existing_ancestor


def check_seed(seed: Any) -> int | None:
    """``None`` or the seed as a Python int: an int or a NumPy integer in 64 bits (a bool, a float,
    a string, a tensor is refused with :class:`~causaldiff.errors.SeedError`)."""
    if seed is None:
        return None
    if isinstance(seed, (bool, float, complex, str, bytes, Tensor)) or type(seed).__name__.startswith("bool"):
        raise SeedError(f"seed must be an integer or None, got {type(seed).__name__} {seed!r}")
    try:
        value = operator.index(seed)
    except TypeError:
        raise SeedError(f"seed must be an integer or None, got {type(seed).__name__} {seed!r}") from None
    if not SEED_MIN <= value <= SEED_MAX:
        raise SeedError(f"seed must lie in [-2**63, 2**63 - 1], got {shown(value)}")
    return value


def check_count(name: str, value: Any, batch_size: int | None = None) -> int:
    """A positive row count ``name`` within :data:`~causaldiff.limits.MAX_ROWS_PER_CALL` (or,
    with ``batch_size``, :data:`~causaldiff.limits.MAX_ROWS`)."""
    try:
        n = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        n = None
    if n is None or n < 1:
        raise DataError(f"{name} must be a positive integer, got {shown(value)}")
    check_rows(name, n, batch_size)
    return n


def shown(value: Any) -> str:
    """``repr(value)``, or for an integer beyond 64 bits its size (a 5000-digit int has no repr)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    return repr(value)


def check_rows(name: str, n: int, batch_size: int | None) -> None:
    """Refuse ``n`` rows beyond the per-call bound (without ``batch_size``) or the total bound, and a
    ``batch_size`` that is not a positive integer of at most :data:`~causaldiff.limits.MAX_ROWS`."""
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or not 1 <= batch_size <= MAX_ROWS):
        raise DataError(f"batch_size must be a positive integer of at most MAX_ROWS={MAX_ROWS} or None, "
                        f"got {shown(batch_size)}")
    if batch_size is None and n > MAX_ROWS_PER_CALL:
        raise DataError(f"{name}={shown(n)} exceeds MAX_ROWS_PER_CALL={MAX_ROWS_PER_CALL} rows computed at once; "
                        f"pass batch_size (e.g. batch_size=65536) to run it in chunks")
    if n > MAX_ROWS:
        raise DataError(f"{name}={shown(n)} exceeds MAX_ROWS={MAX_ROWS} rows per query; split it into several queries")


def check_labels(what: str, v: Tensor, rows: int) -> int:
    """The classes ``max(v) + 1`` of integer labels ``v`` (non-negative, shape ``(n,)``), refused
    above ``max(rows, LABEL_FLOOR)`` before a one-hot or a count of that many classes is allocated."""
    if v.is_floating_point() or v.is_complex() or v.dtype == torch.bool or v.dim() != 1 or v.numel() == 0:
        raise DataError(f"{what}: categorical values must be non-negative integers of shape (n,), "
                        f"got {v.dtype} of shape {tuple(v.shape)}")
    lo, hi = int(v.min()), int(v.max())
    if lo < 0:
        raise DataError(f"{what}: categorical values must be non-negative integers, got {lo}")
    bound = max(rows, LABEL_FLOOR)
    if hi + 1 > bound:
        raise DataError(f"{what}: label {hi} implies {hi + 1} classes, more than max(rows={rows}, {LABEL_FLOOR}); "
                        "categorical labels must be codes 0 .. K-1 (re-code them)")
    return hi + 1


def all_finite(t: Tensor) -> bool:
    """Whether every entry of ``t`` is finite: one reduction (a finite sum proves it), the
    elementwise check only when the sum is not finite (an entry is, or the sum overflowed)."""
    return math.isfinite(t.sum().item()) or bool(torch.isfinite(t).all())


def check_output_path(path: Any, flag: str, directory: bool = False) -> Path:
    """An output path of the right kind (a folder when ``directory``, else a file: an existing one of
    the other kind is refused) whose nearest existing ancestor is a writable folder; checked before
    any work, so a long fit never ends on an unwritable ``--out``."""
    path = Path(path)
    if path.exists() and path.is_dir() != directory:
        raise DataError(f"{flag} {path}: is an existing {'file' if directory else 'directory'}; "
                        f"give a {'folder' if directory else 'file'} path")
    ancestor = path if path.is_dir() else existing_ancestor(path) or Path(path.anchor or ".")
    if not ancestor.is_dir():
        raise DataError(f"{flag} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise DataError(f"{flag} {path}: {ancestor} is not writable")
    return path


__all__ = ["check_seed", "check_count", "check_rows", "shown", "check_labels", "all_finite",
           "check_output_path"]
