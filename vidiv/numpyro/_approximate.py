"""``approximate``: one call from a NumPyro model to a checked posterior approximation.

The stages and the choice between them live in :mod:`vidiv.workflow.plan` (shared with
``vidiv.pyro.approximate``); this module fits each stage with NumPyro.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro import handlers
from numpyro.infer import SVI
from numpyro.infer.autoguide import AutoMultivariateNormal
from numpyro.infer.initialization import init_to_value

from ..diagnostics import diagnose
from ..errors import check_num_particles
from ..workflow.plan import (
    CHUNK,
    LABELS,
    LR_DECAY,
    MSVGD_PARTICLES,
    Fit,
    Progress,
    learning_rate,
    make_loss,
    plateau,
    run_plan,
)
from ..workflow.result import Approximation
from ._host import check_rng_key

__all__ = ["approximate"]

HOST = importlib.import_module("vidiv.numpyro")  # the objectives of the mass-covering stages


class _Stages:
    """The NumPyro fits of :class:`vidiv.workflow.plan.Stages`."""

    def __init__(self, model: Callable, args: tuple, kwargs: dict, rng_key: Any,
                 num_draws: int):
        self.model, self.args, self.kwargs = model, args, kwargs
        self.num_draws = num_draws
        (self.k_lap, self.k_fit, self.k_draw) = jax.random.split(rng_key, 3)

    def laplace(self):
        from ._laplace import laplace_for

        return laplace_for("approximate", self.model, self.args, self.kwargs, self.k_lap)

    def _guide(self, lap) -> AutoMultivariateNormal:
        at_mode = init_to_value(values={k: jnp.asarray(v) for k, v in lap.constrained.items()})
        return AutoMultivariateNormal(self.model, init_loc_fn=at_mode)

    def _finish(self, method: str, guide, params, losses, seconds, num_steps, stopped,
                driver=None) -> Fit:
        dt = _datatree(self.model, guide, params, self.args, self.kwargs, self.k_draw,
                       self.num_draws, losses, LABELS[method])
        return Fit(method, guide, params, dt, diagnose(dt), seconds, num_steps, stopped,
                   _guide_sampler(guide, params), driver)

    def fit_laplace(self, lap) -> Fit:
        guide = self._guide(lap)
        params = lap.init_params(guide, *self.args, **self.kwargs)
        return self._finish("laplace", guide, params, np.zeros(0), 0.0, 0, False)

    def fit_fbgvi(self, lap, num_steps: int, progress: Progress) -> Fit:
        from .fbgvi import FBGVI

        progress.stage(LABELS["fbgvi"])
        t0 = time.perf_counter()
        fb = FBGVI(self.model, init=lap)
        state = fb.init(self.k_fit, *self.args, **self.kwargs)
        stop, losses, done, stopped = plateau(), [], 0, False
        while done < num_steps:
            n = min(CHUNK, num_steps - done)
            res = fb.run(self.k_fit, n, *self.args, progress_bar=False, init_state=state,
                         **self.kwargs)
            state = res.state
            losses.append(np.asarray(res.losses))
            done += n
            progress.advance(n)
            if res.nonfinite_step is not None:
                break
            if stop.update(np.concatenate(losses)) and done < num_steps:
                stopped = True
                break
        jax.block_until_ready(res.params)
        seconds = time.perf_counter() - t0
        return self._finish("fbgvi", fb.guide, res.params, np.concatenate(losses), seconds,
                            done, stopped, fb)

    def fit_svi(self, method: str, start: Fit | None, lap, num_steps: int,
                progress: Progress) -> Fit:
        from .monitor import fit

        progress.stage(LABELS[method])
        t0 = time.perf_counter()
        if start is not None and isinstance(start.guide, AutoMultivariateNormal):
            guide, init_params = start.guide, dict(start.params)
        else:
            guide = self._guide(lap)
            init_params = lap.init_params(guide, *self.args, **self.kwargs)
        lr = learning_rate(lap.sd_min())
        optim = numpyro.optim.Adam(lambda i: lr * LR_DECAY ** (i / num_steps))
        svi = SVI(self.model, guide, optim, loss=make_loss(HOST, method))
        state = svi.init(self.k_fit, *self.args, init_params=init_params, **self.kwargs)
        res = fit(svi, self.k_fit, num_steps, *self.args, monitor_every=CHUNK,
                  num_khat_samples=0, progress_bar=False, early_stop=plateau(),
                  init_state=state, **self.kwargs)
        jax.block_until_ready(res.params)
        progress.advance(num_steps)
        seconds = time.perf_counter() - t0
        return self._finish(method, guide, res.params, res.losses, seconds, res.num_steps,
                            res.stopped_early)

    def fit_msvgd(self, lap, num_steps: int, progress: Progress) -> Fit:
        from .msvgd import MirroredSVGD

        progress.stage(LABELS["msvgd"])
        t0 = time.perf_counter()
        init = _laplace_particles(self.model, self.args, self.kwargs, lap, MSVGD_PARTICLES,
                                  self.k_draw)
        lr = learning_rate(lap.sd_min())
        ms = MirroredSVGD(self.model, MSVGD_PARTICLES, init=init,
                          optim=numpyro.optim.Adam(lambda i: lr * LR_DECAY ** (i / num_steps)))
        res = ms.run(self.k_fit, num_steps, *self.args, progress_bar=False, **self.kwargs)
        jax.block_until_ready(res.state)
        progress.advance(num_steps)
        seconds = time.perf_counter() - t0
        dt = ms.to_datatree(res, *self.args, **self.kwargs)
        particles = ms.get_samples(res.state)

        def sampler(n: int, seed: Any) -> dict:
            if n > MSVGD_PARTICLES:
                from ..errors import InvalidArgumentError

                raise InvalidArgumentError(
                    f"MirroredSVGD holds {MSVGD_PARTICLES} particles; ask for at most that many.")
            return {k: v[:n] for k, v in particles.items()}

        return Fit("msvgd", None, particles, dt, diagnose(dt), seconds, int(res.state.step),
                   False, sampler, ms)


def _datatree(model, guide, params, args, kwargs, key, num_draws, losses, objective):
    from .results import to_datatree

    return to_datatree(model, guide, params, *args, rng_key=key, num_samples=num_draws,
                       losses=np.asarray(losses), objective=objective, **kwargs)


def _guide_sampler(guide, params) -> Callable[[int, Any], dict]:
    def sample(n: int, seed: Any) -> dict:
        key = jax.random.PRNGKey(0) if seed is None else seed
        check_rng_key(key, "get_samples")
        return guide.sample_posterior(key, params, sample_shape=(n,))
    return sample


def _laplace_particles(model, args, kwargs, lap, n: int, key) -> dict:
    """``n`` draws from the Laplace Gaussian, as constrained values per site."""
    from numpyro.distributions import biject_to

    order = list(lap.site_shapes)
    loc, cov = lap.reordered(order)
    L = np.linalg.cholesky(cov)
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    u = loc + np.random.default_rng(seed).standard_normal((n, loc.size)) @ L.T
    with handlers.block():
        tr = handlers.trace(handlers.substitute(
            handlers.seed(model, key),
            data={k: jnp.asarray(v) for k, v in lap.constrained.items()})).get_trace(
                *args, **kwargs)
    out, start = {}, 0
    for k in order:
        size = int(np.prod(lap.site_shapes[k], dtype=int))
        z = jnp.asarray(u[:, start:start + size].reshape((n, *lap.site_shapes[k])))
        out[k] = biject_to(tr[k]["fn"].support)(z)
        start += size
    return out


def approximate(
    model: Callable,
    *args: Any,
    method: str = "auto",
    rng_key: Any = None,
    num_steps: int | None = None,
    num_draws: int = 1000,
    progress_bar: bool = True,
    **kwargs: Any,
) -> Approximation:
    r"""A checked posterior approximation of a NumPyro ``model`` in one call.

    ``method="auto"`` runs the Laplace approximation, FB-GVI from it, the verdict of
    :func:`vidiv.diagnostics.diagnose`, and, if that is not "good"/"usable", the mass-covering
    objectives (``ChiSquaredVIS``, then ``AlphaDivergence(α=0.5)``) from the FB-GVI Gaussian;
    it returns the best fit with *its* report (see :mod:`vidiv.workflow.plan`). A named
    ``method`` (``"laplace"``, ``"fbgvi"``, ``"vis"``, ``"alpha"``, ``"logvar"``,
    ``"msvgd"``) runs the Laplace start and that stage. Stochastic stages use Adam from
    :math:`\min(0.02, 0.1\,\sigma_{\min}^{\mathrm{Laplace}})`, decaying ×0.1 over the stage,
    and stop on a loss plateau.

    Parameters
    ----------
    model : the NumPyro model; ``*args, **kwargs`` are its arguments.
    method : ``"auto"`` or a stage's name.
    rng_key : a ``jax.random.PRNGKey`` (default ``PRNGKey(0)``).
    num_steps : at most this many steps per stage (default: each stage's, see
        ``vidiv.workflow.plan.DEFAULT_STEPS``).
    num_draws : draws in the result's DataTree (and for the verdict).
    progress_bar : one bar over all stages.

    Returns
    -------
    :class:`vidiv.workflow.Approximation` with ``.datatree``, ``.report``, ``.method``,
    ``.guide``, ``.params``, ``.get_samples(n)``, ``.summary()`` and ``.stages``.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist, vidiv.numpyro
    >>> jax.config.update("jax_enable_x64", True)
    >>> def model(x):
    ...     z = numpyro.sample("z", dist.Normal(0.0, 2.0))
    ...     numpyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> post = vidiv.numpyro.approximate(model, jax.numpy.ones(4), progress_bar=False)
    >>> post.method, post.report.verdict
    ('fbgvi', 'good')
    >>> round(float(post.get_samples(20000)["z"].mean()), 1)  # exact: 16/17 = 0.94
    0.9
    """
    key = jax.random.PRNGKey(0) if rng_key is None else rng_key
    check_rng_key(key, "approximate")
    num_draws = check_num_particles(num_draws, name="num_draws")
    stages = _Stages(model, args, kwargs, key, num_draws)
    return run_plan(stages, method, num_steps, progress_bar, "numpyro")
