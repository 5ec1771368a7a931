"""NumPyro side of FBGVI: structure checks, the flat unconstrained potential, flatten order.

The latent vector is ordered like ``numpyro.infer.autoguide.AutoMultivariateNormal``'s (sites in
trace order, each raveled), so ``auto_loc`` / ``auto_scale_tril`` can be written straight from (m,
L).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.infer.util import initialize_model

from vidiv.errors import (
    ModelStructureError,
    model_params_error,
    point_mass_latent_error,
)

from ._traces import check_observed_sites, delta_of

__all__ = ["check_structure", "check_params_and_point_masses", "FlatPotential"]

_LIMITATION = (
    "FBGVI fits a Gaussian over ALL latent sites mapped to unconstrained space and needs the "
    "gradient (and Hessian) of the full-data potential V = -log p(x, z)"
)


def _shown(name: str, value: Any) -> str:
    try:  # concrete values are shown; traced ones (under eval_shape/jit) only by name
        v = np.asarray(value)
    except Exception:  # noqa: BLE001 - a tracer
        return name
    return f"{name} = {v.round(4).tolist()}" if v.size <= 4 else name


def check_params_and_point_masses(trace: dict, driver: str) -> None:
    """Refuse model parameters (``numpyro.param``), which the particle and Gaussian drivers
    cannot learn, latent point masses (``Delta``), which have no density to move, and NaN /
    +-inf observed data (named before the host's "Cannot find valid initial parameters").

    ``trace`` is a ``handlers.trace`` of the model; ``driver`` names the caller in messages."""
    params = {n: s["value"] for n, s in trace.items() if s["type"] == "param"}
    if params:
        shown = [_shown(n, v) for n, v in params.items()]
        hide = "numpyro.handlers.block(model, hide_fn=lambda site: site['type'] == 'param')"
        raise model_params_error(driver, "numpyro", shown, hide)
    for name, site in trace.items():
        if site["type"] == "sample" and not site["is_observed"] and delta_of(site["fn"]):
            raise point_mass_latent_error(driver, "numpyro", name)
    check_observed_sites(trace, driver)


def check_structure(model: Callable, rng_key: Any, args: tuple, kwargs: dict) -> None:
    """Raise ModelStructureError for model parameters, point-mass or discrete latents,
    subsampled plates or no latent site."""
    tr = handlers.trace(handlers.seed(model, rng_key)).get_trace(*args, **kwargs)
    check_params_and_point_masses(tr, "FBGVI")
    latent = []
    for name, site in tr.items():
        if site["type"] == "plate":
            size, sub = site["args"][0], site["args"][1]
            if sub is not None and sub != size:
                raise ModelStructureError(
                    f"plate {name!r} is subsampled (subsample_size={sub} of size={size}). "
                    f"{_LIMITATION}, so it cannot use minibatches: remove subsample_size."
                )
        if site["type"] == "sample" and not site["is_observed"]:
            if getattr(site["fn"], "is_discrete", False) or site["infer"].get("enumerate"):
                raise ModelStructureError(
                    f"latent site {name!r} is discrete ({type(site['fn']).__name__}). "
                    f"{_LIMITATION}; "
                    "marginalise it out in the model (e.g. a mixture distribution) or use "
                    "vidiv.numpyro.LogVariance / AlphaDivergence with a guide for it."
                )
            latent.append(name)
    if not latent:
        raise ModelStructureError(
            "the model has no latent sample site (every site is observed); there is nothing for "
            "FBGVI to fit."
        )


class FlatPotential:
    """V(u) on the flat unconstrained vector u (potential_fn of ``initialize_model``)."""

    def __init__(
        self,
        model: Callable,
        rng_key: Any,
        args: tuple,
        kwargs: dict,
        site_order: list[str],
        init_strategy: Callable | None = None,
    ):
        extra = {} if init_strategy is None else {"init_strategy": init_strategy}
        info = initialize_model(
            rng_key, model, model_args=args, model_kwargs=kwargs, dynamic_args=True, **extra
        )
        self._potential_gen = info.potential_fn
        self.postprocess_fn = info.postprocess_fn
        z0 = info.param_info.z
        missing = [k for k in site_order if k not in z0]
        if missing or len(site_order) != len(z0):
            raise ModelStructureError(
                f"the guide's latent sites {site_order} do not match the model's unconstrained "
                f"sites {list(z0)}; check that the model is deterministic in its structure."
            )
        self.order = list(site_order)
        self.shapes = {k: jnp.shape(z0[k]) for k in self.order}
        self.sizes = [int(jnp.size(z0[k])) for k in self.order]
        self.init_flat = self.flatten(z0)
        self.dim = int(sum(self.sizes))

    def flatten(self, z: dict) -> jax.Array:
        return jnp.concatenate([jnp.reshape(z[k], (-1,)) for k in self.order])

    def unflatten(self, u: jax.Array) -> dict:
        out, start = {}, 0
        for k, n in zip(self.order, self.sizes, strict=True):
            out[k] = jnp.reshape(u[start : start + n], self.shapes[k])
            start += n
        return out

    def potential(self, args: tuple, kwargs: dict) -> Callable[[jax.Array], jax.Array]:
        pot = self._potential_gen(*args, **kwargs)
        return lambda u: pot(self.unflatten(u))
