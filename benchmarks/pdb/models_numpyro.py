"""NumPyro transcriptions of the posteriordb Stan programs in ``shared/benchmarks/posteriordb``.

Each function is the Stan ``model`` block with the data passed as keyword arguments (Python ``int``
for Stan ``int`` sizes, arrays otherwise; see ``benchmarks.pdb.registry.numpyro_model`` which binds
them). Stan semantics kept exactly:

* a parameter without a ``~`` statement has an implicit flat prior on its constrained support:
  ``FlatPrior(support, (), event_shape)``, an ``ImproperUniform`` that can also be sampled for
  initialisation (its density is exactly 0; see the class);
* ``real<lower=0>`` -> positive support, ``simplex`` -> Dirichlet-support site, ``ordered`` /
  ``positive_ordered`` -> ``ordered_vector`` / ``positive_ordered_vector``;
* ``x ~ normal(0, s)`` on a ``lower=0`` parameter is a half-normal (the same density up to the
  constant log 2, which Stan drops anyway); ``cauchy`` likewise half-Cauchy. Normalised priors make
  the ELBO a lower bound of the log evidence quoted in the posteriordb README;
* ``target += f`` on a constrained parameter whose prior has no ready-made distribution is a
  ``numpyro.factor``;
* discrete HMM states are summed out by the forward algorithm (log-sum-exp recursion), mixtures use
  ``MixtureSameFamily`` (Stan's ``log_mix``).

Observations sit in named plates (``obs``, or ``school`` for eight schools), so per-observation
log-likelihoods get a dimension. Example::

    from benchmarks.pdb import registry
    model = registry.numpyro_model("eight_schools-eight_schools_noncentered")
    numpyro.infer.MCMC(numpyro.infer.NUTS(model), num_warmup=500, num_samples=500).run(key)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints


class FlatPrior(dist.ImproperUniform):
    """Stan's implicit flat prior: ``log_prob == 0`` on ``support`` (an ``ImproperUniform``).

    Unlike ``ImproperUniform`` it can be *sampled*, only so that unconditioned traces (prototype
    traces, initialisation, drivers that trace the model once) run: a draw is
    ``biject_to(support)(u)`` with ``u ~ Uniform(-2, 2)`` in the unconstrained space, like
    ``init_to_uniform``. Those draws are not a prior; never use them as one.
    """

    def sample(self, key, sample_shape=()):
        shape = tuple(sample_shape) + self.batch_shape + self.event_shape
        transform = dist.biject_to(self.support)
        u = jax.random.uniform(key, transform.inverse_shape(shape), minval=-2.0, maxval=2.0)
        return transform(u)


def _flat(support, event_shape=()):
    return FlatPrior(support, (), tuple(event_shape))


def _dot(X, beta):
    """Row-wise ``X @ beta``; a batched ``beta`` of shape ``(S, 1, D)`` (particle plate left of the
    ``obs`` plate, as Pyro/NumPyro vectorise particles) gives ``(S, N)``."""
    return (X * beta).sum(-1)


def ark(K: int, T: int, y):
    """AR(K): ``y[t] ~ normal(alpha + sum_k beta[k] y[t-k], sigma)`` for t = K+1..T."""
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 10.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 10.0).expand([K]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
    lags = jnp.stack([y[K - k : T - k] for k in range(1, K + 1)], axis=-1)  # (T-K, K)
    mean = alpha + _dot(lags, beta)
    with numpyro.plate("obs", T - K):
        numpyro.sample("y", dist.Normal(mean, sigma), obs=y[K:])


def eight_schools_centered(J: int, y, sigma):
    """``theta ~ normal(mu, tau)``, ``y ~ normal(theta, sigma)``, ``mu ~ normal(0, 5)``,
    ``tau ~ cauchy(0, 5)`` on tau > 0."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", J):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def eight_schools_noncentered(J: int, y, sigma):
    """Non-centred eight schools: ``theta = mu + tau * theta_trans`` (a deterministic site)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", J):
        theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", theta_trans * tau + mu)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def hmm_forward(y, mu, theta1, theta2):
    """log p(y | mu, theta) of a 2-state Gaussian HMM (unit emission sd), states summed out.

    ``gamma[t, k] = logsumexp_j(gamma[t-1, j] + log theta[j, k]) + log N(y[t] | mu[k], 1)``,
    ``gamma[0, k] = log N(y[0] | mu[k], 1)`` (Stan's uniform-free start), result
    ``logsumexp_k gamma[N-1, k]``. Works for any batch shape of the parameters.
    """
    log_a = jnp.log(jnp.stack([theta1, theta2], axis=-2))  # (..., K, K), rows = from-state
    emis = dist.Normal(mu[..., None, :], 1.0).log_prob(y[:, None])  # (..., N, K)
    emis_t = jnp.moveaxis(emis, -2, 0)

    def step(gamma, e):
        return jax.nn.logsumexp(gamma[..., :, None] + log_a, axis=-2) + e, None

    gamma, _ = jax.lax.scan(step, emis_t[0], emis_t[1:])
    return jax.nn.logsumexp(gamma, axis=-1)


def hmm_example(N: int, K: int, y):
    """Two-state HMM: flat simplex rows ``theta1``, ``theta2``; ``positive_ordered mu`` with
    ``target += normal_lpdf(mu[1] | 3, 1) + normal_lpdf(mu[2] | 10, 1)``; forward algorithm."""
    theta1 = numpyro.sample("theta1", dist.Dirichlet(jnp.ones(K)))  # flat on the simplex
    theta2 = numpyro.sample("theta2", dist.Dirichlet(jnp.ones(K)))
    mu = numpyro.sample("mu", _flat(constraints.positive_ordered_vector, (K,)))
    numpyro.factor(
        "mu_prior",
        dist.Normal(3.0, 1.0).log_prob(mu[..., 0]) + dist.Normal(10.0, 1.0).log_prob(mu[..., 1]),
    )
    numpyro.factor("y", hmm_forward(y, mu, theta1, theta2))


def kidscore_interaction(N: int, kid_score, mom_iq, mom_hs):
    """``kid_score ~ normal(b1 + b2 hs + b3 iq + b4 hs*iq, sigma)``; flat beta, half-Cauchy(2.5)."""
    X = jnp.stack([jnp.ones_like(mom_iq), mom_hs, mom_iq, mom_hs * mom_iq], axis=-1)
    beta = numpyro.sample("beta", _flat(constraints.real_vector, (4,)))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
    with numpyro.plate("obs", N):
        numpyro.sample("kid_score", dist.Normal(_dot(X, beta), sigma), obs=kid_score)


def kilpisjarvi(N: int, x, y, pmualpha, psalpha, pmubeta, psbeta):
    """``y ~ normal(alpha + beta x, sigma)`` with normal priors on alpha, beta; flat sigma > 0."""
    alpha = numpyro.sample("alpha", dist.Normal(pmualpha, psalpha))
    beta = numpyro.sample("beta", dist.Normal(pmubeta, psbeta))
    sigma = numpyro.sample("sigma", _flat(constraints.positive))
    with numpyro.plate("obs", N):
        numpyro.sample("y", dist.Normal(alpha + beta * x, sigma), obs=y)


def low_dim_gauss_mix(N: int, y):
    """``log_mix(theta, N(y|mu1,s1), N(y|mu2,s2))`` with ordered mu ~ normal(0, 2),
    sigma ~ half-normal(2), theta ~ beta(5, 5)."""
    mu = numpyro.sample("mu", _flat(constraints.ordered_vector, (2,)))
    numpyro.factor("mu_prior", dist.Normal(0.0, 2.0).log_prob(mu).sum(-1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0).expand([2]).to_event(1))
    theta = numpyro.sample("theta", dist.Beta(5.0, 5.0))
    logits = jnp.stack([jnp.log(theta), jnp.log1p(-theta)], axis=-1)
    mix = dist.MixtureSameFamily(dist.Categorical(logits=logits), dist.Normal(mu, sigma))
    with numpyro.plate("obs", N):
        numpyro.sample("y", mix, obs=y)


def nes(N: int, partyid7, real_ideo, race_adj, educ1, gender, income, age_discrete):
    """Linear regression of party id on 8 predictors (age as 3 dummies); flat beta and sigma > 0."""
    X = jnp.stack(
        [
            jnp.ones_like(real_ideo),
            real_ideo,
            race_adj,
            (age_discrete == 2).astype(real_ideo.dtype),
            (age_discrete == 3).astype(real_ideo.dtype),
            (age_discrete == 4).astype(real_ideo.dtype),
            educ1,
            gender,
            income,
        ],
        axis=-1,
    )
    beta = numpyro.sample("beta", _flat(constraints.real_vector, (9,)))
    sigma = numpyro.sample("sigma", _flat(constraints.positive))
    with numpyro.plate("obs", N):
        numpyro.sample("partyid7", dist.Normal(_dot(X, beta), sigma), obs=partyid7)


def blr(N: int, D: int, X, y):
    """``beta ~ normal(0, 10)``, half-normal(10) sigma, ``y ~ normal(X beta, sigma)``."""
    beta = numpyro.sample("beta", dist.Normal(0.0, 10.0).expand([D]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(10.0))
    with numpyro.plate("obs", N):
        numpyro.sample("y", dist.Normal(_dot(X, beta), sigma), obs=y)
