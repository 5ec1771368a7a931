"""Reference posterior moments of the FBGVI logistic-regression test (NumPyro NUTS, long run).

Writes ``tests/data/blr_nuts.npz`` with the data (X, y, theta_true) and the NUTS posterior mean,
covariance and number of draws. Data: d = 10, n = 200, X_ij ~ N(0, 0.1), theta* ~ N(0, I),
y ~ Bernoulli(sigmoid(X theta*)); prior theta ~ N(0, I). Logits have sd ~1, so the posterior
(precision ~ I + X'WX, sd ~0.45) is close to Gaussian: the KL-optimal Gaussian matches its first two
moments to within a few per cent (checked in tests/numpyro/test_fbgvi.py).

Usage: ``python benchmarks/fbgvi_blr_reference.py [--quick]`` (about a minute).
"""

from __future__ import annotations

import argparse
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

jax.config.update("jax_enable_x64", True)

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "blr_nuts.npz"


def make_data(seed: int = 20261127, n: int = 200, d: int = 10):
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, np.sqrt(0.1), size=(n, d))
    theta = rng.standard_normal(d)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-X @ theta))).astype(float)
    return X, y, theta


def blr_model(X, y):
    d = X.shape[1]
    theta = numpyro.sample("theta", dist.Normal(jnp.zeros(d), 1.0).to_event(1))
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=X @ theta), obs=y)


def main(quick: bool = False) -> None:
    X, y, theta = make_data()
    chains, draws = (2, 2000) if quick else (4, 25000)
    mcmc = MCMC(NUTS(blr_model), num_warmup=1000, num_samples=draws, num_chains=chains,
                chain_method="sequential", progress_bar=False)
    mcmc.run(jax.random.PRNGKey(1), jnp.asarray(X), jnp.asarray(y))
    s = np.asarray(mcmc.get_samples()["theta"])
    mean, cov = s.mean(0), np.cov(s.T)
    print("NUTS draws", s.shape, "sd", np.sqrt(np.diag(cov)).round(3))
    if not quick:
        np.savez(OUT, X=X, y=y, theta_true=theta, mean=mean, cov=cov, num_draws=len(s))
        print("wrote", OUT)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    main(p.parse_args().quick)
