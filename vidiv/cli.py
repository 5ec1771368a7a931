"""Command line: ``vidiv demo`` (the main job) and ``vidiv bench`` (the posteriordb benchmark).

vidiv demo [--backend all|pyro|numpyro] [--methods all|m1,m2,...] [--steps N] [--out DIR]
           [--seed S]
vidiv bench [--checkout DIR] [--quick] [--backend ...] [--methods ...] [--posteriors ...]

``vidiv bench`` runs ``benchmarks/posteriordb.py`` of a vidiv *source checkout*: the one named
by ``--checkout``, or else the one this package is installed from (an editable install). It never
imports code from the working directory: a checkout is recognised by its ``pyproject.toml``
naming the project ``vidiv`` and by ``benchmarks/posteriordb.py``, and the benchmark runs in a
child process whose working directory is that checkout.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

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
    bench = sub.add_parser("bench", help="posteriordb benchmark of a vidiv source checkout")
    bench.add_argument(
        "--checkout",
        default=None,
        help="vidiv source checkout to benchmark (default: the one vidiv is installed from)",
    )
    bench.add_argument("--quick", action="store_true", help="few steps and posteriors")
    bench.add_argument("--backend", default="all")
    bench.add_argument("--methods", default="all")
    bench.add_argument("--posteriors", default="all")
    bench.add_argument("--seed", type=int, default=0)
    return parser


def _out_dir(text: str) -> Path:
    """The demo's output folder, created; :class:`VidivError` with the reason if it cannot be."""
    if not text.strip():
        raise VidivError("--out is empty; give the folder to write the demo's files to")
    out = Path(text).expanduser()
    if out.exists() and not out.is_dir():
        raise VidivError(f"--out {text!r} is an existing file, not a folder; choose another path")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # under a file, permission denied, read-only file system, ...
        reason = err.strerror or str(err)
        raise VidivError(f"cannot create the output folder {text!r}: {reason}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise VidivError(f"cannot write to the output folder {text!r}; choose a writable path")
    return out


def is_checkout(path: Path) -> bool:
    """Whether ``path`` is a vidiv source checkout: its ``pyproject.toml`` names the project
    ``vidiv`` and it has ``benchmarks/posteriordb.py``."""
    project = path / "pyproject.toml"
    if not (project.is_file() and (path / "benchmarks" / "posteriordb.py").is_file()):
        return False
    return re.search(r'(?m)^name\s*=\s*"vidiv"\s*$', project.read_text()) is not None


def _checkout(given: str | None) -> Path:
    if given is not None:
        path = Path(given).expanduser().resolve()
        if not is_checkout(path):
            raise VidivError(
                f"--checkout {given!r} is not a vidiv source checkout (it needs a pyproject.toml "
                "naming the project vidiv and benchmarks/posteriordb.py)"
            )
        return path
    installed = Path(__file__).resolve().parents[1]
    if is_checkout(installed):
        return installed
    raise VidivError(
        "'vidiv bench' runs benchmarks/posteriordb.py of a vidiv source checkout, and this vidiv "
        "is not installed from one; pass --checkout PATH (a git clone of vidiv)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            out = _out_dir(args.out)
            from ._demo.main import run_demo

            run_demo(
                backends=args.backend,
                methods=args.methods,
                steps=args.steps,
                out=out,
                seed=args.seed,
                progress=not args.no_progress,
            )
            return 0
        root = _checkout(args.checkout)
        cmd = [sys.executable, "-m", "benchmarks.posteriordb", *_bench_argv(args)]
        return subprocess.run(cmd, cwd=root, check=False).returncode
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
