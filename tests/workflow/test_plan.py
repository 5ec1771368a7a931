"""The plan of ``approximate`` with scripted stages: which stages run, in what order, which fit
is returned, and the errors for bad arguments (the backends' fits are tested in
tests/{numpyro,pyro}/test_approximate.py)."""

from __future__ import annotations

import math
import types

import pytest

from vidiv.errors import InvalidArgumentError
from vidiv.workflow import METHODS, Fit, run_plan
from vidiv.workflow.plan import DEFAULT_STEPS, better, learning_rate


class Scripted:
    """Stages whose verdicts are given: ``verdicts[method] = (verdict, khat)``."""

    def __init__(self, verdicts):
        self.verdicts, self.calls, self.finalized = verdicts, [], None

    def _fit(self, method, num_steps, start=None):
        if isinstance(self.verdicts[method], Exception):
            self.calls.append((method, "raised", None))
            raise self.verdicts[method]
        verdict, khat = self.verdicts[method]
        report = types.SimpleNamespace(verdict=verdict, khat=khat)
        self.calls.append((method, num_steps, None if start is None else start.method))
        return Fit(method, f"guide-{method}", {"p": method}, f"dt-{method}", report, 1.0,
                   num_steps, sampler=lambda n, seed: {"z": [method] * n})

    def laplace(self):
        self.calls.append(("laplace-start", 0, None))
        return types.SimpleNamespace(khat=0.3)

    def fit_laplace(self, lap):
        return self._fit("laplace", 0)

    def fit_fbgvi(self, lap, num_steps, progress):
        return self._fit("fbgvi", num_steps)

    def fit_svi(self, method, start, lap, num_steps, progress):
        return self._fit(method, num_steps, start)

    def fit_msvgd(self, lap, num_steps, progress):
        return self._fit("msvgd", num_steps)

    def finalize(self, fit):
        self.finalized = fit.method


def _run(verdicts, method="auto", num_steps=None):
    stages = Scripted(verdicts)
    return stages, run_plan(stages, method, num_steps, False, "test")


def test_auto_stops_at_a_good_fbgvi_fit():
    stages, post = _run({"fbgvi": ("good", 0.2)})
    assert stages.calls == [("laplace-start", 0, None), ("fbgvi", DEFAULT_STEPS["fbgvi"], None)]
    assert (post.method, post.requested, post.verdict, post.guide) == ("fbgvi", "auto", "good",
                                                                        "guide-fbgvi")
    assert post.datatree == "dt-fbgvi" and post.params == {"p": "fbgvi"}
    assert stages.finalized == "fbgvi"
    assert [s.method for s in post.stages] == ["laplace", "fbgvi"]
    assert post.get_samples(2) == {"z": ["fbgvi", "fbgvi"]}


def test_auto_falls_back_to_chi2_from_the_fbgvi_gaussian_and_stops_when_it_is_usable():
    stages, post = _run({"fbgvi": ("do not trust", 0.9), "vis": ("usable", 0.6)})
    assert [c[0] for c in stages.calls] == ["laplace-start", "fbgvi", "vis"]
    assert stages.calls[-1] == ("vis", DEFAULT_STEPS["vis"], "fbgvi")  # started at FB-GVI's q
    assert post.method == "vis" and post.verdict == "usable" and stages.finalized == "vis"


def test_auto_returns_the_best_by_verdict_then_khat_and_keeps_its_report():
    verdicts = {"fbgvi": ("do not trust", 0.95), "vis": ("use reweighted", 0.62),
                "alpha": ("use reweighted", 0.55), "laplace": ("do not trust", 0.8)}
    stages, post = _run(verdicts)
    assert [c[0] for c in stages.calls] == ["laplace-start", "fbgvi", "vis", "alpha", "laplace"]
    assert post.method == "alpha" and post.verdict == "use reweighted"
    assert post.report.khat == 0.55
    assert [(s.method, s.verdict) for s in post.stages][1:] == [
        (m, verdicts[m][0]) for m in ("fbgvi", "vis", "alpha", "laplace")]


def test_a_non_finite_fbgvi_khat_starts_the_fallback_at_the_laplace_gaussian():
    stages, post = _run({"fbgvi": ("do not trust", math.nan), "vis": ("good", 0.3)})
    assert stages.calls[-1] == ("vis", DEFAULT_STEPS["vis"], None)
    assert post.method == "vis"


@pytest.mark.parametrize("method", [m for m in METHODS if m != "auto"])
def test_a_named_method_runs_the_laplace_start_and_that_stage_only(method):
    stages, post = _run({method: ("do not trust", 0.9)}, method, num_steps=7)
    expect = 0 if method == "laplace" else 7
    assert stages.calls == [("laplace-start", 0, None), (method, expect, None)]
    assert post.method == method and post.requested == method
    assert post.verdict == "do not trust"  # whatever it is, it is reported


def test_ranking():
    def fit(verdict, khat):
        return Fit("m", None, None, None, types.SimpleNamespace(verdict=verdict, khat=khat), 0, 0)
    assert better(fit("good", 0.6), fit("usable", 0.1))
    assert better(fit("usable", 0.3), fit("usable", 0.4))
    assert better(fit("use reweighted", 0.65), fit("do not trust", 0.1))
    assert better(fit("do not trust", 0.9), fit("do not trust", math.nan))
    assert learning_rate(1.0) == 0.02 and learning_rate(1e-3) == pytest.approx(1e-4)
    assert learning_rate(float("nan")) == 0.02


def test_bad_arguments_get_the_exact_error():
    with pytest.raises(InvalidArgumentError, match=r"^approximate: method must be one of "
                       r"\('auto', 'laplace', 'fbgvi', 'vis', 'alpha', 'logvar', 'msvgd'\), "
                       r"got 'advi'"):
        _run({}, "advi")
    for bad in (0, -3, 2.5, True, "100"):
        with pytest.raises(InvalidArgumentError, match=r"^approximate: num_steps must be a "
                           r"positive integer or None"):
            _run({}, "fbgvi", num_steps=bad)


def test_a_failing_stage_is_reported_and_the_next_one_runs():
    from vidiv.errors import NonFiniteError, VidivError

    boom = NonFiniteError("FBGVI: the Hessian of -log p at the starting Gaussian has NaN/inf")
    stages, post = _run({"fbgvi": boom, "vis": ("usable", 0.6)})
    assert [c[:2] for c in stages.calls][1:] == [("fbgvi", "raised"),
                                                 ("vis", DEFAULT_STEPS["vis"])]
    assert stages.calls[-1][2] is None  # started at the Laplace Gaussian
    assert post.method == "vis"
    failed = [s for s in post.stages if s.verdict == "failed"]
    assert [s.method for s in failed] == ["fbgvi"]
    assert str(failed[0]).endswith("FAILED: NonFiniteError: " + str(boom))
    with pytest.raises(VidivError, match=r"^approximate\(method='fbgvi'\): every stage failed "
                       r"-- FBGVI: NonFiniteError: FBGVI: the Hessian"):
        _run({"fbgvi": boom}, "fbgvi")
