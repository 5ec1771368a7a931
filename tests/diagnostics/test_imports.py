"""vidiv.diagnostics imports ArviZ's base/stats packages only: never torch, jax or legacy arviz."""

from __future__ import annotations

import subprocess
import sys


def test_diagnostics_imports_no_framework_and_no_legacy_arviz():
    code = (
        "import sys, vidiv.diagnostics as d; "
        "bad = [m for m in ('torch', 'jax', 'arviz', 'arviz_plots', 'matplotlib') "
        "if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
