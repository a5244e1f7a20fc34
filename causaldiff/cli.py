"""The ``causaldiff`` command line: thin wrappers that parse, call the library, and print.

Every argument is validated before any work (numbers finite and positive, one ``--do`` per node,
devices that exist, output paths writable and of the right kind); bad arguments and unreadable
inputs print one clear line on stderr and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import CausalDiffError

ENV_HINT = "CAUSALDIFF_MNIST_DIR"  # the MNIST folder's environment variable (causaldiff.datasets.mnist.ENV_VAR)


#: torchrun's own parser takes ``--n`` for a prefix of its options: ``--rows`` is the same option
ROWS_HELP = "number of test rows (--rows N under torchrun, whose parser reads --n as its own option)"


class UsageError(Exception):
    """A bad command-line argument (exit status 2)."""


def _parse_do(items: Sequence[str]) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for item in items:
        node, sep, value = item.partition("=")
        if not sep or not node or not value:
            raise UsageError(f"--do expects NODE=VALUE, got {item!r}")
        if node in out:
            raise UsageError(f"--do {node}: given twice; give one --do per node")
        try:
            out[node] = int(value) if value.lstrip("+-").isdigit() else float(value)
        except ValueError:
            raise UsageError(f"--do {node}: {value!r} is not a number") from None
        if not math.isfinite(out[node]):
            raise UsageError(f"--do {node}: {value!r} is not a finite number")
    if not out:
        raise UsageError("give at least one --do NODE=VALUE")
    return out


def _parse_scales(text: str) -> list[float]:
    try:
        scales = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--scales expects comma-separated numbers, got {text!r}") from None
    if not scales or any(not math.isfinite(s) or s < 0 for s in scales):
        raise UsageError(f"--scales expects finite non-negative numbers, got {text!r}")
    return scales


def _positive(flag: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise UsageError(f"{flag} must be positive, got {value}")


def _out(flag: str, value: str | None, directory: bool = False) -> None:
    """An output path of the right kind, in a writable folder (checked before any work)."""
    if value is not None:
        from .validation import check_output_path

        check_output_path(value, flag, directory=directory)


def _demo(args: argparse.Namespace) -> int:
    from .demos import run_demo
    from .mechanisms.diffusion import DiffusionConfig

    out = Path(args.out) if args.out else Path("outputs") / "demo" / args.kind
    _out("--out", str(out), directory=True)
    inference = {"abduction_fraction": args.abduction_fraction, "anchor_scale": args.anchor_scale}
    given = {k: v for k, v in inference.items() if v is not None}
    if given and args.kind != "image":
        raise UsageError(f"--{next(iter(given)).replace('_', '-')} applies to the image demo only")
    try:
        DiffusionConfig(**given)
    except ValueError as e:
        raise UsageError(f"--{'/--'.join(k.replace('_', '-') for k in given)}: {_one_line(str(e))}") from None
    run_demo(args.kind, out=out, seed=args.seed, quick=args.quick, **inference)
    return 0


def _graph(args: argparse.Namespace) -> int:
    from .evaluation.plotting import draw_graph  # not .runs: drawing needs neither the engine nor the metrics
    from .spec import load_spec

    out = Path(args.out or Path(args.spec).with_suffix(".png").name)
    _out("--out", str(out))
    spec = load_spec(args.spec)
    draw_graph(spec.graph(), out, labels={n: f"{n}\n[{ns.mechanism}]" for n, ns in spec.nodes.items()},
               title=f"{spec.name}: {spec.description}")
    print(f"wrote {out} ({len(spec.nodes)} nodes)")
    return 0


def _parse_device(text: str):
    """``--device`` as a :class:`torch.device` of this machine (cpu or cuda only)."""
    import torch

    from .devices import device_problem

    problem = device_problem(text, kinds=("cpu", "cuda"))
    if problem is None:
        return torch.device(text)
    raise UsageError(f"--device {text}: {problem.reason}" if problem.on_machine else f"--device: {problem.reason}")


def _run_dir(run: str) -> None:
    if not (Path(run) / "spec.json").is_file():
        raise UsageError(f"{run} is not a run directory (no spec.json); create one with `causaldiff fit`")


def _fit(args: argparse.Namespace) -> int:
    from .runs import fit_run

    device = _parse_device(args.device)
    _positive("--steps", args.steps)
    _out("--out", args.out, directory=True)
    if args.data is not None and not Path(args.data).is_dir():
        raise UsageError(f"--data {args.data}: no such folder")
    fit_run(args.spec, Path(args.out), quick=args.quick, device=device, setting=args.setting,
            data=args.data, steps=args.steps, per_node=args.per_node)
    return 0


def _counterfactual(args: argparse.Namespace) -> int:
    from .runs import counterfactual_run

    _positive("--n", args.n)
    _positive("--batch-size", args.batch_size)
    do = _parse_do(args.do)
    _out("--out", args.out)
    _run_dir(args.run)
    counterfactual_run(Path(args.run), do, n=args.n, out=args.out, batch_size=args.batch_size)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .runs import evaluate_run

    _positive("--n", args.n)
    _run_dir(args.run)
    evaluate_run(Path(args.run), n=args.n)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from .runs import sweep_run

    scales = _parse_scales(args.scales)
    _positive("--n", args.n)
    _run_dir(args.run)
    sweep_run(Path(args.run), scales, n=args.n)
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    d = sub.add_parser("demo", help="train a small SCM from scratch and answer counterfactual queries")
    d.add_argument("--kind", choices=("image", "tabular"), default="image",
                   help="image: the shapes SCM with a diffusion image node (~4 min on 2 idle cores); "
                        "tabular: the DCM chain with additive-noise MLPs (~1 min)")
    d.add_argument("--out", help="output directory (default: outputs/demo/KIND, one per demo)")
    d.add_argument("--seed", type=int, default=0, help="seed of the data, the training and the queries")
    d.add_argument("--quick", action="store_true", help="a seconds-long smoke test (for tests): figures meaningless")
    d.add_argument("--abduction-fraction", type=float, metavar="F",
                   help="image demo: invert this share of the DDIM trajectory (0 < F <= 1; default 0.6); with the "
                        "trained node checkpointed in --out, only the counterfactuals are recomputed")
    d.add_argument("--anchor-scale", type=float, metavar="W",
                   help="image demo: anchored guidance eps(pa) + W [eps(pa*) - eps(pa)] (default 1: plain "
                        "generation under the new parents)")
    d.set_defaults(func=_demo)
    return d


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="causaldiff", description="Causal inference with diffusion models.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = _add_demo(sub)

    g = sub.add_parser("graph", help="draw a spec's DAG to PNG")
    g.add_argument("spec", help="graphs/NAME.toml")
    g.add_argument("--out", help="PNG path (default: NAME.png in the current directory)")
    g.set_defaults(func=_graph)

    f = sub.add_parser("fit", help="fit a declarative SCM spec to its dataset and save the run")
    f.add_argument("spec", help="graphs/NAME.toml")
    f.add_argument("--out", required=True, help="run directory to write")
    f.add_argument("--setting", metavar="NAME",
                   help="a setting the spec declares ([settings.NAME]: e.g. graphs/mnist.toml's quick (seconds, a "
                        "smoke test), cpu (~10 min on 2 cores, digits visibly change), gpu (the reference UNet, 12k "
                        "steps: ~7 min on one H200)); quick for every spec. Default: the spec as written")
    f.add_argument("--quick", action="store_true", help="same as --setting quick: a smoke test, not a model")
    f.add_argument("--data", metavar="DIR",
                   help=f"folder of the data set's files (MNIST: the four IDX files; default: ${ENV_HINT}, "
                        "then ../shared/data/mnist)")
    f.add_argument("--steps", type=int, metavar="N",
                   help="training steps of every network of the spec (denoisers, guidance classifiers, MLPs)")
    f.add_argument("--device", default="cpu",
                   help="device to train on: cpu, cuda or cuda:N (the saved run loads on any machine); under "
                        "torchrun, cuda is each rank's GPU cuda:LOCAL_RANK")
    f.add_argument("--per-node", action="store_true",
                   help="under torchrun: train each learnable node whole on one rank (round-robin), then share "
                        "it, instead of data-parallel DDP over every rank for every node")
    f.set_defaults(func=_fit)

    c = sub.add_parser("counterfactual", help="counterfactuals of test rows of a fitted run")
    c.add_argument("run", help="run directory written by `causaldiff fit`")
    c.add_argument("--do", action="append", default=[], metavar="NODE=VALUE",
                   help="intervention (repeatable); a categorical node takes its code (shapes: shape=0 square, "
                        "1 triangle, 2 cross; mnist: digit=5)")
    c.add_argument("--n", "--rows", dest="n", type=int, default=16, help=ROWS_HELP)
    c.add_argument("--out", help="output PNG (image nodes) or JSON")
    c.add_argument("--batch-size", type=int, default=None,
                   help="rows computed at once (memory grows with it; results do not depend on it)")
    c.set_defaults(func=_counterfactual)

    e = sub.add_parser("evaluate", help="counterfactual metrics of a fitted run (flags the ones it cannot trust)")
    e.add_argument("run", help="run directory written by `causaldiff fit`")
    e.add_argument("--n", "--rows", dest="n", type=int, default=200, help=ROWS_HELP)
    e.set_defaults(func=_evaluate)

    s = sub.add_parser("sweep", help="metrics against the image node's guidance scale, saved as a plot")
    s.add_argument("run", help="run directory written by `causaldiff fit` (needs a diffusion image node)")
    s.add_argument("--scales", default="0,0.3,0.7,1,2,3",
                   help="comma-separated scales >= 0: the anchor_scale w of a conditional node (1: plain "
                        "generation under the new parents, w > 1 pushes further, at most 100), the guidance_scale "
                        "s of an anti-causal one")
    s.add_argument("--n", "--rows", dest="n", type=int, default=100, help=ROWS_HELP)
    s.set_defaults(func=_sweep)
    _add_threads(d, g, f, c, e, s)
    return p


def _add_threads(*commands: argparse.ArgumentParser) -> None:
    for command in commands:
        command.add_argument("--threads", type=int, metavar="N",
                             help="torch threads (default: the cores free at start, see causaldiff.threads)")


def _one_line(text: str) -> str:
    """A multi-line message (a spec's problems, one a line) as one line: ``head item; item``."""
    lines = [line.strip() for line in text.splitlines() if line.strip()] or [""]
    return " ".join([lines[0], "; ".join(lines[1:])]).strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed its one-line error (status 2)
        return int(e.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .distributed import launcher_rank, run_launched, under_launcher

    try:
        _positive("--threads", args.threads)
        if args.threads is not None:
            from .threads import set_threads

            set_threads(args.threads)
        if under_launcher():  # torchrun: every rank runs the command, rank 0 alone prints and writes
            return run_launched(lambda: int(args.func(args) or 0), getattr(args, "device", None))
        return int(args.func(args) or 0)
    except (UsageError, CausalDiffError, OSError) as e:
        if launcher_rank() == 0:  # every rank meets the same error: one report
            print(f"causaldiff {args.command}: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, no traceback, the shell's status for SIGINT
        print(f"causaldiff {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
