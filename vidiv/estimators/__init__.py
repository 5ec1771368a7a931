r"""Backend-agnostic estimators over per-particle log densities.

Pure functions of arrays ``log_p``, ``log_q`` of shape ``(S, *batch)`` (particles on axis 0); they
accept numpy, torch and jax arrays (jax tracers included) and draw no random numbers. Each returns
a value whose gradient, where the inputs carry one, is the estimator named in its docstring.

============================  ==================================================================
``elbo``                      mean log w
``log_marginal``              log mean w (IWAE / IS estimate of log p(x))
``renyi_bound``               VR bound, any finite alpha, exact and continuous at alpha = 1
``cubo``                      chi-square upper bound (value; do not minimise it by reparam.)
``vis_guide_surrogate``       log V-hat with the forward chi-square score gradient
``vis_model_surrogate``       IS log-likelihood with log q detached (model parameters)
``log_variance``              VarGrad log-variance loss
``renyi_dreg_surrogate``      Renyi bound with the DReG guide gradient
``score_surrogate``           VIMCO score term for non-reparameterised sites
``weights``                   ``normalized``, ``is_ess``, ``log_z``
============================  ==================================================================

Bad input (every function above except ``leave_one_out_bounds``, whose caller checks):

* NaN or ``+inf`` log weights ``log_p - log_q``, or a batch element whose log weights are all
  ``-inf`` (no particle has positive weight), raise :class:`~vidiv.errors.NonFiniteError` saying
  what to check; ``log_variance`` also refuses a single ``-inf`` (its value would be infinite).
* A ``-inf`` particle (a draw outside the model's support) otherwise has weight 0: it adds
  nothing to the value or the gradient of ``log_marginal``, ``cubo``, the VIS surrogates, the
  weights, and ``renyi_bound`` / DReG with ``alpha < 1``. The ELBO and ``alpha >= 1`` are ``-inf``
  there, with a zero gradient. The VIMCO score term keeps that draw's finite learning signal.
* Under ``jax.jit`` (or any jax trace) nothing can be raised: those batch elements are NaN or
  ``+-inf``, never a finite number, and the other elements are unaffected.
* No intermediate overflows: log-sum-exps shift out the dominant log weight and means divide
  before summing, so float32 log weights near ``+-3e38`` give finite values with finite
  gradients wherever the result is representable (a result beyond the dtype's range, e.g. the
  VIS ``log mean w^2 = 2 * 3e38``, is ``+inf``).
"""

from . import weights
from ._checks import check_log_weights
from .bounds import cubo, elbo, log_marginal, renyi_bound
from .gradients import leave_one_out_bounds, renyi_dreg_surrogate, score_surrogate, surrogate
from .variance import log_variance
from .vis import vis_guide_surrogate, vis_model_surrogate, vis_surrogates

__all__ = [
    "elbo",
    "log_marginal",
    "renyi_bound",
    "cubo",
    "vis_guide_surrogate",
    "vis_surrogates",
    "vis_model_surrogate",
    "log_variance",
    "renyi_dreg_surrogate",
    "score_surrogate",
    "leave_one_out_bounds",
    "surrogate",
    "weights",
    "check_log_weights",
]
