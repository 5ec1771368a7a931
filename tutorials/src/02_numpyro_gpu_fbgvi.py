# %% [markdown]
# # 02 · A NumPyro script ready for the GPU: FBGVI vs Adam-SVI on a logistic regression
#
# `vidiv.numpyro.FBGVI` fits a full-rank Gaussian q = N(m, Σ) to a model's posterior by
# **forward-backward Gaussian VI** (Diao, Balasubramanian, Chewi & Salim, ICML 2023): each step is
# a gradient (forward) step on the expected potential E_q[−log p] and a closed-form proximal
# (backward, JKO) step on the entropy, in the Bures–Wasserstein geometry of Gaussians. There is no
# learning rate to tune the way Adam's is, Σ stays positive definite by construction, and on
# log-concave posteriors it converges with guarantees.
#
# This notebook is written the way a GPU script is: data are `jax.Array`s, the whole training
# loop is a jitted `lax.scan` compiled **once** and then reused, nothing leaves the device until
# the end. The same code runs unchanged on CPU or GPU; JAX picks the accelerator if
# `jax[cuda]` is installed. The outputs stored here come from a **CPU** run (2 shared cores), so
# absolute timings are only indicative.

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
from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoMultivariateNormal

import vidiv.numpyro as vn
from vidiv.diagnostics import diagnose
from vidiv.gaussian import Decay

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
SMOKE = os.environ.get("VIDIV_SMOKE", "0") not in ("", "0")
STEPS = 400 if SMOKE else 1500
CHUNK = STEPS // 20
print("backend:", jax.default_backend(), "| devices:", jax.devices())
print(f"numpyro {numpyro.__version__}, jax {jax.__version__}, smoke={SMOKE}, steps={STEPS}")

# %% [markdown]
# ## Data and model
#
# n = 2000 observations, d = 20 correlated features (AR(1) correlation 0.6), so the posterior
# of β has strong correlations that a mean-field guide would miss: both methods here are
# full-rank. `jax.device_put` puts the data on the default device (the GPU when there is one).

# %%
N, D = 2000, 20
rng = np.random.default_rng(0)
corr = 0.6 ** np.abs(np.subtract.outer(np.arange(D), np.arange(D)))
X_np = rng.multivariate_normal(np.zeros(D), corr, size=N) * 2 / np.sqrt(D)
beta_true = rng.normal(size=D)
y_np = (rng.random(N) < 1 / (1 + np.exp(-X_np @ beta_true))).astype(float)
X, y = jax.device_put(jnp.asarray(X_np)), jax.device_put(jnp.asarray(y_np))
print("data on", X.devices())


def model(X, y=None):
    beta = numpyro.sample("beta", dist.Normal(jnp.zeros(X.shape[1]), 1.0).to_event(1))
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=X @ beta), obs=y)

# %% [markdown]
# ## Reference: NUTS
#
# What a careful user would check against. A single chain is enough on this well-conditioned,
# nearly Gaussian posterior.

# %%
t0 = time.perf_counter()
mcmc = MCMC(NUTS(model), num_warmup=200 if SMOKE else 500, num_samples=1000 if SMOKE else 3000,
            progress_bar=False)
mcmc.run(jax.random.PRNGKey(0), X, y)
nuts = np.asarray(mcmc.get_samples()["beta"])
nuts_seconds = time.perf_counter() - t0
ref_mean, ref_cov = nuts.mean(0), np.cov(nuts.T)
ref_sd = np.sqrt(np.diag(ref_cov))
print(f"NUTS: {nuts_seconds:.1f} s (compilation included), posterior sd {ref_sd.min():.3f}"
      f"..{ref_sd.max():.3f}")


def accuracy(mean, cov):
    mean, cov = np.asarray(mean), np.asarray(cov)
    return {
        "max std mean error": np.max(np.abs(mean - ref_mean) / ref_sd),
        "sd ratio min": np.min(np.sqrt(np.diag(cov)) / ref_sd),
        "sd ratio max": np.max(np.sqrt(np.diag(cov)) / ref_sd),
        "cov rel. error": np.linalg.norm(cov - ref_cov) / np.linalg.norm(ref_cov),
    }

# %% [markdown]
# ## Jit once, run in chunks
#
# Both methods expose a state and a compiled update. We run `STEPS` steps in 20 chunks so that we
# can record the accuracy along the way; each chunk reuses the **same** compiled program (same
# shapes), so compilation is paid once. We time the first chunk (compile + run) apart from the
# rest (run only).
#
# * FBGVI: `FBGVI.run(key, CHUNK, X, y, init_state=state)` continues from a state;
#   16 samples per step, exact Hessians (`jax.hessian`, vmapped), step size 0.5/λ_max of the
#   Hessian at the start, decaying as 1/(1 + k/200); q starts as N(0, 0.1² I), as
#   `AutoMultivariateNormal` does.
# * Adam-SVI: NumPyro's `SVI` with `AutoMultivariateNormal` and `Trace_ELBO(16)`, Adam with a
#   step size decaying from 0.02 to 0.002; the chunk is our own `jax.jit(lax.scan(svi.update))`
#   (`SVI.run` would trace and compile again on every call).

# %%
def track(run_chunk, state, moments):
    """Run 20 chunks; return the final state, per-step losses, timings and the accuracy path."""
    losses, path, first = [], [], None
    t0 = time.perf_counter()
    for i in range(STEPS // CHUNK):
        state, chunk_losses = run_chunk(state)
        chunk_losses = np.asarray(chunk_losses)  # blocks until the chunk is done
        if i == 0:
            first = time.perf_counter() - t0
        losses.append(chunk_losses)
        path.append(((i + 1) * CHUNK, *accuracy(*moments(state)).values()))
    total = time.perf_counter() - t0
    return state, np.concatenate(losses), {"first chunk (compile + run) s": first,
                                           "other chunks s": total - first}, np.array(path)


fb = vn.FBGVI(model, num_samples=16, hessian="exact", schedule=Decay(200.0), init_scale=0.1)
fb_state = fb.init(jax.random.PRNGKey(1), X, y)
fb_state, fb_losses, fb_time, fb_path = track(
    lambda s: (lambda r: (r.state, r.losses))(fb.run(None, CHUNK, X, y, init_state=s,
                                                     progress_bar=False)),
    fb_state, lambda s: (s.mean, s.cov))
print("FBGVI", {k: round(v, 2) for k, v in fb_time.items()}, "initial step size", fb.eta0)

guide = AutoMultivariateNormal(model)
svi = SVI(model, guide, numpyro.optim.Adam(lambda i: 0.02 * 0.1 ** (i / STEPS)),
          Trace_ELBO(num_particles=16))
svi_chunk = jax.jit(lambda s: jax.lax.scan(lambda st, _: svi.update(st, X, y), s, None,
                                           length=CHUNK))


def svi_moments(state):
    p = svi.get_params(state)
    L = p["auto_scale_tril"]
    return p["auto_loc"], L @ L.T


svi_state = svi.init(jax.random.PRNGKey(1), X, y)
svi_state, svi_losses, svi_time, svi_path = track(svi_chunk, svi_state, svi_moments)
print("Adam-SVI", {k: round(v, 2) for k, v in svi_time.items()})

# %% [markdown]
# ## Results against NUTS

# %%
fb_params = fb.get_params(fb_state)
svi_params = svi.get_params(svi_state)
key = jax.random.PRNGKey(2)
dt_fb = vn.to_datatree(model, fb.guide, fb_params, X, y=y, rng_key=key, num_samples=2000,
                       losses=fb_losses, objective="FBGVI")
dt_svi = vn.to_datatree(model, guide, svi_params, X, y=y, rng_key=key, num_samples=2000,
                        losses=svi_losses, objective="Adam-SVI (Trace_ELBO)")
rows = {}
for name, dt, moments, timing in (
    ("FBGVI", dt_fb, (fb_state.mean, fb_state.cov), fb_time),
    ("Adam-SVI", dt_svi, svi_moments(svi_state), svi_time),
):
    r = diagnose(dt)
    rows[name] = {**accuracy(*moments), "ELBO": r.elbo, "k-hat": r.khat, **timing}
rows["NUTS"] = {"first chunk (compile + run) s": nuts_seconds}
results = pd.DataFrame(rows).T
results.round(3)

# %%
cols = ["step", "max std mean error", "sd ratio min", "sd ratio max", "cov rel. error"]
pd.concat({"FBGVI": pd.DataFrame(fb_path, columns=cols).set_index("step"),
           "Adam-SVI": pd.DataFrame(svi_path, columns=cols).set_index("step")},
          axis=1).iloc[[0, 1, 2, 4, 9, 19]].round(3)

# %% [markdown]
# After the full run both land on the same Gaussian (the posterior is nearly Gaussian, so the
# KL-optimal Gaussian matches NUTS's moments; the covariance error left, ~0.1, is mostly NUTS's
# own Monte Carlo error with a few thousand draws). The difference is the path, in the table
# below and the plot: the FBGVI step uses the curvature (the Hessian enters the covariance
# update), so its covariance is right within the first chunk and its mean within a few hundred
# steps, while Adam moves the Cholesky factor one small step at a time. An FBGVI step costs more
# (16 Hessians of a 20-dimensional potential, about twice Adam's time per step here), but it
# needs several times fewer steps. Compare the `other chunks s` column (run time after
# compilation) with the first chunk's: compilation is paid once.

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 3.2))
for path, name in ((fb_path, "FBGVI"), (svi_path, "Adam-SVI")):
    axes[0].semilogy(path[:, 0], path[:, 1], "o-", ms=3, label=name)
    axes[1].semilogy(path[:, 0], path[:, 4], "o-", ms=3, label=name)
axes[0].set_title("max |mean − NUTS| / sd")
axes[1].set_title("‖Σ − Σ_NUTS‖_F / ‖Σ_NUTS‖_F")
for ax in axes[:2]:
    ax.set_xlabel("step")
    ax.legend()
k = max(STEPS // 100, 1)
for losses, name in ((fb_losses, "FBGVI"), (svi_losses, "Adam-SVI")):
    axes[2].plot(np.convolve(losses, np.ones(k) / k, mode="valid"), label=name)
axes[2].set_ylim(np.percentile(svi_losses, 1) - 5, np.percentile(svi_losses, 60) + 5)
axes[2].set_title("−ELBO per step (moving average)")
axes[2].set_xlabel("step")
axes[2].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## On a GPU
#
# Nothing above names a device. On a machine with `pip install "jax[cuda12]"`, `jax.devices()`
# lists the GPU, `jax.device_put` sends the data there, and both compiled chunks run on it; the
# only change worth making is more samples per step (`num_samples=` for FBGVI, `num_particles=`
# for SVI), which a GPU evaluates in parallel at almost no extra cost. The repository's
# `benchmarks/gpu_check.py` runs every NumPyro method this way with 10², 10³ and 10⁴ particles
# and checks that each step compiles once.
#
# ## What we claim, checked
#
# 1. FBGVI's Gaussian matches NUTS: means within 0.15 posterior sd, covariance within 20 %
#    (Frobenius; 30 % in the shortened test run, whose 1000 NUTS draws carry that much Monte Carlo
#    error themselves), and a usable k̂.
# 2. FBGVI converges in fewer steps: after the first 10 % of the steps both its mean error and
#    its covariance error are below Adam-SVI's at the same point.
# 3. Jit once: the later chunks run at least 2× faster per chunk than the first, which carries the
#    compilation.

# %%
fb_row = results.loc["FBGVI"]
assert fb_row["max std mean error"] < 0.15, fb_row
assert fb_row["cov rel. error"] < (0.3 if SMOKE else 0.2), fb_row
assert fb_row["k-hat"] < 0.7, fb_row["k-hat"]
assert fb_path[1, 1] < svi_path[1, 1] and fb_path[1, 4] < svi_path[1, 4], (fb_path[1], svi_path[1])
per_chunk = fb_time["other chunks s"] / (STEPS // CHUNK - 1)
assert per_chunk * 2 < fb_time["first chunk (compile + run) s"], fb_time
print("all claims hold")
