"""The device checks run on CPU in their reduced modes: every NumPyro method compiles once, every
Pyro method keeps its tensors on the requested device, and the host baselines are timed beside."""

from __future__ import annotations

import json

from benchmarks import gpu_check, gpu_check_pyro

METHODS = {"AlphaDivergence", "AlphaDivergence(dreg)", "ChiSquaredVIS", "LogVariance",
           "FBGVI(stein)", "MirroredSVGD", "host:Trace_ELBO", "host:RenyiELBO"}


def _rows(result: dict, *flags: str) -> list[dict]:
    """Every method at both particle counts, each without error, finite and with ``flags``."""
    rows = result["rows"]
    assert {r["method"] for r in rows} == METHODS
    assert {r["particles"] for r in rows} == {8, 64}
    for r in rows:
        assert "error" not in r, r
        assert r["finite"] and r["step_s"] > 0 and all(r[f] for f in flags), r
    return rows


def test_gpu_check_reduced_mode_compiles_each_step_once(tmp_path):
    out = tmp_path / "gpu.json"
    code = gpu_check.main(["--reduced", "--models", "eight_schools", "--out", str(out)])
    result = json.loads(out.read_text())
    rows = _rows(result, "compiled_once")
    assert all(r["traces"] == 1 for r in rows)  # no recompilation per step
    # every SVI objective has its host baseline at both particle counts
    pairs = {(r["method"], r["baseline"], r["particles"]) for r in result["ratios_to_host"]}
    assert len(pairs) == 8 and ("ChiSquaredVIS", "host:Trace_ELBO", 64) in pairs
    assert all(r["ratio"] > 0 for r in result["ratios_to_host"])
    assert set(result["versions"]) == {"jax", "jaxlib", "numpyro", "numpy"}
    assert code == 0


def test_gpu_check_pyro_reduced_mode_keeps_tensors_on_the_device(tmp_path):
    out = tmp_path / "gpu_pyro.json"
    code = gpu_check_pyro.main(["--reduced", "--device", "cpu", "--out", str(out)])
    result = json.loads(out.read_text())
    rows = _rows(result, "on_device")
    vis = [r for r in rows if r["method"] == "ChiSquaredVIS"]
    assert [r["datatree"] for r in vis] == ["ok", "ok"]  # the fitted guide reaches ArviZ
    assert len(result["ratios_to_host"]) == 8
    assert code == 0
