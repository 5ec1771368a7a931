"""Forward chi-square VIS against ELBO, IWAE and CHIVI-style training (issue 4), NumPyro backend.

Two problems, as in the VIS paper's comparisons (Li et al., ICLR 2024):

(a) the identifiable mixture: z ~ pi N(mu, 1) + (1 - pi) N(-mu, 1), x | z ~ N(z, 2^2), pi = 0.7,
    mu = 3, 1000 train / 1000 test, learnable (pi, mu > 0), amortised Gaussian q(z | x) linear in
    x, minibatches of 100. Held-out log-likelihood is exact (closed-form marginal) and also IS.
(b) a small VAE on scikit-learn's bundled 8x8 digits (binarised at 8/16; 1500 train / 297
    test), latent dim 2, decoder 2-64-64 (tanh, Bernoulli), encoder 64-64-(mu, log sigma),
    minibatches of 100. Held-out log-likelihood by IS with 1000 samples from each method's own
    encoder (the IWAE/VIS protocol).

Methods (same particles K, same wall-clock budget per method, compile time excluded):
  ELBO   Trace_ELBO (reparameterised)
  IWAE   vidiv AlphaDivergence(alpha=0) (= numpyro RenyiELBO(alpha=0))
  CHIVI  theta by the ELBO, q by CUBO_2 - 1/2 ELBO in score form (the VIS reference code's
         "CHIVI" baseline)
  VIS    vidiv ChiSquaredVIS

Run:  python benchmarks/vis.py [--quick] [--budget SECONDS]
Writes benchmarks/results/vis.json and prints the table. Timings are on a shared, loaded CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.elbo import ELBO
from scipy.optimize import minimize
from scipy.stats import norm

from vidiv.estimators import elbo as elbo_estimate
from vidiv.estimators import vis_guide_surrogate
from vidiv.numpyro import AlphaDivergence, ChiSquaredVIS
from vidiv.numpyro._traces import particle_terms


class ChiviStyle(ELBO):
    """theta: ELBO gradient at detached samples; q: 1/2 log V (score form) - 1/2 ELBO (score
    form, baseline = mean log w). Loss value: -ELBO."""

    def loss(self, rng_key, param_map, model, guide, *args, **kwargs):
        t = particle_terms(rng_key, param_map, model, guide, args, kwargs, self.num_particles,
                           detach=True, objective="ChiviStyle")  # fmt: skip
        sg = jax.lax.stop_gradient
        lw = t.log_p - t.log_q
        theta = jnp.sum(jnp.mean(t.log_p - sg(t.log_q), axis=0))  # ELBO gradient for theta
        elbo_score = jnp.mean(sg(lw - jnp.mean(lw, axis=0)) * t.log_q, axis=0)  # grad E_q log w
        q_obj = jnp.sum(0.5 * vis_guide_surrogate(t.log_p, t.log_q) - 0.5 * elbo_score)
        value = jnp.sum(elbo_estimate(sg(t.log_p), sg(t.log_q)))
        return t.scale * (-(value + theta - sg(theta)) + (q_obj - sg(q_obj)))


def methods(k: int) -> dict[str, ELBO]:
    return {
        "ELBO": Trace_ELBO(num_particles=k),
        "IWAE": AlphaDivergence(alpha=0.0, num_particles=k),
        "CHIVI": ChiviStyle(num_particles=k),
        "VIS": ChiSquaredVIS(num_particles=k),
    }


def train(loss, model, guide, data, budget_s, lr0, half_life, key, chunk=250, max_steps=None):
    """Run SVI in jitted chunks of ``chunk`` steps until ``budget_s`` seconds (compile excluded)
    or, if ``max_steps`` is given, for exactly that many steps (rounded up to a chunk)."""
    svi = SVI(model, guide, numpyro.optim.Adam(lambda i: lr0 * 0.5 ** (i / half_life)), loss=loss)
    state = svi.init(key, data)

    @jax.jit
    def run_chunk(state):
        return jax.lax.scan(lambda s, _: svi.update(s, data), state, None, length=chunk)

    run_chunk.lower(state).compile()
    steps, start, losses = 0, time.perf_counter(), []
    while (steps < max_steps) if max_steps else (time.perf_counter() - start < budget_s):
        state, chunk_losses = run_chunk(state)
        chunk_losses.block_until_ready()
        losses.append(float(jnp.mean(chunk_losses)))
        steps += chunk
    return svi.get_params(state), steps, time.perf_counter() - start, losses


# ---- (a) identifiable mixture ----------------------------------------------------------------


def mixture_data(seed=0):
    rng = np.random.default_rng(seed)

    def draw(n):
        z = np.where(rng.random(n) < 0.7, 3.0, -3.0) + rng.normal(size=n)
        return z + 2.0 * rng.normal(size=n)

    return draw(1000), draw(1000)


def mixture_ll(theta, x):
    pi, mu = theta
    sd = np.sqrt(5.0)
    return float(np.mean(np.logaddexp(np.log(pi) + norm.logpdf(x, mu, sd),
                                      np.log1p(-pi) + norm.logpdf(x, -mu, sd))))  # fmt: skip


def mixture_model(x, batch=100):
    pi = numpyro.param("pi", 0.5, constraint=constraints.unit_interval)
    mu = numpyro.param("mu", 1.0, constraint=constraints.positive)
    with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx:
        prior = dist.MixtureSameFamily(dist.Categorical(probs=jnp.stack([pi, 1.0 - pi])),
                                       dist.Normal(jnp.stack([mu, -mu]), 1.0))  # fmt: skip
        z = numpyro.sample("z", prior)
        numpyro.sample("x", dist.Normal(z, 2.0), obs=x[idx])


def mixture_guide(x, batch=100):
    a, b = numpyro.param("a", 0.0), numpyro.param("b", 0.0)
    c, d = numpyro.param("c", 0.0), numpyro.param("d", 0.0)
    with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx:
        xb = x[idx]
        numpyro.sample("z", dist.Normal(a * xb + b, jnp.exp(c * xb + d)))


def is_log_lik(model, guide, params, x, num_samples, key):
    """Held-out IS log-likelihood per data point with ``num_samples`` guide samples."""
    out = ChiSquaredVIS(2).evaluate(key, params, model, guide, x, x.shape[0],
                                    num_particles=num_samples)  # fmt: skip
    return float(out["log_marginal"]) / x.shape[0]


def bench_mixture(k, budget, seed, max_steps=None):
    x_train, x_test = mixture_data(seed)
    bounds = [(1e-3, 1 - 1e-3), (1e-3, 10.0)]
    ml = minimize(lambda t: -mixture_ll(t, x_train), [0.5, 2.0], bounds=bounds).x
    rows = {"ML": {"pi": float(ml[0]), "mu": float(ml[1]), "test_ll": mixture_ll(ml, x_test)}}
    xt, xs = jnp.asarray(x_train), jnp.asarray(x_test)
    for name, loss in methods(k).items():
        params, steps, secs, _ = train(loss, mixture_model, mixture_guide, xt, budget, 0.03,
                                       1500.0, jax.random.key(seed),
                                       max_steps=max_steps)  # fmt: skip
        theta = (float(params["pi"]), float(params["mu"]))
        rows[name] = {
            "pi": theta[0], "mu": theta[1], "test_ll": mixture_ll(theta, x_test),
            "test_ll_is": is_log_lik(mixture_model, mixture_guide, params, xs, 5000,
                                     jax.random.key(99)),
            "steps": steps, "seconds": secs,
        }  # fmt: skip
    return rows


# ---- (b) VAE on 8x8 digits ---------------------------------------------------------------------


def digits(seed=0):
    from sklearn.datasets import load_digits

    data = (load_digits().data > 8.0).astype(np.float32)
    perm = np.random.default_rng(seed).permutation(len(data))
    return data[perm[:1500]], data[perm[1500:]]


def _mlp_init(key, sizes, scale=1.0):
    params = []
    shapes = list(zip(sizes[:-1], sizes[1:], strict=True))
    for k, (m, n) in zip(jax.random.split(key, len(shapes)), shapes, strict=True):
        params.append({"w": scale * jax.random.normal(k, (m, n)) / np.sqrt(m), "b": jnp.zeros(n)})
    return params


def _mlp(params, h):
    for layer in params[:-1]:
        h = jnp.tanh(h @ layer["w"] + layer["b"])
    return h @ params[-1]["w"] + params[-1]["b"]


LATENT, HIDDEN = 2, 64


def vae_model(x, batch=100):
    dec = numpyro.param("decoder", lambda key: _mlp_init(key, [LATENT, HIDDEN, HIDDEN, 64]))
    with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx:
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([LATENT]).to_event(1))
        numpyro.sample("x", dist.Bernoulli(logits=_mlp(dec, z)).to_event(1), obs=x[idx])


def vae_guide(x, batch=100):
    enc = numpyro.param("encoder", lambda key: _mlp_init(key, [64, HIDDEN, 2 * LATENT], 0.5))
    with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx:
        out = _mlp(enc, x[idx])
        loc, log_scale = out[..., :LATENT], out[..., LATENT:]
        numpyro.sample("z", dist.Normal(loc, jnp.exp(log_scale)).to_event(1))


def bench_vae(k, budget, seed, max_steps=None):
    x_train, x_test = (jnp.asarray(a) for a in digits(seed))
    rows = {}
    for name, loss in methods(k).items():
        params, steps, secs, losses = train(loss, vae_model, vae_guide, x_train, budget, 3e-3,
                                            4000.0, jax.random.key(seed),
                                            max_steps=max_steps)  # fmt: skip
        rows[name] = {
            "test_ll_is": is_log_lik(vae_model, vae_guide, params, x_test, 1000,
                                     jax.random.key(99)),
            "train_ll_is": is_log_lik(vae_model, vae_guide, params, x_train[:300], 1000,
                                      jax.random.key(98)),
            "steps": steps, "seconds": secs,
        }  # fmt: skip
    return rows


def _print(title, rows, cols):
    print(f"\n{title}")
    print(f"{'method':8s}" + "".join(f"{c:>14s}" for c in cols))
    for name, row in rows.items():
        cells = "".join(
            f"{row[c]:14.4f}" if isinstance(row.get(c), float) else f"{row.get(c, ''):>14}"
            for c in cols
        )
        print(f"{name:8s}{cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short budgets (smoke run)")
    parser.add_argument("--budget", type=float, default=None, help="seconds per method")
    parser.add_argument("--particles", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None,
                        help="equal steps instead of equal wall-clock (same for every method)")
    parser.add_argument("--only", choices=["mixture", "vae"], default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "vis.json"))
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    mix_budget = args.budget or (5.0 if args.quick else 40.0)
    vae_budget = args.budget or (10.0 if args.quick else 120.0)
    mix = vae = None
    budget = f"{args.steps} steps" if args.steps else None
    if args.only in (None, "mixture"):
        mix = bench_mixture(args.particles, mix_budget, args.seed, args.steps)
        _print(f"(a) mixture, K={args.particles}, {budget or f'{mix_budget:.0f} s'} per method "
               "(test_ll exact per point; ML = maximum likelihood)", mix,
               ["pi", "mu", "test_ll", "test_ll_is", "steps", "seconds"])  # fmt: skip
    if args.only in (None, "vae"):
        vae = bench_vae(args.particles, vae_budget, args.seed, args.steps)
        _print(f"(b) VAE on 8x8 digits, K={args.particles}, {budget or f'{vae_budget:.0f} s'} "
               "per method (IS log-lik per image, 1000 samples)", vae,
               ["test_ll_is", "train_ll_is", "steps", "seconds"])  # fmt: skip
    result = {
        "benchmark": "vis",
        "backend": "numpyro",
        "particles": args.particles,
        "budget": {"steps": args.steps} if args.steps
        else {"seconds": {"mixture": mix_budget, "vae": vae_budget}},
        "quick": args.quick,
        "mixture": mix,
        "vae_digits": vae,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "jax": jax.__version__, "numpyro": numpyro.__version__,
                    "note": "shared CPU loaded by other jobs; wall-clock budgets are noisy"},
    }  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
