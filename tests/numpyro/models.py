"""NumPyro transcriptions of the closed-form test models (see tests/closed_form.py)."""

from __future__ import annotations

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from tests.closed_form import LinearGaussian


def linear_gaussian_model(lg: LinearGaussian, site: str = "z"):
    """``z ~ MVN(m0, P0)`` (one vector site), ``y ~ N(X z, sigma)`` in a plate ``data``
    (written ``(X * z).sum(-1)`` so vectorised particles of shape ``(S, 1, d)`` broadcast)."""
    m0, P0, X, y = (jnp.asarray(a) for a in (lg.m0, lg.P0, lg.X, lg.y))

    def model():
        z = numpyro.sample(site, dist.MultivariateNormal(m0, P0))
        with numpyro.plate("data", y.shape[0]):
            numpyro.sample("y", dist.Normal((X * z).sum(-1), lg.sigma), obs=y)

    return model
