r"""Log-variance loss (VarGrad; Richter, Boustati, Nüsken, Ruiz & Akyildiz, NeurIPS 2020).

:math:`L_{LV} = \widehat{\mathrm{Var}}_s[\log q(z_s) - \log p(x, z_s)]` over samples drawn from a
*detached* copy of q. Its gradient is
:math:`\frac{2}{S-1}\sum_s (f_s - \bar f)\nabla\log q(z_s) = 2\cdot\frac1S\sum_s (f_s - \bar f_{-s})
\nabla\log q(z_s)`: twice the score-function KL gradient with a leave-one-out baseline, so it
needs no reparameterisation and works for discrete latents.

Example
-------
>>> import numpy as np
>>> from vidiv.estimators import log_variance
>>> float(log_variance(np.array([0.0, 1.0, 2.0]), np.zeros(3)))
1.0
"""

from __future__ import annotations

from .._backend import Array, namespace
from ._checks import check_log_weights, check_no_zero_weights, check_pair

__all__ = ["log_variance"]


def log_variance(log_p: Array, log_q: Array) -> Array:
    """Unbiased variance over particles (axis 0) of ``log_q - log_p``; needs ``S >= 2``.

    Bad input: every log weight must be finite. NaN / ``+inf`` / all ``-inf`` raise
    :class:`~vidiv.errors.NonFiniteError` as in the bounds, and so does a single ``-inf`` (a
    zero-weight particle has an infinite log ratio, so the variance is infinite): drop such
    particles first. Under ``jax.jit`` the value there is NaN or ``+inf``, never finite.
    """
    check_pair(log_p, log_q, min_particles=2)
    log_w = log_p - log_q
    check_log_weights(log_w, "log_variance log weights log_p - log_q")
    check_no_zero_weights(log_w, "log weights log_p - log_q", "the log-variance loss")
    xp = namespace(log_p, log_q)
    f = log_q - log_p
    S = f.shape[0]
    centred = f - xp.mean(f, axis=0)
    return xp.sum(centred * centred, axis=0) / (S - 1)
