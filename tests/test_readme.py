"""The README's per-backend examples run as written (with shortened loops)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"


def _examples() -> dict[str, str]:
    text = README.read_text()
    section = text[text.index("## One screen per backend"):text.index("## What is in it")]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2, "expected one Pyro and one NumPyro example"
    return {"pyro": blocks[0], "numpyro": blocks[1]}


def _shorten(code: str) -> str:
    # fewer steps and draws; everything else exactly as the README shows it
    for long, short in (("3000", "150"), ("2000", "300"), ("1000", "100")):
        code = code.replace(long, short)
    return code


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_readme_example_runs(backend, capsys):
    if backend == "pyro":
        import pyro

        pyro.clear_param_store()
    namespace: dict = {}
    exec(compile(_shorten(_examples()[backend]), f"README[{backend}]", "exec"), namespace)
    out = capsys.readouterr().out
    assert "Pareto k-hat" in out and "verdict" in out
    assert "posterior" in namespace["dt"].children
