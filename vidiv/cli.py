"""Command line: ``vidiv demo`` (the main job) and ``vidiv bench`` (the posteriordb benchmark).

vidiv demo [--backend all|pyro|numpyro] [--methods all|m1,m2,...] [--steps N] [--out DIR]
           [--seed S]
vidiv bench [--quick] [--backend ...] [--methods ...] [--posteriors ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence

from .errors import VidivError


class _OneLineParser(argparse.ArgumentParser):
    """Bad flags: one line on stderr and exit code 2 (no usage dump)."""

    def error(self, message: str) -> None:  # noqa: D401
        self.exit(2, f"vidiv: error: {message} (see 'vidiv {self.prog.split()[-1]} --help')\n")


def _csv(choices: Sequence[str], what: str):
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if items == ["all"]:
            return list(choices)
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(bad) or repr(text)}; "
                f"choose from all, {', '.join(choices)}"
            )
        return items

    return parse


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from ._demo.runners import BACKENDS, METHODS

    parser = _OneLineParser(prog="vidiv", description="vidiv command line")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    demo = sub.add_parser("demo", help="fit eight schools with every method and backend")
    demo.add_argument(
        "--backend",
        type=_csv(BACKENDS, "backend"),
        default=list(BACKENDS),
        help="comma-separated backends, or all (default: every installed one)",
    )
    demo.add_argument(
        "--methods",
        type=_csv(list(METHODS), "method"),
        default=list(METHODS),
        help=f"comma-separated methods, or all: {', '.join(METHODS)}",
    )
    demo.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help="optimisation steps per method (default: per-method defaults)",
    )
    demo.add_argument("--out", default="vidiv-demo-out", help="output folder (netCDF + PNG)")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    bench = sub.add_parser("bench", help="posteriordb benchmark (run from a source checkout)")
    bench.add_argument("--quick", action="store_true", help="few steps and posteriors")
    bench.add_argument("--backend", default="all")
    bench.add_argument("--methods", default="all")
    bench.add_argument("--posteriors", default="all")
    bench.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from ._demo.main import run_demo

            run_demo(
                backends=args.backend,
                methods=args.methods,
                steps=args.steps,
                out=args.out,
                seed=args.seed,
                progress=not args.no_progress,
            )
            return 0
        sys.path.insert(0, ".")
        if importlib.util.find_spec("benchmarks") is None or (
            importlib.util.find_spec("benchmarks.posteriordb") is None
        ):
            print(
                "vidiv: error: 'vidiv bench' runs benchmarks/posteriordb.py; run it from the root "
                "of a vidiv source checkout",
                file=sys.stderr,
            )
            return 2
        from benchmarks import posteriordb

        return int(posteriordb.main(_bench_argv(args)) or 0)
    except VidivError as err:
        print(f"vidiv: error: {err}", file=sys.stderr)
        return 2


def _bench_argv(args: argparse.Namespace) -> list[str]:
    """Translate `vidiv bench` flags (comma lists) to benchmarks/posteriordb.py's."""
    argv = ["--seed", str(args.seed)]
    for flag, value in (
        ("--backends", args.backend),
        ("--methods", args.methods),
        ("--posteriors", args.posteriors),
    ):
        if value != "all":
            argv += [flag, *[v.strip() for v in value.split(",") if v.strip()]]
    if args.quick:  # a smoke run must not overwrite the recorded results
        argv += ["--quick", "--out", "benchmarks/results/posteriordb_quick.json"]
    return argv


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
