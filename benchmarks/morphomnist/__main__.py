"""Morpho-MNIST benchmark (BENCHMARKS.md section 4): causaldiff beside VAE / HVAE / GAN.

This folder reads top to bottom: ``legacy_resize`` and ``legacy_morpho`` (the image operations, as
the published files were made), ``published`` (those files), ``render_split`` (the rendered train
split's chunk cache), ``parallel`` (worker processes), ``dataset`` (the data set ``morphomnist``,
registered on import), ``scaling``, ``draws``, ``predictors`` and ``effectiveness`` (the
benchmark's own scoring), ``protocol``, ``settings``, ``run``, ``report``.

Usage::

    export CAUSALDIFF_MNIST_DIR=../shared/data/mnist CAUSALDIFF_MORPHO_DIR=../shared/data/morphomnist-deepscm
    python -m benchmarks.morphomnist --setting quick       # seconds: the CI setting (not saved)
    python -m benchmarks.morphomnist --setting cpu         # a small UNet and DiT on 2 cores (not comparable)
    python -m benchmarks.morphomnist --setting cpu_long --checkpoint-dir ckpt --save models   # the comparable CPU row
    python -m benchmarks.morphomnist --setting gpu --device cuda   # the full protocol on the 10k test split
    python -m benchmarks.morphomnist --setting cpu --save models/morphomnist   # keep the fitted SCMs
    python -m benchmarks.morphomnist --setting cpu --evaluate models/morphomnist   # re-score them, no training
    python -m benchmarks.morphomnist --setting generator   # the generator's acceptance figures
    python -m benchmarks.morphomnist --setting gpu --smoke --device cuda  # its pipeline, tiny counts
"""

from __future__ import annotations

import time

START = time.perf_counter()  # the run's wall clock starts before the imports (torch takes seconds)

import argparse  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

if __package__ in (None, ""):  # run as a script (python benchmarks/morphomnist): the checkout on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.morphomnist.dataset import MorphoMNIST  # noqa: E402
from benchmarks.morphomnist.protocol import generator_statistics  # noqa: E402
from benchmarks.morphomnist.report import markdown, plot_effectiveness, summary  # noqa: E402
from benchmarks.morphomnist.run import SETTINGS, run, sweep_lines  # noqa: E402
from benchmarks.morphomnist.settings import smoke  # noqa: E402
from causaldiff.evaluation import report, save_grid  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
NOTES = {"quick": "CI setting: tiny models, not comparable.",
         "cpu": "Small models on 2 CPU cores, a 3k-image subset: NOT comparable with the paper's rows.",
         "cpu_full": "One CPU core: a 16-channel UNet on 12k rendered training images, every effectiveness column on "
                     "all 10k published test rows (composition and the true counterfactuals on the first 500).",
         "cpu_long": "Two CPU cores: cpu_full's 16-channel UNet trained twice as long (9,000 steps of 64) on 12k rendered "
                     "training images, every effectiveness column on all 10k published test rows (composition and the "
                     "true counterfactuals on the first 500).",
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


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setting", choices=[*SETTINGS, "generator"], default="quick")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help=f"results folder (default {RESULTS_DIR}; quick: not saved)")
    p.add_argument("--cache-dir", default=None, help="rendered-split cache (default ~/.cache/causaldiff/morphomnist)")
    p.add_argument("--smoke", action="store_true", help="the setting's pipeline with tiny counts (not saved)")
    p.add_argument("--checkpoint-dir", default=None,
                   help="the denoisers' training checkpoints (a killed run resumes from them)")
    p.add_argument("--save", default=None, help="save the fitted SCMs (safetensors) under SAVE/NET")
    p.add_argument("--evaluate", default=None, metavar="PATH",
                   help="re-score the SCMs saved under PATH/NET (--save) without training")
    args = p.parse_args(argv)
    t0 = START if argv is None else time.perf_counter()  # as a script: the imports included
    args.command = " ".join(["python", *map(shlex.quote, sys.argv if argv is None else ["-m", "benchmarks.morphomnist", *argv])])
    save = (args.setting != "quick" and not args.smoke) or args.out is not None
    args.out = args.out or RESULTS_DIR
    if args.setting == "generator":
        return generator(args)
    setting, timer = SETTINGS[args.setting], report.Timer(args.device)
    setting = smoke(setting) if args.smoke else setting
    out = run(setting, seed=args.seed, device=args.device, timer=timer, cache_dir=args.cache_dir,
              checkpoint_dir=args.checkpoint_dir, save_dir=args.save, evaluate=args.evaluate)
    total, lines = time.perf_counter() - t0, sweep_lines(out["sweeps"])  # wall clock
    results = {"setting": args.setting, "note": NOTES[args.setting], "settings": setting.model_dump(mode="json"),
               "scores": out["scores"], "floors": out["floors"], "sweeps": {k: {str(s): v for s, v in sw.items()} for k, sw in lines.items()},
               "main": out["main"], "budgets": out["budgets"], "seconds": timer.seconds, "total_s": total,
               "within_time_limit": None if setting.time_limit_s is None else total <= setting.time_limit_s,
               "command": args.command, "environment": report.environment(args.device)}
    results["summary"] = summary(results, "batch")
    results["summary_eval"] = summary(results, "eval")
    # one results file for the benchmark (the setting recorded inside); quick and smoke runs apart
    stem = ("morphomnist_benchmark" if args.setting not in ("quick",) and not args.smoke
            else f"morphomnist_{args.setting}" + ("_smoke" if args.smoke else ""))
    if save:
        rows, labels = out["grid"]
        results["grid"] = save_grid(rows, labels, args.out / f"{stem}_grid.png", title=f"Morpho-MNIST ({args.setting})").name
        results["plot"] = plot_effectiveness(lines, args.out / f"{stem}_sweep.png").name
        report.write_results(args.out, stem, results, markdown(results))
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
