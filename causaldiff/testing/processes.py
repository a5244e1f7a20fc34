"""Run a function on several local processes joined by torch.distributed (gloo), as ``torchrun``
would start them, with a hard timeout: for tests and benchmarks of distributed code on one machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torch.multiprocessing as mp


class ProcessesFailed(RuntimeError):
    """Some rank exited with an error, was killed, or the run passed its timeout."""


def free_port() -> int:
    """A TCP port free on localhost now (bound to port 0 and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_env(rank: int, world_size: int, port: int) -> dict[str, str]:
    """The variables torchrun sets for rank ``rank`` of ``world_size`` on this machine."""
    return {"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def _worker(fn: Callable[..., Any], rank: int, out: str, args: tuple) -> None:
    torch.set_num_threads(1)
    try:
        result = fn(*args)
    except BaseException:
        Path(out, f"{rank}.err").write_text(traceback.format_exc())
        os._exit(1)
    torch.save(result, Path(out, f"{rank}.pt"))


def _wait(procs: Sequence[Any], timeout: float, grace: float) -> bool:
    """Wait for every process; once one fails, the others get ``grace`` seconds. True if all ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(p.exitcode is not None for p in procs):
            return True
        if any(p.exitcode not in (None, 0) for p in procs):
            deadline = min(deadline, time.monotonic() + grace)
        time.sleep(0.05)
    return all(p.exitcode is not None for p in procs)


def run_distributed(fn: Callable[..., Any], world_size: int, *args: Any, timeout: float = 120.0,
                    grace: float = 30.0, env: Mapping[str, str] | None = None) -> list[Any]:
    """``[fn(*args) on rank r for r in range(world_size)]``, each rank a fresh (spawned) process with
    torchrun's environment and ``env`` (``fn``: a module-level function; it joins the group itself, e.g. with
    :func:`causaldiff.distributed.launch`). Raises :class:`ProcessesFailed` with every failed rank's
    traceback when one fails, or when the run is not over after ``timeout`` seconds (the processes
    are killed), or ``grace`` seconds after a rank failed."""
    ctx = mp.get_context("spawn")
    port = free_port()
    with tempfile.TemporaryDirectory() as out:
        procs = [ctx.Process(target=_worker, args=(fn, r, out, args)) for r in range(world_size)]
        for r, p in enumerate(procs):
            with mock.patch.dict(os.environ, {**torchrun_env(r, world_size, port), **(env or {})}):
                p.start()  # the rank's environment from its first line on
        ended = _wait(procs, timeout, grace)
        for p in procs:
            if p.exitcode is None:
                p.kill()
            p.join()
        errors = {r: Path(out, f"{r}.err").read_text() for r in range(world_size) if Path(out, f"{r}.err").exists()}
        codes = [p.exitcode for p in procs]
        if not ended or errors or any(codes):
            what = "timed out" if not ended else "failed"
            detail = "\n".join(f"--- rank {r}:\n{e}" for r, e in errors.items())
            raise ProcessesFailed(f"{world_size} processes {what} (exit codes {codes})\n{detail}")
        return [torch.load(Path(out, f"{r}.pt"), weights_only=False) for r in range(world_size)]


def run_torchrun(args: Sequence[str], nproc: int, *, timeout: float = 300.0,
                 env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None
                 ) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node nproc --master-port <free> ARGS`` on this machine (this Python's
    ``torch.distributed.run``), killed with its workers (one process group) after ``timeout`` s."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                            env={**os.environ, **(env or {})}, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise ProcessesFailed(f"{' '.join(cmd)} timed out after {timeout} s\n{out}\n{err}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


__all__ = ["run_distributed", "run_torchrun", "free_port", "torchrun_env", "ProcessesFailed"]
