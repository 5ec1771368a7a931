"""vidiv.numpyro.to_datatree on bad input: '/' in site and plate names (stored with '.', the
renaming recorded and undone by diagnose / compare_to_reference), NaN / +-inf observed data
named by site before the guide runs on it."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.autoguide import AutoDelta, AutoNormal

import vidiv.numpyro as vn
from tests.diagnostics import slash_names as sn
from vidiv.errors import NonFiniteError

KEY = jax.random.PRNGKey(0)
Y = jnp.array(sn.Y)


def conjugate(site: str, plate: str):
    """The conjugate normal model with the given names and its exact posterior as the guide."""

    def model(y):
        mu = numpyro.sample(site, dist.Normal(0.0, 1.0))
        with numpyro.plate(plate, y.shape[0]):
            numpyro.sample(f"{site}_y", dist.Normal(mu, 1.0), obs=y)

    def guide(y):
        numpyro.sample(site, dist.Normal(sn.POST_MEAN, math.sqrt(sn.POST_VAR)))

    return model, guide


def test_slash_site_and_plate_names_give_a_tree_and_the_same_report():
    dt = vn.to_datatree(*conjugate("enc/mu", "data/i"), {}, Y, rng_key=KEY, num_samples=500)
    plain = vn.to_datatree(*conjugate("enc_mu", "data_i"), {}, Y, rng_key=KEY, num_samples=500)
    sn.check_exact_fit_tree(dt, plain)


def test_slash_point_estimate_is_reported_by_its_model_name():
    model, _ = conjugate("enc/mu", "data/i")
    params = {"enc/mu_auto_loc": jnp.array(sn.POST_MEAN)}
    sn.check_point_estimate_tree(
        vn.to_datatree(model, AutoDelta(model), params, Y, rng_key=KEY, num_samples=100))


@pytest.mark.parametrize(("bad", "what"), [(math.inf, r"1 \+inf"), (math.nan, "1 NaN"),
                                           (-math.inf, "1 -inf")])
@pytest.mark.parametrize("fresh_guide", [False, True])
def test_non_finite_observed_data_is_named_before_the_guide_runs(bad, what, fresh_guide):
    model, _ = conjugate("mu", "data")
    guide = AutoNormal(model)
    params = {"mu_auto_loc": jnp.array(sn.POST_MEAN), "mu_auto_scale": jnp.array(0.4)}
    if not fresh_guide:  # an initialised guide (as after SVI on clean data)
        numpyro.infer.SVI(model, guide, numpyro.optim.Adam(0.1),
                          numpyro.infer.Trace_ELBO()).init(KEY, Y)
    with pytest.raises(NonFiniteError, match=rf"vidiv.numpyro.to_datatree: observed site 'mu_y' "
                       rf"contains {what} value\(s\) out of 5\. .*obs_mask=jnp.isfinite"):
        vn.to_datatree(model, guide, params, Y.at[2].set(bad), rng_key=KEY, num_samples=100)


def test_masked_non_finite_data_is_not_refused():
    def model(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        with numpyro.plate("data", y.shape[0]), numpyro.handlers.mask(mask=jnp.isfinite(y)):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    _, guide = conjugate("mu", "data")
    dt = vn.to_datatree(model, guide, {}, Y.at[1].set(jnp.nan), rng_key=KEY, num_samples=100)
    assert np.isfinite(dt["sample_stats"]["log_p"].values).all()
