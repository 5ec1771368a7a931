"""Build the tutorial notebooks from their percent-format sources and execute them.

Sources live in ``tutorials/src/NN_name.py`` (cells separated by ``# %%``; markdown cells by
``# %% [markdown]`` with every line commented). ``python tutorials/build.py`` writes
``tutorials/NN_name.ipynb`` and executes it in full mode (outputs and plots stored in the
notebook); ``--smoke`` executes with ``VIDIV_SMOKE=1`` (shrunken step counts) and does not keep
outputs, which is what the test suite does.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).parent


def parse_cells(text: str) -> list:
    cells, kind, lines = [], None, []

    def flush():
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if not body:
            return
        if kind == "markdown":
            md = "\n".join(
                line[2:] if line.startswith("# ") else line.lstrip("#")
                for line in body.splitlines()
            )
            cells.append(nbformat.v4.new_markdown_cell(md))
        else:
            cells.append(nbformat.v4.new_code_cell(body))

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            kind = "markdown" if "[markdown]" in line else "code"
            lines = []
        elif kind is not None:
            lines.append(line)
    flush()
    return cells


def build(src: Path) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = parse_cells(src.read_text())
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def execute(nb: nbformat.NotebookNode, smoke: bool, timeout: int = 1800) -> nbformat.NotebookNode:
    env_before = os.environ.get("VIDIV_SMOKE")
    os.environ["VIDIV_SMOKE"] = "1" if smoke else "0"
    try:
        NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
        ).execute()
    finally:
        if env_before is None:
            os.environ.pop("VIDIV_SMOKE", None)
        else:
            os.environ["VIDIV_SMOKE"] = env_before
    return nb


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="tutorial stems (default: all)")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    sources = sorted((HERE / "src").glob("[0-9][0-9]_*.py"))
    if args.names:
        sources = [s for s in sources if any(s.stem.startswith(n) for n in args.names)]
    for src in sources:
        print(f"executing {src.stem} ({'smoke' if args.smoke else 'full'})", flush=True)
        nb = execute(build(src), smoke=args.smoke)
        if not args.smoke:
            nbformat.write(nb, HERE / f"{src.stem}.ipynb")
    return 0


if __name__ == "__main__":
    sys.exit(main())
