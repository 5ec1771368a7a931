"""Bad options and models the NumPyro drivers and guides refuse by name (issue: bad input and
faults): each test asserts the error class and the key words of its message, or the finite
result."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import SVI
from numpyro.infer.autoguide import AutoNormal

import vidiv.numpyro as vn
from vidiv.errors import InvalidArgumentError, ModelStructureError, NonFiniteError


def positive_model():
    numpyro.sample("s", dist.Gamma(2.0, 1.0))
    numpyro.sample("x", dist.Normal(0.0, 1.0), obs=1.0)


def minus_inf_model():
    numpyro.sample("z", dist.Normal(0.0, 1.0))
    numpyro.factor("f", -jnp.inf)


def no_latent_model():
    numpyro.sample("x", dist.Normal(0.0, 1.0), obs=1.0)


def discrete_model():
    numpyro.sample("k", dist.Bernoulli(0.5))
    numpyro.sample("x", dist.Normal(0.0, 1.0), obs=1.0)


def truncated_model():
    z = numpyro.sample("z", dist.Normal(0.0, 1.0))
    numpyro.factor("f", jnp.where(z > 0, 0.0, -jnp.inf))


@pytest.mark.parametrize(
    ("model", "words"),
    [(no_latent_model, "no latent sample site"), (discrete_model, "latent site 'k' is discrete")],
)
def test_diffusion_guide_refuses_models_without_continuous_latents(model, words):
    svi = SVI(model, vn.DiffusionGuide(model, num_steps=4), numpyro.optim.Adam(1e-3),
              vn.LogVariance(4))  # fmt: skip
    with pytest.raises(ModelStructureError, match=words):
        svi.init(jax.random.PRNGKey(0))


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"init_scale": float("nan")}, "init_scale must be a finite positive number, got nan"),
     ({"init_scale": None}, "init_scale must be a finite positive number, got None"),
     ({"score_clip": 0.0}, "score_clip must be a positive number, got 0.0")],
)  # fmt: skip
def test_diffusion_guide_options_are_checked(kwargs, words):
    with pytest.raises(InvalidArgumentError, match=words):
        vn.DiffusionGuide(positive_model, **kwargs)


def test_diffusion_guide_accepts_an_infinite_score_clip():
    assert vn.DiffusionGuide(positive_model, score_clip=float("inf")).score_clip == float("inf")


def test_fbgvi_refuses_init_scale_none():
    with pytest.raises(InvalidArgumentError, match="init_scale must be a finite positive number"):
        vn.FBGVI(positive_model, init_scale=None)


@pytest.mark.parametrize("key", [None, 0, "seed"])
def test_drivers_need_a_jax_key(key):
    svi = SVI(positive_model, AutoNormal(positive_model), numpyro.optim.Adam(0.01),
              vn.AlphaDivergence())  # fmt: skip
    with pytest.raises(InvalidArgumentError, match=r"fit needs a JAX random key.*PRNGKey\(0\)"):
        vn.fit(svi, key, 10)
    with pytest.raises(InvalidArgumentError, match="FBGVI.init needs a JAX random key"):
        vn.FBGVI(positive_model).init(key)
    with pytest.raises(InvalidArgumentError, match="MirroredSVGD.init needs a JAX random key"):
        vn.MirroredSVGD(positive_model, 4).init(key)


def test_a_minus_inf_factor_is_named_by_fit_and_the_drivers():
    svi = SVI(minus_inf_model, AutoNormal(minus_inf_model), numpyro.optim.Adam(0.01),
              vn.ChiSquaredVIS())  # fmt: skip
    named = r"not finite at any starting point tried .*site\(s\) \['f'\]"
    with pytest.raises(NonFiniteError, match=named):
        vn.fit(svi, jax.random.PRNGKey(0), 10, progress_bar=False)
    with pytest.raises(NonFiniteError, match="FBGVI: .*" + named):
        vn.FBGVI(minus_inf_model).init(jax.random.PRNGKey(0))
    with pytest.raises(NonFiniteError, match="MirroredSVGD: .*" + named):
        vn.MirroredSVGD(minus_inf_model, 4).init(jax.random.PRNGKey(0))


def test_msvgd_refuses_initial_particles_where_log_p_is_minus_inf():
    init = {"z": jnp.array([-1.0, 0.5, -2.0, 1.0, 2.0])}
    with pytest.raises(NonFiniteError, match=r"-inf or NaN at 2 of 5 initial particles \(given"):
        vn.MirroredSVGD(truncated_model, 5, init=init).init(jax.random.PRNGKey(0))
    good = vn.MirroredSVGD(truncated_model, 5, init={"z": jnp.abs(init["z"])})
    state = good.init(jax.random.PRNGKey(0))
    np.testing.assert_allclose(good.get_samples(state)["z"], [1.0, 0.5, 2.0, 1.0, 2.0])


@pytest.mark.parametrize(
    ("init", "words"),
    [({"s": -jnp.ones(5)}, r"init\['s'\]: 5 of 5 particles are not strictly inside the site's "
                            r"support, \(0, inf\) \(outside the support\)"),
     ({"s": jnp.array([1.0, jnp.nan, 1.0, 1.0, 0.0])}, r"2 of 5 particles .* \(1 with NaN/inf"),
     ({"t": jnp.ones(5)}, r"init is missing latent site\(s\) \['s'\]"),
     ({"s": jnp.ones(3)}, r"init\['s'\] has shape \(3,\); expected \(5,\)"),
     ([1.0] * 5, "init must be a dict")],
)  # fmt: skip
def test_msvgd_checks_a_user_init_against_the_supports(init, words):
    with pytest.raises(InvalidArgumentError, match=words):
        vn.MirroredSVGD(positive_model, 5, init=init).init(jax.random.PRNGKey(0))


def test_msvgd_large_step_keeps_the_last_finite_particles():
    svgd = vn.MirroredSVGD(positive_model, 10, optim=numpyro.optim.SGD(1e3))
    with pytest.warns(RuntimeWarning, match="went non-finite at step 1"):
        res = svgd.run(jax.random.PRNGKey(0), 20, progress_bar=False)
    s = np.asarray(res.params["s"])
    assert int(res.state.step) == 1 and int(res.state.nonfinite_step) == 1
    assert np.isfinite(s).all() and (s > 0).all()
    assert res.losses.shape == (1,) and np.isfinite(res.losses).all()


def data_model(y):
    z = numpyro.sample("z", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(z, 1.0), obs=y)


@pytest.mark.parametrize("objective", [vn.AlphaDivergence, vn.ChiSquaredVIS, vn.LogVariance])
def test_jitted_update_with_nan_data_warns_naming_the_site(objective):
    svi = SVI(data_model, AutoNormal(data_model), numpyro.optim.Adam(1e-2), objective())
    state = svi.init(jax.random.PRNGKey(0), jnp.array([0.5, 1.0]))
    update = jax.jit(svi.update)
    with pytest.warns(RuntimeWarning, match=r"observed site 'y' contains 1 NaN/inf value\(s\) "
                                            r"\(seen under jax.jit"):  # fmt: skip
        _, loss = update(state, jnp.array([jnp.nan, 1.0]))
        jax.block_until_ready(loss)
        jax.effects_barrier()
    assert not np.isfinite(float(loss))
    # finite data: no warning, a finite loss
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _, loss = update(state, jnp.array([0.5, 1.0]))
        jax.effects_barrier()
    assert np.isfinite(float(loss))


def scale_model(y):
    s = numpyro.sample("s", dist.LogNormal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(0.0, s), obs=y)


@pytest.mark.parametrize("objective", [vn.AlphaDivergence, vn.ChiSquaredVIS, vn.LogVariance])
def test_host_loop_divergence_gives_nan_losses_that_stable_update_skips(objective):
    y = jnp.array([0.1, -0.2, 50.0])
    svi = SVI(scale_model, AutoNormal(scale_model), numpyro.optim.SGD(1e3), objective())
    res = svi.run(jax.random.PRNGKey(0), 50, y, progress_bar=False)
    assert np.isnan(res.losses).sum() > 40  # the signal: a non-finite loss, never a finite one
    stable = svi.run(jax.random.PRNGKey(0), 50, y, progress_bar=False, stable_update=True)
    assert all(np.isfinite(np.asarray(v)).all() for v in stable.params.values())
