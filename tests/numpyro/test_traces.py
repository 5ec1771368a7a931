"""The shared NumPyro trace walk: shapes, plates, detaching, validation, mutable state."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.handlers import seed, trace
from numpyro.infer import SVI, Trace_ELBO
from numpyro.primitives import mutable as numpyro_mutable

from vidiv.errors import ModelStructureError, NonFiniteError, VidivError
from vidiv.numpyro import AlphaDivergence, ChiSquaredVIS, LogVariance
from vidiv.numpyro._traces import detach_samples, particle_terms

X = jnp.array([0.3, -1.2, 2.0, 0.7, 1.1, -0.4])


def local_model(x, subsample_size=None):
    with numpyro.plate("data", x.shape[0], subsample_size=subsample_size) as idx:
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        numpyro.sample("x", dist.Normal(z, 1.0), obs=x[idx])


def local_guide(x, subsample_size=None):
    loc = numpyro.param("loc", jnp.zeros(x.shape[0]))
    with numpyro.plate("data", x.shape[0], subsample_size=subsample_size) as idx:
        numpyro.sample("z", dist.Normal(loc[idx], 0.8))


def global_model(x):
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def global_guide(x):
    loc = numpyro.param("mu_loc", 0.5)
    numpyro.sample("mu", dist.Normal(loc, 0.4))


def _terms(model, guide, params, *args, num_particles=5, **kwargs):
    return particle_terms(jax.random.key(0), params, model, guide, args, kwargs, num_particles)


def test_shapes_and_values_match_trace_elbo_particles():
    t = _terms(global_model, global_guide, {"mu_loc": 0.5}, X)
    assert t.log_p.shape == (5,) and t.log_q.shape == (5,) and t.scale == 1.0
    assert t.log_q_score is None and t.score_sites == ()
    # same keys as Trace_ELBO called with the second half of split(rng_key)
    _, key = jax.random.split(jax.random.key(0))
    ref = Trace_ELBO(num_particles=5).loss(key, {"mu_loc": 0.5}, global_model, global_guide, X)
    np.testing.assert_allclose(-jnp.mean(t.log_p - t.log_q), ref, rtol=1e-12)
    # and the per-particle log densities are the exact Gaussian log densities
    keys = jax.random.split(key, 5)
    mus = [trace(seed(global_guide, jax.random.split(k)[1])).get_trace(X)["mu"]["value"]
           for k in keys]  # fmt: skip
    mus = jnp.stack(mus)
    lq = dist.Normal(0.5, 0.4).log_prob(mus)
    lp = dist.Normal(0.0, 2.0).log_prob(mus) + dist.Normal(mus[:, None], 1.0).log_prob(X).sum(-1)
    np.testing.assert_allclose(t.log_q, lq, rtol=1e-12)
    np.testing.assert_allclose(t.log_p, lp, rtol=1e-12)


def test_common_plate_is_kept_and_subsample_scale():
    params = {"loc": jnp.linspace(-1, 1, 6)}
    t = _terms(local_model, local_guide, params, X)
    assert t.log_p.shape == (5, 6) and t.scale == 1.0
    t2 = _terms(local_model, local_guide, params, X, subsample_size=2)
    assert t2.log_p.shape == (5, 2) and t2.scale == 3.0


def test_subsampling_in_a_non_common_plate_is_refused():
    def model(x):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        with numpyro.plate("obs", x.shape[0], subsample_size=2) as idx:
            numpyro.sample("x", dist.Normal(mu, 1.0), obs=x[idx])

    with pytest.raises(ModelStructureError, match="plate 'obs' is subsampled .2 of 6. but is not"):
        _terms(model, global_guide, {"mu_loc": 0.0}, X)


def test_non_reparameterised_sites_give_score_log_q():
    def model():
        z = numpyro.sample("z", dist.Bernoulli(0.3))
        numpyro.sample("x", dist.Normal(2.0 * z - 1.0, 1.0), obs=0.4)

    def guide():
        p = numpyro.param("p", 0.6)
        numpyro.sample("z", dist.Bernoulli(p))

    t = _terms(model, guide, {"p": 0.6})
    assert t.score_sites == ("z",)
    np.testing.assert_allclose(t.log_q_score, t.log_q)
    assert set(np.asarray(t.log_q).round(6)) <= {round(np.log(0.6), 6), round(np.log(0.4), 6)}


def test_detach_samples_keeps_only_the_parameter_gradient():
    def guide(loc):
        return numpyro.sample("z", dist.Normal(loc, 1.0))

    def log_q(loc, detach):
        with detach_samples() if detach else numpyro.handlers.block():
            tr = trace(seed(guide, 3)).get_trace(loc)
        site = tr["z"]
        return site["fn"].log_prob(site["value"]), site["value"]

    g_detached = jax.grad(lambda a: log_q(a, True)[0])(0.2)
    z = log_q(0.2, True)[1]
    np.testing.assert_allclose(g_detached, z - 0.2, rtol=1e-12)  # score d/dloc log N(z; loc, 1)
    assert float(jax.grad(lambda a: log_q(a, False)[0])(0.2)) == 0.0  # pathwise + score cancel


def test_detach_keeps_delta_log_density_gradient():
    """A DiffusionGuide-style Delta site: the value is detached, its log_density is not."""

    def model():
        numpyro.sample("z", dist.Normal(1.0, 0.5))

    def delta_guide():
        loc, scale = numpyro.param("loc", 0.0), numpyro.param("scale", 1.0)
        x = loc + scale * jax.random.normal(numpyro.prng_key())
        ld = dist.Normal(loc, scale).log_prob(jax.lax.stop_gradient(x))
        # auxiliary, as DiffusionGuide marks it; a non-auxiliary Delta is a point estimate
        numpyro.sample("z", dist.Delta(x, log_density=ld), infer={"is_auxiliary": True})

    def normal_guide():
        loc, scale = numpyro.param("loc", 0.0), numpyro.param("scale", 1.0)
        numpyro.sample("z", dist.Normal(loc, scale))

    params = {"loc": 0.3, "scale": 0.7}
    lv = LogVariance(num_particles=8)
    k = jax.random.key(4)
    ga = jax.grad(lambda p: lv.loss(k, p, model, delta_guide))(params)
    gb = jax.grad(lambda p: lv.loss(k, p, model, normal_guide))(params)
    for name in params:
        assert abs(float(ga[name])) > 1e-3
        np.testing.assert_allclose(ga[name], gb[name], rtol=1e-10)


@pytest.mark.parametrize(
    "objective", [AlphaDivergence(0.5, 4), ChiSquaredVIS(4), LogVariance(4)], ids=repr
)
def test_structure_errors(objective):
    def no_latent():
        numpyro.sample("x", dist.Normal(0.0, 1.0), obs=1.0)

    def empty_guide():
        pass

    # no latent site: every objective is -log p(x) (issue 14; was refused)
    assert float(objective.loss(jax.random.key(0), {}, no_latent, empty_guide)) == pytest.approx(
        0.5 + 0.5 * math.log(2 * math.pi), rel=1e-6
    )

    def enum_model():
        z = numpyro.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
        numpyro.sample("x", dist.Normal(z, 1.0), obs=1.0)

    def enum_guide():
        numpyro.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})

    with pytest.raises(ModelStructureError, match="'z' is marked for enumeration.*TraceEnum_ELBO"):
        objective.loss(jax.random.key(0), {}, enum_model, enum_guide)

    with pytest.raises(NonFiniteError, match="observed site 'x' contains 1 NaN value.s. out of 6"):
        objective.loss(jax.random.key(0), {"mu_loc": 0.0}, global_model, global_guide,
                       X.at[2].set(jnp.nan))  # fmt: skip
    assert issubclass(NonFiniteError, VidivError)

    def missing_guide(x):
        pass

    with pytest.raises(ModelStructureError, match="model latent site 'mu' is not sampled"):
        objective.loss(jax.random.key(0), {}, global_model, missing_guide, X)


def _stateful_model(x):
    """The numpyro.contrib.module.flax_module pattern: pytree params + a mutable state dict
    updated in place (here a running mean of the latent, like batch-norm statistics)."""
    net = numpyro.param("net$params", {"w": jnp.ones(()), "b": jnp.zeros(())})
    state = numpyro_mutable("net$state", {"mean": jnp.zeros(()), "count": jnp.zeros((), int)})
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    state["mean"] = jax.lax.stop_gradient(0.5 * state["mean"] + 0.5 * mu)
    state["count"] = state["count"] + 1
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("x", dist.Normal(net["w"] * mu + net["b"], 1.0), obs=x)


@pytest.mark.parametrize("objective", [AlphaDivergence(0.5, 4), ChiSquaredVIS(4), LogVariance(4)],
                         ids=repr)  # fmt: skip
def test_mutable_state_and_pytree_params_work_in_svi(objective):
    svi = SVI(_stateful_model, global_guide, numpyro.optim.Adam(0.01), loss=objective)
    state = svi.init(jax.random.key(0), X)
    assert state.mutable_state is not None
    update = jax.jit(svi.update)
    for _ in range(3):
        state, loss = update(state, X)
    assert np.isfinite(float(loss))
    ms = state.mutable_state["net$state"]
    assert int(ms["count"]) == 4  # init + 3 steps, one increment per step (not per particle)
    assert float(ms["mean"]) != 0.0
    params = svi.get_params(state)
    assert set(params["net$params"]) == {"w", "b"}
    assert float(params["net$params"]["w"]) != 1.0  # model params got a gradient


@pytest.mark.parametrize(
    "objective", [AlphaDivergence(0.5, 4, gradient="dreg"), ChiSquaredVIS(4), LogVariance(4)],
    ids=repr,
)
def test_jitted_update_compiles_once(objective):
    traces = []

    def model(x):
        traces.append(1)  # python side effect: runs once per trace
        global_model(x)

    svi = SVI(model, global_guide, numpyro.optim.Adam(0.01), loss=objective)
    state = svi.init(jax.random.key(0), X)
    update = jax.jit(svi.update)
    state, _ = update(state, X)
    n_first = len(traces)
    for _ in range(4):
        state, loss = update(state, X)
    assert len(traces) == n_first and update._cache_size() == 1
    assert np.isfinite(float(loss))


_FLOAT32_SCRIPT = """
import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
from numpyro.infer import SVI
from numpyro.infer.autoguide import AutoNormal
from vidiv.numpyro import AlphaDivergence, ChiSquaredVIS, LogVariance
assert not jax.config.jax_enable_x64
x = jnp.array([0.3, -1.2, 2.0, 0.7], dtype=jnp.float32)
def model(x):
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("x", dist.Normal(mu, 1.0), obs=x)
for loss in [AlphaDivergence(0.5, 8), AlphaDivergence(0.0, 8, gradient="dreg"),
             ChiSquaredVIS(16), LogVariance(8)]:
    guide = AutoNormal(model)
    res = SVI(model, guide, numpyro.optim.Adam(0.05), loss=loss).run(
        jax.random.key(0), 300, x, progress_bar=False)
    assert res.losses.dtype == jnp.float32, res.losses.dtype
    assert bool(jnp.all(jnp.isfinite(res.losses)))
    assert abs(float(res.params["mu_auto_loc"]) - float(x.sum()) / 4.25) < 0.2, loss
print("ok")
"""


def test_float32_end_to_end():
    import os
    import subprocess
    import sys

    env = {**os.environ, "JAX_ENABLE_X64": "0", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", _FLOAT32_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
