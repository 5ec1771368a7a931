"""vidiv.numpyro.fit: jitted chunks compiled once, loss and k-hat traces, early stop,
non-finite steps keep the last finite state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal

import vidiv.numpyro as vn
from tests.closed_form import conjugate_normal
from tests.numpyro.models import linear_gaussian_model
from vidiv.diagnostics import diagnose
from vidiv.errors import VidivError

KEY = jax.random.PRNGKey(0)


def _svi(lg, step_size):
    model = linear_gaussian_model(lg)
    guide = AutoNormal(model)
    return model, guide, SVI(model, guide, numpyro.optim.Adam(step_size), Trace_ELBO())


def test_fit_compiles_once_and_records_traces():
    lg = conjugate_normal()
    model, guide, svi = _svi(lg, lambda i: 0.1 * 0.99**i)
    res = vn.fit(svi, KEY, 250, monitor_every=100, num_khat_samples=300, progress_bar=False)
    assert res.info["num_compilations"] == 1  # chunks of 100, 100 and 50 share one program
    assert res.losses.shape == (250,) and np.isfinite(res.losses).all()
    np.testing.assert_array_equal(res.khat[:, 0], [100, 200, 250])
    assert res.khat[-1, 1] < 0.5
    np.testing.assert_allclose(res.params["z_auto_loc"], lg.post_mean, atol=0.1)
    # the same run through svi.run gives the same losses (same keys, same updates)
    ref = svi.run(KEY, 250, progress_bar=False)
    np.testing.assert_allclose(res.losses, np.asarray(ref.losses), rtol=1e-10)
    dt = vn.to_datatree(model, guide, res.params, rng_key=KEY, num_samples=2000, losses=res)
    np.testing.assert_array_equal(dt["optimization"]["khat_step"], [100, 200, 250])
    r = diagnose(dt, log_z_reference=lg.log_z)
    assert r.elbo < lg.log_z < r.cubo
    assert abs(r.log_z - lg.log_z) < 3 * r.log_z_se


def test_early_stop_on_plateau():
    _, _, svi = _svi(conjugate_normal(), lambda i: 0.1 * 0.98**i)  # step size decays to ~0
    res = vn.fit(svi, KEY, 5000, monitor_every=50, num_khat_samples=0, progress_bar=False,
                 early_stop={"tol": 1e-3, "patience": 2})
    assert res.stopped_early
    assert 100 <= res.num_steps < 5000 and res.num_steps % 50 == 0
    assert res.khat.shape == (0, 2)


def test_nonfinite_step_keeps_last_finite_state():
    model = linear_gaussian_model(conjugate_normal())
    guide = AutoNormal(model)
    svi = SVI(model, guide, numpyro.optim.SGD(1e300), Trace_ELBO())  # diverges at once
    with pytest.warns(RuntimeWarning, match="non-finite at step 2"):
        res = vn.fit(svi, KEY, 30, monitor_every=10, num_khat_samples=0, progress_bar=False)
    assert res.info["nonfinite_step"] == 2 and res.losses.shape == (1,)
    assert all(np.isfinite(np.asarray(v)).all() for v in res.params.values())


def test_progress_bar_and_bad_arguments(capsys):
    _, _, svi = _svi(conjugate_normal(), 0.01)
    res = vn.fit(svi, KEY, 20, monitor_every=10, num_khat_samples=50)
    assert res.losses.shape == (20,) and res.khat.shape == (2, 2)
    assert "vidiv.numpyro.fit" in capsys.readouterr().err
    with pytest.raises(VidivError, match="num_steps must be an integer >= 1"):
        vn.fit(svi, KEY, 0)
    with pytest.raises(VidivError, match="expects a numpyro.infer.SVI"):
        vn.fit(object(), KEY, 10)
    assert jnp.isfinite(res.losses).all()


def test_float32_fit_and_datatree_in_a_fresh_process():
    """Without jax_enable_x64 (the test suite turns it on): float32 losses, one compilation,
    and a DataTree whose log weights match a float32 evaluation."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np, numpyro, numpyro.distributions as dist
        from numpyro.infer import SVI, Trace_ELBO
        from numpyro.infer.autoguide import AutoMultivariateNormal
        import vidiv.numpyro as vn
        def model(y):
            mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
            s = numpyro.sample("s", dist.HalfNormal(2.0))
            with numpyro.plate("obs", y.shape[0]):
                numpyro.sample("y", dist.Normal(mu, s), obs=y)
        y = jnp.asarray(np.random.default_rng(0).normal(1.0, 2.0, size=50), jnp.float32)
        guide = AutoMultivariateNormal(model)
        svi = SVI(model, guide, numpyro.optim.Adam(lambda i: 0.05 * 0.99**i), Trace_ELBO())
        res = vn.fit(svi, jax.random.PRNGKey(0), 200, y, monitor_every=100,
                     num_khat_samples=200, progress_bar=False)
        dt = vn.to_datatree(model, guide, res.params, y, rng_key=jax.random.PRNGKey(1),
                            num_samples=300, losses=res)
        print(res.losses.dtype, res.info["num_compilations"], np.isfinite(res.khat).all(),
              dt["posterior"]["mu"].shape, dt["log_likelihood"]["y"].dims, dt.attrs["khat"] < 1)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "float32 1 True (1, 300) ('chain', 'draw', 'obs') True"
