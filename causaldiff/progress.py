"""Global progress-bar toggle (``CAUSALDIFF_PROGRESS=0`` disables bars by default)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

_enabled = os.environ.get("CAUSALDIFF_PROGRESS", "1").lower() not in ("0", "false", "no", "off")


def set_progress(enabled: bool) -> None:
    """Turn every causaldiff progress bar on or off."""
    global _enabled
    _enabled = bool(enabled)


def progress_enabled() -> bool:
    return _enabled


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
             leave: bool = False) -> Iterator[T] | tqdm:
    """A tqdm bar honouring the global toggle (disabled bars cost nothing)."""
    return tqdm(iterable, total=total, desc=desc, leave=leave, disable=not _enabled,
                dynamic_ncols=True)


__all__ = ["set_progress", "progress_enabled", "progress"]
