"""One fitting function per (method, backend) for the demo; each returns a DataTree.

Every runner fits the bundled eight schools model (`vidiv._demo.models`) and hands its result to
ArviZ through the adapter's ``to_datatree``. Step sizes decay geometrically (x0.1 over the run):
constant Adam leaves variational fits visibly off.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import models

BACKENDS = tuple(
    b for b, mod in (("pyro", "pyro"), ("numpyro", "numpyro")) if importlib.util.find_spec(mod)
) or ("pyro", "numpyro")

METHODS: dict[str, str] = {
    "trace_elbo": "Trace_ELBO (host baseline)",
    "alpha": "AlphaDivergence(alpha=0.5)",
    "vis": "ChiSquaredVIS",
    "logvar": "LogVariance",
    "fbgvi": "FBGVI",
    "msvgd": "MirroredSVGD",
}

# full-run steps; VIDIV_SMOKE=1 (tests, tutorials) divides by 10
DEFAULT_STEPS = {
    "trace_elbo": 3000,
    "alpha": 3000,
    "vis": 3000,
    "logvar": 3000,
    "fbgvi": 1500,
    "msvgd": 1000,
}
NUM_DRAWS = 1000


def default_steps(method: str) -> int:
    smoke = os.environ.get("VIDIV_SMOKE", "0") not in ("", "0")
    return max(50, DEFAULT_STEPS[method] // 10) if smoke else DEFAULT_STEPS[method]


@dataclass
class Fit:
    method: str
    backend: str
    seconds: float
    datatree: object


MSVGD_PARTICLES = 100


def msvgd_init(seed: int) -> dict[str, np.ndarray]:
    """Particles around the prior median: SVGD moves a particle stranded in the HalfCauchy tail
    (tau ~ 50) only by its own weak score, so prior draws leave a few far out for a long time."""
    rng = np.random.default_rng(seed)
    n = MSVGD_PARTICLES
    return {
        "mu": rng.normal(0.0, 1.0, n),
        "tau": np.exp(rng.normal(np.log(3.0), 0.5, n)),
        "theta_trans": rng.normal(0.0, 1.0, (n, 8)),
    }


# ---------------------------------------------------------------------------- NumPyro
def _numpyro_loss(method: str):
    import numpyro.infer

    import vidiv.numpyro as vn

    return {
        "trace_elbo": lambda: numpyro.infer.Trace_ELBO(num_particles=8),
        "alpha": lambda: vn.AlphaDivergence(alpha=0.5, num_particles=16),
        "vis": lambda: vn.ChiSquaredVIS(num_particles=64),
        "logvar": lambda: vn.LogVariance(num_particles=16),
    }[method]()


def fit_numpyro(method: str, steps: int, seed: int, progress: bool) -> Fit:
    import jax
    import numpyro
    from numpyro.infer import SVI
    from numpyro.infer.autoguide import AutoMultivariateNormal

    import vidiv.numpyro as vn

    model = models.numpyro_model()
    key, draw_key = jax.random.split(jax.random.PRNGKey(seed))
    t0 = time.perf_counter()
    if method == "fbgvi":
        fb = vn.FBGVI(model, num_samples=4, antithetic=True, schedule="decay")
        res = fb.run(key, steps, progress_bar=progress)
        jax.block_until_ready(res.params)
        seconds = time.perf_counter() - t0
        dt = vn.to_datatree(
            model,
            fb.guide,
            res.params,
            rng_key=draw_key,
            num_samples=NUM_DRAWS,
            losses=np.asarray(res.losses),
            objective="FBGVI",
        )
    elif method == "msvgd":
        init = {k: jax.numpy.asarray(v) for k, v in msvgd_init(seed).items()}
        optim = numpyro.optim.Adam(lambda i: 0.05 * 0.1 ** (i / steps))
        ms = vn.MirroredSVGD(model, num_particles=MSVGD_PARTICLES, optim=optim, init=init)
        res = ms.run(key, steps, progress_bar=progress)
        seconds = time.perf_counter() - t0
        dt = ms.to_datatree(res.state)
    else:
        guide = AutoMultivariateNormal(model)
        optim = numpyro.optim.Adam(lambda i: 0.05 * 0.1 ** (i / steps))
        svi = SVI(model, guide, optim, loss=_numpyro_loss(method))
        res = svi.run(key, steps, progress_bar=progress)
        jax.block_until_ready(res.params)
        seconds = time.perf_counter() - t0
        dt = vn.to_datatree(
            model,
            guide,
            res.params,
            rng_key=draw_key,
            num_samples=NUM_DRAWS,
            losses=np.asarray(res.losses),
            objective=METHODS[method],
        )
    return Fit(method, "numpyro", seconds, dt)


# ---------------------------------------------------------------------------- Pyro
def _pyro_loss(method: str):
    import pyro.infer

    import vidiv.pyro as vp

    return {
        "trace_elbo": lambda: pyro.infer.Trace_ELBO(
            num_particles=8, vectorize_particles=True, max_plate_nesting=1
        ),
        "alpha": lambda: vp.AlphaDivergence(alpha=0.5, num_particles=16),
        "vis": lambda: vp.ChiSquaredVIS(num_particles=64),
        "logvar": lambda: vp.LogVariance(num_particles=16),
    }[method]()


def _pyro_loop(step: Callable[[], float], steps: int, progress: bool, desc: str) -> np.ndarray:
    from tqdm.auto import tqdm

    losses = np.empty(steps)
    bar = tqdm(range(steps), desc=desc, disable=not progress)
    for i in bar:
        losses[i] = step()
        if i % 50 == 0:
            bar.set_postfix(loss=f"{losses[i]:.4g}")
    return losses


def fit_pyro(method: str, steps: int, seed: int, progress: bool) -> Fit:
    import pyro
    import torch
    from pyro.infer import SVI
    from pyro.infer.autoguide import AutoMultivariateNormal

    import vidiv.pyro as vp

    torch.set_num_threads(1)
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    model = models.pyro_model()
    t0 = time.perf_counter()
    if method == "fbgvi":
        fb = vp.FBGVI(model, num_samples=4, antithetic=True, schedule="decay")
        losses = _pyro_loop(fb.step, steps, progress, "FBGVI")
        seconds = time.perf_counter() - t0
        dt = vp.to_datatree(
            model, fb.guide, num_samples=NUM_DRAWS, losses=losses, objective="FBGVI"
        )
    elif method == "msvgd":
        init = {k: torch.as_tensor(v) for k, v in msvgd_init(seed).items()}
        optim = pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.1 ** (1 / steps)})
        ms = vp.MirroredSVGD(model, num_particles=MSVGD_PARTICLES, optim=optim, init=init)
        losses = _pyro_loop(ms.step, steps, progress, "MirroredSVGD")
        seconds = time.perf_counter() - t0
        dt = ms.to_datatree()
    else:
        guide = AutoMultivariateNormal(model)
        optim = pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.1 ** (1 / steps)})
        svi = SVI(model, guide, optim, loss=_pyro_loss(method))
        losses = _pyro_loop(svi.step, steps, progress, METHODS[method])
        seconds = time.perf_counter() - t0
        dt = vp.to_datatree(
            model, guide, num_samples=NUM_DRAWS, losses=losses, objective=METHODS[method]
        )
    return Fit(method, "pyro", seconds, dt)


RUNNERS = {"pyro": fit_pyro, "numpyro": fit_numpyro}
