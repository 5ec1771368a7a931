"""Pyro transcriptions of the posteriordb Stan programs (same sites, shapes and densities as
``benchmarks.pdb.models_numpyro``; see that module for the Stan-semantics conventions).

Constants are created with the data's dtype and device (``y.new_tensor``), so the models run in
float32 or float64 and on CUDA tensors. Batch dimensions (Pyro's vectorised particle plate sits to
the left of the ``obs`` plate) broadcast through every expression. Example::

    from benchmarks.pdb import registry
    model = registry.pyro_model("kidiq-kidscore_interaction")
    guide = pyro.infer.autoguide.AutoMultivariateNormal(model)
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints


class FlatPrior(dist.ImproperUniform):
    """Stan's implicit flat prior: ``log_prob == 0`` on ``support`` (Pyro's ``ImproperUniform``).

    Pyro's ``ImproperUniform`` raises on ``sample``, which breaks every unconditioned trace
    (``initialize_model``'s plate-nesting guess, autoguide prototypes, particle drivers). Here a
    draw is ``biject_to(support)(u)``, ``u ~ Uniform(-2, 2)`` unconstrained (``init_to_uniform``),
    for initialisation only; the draws are not a prior. ``log_prob`` is 0 in the value's dtype and
    device.
    """

    def sample(self, sample_shape=()):
        shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
        transform = torch.distributions.biject_to(self.support)
        u = torch.rand(transform.inverse_shape(shape)) * 4.0 - 2.0
        return transform(u)

    def log_prob(self, value):
        batch = value.shape[: value.dim() - self.event_dim]
        return value.new_zeros(()).expand(torch.broadcast_shapes(batch, self.batch_shape))


def _flat(support, event_shape=()):
    return FlatPrior(support, torch.Size(), torch.Size(event_shape))


def _dot(X, beta):
    """Row-wise ``X @ beta``; a batched ``beta`` of shape ``(S, 1, D)`` gives ``(S, N)``."""
    return (X * beta).sum(-1)


def ark(K: int, T: int, y):
    """AR(K): ``y[t] ~ normal(alpha + sum_k beta[k] y[t-k], sigma)`` for t = K+1..T."""
    c = y.new_tensor
    alpha = pyro.sample("alpha", dist.Normal(c(0.0), c(10.0)))
    beta = pyro.sample("beta", dist.Normal(c(0.0), c(10.0)).expand([K]).to_event(1))
    sigma = pyro.sample("sigma", dist.HalfCauchy(c(2.5)))
    lags = torch.stack([y[K - k : T - k] for k in range(1, K + 1)], dim=-1)
    mean = alpha + _dot(lags, beta)
    with pyro.plate("obs", T - K):
        pyro.sample("y", dist.Normal(mean, sigma), obs=y[K:])


def eight_schools_centered(J: int, y, sigma):
    """Centred eight schools (see the NumPyro twin)."""
    c = y.new_tensor
    mu = pyro.sample("mu", dist.Normal(c(0.0), c(5.0)))
    tau = pyro.sample("tau", dist.HalfCauchy(c(5.0)))
    with pyro.plate("school", J):
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        pyro.sample("y", dist.Normal(theta, sigma), obs=y)


def eight_schools_noncentered(J: int, y, sigma):
    """Non-centred eight schools: ``theta = mu + tau * theta_trans`` (a deterministic site)."""
    c = y.new_tensor
    mu = pyro.sample("mu", dist.Normal(c(0.0), c(5.0)))
    tau = pyro.sample("tau", dist.HalfCauchy(c(5.0)))
    with pyro.plate("school", J):
        theta_trans = pyro.sample("theta_trans", dist.Normal(c(0.0), c(1.0)))
        theta = pyro.deterministic("theta", theta_trans * tau + mu)
        pyro.sample("y", dist.Normal(theta, sigma), obs=y)


def hmm_forward(y, mu, theta1, theta2):
    """log p(y | mu, theta) of the 2-state Gaussian HMM, states summed out (forward algorithm)."""
    log_a = torch.log(torch.stack([theta1, theta2], dim=-2))
    emis = dist.Normal(mu[..., None, :], 1.0).log_prob(y[:, None])  # (..., N, K)
    gamma = emis[..., 0, :]
    for t in range(1, y.shape[0]):
        gamma = torch.logsumexp(gamma[..., :, None] + log_a, dim=-2) + emis[..., t, :]
    return torch.logsumexp(gamma, dim=-1)


def hmm_example(N: int, K: int, y):
    """Two-state HMM with flat simplex rows and a positive-ordered mu (see the NumPyro twin)."""
    c = y.new_tensor
    ones = y.new_ones(K)
    theta1 = pyro.sample("theta1", dist.Dirichlet(ones))
    theta2 = pyro.sample("theta2", dist.Dirichlet(ones))
    mu = pyro.sample("mu", _flat(constraints.positive_ordered_vector, (K,)))
    pyro.factor(
        "mu_prior",
        dist.Normal(c(3.0), c(1.0)).log_prob(mu[..., 0])
        + dist.Normal(c(10.0), c(1.0)).log_prob(mu[..., 1]),
    )
    pyro.factor("y", hmm_forward(y, mu, theta1, theta2))


def kidscore_interaction(N: int, kid_score, mom_iq, mom_hs):
    """Regression with interaction; flat beta, half-Cauchy(2.5) sigma."""
    X = torch.stack([torch.ones_like(mom_iq), mom_hs, mom_iq, mom_hs * mom_iq], dim=-1)
    beta = pyro.sample("beta", _flat(constraints.real_vector, (4,)))
    sigma = pyro.sample("sigma", dist.HalfCauchy(kid_score.new_tensor(2.5)))
    with pyro.plate("obs", N):
        pyro.sample("kid_score", dist.Normal(_dot(X, beta), sigma), obs=kid_score)


def kilpisjarvi(N: int, x, y, pmualpha, psalpha, pmubeta, psbeta):
    """``y ~ normal(alpha + beta x, sigma)``, normal priors on alpha and beta, flat sigma > 0."""
    c = y.new_tensor
    alpha = pyro.sample("alpha", dist.Normal(c(pmualpha), c(psalpha)))
    beta = pyro.sample("beta", dist.Normal(c(pmubeta), c(psbeta)))
    sigma = pyro.sample("sigma", _flat(constraints.positive))
    with pyro.plate("obs", N):
        pyro.sample("y", dist.Normal(alpha + beta * x, sigma), obs=y)


def low_dim_gauss_mix(N: int, y):
    """Two-component mixture (Stan ``log_mix``), ordered mu ~ normal(0, 2)."""
    c = y.new_tensor
    mu = pyro.sample("mu", _flat(constraints.ordered_vector, (2,)))
    pyro.factor("mu_prior", dist.Normal(c(0.0), c(2.0)).log_prob(mu).sum(-1))
    sigma = pyro.sample("sigma", dist.HalfNormal(c(2.0)).expand([2]).to_event(1))
    theta = pyro.sample("theta", dist.Beta(c(5.0), c(5.0)))
    logits = torch.stack([torch.log(theta), torch.log1p(-theta)], dim=-1)
    mix = dist.MixtureSameFamily(dist.Categorical(logits=logits), dist.Normal(mu, sigma))
    with pyro.plate("obs", N):
        pyro.sample("y", mix, obs=y)


def nes(N: int, partyid7, real_ideo, race_adj, educ1, gender, income, age_discrete):
    """Linear regression of party id on 8 predictors; flat beta and sigma > 0."""
    f = real_ideo.dtype
    X = torch.stack(
        [
            torch.ones_like(real_ideo),
            real_ideo,
            race_adj,
            (age_discrete == 2).to(f),
            (age_discrete == 3).to(f),
            (age_discrete == 4).to(f),
            educ1,
            gender,
            income,
        ],
        dim=-1,
    )
    beta = pyro.sample("beta", _flat(constraints.real_vector, (9,)))
    sigma = pyro.sample("sigma", _flat(constraints.positive))
    with pyro.plate("obs", N):
        pyro.sample("partyid7", dist.Normal(_dot(X, beta), sigma), obs=partyid7)


def blr(N: int, D: int, X, y):
    """``beta ~ normal(0, 10)``, half-normal(10) sigma, ``y ~ normal(X beta, sigma)``."""
    c = y.new_tensor
    beta = pyro.sample("beta", dist.Normal(c(0.0), c(10.0)).expand([D]).to_event(1))
    sigma = pyro.sample("sigma", dist.HalfNormal(c(10.0)))
    with pyro.plate("obs", N):
        pyro.sample("y", dist.Normal(_dot(X, beta), sigma), obs=y)
