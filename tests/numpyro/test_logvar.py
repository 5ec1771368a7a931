"""vidiv.numpyro.LogVariance: the VarGrad identity on fixed draws, its expectation (2x the KL
gradient), discrete guides trained to exact posteriors, the non-finite particle filter (values,
gradients and counts, also under jit), bad input."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints
from numpyro.handlers import seed, trace
from numpyro.infer import SVI

from vidiv.errors import InvalidArgumentError, NonFiniteError
from vidiv.numpyro import LogVariance

X = jnp.array([0.3, -1.2, 2.0, 0.7, 1.1, -0.4])
PRIOR_SD = 2.0
POST_VAR = 1.0 / (1.0 / PRIOR_SD**2 + X.shape[0])
POST_MEAN = POST_VAR * float(X.sum())


def model(x):
    mu = numpyro.sample("mu", dist.Normal(0.0, PRIOR_SD))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def guide(x):
    loc = numpyro.param("loc", 0.0)
    scale = numpyro.param("scale", 1.0, constraint=constraints.positive)
    numpyro.sample("mu", dist.Normal(loc, scale))


PARAMS = {"loc": 0.6, "scale": 0.7}


def _draws(key, S):
    """The guide samples LogVariance uses for ``key`` (its documented key split)."""
    _, k = jax.random.split(key)
    keys = jax.random.split(k, S)
    return jnp.stack([
        trace(seed(numpyro.handlers.substitute(guide, data=PARAMS), jax.random.split(pk)[1]))
        .get_trace(X)["mu"]["value"]
        for pk in keys
    ])  # fmt: skip


def test_vargrad_identity_on_fixed_draws():
    S, key = 8, jax.random.key(3)
    grad = jax.grad(lambda p: LogVariance(S).loss(key, p, model, guide, X))(PARAMS)
    z = _draws(key, S)

    def log_q(p, z):
        return dist.Normal(p["loc"], p["scale"]).log_prob(z)

    log_p = dist.Normal(0.0, PRIOR_SD).log_prob(z) + dist.Normal(z[:, None], 1.0).log_prob(X).sum(1)
    f = log_q(PARAMS, z) - log_p
    loo_mean = (f.sum() - f) / (S - 1)  # leave-one-out baseline
    score = jax.vmap(jax.grad(log_q), in_axes=(None, 0))(PARAMS, z)
    for name in PARAMS:
        expected = 2.0 * jnp.mean((f - loo_mean) * score[name])  # 2x score KL grad with LOO
        np.testing.assert_allclose(grad[name], expected, rtol=1e-10)


def _kl_to_posterior(p):
    loc, scale = p["loc"], p["scale"]
    s2 = POST_VAR
    return 0.5 * (scale**2 / s2 + (loc - POST_MEAN) ** 2 / s2 - 1.0 - jnp.log(scale**2 / s2))


def test_expected_gradient_is_twice_the_kl_gradient():
    keys = jax.random.split(jax.random.key(0), 4000)
    lv = LogVariance(8)
    grads = jax.jit(jax.vmap(jax.grad(lambda k, p: lv.loss(k, p, model, guide, X), argnums=1),
                             in_axes=(0, None)))(keys, PARAMS)  # fmt: skip
    kl_grad = jax.grad(_kl_to_posterior)(PARAMS)
    for name in PARAMS:
        g = np.asarray(grads[name])
        se = g.std() / np.sqrt(len(g))
        assert abs(g.mean() - 2.0 * float(kl_grad[name])) < 4 * se, (name, g.mean(), kl_grad)


def test_zero_loss_and_gradient_at_the_posterior():
    post = {"loc": POST_MEAN, "scale": float(np.sqrt(POST_VAR))}
    value, grad = jax.value_and_grad(lambda p: LogVariance(16).loss(jax.random.key(1), p, model,
                                                                    guide, X))(post)  # fmt: skip
    assert abs(float(value)) < 1e-20
    assert all(abs(float(g)) < 1e-9 for g in grad.values())


# ---- discrete latents ------------------------------------------------------------------------

MEANS = jnp.array([-2.0, 0.5, 3.0])
WEIGHTS = jnp.array([0.3, 0.5, 0.2])
XD = jnp.array([-1.5, 0.0, 1.2, 2.5, 4.0])


def mix_model(x):
    with numpyro.plate("data", x.shape[0]):
        c = numpyro.sample("c", dist.Categorical(probs=WEIGHTS))
        numpyro.sample("x", dist.Normal(MEANS[c], 1.0), obs=x)


def mix_guide(x):
    logits = numpyro.param("logits", jnp.zeros((x.shape[0], 3)))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("c", dist.Categorical(logits=logits))


def test_categorical_guide_learns_exact_assignment_posterior():
    svi = SVI(mix_model, mix_guide, numpyro.optim.Adam(lambda i: 0.1 * 0.998**i),
              loss=LogVariance(16))  # fmt: skip
    result = svi.run(jax.random.key(0), 1500, XD, progress_bar=False)
    probs = jax.nn.softmax(result.params["logits"], axis=-1)
    log_joint = jnp.log(WEIGHTS) + dist.Normal(MEANS, 1.0).log_prob(XD[:, None])
    exact = jax.nn.softmax(log_joint, axis=-1)
    assert float(jnp.max(jnp.abs(probs - exact))) < 0.03


def sbn_model():
    """A tiny sigmoid belief net: z1 -> z2 -> x, posterior coupled (explaining away)."""
    z1 = numpyro.sample("z1", dist.Bernoulli(0.4))
    z2 = numpyro.sample("z2", dist.Bernoulli(logits=1.5 * z1 - 0.5))
    numpyro.sample("x", dist.Normal(z1 + 2.0 * z2 - 1.0, 0.7), obs=0.9)


def sbn_guide():
    p1 = numpyro.param("p1", 0.5, constraint=constraints.unit_interval)
    a, b = numpyro.param("a", 0.0), numpyro.param("b", 0.0)
    z1 = numpyro.sample("z1", dist.Bernoulli(p1))
    numpyro.sample("z2", dist.Bernoulli(logits=a + b * z1))


def test_bernoulli_guide_learns_exact_joint_posterior():
    svi = SVI(sbn_model, sbn_guide, numpyro.optim.Adam(lambda i: 0.05 * 0.998**i),
              loss=LogVariance(16))  # fmt: skip
    result = svi.run(jax.random.key(0), 2000, progress_bar=False)
    p = result.params
    states = list(itertools.product([0.0, 1.0], repeat=2))

    def joint(z1, z2):
        return float(jnp.exp(dist.Bernoulli(0.4).log_prob(z1)
                             + dist.Bernoulli(logits=1.5 * z1 - 0.5).log_prob(z2)
                             + dist.Normal(z1 + 2 * z2 - 1, 0.7).log_prob(0.9)))  # fmt: skip

    exact = np.array([joint(*s) for s in states])
    exact /= exact.sum()
    q = np.array([
        float(jnp.exp(dist.Bernoulli(p["p1"]).log_prob(z1)
                      + dist.Bernoulli(logits=p["a"] + p["b"] * z1).log_prob(z2)))
        for z1, z2 in states
    ])  # fmt: skip
    assert np.max(np.abs(q - exact)) < 0.03


# ---- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 0, 2.5])
def test_num_particles_below_two(n):
    with pytest.raises(InvalidArgumentError, match=r"num_particles must be an integer >= 2 \(the"):
        LogVariance(num_particles=n)


def test_all_minus_inf_weights():
    def impossible(x):
        model(x)
        numpyro.factor("impossible", -jnp.inf)

    with pytest.raises(NonFiniteError, match="all LogVariance log weights are -inf"):
        LogVariance(4).loss(jax.random.key(0), PARAMS, impossible, guide, X)

    def beyond_max_rnd(x):
        model(x)
        numpyro.factor("far", -1e9)

    with pytest.raises(NonFiniteError, match=r"all 4 LogVariance particles are non-finite "
                       r"\(log q - log p: 4 finite but >= max_rnd=1e\+08\)\. Check the model's"):
        LogVariance(4).loss(jax.random.key(0), PARAMS, beyond_max_rnd, guide, X)


def test_a_single_kept_particle_is_not_enough():
    z = np.sort(np.asarray(_draws(jax.random.key(2), 6)))
    cut = 0.5 * (z[-1] + z[-2])  # exactly one particle inside the support

    def nearly_impossible(x):
        mu = numpyro.sample("mu", dist.Normal(0.0, PRIOR_SD))
        numpyro.factor("wall", jnp.where(mu > cut, 0.0, -jnp.inf))

    with pytest.raises(NonFiniteError, match="only 1 of 6 LogVariance particles are finite, but "
                       "the variance needs 2"):
        LogVariance(6).loss(jax.random.key(2), PARAMS, nearly_impossible, guide, X)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), "big"])
def test_bad_max_rnd(bad):
    with pytest.raises(InvalidArgumentError, match="max_rnd must be a positive number"):
        LogVariance(4, max_rnd=bad)


# ---- non-finite particles are dropped -----------------------------------------------------------


def walled_model(x):
    """The model of the tests above, with log density -inf for mu > 1.2, NaN for mu < -0.3 and
    -1e9 (finite, beyond max_rnd) for 0.9 < mu < 1.2: the guide puts mass on all four parts."""
    mu = numpyro.sample("mu", dist.Normal(0.0, PRIOR_SD))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("x", dist.Normal(mu, 1.0), obs=x)
    wall = jnp.where(mu > 1.2, -jnp.inf, jnp.where(mu < -0.3, jnp.nan, 0.0))
    numpyro.factor("wall", jnp.where((mu > 0.9) & (mu <= 1.2), -1e9, wall))


def _walled_log_p(z):
    base = dist.Normal(0.0, PRIOR_SD).log_prob(z) + dist.Normal(z[:, None], 1.0).log_prob(X).sum(1)
    wall = jnp.where(z > 1.2, -jnp.inf, jnp.where(z < -0.3, jnp.nan, 0.0))
    return base + jnp.where((z > 0.9) & (z <= 1.2), -1e9, wall)


def _log_q(p, z):
    return dist.Normal(p["loc"], p["scale"]).log_prob(z)


@pytest.mark.parametrize("jit", [False, True])
def test_nonfinite_particles_are_dropped_with_exact_value_gradient_and_count(jit):
    S, key = 16, jax.random.key(5)
    lv = LogVariance(S)

    def value_and_count(p):
        out = lv.filtered_loss(key, p, walled_model, guide, X)
        return out.loss, out.num_dropped

    fn = jax.value_and_grad(value_and_count, has_aux=True)
    (value, dropped), grad = jax.jit(fn)(PARAMS) if jit else fn(PARAMS)
    z = _draws(key, S)
    f = _log_q(PARAMS, z) - _walled_log_p(z)
    keep = np.isfinite(np.asarray(f)) & (np.asarray(f) < 1e8)
    n_inf, n_nan = int((z > 1.2).sum()), int((z < -0.3).sum())
    n_big = int(((z > 0.9) & (z <= 1.2)).sum())
    assert n_inf >= 1 and n_nan >= 1 and n_big >= 1 and keep.sum() >= 4  # every case is hit
    assert int(dropped) == n_inf + n_nan + n_big == int((~keep).sum())

    def kept_variance(p):  # by hand: unbiased variance of the kept particles only
        fk = _log_q(p, z[keep]) - _walled_log_p(z[keep])
        return jnp.sum((fk - fk.mean()) ** 2) / (fk.size - 1)

    hand, hand_grad = jax.value_and_grad(kept_variance)(PARAMS)
    assert np.isfinite(float(value)) and float(value) == pytest.approx(float(hand), rel=1e-12)
    for name in PARAMS:
        assert np.isfinite(float(grad[name]))
        np.testing.assert_allclose(grad[name], hand_grad[name], rtol=1e-10)
    assert float(lv.loss(key, PARAMS, walled_model, guide, X)) == pytest.approx(float(hand),
                                                                                rel=1e-12)


def test_max_rnd_inf_keeps_finite_outliers():
    S, key = 16, jax.random.key(5)
    z = _draws(key, S)
    out = LogVariance(S, max_rnd=float("inf")).filtered_loss(key, PARAMS, walled_model, guide, X)
    assert int(out.num_dropped) == int((z > 1.2).sum() + (z < -0.3).sum())  # the -1e9 are kept


def test_num_dropped_reports_the_next_svi_update_under_jit():
    lv = LogVariance(16)
    svi = SVI(walled_model, guide, numpyro.optim.Adam(1e-3), loss=lv)
    state = svi.init(jax.random.key(0), X, init_params={"loc": 0.6, "scale": 0.7})
    update = jax.jit(svi.update)
    count = jax.jit(lambda st: lv.num_dropped(svi, st, X))
    for _ in range(3):
        n = int(count(state))
        _, key = jax.random.split(state.rng_key)
        expected = lv.filtered_loss(key, svi.get_params(state), walled_model, guide, X)
        new_state, loss = update(state, X)
        assert n == int(expected.num_dropped) and 0 < n < 16
        assert float(loss) == pytest.approx(float(expected.loss), rel=1e-12)
        assert np.isfinite(float(loss))
        assert all(np.isfinite(float(v)) for v in svi.get_params(new_state).values())
        state = new_state
    result = svi.run(jax.random.key(1), 20, X, progress_bar=False,
                     init_params={"loc": 0.6, "scale": 0.7})
    assert np.isfinite(np.asarray(result.losses)).all()
    assert 0 < int(lv.num_dropped(svi, result.state, X)) < 16
