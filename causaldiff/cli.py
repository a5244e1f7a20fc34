"""The ``causaldiff`` command line: thin wrappers that parse, call the library, and print.

Bad arguments print one clear line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import CausalDiffError


class UsageError(Exception):
    """A bad command-line argument (exit status 2)."""


def _demo(args: argparse.Namespace) -> int:
    from .demos import run_demo

    run_demo(args.kind, out=Path(args.out), seed=args.seed, quick=args.quick)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="causaldiff", description="Causal inference with diffusion models.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    d = sub.add_parser("demo", help="train a small SCM from scratch and answer counterfactual queries")
    d.add_argument("--kind", choices=("tabular",), default="tabular", help="which embedded demo to run")
    d.add_argument("--out", default="outputs/demo", help="output directory (metrics JSON, figures)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quick", action="store_true", help="a seconds-long setting (for tests)")
    d.set_defaults(func=_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed its one-line error (status 2)
        return int(e.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UsageError, CausalDiffError, FileNotFoundError) as e:
        print(f"causaldiff {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
