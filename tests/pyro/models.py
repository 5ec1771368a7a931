"""Pyro transcriptions of the closed-form test models (see tests/closed_form.py)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from tests.closed_form import LinearGaussian


def linear_gaussian_model(lg: LinearGaussian, site: str = "z"):
    """``z ~ MVN(m0, P0)`` (one vector site), ``y ~ N(X z, sigma)`` in a plate ``data``
    (written ``(X * z).sum(-1)`` so vectorised particles of shape ``(S, 1, d)`` broadcast)."""
    m0 = torch.as_tensor(lg.m0)
    P0 = torch.as_tensor(lg.P0)
    X = torch.as_tensor(lg.X)
    y = torch.as_tensor(lg.y)

    def model():
        z = pyro.sample(site, dist.MultivariateNormal(m0, P0))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal((X * z).sum(-1), lg.sigma), obs=y)

    return model
