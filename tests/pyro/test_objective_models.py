"""Models shared by the Pyro objective tests (no tests here).

``linear_gaussian`` is ``tests.pyro.models.linear_gaussian_model`` written so that it broadcasts
over a particle plate (``(z * X).sum(-1)`` instead of ``X @ z``: with particles, ``z`` has shape
``(S, 1, d)`` and the data plate is dim -1), as vectorised particles need.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from tests.closed_form import LinearGaussian


def linear_gaussian(lg: LinearGaussian, site: str = "z"):
    """``z ~ MVN(m0, P0)``, ``y ~ N(X z, sigma)`` in a plate ``data``; vectorisable."""
    m0, P0 = torch.as_tensor(lg.m0), torch.as_tensor(lg.P0)
    X, y = torch.as_tensor(lg.X), torch.as_tensor(lg.y)

    def model():
        z = pyro.sample(site, dist.MultivariateNormal(m0, P0))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal((z * X).sum(-1), lg.sigma), obs=y)

    return model


def local_mixture(
    x: torch.Tensor,
    subsample_size: int | None = None,
    mu: float = 2.0,
    subsample: torch.Tensor | None = None,
):
    """Local latents in a common (optionally subsampled) plate:
    ``z_n ~ N(0, 1)``, ``x_n ~ 0.5 N(z_n + mu, 1) + 0.5 N(z_n - mu, 1)``, and a per-datum guide
    ``q(z_n) = N(a x_n + b, s)`` (amortised-style, parameters a, b, s)."""
    comps = torch.tensor([mu, -mu])

    def model():
        with pyro.plate("data", len(x), subsample_size, subsample=subsample) as idx:
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            mix = dist.Categorical(torch.tensor([0.5, 0.5]))
            comp = dist.Normal(z.unsqueeze(-1) + comps, 1.0)
            pyro.sample("x", dist.MixtureSameFamily(mix, comp), obs=x[idx])

    def guide():
        a = pyro.param("a", torch.tensor(0.3))
        b = pyro.param("b", torch.tensor(0.1))
        s = pyro.param("s", torch.tensor(0.8), constraint=dist.constraints.positive)
        with pyro.plate("data", len(x), subsample_size, subsample=subsample) as idx:
            pyro.sample("z", dist.Normal(a * x[idx] + b, s))

    return model, guide


def replicated(fn, reps: int, dim: int = -2):
    """Run ``fn`` inside an outer plate ``rep`` of size ``reps``: ``reps`` independent copies of
    the problem in one vectorised call (the plate is common to all sites, so per-copy bounds)."""

    def wrapped(*args, **kwargs):
        with pyro.plate("rep", reps, dim=dim):
            return fn(*args, **kwargs)

    return wrapped


def bernoulli_model(x: float = 0.4, prior: float = 0.3):
    """``z ~ Bernoulli(prior)``, ``x | z ~ N(2z - 1, 1)``; guide ``q(z) = Bernoulli(theta)``."""

    def model():
        z = pyro.sample("z", dist.Bernoulli(torch.tensor(prior)))
        pyro.sample("x", dist.Normal(2.0 * z - 1.0, 1.0), obs=torch.tensor(x))

    def guide():
        theta = pyro.param("theta", torch.tensor(0.6), constraint=dist.constraints.unit_interval)
        pyro.sample("z", dist.Bernoulli(theta))

    return model, guide
