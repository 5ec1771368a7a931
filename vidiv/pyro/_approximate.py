"""``approximate``: one call from a Pyro model to a checked posterior approximation.

The stages and the choice between them live in :mod:`vidiv.workflow.plan` (shared with
``vidiv.numpyro.approximate``); this module fits each stage with Pyro. The guides' parameters
live in Pyro's param store under ``approximate.<stage>.*`` (each stage its own names, so no
stage overwrites another's and a previous call's values are replaced, not reused).
"""

from __future__ import annotations

import importlib
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pyro
import torch
from pyro.infer import SVI
from pyro.infer.autoguide import AutoMultivariateNormal
from pyro.infer.autoguide.initialization import init_to_value

from ..diagnostics import diagnose
from ..errors import InvalidArgumentError, NonFiniteError, check_num_particles
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

__all__ = ["approximate"]

HOST = importlib.import_module("vidiv.pyro")  # the objectives of the mass-covering stages


def _named(guide: AutoMultivariateNormal, stage: str) -> AutoMultivariateNormal:
    """``guide`` with its param-store names under ``approximate.<stage>`` (any left over from
    a previous call are dropped first, so their shapes and values cannot leak in)."""
    prefix = f"approximate.{stage}"
    store = pyro.get_param_store()
    for name in [n for n in store.keys() if n.startswith(prefix + ".")]:
        del store[name]
    guide._pyro_name = prefix
    return guide


def _snapshot(guide) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in guide.named_parameters()}


class _Stages:
    """The Pyro fits of :class:`vidiv.workflow.plan.Stages`."""

    def __init__(self, model: Callable, args: tuple, kwargs: dict, seed: int, num_draws: int):
        self.model, self.args, self.kwargs = model, args, kwargs
        self.seed, self.num_draws = seed, num_draws

    def laplace(self):
        from ._laplace import laplace_for

        return laplace_for("approximate", self.model, self.args, self.kwargs, self.seed)

    def _guide(self, lap, stage: str) -> AutoMultivariateNormal:
        at_mode = init_to_value(values={k: torch.as_tensor(v) for k, v in lap.constrained.items()})
        guide = _named(AutoMultivariateNormal(self.model, init_loc_fn=at_mode), stage)
        lap.set_guide(guide, *self.args, **self.kwargs)
        return guide

    def _finish(self, method: str, guide, losses, seconds, num_steps, stopped,
                driver=None) -> Fit:
        from .results import to_datatree

        torch.manual_seed(self.seed + 1)  # the draws of the DataTree: the same for every stage
        dt = to_datatree(self.model, guide, *self.args, num_samples=self.num_draws,
                         losses=np.asarray(losses), objective=LABELS[method], **self.kwargs)
        return Fit(method, guide, _snapshot(guide), dt, diagnose(dt), seconds, num_steps,
                   stopped, _guide_sampler(guide, self.model, self.args, self.kwargs), driver)

    def fit_laplace(self, lap) -> Fit:
        return self._finish("laplace", self._guide(lap, "laplace"), np.zeros(0), 0.0, 0, False)

    def fit_fbgvi(self, lap, num_steps: int, progress: Progress) -> Fit:
        from .fbgvi import FBGVI

        progress.stage(LABELS["fbgvi"])
        torch.manual_seed(self.seed)
        t0 = time.perf_counter()
        fb = FBGVI(self.model, init=lap)
        _named(fb.guide, "fbgvi")
        stop, losses, stopped = plateau(), [], False
        for i in range(num_steps):
            try:
                losses.append(fb.step(*self.args, **self.kwargs))
            except NonFiniteError as err:  # the last finite state is kept: stop there
                warnings.warn(f"approximate: {err}", RuntimeWarning, stacklevel=4)
                break
            if (i + 1) % CHUNK == 0:
                progress.advance(CHUNK)
                if stop.update(np.asarray(losses)) and i + 1 < num_steps:
                    stopped = True
                    break
        progress.advance(len(losses) % CHUNK)
        losses = np.asarray(losses)
        return self._finish("fbgvi", fb.guide, losses, time.perf_counter() - t0, fb.num_steps,
                            stopped, fb)

    def fit_svi(self, method: str, start: Fit | None, lap, num_steps: int,
                progress: Progress) -> Fit:
        from .monitor import fit

        progress.stage(LABELS[method])
        torch.manual_seed(self.seed)
        t0 = time.perf_counter()
        guide = self._guide(lap, method)
        if start is not None and isinstance(start.guide, AutoMultivariateNormal):
            # the previous stage's Gaussian, copied into this stage's own parameters
            with torch.no_grad():
                mine = dict(guide.named_parameters())
                for k, v in start.params.items():
                    mine[k].copy_(v)
        lr = learning_rate(lap.sd_min())
        optim = pyro.optim.ClippedAdam({"lr": lr, "lrd": LR_DECAY ** (1 / num_steps)})
        svi = SVI(self.model, guide, optim, loss=make_loss(HOST, method))
        res = fit(svi, num_steps, *self.args, monitor_every=CHUNK, num_khat_samples=0,
                  progress_bar=False, early_stop=plateau(), **self.kwargs)
        progress.advance(num_steps)
        return self._finish(method, guide, res.losses, time.perf_counter() - t0, res.num_steps,
                            res.stopped_early)

    def fit_msvgd(self, lap, num_steps: int, progress: Progress) -> Fit:
        from .msvgd import MirroredSVGD

        progress.stage(LABELS["msvgd"])
        torch.manual_seed(self.seed)
        t0 = time.perf_counter()
        init = _laplace_particles(self.model, self.args, self.kwargs, lap, MSVGD_PARTICLES,
                                  self.seed)
        lr = learning_rate(lap.sd_min())
        optim = pyro.optim.ClippedAdam({"lr": lr, "lrd": LR_DECAY ** (1 / num_steps)})
        ms = MirroredSVGD(self.model, MSVGD_PARTICLES, optim=optim, init=init,
                          name="approximate.msvgd.particles")
        for _ in range(num_steps):
            ms.step(*self.args, **self.kwargs)
        progress.advance(num_steps)
        seconds = time.perf_counter() - t0
        dt = ms.to_datatree(*self.args, **self.kwargs)
        particles = ms.get_samples()

        def sampler(n: int, seed: Any) -> dict:
            if n > MSVGD_PARTICLES:
                raise InvalidArgumentError(
                    f"MirroredSVGD holds {MSVGD_PARTICLES} particles; ask for at most that many.")
            return {k: v[:n] for k, v in particles.items()}

        return Fit("msvgd", None, particles, dt, diagnose(dt), seconds, ms.num_steps, False,
                   sampler, ms)

    def finalize(self, fit: Fit) -> None:
        """Write the chosen fit's parameters back (its guide's names are its own, but the user
        gets them as they were when its diagnostics were computed)."""
        if fit.guide is not None:
            with torch.no_grad():
                for k, v in dict(fit.guide.named_parameters()).items():
                    v.copy_(fit.params[k])


def _guide_sampler(guide, model, args, kwargs) -> Callable[[int, Any], dict]:
    def sample(n: int, seed: Any) -> dict:
        from torch.distributions import biject_to

        seed = 0 if seed is None else _check_seed(seed, "get_samples")
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            z = guide.get_posterior(*args, **kwargs).sample((n,))
            return {site["name"]: biject_to(site["fn"].support)(u)
                    for site, u in guide._unpack_latent(z)}
    return sample


def _laplace_particles(model, args, kwargs, lap, n: int, seed: int) -> dict:
    """``n`` draws from the Laplace Gaussian, as constrained values per site."""
    from torch.distributions import biject_to

    order = list(lap.site_shapes)
    loc, cov = lap.reordered(order)
    u = loc + np.random.default_rng(seed).standard_normal((n, loc.size)) @ np.linalg.cholesky(
        cov).T
    with pyro.poutine.block(), torch.no_grad():
        tr = pyro.poutine.trace(model).get_trace(*args, **kwargs)
    out, start = {}, 0
    for k in order:
        size = int(np.prod(lap.site_shapes[k], dtype=int))
        z = torch.as_tensor(u[:, start:start + size].reshape((n, *lap.site_shapes[k])))
        out[k] = biject_to(tr.nodes[k]["fn"].support)(z)
        start += size
    return out


def _check_seed(seed: Any, who: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise InvalidArgumentError(f"{who}: seed must be an integer or None, got {seed!r}.")
    return int(seed)


def approximate(
    model: Callable,
    *args: Any,
    method: str = "auto",
    seed: int | None = None,
    num_steps: int | None = None,
    num_draws: int = 1000,
    progress_bar: bool = True,
    **kwargs: Any,
) -> Approximation:
    r"""A checked posterior approximation of a Pyro ``model`` in one call.

    The Pyro twin of :func:`vidiv.numpyro.approximate` (same stages, choice and result; see
    :mod:`vidiv.workflow.plan`): ``method="auto"`` runs the Laplace approximation, FB-GVI from
    it, the verdict of :func:`vidiv.diagnostics.diagnose` and, if that is not "good"/"usable",
    ``ChiSquaredVIS`` then ``AlphaDivergence(α=0.5)`` from the FB-GVI Gaussian, and returns the
    best fit with its own report. ``seed`` (default 0) seeds every stage; Pyro's global RNG
    state is restored afterwards. The guide's parameters stay in the param store under
    ``approximate.<stage>.*``.

    Examples
    --------
    >>> import torch, pyro, pyro.distributions as dist, vidiv.pyro
    >>> def model(x):
    ...     z = pyro.sample("z", dist.Normal(0.0, 2.0))
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> post = vidiv.pyro.approximate(model, torch.ones(4, dtype=torch.float64),
    ...                               progress_bar=False)
    >>> post.method, post.report.verdict
    ('fbgvi', 'good')
    >>> round(float(post.get_samples(4000)["z"].mean()), 1)  # exact: 16/17 = 0.94
    0.9
    """
    seed = 0 if seed is None else _check_seed(seed, "approximate")
    num_draws = check_num_particles(num_draws, name="num_draws")
    stages = _Stages(model, args, kwargs, seed, num_draws)
    with torch.random.fork_rng(devices=[]):
        return run_plan(stages, method, num_steps, progress_bar, "pyro")
