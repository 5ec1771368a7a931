# %% [markdown]
# # 03 · Mirrored SVGD on the probability simplex
#
# Category frequencies, mixture weights and HMM transition rows live on the simplex
# {w : w_k ≥ 0, Σ_k w_k = 1}. With sparse data their posterior piles up against the simplex's
# faces: most categories have probability near 0. Particle methods must keep every particle
# inside the simplex *and* resolve that boundary layer.
#
# * Pyro's `pyro.infer.SVGD` runs Stein variational gradient descent on the model's
#   *unconstrained* coordinates (stick-breaking), with a kernel there;
# * NumPyro's `numpyro.contrib.einstein.SVGD` does not run on a Dirichlet site at all (shown
#   below);
# * `vidiv.pyro.MirroredSVGD` / `vidiv.numpyro.MirroredSVGD` move the particles in the dual
#   space of the **entropic mirror map** (Shi, Liu & Mackey, ICLR 2022): the kernel and the
#   Stein operator use the simplex geometry, and every update lands exactly on the simplex.
#   `variant="svmd"` is their Stein variational mirror descent with an adaptive kernel.
#
# The model is conjugate, so the exact posterior is known and every method is scored by the
# **energy distance** to 1000 exact posterior draws (0 = same distribution), next to what 50
# exact, independent draws would score.

# %%
import os
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVGD, RBFSteinKernel

import vidiv.pyro as vp
from vidiv.particles import mean_pairwise_distance

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
SMOKE = os.environ.get("VIDIV_SMOKE", "0") not in ("", "0")
STEPS = 400 if SMOKE else 800
P = 50  # particles
torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)
print(f"pyro {pyro.__version__}, torch {torch.__version__}, smoke={SMOKE}, steps={STEPS}")

# %% [markdown]
# ## A Dirichlet-multinomial with sparse counts
#
# K = 10 categories, a sparse Dirichlet(0.1) prior, 49 observations of which 40 fall in the
# first category and six categories are never seen. The posterior is Dirichlet(0.1 + counts):
# the unseen categories have posterior mean 0.002 and most of their mass within 10⁻⁴ of zero.

# %%
K = 10
counts = torch.tensor([40.0, 5, 3, 0, 0, 0, 1, 0, 0, 0])
prior = torch.full((K,), 0.1)
post_alpha = (prior + counts).numpy()
exact = np.random.default_rng(1).dirichlet(post_alpha, size=1000)
exact_mean = post_alpha / post_alpha.sum()


def model(counts):
    w = pyro.sample("w", dist.Dirichlet(prior))
    pyro.sample("counts", dist.Multinomial(total_count=int(counts.sum()), probs=w), obs=counts)


def energy_distance(x):
    """Energy distance (V-statistic) between particles x (P, K) and the exact draws."""
    x = np.asarray(x, dtype=np.float64)
    return float(2 * mean_pairwise_distance(x, exact) - mean_pairwise_distance(x, x)
                 - mean_pairwise_distance(exact, exact))


iid = [energy_distance(np.random.default_rng(s).dirichlet(post_alpha, size=P)) for s in range(20)]
print(f"energy distance of {P} exact iid draws: median {np.median(iid):.2e}")

# %% [markdown]
# ## The host's SVGD, in both of its kernel modes
#
# Same particle count, Adam with a decaying step size, the RBF kernel with the median
# bandwidth; `mode="univariate"` (Pyro's default) is one kernel per coordinate,
# `"multivariate"` one kernel on all coordinates.

# %%
def decaying(optimizer, lr, gamma, **kw):
    return pyro.optim.ExponentialLR({"optimizer": optimizer, "optim_args": {"lr": lr, **kw},
                                     "gamma": gamma})


runs = {}
for mode in ("univariate", "multivariate"):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    optim = decaying(torch.optim.Adam, 0.1, 0.995)
    svgd = SVGD(model, RBFSteinKernel(), optim, num_particles=P, max_plate_nesting=0, mode=mode)
    t0 = time.perf_counter()
    for _ in range(STEPS):
        svgd.step(counts)
        optim.step()
    w = svgd.get_named_particles()["w"].detach().numpy()
    runs[f"pyro.infer.SVGD ({mode})"] = (w, time.perf_counter() - t0)

# %% [markdown]
# ## Mirrored SVGD
#
# The particles start from the prior; `step(counts)` moves them once (the optimiser gets
# η.grad = −φ, the mirrored Stein direction in the dual space, as Pyro's SVGD does with its
# own direction). RMSprop with a decaying step size, as in the library's sparse-Dirichlet tests.
# (`variant="svmd"` selects Stein variational mirror descent; it needs its own step-size tuning
# and is not shown here.)

# %%
pyro.clear_param_store()
pyro.set_rng_seed(0)
optim = decaying(torch.optim.RMSprop, 0.3, 0.99, alpha=0.9)
ms = vp.MirroredSVGD(model, P, optim=optim)  # variant="msvgd", kernel="imq"
t0 = time.perf_counter()
for _ in range(STEPS):
    ms.step(counts)
    optim.step()
runs["vidiv MirroredSVGD"] = (ms.get_samples()["w"].numpy(), time.perf_counter() - t0)

rows = {}
for name, (w, seconds) in runs.items():
    rows[name] = {
        "energy distance": energy_distance(w),
        "÷ iid median": energy_distance(w) / np.median(iid),
        "max |mean error|": np.abs(w.mean(0) - exact_mean).max(),
        "all on simplex": bool(np.all(w >= 0) and np.allclose(w.sum(-1), 1.0)),
        "seconds": seconds,
    }
table = pd.DataFrame(rows).T
table

# %% [markdown]
# **Reading the table.** An energy distance near the iid value means the 50 particles describe
# the posterior about as well as 50 exact draws would. Pyro's SVGD is several times further away:
# in stick-breaking coordinates the sparse categories sit at −∞-like values, where its
# Euclidean kernel and step sizes do not resolve them; its means are off by 0.2–0.3. The mirrored
# particles get every posterior mean within a few hundredths, and the unseen categories' means at
# the right order of magnitude — except the last category, which is the entropic map's reference
# coordinate (θ = softmax([η, 0])): a few particles keep too much mass there (mean ≈ 0.01–0.03
# against 0.002; see the right panel). Its absolute error is small, but if one category matters
# most, do not put it last.
#
# The boundary layer is easiest to see on a log scale: the exact posterior of an unseen category
# spreads over many orders of magnitude below 10⁻².

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
k = 3  # an unseen category
bins = np.logspace(-12, 0, 50)
axes[0].hist(exact[:, k], bins=bins, density=False, weights=np.full(1000, P / 1000), color="0.8",
             label="exact (rescaled to 50 draws)")
for i, (name, (w, _)) in enumerate(runs.items()):
    axes[0].hist(np.clip(w[:, k], 1e-12, 1), bins=bins, histtype="step", lw=1.5, color=f"C{i}",
                 label=name)
axes[0].set_xscale("log")
axes[0].set_title(f"w[{k}] (never observed): particles vs exact")
axes[0].legend(fontsize=7)
x = np.arange(K)
axes[1].bar(x, exact_mean, color="0.8", label="exact posterior mean")
for i, (name, (w, _)) in enumerate(runs.items()):
    axes[1].plot(x + (i - 1) * 0.2, w.mean(0), "o", color=f"C{i}", ms=4, label=name)
axes[1].set_yscale("log")
axes[1].set_xlabel("category")
axes[1].set_title("posterior means")
axes[1].legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## NumPyro
#
# NumPyro's Stein VI (`numpyro.contrib.einstein.SVGD`) builds its particles from an
# `AutoDelta`-style flattening that does not account for the Dirichlet's K → K − 1 unconstrained
# dimension, and stops with a shape error on the first step:

# %%
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpyro
import numpyro.distributions as ndist
from numpyro.contrib.einstein import SVGD as NumPyroSVGD
from numpyro.contrib.einstein import RBFKernel

import vidiv.numpyro as vn

counts_j = jnp.asarray(counts.numpy())
TOTAL = int(counts.sum())


def numpyro_model(counts):
    w = numpyro.sample("w", ndist.Dirichlet(jnp.full(K, 0.1)))
    numpyro.sample("counts", ndist.Multinomial(total_count=TOTAL, probs=w), obs=counts)


try:
    NumPyroSVGD(numpyro_model, numpyro.optim.Adagrad(0.5), RBFKernel(),
                num_stein_particles=P).run(jax.random.PRNGKey(0), 10, counts_j,
                                           progress_bar=False)
    numpyro_svgd_error = None
except Exception as err:  # noqa: BLE001 -- we show whatever the host raises
    numpyro_svgd_error = f"{type(err).__name__}: {err}"
print("numpyro.contrib.einstein.SVGD on a Dirichlet site ->", numpyro_svgd_error)

# %% [markdown]
# `vidiv.numpyro.MirroredSVGD` runs the same algorithm as the Pyro driver, as one jitted
# `lax.scan` (compiled once):

# %%
ms_np = vn.MirroredSVGD(numpyro_model, P, optim=numpyro.optim.RMSProp(lambda i: 0.3 * 0.99**i))
t0 = time.perf_counter()
result = ms_np.run(jax.random.PRNGKey(0), STEPS, counts_j, progress_bar=False)
w_np = np.asarray(ms_np.get_samples(result.state)["w"])
print(f"vidiv.numpyro.MirroredSVGD: {time.perf_counter() - t0:.1f} s (compilation included), "
      f"energy distance {energy_distance(w_np):.2e}, "
      f"max |mean error| {np.abs(w_np.mean(0) - exact_mean).max():.4f}")

# %% [markdown]
# ## What we claim, checked
#
# 1. Mirrored SVGD's 50 particles are within 3× the energy distance of 50 exact iid draws
#    (about 2× in the full run), and at least 5× closer to the posterior than the best of
#    Pyro's SVGD modes; its means are within 0.04 of the exact ones; every particle is on the
#    simplex.
# 2. The NumPyro driver gets the same quality (within 3× of iid draws).
# 3. NumPyro's own SVGD fails on the Dirichlet site (if a NumPyro release fixes it, this notebook
#    says so by failing here: update the text above).

# %%
ms_row = table.loc["vidiv MirroredSVGD"]
best_host = table.loc[[n for n in table.index if n.startswith("pyro")], "energy distance"].min()
assert ms_row["÷ iid median"] < 3.0, ms_row
assert ms_row["energy distance"] * 5 < best_host, (ms_row["energy distance"], best_host)
assert ms_row["max |mean error|"] < 0.04 and ms_row["all on simplex"], ms_row
assert energy_distance(w_np) < 3.0 * np.median(iid)
assert numpyro_svgd_error is not None
print("all claims hold")
