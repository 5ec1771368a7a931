"""benchmarks/vis.py, Pyro path, smoke mode: every method trains, is validated and scored."""

from __future__ import annotations

import json
import math

from benchmarks import vis

METHODS = {"ELBO", "IWAE", "IWAE-host", "CHIVI", "VIS"}


def test_vis_benchmark_pyro_quick(tmp_path):
    out = tmp_path / "vis.json"
    vis.main(["--backend", "pyro", "--quick", "--steps", "50", "--out", str(out)])
    entry = json.loads(out.read_text())["pyro"]
    mix, vae = entry["mixture"]["rows"], entry["vae_digits"]["rows"]
    assert set(mix) == METHODS | {"ML"} and set(vae) == METHODS
    for name in METHODS:
        assert mix[name]["steps"] == 50 and 0.0 < mix[name]["pi"] < 1.0 and mix[name]["mu"] > 0
        # exact and IS (500 samples) held-out log-likelihoods agree; none beats maximum likelihood
        assert abs(mix[name]["test_ll"] - mix[name]["test_ll_is"]) < 0.02
        assert mix[name]["test_ll"] < mix["ML"]["test_ll"] + 0.01
        row = vae[name]
        assert row["steps"] == 50 and row["best_step"] in {s for s, _ in row["valid_history"]}
        assert math.isfinite(row["test_ll_is"]) and -64 * math.log(2) - 20 < row["test_ll_is"] < 0
        # the IS estimate with the method's encoder is below the quadrature value (up to noise)
        assert row["test_ll_is"] < row["test_ll_grid"] + 0.5
        assert row["best_valid_ll_is"] == max(v for _, v in row["valid_history"])
