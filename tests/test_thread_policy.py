"""The import-time thread policy and allocator setting (causaldiff.threads), each case in a fresh
process: the policy acts when causaldiff is imported, and waits only before torch loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import causaldiff as cd
from causaldiff import threads

ROOT = Path(__file__).resolve().parents[1]
CONTROLLED = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "GLIBC_TUNABLES", "CAUSALDIFF_THREADS",
              "CAUSALDIFF_MALLOC", "CAUSALDIFF_FITTED_THREADS")
REPORT = ("import os, json, causaldiff as cd, torch; p = cd.threads.current_policy(); print(json.dumps(dict("
          "threads=torch.get_num_threads(), reason=p.threads_reason, wait=p.wait_policy, allocator=p.allocator, "
          "env=os.environ.get('OMP_WAIT_POLICY'), tunables=os.environ.get('GLIBC_TUNABLES'))))")


def fresh(code: str = REPORT, **env: str) -> dict:
    """``code`` in a new interpreter whose environment has none of the controlled variables but ``env``."""
    base = {k: v for k, v in os.environ.items() if k not in CONTROLLED}
    out = subprocess.run([sys.executable, "-c", code], env={**base, "PYTHONPATH": str(ROOT), **env}, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_default_import_fits_threads_to_the_free_cores_leaves_waits_and_keeps_memory():
    got = fresh()
    assert got["wait"] == "libgomp default" and got["env"] is None  # passive waits: 0.4x on an idle machine
    assert 1 <= got["threads"] <= len(os.sched_getaffinity(0)) and "cores free at import" in got["reason"]
    assert got["allocator"].startswith("glibc, mmap threshold") and f"mmap_threshold={threads.MMAP_THRESHOLD}" in got["tunables"]


@pytest.mark.parametrize("env, threads_, reason, wait", [
    ({"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "ACTIVE"}, 1, "OMP_NUM_THREADS (user)", "ACTIVE (user)"),
    ({"CAUSALDIFF_THREADS": "torch"}, None, "torch default", "libgomp default"),
    ({"CAUSALDIFF_THREADS": "1"}, 1, "CAUSALDIFF_THREADS (user)", "libgomp default"),
    ({"OMP_WAIT_POLICY": "PASSIVE"}, None, "torch default (passive waits)", "PASSIVE (user)"),
])
def test_what_the_user_set_is_kept(env, threads_, reason, wait):
    got = fresh(**env)
    assert got["threads"] == (threads_ or len(os.sched_getaffinity(0))) and got["reason"].startswith(reason)
    assert got["wait"].startswith(wait) and (got["env"] is None) == (wait == "libgomp default")


def test_torch_loaded_first_spins_so_threads_fit_the_free_cores():
    got = fresh("import torch; " + REPORT)
    assert 1 <= got["threads"] <= len(os.sched_getaffinity(0)) and "cores free at import" in got["reason"]
    assert got["wait"] == "libgomp default"


def test_before_torch_loads_the_count_waits_in_the_environment_for_it():
    got = fresh("import sys, os, json, causaldiff as cd; p = cd.threads.current_policy(); "
                "print(json.dumps(dict(torch='torch' in sys.modules, env=os.environ.get('OMP_NUM_THREADS'), threads=p.threads)))")
    assert got["torch"] is False and got["env"] == str(got["threads"])  # torch reads it when it loads (REPORT above)


def test_a_child_fits_its_own_count_not_its_parents():
    got = fresh(OMP_NUM_THREADS="1", CAUSALDIFF_FITTED_THREADS="1")  # what a fitted parent leaves to its children
    assert "cores free at import" in got["reason"]
    assert fresh(OMP_NUM_THREADS="1", CAUSALDIFF_FITTED_THREADS="2")["reason"] == "OMP_NUM_THREADS (user)"
    # a child asked for torch's default gets it, not the parent's fitted count
    got = fresh(OMP_NUM_THREADS="1", CAUSALDIFF_FITTED_THREADS="1", CAUSALDIFF_THREADS="torch")
    assert got["threads"] == len(os.sched_getaffinity(0)) and got["reason"].startswith("torch default")


def test_torch_loaded_first_keeps_its_thread_count_and_waits():
    got = fresh("import torch; torch.set_num_threads(1); " + REPORT)
    assert got["threads"] == 1 and got["reason"] == "torch.set_num_threads (user)"
    assert got["wait"] == "libgomp default" and got["env"] is None


def test_allocator_left_alone_when_asked_or_set_by_the_user():
    assert fresh(CAUSALDIFF_MALLOC="0")["allocator"] == "glibc default (CAUSALDIFF_MALLOC=0)"
    got = fresh(GLIBC_TUNABLES="glibc.malloc.trim_threshold=4096")
    assert got["allocator"] == "glibc with the user's settings" and got["tunables"] == "glibc.malloc.trim_threshold=4096"


def test_a_bad_thread_variable_fails_the_import_naming_it():
    out = subprocess.run([sys.executable, "-c", "import causaldiff"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "CAUSALDIFF_THREADS": "two"}, timeout=300)
    assert out.returncode != 0 and "CAUSALDIFF_THREADS='two'" in out.stderr


def test_set_threads_sets_torch_and_refuses_bad_counts():
    before = torch.get_num_threads()
    try:
        cd.set_threads(2)
        assert torch.get_num_threads() == 2 and threads.current_policy().threads == 2
        for bad in (0, -1, 1.5, True, "2"):
            with pytest.raises(ValueError, match="positive integer"):
                cd.set_threads(bad)
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_free_cores_is_within_the_machine():
    free = threads.free_cores(0.05)
    assert free is None or 0.0 <= free <= os.cpu_count()
