# %% [markdown]
# # 05 · A diffusion guide trained with the log-variance loss on a multimodal target
#
# Gaussian guides, and normalising flows trained with the ELBO, are **mode-seeking**: the reverse
# KL divergence they minimise costs almost nothing for a missed mode, so a fit that sits on two of
# four modes looks converged. `vidiv.numpyro.DiffusionGuide` draws its sample as the end point of
# a controlled stochastic differential equation,
#
# $$dX_t = \big(\mu(X_t, t) + \sigma(t)\,u_\theta(X_t, t)\big)\,dt + \sigma(t)\,dW_t ,$$
#
# with a small neural drift $u_\theta$ (which also sees the model's score ∇log p). Its log density
# is the log Radon–Nikodym derivative of the path, so every host objective applies. Trained with
# `vidiv.numpyro.LogVariance` it minimises the **log-variance loss** on path space
# (Richter & Berner, ICLR 2024): the variance of log p − log q over trajectories drawn from a
# *detached* control. That loss is zero only when q = p and it has no reverse-KL mode-seeking
# bias; nor does it backpropagate through the SDE solver.
#
# Target: a normalised 2-D mixture of four Gaussians with weights 0.1, 0.2, 0.3, 0.4, so log Z = 0
# and every mode's share is known. Comparison: NumPyro's `AutoIAFNormal` (an inverse
# autoregressive flow) trained with `Trace_ELBO`, at the same particles and steps.

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
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoIAFNormal

import vidiv.numpyro as vn
from vidiv.diagnostics import diagnose

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
SMOKE = os.environ.get("VIDIV_SMOKE", "0") not in ("", "0")
STEPS = 500 if SMOKE else 1500
PARTICLES = 64
print(f"numpyro {numpyro.__version__}, jax {jax.__version__}, smoke={SMOKE}, steps={STEPS}")

# %% [markdown]
# ## The target as a NumPyro model
#
# Any log density can be a NumPyro model: a `Distribution` with a `log_prob` and one sample site.

# %%
MEANS = np.array([[-4.0, -4.0], [-4.0, 4.0], [4.0, -4.0], [4.0, 4.0]])
WEIGHTS = np.array([0.1, 0.2, 0.3, 0.4])
VAR = 0.5


class FourModes(dist.Distribution):
    support = dist.constraints.real_vector

    def __init__(self):
        super().__init__(event_shape=(2,))

    def log_prob(self, x):
        d = x[..., None, :] - MEANS
        comp = jnp.log(WEIGHTS) - 0.5 * jnp.sum(d * d, -1) / VAR - jnp.log(2 * jnp.pi * VAR)
        return jax.scipy.special.logsumexp(comp, axis=-1)


def model():
    numpyro.sample("x", FourModes())


def mode_shares(x):
    """Share of samples nearest each mode (within 3 sd), and the share near any mode."""
    d = np.linalg.norm(np.asarray(x)[:, None, :] - MEANS, axis=-1)
    near = d.min(1) < 3 * np.sqrt(VAR)
    return np.bincount(d.argmin(1)[near], minlength=len(MEANS)) / len(x), near.mean()


def train(guide, loss):
    optim = numpyro.optim.ClippedAdam(lambda i: 5e-3 * 0.05 ** (i / STEPS), clip_norm=1.0)
    t0 = time.perf_counter()
    result = SVI(model, guide, optim, loss).run(jax.random.PRNGKey(0), STEPS, progress_bar=False)
    return result, time.perf_counter() - t0

# %% [markdown]
# ## The diffusion guide
#
# 30 Euler–Maruyama steps of a variance-preserving reference SDE started at N(0, 4²) (wide enough
# to reach every mode), a 32×32 SiLU drift network, `estimator="lv"` (detached trajectories;
# `"auto"` would pick it too because `LogVariance` detaches samples), 64 trajectories per step.

# %%
diffusion = vn.DiffusionGuide(model, num_steps=30, hidden=(32, 32), sde="vp",
                              sde_kwargs={"scale": 4.0}, estimator="lv")
res_diff, sec_diff = train(diffusion, vn.LogVariance(num_particles=PARTICLES))
dt_diff = diffusion.to_datatree(jax.random.PRNGKey(1), res_diff.params, 4000,
                                losses=res_diff.losses)
x_diff = dt_diff["posterior"]["x"].values.reshape(-1, 2)
log_z_diff = diffusion.log_z(jax.random.PRNGKey(2), res_diff.params, 4000)
print(f"trained in {sec_diff:.1f} s; IS log Z = {log_z_diff['log_z']:.3f} ± "
      f"{log_z_diff['se']:.3f} (exact 0), IS-ESS {log_z_diff['ess']:.0f} of 4000")

# %% [markdown]
# ## A normalising flow with the ELBO

# %%
flow = AutoIAFNormal(model, num_flows=2, hidden_dims=[32, 32])
res_flow, sec_flow = train(flow, Trace_ELBO(num_particles=PARTICLES))
dt_flow = vn.to_datatree(model, flow, res_flow.params, rng_key=jax.random.PRNGKey(1),
                         num_samples=4000, losses=np.asarray(res_flow.losses),
                         objective="AutoIAFNormal + Trace_ELBO")
x_flow = dt_flow["posterior"]["x"].values.reshape(-1, 2)
print(f"trained in {sec_flow:.1f} s")

# %% [markdown]
# ## Pictures of the modes

# %%
g = np.linspace(-8, 8, 200)
G = np.stack(np.meshgrid(g, g), -1)
density = np.exp(np.asarray(FourModes().log_prob(jnp.asarray(G))))
exact = np.concatenate([np.random.default_rng(0).multivariate_normal(m, VAR * np.eye(2), n)
                        for m, n in zip(MEANS, (4000 * WEIGHTS).astype(int))])
fig, axes = plt.subplots(1, 4, figsize=(16, 4))
for ax, (title, x) in zip(axes[:3], (("exact samples", exact),
                                     ("DiffusionGuide + LogVariance", x_diff),
                                     ("AutoIAFNormal + Trace_ELBO", x_flow))):
    ax.contour(g, g, density, levels=6, colors="0.7", linewidths=0.7)
    ax.scatter(x[:1500, 0], x[:1500, 1], s=2, alpha=0.4)
    ax.set_xlim(-8, 8)
    ax.set_ylim(-8, 8)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)
k = max(STEPS // 50, 1)
for losses, name in ((res_diff.losses, "log-variance (diffusion)"),
                     (res_flow.losses, "−ELBO (flow)")):
    losses = np.asarray(losses)
    axes[3].plot(np.convolve(losses, np.ones(k) / k, mode="valid"), label=name)
axes[3].set_yscale("symlog")
axes[3].set_xlabel("step")
axes[3].set_title("training loss (moving average)", fontsize=10)
axes[3].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Numbers: mode shares, evidence and k̂
#
# Each mode's share of the samples against its true weight; the IS estimate of log Z (exact: 0);
# and the Pareto k̂ of the importance weights from `diagnose`.

# %%
rows = {}
for name, dt, x in (("DiffusionGuide + LogVariance", dt_diff, x_diff),
                    ("AutoIAFNormal + Trace_ELBO", dt_flow, x_flow)):
    shares, near = mode_shares(x)
    r = diagnose(dt, log_z_reference=0.0)
    rows[name] = {**{f"mode {i} (w={w})": s for i, (w, s) in enumerate(zip(WEIGHTS, shares))},
                  "near a mode": near, "ELBO": r.elbo, "IS log Z": r.log_z, "k-hat": r.khat}
rows["exact"] = {**{f"mode {i} (w={w})": w for i, w in enumerate(WEIGHTS)}, "near a mode": 1.0,
                 "IS log Z": 0.0}
table = pd.DataFrame(rows).T
table.round(3)

# %% [markdown]
# **Reading it.** The diffusion guide puts each mode's share within a few percentage points of
# its weight and its IS estimate of log Z is within a few hundredths of 0. The flow trained with
# the ELBO covers only part of the modes.
#
# **A lesson about k̂.** The flow's k̂ stays below 0.7: PSIS k̂ measures the tail of the importance
# weights over the draws q actually makes, and a mode that q never visits produces no draws, hence
# no large weights. k̂ cannot see what q never samples. What does see it is the evidence: the
# normalised target has log Z = 0, and the IS estimate from the flow is biased low by about the
# log of the probability mass it captured (log 0.4 ≈ −0.92 if only the heaviest mode is kept,
# log 0.5 ≈ −0.69 for half the mass). On a real model,
# where log Z is unknown, compare the IS log Z of differently-built guides (here: −0.03 vs the
# flow's much lower value; the higher one with a good k̂ wins), run a mass-covering objective as a
# second opinion, or check against a few MCMC chains from dispersed starts.
#
# The price of the diffusion guide is a 30-step SDE per sample, in training and sampling.
#
# ## What we claim, checked
#
# 1. The diffusion guide finds every mode, each with its weight to within 0.06 (0.08 in the
#    shortened test run), with ≥ 85 % of its samples near a mode.
# 2. Its IS estimate of log Z is within 0.1 of the exact value 0.
# 3. The ELBO-trained flow misses at least one mode (share < 0.02); its IS log Z is biased low
#    by more than 0.3 (the missed mass), while the diffusion guide's is not.

# %%
d = table.loc["DiffusionGuide + LogVariance"]
shares = np.array([d[f"mode {i} (w={w})"] for i, w in enumerate(WEIGHTS)])
assert np.all(np.abs(shares - WEIGHTS) < (0.08 if SMOKE else 0.06)), shares
assert d["near a mode"] >= 0.85, d["near a mode"]
assert abs(log_z_diff["log_z"]) < 0.1, log_z_diff
f = table.loc["AutoIAFNormal + Trace_ELBO"]
assert min(f[f"mode {i} (w={w})"] for i, w in enumerate(WEIGHTS)) < 0.02, f
assert f["IS log Z"] < -0.3 and f["IS log Z"] < d["IS log Z"] - 0.3, f["IS log Z"]
print("all claims hold")
