r"""Laplace approximation of a Pyro model in its unconstrained space.

``u* = argmin V(u)`` with ``V(u) = -log p(x, T(u)) - log|det J_T(u)|`` (the potential of
``pyro.infer.mcmc.util.initialize_model``, flattened by FBGVI's
:class:`~vidiv.pyro._fbgvi_model.FlatPotential`), ``Σ = (∇²V(u*))⁻¹`` by reverse-over-reverse
autodiff; see :mod:`vidiv.gaussian.laplace` for the optimiser and the result.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numpy as np
import pyro
import torch
from pyro.infer.autoguide.initialization import (
    InitMessenger,
    init_to_median,
    init_to_sample,
    init_to_uniform,
)
from torch.distributions import biject_to, transform_to

from vidiv.errors import (
    InvalidArgumentError,
    ModelStructureError,
    NonFiniteError,
    no_finite_start_error,
)
from vidiv.gaussian.laplace import LaplaceResult, fit, unsupported_guide_error
from vidiv.pyro._fbgvi_model import FlatPotential, check_structure
from vidiv.pyro._traces import nonfinite_sites

__all__ = ["laplace", "LaplaceResult"]

_STRATEGIES = (("init_to_median", init_to_median), ("init_to_uniform", init_to_uniform),
               ("init_to_sample", init_to_sample))  # fmt: skip


def _latent_shapes(model: Callable, args: tuple, kwargs: dict,
                   who: str) -> dict[str, torch.Size]:
    """FBGVI's structure checks (messages naming ``who``); unconstrained shapes, trace order."""
    try:
        check_structure(model, args, kwargs)
    except ModelStructureError as err:
        raise ModelStructureError(str(err).replace("FBGVI", who)) from None
    with pyro.poutine.block(), torch.no_grad():
        tr = pyro.poutine.trace(model).get_trace(*args, **kwargs)
    return {
        n: biject_to(s["fn"].support).inv(s["value"]).shape
        for n, s in tr.nodes.items()
        if s["type"] == "sample" and not s["is_observed"] and type(s["fn"]).__name__ != "_Subsample"
    }


def laplace(
    model: Callable,
    *args: Any,
    seed: int | None = None,
    num_draws: int = 1000,
    **kwargs: Any,
) -> LaplaceResult:
    r"""The Laplace approximation of ``model``'s posterior in its unconstrained space.

    .. math::

        u^* = \operatorname{argmin}_u V(u), \quad
        V(u) = -\log p(x, T(u)) - \log|\det J_T(u)|, \quad
        \Sigma = (\nabla^2 V(u^*))^{-1}

    ``V`` is minimised by L-BFGS-B from the first finite start among Pyro's ``init_to_median``,
    ``init_to_uniform`` and ``init_to_sample``; the Hessian is taken by autodiff at ``u*``. Run
    the model in float64 (``torch.set_default_dtype(torch.float64)``): in float32 a Hessian that
    is not positive definite or badly conditioned warns so. Pyro's ``dist.ImproperUniform``
    cannot be traced by Pyro's own ``initialize_model`` (it has no sampler): write a flat prior
    as a masked proper one, e.g. ``dist.LogNormal(0, 1).mask(False)`` for a positive site.

    Parameters
    ----------
    model
        A Pyro model with continuous latent sites and no ``pyro.param``.
    *args, **kwargs
        The model's arguments.
    seed
        Seeds the init strategies' prior draws and the k-hat draws (``None``: 0); the global
        torch RNG is left as it was.
    num_draws
        Draws from ``q`` for PSIS k-hat (0: skip, ``khat = nan``).

    Returns
    -------
    LaplaceResult
        ``mean``, ``cov``, ``scale_tril``, ``site_shapes`` (trace order, the order of
        ``AutoMultivariateNormal``), ``constrained``, ``success``, ``khat``;
        ``set_guide(guide, *args)`` starts ``AutoMultivariateNormal`` / ``AutoNormal`` at it,
        ``start(fbgvi, *args)`` an FBGVI driver.

    Raises
    ------
    ModelStructureError
        Discrete or point-mass latents, ``pyro.param`` sites, no latent site, subsampling.
    NonFiniteError
        No start where the log density is finite, or a non-finite Hessian at the mode.

    Examples
    --------
    >>> import torch, pyro, pyro.distributions as dist, vidiv.pyro
    >>> torch.set_default_dtype(torch.float64)
    >>> def model(x):
    ...     z = pyro.sample("z", dist.Normal(0.0, 2.0))
    ...     pyro.sample("x", dist.Normal(z, 1.0).expand([4]).to_event(1), obs=x)
    >>> x = torch.ones(4, dtype=torch.float64)
    >>> lap = vidiv.pyro.laplace(model, x)
    >>> round(float(lap.mean[0]), 6), round(float(lap.cov[0, 0]), 6)  # 16/17, 4/17
    (0.941176, 0.235294)
    >>> fb = vidiv.pyro.FBGVI(model)
    >>> lap.start(fb, x)                                 # fb.set_gaussian(lap.mean, lap.cov)
    >>> bool(torch.allclose(fb.mean, torch.as_tensor(lap.mean)))
    True
    """
    if seed is None:
        seed = 0
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InvalidArgumentError(f"laplace: seed must be an integer or None, got {seed!r}.")
    return laplace_for("laplace", model, args, kwargs, int(seed), num_draws)


def laplace_for(who: str, model: Callable, args: tuple, kwargs: dict, seed: int,
                num_draws: int = 1000) -> LaplaceResult:
    """:func:`laplace` on behalf of the driver ``who`` (errors name it), Pyro's RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return _laplace(model, args, kwargs, int(seed), num_draws, who)


def _laplace(model: Callable, args: tuple, kwargs: dict, seed: int, num_draws: int, who: str):
    shapes = _latent_shapes(model, args, kwargs, who)
    try:
        flat = FlatPotential(model, args, kwargs, shapes)
    except NonFiniteError:
        raise no_finite_start_error(who, nonfinite_sites(model, args, kwargs)) from None
    order = flat.order

    def start(strategy):
        def make():
            with pyro.poutine.block(), torch.no_grad():
                tr = pyro.poutine.trace(InitMessenger(strategy)(model)).get_trace(*args, **kwargs)
            return torch.cat([flat.transforms[k](tr.nodes[k]["value"]).reshape(-1) for k in order])
        return make

    probe = start(init_to_uniform)()
    dtype = probe.dtype

    def as_t(u):
        return torch.as_tensor(np.asarray(u), dtype=dtype)

    def value_and_grad(u: np.ndarray):
        v, g, _ = flat.value_grad_hessian(as_t(u), hessian=False)
        return float(v), g.numpy().astype(np.float64)

    def hessian(u: np.ndarray):
        return flat.value_grad_hessian(as_t(u), hessian=True)[2].detach().numpy()

    def batch(U: np.ndarray):
        return flat.batch_value_grad_hessian(as_t(U), hessian=False)[0].numpy()

    def no_start(tried: list[str]):
        return no_finite_start_error(who, nonfinite_sites(model, args, kwargs))

    fit_who = who if who == "laplace" else f"{who} (Laplace start)"
    core = fit(value_and_grad, hessian, batch, [(n, start(s)) for n, s in _STRATEGIES],
               who=fit_who, low_precision=dtype == torch.float32, backend="pyro",
               num_draws=num_draws, seed=seed, on_no_start=no_start)  # fmt: skip

    def constrained(x):
        u = flat.unflatten(as_t(x))
        return {k: flat.transforms[k].inv(u[k]).detach().numpy() for k in order}

    return LaplaceResult(
        mean=core.mean, cov=core.cov, scale_tril=core.scale_tril,
        site_shapes={k: tuple(flat.shapes[k]) for k in order},
        constrained=constrained(core.mean),
        success=core.success, khat=core.khat, potential=core.potential,
        init_strategy=core.init_strategy, init_mean=core.init_mean,
        init_constrained=constrained(core.init_mean), backend="pyro",
    )  # fmt: skip


# ------------------------------------------------------------------ starting other things at q
def _built(guide: Any, args: tuple, kwargs: dict) -> None:
    if getattr(guide, "prototype_trace", None) is None:
        with pyro.poutine.block(), torch.no_grad():
            guide(*args, **kwargs)


def init_params(lap: LaplaceResult, guide: Any, *args: Any, **kwargs: Any) -> dict:
    """Constrained guide parameters for ``lap``: ``AutoMultivariateNormal``'s ``loc``, ``scale``
    and unit lower ``scale_tril`` (``L = diag(scale) · scale_tril``), ``AutoNormal``'s
    ``locs.<site>`` and ``scales.<site>``."""
    from pyro.infer.autoguide import AutoMultivariateNormal, AutoNormal

    _built(guide, args, kwargs)
    if isinstance(guide, AutoMultivariateNormal):
        loc, cov = lap.reordered(list(guide._unconstrained_shapes))
        L = torch.linalg.cholesky(torch.as_tensor(cov, dtype=guide.loc.dtype))
        scale = torch.diagonal(L)
        return {"loc": torch.as_tensor(loc, dtype=L.dtype), "scale": scale,
                "scale_tril": L / scale[:, None]}  # fmt: skip
    if isinstance(guide, AutoNormal):
        sd = np.sqrt(np.diag(lap.cov))
        out = {}
        for k, s in lap.site_slices().items():
            like = getattr(guide.locs, k)
            out[f"locs.{k}"] = torch.as_tensor(lap.mean[s], dtype=like.dtype).reshape(like.shape)
            out[f"scales.{k}"] = torch.as_tensor(sd[s], dtype=like.dtype).reshape(like.shape)
        return out
    raise unsupported_guide_error(guide)


def set_guide(lap: LaplaceResult, guide: Any, *args: Any, **kwargs: Any) -> None:
    """Write :func:`init_params` into ``guide``'s parameters in place (shared with the param
    store); ``args``/``kwargs`` build the guide first if it has not run yet."""
    from pyro.infer.autoguide import AutoMultivariateNormal

    from vidiv.pyro.fbgvi import FBGVI

    values = init_params(lap, guide, *args, **kwargs)
    if isinstance(guide, AutoMultivariateNormal):  # FBGVI's writer: the same parameterisation
        L = values["scale"][:, None] * values["scale_tril"]
        FBGVI._write_guide(types.SimpleNamespace(guide=guide, mean=values["loc"], scale_tril=L))
        return
    params = dict(guide.named_parameters())
    with torch.no_grad():
        for name, value in values.items():
            module, site = name.split(".", 1)
            if name in params:
                params[name].copy_(value)
            else:
                constraint = getattr(guide, module)._pyro_params[site][0]
                params[name + "_unconstrained"].copy_(transform_to(constraint).inv(value))


def start(lap: LaplaceResult, fbgvi: Any, *args: Any, state: Any = None, **kwargs: Any) -> None:
    """``fbgvi.set_gaussian(mean, cov)`` in the driver's site order (set up from ``args``)."""
    if fbgvi._flat is None:
        fbgvi.setup(*args, **kwargs)
    fbgvi.set_gaussian(*lap.reordered(list(fbgvi.latent_shapes)))
