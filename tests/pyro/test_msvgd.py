"""vidiv.pyro.MirroredSVGD: the sparse Dirichlet, positive and mixed sites, shapes, errors."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from tests.particles import ordered as od
from tests.particles import sparse_dirichlet as sd
from vidiv.errors import (
    InvalidArgumentError,
    ModelStructureError,
    NonFiniteError,
    UnsupportedSupportError,
)
from vidiv.particles import msvgd_direction, svgd_direction
from vidiv.pyro import MirroredSVGD


def _decaying(optimizer, lr, gamma, **kw):
    return pyro.optim.ExponentialLR(
        {"optimizer": optimizer, "optim_args": {"lr": lr, **kw}, "gamma": gamma}
    )


def _fit(svgd, optim, steps, *args):
    for _ in range(steps):
        svgd.step(*args)
        optim.step()  # the learning-rate schedule
    return svgd.get_samples()


def dirichlet_model():
    pyro.sample("w", dist.Dirichlet(torch.as_tensor(sd.ALPHA)))


# (variant, optimiser, lr, decay, threshold): measured in issue 6's sweeps, see the README
DIRICHLET_RUNS = {
    "msvgd": (torch.optim.RMSprop, 0.3, 0.99, {"alpha": 0.9}, 0.98),
    "svmd": (torch.optim.Adam, 0.5, 0.993, {}, 0.998),
}


@pytest.mark.parametrize("variant", ["msvgd", "svmd"])
def test_sparse_dirichlet_beats_iid_draws(variant):
    opt_cls, lr, decay, kw, threshold = DIRICHLET_RUNS[variant]
    optim = _decaying(opt_cls, lr, decay, **kw)
    svgd = MirroredSVGD(dirichlet_model, sd.NUM_PARTICLES, optim=optim, variant=variant,
                        init={"w": sd.initial_particles(0)}, threshold=threshold)
    w = _fit(svgd, optim, sd.NUM_STEPS)["w"].numpy()
    assert w.shape == (50, 20)
    assert np.all(w > 0) and np.allclose(w.sum(-1), 1.0)
    assert np.abs(w.mean(0) - sd.MEAN).max() < 0.01
    ed = sd.energy_to_reference(w)
    assert ed <= sd.iid_median()  # ~9.6e-4 with these reference draws (issue: 1.05e-3)
    if variant == "msvgd":  # measured 2.9e-4: beats Pyro SVGD's per-coordinate mode
        assert ed <= sd.PYRO_SVGD_UNIVARIATE


def test_direction_uses_constrained_gradients():
    """φ from the adapter = the core direction with the analytic ∇ log p (Dirichlet / Normal)."""
    lay_w = torch.as_tensor(sd.initial_particles(1))

    svgd = MirroredSVGD(dirichlet_model, 50, init={"w": lay_w})
    phi = svgd.direction()
    vals = svgd.get_samples()
    expect = msvgd_direction(svgd.layout, vals, {"w": (torch.as_tensor(sd.ALPHA) - 1) / vals["w"]})
    torch.testing.assert_close(phi, expect, rtol=1e-12, atol=1e-12)

    def normal_model():
        pyro.sample("z", dist.Normal(torch.tensor([1.0, -2.0]), 0.5).to_event(1))

    z0 = torch.randn(10, 2)
    svgd = MirroredSVGD(normal_model, 10, init={"z": z0})
    expect = svgd_direction(z0, -(z0 - torch.tensor([1.0, -2.0])) / 0.25)
    torch.testing.assert_close(svgd.direction(), expect, rtol=1e-12, atol=1e-12)


def test_gamma_site_has_the_right_mean_and_variance():
    """x ~ Gamma(2, 1) (support nonnegative in torch): mean 2, variance 2 within 5%."""

    def model():
        pyro.sample("x", dist.Gamma(2.0, 1.0))

    optim = _decaying(torch.optim.Adam, 0.1, 0.995)
    x0 = np.random.default_rng(0).uniform(0.1, 1.0, size=200)  # far from Gamma(2, 1)
    svgd = MirroredSVGD(model, 200, optim=optim, init={"x": x0})
    x = _fit(svgd, optim, 800)["x"].numpy()
    assert x.shape == (200,) and np.all(x > 0)
    assert x.mean() == pytest.approx(2.0, rel=0.05)
    assert x.var() == pytest.approx(2.0, rel=0.05)


@pytest.mark.parametrize("case", sorted(od.CASES))
def test_ordered_sites_recover_order_statistics(case):
    """Flat prior on the ordered cone times iid densities (``tests.particles.ordered``)."""
    support, logpdf, _, _ = od.CASES[case]
    c = getattr(dist.constraints, support)

    def model():
        mu = pyro.sample("mu", dist.ImproperUniform(c, (), (2,)))
        pyro.factor("lik", logpdf(mu).sum(-1))

    optim = _decaying(torch.optim.Adam, 0.1, 0.995)
    svgd = MirroredSVGD(model, od.NUM_PARTICLES, optim=optim,
                        init={"mu": od.initial_particles()})
    od.check(_fit(svgd, optim, od.NUM_STEPS)["mu"].numpy(), case)

    pyro.set_rng_seed(0)  # without init, the improper site starts uniform in (-2, 2)
    pyro.clear_param_store()
    svgd = MirroredSVGD(model, od.NUM_PARTICLES)
    assert torch.isfinite(svgd.log_p()).all()  # sets the particles up
    mu0 = svgd.get_samples()["mu"]
    u = torch.distributions.biject_to(c).inv(mu0).numpy()
    assert mu0.shape == (od.NUM_PARTICLES, 2) and np.all(np.abs(u) < 2) and u.std() > 0.9


def conjugate_model():
    from tests.particles import conjugate as cj

    w = pyro.sample("w", dist.Dirichlet(torch.as_tensor(cj.ALPHA)))
    pyro.sample("counts", dist.Multinomial(int(cj.COUNTS.sum()), w),
                obs=torch.as_tensor(cj.COUNTS))
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    with pyro.plate("y_plate", len(cj.Y)):
        pyro.sample("y", dist.Normal(mu, 1.0), obs=torch.as_tensor(cj.Y))
    tau = pyro.sample("tau", dist.Gamma(3.0, 2.0))
    with pyro.plate("z_plate", len(cj.Z)):
        pyro.sample("z", dist.Normal(0.0, tau.rsqrt()), obs=torch.as_tensor(cj.Z))
    p = pyro.sample("p", dist.Beta(2.0, 3.0))
    pyro.sample("k", dist.Binomial(cj.N_TRIALS, p), obs=torch.tensor(cj.K))


@pytest.mark.parametrize("variant", ["msvgd", "svmd"])
def test_mixed_sites_match_the_exact_posterior(variant):
    """Simplex + real + positive + unit-interval sites moved jointly (one kernel on the
    concatenated θ, block-diagonal ∇²ψ⁻¹): posterior means within 0.15 exact sd."""
    from tests.particles import conjugate as cj

    optim = _decaying(torch.optim.Adam, 0.2, 0.99)
    svgd = MirroredSVGD(conjugate_model, 50, optim=optim, variant=variant,
                        init=cj.prior_particles(50))
    samples = _fit(svgd, optim, 300)
    assert {k: tuple(v.shape) for k, v in samples.items()} == {
        "w": (50, 3), "mu": (50,), "tau": (50,), "p": (50,)}
    errors = cj.standardised_errors({k: v.numpy() for k, v in samples.items()})
    assert max(errors.values()) < 0.05, errors  # issue: 0.15; measured <= 0.008


def test_plates_batches_of_simplexes_and_shapes():
    """A plate of simplex sites, a vector of positive sites, observations in a plate. Like
    Pyro's SVGD, the model runs inside a particle plate, so it must broadcast over batch dims."""

    def model(y):
        with pyro.plate("groups", 2):
            w = pyro.sample("w", dist.Dirichlet(torch.ones(3)))  # (2, 3)
        rate = pyro.sample("rate", dist.Gamma(2.0 * torch.ones(3), 1.0).to_event(1))  # (3,)
        lam = (w * rate).sum(-1).sum(-1, keepdim=True)
        with pyro.plate("data", y.shape[0]):
            pyro.sample("y", dist.Poisson(lam), obs=y)

    y = torch.tensor([3.0, 5.0, 4.0])
    svgd = MirroredSVGD(model, 7)
    loss = svgd.step(y)
    assert np.isfinite(loss)
    samples = svgd.get_samples()
    assert samples["w"].shape == (7, 2, 3) and samples["rate"].shape == (7, 3)
    assert svgd.layout.size == 2 * 2 + 3
    torch.testing.assert_close(samples["w"].sum(-1), torch.ones(7, 2))
    lp = svgd.log_p(y)  # per particle, against a hand computation for particle 0
    w0, r0 = samples["w"][0], samples["rate"][0]
    expect = (dist.Dirichlet(torch.ones(3)).log_prob(w0).sum()
              + dist.Gamma(2.0 * torch.ones(3), 1.0).log_prob(r0).sum()
              + dist.Poisson((w0 * r0).sum()).log_prob(y).sum())
    torch.testing.assert_close(lp[0], expect)


def test_unsupported_support_names_the_site():
    def model():
        pyro.sample("ok", dist.Normal(0.0, 1.0))
        pyro.sample("corr", dist.Uniform(-1.0, 1.0))

    with pytest.raises(UnsupportedSupportError, match=r"site 'corr'.*Supported supports: simplex"):
        MirroredSVGD(model, 5).step()

    def discrete():
        pyro.sample("k", dist.Bernoulli(0.3))

    with pytest.raises(UnsupportedSupportError, match="site 'k'.*Discrete sites"):
        MirroredSVGD(discrete, 5).step()


def test_bad_arguments():
    with pytest.raises(InvalidArgumentError, match="num_particles must be an integer >= 2"):
        MirroredSVGD(dirichlet_model, 1)
    with pytest.raises(InvalidArgumentError, match="optim must be a pyro.optim optimiser"):
        MirroredSVGD(dirichlet_model, 5, optim=torch.optim.Adam)
    with pytest.raises(InvalidArgumentError, match="variant must be one of"):
        MirroredSVGD(dirichlet_model, 5, variant="svn")
    with pytest.raises(InvalidArgumentError, match="get_samples"):
        MirroredSVGD(dirichlet_model, 5).get_samples()
    with pytest.raises(InvalidArgumentError, match=r"init\['w'\] has shape \(4, 20\)"):
        MirroredSVGD(dirichlet_model, 5, init={"w": sd.initial_particles()[:4]}).step()
    with pytest.raises(InvalidArgumentError, match=r"init is missing latent site\(s\) \[.w.\]"):
        MirroredSVGD(dirichlet_model, 5, init={"v": sd.initial_particles()[:5]}).step()

    def observed_only():
        pyro.sample("y", dist.Normal(0.0, 1.0), obs=torch.tensor(0.3))

    with pytest.raises(ModelStructureError, match="no latent sample sites"):
        MirroredSVGD(observed_only, 5).step()


def test_non_finite_direction_raises():
    def model():
        x = pyro.sample("x", dist.Gamma(2.0, 1.0))
        pyro.factor("broken", torch.sqrt(0.0 * x))  # finite value, NaN gradient

    with pytest.raises(NonFiniteError, match="step 0: the Stein direction is not finite"):
        MirroredSVGD(model, 5).step()


def test_to_datatree_and_ksd():
    optim = _decaying(torch.optim.Adam, 0.2, 0.99)
    svgd = MirroredSVGD(conjugate_model, 20, optim=optim)
    before = svgd.ksd()
    _fit(svgd, optim, 100)
    after = svgd.ksd()
    assert after < 0.5 * before  # particles moved towards the target
    dt = svgd.to_datatree()
    post = dt["posterior"]
    assert post["w"].shape == (1, 20, 3) and post["tau"].shape == (1, 20)
    np.testing.assert_allclose(dt["sample_stats"]["log_p"].values.ravel(),
                               svgd.log_p().numpy(), rtol=1e-12)
    assert dt.attrs["objective"] == "MirroredSVGD(msvgd)"
    assert dt["optimization"]["loss"].shape == (100,)


def test_model_that_does_not_broadcast_is_rejected():
    def model():
        loc = pyro.sample("loc", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        with pyro.plate("data", 3):
            pyro.sample("y", dist.Normal(loc[..., 0][..., None], 1.0), obs=torch.zeros(3))

    with pytest.raises(ModelStructureError, match="site 'y' has log_prob shape"):
        MirroredSVGD(model, 4).step()


def hmm_model(y):
    theta1 = pyro.sample("theta1", dist.Dirichlet(torch.ones(2)))
    theta2 = pyro.sample("theta2", dist.Dirichlet(torch.ones(2)))
    # Stan's positive_ordered[2] mu with normal(3, 1), normal(10, 1) priors
    mu = pyro.sample("mu", dist.ImproperUniform(dist.constraints.positive_ordered_vector,
                                                (), (2,)))
    pyro.factor("mu_prior", dist.Normal(torch.tensor([3.0, 10.0]), 1.0).log_prob(mu).sum(-1))
    log_trans = torch.stack([theta1, theta2], dim=-2).log()  # (..., from, to)
    emit = dist.Normal(mu[..., None, :], 1.0).log_prob(y[:, None])  # (..., N, K)
    gamma = emit[..., 0, :]
    for t in range(1, y.shape[0]):
        gamma = torch.logsumexp(gamma[..., :, None] + log_trans, dim=-2) + emit[..., t, :]
    pyro.factor("forward", torch.logsumexp(gamma, dim=-1))


@pytest.mark.slow
def test_hmm_example_against_posteriordb():
    """posteriordb hmm_example (simplex + positive-ordered sites): MSVGD means within 0.15
    reference sd. (SVMD stalls with theta2, whose mean 0.07 sits near the boundary, 0.3-0.65
    sd off.)"""
    from tests.particles import hmm_example as hmm

    if not hmm.available():
        pytest.skip("shared posteriordb data not found")
    optim = _decaying(torch.optim.Adam, 0.1, 0.995)
    svgd = MirroredSVGD(hmm_model, 50, optim=optim, variant="msvgd",
                        init=hmm.initial_particles(50))
    samples = _fit(svgd, optim, 1000, torch.as_tensor(hmm.data()))
    errors = hmm.standardised_errors({k: v.numpy() for k, v in samples.items()})
    assert max(errors.values()) < 0.15, errors


def eight_schools_noncentered(y, sigma):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("school", len(y)):
        tt = pyro.sample("theta_trans", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Normal(mu + tau * tt, sigma), obs=y)


def test_default_kernel_fixes_the_tau_drift_on_eight_schools():
    """The NumPyro test's twin (benchmark recipe, float64): kernel on tau -> tau's mean ~1.1-1.3
    reference sd high; kernel on log tau -> every mean within 0.35 sd."""
    from tests.particles import eight_schools as es

    if not es.available():
        pytest.skip("shared posteriordb data not found")
    y, sigma = (torch.as_tensor(a) for a in es.data())
    init = {k: torch.as_tensor(v) for k, v in es.initial_particles(100).items()}
    errors = {}
    for space in ("primal", "auto"):  # "auto", the default: the kernel on log tau here
        svgd = MirroredSVGD(eight_schools_noncentered, 100, optim=pyro.optim.Adam({"lr": 0.01}),
                            init=init, kernel_space=space, name=f"es_{space}")
        for _ in range(1000):
            svgd.step(y, sigma)
        errors[space] = es.standardised_errors({k: v.numpy() for k, v in
                                                svgd.get_samples().items()})
    assert MirroredSVGD(eight_schools_noncentered, 2).kernel_space == "auto"
    assert errors["primal"]["tau"] > 0.8, errors
    assert max(errors["auto"].values()) < 0.35, errors
