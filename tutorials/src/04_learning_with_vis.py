# %% [markdown]
# # 04 · Learning a model with ChiSquaredVIS
#
# Variational EM — maximising the ELBO jointly over the model's parameters θ and the guide — has
# a known flaw: the ELBO is log p_θ(x) **minus** KL(q ‖ p_θ(z | x)), so the optimiser prefers
# parameters whose posterior the guide can fit, not the parameters that explain the data. IWAE
# (Rényi α = 0) shrinks that bias with K particles. **Forward χ² variational importance sampling**
# (VIS; Li, Wang, Li & Wu, ICLR 2024) goes further: the model parameters follow the importance-
# sampled log-likelihood log p̂_θ(x), and the guide is trained as an *importance proposal* by
# minimising the forward χ²(p ‖ q) (in score form, with detached samples, so it cannot collapse).
#
# In NumPyro this is one argument: `SVI(model, guide, optim, loss=vidiv.numpyro.ChiSquaredVIS(16))`.
# The notebook compares it with `Trace_ELBO` and IWAE (`RenyiELBO(alpha=0)`) at the same 16
# particles on
#
# 1. a model whose maximum-likelihood answer is known: a two-component latent mixture with an
#    amortised Gaussian guide that *cannot* represent the bimodal posterior;
# 2. a small variational auto-encoder on scikit-learn's bundled 8×8 digits (no download).
#
# The score is always the **held-out log-likelihood** (exact for the mixture, importance-sampled
# with 1000 samples for the VAE), the number a model is judged by.

# %%
import os
import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
from numpyro.distributions import constraints
from numpyro.infer import SVI, RenyiELBO, Trace_ELBO
from scipy.optimize import minimize
from sklearn.datasets import load_digits

import vidiv.numpyro as vn

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
SMOKE = os.environ.get("VIDIV_SMOKE", "0") not in ("", "0")
MIX_STEPS = 1500 if SMOKE else 4000
VAE_STEPS = 500 if SMOKE else 4000
PARTICLES = 16
print(f"numpyro {numpyro.__version__}, jax {jax.__version__}, devices {jax.devices()}, "
      f"smoke={SMOKE}")


def objectives():
    return {
        "Trace_ELBO": Trace_ELBO(num_particles=PARTICLES),
        "IWAE (RenyiELBO α=0)": RenyiELBO(alpha=0.0, num_particles=PARTICLES),
        "ChiSquaredVIS": vn.ChiSquaredVIS(num_particles=PARTICLES),
    }

# %% [markdown]
# ## 1. An identifiable latent mixture
#
# $z \sim \pi\,N(\mu, 1) + (1-\pi)\,N(-\mu, 1)$, $x \mid z \sim N(z, 2^2)$, with learnable
# π ∈ (0, 1) and μ > 0; truth π = 0.7, μ = 3; 1000 training and 1000 test points. Marginally
# $x \sim \pi N(\mu, 5) + (1-\pi) N(-\mu, 5)$, so the log-likelihood is exact and its maximiser
# is a 2-D optimisation. The guide is amortised and linear: q(z | x) = N(a·x + b, s²). For x near 0
# the true posterior of z has two modes (±μ), which one Gaussian cannot fit; the ELBO then
# pays a KL penalty that it can reduce by pulling the modes together, i.e. by *shrinking μ*.

# %%
rng = np.random.default_rng(0)


def simulate(n, pi=0.7, mu=3.0):
    z = np.where(rng.random(n) < pi, mu, -mu) + rng.normal(size=n)
    return z + 2.0 * rng.normal(size=n)


x_train, x_test = simulate(1000), simulate(1000)


def exact_loglik(pi, mu, x):
    """log p(x) per point, with x ~ pi N(mu, 5) + (1 - pi) N(-mu, 5)."""
    var = 5.0
    a = np.log(pi) - 0.5 * (x - mu) ** 2 / var
    b = np.log1p(-pi) - 0.5 * (x + mu) ** 2 / var
    return np.logaddexp(a, b) - 0.5 * np.log(2 * np.pi * var)


opt = minimize(lambda u: -exact_loglik(1 / (1 + np.exp(-u[0])), np.exp(u[1]), x_train).sum(),
               np.zeros(2))
pi_ml, mu_ml = 1 / (1 + np.exp(-opt.x[0])), np.exp(opt.x[1])
ll_ml = exact_loglik(pi_ml, mu_ml, x_test).mean()
print(f"maximum likelihood: pi = {pi_ml:.4f}, mu = {mu_ml:.4f}, "
      f"test log-likelihood {ll_ml:.4f} per point")

# %% [markdown]
# The NumPyro model and guide, with minibatches of 100 (`subsample_size`): the objectives scale
# the minibatch terms to the full data set as the host's ELBOs do.

# %%
def mixture_model(x):
    pi = numpyro.param("pi", 0.5, constraint=constraints.unit_interval)
    mu = numpyro.param("mu", 1.0, constraint=constraints.positive)
    prior = dist.MixtureSameFamily(dist.Categorical(probs=jnp.stack([pi, 1 - pi])),
                                   dist.Normal(jnp.stack([mu, -mu]), 1.0))
    with numpyro.plate("data", x.shape[0], subsample_size=100) as idx:
        z = numpyro.sample("z", prior)
        numpyro.sample("x", dist.Normal(z, 2.0), obs=x[idx])


def mixture_guide(x):
    a = numpyro.param("a", 0.5)
    b = numpyro.param("b", 0.0)
    s = numpyro.param("s", 1.0, constraint=constraints.positive)
    with numpyro.plate("data", x.shape[0], subsample_size=100) as idx:
        numpyro.sample("z", dist.Normal(a * x[idx] + b, s))


mix_fits = {}
for name, loss in objectives().items():
    optim = numpyro.optim.Adam(lambda i: 0.02 * 0.05 ** (i / MIX_STEPS))
    svi = SVI(mixture_model, mixture_guide, optim, loss)
    t0 = time.perf_counter()
    res = svi.run(jax.random.PRNGKey(0), MIX_STEPS, jnp.asarray(x_train), progress_bar=False)
    seconds = time.perf_counter() - t0
    pi, mu = float(res.params["pi"]), float(res.params["mu"])
    mix_fits[name] = {"pi": pi, "mu": mu, "test log-lik": exact_loglik(pi, mu, x_test).mean(),
                      "seconds": seconds, "params": res.params}
mix = pd.DataFrame({k: {c: v[c] for c in ("pi", "mu", "test log-lik", "seconds")}
                    for k, v in mix_fits.items()}).T
mix.loc["maximum likelihood"] = [pi_ml, mu_ml, ll_ml, np.nan]
mix["gap to ML (nats/point)"] = mix["test log-lik"] - ll_ml
mix.round(4)

# %% [markdown]
# **Reading the table.** `Trace_ELBO` lands far from the maximum-likelihood μ and loses
# ~0.17 nats per test point: that is the variational-EM bias, not an optimisation failure.
# IWAE and VIS both recover the maximum-likelihood parameters. The pictures show why: for an
# ambiguous x (here x = 0.5) the exact posterior of z is bimodal; the ELBO-trained model has
# moved its two modes together so that the one-Gaussian guide fits, while VIS keeps the model
# right and spreads its guide over both modes — a wide proposal, as an importance sampler should.

# %%
def exact_posterior(z, x, pi, mu):
    prior = np.logaddexp(np.log(pi) - 0.5 * (z - mu) ** 2, np.log1p(-pi) - 0.5 * (z + mu) ** 2)
    logp = prior - 0.5 * (x - z) ** 2 / 4.0
    p = np.exp(logp - logp.max())
    return p / np.trapezoid(p, z)


fig, axes = plt.subplots(1, 2, figsize=(12, 3.5))
grid = np.linspace(-10, 10, 400)
axes[0].hist(x_test, bins=50, density=True, color="0.85", label="test data")
for name, f in mix_fits.items():
    axes[0].plot(grid, np.exp(exact_loglik(f["pi"], f["mu"], grid)), label=name)
axes[0].set_title("learned marginal p(x)")
axes[0].legend(fontsize=8)
x0, zgrid = 0.5, np.linspace(-7, 7, 400)
for i, (name, f) in enumerate(mix_fits.items()):
    p = f["params"]
    axes[1].plot(zgrid, exact_posterior(zgrid, x0, f["pi"], f["mu"]), color=f"C{i}",
                 label=f"{name}: exact p(z | x) of the learned model")
    q = np.exp(-0.5 * ((zgrid - (p["a"] * x0 + p["b"])) / p["s"]) ** 2)
    axes[1].plot(zgrid, q / np.trapezoid(q, zgrid), color=f"C{i}", ls="--")
axes[1].set_title(f"posterior of z at x = {x0} (solid) and the guide (dashed)")
axes[1].legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. A small VAE on scikit-learn's 8×8 digits
#
# 1797 binarised 8×8 digits (pixel > 7), 1500 for training and 297 held out. Latent z ∈ ℝ²,
# decoder and encoder are one-hidden-layer tanh MLPs (64 units) written with `numpyro.param`;
# minibatches of 100 images. The three runs share everything except `loss=`.
#
# Held-out log-likelihood log p(x) per test image is estimated by importance sampling with 1000
# draws from each model's own encoder (the IWAE-1000 estimate, the standard VAE yardstick).

# %%
digits = load_digits()
X = (digits.data > 7).astype(np.float64)
perm = np.random.default_rng(0).permutation(len(X))
X, labels = X[perm], digits.target[perm]
X_train, X_test = jnp.asarray(X[:1500]), jnp.asarray(X[1500:])
LATENT, HIDDEN = 2, 64


def _init(shape, seed):
    if len(shape) == 1:
        return np.zeros(shape)
    return np.random.default_rng(seed).normal(size=shape) / np.sqrt(shape[0])


DECODER = {"dec_W1": (LATENT, HIDDEN), "dec_b1": (HIDDEN,), "dec_W2": (HIDDEN, 64),
           "dec_b2": (64,)}
ENCODER = {"enc_W1": (64, HIDDEN), "enc_b1": (HIDDEN,), "enc_W2": (HIDDEN, 2 * LATENT),
           "enc_b2": (2 * LATENT,)}


def decode(p, z):
    return jnp.tanh(z @ p["dec_W1"] + p["dec_b1"]) @ p["dec_W2"] + p["dec_b2"]  # pixel logits


def encode(p, x):
    out = jnp.tanh(x @ p["enc_W1"] + p["enc_b1"]) @ p["enc_W2"] + p["enc_b2"]
    return out[..., :LATENT], jnp.exp(out[..., LATENT:])


def vae_model(x):
    p = {k: numpyro.param(k, _init(s, i)) for i, (k, s) in enumerate(DECODER.items())}
    with numpyro.plate("data", x.shape[0], subsample_size=100) as idx:
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([LATENT]).to_event(1))
        numpyro.sample("x", dist.Bernoulli(logits=decode(p, z)).to_event(1), obs=x[idx])


def vae_guide(x):
    p = {k: numpyro.param(k, _init(s, 10 + i)) for i, (k, s) in enumerate(ENCODER.items())}
    with numpyro.plate("data", x.shape[0], subsample_size=100) as idx:
        loc, scale = encode(p, x[idx])
        numpyro.sample("z", dist.Normal(loc, scale).to_event(1))


@jax.jit
def heldout_loglik(p, x, key, num_samples=1000):
    """IS estimate of log p(x) per image with the encoder as proposal; mean over images."""
    loc, scale = encode(p, x)
    z = loc + scale * jax.random.normal(key, (num_samples,) + loc.shape)
    log_q = dist.Normal(loc, scale).log_prob(z).sum(-1)
    log_p = (dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
             + dist.Bernoulli(logits=decode(p, z)).log_prob(x).sum(-1))
    return jnp.mean(jax.scipy.special.logsumexp(log_p - log_q, axis=0) - jnp.log(num_samples))


vae_fits = {}
for name, loss in objectives().items():
    optim = numpyro.optim.Adam(lambda i: 3e-3 * 0.1 ** (i / VAE_STEPS))
    svi = SVI(vae_model, vae_guide, optim, loss)
    t0 = time.perf_counter()
    res = svi.run(jax.random.PRNGKey(0), VAE_STEPS, X_train, progress_bar=False)
    seconds = time.perf_counter() - t0
    vae_fits[name] = {
        "train log-lik": float(heldout_loglik(res.params, X_train, jax.random.PRNGKey(1))),
        "test log-lik": float(heldout_loglik(res.params, X_test, jax.random.PRNGKey(2))),
        "seconds": seconds, "params": res.params, "losses": np.asarray(res.losses),
    }
vae = pd.DataFrame({k: {c: v[c] for c in ("train log-lik", "test log-lik", "seconds")}
                    for k, v in vae_fits.items()}).T
vae["test gain over ELBO (nats/image)"] = vae["test log-lik"] - vae.loc["Trace_ELBO",
                                                                          "test log-lik"]
vae.round(3)

# %% [markdown]
# **Reading the table.** Both multi-sample objectives beat the ELBO on held-out images (by about
# 0.1 nats per image in the full run), and VIS and IWAE end up level with each other: with a
# 2-D latent space and a Gaussian encoder, the posterior of z given an image is close enough to
# Gaussian that the ELBO's bias is small here, unlike in the mixture above.
#
# On the left: the 2-D latent codes (encoder means) of the held-out digits under the VIS-trained
# VAE, coloured by the digit's label (which the VAE never saw). On the right: decoder means over a
# grid of latent points — what the learned generative model thinks digits look like.

# %%
p_vis = vae_fits["ChiSquaredVIS"]["params"]
fig, axes = plt.subplots(1, 2, figsize=(12, 5))
codes, _ = encode(p_vis, X_test)
sc = axes[0].scatter(codes[:, 0], codes[:, 1], c=labels[1500:], cmap="tab10", s=12)
fig.colorbar(sc, ax=axes[0], label="digit")
axes[0].set_title("held-out digits in the latent space (VIS)")
n = 10
lo, hi = np.percentile(np.asarray(codes), [3, 97], axis=0)
tiles = np.ones((n * 9, n * 9))
for i, z2 in enumerate(np.linspace(hi[1], lo[1], n)):
    for j, z1 in enumerate(np.linspace(lo[0], hi[0], n)):
        img = jax.nn.sigmoid(decode(p_vis, jnp.array([z1, z2]))).reshape(8, 8)
        tiles[i * 9:i * 9 + 8, j * 9:j * 9 + 8] = np.asarray(img)
axes[1].imshow(tiles, cmap="gray_r")
axes[1].set_axis_off()
axes[1].set_title("decoder means over the latent grid (VIS)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## What we claim, checked
#
# 1. Mixture: VIS recovers the maximum-likelihood model — μ within 0.15 of the ML value and a
#    test log-likelihood within 0.01 nats per point of the ML one (0.02 in the shortened test run).
# 2. Mixture: the ELBO-trained model is biased — at least 0.05 nats per test point worse than VIS.
# 3. VAE: VIS's held-out log-likelihood is at least as good as the ELBO-trained VAE's after the
#    full 4000 steps. (In the shortened test run, 500 steps, all three are still far from
#    converged; there VIS must have learned — better than −30 nats per image, against
#    64·log 2 ≈ −44 for an untrained decoder — and be within 0.3 nats of the ELBO.)

# %%
vis_mix = mix.loc["ChiSquaredVIS"]
assert abs(vis_mix["mu"] - mu_ml) < 0.15, vis_mix["mu"]
assert vis_mix["gap to ML (nats/point)"] > -(0.02 if SMOKE else 0.01), vis_mix
assert mix.loc["Trace_ELBO", "test log-lik"] < vis_mix["test log-lik"] - 0.05
vis_vae, elbo_vae = vae.loc["ChiSquaredVIS", "test log-lik"], vae.loc["Trace_ELBO", "test log-lik"]
if SMOKE:
    assert vis_vae > -30.0 and vis_vae > elbo_vae - 0.3, (vis_vae, elbo_vae)
else:
    assert vis_vae >= elbo_vae, (vis_vae, elbo_vae)
print("all claims hold")
