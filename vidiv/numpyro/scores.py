r"""Model scores in unconstrained space, the input of :func:`vidiv.diagnostics.ksd`.

Example::

    points, scores = vidiv.numpyro.model_scores(model, {"z": draws})
    print(vidiv.diagnostics.ksd(points, scores))
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.util import potential_energy, unconstrain_fn

from ..diagnostics.ksd import ModelScores
from ..errors import ModelStructureError

__all__ = ["model_scores", "ModelScores"]


def model_scores(model, samples: dict, *args, **kwargs) -> ModelScores:
    r"""Scores :math:`\nabla_u \log \tilde p(x, u)` of the model's log joint in UNCONSTRAINED
    coordinates :math:`u = T^{-1}(z)` (Jacobian included, i.e. minus the gradient of NumPyro's
    ``potential_energy``), at each constrained draw ``samples[site][i]``; ``jax.vmap`` over draws.

    Returns numpy arrays ``points[site]`` = u and ``scores[site]``, each (n, *unconstrained shape).
    """
    if not isinstance(samples, dict) or not samples:
        raise ModelStructureError("samples must be a non-empty dict {site: (n, *shape) draws}.")
    vals = {k: jnp.asarray(v) for k, v in samples.items()}
    n = {v.shape[0] for v in vals.values()}
    if len(n) != 1:
        raise ModelStructureError(f"the sites have different numbers of draws: {sorted(n)}.")

    def to_unconstrained(z):
        return unconstrain_fn(model, args, kwargs, z)

    def score(u):
        return jax.grad(lambda uu: -potential_energy(model, args, kwargs, uu))(u)

    points = jax.vmap(to_unconstrained)(vals)
    grads = jax.jit(jax.vmap(score))(points)
    return ModelScores(
        {k: np.asarray(v, dtype=np.float64) for k, v in points.items()},
        {k: np.asarray(v, dtype=np.float64) for k, v in grads.items()},
    )
