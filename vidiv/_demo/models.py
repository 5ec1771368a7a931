"""Eight schools (non-centred; Rubin 1981, BDA3 §5.5) in NumPyro and Pyro, as in posteriordb:

    mu ~ N(0, 5),  tau ~ HalfCauchy(5),  theta_trans_j ~ N(0, 1),
    theta_j = mu + tau * theta_trans_j,  y_j ~ N(theta_j, sigma_j).

The exact log evidence with these normalised priors is -31.311347 (posteriordb shared set).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

import numpy as np

LOG_EVIDENCE = -31.311347352713796
PARAMS = ("mu", "tau", "theta_trans", "theta")


@cache
def data() -> dict[str, np.ndarray]:
    """``{"J", "y", "sigma"}`` of the eight schools (package data)."""
    raw = json.loads(resources.files("vidiv.data").joinpath("eight_schools.json").read_text())
    return {
        "J": int(raw["J"]),
        "y": np.asarray(raw["y"], float),
        "sigma": np.asarray(raw["sigma"], float),
    }


@cache
def reference() -> dict[str, np.ndarray]:
    """A subsample of the posteriordb NUTS reference draws (package data)."""
    with resources.files("vidiv.data").joinpath("eight_schools_reference.npz").open("rb") as fh:
        ref = np.load(fh)
        return {k: np.asarray(ref[k], float) for k in PARAMS if k in ref}


def numpyro_model():
    import numpyro
    import numpyro.distributions as dist

    d = data()
    y, sigma = d["y"], d["sigma"]

    def eight_schools(y=y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
        with numpyro.plate("school", len(sigma)):
            theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0))
            theta = numpyro.deterministic("theta", mu + tau * theta_trans)
            numpyro.sample("y", dist.Normal(theta, sigma), obs=y)

    return eight_schools


def pyro_model():
    import pyro
    import pyro.distributions as dist
    import torch

    d = data()
    y = torch.as_tensor(d["y"], dtype=torch.get_default_dtype())
    sigma = torch.as_tensor(d["sigma"], dtype=torch.get_default_dtype())

    def eight_schools(y=y):
        mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = pyro.sample("tau", dist.HalfCauchy(5.0))
        with pyro.plate("school", len(sigma)):
            theta_trans = pyro.sample("theta_trans", dist.Normal(0.0, 1.0))
            theta = pyro.deterministic("theta", mu + tau * theta_trans)
            pyro.sample("y", dist.Normal(theta, sigma), obs=y)

    return eight_schools
