"""benchmarks/vis.py --protocol paper (benchmarks/vis_paper.py), Pyro path, 2 steps at tiny K."""

from __future__ import annotations

import json
import math

from benchmarks import vis
from benchmarks.vis_common import PAPER_ARCH
from benchmarks.vis_pyro import VAE

METHODS = {"ELBO", "IWAE", "IWAE-host", "CHIVI", "VIS"}


def test_paper_architecture():
    vae = VAE(PAPER_ARCH)
    assert [m.out_features for m in vae.decoder if hasattr(m, "out_features")] == [128, 64]
    assert [m.out_features for m in vae.encoder if hasattr(m, "out_features")] == [128, 4]
    assert vae.batch == 64


def test_vis_paper_protocol_pyro_smoke(tmp_path):
    out = tmp_path / "paper.json"
    argv = ["--only", "vae", "--protocol", "paper", "--backend", "pyro", "--quick"]
    for seeds in ("0", "1"):  # a later run of another seed (same settings) is merged
        vis.main([*argv, "--seeds", seeds, "--steps", "2", "--particles", "4", "--out", str(out)])
    entry = json.loads(out.read_text())["pyro"]
    proto = entry["protocol"]
    assert proto["steps"] == 2 and proto["particles"] == 4 and proto["batch"] == 64
    assert proto["adam_lr"] == 5e-3 and proto["steps_per_epoch"] == 20  # ceil(1250 / 64)
    assert set(entry["seeds"]) == {"0", "1"}
    for rows in entry["seeds"].values():
        assert set(rows) == METHODS
        for row in rows.values():
            assert row["steps"] == 2 and row["best_step"] == 2
            for key in ("test_ll_is_last", "test_ll_grid_last", "train_ll_is_last"):
                assert math.isfinite(row[key]) and -64 * math.log(2) - 20 < row[key] < 0
            # one validation, at the end: best-validation parameters are the last ones
            assert row["test_ll_is"] == row["test_ll_is_last"]
            # IS with the method's own encoder is below the exact quadrature (up to noise)
            assert row["test_ll_is_last"] < row["test_ll_grid_last"] + 0.5
    summary = entry["summary"]
    assert set(summary) == METHODS
    means = [r["test_ll_is_last"] for r in (entry["seeds"][s]["IWAE"] for s in ("0", "1"))]
    assert math.isclose(summary["IWAE"]["test_ll_is_last"]["mean"], sum(means) / 2)
    welch = summary["VIS"]["welch_vs_IWAE"]
    assert set(welch) == {"test_ll_is_last", "test_ll_grid_last", "test_ll_is", "test_ll_grid"}
    assert all(0.0 <= t["p"] <= 1.0 and 0.0 <= t["paired_p"] <= 1.0 for t in welch.values())


def test_numpyro_shared_batch_elbo_is_the_elbo():
    """Without subsampling, ELBO-1batch is NumPyro's Trace_ELBO (same draws: particle_terms splits
    keys like RenyiELBO, i.e. like Trace_ELBO called with the second half of the split)."""
    import jax
    import numpy as np
    from numpyro.infer import Trace_ELBO

    from benchmarks import vis_numpyro as impl
    from benchmarks.vis_common import digits

    x = jax.numpy.asarray(digits()[0][:10])
    model = lambda x: impl.vae_model(x, 10, PAPER_ARCH)  # noqa: E731
    guide = lambda x: impl.vae_guide(x, 10, PAPER_ARCH)  # noqa: E731
    key = jax.random.key(3)
    params = {
        "decoder": impl._mlp_init(jax.random.key(1), PAPER_ARCH.decoder_sizes),
        "encoder": impl._mlp_init(jax.random.key(2), PAPER_ARCH.encoder_sizes, 0.5),
    }
    ours = impl.paper_methods(3)["ELBO-1batch"].loss(key, params, model, guide, x)
    host = Trace_ELBO(num_particles=3).loss(jax.random.split(key)[1], params, model, guide, x)
    np.testing.assert_allclose(ours, host, rtol=1e-5)


def test_results_file_names_keep_the_paper_protocol_file_apart():
    from benchmarks.vis_paper import default_name, protocol

    assert default_name(protocol(500, 20)) == "vis_vae_paper.json"
    assert default_name(protocol(5000, 20)) == "vis_vae_paper_s5000.json"
    assert default_name(protocol(500, 100)) == "vis_vae_paper_100ep.json"
    assert default_name(protocol(50, 100)) == "vis_vae_paper_s50_100ep.json"


def test_rank_tests_of_the_seed_pairs():
    """Ten seeds all favouring VIS: sign and Wilcoxon p = 2 / 2^10 whatever one outlier does;
    the paired t-test is what the outlier drags down."""
    from benchmarks.vis_paper import _tests

    other = [-20.0 - 0.1 * i for i in range(10)]
    vis = [o + 0.05 for o in other]
    vis[3] += 2.0  # one seed where the other method collapsed
    t = _tests(vis, other)
    assert t["vis_better_seeds"] == 10
    assert math.isclose(t["sign_p"], 2 / 2**10) and math.isclose(t["wilcoxon_p"], 2 / 2**10)
    assert t["paired_p"] > 0.15
    assert math.isclose(t["mean_diff"], 0.25)
    tie = _tests(other, other)
    assert tie["sign_p"] == 1.0 and tie["wilcoxon_p"] == 1.0 and tie["vis_better_seeds"] == 0


def test_sweep_report_rows(tmp_path):
    """One row per file and backend; NumPyro's per-particle-minibatch ELBO is never 'best'."""
    from benchmarks.vis_paper import protocol, summarise, sweep_report

    def rows(vis, iwae, elbo):
        keys = ("test_ll_is_last", "test_ll_grid_last", "test_ll_is", "test_ll_grid",
                "train_ll_is_last", "seconds")
        return {name: dict.fromkeys(keys, v) for name, v in
                (("ELBO", elbo), ("IWAE", iwae), ("VIS", vis))}

    seeds = {str(i): rows(-20.0 + 0.1 * i + 0.01 * (i % 2), -20.05 + 0.1 * i, -19.0 - 0.1 * i)
             for i in range(6)}
    entry = {"protocol": protocol(5000, 20), "seeds": seeds, "summary": summarise(seeds)}
    path = tmp_path / "vis_vae_paper_s5000.json"
    path.write_text(json.dumps({"numpyro": entry, "pyro": entry}))
    table = sweep_report([path]).splitlines()
    assert len(table) == 4
    numpyro, pyro = table[2], table[3]
    assert numpyro.startswith("| 5000 | 20 | numpyro | 6 | +0.055 (6/6; 0.031)")
    # NumPyro's ELBO sees S minibatches per step: never "best"
    assert numpyro.endswith("| VIS (2; 6) | `vis_vae_paper_s5000.json` |")
    assert pyro.endswith("| ELBO (3; 6) | `vis_vae_paper_s5000.json` |")
    assert "| 0.000/0.000 |" in pyro  # IS equals quadrature in these rows: no encoder deficit
