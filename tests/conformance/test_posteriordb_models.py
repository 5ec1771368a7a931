"""posteriordb transcriptions: NumPyro and Pyro give the same log density, both Stan's model.

For every posterior in ``shared/benchmarks/posteriordb`` (skipped when the folder is absent):

* the unconstrained potential (log joint + log|Jacobian|, NumPyro ``potential_energy`` vs Pyro
  ``initialize_model(...)[1]``) agrees to 1e-4 at the reference mean and at reference draws;
* the reference mean beats the points ``u(mean) +- 3 sd_u`` (unconstrained coordinates);
* Stein's identity ``E_p[grad_u log p(u)] = 0`` holds on the 10,000 reference NUTS draws: every
  component's mean gradient is within 4.5 Monte Carlo standard errors of 0. A wrong prior, scale,
  Jacobian or likelihood shifts it (a negative control shows the check fails without the Jacobian);
* the constrained log joint equals an independent scipy/numpy formula of the Stan program.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from benchmarks.pdb import registry

_OK, _WHY = registry.available()
pytestmark = pytest.mark.skipif(not _OK, reason=_WHY or "posteriordb folder missing")
NAMES = list(registry.POSTERIORS)

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")
jnp = jax.numpy


def _numpyro_parts(name):
    from numpyro import handlers
    from numpyro.distributions import biject_to

    model = registry.numpyro_model(name, dtype=jnp.float64)
    mean = registry.reference_mean(name)
    sites = registry.latent_sites(name)
    trace = handlers.trace(handlers.substitute(handlers.seed(model, 0), data=mean)).get_trace()
    to_u = {k: biject_to(trace[k]["fn"].support).inv for k in sites}
    return model, sites, to_u


def _potential_numpyro(model):
    from numpyro.infer.util import potential_energy

    return jax.jit(lambda u: potential_energy(model, (), {}, u))


def _unconstrain(to_u, draws):
    return {k: jax.vmap(f)(jnp.asarray(draws[k])) for k, f in to_u.items()}


@pytest.mark.parametrize("name", NAMES)
def test_backends_agree_and_mean_beats_perturbed(name):
    from pyro.infer.mcmc.util import initialize_model

    model, sites, to_u = _numpyro_parts(name)
    pe_n = _potential_numpyro(model)
    _, pe_p, transforms, _ = initialize_model(registry.pyro_model(name, dtype=torch.float64))
    ref = registry.reference(name)
    mean = registry.reference_mean(name)
    rows = [0, 5000]
    points = [mean] + [{k: ref[k][i] for k in sites} for i in rows]
    for point in points:
        u_n = {k: to_u[k](jnp.asarray(point[k])) for k in sites}
        u_p = {k: transforms[k](torch.as_tensor(point[k])) for k in sites}
        for k in sites:  # same unconstrained coordinates in both backends
            np.testing.assert_allclose(np.asarray(u_n[k]), u_p[k].numpy(), rtol=1e-9, atol=1e-9)
        a, b = float(pe_n(u_n)), float(pe_p(u_p))
        assert np.isfinite(a) and abs(a - b) <= 1e-4 * max(1.0, abs(a)), (name, a, b)

    u_draws = _unconstrain(to_u, ref)
    u_mean = {k: to_u[k](jnp.asarray(mean[k])) for k in sites}
    sd = {k: jnp.std(v, axis=0) for k, v in u_draws.items()}
    at_mean = float(pe_n(u_mean))
    for sign in (1.0, -1.0):
        shifted = {k: u_mean[k] + sign * 3.0 * sd[k] for k in sites}
        worse = float(pe_n(shifted))
        assert worse > at_mean + 4.0, (name, sign, at_mean, worse)  # potential = -log density


def _stein_z(model, to_u, draws):
    from numpyro.infer.util import potential_energy

    u = _unconstrain(to_u, draws)
    grads = jax.jit(jax.vmap(jax.grad(lambda p: -potential_energy(model, (), {}, p))))(u)
    n = next(iter(draws.values())).shape[0]
    return {k: np.asarray(g.mean(0) / (g.std(0) / np.sqrt(n))) for k, g in grads.items()}


@pytest.mark.parametrize("name", NAMES)
def test_stein_identity_on_reference_draws(name):
    model, sites, to_u = _numpyro_parts(name)
    ref = registry.reference(name)
    z = _stein_z(model, to_u, {k: ref[k] for k in sites})
    worst = max(float(np.max(np.abs(v))) for v in z.values())
    assert worst < 4.5, (name, {k: np.round(v, 2) for k, v in z.items()})


def test_stein_identity_detects_a_missing_jacobian():
    """Negative control: the constrained log joint used as if it were the unconstrained density
    (Jacobian of tau = exp(u) dropped) must fail the Stein check by a wide margin."""
    from numpyro.infer.util import log_density

    name = "eight_schools-eight_schools_noncentered"
    model, sites, to_u = _numpyro_parts(name)
    ref = registry.reference(name)
    u = _unconstrain(to_u, {k: ref[k] for k in sites})

    def no_jacobian(p):
        x = {k: to_u[k].inv(v) for k, v in p.items()}
        return log_density(model, (), {}, x)[0]

    g = jax.jit(jax.vmap(jax.grad(no_jacobian)))(u)["tau"]
    z = float(g.mean() / (g.std() / np.sqrt(g.shape[0])))
    assert abs(z) > 20.0, z


# ---- independent formulas (scipy / numpy), constrained space, normalised priors ------------------


def _normal(y, m, s):
    return stats.norm.logpdf(y, m, s).sum()


def _scipy_log_joint(name, d, p):
    if name == "arK-arK":
        K, T, y = d["K"], d["T"], d["y"]
        m = p["alpha"] + sum(p["beta"][k - 1] * y[K - k : T - k] for k in range(1, K + 1))
        prior = _normal(p["alpha"], 0, 10) + _normal(p["beta"], 0, 10)
        return (
            prior + stats.halfcauchy.logpdf(p["sigma"], scale=2.5) + _normal(y[K:], m, p["sigma"])
        )
    if name.startswith("eight_schools"):
        mu, tau = p["mu"], p["tau"]
        prior = _normal(mu, 0, 5) + stats.halfcauchy.logpdf(tau, scale=5)
        if name.endswith("noncentered"):
            theta = mu + tau * p["theta_trans"]
            return prior + _normal(p["theta_trans"], 0, 1) + _normal(d["y"], theta, d["sigma"])
        return prior + _normal(p["theta"], mu, tau) + _normal(d["y"], p["theta"], d["sigma"])
    if name == "hmm_example-hmm_example":
        y, mu = d["y"], p["mu"]
        log_a = np.log(np.stack([p["theta1"], p["theta2"]]))
        gamma = stats.norm.logpdf(y[0], mu, 1)
        for t in range(1, len(y)):
            gamma = np.array([logsumexp(gamma + log_a[:, k]) for k in range(2)])
            gamma = gamma + stats.norm.logpdf(y[t], mu, 1)
        return logsumexp(gamma) + stats.norm.logpdf(mu[0], 3, 1) + stats.norm.logpdf(mu[1], 10, 1)
    if name == "kidiq-kidscore_interaction":
        b, hs, iq = p["beta"], d["mom_hs"], d["mom_iq"]
        m = b[0] + b[1] * hs + b[2] * iq + b[3] * hs * iq
        return stats.halfcauchy.logpdf(p["sigma"], scale=2.5) + _normal(
            d["kid_score"], m, p["sigma"]
        )
    if name == "kilpisjarvi_mod-kilpisjarvi":
        prior = _normal(p["alpha"], d["pmualpha"], d["psalpha"]) + _normal(
            p["beta"], d["pmubeta"], d["psbeta"]
        )
        return prior + _normal(d["y"], p["alpha"] + p["beta"] * d["x"], p["sigma"])
    if name == "low_dim_gauss_mix-low_dim_gauss_mix":
        mu, s, th, y = p["mu"], p["sigma"], p["theta"], d["y"]
        prior = (
            _normal(mu, 0, 2)
            + stats.halfnorm.logpdf(s, scale=2).sum()
            + stats.beta.logpdf(th, 5, 5)
        )
        a = np.log(th) + stats.norm.logpdf(y, mu[0], s[0])
        b = np.log1p(-th) + stats.norm.logpdf(y, mu[1], s[1])
        return prior + np.logaddexp(a, b).sum()
    if name == "nes2000-nes":
        age = d["age_discrete"]
        X = np.column_stack(
            [
                np.ones(d["N"]),
                d["real_ideo"],
                d["race_adj"],
                age == 2,
                age == 3,
                age == 4,
                d["educ1"],
                d["gender"],
                d["income"],
            ]
        ).astype(float)
        return _normal(d["partyid7"], X @ p["beta"], p["sigma"])
    if name == "sblrc-blr":
        prior = _normal(p["beta"], 0, 10) + stats.halfnorm.logpdf(p["sigma"], scale=10)
        return prior + _normal(d["y"], d["X"] @ p["beta"], p["sigma"])
    raise KeyError(name)


@pytest.mark.parametrize("name", NAMES)
def test_log_joint_matches_independent_formula(name):
    import pyro.poutine as poutine
    from numpyro.infer.util import log_density

    d = registry.data(name)
    ref = registry.reference(name)
    sites = registry.latent_sites(name)
    model_n = registry.numpyro_model(name, dtype=jnp.float64)
    model_p = registry.pyro_model(name, dtype=torch.float64)
    for row in [None, 17, 4242]:
        p = {k: (ref[k].mean(0) if row is None else ref[k][row]) for k in sites}
        expected = float(_scipy_log_joint(name, d, p))
        got_n = float(log_density(model_n, (), {}, {k: jnp.asarray(v) for k, v in p.items()})[0])
        cond = poutine.condition(model_p, data={k: torch.as_tensor(v) for k, v in p.items()})
        got_p = float(poutine.trace(cond).get_trace().log_prob_sum())
        np.testing.assert_allclose([got_n, got_p], expected, rtol=1e-9, atol=1e-7)


def test_noncentered_theta_is_the_transformed_parameter():
    from numpyro import handlers

    name = "eight_schools-eight_schools_noncentered"
    ref = registry.reference(name)
    p = {k: ref[k][123] for k in ("mu", "tau", "theta_trans")}
    model = registry.numpyro_model(name, dtype=jnp.float64)
    tr = handlers.trace(handlers.substitute(handlers.seed(model, 0), data=p)).get_trace()
    assert tr["theta"]["type"] == "deterministic"
    np.testing.assert_allclose(
        np.asarray(tr["theta"]["value"]), ref["theta"][123], rtol=1e-5, atol=1e-5
    )


def test_missing_folder_gives_a_clear_skip_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("VIDIV_POSTERIORDB", str(tmp_path / "nowhere"))
    ok, why = registry.available()
    assert not ok and "not found" in why and "VIDIV_POSTERIORDB" in why
    assert registry.names() == []
