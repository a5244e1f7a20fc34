"""``causaldiff demo``: says what it will do and how long first, checkpoints, ends cleanly on Ctrl-C
and continues from its checkpoint to the very results of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from causaldiff.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _interrupt_once_checkpointed(out: Path) -> subprocess.CompletedProcess:
    """``causaldiff demo --quick`` in a child process, sent SIGINT (Ctrl-C) as soon as its first
    training checkpoint exists."""
    # the child trains with this process's thread count (the resumed run continues here): a
    # different count sums in another order, and the figures would differ in their last digits
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CAUSALDIFF_PROGRESS": "0",
           "CAUSALDIFF_THREADS": str(torch.get_num_threads())}
    # SIGINT back to its default in the child: a test run started in the background by a shell
    # without job control inherits it ignored, and Python then installs no KeyboardInterrupt
    child = subprocess.Popen([sys.executable, "-m", "causaldiff", "demo", "--quick", "--out", str(out)],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    checkpoint = out / "checkpoint-seed0-quick" / "checkpoint.pt"
    while child.poll() is None and not checkpoint.exists():
        time.sleep(0.02)
    child.send_signal(signal.SIGINT)
    stdout, stderr = child.communicate(timeout=300)
    return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)


def test_demo_interrupted_says_so_keeps_its_checkpoint_and_resumes_to_the_same_results(tmp_path, capsys):
    stopped = _interrupt_once_checkpointed(tmp_path / "stopped")
    assert stopped.returncode == 130, stopped.stderr
    assert "Traceback" not in stopped.stderr and "causaldiff demo: interrupted" in stopped.stderr
    assert "run the same command to continue" in stopped.stderr  # interrupted in training, as intended
    assert "1. train a conditional diffusion UNet" in stopped.stdout and "estimated: training ~" in stopped.stdout
    assert (tmp_path / "stopped" / "checkpoint-seed0-quick" / "checkpoint.pt").is_file()
    assert not (tmp_path / "stopped" / "metrics.json").exists()

    assert main(["demo", "--quick", "--out", str(tmp_path / "stopped")]) == 0
    assert "resuming at step" in capsys.readouterr().out
    assert main(["demo", "--quick", "--out", str(tmp_path / "whole")]) == 0
    out = capsys.readouterr().out  # the orientation error beside effectiveness, explained
    assert "orientation error" in out and "what a model that loses the rotation scores" in out
    resumed, whole = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("stopped", "whole"))
    assert resumed["resumed_from_step"] > 0 and whole["resumed_from_step"] == 0
    strip = lambda m: {q: {k: v for k, v in r.items() if k != "seconds"} for q, r in m["queries"].items()}  # noqa: E731
    assert strip(resumed) == strip(whole)  # bit-identical figures
    for q in whole["queries"].values():
        assert 0 <= q["orientation_error_deg"] <= 45 and 5 < q["orientation_error_unrotated_deg"] < 10
