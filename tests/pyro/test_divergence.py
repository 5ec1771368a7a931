"""Issue 14, defect 6 (silent divergence) and the drivers' refusals, Pyro side.

Where vidiv owns the loop (``vidiv.pyro.fit``, ``FBGVI``, ``MirroredSVGD``) a step that would
leave a NaN/inf parameter is not applied: training stops at that step with a message naming it,
and the state is the last finite one. Model parameters, point masses, models without latents and
models that do not broadcast over particles are refused up front by the drivers.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI
from pyro.infer.autoguide import AutoMultivariateNormal, AutoNormal

import vidiv.pyro as vp
from vidiv.errors import ModelStructureError, NonFiniteError, UnsupportedSupportError

torch.set_num_threads(1)


def _garch_series(T=20, seed=0):
    rng = np.random.default_rng(seed)
    omega, a, b = 0.1, 0.2, 0.7
    y, s2 = np.zeros(T), omega / (1 - a - b)
    for t in range(T):
        y[t] = rng.normal() * np.sqrt(s2)
        s2 = omega + a * y[t] ** 2 + b * s2
    return torch.tensor(y, dtype=torch.float32)


def garch(y):
    """GARCH(1,1): y_t ~ N(0, s2_t), s2_t = omega + alpha y_{t-1}^2 + beta s2_{t-1}."""
    omega = pyro.sample("omega", dist.LogNormal(-2.0, 1.0))
    alpha = pyro.sample("alpha", dist.Beta(2.0, 5.0))
    beta = pyro.sample("beta", dist.Beta(5.0, 2.0))
    s2 = [torch.ones_like(omega) * y.var()]
    for t in range(y.shape[0] - 1):
        s2.append(omega + alpha * y[t] ** 2 + beta * s2[-1])
    pyro.sample("y", dist.Normal(0.0, torch.stack(s2, -1).sqrt()).to_event(1), obs=y)


def _garch_fit(guide_cls, num_steps):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    svi = SVI(garch, guide_cls(garch), pyro.optim.Adam({"lr": 30.0}),
              vp.AlphaDivergence(0.5, num_particles=8))
    return vp.fit(svi, num_steps, _garch_series(), num_khat_samples=0, progress_bar=False)


@pytest.mark.parametrize("guide_cls", [AutoMultivariateNormal])
def test_garch_alpha_divergence_stops_at_last_finite_state(guide_cls):
    """The reported case: AlphaDivergence, large lr, GARCH(1,1). Without the guard the guide's
    scale turns inf/NaN and the next step fails with 'MultivariateNormal ... invalid values'."""
    with pytest.warns(RuntimeWarning, match=r"vidiv.pyro.fit stopped at step \d+ of 300: .*"
                      r"not finite.*last finite state \(after step \d+\).*ClippedAdam"):
        res = _garch_fit(guide_cls, 300)
    k = res.info["nonfinite_step"]
    assert 1 < k < 300
    assert res.losses.shape == (k - 1,) and np.isfinite(res.losses).all()
    assert all(torch.isfinite(v).all() for v in res.params.values())
    # the returned params are exactly those after step k - 1: replay k - 1 steps, same seed
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no stop within the first k - 1 steps
        replay = _garch_fit(guide_cls, k - 1)
    assert replay.info == {}
    np.testing.assert_array_equal(replay.losses, res.losses)
    for name, value in res.params.items():
        torch.testing.assert_close(value, replay.params[name], rtol=0, atol=0)
    # the param store (what Predictive and the guide read) holds the same finite values
    for name, value in pyro.get_param_store().items():
        torch.testing.assert_close(value.detach(), replay.params[name], rtol=0, atol=0)


def test_update_that_overflows_a_parameter_is_undone():
    """Finite loss and gradient, but SGD(200) sends log s to ~150: exp overflows the constrained
    scale. The update is undone: s stays at its initial 0.5."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)

    def model():
        pyro.sample("z", dist.Normal(0.0, 1.0))

    def guide():
        s = pyro.param("s", torch.tensor(0.5), constraint=dist.constraints.positive)
        pyro.sample("z", dist.Normal(0.0, s))

    svi = SVI(model, guide, pyro.optim.SGD({"lr": 200.0}), pyro.infer.Trace_ELBO())
    with pytest.warns(RuntimeWarning, match=r"stopped at step 2 of 50: the update made "
                      r"\['s'\] non-finite or invalid"):
        res = vp.fit(svi, 50, num_khat_samples=0, progress_bar=False)
    assert res.info["nonfinite_step"] == 2 and res.losses.shape == (1,)
    s1 = float(res.params["s"])  # the state after step 1: finite and still positive
    assert np.isfinite(s1) and s1 > 0 and float(pyro.param("s")) == s1


def _steep_model():
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    pyro.factor("steep", -torch.exp(3.0 * z))  # -log p overflows once z > ~29


def test_fbgvi_big_step_raises_and_keeps_last_finite_state():
    pyro.set_rng_seed(0)
    fb = vp.FBGVI(_steep_model, step_size=50.0)
    fb.setup()
    means, losses = [], []
    with pytest.raises(NonFiniteError, match=r"FBGVI \(fbgvi\).*step (\d+).*smaller "
                       r"step_size or a decaying schedule") as err:
        for _ in range(100):
            means.append(fb.mean.clone())
            losses.append(fb.step())
    k = fb.num_steps
    assert f"step {k}" in str(err.value) and 0 < k < 100
    assert len(losses) == k and np.isfinite(losses).all()
    torch.testing.assert_close(fb.mean, means[-1], rtol=0, atol=0)  # the pre-step state
    assert torch.isfinite(fb.cov).all() and torch.isfinite(fb.guide.loc).all()


def test_msvgd_large_sgd_step_on_positive_site_keeps_finite_particles():
    """exp(eta) overflows after a big SGD step: the step is undone, the particles stay finite."""

    def model():
        tau = pyro.sample("tau", dist.Gamma(2.0, 1.0))
        pyro.sample("x", dist.Exponential(tau), obs=torch.tensor(0.01))

    pyro.set_rng_seed(0)
    svgd = vp.MirroredSVGD(model, num_particles=10, optim=pyro.optim.SGD({"lr": 1e5}))
    snapshots, losses = [], []
    with pytest.raises(NonFiniteError, match=r"MirroredSVGD step (\d+): the update made the "
                       r"particles of \['tau'\] non-finite.*undone") as err:
        for _ in range(50):
            svgd._setup((), {})
            snapshots.append(svgd.get_samples()["tau"].clone())
            losses.append(svgd.step())
    k = svgd.num_steps
    assert f"step {k}:" in str(err.value) and len(losses) == k
    tau = svgd.get_samples()["tau"]
    assert torch.isfinite(tau).all() and (tau > 0).all()
    torch.testing.assert_close(tau, snapshots[-1], rtol=0, atol=0)


def _param_model():
    mu = pyro.param("mu", torch.tensor(-3.0))
    z = pyro.sample("z", dist.Normal(mu, 1.0))
    pyro.sample("x", dist.Normal(z, 1.0), obs=torch.tensor(2.0))


@pytest.mark.parametrize("make", [lambda m: vp.FBGVI(m), lambda m: vp.MirroredSVGD(m, 5)])
def test_drivers_refuse_model_parameters(make):
    pyro.clear_param_store()
    with pytest.raises(ModelStructureError, match=r"cannot learn model parameters, and the model "
                       r"has pyro.param sites \['mu'\]: it would hold them at their current "
                       r"values \(mu = -3.0\).*AlphaDivergence.*ChiSquaredVIS.*hide_types"):
        make(_param_model).step()

    def observed_only():  # parameters and no latent: the same refusal, naming the params
        mu = pyro.param("mu", torch.tensor(-3.0))
        pyro.sample("x", dist.Normal(mu, 1.0), obs=torch.tensor(2.0))

    with pytest.raises(ModelStructureError, match=r"pyro.param sites \['mu'\]"):
        make(observed_only).step()


def test_drivers_accept_hidden_parameters_as_constants():
    """The documented escape hatch: block the param sites to hold them fixed on purpose."""
    pyro.clear_param_store()
    fixed = pyro.poutine.block(_param_model, hide_types=["param"])
    fb = vp.FBGVI(fixed, step_size=0.5)
    for _ in range(5):
        fb.step_with_noise(torch.zeros(1, 1))  # exact expected gradient for a Gaussian target
    # posterior of z with mu = -3 held fixed: N(-0.5, 1/2)
    assert abs(float(fb.mean[0]) + 0.5) < 1e-4 and abs(float(fb.cov[0, 0]) - 0.5) < 1e-4


@pytest.mark.parametrize("make", [lambda m: vp.FBGVI(m), lambda m: vp.MirroredSVGD(m, 5)])
def test_drivers_refuse_point_masses_and_models_without_latents(make):
    def delta_model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        w = pyro.sample("w", dist.Delta(2.0 * z))
        pyro.sample("x", dist.Normal(w, 1.0), obs=torch.tensor(2.0))

    with pytest.raises(ModelStructureError, match=r"latent site 'w' is a point mass \(Delta\).*"
                       r"pyro.deterministic\('w', value\)"):
        make(delta_model).step()

    def no_latent():
        pyro.sample("x", dist.Normal(0.0, 1.0), obs=torch.tensor(2.0))

    with pytest.raises(ModelStructureError, match="no latent sample site"):
        make(no_latent).step()

    def discrete():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        k = pyro.sample("k", dist.Bernoulli(0.5))
        pyro.sample("x", dist.Normal(z + k, 1.0), obs=torch.tensor(2.0))

    with pytest.raises((ModelStructureError, UnsupportedSupportError), match="'k'"):
        make(discrete).step()


X = torch.tensor([[1.0, 0.5, -1.0], [0.2, -0.3, 0.8], [-1.0, 1.0, 0.1], [0.4, 0.4, 0.4]])
Y = X @ torch.tensor([1.0, -1.0, 0.5])


def single_draw_regression():
    """Written for one draw: X @ w does not broadcast over a leading batch dimension."""
    w = pyro.sample("w", dist.Normal(torch.zeros(3), 1.0).to_event(1))
    pyro.sample("y", dist.Normal(X @ w, 0.5).to_event(1), obs=Y)


def test_fbgvi_fits_a_single_draw_model():
    pyro.set_rng_seed(0)
    fb = vp.FBGVI(single_draw_regression, num_samples=8)
    for _ in range(30):  # zero noise at S = 8: exact Gaussian moments, the vmapped path
        fb.step_with_noise(torch.zeros(8, 3))
    prec = X.T @ X / 0.25 + torch.eye(3)  # conjugate posterior N(m, prec^-1)
    m = torch.linalg.solve(prec, X.T @ Y / 0.25)
    assert torch.allclose(fb.mean, m, atol=1e-3)
    assert torch.allclose(fb.cov, torch.linalg.inv(prec), atol=1e-3)


def test_msvgd_refuses_a_single_draw_model_with_the_rewrite():
    with pytest.raises(ModelStructureError, match=r"runs on one draw but fails when MirroredSVGD "
                       r"evaluates all particles.*X @ w or torch.mv\(X, w\) -> "
                       r"\(X \* w.unsqueeze\(-2\)\).sum\(-1\).*FBGVI"):
        vp.MirroredSVGD(single_draw_regression, 5).step()


_BAD_DATA = {"nan": (float("nan"), "1 NaN"), "+inf": (float("inf"), "1 +inf"),
             "-inf": (float("-inf"), "1 -inf")}  # fmt: skip


def _data_model(bad):
    y = torch.tensor([0.5, bad, 1.5])

    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        with pyro.plate("n", 3):
            pyro.sample("y", dist.Normal(z, 1.0), obs=y)

    return model


@pytest.mark.parametrize("bad", list(_BAD_DATA))
@pytest.mark.parametrize("who", ["FBGVI", "MirroredSVGD", "ChiSquaredVIS", "AlphaDivergence"])
def test_non_finite_observed_data_is_named(who, bad):
    """Issue 15: NaN / +-inf data gave a distribution "Expected value argument" error, or inf
    losses (MirroredSVGD); now the site, the count and the fix."""
    pyro.clear_param_store()
    value, count = _BAD_DATA[bad]
    model = _data_model(value)
    expected = re.escape(f"{who}: observed site 'y' contains {count} value(s) out of 3")
    with pytest.raises(NonFiniteError, match=expected + ".*obs_mask"):
        if who == "FBGVI":
            vp.FBGVI(model).step()
        elif who == "MirroredSVGD":
            vp.MirroredSVGD(model, 5).step()
        else:
            loss = getattr(vp, who)(num_particles=4)
            SVI(model, AutoNormal(model), pyro.optim.Adam({"lr": 0.01}), loss=loss).step()
