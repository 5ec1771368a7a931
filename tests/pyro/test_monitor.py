"""vidiv.pyro.fit: loss trace, k-hat trace, early stop on a plateau, non-finite loss."""

from __future__ import annotations

import numpy as np
import pyro
import pytest
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal

import vidiv.pyro as vp
from tests.closed_form import conjugate_normal
from tests.pyro.models import linear_gaussian_model
from vidiv.diagnostics import diagnose
from vidiv.errors import NonFiniteError, VidivError


def _svi(lg, lr=0.05, lrd=1.0):
    model = linear_gaussian_model(lg)
    guide = AutoNormal(model)
    optim = pyro.optim.ClippedAdam({"lr": lr, "lrd": lrd})
    return model, guide, SVI(model, guide, optim, loss=Trace_ELBO())


def test_fit_records_losses_and_khat_and_converges():
    lg = conjugate_normal()
    model, guide, svi = _svi(lg, lr=0.1, lrd=0.99)
    res = vp.fit(svi, 300, monitor_every=100, num_khat_samples=300, progress_bar=False)
    assert res.losses.shape == (300,) and not res.stopped_early
    np.testing.assert_array_equal(res.khat[:, 0], [100, 200, 300])
    assert res.khat[-1, 1] < 0.5  # independent posterior: AutoNormal can match it
    assert res.losses[-50:].mean() < res.losses[:10].mean() - 5.0
    loc = res.params["AutoNormal.locs.z"].numpy()
    np.testing.assert_allclose(loc, lg.post_mean, atol=0.1)
    dt = vp.to_datatree(model, guide, num_samples=2000, losses=res, objective="Trace_ELBO")
    assert dt["optimization"]["loss"].shape == (300,)
    np.testing.assert_array_equal(dt["optimization"]["khat_step"], [100, 200, 300])
    r = diagnose(dt, log_z_reference=lg.log_z)
    assert r.elbo < lg.log_z < r.cubo
    assert abs(r.log_z - lg.log_z) < 3 * r.log_z_se


def test_early_stop_on_plateau():
    lg = conjugate_normal()
    _, _, svi = _svi(lg, lr=0.1, lrd=0.99)  # the step size decays to ~0: the loss flattens
    res = vp.fit(svi, 5000, monitor_every=50, num_khat_samples=0, progress_bar=False,
                 early_stop={"tol": 1e-3, "patience": 2})
    assert res.stopped_early
    assert 100 <= res.num_steps < 5000 and res.num_steps % 50 == 0
    assert res.khat.shape == (0, 2)
    tail = res.losses[-100:]
    assert abs(tail[:50].mean() - tail[50:].mean()) < 1e-3 * abs(tail[50:].mean())


def test_progress_bar_runs(capsys):
    _, _, svi = _svi(conjugate_normal())
    res = vp.fit(svi, 20, monitor_every=10, num_khat_samples=50, progress_bar=True)
    assert res.losses.shape == (20,) and res.khat.shape == (2, 2)
    assert "vidiv.pyro.fit" in capsys.readouterr().err


def test_nonfinite_loss_and_bad_arguments():
    lg = conjugate_normal()
    model = linear_gaussian_model(lg)
    data_nan = lg.__class__(lg.m0, lg.P0, lg.X, np.full_like(lg.y, np.nan), lg.sigma)
    bad_model = linear_gaussian_model(data_nan)
    svi = SVI(bad_model, AutoNormal(bad_model), pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
    with pyro.validation_enabled(False), pytest.raises(NonFiniteError, match="at step 1"):
        vp.fit(svi, 10, progress_bar=False)
    svi = SVI(model, AutoNormal(model), pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
    with pytest.raises(VidivError, match="num_khat_samples=3 is too few"):
        vp.fit(svi, 10, num_khat_samples=3)
    with pytest.raises(VidivError, match="expects a pyro.infer.SVI"):
        vp.fit(object(), 10)
