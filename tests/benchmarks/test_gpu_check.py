"""benchmarks/gpu_check.py runs on CPU in its reduced mode: every NumPyro method compiles once."""

from __future__ import annotations

import json

from benchmarks import gpu_check


def test_gpu_check_reduced_mode_compiles_each_step_once(tmp_path):
    out = tmp_path / "gpu.json"
    code = gpu_check.main(["--reduced", "--models", "eight_schools", "--out", str(out)])
    result = json.loads(out.read_text())
    rows = result["rows"]
    methods = {r["method"] for r in rows}
    assert methods == {"AlphaDivergence", "AlphaDivergence(dreg)", "ChiSquaredVIS", "LogVariance",
                       "FBGVI(stein)", "MirroredSVGD"}
    assert {r["particles"] for r in rows} == {8, 64}
    for r in rows:
        assert "error" not in r, r
        assert r["traces"] == 1, r  # no recompilation per step
        assert r["finite"] and r["step_s"] > 0, r
    assert code == 0
