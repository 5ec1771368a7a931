"""Importance weights, log Z, ESS and the DataTree of a fitted NumPyro ``DiffusionGuide``.

Each trajectory's log weight is :math:`\\log\\rho(x_N) - \\log q(\\text{path})` with
:math:`\\rho` the model's joint density in unconstrained space (log-det-Jacobian included), so
:math:`\\frac1S\\sum_s e^{\\log w_s}` is an unbiased estimate of the evidence :math:`Z = p(x)`.
Trajectories whose weight is not finite (or whose ``-log w`` exceeds ``vidiv.paths.MAX_RND``) are
dropped and counted, as in the training filter.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from ..estimators import weights
from ..paths.filter import MAX_RND, check_trajectories


class DiffusionResultsMixin:
    """Methods shared by the NumPyro diffusion guide (needs ``simulate`` and ``_params``)."""

    def _log_densities(self, rng_key, params, num_samples: int, args, kwargs):
        """``(x_N, log rho(x_N), log q)`` for ``num_samples`` trajectories (jit-compiled once per
        ``num_samples`` and argument shapes)."""
        cache = self.__dict__.setdefault("_jit_cache", {})
        fn = cache.get(num_samples)
        if fn is None:

            def run(key, params, args, kwargs):
                net, coef = handlers.substitute(self._params, data=params)()
                x, log_q = self.simulate(net, coef, key, num_samples, "lv", args, kwargs)
                # model param sites take their fitted values (the potential alone would use
                # their init values)
                with handlers.block(), handlers.substitute(data=params):
                    log_p = self._log_target_fn(args, kwargs)(x)
                return x, log_p, log_q

            fn = cache[num_samples] = jax.jit(run)
        return fn(rng_key, params, tuple(args), dict(kwargs))

    def sample_with_log_weights(self, rng_key, params, num_samples: int, *args, **kwargs):
        """``(samples, log_w)``: constrained samples ``{site: (S, *shape)}`` and the ``(S,)`` log
        importance weights ``log p(x, z) - log q`` of their trajectories."""
        if self.prototype_trace is None:
            handlers.seed(self, rng_key)(*args, **kwargs)
        x, log_p, log_q = self._log_densities(rng_key, params, int(num_samples), args, kwargs)
        return self._unpack_and_constrain(x, params), log_p - log_q

    def log_z(self, rng_key, params, num_samples: int, *args, **kwargs) -> dict[str, Any]:
        """IS estimate of the log evidence with its standard error, the IS effective sample size
        and the number of dropped (non-finite) trajectories, as python floats."""
        if self.prototype_trace is None:
            handlers.seed(self, rng_key)(*args, **kwargs)
        _, log_p, log_q = self._log_densities(rng_key, params, int(num_samples), args, kwargs)
        log_w = np.asarray(log_p - log_q, dtype=np.float64)
        keep = np.isfinite(log_w) & (-log_w < MAX_RND)
        check_trajectories(keep, "trajectories")
        lz = weights.log_z(log_w[keep])
        return {
            "log_z": float(lz.log_z),
            "se": float(lz.se),
            "ess": float(weights.is_ess(log_w[keep])),
            "num_samples": int(num_samples),
            "num_dropped": int((~keep).sum()),
        }

    def to_datatree(self, rng_key, params, num_samples: int, *args, losses=None, **kwargs):
        """Draws, ``log_p`` / ``log_q`` (unconstrained space; their difference is the log weight)
        and the loss trace as an ArviZ ``DataTree`` (``vidiv.diagnostics.to_datatree``)."""
        from ..diagnostics import to_datatree

        if self.prototype_trace is None:
            handlers.seed(self, rng_key)(*args, **kwargs)
        x, log_p, log_q = self._log_densities(rng_key, params, int(num_samples), args, kwargs)
        samples = self._unpack_and_constrain(x, params)
        samples = {k: np.asarray(v) for k, v in samples.items()}
        attrs = {
            "objective": f"diffusion guide ({self.estimator})",
            "backend": "numpyro",
            "guide": "DiffusionGuide",
            "num_steps": self.num_steps,
            **{f"sde_{k}": v for k, v in self.sde.describe().items()},
        }
        if losses is not None:
            losses = np.asarray(jnp.asarray(losses))
        return to_datatree(
            samples, np.asarray(log_p), np.asarray(log_q), losses=losses, attrs=attrs
        )
