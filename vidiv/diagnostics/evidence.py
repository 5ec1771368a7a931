r"""Evidence and importance-sampling summaries of one set of variational draws.

From :math:`\log w_s = \log p(x, z_s) - \log q(z_s)`, :math:`z_s \sim q`, :math:`s = 1..S`:

* ELBO :math:`= \frac1S \sum_s \log w_s` (lower bound on :math:`\log p(x)` in expectation);
* IS estimate :math:`\log \hat Z = \log \frac1S \sum_s w_s` with its delta-method standard error;
* CUBO\ :sub:`2` :math:`= \frac12 \log \frac1S \sum_s w_s^2` (upper bound on :math:`\log p(x)` in
  expectation over infinitely many draws; biased low for finite S and heavy-tailed weights);
* IS-ESS :math:`= 1/\sum_s \bar w_s^2` and the PSIS :math:`\hat k`;
* ``num_weighted``: draws with positive weight (finite log w), ``zero_weight_share`` the rest
  as a fraction of S (draws outside the model's support).

Note :math:`\mathrm{CUBO} - \log\hat Z = \tfrac12\log(S/\mathrm{ESS})` exactly, and
:math:`\log\hat Z - \mathrm{ELBO}` estimates KL(q || p), so the sandwich width
CUBO - ELBO adds up the two ways q can differ from the posterior.

For the *estimates*, ELBO <= log Z-hat <= CUBO always holds (Jensen's inequality on the
empirical measure), so the sandwich is informative against an independent value of log p(x)
(exact, or from another method): it must lie between the ELBO and the CUBO. The width CUBO - ELBO
is zero only when q equals the posterior.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..estimators import cubo as _cubo
from ..estimators import elbo as _elbo
from ..estimators import weights as _weights
from .psis import MIN_DRAWS, _as_log_weights, float_array, khat_threshold, psis_khat

__all__ = ["EvidenceSummary", "evidence_summary"]


@dataclass(frozen=True)
class EvidenceSummary:
    num_draws: int
    khat: float
    khat_threshold: float
    is_ess: float
    elbo: float
    log_z: float
    log_z_se: float
    cubo: float
    num_weighted: int = 0
    zero_weight_share: float = 0.0


def evidence_summary(log_p, log_q) -> EvidenceSummary:
    """All the numbers of :class:`EvidenceSummary` from per-draw ``log_p``, ``log_q`` (shape (S,)).

    Raises :class:`~vidiv.errors.VidivError` on mismatched shapes, NaN, or fewer than 10 draws.
    """
    lp, lq = float_array(log_p, "log_p"), float_array(log_q, "log_q")
    if lp.shape != lq.shape:
        from ..errors import InvalidArgumentError

        raise InvalidArgumentError(
            f"log_p has shape {lp.shape} but log_q has shape {lq.shape}; pass one value per "
            "draw for both, shape (S,)."
        )
    lp, lq = lp.reshape(-1), lq.reshape(-1)
    with np.errstate(invalid="ignore"):
        lw = _as_log_weights(lp - lq, name="log weights (log_p - log_q)")
    S = lw.shape[0]
    lz = _weights.log_z(lw)
    return EvidenceSummary(
        num_draws=S,
        khat=psis_khat(lw),
        khat_threshold=khat_threshold(S),
        is_ess=float(_weights.is_ess(lw)),
        elbo=float(_elbo(lp, lq)),
        log_z=float(lz.log_z),
        log_z_se=float(lz.se),
        cubo=float(_cubo(lp, lq, n=2)),
        num_weighted=int(np.isfinite(lw).sum()),
        zero_weight_share=float(1.0 - np.isfinite(lw).sum() / S),
    )


def can_summarise(log_p, log_q) -> bool:
    """True when ``evidence_summary`` has enough finite draws to run (used for optional attrs)."""
    if log_p is None or log_q is None:
        return False
    lp, lq = np.asarray(log_p, dtype=float), np.asarray(log_q, dtype=float)
    if lp.shape != lq.shape or lp.size < MIN_DRAWS:
        return False
    lw = lp - lq
    return not (np.isnan(lw).any() or np.isposinf(lw).any()
                or np.isfinite(lw).sum() < MIN_DRAWS)


def _fmt(x: float, digits: int = 3) -> str:
    if isinstance(x, float) and math.isinf(x):
        return "-inf" if x < 0 else "inf"
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    return f"{x:.{digits}f}"
