"""``approximate(model)`` with no other argument on the posteriordb posteriors (slow: ~20-45 s
each on 2 cores). Measured (NumPyro, benchmarks/results/approximate.md): within 0.1 sd and sd
ratio [0.9, 1.1] on 6 of the 8 a Gaussian can represent (the issue's target is 7: the
non-centred eight schools ends at "use reweighted", hmm_example at 0.12 sd / 0.87), and "do
not trust" on the centred eight schools. What this test holds every run to: the promise (every
"good"/"usable" fit within 0.25 sd, sd ratio in [0.8, 1.25]), the centred verdict, and, for
NumPyro, the measured accuracy count."""

from __future__ import annotations

import pytest

from benchmarks.pdb import registry

pytestmark = pytest.mark.slow
CENTRED = "eight_schools-eight_schools_centered"


@pytest.mark.parametrize("backend", ["numpyro", "pyro"])
def test_default_call_keeps_the_promise_on_posteriordb(backend):
    from benchmarks.approximate import meets, run_approximate

    ok, why = registry.available()
    if not ok:
        pytest.skip(why)
    rows = {name: run_approximate(name, backend, seed=0) for name in registry.names()}
    assert rows[CENTRED]["verdict"] == "do not trust", rows[CENTRED]
    for name, row in rows.items():
        if row["verdict"] in ("good", "usable"):
            s = row["score"]
            assert s["max_err"] < 0.25 and 0.8 <= s["min_sd_ratio"] <= s["max_sd_ratio"] <= 1.25, (
                name, row)
    met = [n for n, row in rows.items() if n != CENTRED and meets(row["score"])]
    if backend == "numpyro":
        assert len(met) >= 6, met
