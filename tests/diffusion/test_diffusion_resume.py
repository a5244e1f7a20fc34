"""Kill -9 in the middle of training, resume from the last checkpoint, and end with exactly the
weights of an uninterrupted run (bit-identical on CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch

from causaldiff.diffusion.nets import MLPDenoiser
from causaldiff.diffusion.schedule import NoiseSchedule
from causaldiff.diffusion.train import train_denoiser
from causaldiff.training import TrainConfig, load_checkpoint

STEPS, EVERY = 200, 20

SCRIPT = textwrap.dedent("""
    import sys, time, torch
    from causaldiff.diffusion.nets import MLPDenoiser
    from causaldiff.diffusion.schedule import NoiseSchedule
    from causaldiff.diffusion.train import train_denoiser
    from causaldiff.training import TrainConfig
    from causaldiff.progress import set_progress
    set_progress(False)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(5))
    net = MLPDenoiser((2,), 0, hidden=32, num_layers=2, num_train_timesteps=100)
    cfg = TrainConfig(steps={steps}, batch_size=32, checkpoint_every={every}, checkpoint_dir=sys.argv[1])
    # slow each step down so that the parent can kill us mid-run
    train_denoiser(net, x, NoiseSchedule(kind="linear", num_train_timesteps=100, beta_end=0.1), cfg,
                   callback=lambda step, model: time.sleep(0.01))
""").format(steps=STEPS, every=EVERY)


def _setup():
    torch.manual_seed(0)
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(5))
    net = MLPDenoiser((2,), 0, hidden=32, num_layers=2, num_train_timesteps=100)
    return x, net, NoiseSchedule(kind="linear", num_train_timesteps=100, beta_end=0.1)


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    ck = tmp_path / "ck"
    env = dict(os.environ, CAUSALDIFF_PROGRESS="0")
    root = Path(__file__).resolve().parents[2]
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(ck)], cwd=root, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        # meanwhile (the child spends seconds importing torch), the uninterrupted reference run
        x, net, sched = _setup()
        full = train_denoiser(net, x, sched, TrainConfig(steps=STEPS, batch_size=32))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if (ck / "checkpoint.pt").exists():
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"trainer ended before it could be killed: {log.read_text()!r}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    killed_at = int(load_checkpoint(ck)["step"])
    assert EVERY <= killed_at < STEPS and killed_at % EVERY == 0

    x, net, sched = _setup()
    cfg = TrainConfig(steps=STEPS, batch_size=32, checkpoint_every=EVERY, checkpoint_dir=str(ck))
    resumed = train_denoiser(net, x, sched, cfg)
    assert resumed.resumed_from == killed_at and resumed.steps == STEPS

    for (k, a), b in zip(full.ema.state_dict().items(), resumed.ema.state_dict().values()):
        assert torch.equal(a, b), k
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
