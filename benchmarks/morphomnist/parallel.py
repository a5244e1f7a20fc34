"""Row-parallel CPU work (rendering, measuring) in worker processes, optionally in the background.

:class:`RowJob` splits its row arrays into chunks (about four per process), maps a module-level
function over them in a shared ``spawn`` process pool (:func:`shared_pool`, started once; in this
process when one worker suffices) and joins the chunks' outputs in order. Started with ``background=True`` it returns at once, so the CPU work runs
while this process drives the GPU; :meth:`RowJob.result` waits for it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np

from causaldiff.progress import progress

CHUNK = 250  # rows per chunk at most
MIN_CHUNK = 16  # rows per chunk at least (a process costs seconds to start)

ChunkFn = Callable[..., tuple[np.ndarray, ...]]


def _die_with_parent(parent: int) -> None:
    """Worker initializer: on Linux, a worker is sent SIGTERM when the process that started it
    dies (``PR_SET_PDEATHSIG``), and exits at once if it has died already, so a killed run leaves
    no worker behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def processes_for(rows: int, workers: int) -> int:
    """Processes worth starting for ``rows`` rows: one per ``MIN_CHUNK`` rows at most, never more than ``workers``."""
    return max(1, min(int(workers), -(-int(rows) // MIN_CHUNK)))


def chunk_rows(rows: int, processes: int) -> int:
    """Rows per chunk: about four chunks per process (balanced), within ``MIN_CHUNK..CHUNK``."""
    return max(MIN_CHUNK, min(CHUNK, -(-int(rows) // (4 * processes))))


_POOL: dict[int, ProcessPoolExecutor] = {}


def shared_pool(workers: int) -> ProcessPoolExecutor:
    """The process pool of ``workers`` spawned workers, started once and reused by every job (a
    worker costs seconds to start: it imports torch); a broken pool is replaced."""
    pool = _POOL.get(workers)
    if pool is None or getattr(pool, "_broken", False):
        for old in _POOL.values():
            old.shutdown(wait=False, cancel_futures=True)
        _POOL.clear()
        pool = _POOL[workers] = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                                    initializer=_die_with_parent, initargs=(os.getpid(),))
    return pool


class RowJob:
    """``fn(*chunk)`` over row chunks of ``arrays``, each call returning a tuple of row arrays."""

    def __init__(self, fn: ChunkFn, arrays: Sequence[np.ndarray], workers: int, desc: str,
                 background: bool = False):
        sizes = {len(a) for a in arrays}
        if len(sizes) != 1:
            raise ValueError(f"{desc}: the row arrays differ in length: {sorted(sizes)}")
        n = sizes.pop()
        self.desc, self.n = desc, n
        procs = processes_for(n, workers)
        size = chunk_rows(n, procs) if procs > 1 else CHUNK
        self._chunks = [tuple(a[k:k + size] for a in arrays) for k in range(0, n, size)]
        self._pool: ProcessPoolExecutor | None = None
        self._futures: list[Future] = []
        self._fn = fn
        self._parts: list[tuple[np.ndarray, ...]] | None = None
        if procs > 1:
            self._pool = shared_pool(int(workers))
            self._futures = [self._pool.submit(fn, *c) for c in self._chunks]
        elif not background:
            self._run_here()

    def _run_here(self) -> None:
        bar = progress(total=self.n, desc=self.desc)
        parts = []
        for c in self._chunks:
            parts.append(self._fn(*c))
            bar.update(len(c[0]))
        bar.close()
        self._parts = parts

    def cancel(self) -> None:
        """Drop the chunks no worker has started (a failed run does not wait for them at exit)."""
        for f in self._futures:
            f.cancel()

    def result(self) -> tuple[np.ndarray, ...]:
        """The joined outputs (waits for the workers; a worker's error is raised here)."""
        if self._parts is None and self._pool is None:
            self._run_here()
        if self._parts is None:
            bar = progress(total=self.n, desc=self.desc)
            try:
                parts = []
                for f, c in zip(self._futures, self._chunks):
                    parts.append(f.result())
                    bar.update(len(c[0]))
                self._parts = parts
            except BaseException:
                self.cancel()
                raise
            finally:
                bar.close()
        if not self._parts:
            raise ValueError(f"{self.desc}: no rows")
        return tuple(np.concatenate([p[k] for p in self._parts]) for k in range(len(self._parts[0])))


def map_rows(fn: ChunkFn, arrays: Sequence[np.ndarray], workers: int, desc: str) -> tuple[np.ndarray, ...]:
    """:class:`RowJob` run now: the joined outputs of ``fn`` over the row chunks of ``arrays``."""
    return RowJob(fn, arrays, workers, desc).result()


__all__ = ["CHUNK", "MIN_CHUNK", "RowJob", "chunk_rows", "map_rows", "processes_for", "shared_pool"]
