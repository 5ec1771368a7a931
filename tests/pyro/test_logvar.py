"""vidiv.pyro.LogVariance: the VarGrad identity on fixed draws, its expectation (2x the KL
gradient), discrete guides trained to exact posteriors without enumeration, path densities, the
non-finite particle filter (value, gradient, count), bad input."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI
from pyro.optim import ClippedAdam
from scipy.special import softmax

from tests.closed_form import conjugate_normal
from tests.pyro.test_objective_models import linear_gaussian
from vidiv.errors import InvalidArgumentError, NonFiniteError
from vidiv.pyro import LogVariance
from vidiv.pyro._traces import trace_particles

LG = conjugate_normal()


def _gauss_guide(loc0=(0.2, 1.5), scale0=(0.5, 0.2)):
    def guide():
        loc = pyro.param("loc", torch.tensor(loc0))
        scale = pyro.param("scale", torch.tensor(scale0), constraint=dist.constraints.positive)
        pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    return guide


def test_vargrad_identity_on_fixed_draws():
    model, guide = linear_gaussian(LG), _gauss_guide()
    S = 6
    pyro.set_rng_seed(7)
    lv = LogVariance(S, max_plate_nesting=1)
    loss = lv.loss_and_grads(model, guide)
    g_loc = pyro.param("loc").unconstrained().grad.clone()
    g_scale = pyro.param("scale").unconstrained().grad.clone()
    pyro.set_rng_seed(7)
    p = trace_particles(model, guide, (), {}, S, 1, detach=True, per_datum=False)
    f = (p.log_q - p.log_p).detach()
    assert loss == pytest.approx(float(f.var()), rel=1e-12)
    # 2 x (1/S) sum_s (f_s - mean of the others) grad log q(z_s): score KL gradient, LOO baseline
    loo = (f.sum() - f) / (S - 1)
    leaves = [pyro.param("loc").unconstrained(), pyro.param("scale").unconstrained()]
    hand = [torch.zeros_like(t) for t in leaves]
    for s in range(S):
        grads = torch.autograd.grad(p.log_q[s], leaves, retain_graph=True)
        for h, g in zip(hand, grads, strict=True):
            h += 2.0 / S * (f[s] - loo[s]) * g
    torch.testing.assert_close(g_loc, hand[0])
    torch.testing.assert_close(g_scale, hand[1])


def _kl_grad(loc0, scale0):
    """Closed-form gradient of KL(q || posterior) w.r.t. (loc, log scale)."""
    loc = torch.tensor(loc0, requires_grad=True)
    log_scale = torch.tensor(scale0).log().requires_grad_()
    q = dist.Normal(loc, log_scale.exp()).to_event(1)
    post = dist.MultivariateNormal(torch.as_tensor(LG.post_mean), torch.as_tensor(LG.post_cov))
    kl = torch.distributions.kl_divergence(
        dist.MultivariateNormal(loc, scale_tril=torch.diag(log_scale.exp())), post
    )
    del q
    return torch.autograd.grad(kl, [loc, log_scale])


def test_expected_gradient_is_twice_the_kl_gradient():
    model, guide = linear_gaussian(LG), _gauss_guide()
    lv = LogVariance(8, max_plate_nesting=1)
    draws = []
    for _ in range(400):
        for t in pyro.get_param_store().values():
            t.unconstrained().grad = None
        lv.loss_and_grads(model, guide)
        draws.append(
            torch.cat([pyro.param(n).unconstrained().grad.clone() for n in ("loc", "scale")])
        )
    draws = torch.stack(draws)
    exact = 2 * torch.cat(_kl_grad((0.2, 1.5), (0.5, 0.2)))
    se = draws.std(0) / math.sqrt(len(draws))
    assert ((draws.mean(0) - exact).abs() < 4 * se).all(), (draws.mean(0), exact, se)
    assert (exact.abs() > 5 * se).all()  # the check has power


# ----------------------------------------------------------------- discrete latent variables
X_BERN = torch.tensor([-2.0, -0.6, 0.1, 0.4, 1.2, 2.5])
X_CAT = torch.tensor([-2.5, -1.0, -0.2, 0.9, 1.6, 3.1])
MEANS = torch.tensor([-2.0, 0.0, 2.5])
WEIGHTS = torch.tensor([0.3, 0.5, 0.2])


def bernoulli_mixture():
    def model():
        with pyro.plate("data", len(X_BERN)):
            z = pyro.sample("z", dist.Bernoulli(0.4))
            pyro.sample("x", dist.Normal(3.0 * z - 1.5, 1.0), obs=X_BERN)

    def guide():
        theta = pyro.param(
            "theta", torch.full((len(X_BERN),), 0.5), constraint=dist.constraints.unit_interval
        )
        with pyro.plate("data", len(X_BERN)):
            pyro.sample("z", dist.Bernoulli(theta))

    x = X_BERN.numpy()
    l1 = np.log(0.4) - 0.5 * (x - 1.5) ** 2
    l0 = np.log(0.6) - 0.5 * (x + 1.5) ** 2
    return model, guide, 1 / (1 + np.exp(l0 - l1))


def categorical_mixture():
    def model():
        with pyro.plate("data", len(X_CAT)):
            z = pyro.sample("z", dist.Categorical(WEIGHTS))
            pyro.sample("x", dist.Normal(MEANS[z], 1.0), obs=X_CAT)

    def guide():
        probs = pyro.param(
            "probs", torch.full((len(X_CAT), 3), 1 / 3), constraint=dist.constraints.simplex
        )
        with pyro.plate("data", len(X_CAT)):
            pyro.sample("z", dist.Categorical(probs))

    logits = np.log(WEIGHTS.numpy()) - 0.5 * (X_CAT.numpy()[:, None] - MEANS.numpy()) ** 2
    return model, guide, softmax(logits, axis=1)


@pytest.mark.parametrize(
    "build,name", [(bernoulli_mixture, "theta"), (categorical_mixture, "probs")]
)
def test_trains_discrete_guide_to_exact_posterior(build, name):
    model, guide, exact = build()
    steps = 600  # measured max |error|: Bernoulli 0.014, Categorical 0.007
    optim = ClippedAdam({"lr": 0.1, "lrd": 0.01 ** (1 / steps)})
    svi = SVI(model, guide, optim, loss=LogVariance(16, max_plate_nesting=1))
    for _ in range(steps):
        svi.step()
    fitted = pyro.param(name).detach().numpy()
    assert np.abs(fitted - exact).max() < 0.03, (fitted, exact)
    assert np.abs(exact - fitted.mean()).max() > 0.2  # the exact posteriors differ a lot


# ------------------------------------------------------------ path densities (DiffusionGuide)
def test_delta_guide_trains_through_its_log_density():
    """A guide that reports its path density on an auxiliary Delta(x, log_density=ld(phi)) and
    the model's site as a Delta of it -- the DiffusionGuide contract -- gets the log-variance
    gradient through ld only (the sample itself is detached)."""
    w = torch.tensor(0.3, requires_grad=True)

    def model():
        pyro.sample("x", dist.Normal(0.0, 1.0))

    def guide():
        x = w.detach() + torch.randn(())  # e.g. an SDE end point simulated with a detached drift
        end = pyro.sample("x_path", dist.Delta(x + w - w.detach(), log_density=-0.5 * (x - w) ** 2),
                          infer={"is_auxiliary": True})  # fmt: skip
        pyro.sample("x", dist.Delta(end))

    S = 5
    pyro.set_rng_seed(2)
    loss = LogVariance(S, vectorize_particles=False).differentiable_loss(model, guide)
    (g,) = torch.autograd.grad(loss, w)
    pyro.set_rng_seed(2)
    xs = torch.stack([w.detach() + torch.randn(()) for _ in range(S)])
    f = -0.5 * (xs - w) ** 2 - dist.Normal(0.0, 1.0).log_prob(xs)
    (hand,) = torch.autograd.grad(f.var(), w)  # no path term through xs
    assert float(g) == pytest.approx(float(hand), rel=1e-10) and abs(float(hand)) > 1e-3


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("n", [1, 0, 3.5])
def test_needs_two_particles(n):
    with pytest.raises(InvalidArgumentError, match="num_particles must be an integer >= 2"):
        LogVariance(num_particles=n)


def test_all_minus_inf_and_nan_data():
    def model():
        pyro.sample("z", dist.Uniform(0.0, 1.0, validate_args=False))

    def guide():
        pyro.sample("z", dist.Normal(5.0, 0.1))

    with pytest.raises(NonFiniteError, match="all LogVariance log weights"):
        LogVariance(4, max_plate_nesting=0).loss(model, guide)

    def beyond_max_rnd():
        pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.factor("far", torch.tensor(-1e9))

    with pytest.raises(NonFiniteError, match=r"all 4 LogVariance particles are non-finite "
                       r"\(log q - log p: 4 finite but >= max_rnd=1e\+08\)\. Check the model's"):
        LogVariance(4, max_plate_nesting=0).loss(beyond_max_rnd, guide)

    def nan_model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=torch.tensor(float("nan")))

    with pytest.raises(NonFiniteError, match="site 'x'"):
        LogVariance(4, max_plate_nesting=0).loss(nan_model, guide)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), None])
def test_bad_max_rnd(bad):
    with pytest.raises(InvalidArgumentError, match="max_rnd must be a positive number"):
        LogVariance(4, max_rnd=bad)


# ------------------------------------------------------------------ non-finite particle filter
def walled_model():
    """N(0, 1) with log density -inf for z > 1.2, NaN for z < -0.3 and -1e9 (finite, beyond
    max_rnd) for 0.9 < z <= 1.2: the guide below puts mass on all four parts."""
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    wall = torch.where(z > 1.2, -math.inf, torch.where(z < -0.3, math.nan, 0.0))
    with pyro.validation_enabled(False):  # the factor's NaN is the point of this model
        pyro.factor("wall", torch.where((z > 0.9) & (z <= 1.2), -1e9, wall))


def scalar_guide():
    loc = pyro.param("loc", torch.tensor(0.4))
    scale = pyro.param("scale", torch.tensor(0.7), constraint=dist.constraints.positive)
    pyro.sample("z", dist.Normal(loc, scale))


@pytest.mark.parametrize("vectorize", [True, False])
def test_nonfinite_particles_are_dropped_with_exact_value_gradient_and_count(vectorize):
    S = 16
    lv = LogVariance(S, max_plate_nesting=0, vectorize_particles=vectorize)
    pyro.set_rng_seed(3)
    with pytest.warns(RuntimeWarning, match="LogVariance dropped particles"):
        loss = lv.loss_and_grads(walled_model, scalar_guide)
    leaves = [pyro.param("loc").unconstrained(), pyro.param("scale").unconstrained()]
    grads = [t.grad.clone() for t in leaves]
    pyro.set_rng_seed(3)
    p = trace_particles(walled_model, scalar_guide, (), {}, S, 0 if vectorize else None,
                        detach=True, per_datum=False, vectorize=vectorize, check_finite=False)
    z = p.model_trace.nodes["z"]["value"] if vectorize else torch.stack(
        [tr.nodes["z"]["value"] for tr in p.raw_guide_traces])
    f = (p.log_q - p.log_p).detach()
    keep = torch.isfinite(f) & (f < 1e8)
    n_inf, n_nan = int((z > 1.2).sum()), int((z < -0.3).sum())
    n_big = int(((z > 0.9) & (z <= 1.2)).sum())
    assert n_inf >= 1 and n_nan >= 1 and n_big >= 1 and int(keep.sum()) >= 4  # all cases hit
    assert lv.last_num_dropped == n_inf + n_nan + n_big == int((~keep).sum())
    assert lv.last_num_kept == int(keep.sum())
    hand = (p.log_q[keep] - p.log_p[keep]).var()  # by hand: the kept particles only
    hand_grads = torch.autograd.grad(hand, leaves)
    assert math.isfinite(loss) and loss == pytest.approx(float(hand.detach()), rel=1e-12)
    for g, h in zip(grads, hand_grads, strict=True):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, h, rtol=1e-10, atol=1e-14)


def test_max_rnd_inf_keeps_finite_outliers_and_svi_trains_through_drops():
    lv = LogVariance(16, max_plate_nesting=0, max_rnd=math.inf)
    pyro.set_rng_seed(3)
    with pytest.warns(RuntimeWarning):
        lv.loss(walled_model, scalar_guide)
    pyro.set_rng_seed(3)
    p = trace_particles(walled_model, scalar_guide, (), {}, 16, 0, detach=True, per_datum=False,
                        check_finite=False)
    f = (p.log_q - p.log_p).detach()
    assert lv.last_num_dropped == int((~torch.isfinite(f)).sum())  # the -1e9 are kept
    svi = SVI(walled_model, scalar_guide, ClippedAdam({"lr": 0.01}),
              loss=LogVariance(16, max_plate_nesting=0))
    with pytest.warns(RuntimeWarning):
        losses = [svi.step() for _ in range(20)]
    assert all(math.isfinite(v) for v in losses)
    assert all(torch.isfinite(pyro.param(n)).all() for n in ("loc", "scale"))
