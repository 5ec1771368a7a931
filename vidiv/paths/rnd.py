r"""Path log Radon–Nikodym derivative under Euler–Maruyama (Richter & Berner, ICLR 2024, §2–3).

For the discretised controlled chain :math:`X_{k+1}=X_k+(\mu_k+\sigma_k v_k)\Delta t_k+\sigma_k
\Delta W_k` and its reference (:math:`v=0`), the ratio of the two Gaussian transition densities
is exactly (no discretisation error in the ratio itself)

.. math:: \log\frac{dQ^{u}}{dP^{\rm ref}}(X_{0:N})
          = \sum_k u_k\cdot\big(v_k-\tfrac12u_k\big)\Delta t_k + u_k\cdot\Delta W_k,

with :math:`u_k=u(X_k,t_k)` and :math:`v=u` on policy. Two forms of the running cost, equal in
value at :math:`v=u`:

``"lv"``  :math:`u\cdot(\mathrm{sg}(u)-\tfrac12u)\Delta t`: the trajectory is driven by the
          detached control :math:`v=\mathrm{sg}(u)`, so gradients enter only through
          :math:`u` in this term and in the Itô term :math:`u\cdot\Delta W` (log-variance loss).
``"kl"``  :math:`\tfrac12\|u\|^2\Delta t`: the trajectory itself is reparameterised (path KL).

The *path log density* a guide reports is
:math:`\log q = \sum_k[\text{running}_k + u_k\cdot\Delta W_k] + \log p_{\rm ref}(X_N)`, a density
with respect to :math:`P^{\rm ref}(\cdot\mid X_N)\otimes\mathrm{Leb}(X_N)`; the target path measure
has density :math:`\rho(X_N)` (unnormalised) with respect to the same measure, so
:math:`\mathrm{rnd}=\log q-\log\rho(X_N)` and :math:`E_q[e^{-\mathrm{rnd}}]=Z` exactly.

Example
-------
>>> import numpy as np
>>> u = np.array([[1.0, 2.0]]); dw = np.array([[0.1, -0.2]])
>>> float(running_cost(u, u, 0.5, "lv")[0]), float(running_cost(u, u, 0.5, "kl")[0])
(1.25, 1.25)
"""

from __future__ import annotations

from .._backend import Array, namespace
from ..errors import InvalidArgumentError

__all__ = ["running_cost", "ito_term", "path_log_q", "log_rnd", "ESTIMATORS"]

ESTIMATORS = ("lv", "kl")


def _check_estimator(estimator: str) -> str:
    if estimator not in ESTIMATORS:
        raise InvalidArgumentError(
            f"estimator must be one of {ESTIMATORS} here, got {estimator!r}."
        )
    return estimator


def running_cost(u: Array, v: Array, dt: Array | float, estimator: str = "lv") -> Array:
    """Running cost of one step, summed over the last (latent) axis.

    ``"lv"``: ``sum(u * (v - u/2)) * dt`` with ``v`` the control that drove the step (pass the
    detached ``u``); ``"kl"``: ``sum(u**2)/2 * dt`` (``v`` ignored)."""
    xp = namespace(u)
    if _check_estimator(estimator) == "lv":
        return xp.sum(u * (v - 0.5 * u), axis=-1) * dt
    return 0.5 * xp.sum(u * u, axis=-1) * dt


def ito_term(u: Array, dw: Array) -> Array:
    """Itô term ``sum(u * dW)`` over the last axis (zero mean under the guide)."""
    xp = namespace(u, dw)
    return xp.sum(u * dw, axis=-1)


def path_log_q(running: Array, ito: Array, log_p_ref_end: Array) -> Array:
    """Per-trajectory path log density ``running + ito + log p_ref(X_N)``."""
    return running + ito + log_p_ref_end


def log_rnd(running: Array, ito: Array, log_p_ref_end: Array, log_target_end: Array) -> Array:
    r"""``rnd = log q - log rho(X_N)``; :math:`-\mathrm{rnd}` is the trajectory's log weight."""
    return path_log_q(running, ito, log_p_ref_end) - log_target_end
