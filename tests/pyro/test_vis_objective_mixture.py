"""ChiSquaredVIS model learning on the identifiable two-component mixture of issue 4.

z ~ pi N(mu, 1) + (1 - pi) N(-mu, 1), x | z ~ N(z, 2^2); true pi = 0.7, mu = 3; 1000 training and
1000 test points; learnable (pi, mu > 0); amortised linear Gaussian guide q(z | x); minibatches of
100. x is marginally pi N(mu, 5) + (1 - pi) N(-mu, 5), so the exact log-likelihood and its
maximiser come from ``benchmarks.vis_common`` (one copy with the benchmark).
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import ClippedAdam

from benchmarks.vis_common import mixture_ll, mixture_ml
from vidiv.pyro import ChiSquaredVIS


def make_data(n=1000, seed=0, pi=0.7, mu=3.0):
    rng = np.random.default_rng(seed)
    sign = np.where(rng.random(n) < pi, 1.0, -1.0)
    z = sign * mu + rng.normal(size=n)
    return z + 2.0 * rng.normal(size=n)


def exact_loglik(x, pi, mu):
    """Mean exact marginal log-likelihood per point (the benchmark's closed form)."""
    return mixture_ll((pi, mu), x)


def max_likelihood(x):
    ml = mixture_ml(x, x)
    return ml["pi"], ml["mu"]


def mixture_model(x, batch=100):
    def model():
        pi = pyro.param("pi", torch.tensor(0.5), constraint=dist.constraints.interval(0.01, 0.99))
        mu = pyro.param("mu", torch.tensor(1.0), constraint=dist.constraints.positive)
        with pyro.plate("data", len(x), subsample_size=batch) as idx:
            mix = dist.Categorical(torch.stack([pi, 1 - pi]))
            comp = dist.Normal(torch.stack([mu, -mu]), 1.0)
            z = pyro.sample("z", dist.MixtureSameFamily(mix, comp))
            pyro.sample("x", dist.Normal(z, 2.0), obs=x[idx])

    def guide():
        a = pyro.param("a", torch.tensor(0.5))
        b = pyro.param("b", torch.tensor(0.0))
        s = pyro.param("s", torch.tensor(1.0), constraint=dist.constraints.positive)
        with pyro.plate("data", len(x), subsample_size=batch) as idx:
            pyro.sample("z", dist.Normal(a * x[idx] + b, s))

    return model, guide


def fit(loss, x, steps, lr=0.05, lr_final=1e-3):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model, guide = mixture_model(x)
    svi = SVI(model, guide, ClippedAdam({"lr": lr, "lrd": (lr_final / lr) ** (1 / steps)}), loss)
    for _ in range(steps):
        svi.step()
    return float(pyro.param("pi").detach()), float(pyro.param("mu").detach())


X_TRAIN = torch.as_tensor(make_data(seed=0))
X_TEST = make_data(seed=1)


def _check(steps, particles, mu_tol, pi_tol, ll_tol, lr=0.05):
    pi_ml, mu_ml = max_likelihood(X_TRAIN.numpy())
    ll_ml = exact_loglik(X_TEST, pi_ml, mu_ml)
    pi, mu = fit(ChiSquaredVIS(particles, max_plate_nesting=1), X_TRAIN, steps, lr=lr)
    ll = exact_loglik(X_TEST, pi, mu)
    assert abs(mu - mu_ml) < mu_tol, (mu, mu_ml)
    assert abs(pi - pi_ml) < pi_tol, (pi, pi_ml)
    assert abs(ll - ll_ml) < ll_tol, (ll, ll_ml)
    return mu_ml, ll_ml


@pytest.mark.slow
def test_vis_recovers_maximum_likelihood_and_elbo_is_biased():
    # measured (lr 0.02 -> 1e-3): VIS pi 0.6697, mu 2.985, test ll -2.63471 (ML -2.63486);
    # Trace_ELBO (16 particles, 2000 steps) mu 1.556, pi 0.677, test ll -2.7980 (0.163/point worse)
    mu_ml, ll_ml = _check(8000, 16, 0.1, 0.02, 0.005, lr=0.02)
    pi_e, mu_e = fit(
        Trace_ELBO(num_particles=16, vectorize_particles=True, max_plate_nesting=1),
        X_TRAIN,
        8000,
        lr=0.02,
    )
    # the ELBO's bias on this model (issue 4 measured mu = 1.56, test ll -2.8079)
    assert mu_ml - mu_e > 0.5
    assert ll_ml - exact_loglik(X_TEST, pi_e, mu_e) > 0.05


def test_vis_recovers_maximum_likelihood_short_run():
    # measured: pi 0.6721, mu 2.9995 vs ML (0.6696, 3.0348); test log-lik -2.63455 vs -2.63486
    _check(300, 128, 0.1, 0.02, 0.005)
