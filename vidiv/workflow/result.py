"""What ``approximate`` returns: the chosen fit, its checked report, and how it was reached."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgumentError, check_num_particles

__all__ = ["Approximation"]


@dataclass(frozen=True)
class Approximation:
    """The posterior approximation ``approximate`` chose, with its diagnostics.

    Attributes
    ----------
    method : the stage whose fit this is (``"fbgvi"``, ``"vis"``, ...; with ``method="auto"``
        the one chosen).
    requested : the ``method`` asked for (``"auto"`` or a stage's name).
    datatree : the ArviZ DataTree of draws from the fit (as ``to_datatree`` builds it).
    report : :func:`vidiv.diagnostics.diagnose` of ``datatree``: the verdict is the promise
        (``"good"``/``"usable"``: raw draws within 0.25 posterior sd; ``"use reweighted"``: use
        :meth:`summary`, which is then PSIS-reweighted; ``"do not trust"``: neither).
    guide, params : the fitted guide and its parameters (NumPyro: the ``params`` dict for
        ``numpyro.infer.Predictive``; Pyro: a copy of the guide's values, which also live in
        the param store). ``guide`` is ``None`` for particles (MirroredSVGD).
    laplace : the :class:`~vidiv.gaussian.LaplaceResult` every stage started from.
    stages : one :class:`~vidiv.workflow.Stage` per stage run (verdict, k̂, steps, seconds).
    seconds : wall time of the whole call.
    """

    method: str
    requested: str
    datatree: Any
    report: Any
    guide: Any
    params: Any
    laplace: Any
    stages: tuple
    backend: str
    seconds: float
    _fit: Any = field(repr=False, default=None)

    @property
    def verdict(self) -> str:
        return self.report.verdict

    def get_samples(self, num_samples: int = 1000, seed: Any = None) -> dict:
        """``num_samples`` fresh draws ``{site: array}`` (constrained values, the host's arrays)
        from the fitted approximation; ``seed``: a NumPyro ``PRNGKey`` or a Pyro integer seed
        (default 0). Particles (MirroredSVGD) return the first ``num_samples`` particles."""
        num_samples = check_num_particles(num_samples, name="num_samples")
        if self._fit is None or self._fit.sampler is None:
            raise InvalidArgumentError("this approximation holds no sampler.")
        return self._fit.sampler(num_samples, seed)

    def summary(self):
        """Posterior means and sds per scalar component (a ``pandas.DataFrame``): the
        PSIS-reweighted ones (``mean_psis``/``sd_psis`` of
        :func:`vidiv.diagnostics.reweighted_summary`, the raw ones kept as ``mean_raw``,
        ``sd_raw``) when the verdict is ``"use reweighted"``, the raw draws' otherwise (the
        reweighted ones beside them whenever ``log q`` exists)."""
        import numpy as np
        import pandas as pd

        from ..diagnostics import reweighted_summary
        from ..diagnostics.reweight import _components

        if "log_q" in self.datatree["sample_stats"].data_vars:
            table = reweighted_summary(self.datatree)
            if self.verdict == "use reweighted":
                table = table.assign(mean_raw=table["mean"], sd_raw=table["sd"],
                                     mean=table["mean_psis"], sd=table["sd_psis"])
            return table
        names, theta = _components(self.datatree)
        return pd.DataFrame({"mean": theta.mean(axis=0), "sd": theta.std(axis=0, ddof=1)},
                            index=pd.Index(names, name="parameter")).astype(np.float64)

    def __str__(self) -> str:
        lines = [f"vidiv.{self.backend}.approximate(method={self.requested!r}): "
                 f"{self.method} chosen, verdict {self.verdict.upper()} "
                 f"({self.seconds:.1f} s)", "", "stages:"]
        lines += [f"  {s}" for s in self.stages]
        lines += ["", str(self.report)]
        return "\n".join(lines)
