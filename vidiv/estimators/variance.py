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
from ._checks import check_pair

__all__ = ["log_variance"]


def log_variance(log_p: Array, log_q: Array) -> Array:
    """Unbiased variance over particles (axis 0) of ``log_q - log_p``; needs ``S >= 2``."""
    check_pair(log_p, log_q, min_particles=2)
    xp = namespace(log_p, log_q)
    f = log_q - log_p
    S = f.shape[0]
    centred = f - xp.mean(f, axis=0)
    return xp.sum(centred * centred, axis=0) / (S - 1)
