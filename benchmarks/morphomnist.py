"""Morpho-MNIST benchmark (BENCHMARKS.md section 4): causaldiff beside VAE / HVAE / GAN.

The protocol is :mod:`causaldiff.evaluation.morphomnist`, the run :mod:`causaldiff.evaluation.morphomnist_run`.

Usage::

    export CAUSALDIFF_MNIST_DIR=../shared/data/mnist
    python benchmarks/morphomnist.py --setting quick       # seconds: the CI setting (not saved)
    python benchmarks/morphomnist.py --setting cpu         # a small UNet and DiT on 2 cores (not comparable)
    python benchmarks/morphomnist.py --setting gpu --device cuda   # the full protocol on the 10k test split
    python benchmarks/morphomnist.py --setting generator   # the generator's acceptance figures
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from causaldiff.datasets import MorphoMNIST
from causaldiff.evaluation import report, save_grid
from causaldiff.evaluation.morphomnist import generator_statistics
from causaldiff.evaluation.morphomnist_report import markdown, plot_effectiveness
from causaldiff.evaluation.morphomnist_run import SETTINGS, run, sweep

RESULTS_DIR = Path(__file__).resolve().parent / "results"
NOTES = {"quick": "CI setting: tiny models, not comparable.",
         "cpu": "Small models on 2 CPU cores, a 3k-image subset: NOT comparable with the paper's rows.",
         "gpu": "The full protocol on the 10k test split."}


def generator(args: argparse.Namespace) -> dict:
    timer = report.Timer()
    with timer("generator"):
        figures = generator_statistics(MorphoMNIST(workers=1))
    results = {"setting": "generator", "figures": figures, "seconds": timer.seconds,
               "environment": report.environment("cpu"), "command": args.command}
    text = f"# Morpho-MNIST generator\n\n`{args.command}`\n\n```json\n{json.dumps(results, indent=2)}\n```\n"
    report.write_results(args.out, "morphomnist_generator", results, text)
    return results


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setting", choices=[*SETTINGS, "generator"], default="quick")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help=f"results folder (default {RESULTS_DIR}; quick: not saved)")
    p.add_argument("--cache-dir", default=None, help="rendered-split cache (default ~/.cache/causaldiff/morphomnist)")
    args = p.parse_args(argv)
    args.command = " ".join(["python", *map(shlex.quote, sys.argv if argv is None else ["benchmarks/morphomnist.py", *argv])])
    save = args.setting != "quick" or args.out is not None
    args.out = args.out or RESULTS_DIR
    if args.setting == "generator":
        return generator(args)
    setting, timer = SETTINGS[args.setting], report.Timer(args.device)
    out = run(setting, seed=args.seed, device=args.device, timer=timer, cache_dir=args.cache_dir)
    results = {"setting": args.setting, "note": NOTES[args.setting], "settings": setting.model_dump(mode="json"),
               "scores": out["scores"], "seconds": timer.seconds, "command": args.command,
               "environment": report.environment(args.device)}
    stem = f"morphomnist_{args.setting}"
    if save:
        rows, labels = out["grid"]
        results["grid"] = save_grid(rows, labels, args.out / f"{stem}_grid.png", title=f"Morpho-MNIST ({args.setting})").name
        results["plot"] = plot_effectiveness(sweep(out["scores"], setting), args.out / f"{stem}_sweep.png").name
        report.write_results(args.out, stem, results, markdown(results))
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
