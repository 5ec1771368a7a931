"""Pyro half of ``benchmarks/fbgvi.py``: the same targets and measurements with ``vidiv.pyro.FBGVI``
and Pyro's own Adam-SVI + ``AutoMultivariateNormal`` (float64, CPU, ONE torch thread).

Each runner returns ``(steps to KL < 0.1 / < 0.01 or None, final KL, seconds per step)`` per seed,
KL(q‖π) checked every ``chunk`` steps as in the NumPyro half. ``hessian_cost_ratio`` measures, on
the driver's own potential, the time of one autodiff Hessian (reverse-over-reverse: one backward
pass per row) over the time of one value-and-gradient.

Example::

    python benchmarks/fbgvi.py --backend pyro
"""

from __future__ import annotations

import time

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoMultivariateNormal
from pyro.infer.autoguide.initialization import init_to_value

from benchmarks import fbgvi_report as report
from vidiv.gaussian import gaussian_kl
from vidiv.pyro import FBGVI


def pyro_model(target):
    """Pyro twin of the NumPyro target model (same site name, same data)."""
    if target["site"] == "x":
        mean = torch.tensor(target["mean"])
        L = torch.linalg.cholesky(torch.tensor(target["cov"]))

        def model():
            pyro.sample("x", dist.MultivariateNormal(mean, scale_tril=L))

        return model
    X, y = (torch.tensor(np.asarray(a)) for a in target["args"])

    def model():
        theta = pyro.sample("theta", dist.Normal(torch.zeros(X.shape[1]), 1.0).to_event(1))
        with pyro.plate("data", X.shape[0]):
            logits = torch.einsum("...k,nk->...n", theta, X)  # also for vectorised particles
            pyro.sample("y", dist.Bernoulli(logits=logits), obs=y)

    return model


def _kl(target, m, L):
    return float(gaussian_kl(m, L @ L.T, target["mean"], target["cov"]))


def _trace(step, get_ml, target, max_steps, chunk):
    def advance():
        for _ in range(chunk):
            step()

    return report.trace(advance, lambda: _kl(target, *get_ml()), max_steps, chunk)


def default_eta(target) -> float:
    """The driver's default η₀ = 0.5/λ_max(∇²V(m₀)) at m₀ = 0 (the base of the η multiples)."""
    fb = FBGVI(pyro_model(target), init_scale=1.0)
    fb.setup()
    return float(fb.eta0)


def run_fbgvi(target, seeds, max_steps, chunk, hessian, num_samples, antithetic, schedule, eta):
    runs, eta0 = [], default_eta(target)
    for seed in seeds:
        pyro.set_rng_seed(seed)
        fb = FBGVI(pyro_model(target), num_samples=num_samples, hessian=hessian,
                   antithetic=antithetic, schedule=schedule, step_size=eta * eta0,
                   init_scale=1.0)  # fmt: skip
        fb.setup()

        def get_ml(fb=fb):
            return fb.mean.numpy(), fb.scale_tril.numpy()

        runs.append(_trace(fb.step, get_ml, target, max_steps, chunk))
    return runs


def run_advi(target, seeds, max_steps, chunk, lr, decay, particles=1):
    runs, d = [], target["d"]
    for seed in seeds:
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        model = pyro_model(target)
        start = init_to_value(values={target["site"]: torch.zeros(d)})
        guide = AutoMultivariateNormal(model, init_scale=1.0, init_loc_fn=start)
        gamma = 0.01 ** (1.0 / max_steps) if decay else 1.0  # to lr/100 over the budget
        optim = pyro.optim.ExponentialLR(
            {"optimizer": torch.optim.Adam, "optim_args": {"lr": lr}, "gamma": gamma}
        )
        elbo = Trace_ELBO(num_particles=particles, vectorize_particles=particles > 1)
        svi = SVI(model, guide, optim, elbo)

        def step(svi=svi, optim=optim):
            svi.step()
            optim.step()

        def get_ml(guide=guide):
            with torch.no_grad():
                L = guide.scale[:, None] * guide.scale_tril
                return guide.loc.detach().numpy(), L.detach().numpy()

        runs.append(_trace(step, get_ml, target, max_steps, chunk))
    return runs


def hessian_cost_ratio(target, repeats: int = 60) -> float:
    """Measured t(value + gradient + Hessian) / t(value + gradient) − 1 on the driver's potential.

    The driver's own evaluation (``FlatPotential.value_grad_hessian``, a private helper: the point
    is to time exactly what a step pays), at random points around the target mean; best of 9
    interleaved rounds.
    """
    fb = FBGVI(pyro_model(target), init_scale=1.0)
    fb.setup()
    flat = fb._flat
    xs = torch.tensor(target["mean"]) + 0.3 * torch.randn(repeats, flat.dim, dtype=torch.float64)

    def block(hessian):
        t0 = time.perf_counter()
        for x in xs:
            flat.value_grad_hessian(x, hessian=hessian)
        return time.perf_counter() - t0

    # interleaved rounds, best of each: robust to the load of a shared machine
    rounds = [(block(False), block(True)) for _ in range(9)]
    return min(r[1] for r in rounds) / min(r[0] for r in rounds) - 1.0
