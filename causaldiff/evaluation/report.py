"""Report helpers shared by the benchmarks, the demos and the CLI.

* :func:`environment`: where a figure was measured (device and its name, torch, threads, commit);
* :class:`Timer`: wall-clock seconds per named phase (CUDA synchronised);
* :func:`batched`: a function of rows run over consecutive chunks, outputs concatenated;
* :func:`write_json`, :func:`write_text`, :func:`write_results`: atomic writes
  (:func:`causaldiff.storage.write_atomic`), so a killed run never leaves half a results file.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..progress import progress
from ..rng import RNG_SCHEME
from ..storage import write_atomic


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def device_name(device: torch.device | str) -> str:
    """A human name of ``device``: the CUDA card's name, or the CPU and its thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """The short commit of the repository holding ``path`` (default: this package), with
    ``+uncommitted changes`` when tracked files differ from it; None outside a repository."""
    here = Path(path) if path is not None else Path(__file__).resolve().parent
    cwd = here if here.is_dir() else here.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=cwd,
                              timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        if not commit:
            return None
        return f"{commit}+uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else commit
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device | str = "cpu", path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The stamp every result carries: device and its name, versions (the RNG scheme of seeded queries,
    :data:`causaldiff.rng.RNG_SCHEME`, among them), threads, date, commit."""
    device = torch.device(device)
    try:
        causaldiff_version = version("causaldiff")
    except PackageNotFoundError:  # running from a source tree that was never installed
        causaldiff_version = None
    env = {"device": str(device), "device_name": device_name(device), "torch": torch.__version__,
           "python": platform.python_version(), "causaldiff": causaldiff_version,
           "platform": platform.platform(), "threads": torch.get_num_threads(), "date": now(),
           "git_commit": git_commit(path), "rng_scheme": RNG_SCHEME}
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
    return env


class Timer:
    """Wall-clock seconds per phase; synchronises CUDA so asynchronous work is counted.

    >>> timer = Timer("cpu")
    >>> with timer("fit"):
    ...     pass
    >>> sorted(timer.seconds)
    ['fit']
    """

    def __init__(self, device: torch.device | str = "cpu", verbose: bool = False) -> None:
        self.device, self.verbose = torch.device(device), verbose
        self.seconds: dict[str, float] = {}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            dt = time.perf_counter() - t0
            self.seconds[name] = self.seconds.get(name, 0.0) + dt
            if self.verbose:
                print(f"  [{name}: {dt:.1f} s; all phases {sum(self.seconds.values()):.0f} s]", flush=True)


def batched(fn: Callable[..., Mapping[str, Tensor]], batch_size: int, *tensors: Tensor,
            desc: str = "batches") -> dict[str, Tensor]:
    """``fn`` on consecutive row chunks of ``tensors`` (each ``(n, ...)``), outputs concatenated
    along the batch; a progress bar over the chunks."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors):
        raise ValueError(f"batched: tensors have different batch sizes {[t.shape[0] for t in tensors]}")
    outs: list[Mapping[str, Tensor]] = []
    for start in progress(range(0, n, batch_size), total=math.ceil(n / batch_size), desc=desc):
        outs.append(fn(*(t[start:start + batch_size] for t in tensors)))
    return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (parents created)."""
    return write_atomic(path, lambda f: f.write(text))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (non-JSON values written with ``str``)."""
    return write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def write_results(out: str | os.PathLike, name: str, results: Mapping[str, Any], markdown: str) -> tuple[Path, Path]:
    """``<out>/<name>.json`` and ``<out>/<name>.md``, both atomically."""
    out = Path(out)
    return write_json(out / f"{name}.json", results), write_text(out / f"{name}.md", markdown)


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


__all__ = ["now", "device_name", "git_commit", "environment", "Timer", "batched", "write_text",
           "write_json", "write_results", "markdown_table"]
