"""Measuring processes and the machine's load, shared by ``benchmarks/throughput`` and
``benchmarks/threads``.

Wait policy and allocator are fixed when a process loads torch, so each setting runs in its own
process, started from the caller's environment less the variables the settings control.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from causaldiff.threads import free_cores

ROOT = Path(__file__).resolve().parents[2]
#: what the settings control: removed from the caller's environment before each setting's own
CONTROLLED = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "GOMP_SPINCOUNT", "GLIBC_TUNABLES",
              "CAUSALDIFF_THREADS", "CAUSALDIFF_MALLOC")


def environment(settings: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CONTROLLED}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["CAUSALDIFF_PROGRESS"] = "0"
    return {**env, **settings}


def load() -> dict[str, float]:
    """The 1-minute load average and the cores busy right now (0.2 s of ``/proc/stat``), taken
    while this benchmark's own processes wait."""
    free = free_cores(0.2)
    return {"loadavg_1min": os.getloadavg()[0],
            "busy_cores": None if free is None else round((os.cpu_count() or 1) - free, 2)}


class Worker:
    """A ``python -m MODULE`` process speaking one JSON line per request and answer."""

    def __init__(self, module: str, settings: dict[str, str], args: tuple[str, ...] = ()) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=environment(settings),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.hello = self.answer()

    def answer(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark worker {self.proc.args} exited with status {self.proc.wait()}")
        return json.loads(line)

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self.answer()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.proc.stdout.close()
