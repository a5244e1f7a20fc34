"""Morpho-MNIST benchmark (BENCHMARKS.md section 4): causaldiff beside VAE / HVAE / GAN.

The protocol is :mod:`causaldiff.evaluation.morphomnist`, the run :mod:`causaldiff.evaluation.morphomnist_run`.

Usage::

    export CAUSALDIFF_MNIST_DIR=../shared/data/mnist
    python benchmarks/morphomnist.py --setting quick       # seconds: the CI setting (not saved)
    python benchmarks/morphomnist.py --setting cpu         # a small UNet and DiT on 2 cores (not comparable)
    python benchmarks/morphomnist.py --setting gpu --device cuda   # the full protocol on the 10k test split
    python benchmarks/morphomnist.py --setting generator   # the generator's acceptance figures
    python benchmarks/morphomnist.py --setting gpu --plan  # the gpu setting timed as far as the CPU allows
    python benchmarks/morphomnist.py --setting gpu --smoke --device cuda  # its pipeline, tiny counts
"""

from __future__ import annotations

import time

START = time.perf_counter()  # the run's wall clock starts before the imports (torch takes seconds)

import argparse  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from causaldiff.datasets import MorphoMNIST  # noqa: E402
from causaldiff.evaluation import report, save_grid  # noqa: E402
from causaldiff.evaluation.morphomnist import generator_statistics  # noqa: E402
from causaldiff.evaluation.morphomnist_plan import plan  # noqa: E402
from causaldiff.evaluation.morphomnist_report import markdown, plan_markdown, plot_effectiveness  # noqa: E402
from causaldiff.evaluation.morphomnist_run import SETTINGS, run, sweep_lines  # noqa: E402
from causaldiff.evaluation.morphomnist_settings import smoke  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: the recorded GPU run whose unit costs the plan projects from (same code, one NVIDIA H200)
REFERENCE = RESULTS_DIR / "mnist_diffscm_gpu.json"
NOTES = {"quick": "CI setting: tiny models, not comparable.",
         "cpu": "Small models on 2 CPU cores, a 3k-image subset: NOT comparable with the paper's rows.",
         "gpu": "The full protocol on the 10k test split, training included, within 6 minutes."}


def generator(args: argparse.Namespace) -> dict:
    timer = report.Timer()
    with timer("generator"):
        figures = generator_statistics(MorphoMNIST(workers=1))
    results = {"setting": "generator", "figures": figures, "seconds": timer.seconds,
               "environment": report.environment("cpu"), "command": args.command}
    text = f"# Morpho-MNIST generator\n\n`{args.command}`\n\n```json\n{json.dumps(results, indent=2)}\n```\n"
    report.write_results(args.out, "morphomnist_generator", results, text)
    return results


def timing(args: argparse.Namespace) -> dict:
    setting, timer = SETTINGS[args.setting], report.Timer()
    # loading the cached splits, timed on the cpu setting's (cached) subset and scaled by the rows
    small = SETTINGS["cpu"]
    ds = MorphoMNIST(subset=small.subset, workers=small.workers, cache_dir=args.cache_dir)
    ds.generated("train"), ds.generated("test")  # rendered once if not cached: not timed
    with timer("data"):
        ds.load("train", small.n_train, args.seed), ds.load("test", small.n_test, args.seed)
    data_s = timer.seconds["data"] * (setting.n_train + setting.n_test) / (small.n_train + small.n_test)
    with timer("plan"):
        p = plan(setting, json.loads(REFERENCE.read_text()), ds.handwriting("test")[0][:32], data_s=data_s)
    results = {"setting": args.setting, "settings": setting.model_dump(mode="json"), "plan": p,
               "seconds": timer.seconds, "command": args.command, "environment": report.environment("cpu")}
    report.write_results(args.out, f"morphomnist_{args.setting}_plan", results, plan_markdown(results))
    print(plan_markdown(results))
    return results


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setting", choices=[*SETTINGS, "generator"], default="quick")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help=f"results folder (default {RESULTS_DIR}; quick: not saved)")
    p.add_argument("--cache-dir", default=None, help="rendered-split cache (default ~/.cache/causaldiff/morphomnist)")
    p.add_argument("--plan", action="store_true", help="time the setting as far as this CPU allows (no run)")
    p.add_argument("--smoke", action="store_true", help="the setting's pipeline with tiny counts (not saved)")
    args = p.parse_args(argv)
    t0 = START if argv is None else time.perf_counter()  # as a script: the imports included
    args.command = " ".join(["python", *map(shlex.quote, sys.argv if argv is None else ["benchmarks/morphomnist.py", *argv])])
    save = (args.setting != "quick" and not args.smoke) or args.out is not None
    args.out = args.out or RESULTS_DIR
    if args.setting == "generator":
        return generator(args)
    if args.plan:
        return timing(args)
    setting, timer = SETTINGS[args.setting], report.Timer(args.device)
    setting = smoke(setting) if args.smoke else setting
    out = run(setting, seed=args.seed, device=args.device, timer=timer, cache_dir=args.cache_dir)
    total, lines = time.perf_counter() - t0, sweep_lines(out["sweeps"])  # wall clock
    results = {"setting": args.setting, "note": NOTES[args.setting], "settings": setting.model_dump(mode="json"),
               "scores": out["scores"], "sweeps": {k: {str(s): v for s, v in sw.items()} for k, sw in lines.items()},
               "main": out["main"], "budgets": out["budgets"], "seconds": timer.seconds, "total_s": total,
               "within_time_limit": None if setting.time_limit_s is None else total <= setting.time_limit_s,
               "command": args.command, "environment": report.environment(args.device)}
    stem = f"morphomnist_{args.setting}" + ("_smoke" if args.smoke else "")
    if save:
        rows, labels = out["grid"]
        results["grid"] = save_grid(rows, labels, args.out / f"{stem}_grid.png", title=f"Morpho-MNIST ({args.setting})").name
        results["plot"] = plot_effectiveness(lines, args.out / f"{stem}_sweep.png").name
        report.write_results(args.out, stem, results, markdown(results))
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
