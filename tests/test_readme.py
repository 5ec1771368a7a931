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
    assert len(blocks) == 3, "expected one Pyro, one NumPyro and one approximate example"
    return {"pyro": blocks[0], "numpyro": blocks[1], "approximate": blocks[2]}


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


def test_readme_one_call_runs_and_reports_what_it_did(capsys):
    """The approximate block after the NumPyro example (its model and data), with a 50-step
    budget per stage: every line the README shows runs, and the printed result names the chosen
    stage and a verdict consistent with its report."""
    namespace: dict = {}
    exec(compile(_examples()["numpyro"].split("guide = AutoMultivariateNormal")[0],
                 "README[numpyro]", "exec"), namespace)
    block = _examples()["approximate"].replace(
        "rng_key=jax.random.PRNGKey(0))", "rng_key=jax.random.PRNGKey(0), num_steps=50,"
        " progress_bar=False)")
    assert "num_steps=50" in block
    exec(compile(block, "README[approximate]", "exec"), namespace)
    post = namespace["post"]
    out = capsys.readouterr().out
    assert f"{post.method} chosen, verdict {post.verdict.upper()}" in out
    assert post.verdict not in ("good", "usable")  # the centred eight schools is a funnel
    assert "stages:" in out and "verdict" in out
