"""Diff-SCM on MNIST (BENCHMARKS.md section 1; Sanchez & Tsaftaris, CLeaR 2022), through causaldiff.

Graph ``digit -> image``. ``digit`` is a learned categorical root; ``image`` is a
:class:`~causaldiff.DiffusionMechanism` with anti-causal guidance: an unconditional UNet denoiser
plus a time-conditioned classifier of the digit from the noised image ``x_t``. Counterfactuals
``do(digit = k)`` of MNIST test images (``k`` != the factual class, drawn uniformly) follow
Diff-SCM's Algorithm 1: unguided deterministic DDIM inversion over the first
``abduction_fraction`` of a ``K``-step trajectory, then DDIM generation guided by
``s * grad_x log p_phi(k | x_t, t)``.

The script trains, in order: the denoiser, the noisy classifier (both by ``scm.fit``), the
independent effectiveness classifier, the per-class and global autoencoders (IM1/IM2) and the
VAE (CLD); then, on ``n_test`` test images and for each abduction fraction (0.75, Diff-SCM's later
revision, and 1, the whole trajectory), abducts once and scores

* for every guidance scale ``s`` of the sweep (Diff-SCM's 0, 0.3, 0.7, 1, 2, 3, extended by 5 and
  10): CLD, IM1, IM2, effectiveness, minimality (L1);
* at the main (fraction, scale): also composition (L1 after 1 and 10 null-intervention cycles, on
  ``n_composition`` images) and reversibility (L1 after ``do(k)`` then back to the factual
  digit). The main pair follows a rule fixed before any run (``choose_main``): the lowest CLD
  among the pairs whose effectiveness reaches 0.9, else the most effective pair; ``--scale S``
  fixes the scale (with the first fraction) instead;

and writes ``mnist_diffscm_<setting>.{json,md}``, a grid (factual row, one row per target digit)
and the sweep plot (CLD / IM1 / IM2 / effectiveness against ``s``, like Diff-SCM's figure) into
``--out`` (default ``benchmarks/results``). ``--save DIR`` keeps the fitted SCM, ``--load DIR``
evaluates a saved one without training.

This script parses the command line; the pipeline is ``benchmarks.mnist.run.run_mnist``
over ``causaldiff.evaluation.axioms`` and the settings live in ``benchmarks.mnist.settings``.

Settings:

* ``gpu``: the reference architecture (64-channel UNet (1, 2, 4), one residual block per level,
  mid-block attention, cosine T = 1000, AdamW wd 0.01, batch 256, bf16 autocast) with training
  budgeted in seconds so that the whole run fits 9 minutes on one H100: the number of steps is
  set from a short timed probe of the same training loop (recorded in the results);
* ``cpu``: a clearly smaller setting for a 2-core machine (~15 minutes): 16-channel UNet,
  700 steps, 50 DDIM steps, 100 test images. Not comparable with the paper;
* ``quick``: seconds, for CI (``benchmarks/mnist/test_mnist.py``).

Usage::

    python -m benchmarks.mnist --setting gpu --data shared/data/mnist
    OMP_NUM_THREADS=1 python -m benchmarks.mnist --setting cpu --threads 1
    python -m benchmarks.mnist --setting quick --out /tmp/q
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script (python benchmarks/mnist): the checkout on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.common.choose import EFFECTIVE  # noqa: E402
from benchmarks.mnist import run as mnist  # noqa: E402
from benchmarks.mnist import settings as mnist_settings  # noqa: E402
from causaldiff import set_progress  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Diff-SCM counterfactuals on MNIST (BENCHMARKS.md section 1).")
    p.add_argument("--setting", choices=sorted(mnist_settings.SETTINGS), default="cpu")
    p.add_argument("--data", default=None, help="folder with the MNIST IDX files (default: the loader's search: "
                   "CAUSALDIFF_MNIST_DIR, ../shared/data/mnist, ...)")
    p.add_argument("--out", default=str(RESULTS_DIR), help="where the JSON, markdown and PNGs go")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--scale", default=None, help="main guidance scale s (with the first abduction fraction), or "
                   f"'auto' (default): among the swept pairs with effectiveness >= {EFFECTIVE} the lowest CLD, "
                   "else the most effective")
    p.add_argument("--scales", default=None, help="comma-separated sweep scales (default: 0,0.3,0.7,1,2,3,5,10)")
    p.add_argument("--abduction-fractions", default=None,
                   help="comma-separated shares of the DDIM trajectory abducted (default: 0.75,1; Diff-SCM's "
                   "later revision: 0.75)")
    p.add_argument("--ddim-steps", type=int, default=None, help="K DDIM steps (default: the setting's)")
    p.add_argument("--n-test", type=int, default=None, help="test images scored (default: the setting's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--save", default=None, help="save the fitted SCM to this folder (cd.load reads it)")
    p.add_argument("--load", default=None, help="evaluate a saved SCM (from --save) instead of training one")
    p.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # the setting's pipeline, tiny counts
    args = p.parse_args(argv)
    if args.scales is not None:
        try:
            args.scales = tuple(float(s) for s in args.scales.split(",") if s.strip())
        except ValueError:
            p.error(f"--scales expects comma-separated numbers, got {args.scales!r}")
        if not args.scales or any(s < 0 for s in args.scales):
            p.error("--scales expects non-negative numbers")
    if args.scale is not None:
        if args.scale == "auto":
            args.scale = None
        else:
            try:
                args.scale = float(args.scale)
            except ValueError:
                p.error(f"--scale expects a number or 'auto', got {args.scale!r}")
            if args.scale < 0:
                p.error("--scale must be non-negative")
    if args.save and args.load:
        p.error("--save and --load exclude each other")
    if args.abduction_fractions is not None:
        try:
            args.abduction_fractions = tuple(float(f) for f in args.abduction_fractions.split(",") if f.strip())
        except ValueError:
            p.error(f"--abduction-fractions expects comma-separated numbers, got {args.abduction_fractions!r}")
        if not args.abduction_fractions or any(not 0 < f <= 1 for f in args.abduction_fractions):
            p.error("--abduction-fractions must lie in (0, 1]")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.no_progress:
        set_progress(False)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.setting == "gpu" and device.type != "cuda" and not args.smoke:
        sys.exit("mnist_diffscm: the gpu setting needs a CUDA device (use --setting cpu here)")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls and convolutions at inference
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    setting = mnist_settings.SETTINGS[args.setting]
    if args.smoke:
        setting = mnist_settings.smoke(setting)
    updates = {k: v for k, v in (("ddim_steps", args.ddim_steps), ("n_test", args.n_test)) if v is not None}
    if updates:
        setting = mnist_settings.Setting.model_validate({**setting.model_dump(), **updates})
    name = args.setting + ("_smoke" if args.smoke else "")
    command = shlex.join(["python", *(sys.argv if argv is None else ["-m", "benchmarks.mnist", *argv])])
    return mnist.run_mnist(setting, name, data=args.data, out=Path(args.out), device=device,
               scale=setting.scale if args.scale is None else args.scale,
               save=Path(args.save) if args.save else None, load=Path(args.load) if args.load else None,
               scales=setting.scales if args.scales is None else args.scales,
               fractions=setting.abduction_fractions if args.abduction_fractions is None
               else args.abduction_fractions, seed=args.seed, command=command)


if __name__ == "__main__":
    main()
