"""The backend-agnostic half of ``approximate``: the stages, their order, and the result.

``vidiv.numpyro.approximate`` and ``vidiv.pyro.approximate`` run the stages (each backend knows
how to fit its host's models); this package decides which stages run, in what order, which fit
is returned, and what the result holds. See :func:`vidiv.workflow.plan.run_plan`.
"""

from __future__ import annotations

from .plan import METHODS, Fit, Stage, run_plan
from .result import Approximation

__all__ = ["Approximation", "Fit", "Stage", "METHODS", "run_plan"]
