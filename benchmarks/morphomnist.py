"""Morpho-MNIST benchmark (BENCHMARKS.md section 4): so far the generator's acceptance figures.

Usage::

    CAUSALDIFF_MNIST_DIR=../shared/data/mnist python benchmarks/morphomnist.py --setting generator
    python benchmarks/morphomnist.py --setting quick      # seconds: the CI setting

The settings ``cpu`` and ``gpu`` (models, protocol, table) are not written yet.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from causaldiff.datasets import MorphoMNIST
from causaldiff.evaluation import report
from causaldiff.evaluation.morphomnist import generator_statistics

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SETTINGS = {"quick": {"n_law": 60_000, "n_render": 8, "n_counterfactual": 4, "subset": 64},
            "generator": {"n_law": 60_000, "n_render": 1000, "n_counterfactual": 100, "subset": None}}


def markdown(results: dict) -> str:
    law, pub = results["figures"]["law"], results["figures"]["published"]
    rows = [[k, f"{law[k]:.4f}", f"{pub[k][0]} ± {pub[k][1]}", results["figures"]["law_within_published"][k]]
            for k in pub]
    out = [f"# Morpho-MNIST generator ({results['setting']})", "",
           f"{results['environment']['date']} on {results['environment']['device']}; "
           f"`{results['command']}`; {results['seconds']:.0f} s", "",
           report.markdown_table(["statistic (60k train)", "ours", "published", "within"], rows), "",
           "```json", json.dumps({k: v for k, v in results["figures"].items() if k not in ("law", "published",
                                                                                         "law_within_published")},
                                 indent=2), "```", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setting", choices=sorted(SETTINGS), default="generator")
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    s = dict(SETTINGS[args.setting])
    ds = MorphoMNIST(subset=s.pop("subset"), workers=1)
    timer = report.Timer()
    with timer("generator"):
        figures = generator_statistics(ds, **s)
    results = {"setting": args.setting, "settings": SETTINGS[args.setting], "figures": figures,
               "seconds": timer.seconds["generator"], "environment": report.environment("cpu"),
               "command": " ".join(["python", *map(shlex.quote, sys.argv)])}
    if args.setting != "quick":
        report.write_results(args.out, f"morphomnist_{args.setting}", results, markdown(results))
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
