"""CPU threads and memory on a shared machine: the policy applied when causaldiff is imported.

Measured on 2 cores (``benchmarks/threads``, ``results/threads_cpu.md``): torch's OpenMP threads
spin-wait between parallel regions (libgomp's default), so when other jobs hold the cores every
region waits for a descheduled thread, and 2 threads ran 3-4x slower than 1 beside 2 CPU-bound
processes. Passive waits (``OMP_WAIT_POLICY=PASSIVE``) cure that but cost every parallel region a
wake-up: with torch's 2 threads they ran at 0.40-0.47x of torch's default on an idle machine. At
import, causaldiff therefore

* runs as many torch threads as the cores free right now (:func:`free_cores`), never more than
  torch's own default (:func:`fit_threads`), waits left as libgomp sets them;
* keeps freed memory in the process instead of returning it to the kernel, where glibc gives
  activations back and faults them in again on every call (:func:`keep_memory`).

Nothing the user chose is overridden: a set ``OMP_WAIT_POLICY``, ``OMP_NUM_THREADS`` or
``MKL_NUM_THREADS``, a thread count already changed with ``torch.set_num_threads``, glibc malloc
settings in ``GLIBC_TUNABLES`` or ``MALLOC_*_`` variables, or another allocator preloaded.
``CAUSALDIFF_THREADS=torch`` leaves threads and waits as torch sets them, ``CAUSALDIFF_THREADS=N``
uses N threads, ``CAUSALDIFF_MALLOC=0`` leaves the allocator alone; :func:`set_threads` (also
``causaldiff --threads N``) sets the count later. A machine that gets busy after the import keeps
the count fitted then: pass ``--threads 1`` (or ``cd.set_threads(1)``) there.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import time
from dataclasses import dataclass, replace

THREADS_ENV = "CAUSALDIFF_THREADS"
#: the thread count causaldiff put in ``OMP_NUM_THREADS`` before torch loaded
FITTED_ENV = "CAUSALDIFF_FITTED_THREADS"
MALLOC_ENV = "CAUSALDIFF_MALLOC"
#: glibc's largest mmap threshold on 64-bit (32 MiB: DEFAULT_MMAP_THRESHOLD_MAX), and a trim
#: threshold that keeps up to 1 GiB of freed heap in the process
MMAP_THRESHOLD = 32 * 2 ** 20
TRIM_THRESHOLD = 2 ** 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_USER_THREADS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
_USER_MALLOC = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX")


@dataclass(frozen=True)
class Policy:
    """What the import did (recorded by the benchmarks): torch's thread count, the OpenMP wait
    policy and the allocator, each with why."""

    threads: int | None = None
    threads_reason: str = "not applied"
    wait_policy: str = "not applied"
    allocator: str = "not applied"


_policy = Policy()


def current_policy() -> Policy:
    """The policy in force (updated by :func:`set_threads`)."""
    return _policy


def wait_policy() -> str:
    """The OpenMP wait policy in force and why (causaldiff never sets it: passive waits cost an idle
    machine more than half its speed, see the module docstring)."""
    if "OMP_WAIT_POLICY" in os.environ:
        return f"{os.environ['OMP_WAIT_POLICY']} (user)"
    return "libgomp default"


def free_cores(window_s: float = 0.05) -> float | None:
    """Cores idle over the next ``window_s`` seconds (``/proc/stat``), or None where unreadable."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields[:8])  # idle + iowait, all but guest time

    try:
        idle0, total0 = sample()
        time.sleep(window_s)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (idle1 - idle0) / (total1 - total0) * (os.cpu_count() or 1)


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def fit_threads(window_s: float = 0.1, passive: bool = False) -> tuple[int, str]:
    """Set torch's thread count to the cores free now (at least 1, at most torch's default) unless
    the user chose it or the waits are ``passive`` (torch's count kept); returns it and why. Before
    torch loads, the count goes to ``OMP_NUM_THREADS`` (marked as causaldiff's in
    :data:`FITTED_ENV`, so that a child process fits its own), which torch reads when it loads:
    ``import causaldiff`` does not load torch."""
    torch = sys.modules.get("torch")
    default = _available_cpus()

    def use(n: int) -> None:
        if torch is not None:
            torch.set_num_threads(n)
        else:
            os.environ["OMP_NUM_THREADS"] = os.environ[FITTED_ENV] = str(n)

    if os.environ.get(FITTED_ENV) is not None and os.environ.get(FITTED_ENV) == os.environ.get("OMP_NUM_THREADS"):
        del os.environ["OMP_NUM_THREADS"]  # a parent's fitted count, not the user's: this process chooses its own
    choice = os.environ.get(THREADS_ENV, "").strip().lower()
    if choice == "torch":
        return (torch.get_num_threads() if torch is not None else default), f"torch default ({THREADS_ENV}=torch)"
    if choice:
        if not choice.isdigit() or int(choice) < 1:
            raise ValueError(f"{THREADS_ENV}={os.environ[THREADS_ENV]!r}: expected 'torch' or a positive integer")
        use(int(choice))
        return int(choice), f"{THREADS_ENV} (user)"
    user = [v for v in _USER_THREADS if v in os.environ]
    if user or (torch is not None and torch.get_num_threads() != default):
        reason = f"{user[0] if user else 'torch.set_num_threads'} (user)"
        if torch is not None:
            return torch.get_num_threads(), reason
        value = os.environ[user[0]].strip()  # what torch will read when it loads
        return (int(value) if value.isdigit() else default), reason
    if passive:
        return default, "torch default (passive waits)"
    free = free_cores(window_s)
    if free is None:
        return default, "torch default (free cores unknown)"
    n = max(1, min(default, int(free + 0.5)))
    use(n)
    return n, f"{free:.1f} of {default} cores free at import"


def keep_memory() -> str:
    """Raise glibc's mmap and trim thresholds (``mallopt``; ``GLIBC_TUNABLES`` for child processes)
    so freed tensors stay in the process; returns the allocator in force."""
    if os.environ.get(MALLOC_ENV, "1").strip().lower() in ("0", "no", "off", "false"):
        return f"glibc default ({MALLOC_ENV}=0)"
    if platform.libc_ver()[0] != "glibc":
        return "system default (not glibc)"
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc" in tunables or any(v in os.environ for v in _USER_MALLOC):
        return "glibc with the user's settings"
    if "malloc" in os.environ.get("LD_PRELOAD", ""):
        return f"preloaded ({os.environ['LD_PRELOAD']})"
    libc = ctypes.CDLL(None)
    if libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 or libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return "glibc default (mallopt refused)"
    ours = f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD}:glibc.malloc.trim_threshold={TRIM_THRESHOLD}"
    os.environ["GLIBC_TUNABLES"] = f"{tunables}:{ours}" if tunables else ours
    return f"glibc, mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold {TRIM_THRESHOLD >> 20} MiB"


def apply_policy() -> Policy:
    """The import-time policy: threads fitting the free cores (the user's choice kept), memory kept."""
    global _policy
    wait = wait_policy()
    threads, why = fit_threads(passive=wait.startswith("PASSIVE"))
    _policy = Policy(threads, why, wait, keep_memory())
    return _policy


def set_threads(n: int) -> None:
    """Run torch on ``n`` threads from now on (``causaldiff --threads N``)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_threads: the thread count must be a positive integer, got {n!r}")
    import torch

    global _policy
    torch.set_num_threads(n)
    _policy = replace(_policy, threads=n, threads_reason="set_threads (user)")


__all__ = ["Policy", "THREADS_ENV", "FITTED_ENV", "MALLOC_ENV", "apply_policy", "current_policy", "set_threads", "fit_threads",
           "free_cores", "keep_memory", "wait_policy"]
