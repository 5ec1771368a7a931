"""Issue 14, defect 6 (silent divergence) and the drivers' refusals, NumPyro side.

The counterpart of ``tests/pyro/test_divergence.py``. Where vidiv owns the loop
(``vidiv.numpyro.fit``, ``FBGVI``, ``MirroredSVGD``) a step whose loss, state or parameters would
be NaN/inf is not applied: training stops at that step with a ``RuntimeWarning`` naming it, and
the state is the last finite one (bit for bit the state of a run that stops just before it).
Model parameters, point masses, models without latents and discrete latents are refused up front
by the drivers, naming the site.
"""

from __future__ import annotations

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoMultivariateNormal

import vidiv.numpyro as vn
from tests.gaussian.targets import plain
from vidiv.errors import ModelStructureError, NonFiniteError, UnsupportedSupportError

KEY = jax.random.PRNGKey(0)


def _assert_trees_equal(a, b):
    """Same structure, every leaf bit for bit equal (rtol = atol = 0)."""
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _all_finite(tree) -> bool:
    return all(np.isfinite(np.asarray(v)).all() for v in jax.tree_util.tree_leaves(tree))


# --------------------------------------------------------------------------- vidiv.numpyro.fit
def _garch_series(T=20, seed=0):
    rng = np.random.default_rng(seed)
    omega, a, b = 0.1, 0.2, 0.7
    y, s2 = np.zeros(T), omega / (1 - a - b)
    for t in range(T):
        y[t] = rng.normal() * np.sqrt(s2)
        s2 = omega + a * y[t] ** 2 + b * s2
    return jnp.asarray(y)


def garch(y):
    """GARCH(1,1): y_t ~ N(0, s2_t), s2_t = omega + alpha y_{t-1}^2 + beta s2_{t-1}."""
    omega = numpyro.sample("omega", dist.LogNormal(-2.0, 1.0))
    alpha = numpyro.sample("alpha", dist.Beta(2.0, 5.0))
    beta = numpyro.sample("beta", dist.Beta(5.0, 2.0))

    def recursion(s2, y_prev):
        s2 = omega + alpha * y_prev**2 + beta * s2
        return s2, s2

    s2_0 = jnp.var(y)
    _, s2 = jax.lax.scan(recursion, s2_0, y[:-1])
    s2 = jnp.concatenate([s2_0[None], s2])
    numpyro.sample("y", dist.Normal(0.0, jnp.sqrt(s2)).to_event(1), obs=y)


GARCH_STEPS = 50


def _garch_svi():
    guide = AutoMultivariateNormal(garch)
    return SVI(garch, guide, numpyro.optim.Adam(30.0), vn.AlphaDivergence(0.5, num_particles=8))


def _garch_fit(num_steps, monitor_every=100):
    svi = _garch_svi()
    res = vn.fit(
        svi,
        KEY,
        num_steps,
        _garch_series(),
        monitor_every=monitor_every,
        num_khat_samples=0,
        progress_bar=False,
    )
    return svi, res


def test_garch_alpha_divergence_stops_at_last_finite_state():
    """The reported case: AlphaDivergence(0.5), Adam(30), GARCH(1,1). NumPyro's own loop would
    carry on with NaN parameters; fit stops at the first non-finite step and keeps the state
    after the step before it."""
    with pytest.warns(
        RuntimeWarning,
        match=r"vidiv.numpyro.fit: the loss or the state became "
        r"non-finite at step \d+ of 50; training stopped, the step was not "
        r"applied and the result holds the last finite state \(after step \d+\) "
        r"and its \d+ losses\..*ClippedAdam.*stable_update=True",
    ) as rec:
        svi, res = _garch_fit(GARCH_STEPS)
    k = res.info["nonfinite_step"]
    assert 1 < k < GARCH_STEPS  # measured 17
    (msg,) = [str(w.message) for w in rec if issubclass(w.category, RuntimeWarning)]
    assert f"at step {k} of {GARCH_STEPS};" in msg
    assert f"(after step {k - 1}) and its {k - 1} losses" in msg
    assert res.losses.shape == (k - 1,) and np.isfinite(res.losses).all()
    assert set(res.params) == {"auto_loc", "auto_scale_tril"} and _all_finite(res.params)
    assert _all_finite(res.state.optim_state)
    assert not res.stopped_early and res.num_steps == k - 1

    # the step that was refused really is non-finite from the kept state
    new, loss = jax.jit(svi.update)(res.state, _garch_series())
    assert not (
        np.isfinite(float(loss))
        and _all_finite(new.optim_state)
        and _all_finite(svi.get_params(new))
    )

    # the returned state is exactly that after step k - 1: replay k - 1 steps, same key
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no stop within the first k - 1 steps
        _, replay = _garch_fit(k - 1)
    assert replay.info == {"num_compilations": 1}
    np.testing.assert_array_equal(replay.losses, res.losses)
    _assert_trees_equal(res.params, replay.params)
    _assert_trees_equal(res.state, replay.state)  # optimiser state, step count and rng key

    # a chunk boundary changes nothing: chunks of k - 1 steps put the refused step first in the
    # second chunk (an empty chunk of losses)
    with pytest.warns(RuntimeWarning, match=rf"non-finite at step {k} of {GARCH_STEPS};"):
        _, chunked = _garch_fit(GARCH_STEPS, monitor_every=k - 1)
    assert chunked.info == {"num_compilations": 1, "nonfinite_step": k}
    np.testing.assert_array_equal(chunked.losses, res.losses)
    _assert_trees_equal(chunked.state, res.state)


def _scalar_model():
    numpyro.sample("z", dist.Normal(0.0, 1.0))


def _positive_scale_guide():
    s = numpyro.param("s", 0.5, constraint=dist.constraints.positive)
    numpyro.sample("z", dist.Normal(0.0, s))


def test_update_that_overflows_a_parameter_is_not_applied():
    """Finite loss and finite optimiser state, but the second SGD step (step size 1e4) sends
    log s to ~1e4: the constrained s = exp(log s) overflows to inf. That update is refused at
    step 2 (checking only the loss would notice one step later, at step 3)."""
    optim = numpyro.optim.SGD(lambda i: jnp.where(i < 1, 0.01, 1e4))
    svi = SVI(_scalar_model, _positive_scale_guide, optim, Trace_ELBO())
    with pytest.warns(
        RuntimeWarning,
        match=r"non-finite at step 2 of 30; .*\(after step 1\) "
        r"and its 1 losses",
    ):
        res = vn.fit(svi, KEY, 30, monitor_every=10, num_khat_samples=0, progress_bar=False)
    assert res.info == {"num_compilations": 1, "nonfinite_step": 2}
    assert res.losses.shape == (1,) and np.isfinite(res.losses).all()
    s1 = float(res.params["s"])  # the state after step 1: finite, positive, near 0.5
    assert np.isfinite(s1) and 0.4 < s1 < 0.6 and s1 != 0.5
    # what the refused step would have done: finite loss and optimiser state, s = inf
    new, loss = svi.update(res.state)
    assert np.isfinite(float(loss)) and _all_finite(new.optim_state)
    assert float(svi.get_params(new)["s"]) == np.inf
    # exactly one applied step
    one = vn.fit(svi, KEY, 1, num_khat_samples=0, progress_bar=False)
    np.testing.assert_array_equal(one.losses, res.losses)
    _assert_trees_equal(one.state, res.state)


def test_nonfinite_loss_at_step_1_raises():
    """A log density that is NaN everywhere: the very first loss is NaN and there is no finite
    state to keep. (NaN data would be refused earlier: by AlphaDivergence's own data check,
    or by an AutoGuide's svi.init.)"""

    def nan_density_model():
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        numpyro.factor("broken", jnp.log(-1.0 - z**2))  # log of a negative number: NaN

    def guide():
        numpyro.sample("z", dist.Normal(numpyro.param("loc", 0.0), 1.0))

    svi = SVI(nan_density_model, guide, numpyro.optim.Adam(0.01), vn.AlphaDivergence(0.5))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(
            NonFiniteError,
            match=r"^vidiv.numpyro.fit: the loss or the state "
            r"is non-finite at step 1, from the initial parameters \(nothing "
            r"was updated\)\. Check the data for NaN/inf.*init_scale",
        ):
            vn.fit(svi, KEY, 20, monitor_every=10, num_khat_samples=0, progress_bar=False)
    # an error, not the step-k warning plus an empty result
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]


# --------------------------------------------------------------------------- MirroredSVGD
def _gamma_model():
    tau = numpyro.sample("tau", dist.Gamma(2.0, 1.0))
    numpyro.sample("x", dist.Exponential(tau), obs=0.01)


def _jump_sgd(k, big=1e4):
    """SGD with step size 0.1 for the first ``k`` steps, then ``big``."""
    return numpyro.optim.SGD(lambda i: jnp.where(i < k, 0.1, big))


MSVGD_WARNING = (
    r"MirroredSVGD went non-finite at step {k} \(the Stein direction, log p or the moved "
    r"particles were NaN/inf\); the step was not applied, the run stopped and the result holds "
    r"the last finite particles \(after {k} steps\) and their losses\. Use a smaller or decaying "
    r"step size .*kernel_space='dual'; check the model's log density at the particles "
    r"\(get_samples\(state\)\)\.$"
)


def test_msvgd_overflowing_positive_site_keeps_last_finite_particles():
    """Three steps of size 0.1, then SGD(1e4): exp(eta) of the particles pushed up overflows at
    step 3 (0-based: after 3 applied steps)."""
    svgd = vn.MirroredSVGD(_gamma_model, num_particles=10, optim=_jump_sgd(3))
    with pytest.warns(RuntimeWarning, match=MSVGD_WARNING.format(k=3)):
        res = svgd.run(KEY, 60, progress_bar=False)
    assert int(res.state.nonfinite_step) == 3 and int(res.state.step) == 3
    assert res.losses.shape == (3,) and np.isfinite(np.asarray(res.losses)).all()
    tau = np.asarray(res.params["tau"])
    assert tau.shape == (10,) and np.isfinite(tau).all() and (tau > 0).all()
    assert np.isfinite(np.asarray(svgd.log_p(res.state))).all()

    # the refused step overflows: eta + 1e4 * phi, mapped by exp, has inf entries
    eta = svgd.optim.get_params(res.state.optim_state)
    phi = np.asarray(svgd.direction(res.state))
    with np.errstate(over="ignore"):
        moved = np.exp(np.asarray(eta) + 1e4 * phi)
    assert np.isfinite(phi).all() and np.isinf(moved).any()

    # the kept particles are exactly those of a run of 3 steps, which gives no warning
    ref_svgd = vn.MirroredSVGD(_gamma_model, num_particles=10, optim=_jump_sgd(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = ref_svgd.run(KEY, 3, progress_bar=False)
    assert int(ref.state.nonfinite_step) == -1
    np.testing.assert_array_equal(np.asarray(res.params["tau"]), np.asarray(ref.params["tau"]))
    np.testing.assert_array_equal(np.asarray(res.losses), np.asarray(ref.losses))
    _assert_trees_equal(res.state.optim_state, ref.state.optim_state)

    # with the progress bar, 60 steps run in chunks of 3: the refused step is the first of the
    # second chunk, and the result is the same
    bar_svgd = vn.MirroredSVGD(_gamma_model, num_particles=10, optim=_jump_sgd(3))
    with pytest.warns(RuntimeWarning, match=MSVGD_WARNING.format(k=3)):
        bar = bar_svgd.run(KEY, 60, progress_bar=True)
    _assert_trees_equal(bar, res)  # particles, state (incl. nonfinite_step) and losses

    # later updates are no-ops: state, step counter and optimiser state unchanged
    after, stats = jax.jit(svgd.update)(res.state)
    assert not bool(stats["finite"])
    _assert_trees_equal(after, res.state)


def test_msvgd_underflowing_positive_site_keeps_particles_in_the_support():
    svgd = vn.MirroredSVGD(_gamma_model, num_particles=10, optim=numpyro.optim.SGD(100.0))
    with pytest.warns(RuntimeWarning, match=r"MirroredSVGD went non-finite at step \d+"):
        res = svgd.run(KEY, 50, progress_bar=False)
    tau = np.asarray(res.params["tau"])
    assert (tau > 0).all(), tau  # measured: tau == 0.0 for all 10 particles
    assert np.isfinite(np.asarray(svgd.log_p(res.state))).all()


# --------------------------------------------------------------------------- FBGVI
def _steep_model():
    z = numpyro.sample("z", dist.Normal(0.0, 1.0))
    numpyro.factor("steep", -jnp.exp(3.0 * z))  # V = inf once z > ~236 (float64)


FBGVI_WARNING = (
    r"FBGVI \(fbgvi\) went non-finite at step {k} \(NaN/inf iterate or a covariance that is not "
    r"positive definite\); kept the last finite state and stopped\. Use a smaller step_size or "
    r"a decaying schedule, or start closer to the posterior with set_gaussian \(e\.g\. from a "
    r"Laplace approximation\)\.$"
)


def test_fbgvi_big_step_keeps_last_finite_state():
    """step_size=50: the mean shoots to z ~ 1e4 in two steps, where V = exp(3 z) = inf; the third
    update (0-based step 2) is refused."""
    fb = plain(vn.FBGVI, _steep_model, step_size=50.0)
    with pytest.warns(RuntimeWarning, match=FBGVI_WARNING.format(k=2)):
        res = fb.run(KEY, 40, progress_bar=False)
    assert res.nonfinite_step == 2
    assert int(res.state.nonfinite_step) == 2 and int(res.state.step) == 2
    # the loss at step 2 (free energy of the kept state) is the inf, so it is dropped
    assert res.losses.shape == (2,) and np.isfinite(np.asarray(res.losses)).all()
    mean, cov = np.asarray(res.state.mean), np.asarray(res.state.cov)
    assert np.isfinite(mean).all() and np.isfinite(cov).all() and cov[0, 0] > 0
    assert mean[0] > 236  # where exp(3 z) overflows: the reason the next step fails
    _assert_trees_equal(
        res.params, {"auto_loc": res.state.mean, "auto_scale_tril": res.state.scale_tril}
    )

    # exactly the Gaussian after two steps: a 2-step run, same key, no warning
    ref_fb = plain(vn.FBGVI, _steep_model, step_size=50.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = ref_fb.run(KEY, 2, progress_bar=False)
    assert ref.nonfinite_step is None and int(ref.state.nonfinite_step) == -1
    for name in ("mean", "cov", "scale_tril", "step"):
        np.testing.assert_array_equal(
            np.asarray(getattr(res.state, name)), np.asarray(getattr(ref.state, name)), err_msg=name
        )
    np.testing.assert_array_equal(np.asarray(res.losses), np.asarray(ref.losses))

    # with the progress bar, 40 steps run in chunks of 2: the refused step is the first of the
    # second chunk, and the result is the same
    with pytest.warns(RuntimeWarning, match=FBGVI_WARNING.format(k=2)):
        bar = plain(vn.FBGVI, _steep_model, step_size=50.0).run(KEY, 40, progress_bar=True)
    _assert_trees_equal(bar.params, res.params)
    _assert_trees_equal(bar.state._replace(rng_key=0), res.state._replace(rng_key=0))
    np.testing.assert_array_equal(np.asarray(bar.losses), np.asarray(res.losses))

    # later updates are no-ops with a NaN loss
    after, loss = fb.update(res.state)
    assert np.isnan(float(loss)) and int(after.nonfinite_step) == 2 and int(after.step) == 2
    for name in ("mean", "cov", "scale_tril"):
        np.testing.assert_array_equal(
            np.asarray(getattr(after, name)), np.asarray(getattr(res.state, name))
        )
    # from the kept Gaussian with the flag cleared, the next step is refused again
    cleared = fb.set_gaussian(res.state, res.state.mean, res.state.cov)
    assert int(cleared.nonfinite_step) == -1
    again, loss = fb.update(cleared)
    assert not np.isfinite(float(loss)) and int(again.nonfinite_step) == 2
    np.testing.assert_array_equal(np.asarray(again.mean), mean)


def test_fbgvi_stop_keeps_the_rng_key_of_the_last_finite_state():
    with pytest.warns(RuntimeWarning, match=FBGVI_WARNING.format(k=2)):
        res = plain(vn.FBGVI, _steep_model, step_size=50.0).run(KEY, 40, progress_bar=False)
    ref = plain(vn.FBGVI, _steep_model, step_size=50.0).run(KEY, 2, progress_bar=False)
    assert res.nonfinite_step == 2 and ref.nonfinite_step is None
    np.testing.assert_array_equal(np.asarray(res.state.mean), np.asarray(ref.state.mean))
    np.testing.assert_array_equal(np.asarray(res.state.rng_key), np.asarray(ref.state.rng_key))


# --------------------------------------------------------------------------- refusals
def _param_model():
    mu = numpyro.param("mu", jnp.array(-3.0))
    z = numpyro.sample("z", dist.Normal(mu, 1.0))
    numpyro.sample("x", dist.Normal(z, 1.0), obs=2.0)


DRIVERS = {
    "MirroredSVGD": lambda m: vn.MirroredSVGD(m, 5),
    "FBGVI": lambda m: vn.FBGVI(m),
}
# FBGVI traces the model concretely and shows the value; MirroredSVGD traces it under
# jax.eval_shape, where the value is abstract and only the name is shown (see _shown)
SHOWN = {"MirroredSVGD": "mu", "FBGVI": "mu = -3.0"}


def _param_refusal(driver):
    return (
        rf"^{driver} cannot learn model parameters, and the model has numpyro.param sites "
        rf"\['mu'\]: it would hold them at their current values \({SHOWN[driver]}\)\. Fit them "
        r"by maximum likelihood with numpyro.infer.SVI\(model, guide, optim, loss=\.\.\.\) and "
        r"loss=vidiv.numpyro.AlphaDivergence\(\) or vidiv.numpyro.ChiSquaredVIS\(\).*give them "
        r"a prior \(numpyro.sample\).*numpyro.handlers.block\(model, hide_fn=lambda site: "
        r"site\['type'\] == 'param'\)\.(\n|$)"  # jax may append a traceback note
    )


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_drivers_refuse_model_parameters(driver):
    make = DRIVERS[driver]
    with pytest.raises(ModelStructureError, match=_param_refusal(driver)):
        make(_param_model).init(KEY)
    with pytest.raises(ModelStructureError, match=_param_refusal(driver)):
        make(_param_model).run(KEY, 5, progress_bar=False)

    def observed_only():  # parameters and no latent: the parameter refusal comes first
        mu = numpyro.param("mu", -3.0)
        numpyro.sample("x", dist.Normal(mu, 1.0), obs=2.0)

    with pytest.raises(
        ModelStructureError,
        match=rf"^{driver} cannot learn model parameters.*"
        r"numpyro.param sites \['mu'\]",
    ):
        make(observed_only).init(KEY)


def test_drivers_accept_hidden_parameters_as_constants():
    """The documented escape hatch: block the param sites to hold them fixed on purpose."""
    fixed = handlers.block(_param_model, hide_fn=lambda site: site["type"] == "param")
    fb = vn.FBGVI(fixed, step_size=0.5)
    state = fb.init(KEY)
    for _ in range(5):  # zero noise: exact expected gradient and Hessian for a Gaussian target
        state, _ = fb.update_with_noise(state, jnp.zeros((1, 1)))
    # posterior of z with mu = -3 held fixed: N(-0.5, 1/2)
    assert abs(float(state.mean[0]) + 0.5) < 1e-4 and abs(float(state.cov[0, 0]) - 0.5) < 1e-4
    svgd = vn.MirroredSVGD(fixed, 5)
    res = svgd.run(KEY, 3, progress_bar=False)
    assert res.params["z"].shape == (5,) and np.isfinite(np.asarray(res.losses)).all()


def _delta_model():
    z = numpyro.sample("z", dist.Normal(0.0, 1.0))
    w = numpyro.sample("w", dist.Delta(2.0 * z))
    numpyro.sample("x", dist.Normal(w, 1.0), obs=2.0)


def _wrapped_delta_model():  # an ExpandedDistribution inside an Independent: still a Delta
    z = numpyro.sample("z", dist.Normal(0.0, 1.0))
    w = numpyro.sample("w", dist.Delta(2.0 * z).expand([2]).to_event(1))
    numpyro.sample("x", dist.Normal(w, 1.0).to_event(1), obs=jnp.ones(2))


@pytest.mark.parametrize("driver", list(DRIVERS))
@pytest.mark.parametrize("model", [_delta_model, _wrapped_delta_model])
def test_drivers_refuse_point_masses(driver, model):
    with pytest.raises(
        ModelStructureError,
        match=rf"^latent site 'w' is a point mass \(Delta\): "
        rf"it has no density for {driver} to move\. If it is a function of other "
        r"sites, record it with numpyro.deterministic\('w', value\); if it is a "
        r"free point estimate, give it a prior distribution, or fit it with "
        r"numpyro.infer.SVI and an AutoDelta guide\.(\n|$)",
    ):
        DRIVERS[driver](model).init(KEY)


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_drivers_refuse_models_without_latents_and_discrete_latents(driver):
    make = DRIVERS[driver]

    def no_latent():
        numpyro.sample("x", dist.Normal(0.0, 1.0), obs=2.0)

    with pytest.raises(ModelStructureError, match="no latent sample site"):
        make(no_latent).init(KEY)

    def discrete():
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        k = numpyro.sample("k", dist.Bernoulli(0.5))
        numpyro.sample("x", dist.Normal(z + k, 1.0), obs=2.0)

    expected = UnsupportedSupportError if driver == "MirroredSVGD" else ModelStructureError
    with pytest.raises(
        expected,
        match=re.escape("latent site 'k'")
        if driver == "FBGVI"
        else r"no mirror map for latent site 'k'",
    ):
        make(discrete).init(KEY)


_BAD_DATA = {"nan": (float("nan"), "1 NaN"), "+inf": (float("inf"), "1 +inf"),
             "-inf": (float("-inf"), "1 -inf")}  # fmt: skip


def _data_model(bad):
    y = jnp.array([0.5, bad, 1.5])

    def model():
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        with numpyro.plate("n", 3):
            numpyro.sample("y", dist.Normal(z, 1.0), obs=y)

    return model


@pytest.mark.parametrize("bad", list(_BAD_DATA))
@pytest.mark.parametrize("who", ["FBGVI", "MirroredSVGD", "ChiSquaredVIS", "AlphaDivergence"])
def test_non_finite_observed_data_is_named(who, bad):
    # issue 15: NumPyro answered "Cannot find valid initial parameters" for every driver
    value, count = _BAD_DATA[bad]
    model = _data_model(value)
    expected = re.escape(f"{who}: observed site 'y' contains {count} value(s) out of 3")
    with pytest.raises(NonFiniteError, match=expected + ".*obs_mask"):
        if who == "FBGVI":
            vn.FBGVI(model).run(KEY, 2, progress_bar=False)
        elif who == "MirroredSVGD":
            vn.MirroredSVGD(model, num_particles=5).run(KEY, 2, progress_bar=False)
        else:  # a guide whose own initialisation does not read the data
            def guide():
                numpyro.sample("z", dist.Normal(numpyro.param("m", 0.0), 1.0))

            loss = getattr(vn, who)(num_particles=4)
            SVI(model, guide, numpyro.optim.Adam(0.01), loss).run(KEY, 2, progress_bar=False)


@pytest.mark.parametrize("bad", list(_BAD_DATA))
def test_fit_names_non_finite_data_before_the_autoguide_initialisation(bad):
    # NumPyro's autoguides initialise with the data: the host's "Cannot find valid initial
    # parameters" came first
    from numpyro.infer.autoguide import AutoNormal

    value, count = _BAD_DATA[bad]
    model = _data_model(value)
    svi = SVI(model, AutoNormal(model), numpyro.optim.Adam(0.01), vn.AlphaDivergence())
    with pytest.raises(NonFiniteError, match=re.escape(f"fit: observed site 'y' contains {count}")):
        vn.fit(svi, KEY, 2, progress_bar=False)
