r"""Which stages ``approximate`` runs, in what order, and which fit it returns.

``method="auto"`` is a fixed, checked workflow (every stage starts where the previous one
ended, so no stage needs tuning to the model's scale):

1. **Laplace**: the mode and the inverse Hessian in the unconstrained space
   (:func:`vidiv.numpyro.laplace`). Its smallest marginal sd sets the step size of the
   stochastic stages below: Adam's :math:`\mathrm{lr}_0 = \min(0.02, 0.1\,\sigma_{\min})`,
   decaying geometrically to :math:`0.1\,\mathrm{lr}_0` over the stage (Adam moves every
   coordinate by about its step size; a larger one jitters the narrowest direction).
2. **FB-GVI** from the Laplace Gaussian with its defaults (whitened steps, decaying step size),
   stopped on a loss plateau: the Gaussian closest to the posterior in KL(q ‖ p).
3. **The verdict** of :func:`vidiv.diagnostics.diagnose` on draws from that Gaussian. "good"
   or "usable" ends the workflow.
4. Otherwise the **mass-covering objectives**, each from the FB-GVI Gaussian:
   ``ChiSquaredVIS`` (forward χ², which spreads q over the posterior's mass), then
   ``AlphaDivergence(α = 0.5)`` if the χ² fit is still not acceptable; and the Laplace
   Gaussian itself as a candidate.
5. The returned fit is the best by verdict (good < usable < use reweighted < unavailable <
   point estimate < do not trust), ties broken by the smaller Pareto k̂. Its report is the one
   :func:`~vidiv.diagnostics.diagnose` gives for it: a fit that failed says so.

A named ``method`` runs step 1 and that one stage.

>>> from vidiv.workflow.plan import better, RANK
>>> [v for v, _ in sorted(RANK.items(), key=lambda kv: kv[1])][:3]
['good', 'usable', 'use reweighted']
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..errors import InvalidArgumentError, VidivError

__all__ = ["METHODS", "RANK", "Fit", "Stage", "Stages", "Progress", "run_plan", "better",
           "learning_rate", "LR_DECAY", "DEFAULT_STEPS", "CHUNK", "plateau", "LOSSES",
           "make_loss", "MSVGD_PARTICLES"]

METHODS = ("auto", "laplace", "fbgvi", "vis", "alpha", "logvar", "msvgd")
#: what each method's stage is called in the report and the datatree's ``objective``
LABELS = {"laplace": "Laplace", "fbgvi": "FBGVI", "vis": "ChiSquaredVIS",
          "alpha": "AlphaDivergence(alpha=0.5)", "logvar": "LogVariance", "msvgd": "MirroredSVGD"}
RANK = {"good": 0, "usable": 1, "use reweighted": 2, "unavailable": 3, "point estimate": 4,
        "do not trust": 5}
#: the steps each stage runs at most (it stops earlier on a loss plateau)
DEFAULT_STEPS = {"laplace": 0, "fbgvi": 2000, "vis": 3000, "alpha": 3000, "logvar": 3000,
                 "msvgd": 1000}
LR_DECAY = 0.1
ACCEPTABLE = ("good", "usable")
CHUNK = 100  # steps between plateau checks


def plateau() -> Any:
    """The stages' stopping rule: 3 consecutive 100-step windows whose mean loss fell by less
    than two standard errors (:class:`vidiv.diagnostics.EarlyStop`, ``noise_aware=True``)."""
    from ..diagnostics import EarlyStop

    return EarlyStop(tol=1e-4, patience=3, window=CHUNK, noise_aware=True)


#: the mass-covering stages' objectives (class name in ``vidiv.<backend>``, options)
LOSSES = {"vis": ("ChiSquaredVIS", {"num_particles": 64}),
          "alpha": ("AlphaDivergence", {"alpha": 0.5, "num_particles": 16}),
          "logvar": ("LogVariance", {"num_particles": 16})}
MSVGD_PARTICLES = 100


def make_loss(backend_module: Any, method: str) -> Any:
    """The objective of stage ``method`` from ``vidiv.numpyro`` or ``vidiv.pyro``."""
    cls, options = LOSSES[method]
    return getattr(backend_module, cls)(**options)


def learning_rate(sd_min: float) -> float:
    """Adam's initial step size from the Laplace scale: ``min(0.02, 0.1 * sd_min)``."""
    if not (sd_min > 0 and math.isfinite(sd_min)):
        return 0.02
    return min(0.02, 0.1 * float(sd_min))


@dataclass
class Fit:
    """One stage's fit: what the backend hands back to the plan."""

    method: str
    guide: Any
    params: Any
    datatree: Any
    report: Any
    seconds: float
    num_steps: int
    stopped_early: bool = False
    sampler: Callable[[int, Any], dict] | None = None  # (n, seed) -> {site: draws}
    driver: Any = None


@dataclass(frozen=True)
class Stage:
    """A row of :attr:`Approximation.stages`: what ran, for how long, and its verdict."""

    method: str
    verdict: str
    khat: float
    num_steps: int
    seconds: float
    stopped_early: bool = False
    message: str = ""  # why a stage failed

    def __str__(self) -> str:
        if self.verdict == "failed":
            return f"{LABELS.get(self.method, self.method):<27} FAILED: {self.message}"
        stop = ", plateau" if self.stopped_early else ""
        return (f"{LABELS.get(self.method, self.method):<27} {self.verdict:<15} "
                f"k-hat {self.khat:6.3f}  {self.num_steps:5d} steps{stop}  {self.seconds:7.2f} s")


class Stages(Protocol):
    """What a backend implements for :func:`run_plan`."""

    def laplace(self) -> Any: ...

    def fit_laplace(self, lap: Any) -> Fit: ...

    def fit_fbgvi(self, lap: Any, num_steps: int, progress: Progress) -> Fit: ...

    def fit_svi(self, method: str, start: Fit | None, lap: Any, num_steps: int,
                progress: Progress) -> Fit: ...

    def fit_msvgd(self, lap: Any, num_steps: int, progress: Progress) -> Fit: ...


@dataclass
class Progress:
    """One progress bar over every stage (``enabled=False``: silent)."""

    enabled: bool
    total: int
    _bar: Any = field(default=None, init=False, repr=False)

    def stage(self, label: str) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc="approximate")
        self._bar.set_description(f"approximate: {label}")

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(int(n))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def better(a: Fit, b: Fit) -> bool:
    """``a`` is a better fit to return than ``b`` (verdict first, then the smaller k̂)."""
    def key(f: Fit) -> tuple[int, float]:
        k = float(f.report.khat)
        return RANK.get(f.report.verdict, len(RANK)), (k if math.isfinite(k) else math.inf)
    return key(a) < key(b)


def check_method(method: Any, num_steps: Any) -> int | None:
    if method not in METHODS:
        raise InvalidArgumentError(
            f"approximate: method must be one of {METHODS!r}, got {method!r} ('auto' runs "
            "Laplace, FB-GVI and, if the verdict is not good, the mass-covering objectives).")
    if num_steps is None:
        return None
    if isinstance(num_steps, bool) or not isinstance(num_steps, int | np.integer) or num_steps < 1:
        raise InvalidArgumentError(
            f"approximate: num_steps must be a positive integer or None (each stage's default, "
            f"{DEFAULT_STEPS}), got {num_steps!r}.")
    return int(num_steps)


def run_plan(stages: Stages, method: str, num_steps: int | None, progress_bar: bool,
             backend: str):
    """Run the stages of ``method`` and return an :class:`~vidiv.workflow.Approximation`."""
    from .result import Approximation

    num_steps = check_method(method, num_steps)

    def steps(m: str) -> int:
        return DEFAULT_STEPS[m] if num_steps is None else num_steps

    planned = (steps("fbgvi") if method == "auto" else steps(method)) if method != "laplace" else 0
    progress = Progress(bool(progress_bar) and planned > 0, planned)
    t0 = time.perf_counter()
    fits: list[Fit] = []
    failed: list[tuple[str, str, float]] = []

    def attempt(m: str, run: Callable[[], Fit]) -> Fit | None:
        """Run one stage; a stage that fails is recorded (and the workflow goes on)."""
        start = time.perf_counter()
        try:
            fit = run()
        except (ValueError, np.linalg.LinAlgError, FloatingPointError) as err:  # VidivError too
            failed.append((m, f"{type(err).__name__}: {err}", time.perf_counter() - start))
            return None
        fits.append(fit)
        return fit

    try:
        progress.stage("Laplace")
        lap = stages.laplace()
        lap_seconds = time.perf_counter() - t0
        if method == "laplace":
            attempt("laplace", lambda: stages.fit_laplace(lap))
        elif method == "fbgvi":
            attempt("fbgvi", lambda: stages.fit_fbgvi(lap, steps("fbgvi"), progress))
        elif method in ("vis", "alpha", "logvar"):
            attempt(method, lambda: stages.fit_svi(method, None, lap, steps(method), progress))
        elif method == "msvgd":
            attempt("msvgd", lambda: stages.fit_msvgd(lap, steps("msvgd"), progress))
        else:
            fb = attempt("fbgvi", lambda: stages.fit_fbgvi(lap, steps("fbgvi"), progress))
            if fb is None or fb.report.verdict not in ACCEPTABLE:
                start = fb if fb is not None and math.isfinite(float(fb.report.khat)) else None
                for m in ("vis", "alpha"):
                    if progress._bar is not None:
                        progress._bar.total += steps(m)
                        progress._bar.refresh()
                    fit = attempt(m, lambda m=m: stages.fit_svi(m, start, lap, steps(m),
                                                                progress))
                    if fit is not None and fit.report.verdict in ACCEPTABLE:
                        break
                if all(f.report.verdict not in ACCEPTABLE for f in fits):
                    attempt("laplace", lambda: stages.fit_laplace(lap))
    finally:
        progress.close()
    if not fits:
        raise VidivError(
            f"approximate(method={method!r}): every stage failed -- "
            + "; ".join(f"{LABELS[m]}: {msg}" for m, msg, _ in failed)
            + ". Enable float64 and check the model's log density (vidiv.diagnostics); a "
            "posterior with a funnel usually needs a non-centred parameterisation.")
    best = fits[0]
    for f in fits[1:]:
        if better(f, best):
            best = f
    finalize = getattr(stages, "finalize", None)
    if finalize is not None:
        finalize(best)
    history = [Stage("laplace", "(start)", float(lap.khat), 0, lap_seconds)]
    history += [Stage(f.method, f.report.verdict, float(f.report.khat), f.num_steps, f.seconds,
                      f.stopped_early) for f in fits]
    history += [Stage(m, "failed", math.nan, 0, sec, message=msg) for m, msg, sec in failed]
    return Approximation(method=best.method, requested=method, datatree=best.datatree,
                         report=best.report, guide=best.guide, params=best.params,
                         laplace=lap, stages=tuple(history), backend=backend,
                         seconds=time.perf_counter() - t0, _fit=best)
