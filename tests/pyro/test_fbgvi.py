"""vidiv.pyro.FBGVI: Gaussian target (paper setting), guide compatibility (params written into a
real AutoMultivariateNormal), constrained sites, bad input."""

from __future__ import annotations

import re

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Predictive

from tests.gaussian.targets import bad_gaussians, kl_optimal_gaussian_1d, paper_target, plain
from vidiv.errors import InvalidArgumentError, ModelStructureError, NonFiniteError, VidivError
from vidiv.gaussian import Decay, gaussian_kl
from vidiv.pyro import FBGVI as _FBGVI


def FBGVI(model, **kw):
    """The plain scheme (tests.gaussian.targets.PLAIN_FBGVI): what these tests' numbers are of."""
    return plain(_FBGVI, model, **kw)


def _mvn_model(target):
    mean, cov = torch.tensor(target.mean), torch.tensor(target.cov)

    def model():
        pyro.sample("x", dist.MultivariateNormal(mean, cov))

    return model


def _kl(fb, target):
    return gaussian_kl(fb.mean.numpy(), fb.cov.numpy(), target.mean, target.cov)


def test_exact_expected_gradients_reach_kl_1e_3_on_paper_target():
    target = paper_target(d=10, cond=200.0, seed=0)
    fb = FBGVI(_mvn_model(target), init_scale=1.0, step_size=1.0)
    for _ in range(400):  # zero noise: ∇V, ∇²V at the mean = their expectations under q
        fb.step_with_noise(torch.zeros(1, 10))
    assert _kl(fb, target) < 1e-3  # measured 9.3e-5


def test_one_sample_per_step_with_decaying_step_converges():
    target = paper_target(d=10, cond=200.0, seed=0)
    fb = FBGVI(
        _mvn_model(target), init_scale=1.0, step_size=1.0, num_samples=1, schedule=Decay(50.0)
    )
    losses = [fb.step() for _ in range(1500)]
    assert _kl(fb, target) < 0.05  # measured 0.021
    assert np.isfinite(losses).all() and abs(np.mean(losses[-300:])) < 0.5  # log Z = 0


def test_bwgd_nonfinite_raises_and_keeps_last_finite_state():
    target = paper_target(d=10, cond=200.0, seed=0)
    fb = FBGVI(_mvn_model(target), init_scale=1.0, step_size=3.0, variant="bwgd")
    with pytest.raises(NonFiniteError, match=r"went non-finite at step \d+.*variant='fbgvi'"):
        for _ in range(300):
            fb.step()
    assert 0 < fb.num_steps < 300
    assert torch.isfinite(fb.scale_tril).all()
    torch.testing.assert_close(fb.guide.loc.detach(), fb.mean)


def test_overflowing_log_density_raises_before_the_step():
    """A sample where -log p overflows: a VidivError with the fix (not torch's eigh failure)."""

    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.factor("steep", -torch.exp(torch.exp(z)))  # -inf from z > 6.6

    fb = FBGVI(model)
    fb.step_with_noise(torch.zeros(1, 1))
    mean, cov = fb.mean.clone(), fb.cov.clone()
    with pytest.raises(NonFiniteError, match=r"step 1: the gradient or Hessian of -log p is not "
                       r"finite.*set_gaussian") as err:
        fb.step_with_noise(torch.full((1, 1), 1e3))
    assert "variant='fbgvi'" not in str(err.value)  # only suggested to BWGD
    assert fb.num_steps == 1
    torch.testing.assert_close(fb.mean, mean)
    torch.testing.assert_close(fb.cov, cov)


def _two_site_model(y):
    # trace order "z" then "a"; the potential in (z, log a) is exactly Gaussian: a LogNormal prior
    # without data is N(0.5, 0.4²) in log a, and z is conjugate
    def model(y=y):
        z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        a = pyro.sample("a", dist.LogNormal(0.5, 0.4))
        with pyro.plate("n", y.shape[0]):
            pyro.sample("y", dist.Normal(z[0] + z[1], 1.0), obs=y)
        return a

    return model


def _two_site_posterior(y):
    n = y.shape[0]
    prec_z = np.eye(2) + n * np.ones((2, 2))
    cov = np.zeros((3, 3))
    cov[:2, :2] = np.linalg.inv(prec_z)
    cov[2, 2] = 0.4**2
    mean = np.r_[cov[:2, :2] @ (np.ones(2) * float(y.sum())), 0.5]
    return mean, cov


def test_guide_params_predictive_median_quantiles_constrained_site():
    y = torch.tensor(np.random.default_rng(0).normal(1.0, 1.0, size=10))
    model = _two_site_model(y)
    fb = FBGVI(model)  # default step size from the curvature at m0: 0.5 / λ_max(∇²V) = 0.5 / 21
    for _ in range(800):
        fb.step_with_noise(torch.zeros(1, 3))
    mean, cov = _two_site_posterior(y.numpy())
    assert fb.eta0 == pytest.approx(0.5 / 21)
    np.testing.assert_allclose(fb.mean.numpy(), mean, atol=1e-7)
    np.testing.assert_allclose(fb.cov.numpy(), cov, atol=1e-7)
    # the real AutoMultivariateNormal carries (m, chol Σ) with Pyro's scale × unit-lower layout
    guide = fb.guide
    assert torch.allclose(torch.diagonal(guide.scale_tril), torch.ones(3))
    torch.testing.assert_close(guide.get_posterior().covariance_matrix.detach(), fb.cov)
    unpacked = {site["name"]: value for site, value in guide._unpack_latent(fb.mean)}
    torch.testing.assert_close(unpacked["z"], fb.mean[:2])
    med = guide.median()
    torch.testing.assert_close(med["a"], torch.exp(fb.mean[2]))
    q = guide.quantiles([0.1, 0.9])
    assert float(q["a"][0]) < float(med["a"]) < float(q["a"][1])
    draws = Predictive(model, guide=guide, num_samples=2000, return_sites=["a", "z", "y"])(y)
    assert draws["a"].numel() == 2000 and draws["y"].shape[-1] == 10
    log_a = torch.log(draws["a"]).reshape(-1)
    assert abs(float(log_a.mean()) - 0.5) < 0.04 and abs(float(log_a.std()) - 0.4) < 0.03
    pytest.importorskip("arviz_base")
    from vidiv.pyro import to_datatree

    dt = to_datatree(model, guide, y, num_samples=200)
    assert dt["posterior"]["a"].shape[-1] == 200 or dt["posterior"]["a"].size == 200


def test_batched_and_row_by_row_hessians_agree():
    """The vmapped Hessian (one batched backward pass) equals the d-pass fallback."""
    y = torch.tensor(np.random.default_rng(0).normal(1.0, 1.0, size=10))
    fb = FBGVI(_two_site_model(y))
    fb.setup(y)
    flat = fb._flat
    x = torch.tensor([0.3, -0.7, 0.2])
    v, g, H = flat.value_grad_hessian(x, hessian=True)
    assert flat._batched_hessian  # this model vmaps
    flat._batched_hessian = False
    v2, g2, H2 = flat.value_grad_hessian(x, hessian=True)
    torch.testing.assert_close(H, H2, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(H, H.T, rtol=1e-13, atol=1e-13)
    assert float(v) == float(v2) and torch.equal(g, g2)


@pytest.mark.parametrize("hessian", [False, True])
def test_vmapped_samples_equal_the_per_point_loop(hessian):
    """All S points in one torch.func.vmap give the per-point values, gradients and Hessians."""
    y = torch.tensor(np.random.default_rng(0).normal(1.0, 1.0, size=10))
    fb = FBGVI(_two_site_model(y))
    fb.setup(y)
    flat = fb._flat
    X = torch.tensor(np.random.default_rng(1).normal(size=(16, 3)))
    v, g, H = flat.batch_value_grad_hessian(X, hessian=hessian)
    assert flat._vmap_samples  # this model vmaps
    loop = [flat.value_grad_hessian(x, hessian=hessian) for x in X]
    torch.testing.assert_close(v, torch.stack([o[0] for o in loop]), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g, torch.stack([o[1] for o in loop]), rtol=1e-12, atol=1e-12)
    if hessian:
        torch.testing.assert_close(H, torch.stack([o[2] for o in loop]), rtol=1e-12, atol=1e-12)
    else:
        assert H is None


def test_model_that_cannot_vmap_falls_back_to_the_loop():
    """A model with value-dependent Python control flow cannot be vmapped: same numbers, by loop."""
    y = torch.tensor(np.random.default_rng(0).normal(1.0, 1.0, size=10))

    def branching(y=y):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        scale = 1.0 if float(z.detach()) > 0 else 2.0  # float() of a batched tensor: vmap refuses
        pyro.sample("y", dist.Normal(z, scale).expand([10]).to_event(1), obs=y)

    fb = FBGVI(branching, num_samples=8, hessian="stein")
    fb.setup(y)
    X = torch.tensor([[-0.5], [0.2], [1.0], [-1.5], [0.1], [0.7], [-0.2], [2.0]], dtype=y.dtype)
    v, g, _ = fb._flat.batch_value_grad_hessian(X, hessian=False)
    assert not fb._flat._vmap_samples
    z = X[:, 0]
    s = torch.where(z > 0, 1.0, 2.0).to(y.dtype)
    want = 0.5 * z**2 + ((y - z[:, None]) ** 2).sum(-1) / (2 * s**2) + 10 * torch.log(s)
    want = want + 5.5 * np.log(2 * np.pi)
    torch.testing.assert_close(v, want, rtol=1e-12, atol=1e-12)
    grad = z - (y - z[:, None]).sum(-1) / s**2
    torch.testing.assert_close(g[:, 0], grad, rtol=1e-12, atol=1e-12)
    fb.step(y)  # and the driver steps on the fallback path
    assert fb.num_steps == 1


def test_stochastic_stein_mode_on_two_site_model():
    y = torch.tensor(np.random.default_rng(0).normal(1.0, 1.0, size=30))
    fb = FBGVI(_two_site_model(y), num_samples=4, hessian="stein", schedule=Decay(50.0))
    for _ in range(600):
        fb.step(y)
    mean, cov = _two_site_posterior(y.numpy())
    sd = np.sqrt(np.diag(cov))
    # measured (seeds 0-2): mean errors <= 0.033 sd, sd ratios within 3%
    assert np.all(np.abs(fb.mean.numpy() - mean) < 0.15 * sd)
    assert np.all(np.abs(np.sqrt(np.diag(fb.cov.numpy())) / sd - 1) < 0.1)


def test_structure_and_argument_errors():
    def discrete():
        pyro.sample("k", dist.Bernoulli(0.3))

    def subsampled():
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("n", 100, subsample_size=10):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=torch.zeros(10))

    def no_latent():
        pyro.sample("y", dist.Normal(0.0, 1.0), obs=torch.tensor(1.0))

    with pytest.raises(ModelStructureError, match="latent site 'k' is discrete"):
        FBGVI(discrete).step()
    with pytest.raises(ModelStructureError, match="plate 'n' is subsampled"):
        FBGVI(subsampled).step()
    with pytest.raises(VidivError, match="no latent sample site"):
        FBGVI(no_latent).step()
    with pytest.raises(InvalidArgumentError, match="hessian must be one of"):
        FBGVI(discrete, hessian="bfgs")
    with pytest.raises(InvalidArgumentError, match="variant must be one of"):
        FBGVI(discrete, variant="newton")
    with pytest.raises(InvalidArgumentError, match="step_size must be a finite positive"):
        FBGVI(discrete, step_size=0)


# ----------------------------------------------------------------- set_gaussian (warm start)
def test_set_gaussian_to_exact_posterior_gives_closed_form_median_and_quantiles():
    y = torch.tensor(np.random.default_rng(0).normal(1.0, 1.0, size=10))
    fb = FBGVI(_two_site_model(y))
    fb.setup()
    assert fb.latent_shapes == {"z": torch.Size([2]), "a": torch.Size([])}
    mean, cov = _two_site_posterior(y.numpy())
    fb.set_gaussian(mean, cov)
    assert fb.eta0 == pytest.approx(0.5 / 21)  # re-derived at the new mean (V is quadratic)
    med = fb.guide.median()
    torch.testing.assert_close(med["z"], torch.tensor(mean[:2]))
    torch.testing.assert_close(med["a"], torch.tensor(np.exp(mean[2])))
    q = fb.guide.quantiles([0.1, 0.9])
    sd = np.sqrt(np.diag(cov))
    z90 = 1.2815515655446004  # Φ⁻¹(0.9)
    torch.testing.assert_close(q["z"][1], torch.tensor(mean[:2] + z90 * sd[:2]))
    torch.testing.assert_close(q["a"][0], torch.tensor(np.exp(mean[2] - z90 * sd[2])))
    torch.testing.assert_close(fb.guide.get_posterior().covariance_matrix.detach(),
                               torch.tensor(cov))


@pytest.mark.parametrize("antithetic", [False, True])
def test_step_from_the_exact_gaussian_stays_there(antithetic):
    target = paper_target(d=10, cond=200.0, seed=0)
    # a step with the expected ∇V, ∇²V (zero noise: evaluated at the mean), or with random
    # antithetic pairs, whose averaged ∇V is exact on a Gaussian target: the target is a fixed
    # point of the forward-backward map (backward step inverts (I − ηΣ⁻¹)Σ(I − ηΣ⁻¹))
    fb = FBGVI(_mvn_model(target), step_size=0.5, num_samples=2, antithetic=antithetic)
    fb.set_gaussian(target.mean, target.cov)
    for _ in range(5):
        fb.step() if antithetic else fb.step_with_noise(torch.zeros(1, 10))
    np.testing.assert_allclose(fb.mean.numpy(), target.mean, atol=1e-10)
    np.testing.assert_allclose(fb.cov.numpy(), target.cov, rtol=0, atol=1e-9)
    assert fb.num_steps == 5 and _kl(fb, target) < 1e-12
    torch.testing.assert_close(fb.guide.loc.detach(), fb.mean)


def test_set_gaussian_bad_input_errors():
    y = torch.tensor(np.random.default_rng(0).normal(1.0, 1.0, size=10))
    fb = FBGVI(_two_site_model(y))
    with pytest.raises(InvalidArgumentError, match=r"not set up yet: call fb.setup"):
        _ = fb.latent_shapes
    fb.setup()
    for mean, cov, error, message in bad_gaussians(*_two_site_posterior(y.numpy())):
        with pytest.raises(error, match=f"^{re.escape(message)}$"):
            fb.set_gaussian(mean, cov)
    np.testing.assert_allclose(fb.mean.numpy(), 0.0)  # rejected input leaves the state as is


# ------------------------------------------------------------------ the defaults (issue 16)
def _kl_to(fb, mu, A):
    return float(gaussian_kl(fb.mean.numpy(), fb.cov.numpy(), mu, np.linalg.inv(A)))


@pytest.mark.parametrize("init", [None, "isotropic"])
def test_defaults_reach_kl_below_0_01_on_ill_conditioned_gaussian(init):
    rng = np.random.default_rng(0)  # the NumPyro test's target: eigenvalues 0.05 to 5, rotated
    Q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    A = Q @ np.diag(np.geomspace(0.05, 5.0, 8)) @ Q.T
    mu = rng.standard_normal(8) * 3

    def model():
        prior = dist.MultivariateNormal(torch.tensor(mu), precision_matrix=torch.tensor(A))
        pyro.sample("z", prior)

    pyro.set_rng_seed(1)
    fb = _FBGVI(model, **({} if init is None else {"init": init}))
    for _ in range(150):
        fb.step()
    assert fb.num_samples == 4 and fb.antithetic and fb.precondition
    assert _kl_to(fb, mu, A) < 0.01  # measured 2e-15 (Laplace start and origin)
    assert init is not None or (fb.laplace is not None and fb.laplace.success)
    old = FBGVI(model)  # the plain scheme with the old defaults, same budget: far off
    for _ in range(150):
        old.step()
    assert _kl_to(old, mu, A) > 0.1


def _flat_prior():  # p(s) ∝ exp(-s - 1/s) under a flat prior on s > 0 (Pyro: a masked prior)
    s = pyro.sample("s", dist.LogNormal(0.0, 1.0).mask(False))
    pyro.factor("f", -s - 1.0 / s)


def test_defaults_on_a_flat_prior_end_at_the_kl_optimal_gaussian():
    pyro.set_rng_seed(0)
    fb = _FBGVI(_flat_prior)
    for _ in range(1000):
        fb.step()
    m, var = kl_optimal_gaussian_1d(lambda u: np.exp(u) + np.exp(-u) - u)
    assert abs(float(fb.mean[0]) - m) < 0.03 * var**0.5
    assert abs(float(fb.cov[0, 0]) / var - 1) < 0.05
