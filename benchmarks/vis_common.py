"""Backend-free pieces of the VIS benchmark (issue 4): data, exact likelihoods, the CHIVI-style
surrogate and the budgeted training loop with validation-based model selection.

Both ``benchmarks/vis_numpyro.py`` and ``benchmarks/vis_pyro.py`` use these, so the two backends
train on the same data, are scored by the same exact likelihood and follow the same protocol.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp
from scipy.stats import norm

from vidiv._backend import namespace, stop_gradient
from vidiv.estimators import elbo, vis_guide_surrogate

METHODS = ("ELBO", "IWAE", "CHIVI", "VIS")
LATENT, HIDDEN, PIXELS = 2, 64, 64


@dataclass(frozen=True)
class VaeArch:
    """VAE layout: hidden widths (tanh) of the decoder z -> pixels and of the encoder
    pixels -> (loc, log scale), and the minibatch size. The default is this benchmark's 2-64-64
    decoder and 64-64 encoder; ``PAPER_ARCH`` is the VIS paper's (one hidden layer of 128)."""

    decoder: tuple = (HIDDEN, HIDDEN)
    encoder: tuple = (HIDDEN,)
    batch: int = 100

    @property
    def decoder_sizes(self):
        return [LATENT, *self.decoder, PIXELS]

    @property
    def encoder_sizes(self):
        return [PIXELS, *self.encoder, 2 * LATENT]


DEFAULT_ARCH = VaeArch()
PAPER_ARCH = VaeArch(decoder=(128,), encoder=(128,), batch=64)

# ---- (a) identifiable mixture ----------------------------------------------------------------


def mixture_data(seed=0):
    """1000 training and 1000 test points of z ~ 0.7 N(3, 1) + 0.3 N(-3, 1), x | z ~ N(z, 2^2)."""
    rng = np.random.default_rng(seed)

    def draw(n):
        z = np.where(rng.random(n) < 0.7, 3.0, -3.0) + rng.normal(size=n)
        return z + 2.0 * rng.normal(size=n)

    return draw(1000), draw(1000)


def mixture_ll(theta, x):
    """Exact mean log-likelihood per point: x ~ pi N(mu, 5) + (1 - pi) N(-mu, 5)."""
    pi, mu = theta
    sd = np.sqrt(5.0)
    return float(
        np.mean(
            np.logaddexp(
                np.log(pi) + norm.logpdf(x, mu, sd), np.log1p(-pi) + norm.logpdf(x, -mu, sd)
            )
        )
    )


def mixture_ml(x_train, x_test):
    """Maximum-likelihood (pi, mu) on the training points and its exact test log-likelihood."""
    bounds = [(1e-3, 1 - 1e-3), (1e-3, 10.0)]
    ml = minimize(lambda t: -mixture_ll(t, x_train), [0.5, 2.0], bounds=bounds).x
    return {"pi": float(ml[0]), "mu": float(ml[1]), "test_ll": mixture_ll(ml, x_test)}


# ---- (b) 8x8 digits ----------------------------------------------------------------------------


def digits(seed=0, n_valid=250):
    """Binarised 8x8 digits (pixel > 8): (train, validation, test) = (1250, 250, 297) images.

    The test set is the same 297 images as before the validation split was introduced; the
    validation images come out of the former 1500 training images."""
    from sklearn.datasets import load_digits

    data = (load_digits().data > 8.0).astype(np.float32)
    perm = np.random.default_rng(seed).permutation(len(data))
    n_train = 1500 - n_valid
    return data[perm[:n_train]], data[perm[n_train:1500]], data[perm[1500:]]


def grid_log_lik(logits_fn, params, x, half_width=6.0, n=241, chunk=50):
    """Mean log p(x) per image of a 2-D-latent Bernoulli decoder by quadrature: a midpoint sum of
    p(x | z) N(z; 0, I) over an n x n grid on [-half_width, half_width]^2. It does not use the
    encoder, so it scores the model alone (the VIS paper scores its mixture with a grid too)."""
    g = np.linspace(-half_width, half_width, n)
    z = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, LATENT)
    log_prior = norm.logpdf(z).sum(axis=1) + LATENT * np.log(g[1] - g[0])
    logits = np.asarray(logits_fn(params, z), dtype=np.float64)  # (G, PIXELS)
    base = log_prior - np.logaddexp(0.0, logits).sum(axis=1)  # log prior - sum softplus
    x = np.asarray(x, dtype=np.float64)
    total = 0.0
    for start in range(0, len(x), chunk):
        total += logsumexp(x[start : start + chunk] @ logits.T + base, axis=1).sum()
    return float(total / len(x))


# ---- CHIVI-style objective (the VIS reference code's "CHIVI" baseline) -------------------------


def chivi_surrogate(log_p, log_q):
    """Per-datum surrogate to *maximise*, from per-particle ``log_p``, ``log_q`` at detached z.

    Value: the ELBO. Gradient: theta by the ELBO (through ``log_p``); q by
    -(1/2 log V-hat - 1/2 ELBO), both in score form (baseline = mean log w), i.e. the guide
    minimises CUBO_2 - 1/2 ELBO as in the VIS reference code."""
    xp = namespace(log_p, log_q)
    lw = log_p - log_q
    theta = xp.mean(log_p - stop_gradient(log_q), axis=0)
    elbo_score = xp.mean(stop_gradient(lw - xp.mean(lw, axis=0)) * log_q, axis=0)
    q_obj = 0.5 * vis_guide_surrogate(log_p, log_q) - 0.5 * elbo_score
    value = elbo(stop_gradient(log_p), stop_gradient(log_q))
    return value + (theta - stop_gradient(theta)) - (q_obj - stop_gradient(q_obj))


# ---- training with a wall-clock budget and validation-based selection --------------------------


@dataclass
class Run:
    """Training settings of one method: Adam with lr0 * 0.5 ** (step / half_life), ``chunk``
    steps per call, until ``budget_s`` seconds of training or, if set, ``max_steps`` steps;
    ``eval_every`` steps between validations."""

    budget_s: float
    seed: int
    lr0: float
    half_life: float
    chunk: int = 250
    max_steps: int | None = None
    eval_every: int = 500


@dataclass
class Fit:
    steps: int = 0
    seconds: float = 0.0  # training time only (validation and compilation excluded)
    losses: list = field(default_factory=list)
    last: object = None  # parameters at the end of training
    best: object = None  # parameters at the best validation log-likelihood
    best_step: int | None = None
    best_valid_ll: float = -math.inf
    history: list = field(default_factory=list)  # (step, validation LL)


def train_budgeted(step_chunk, snapshot, run: Run, validate=None) -> Fit:
    """Call ``step_chunk()`` (``run.chunk`` optimiser steps; returns the mean loss) until the
    budget is spent. If ``validate(params)`` is given, call it on ``snapshot()`` every
    ``run.eval_every`` steps and at the end, and keep the best parameters."""
    fit = Fit()

    def done():
        return fit.steps >= run.max_steps if run.max_steps else fit.seconds >= run.budget_s

    while not done():
        start = time.perf_counter()
        fit.losses.append(float(step_chunk()))
        fit.seconds += time.perf_counter() - start
        fit.steps += run.chunk
        if validate is not None and (fit.steps % run.eval_every == 0 or done()):
            params = snapshot()
            v = float(validate(params))
            fit.history.append((fit.steps, v))
            if v > fit.best_valid_ll:
                fit.best_valid_ll, fit.best_step, fit.best = v, fit.steps, params
    fit.last = snapshot()
    return fit


# ---- the two comparisons, for a backend module ``impl`` (vis_numpyro or vis_pyro) ---------------
# impl provides: methods(k) -> {name: loss}; fit_mixture(loss, x_train, run) -> Fit;
# mixture_theta(params) -> (pi, mu); mixture_is_ll(params, x, num_samples) -> float;
# fit_vae(loss, x_train, run, validate, arch) -> Fit; vae_ll(params, x, num_samples, seed) -> float
# (IS log-likelihood per point); decoder_logits(params, z) -> (len(z), PIXELS) logits.


def bench_mixture(impl, k, budget, seed, max_steps=None, chunk=250, is_samples=5000):
    x_train, x_test = mixture_data(seed)
    rows = {"ML": mixture_ml(x_train, x_test)}
    run = Run(budget, seed, 0.03, 1500.0, chunk, max_steps)
    for name, loss in impl.methods(k).items():
        fit = impl.fit_mixture(loss, x_train, run)
        theta = impl.mixture_theta(fit.last)
        rows[name] = {
            "pi": theta[0],
            "mu": theta[1],
            "test_ll": mixture_ll(theta, x_test),
            "test_ll_is": impl.mixture_is_ll(fit.last, x_test, is_samples),
            "steps": fit.steps,
            "seconds": fit.seconds,
        }
    return rows


def bench_vae(
    impl,
    k,
    run: Run,
    valid_samples=500,
    test_samples=1000,
    arch=DEFAULT_ARCH,
    grid_n=241,
    methods=None,
):
    """Test IS log-likelihood at each method's best-validation parameters (the reported number)
    and, for reference, at its last parameters; quadrature on a ``grid_n`` x ``grid_n`` grid.
    ``methods`` ({name: loss}) defaults to ``impl.methods(k)``."""
    x_train, x_valid, x_test = digits(run.seed)
    rows = {}
    for name, loss in (methods or impl.methods(k)).items():
        fit = impl.fit_vae(
            loss, x_train, run, lambda p: impl.vae_ll(p, x_valid, valid_samples, 97), arch
        )
        rows[name] = {
            "test_ll_is": impl.vae_ll(fit.best, x_test, test_samples, 99),
            "best_valid_ll_is": fit.best_valid_ll,
            "best_step": fit.best_step,
            "test_ll_grid": grid_log_lik(impl.decoder_logits, fit.best, x_test, n=grid_n),
            "test_ll_is_last": impl.vae_ll(fit.last, x_test, test_samples, 99),
            "test_ll_grid_last": grid_log_lik(impl.decoder_logits, fit.last, x_test, n=grid_n),
            "train_ll_is_last": impl.vae_ll(fit.last, x_train[:300], test_samples, 98),
            "steps": fit.steps,
            "seconds": fit.seconds,
            "valid_history": fit.history,
        }
    return rows


def print_table(title, rows, cols):
    print(f"\n{title}")
    widths = [max(16, len(c) + 2) for c in cols]
    print(f"{'method':10s}" + "".join(f"{c:>{w}s}" for c, w in zip(cols, widths, strict=True)))
    for name, row in rows.items():
        cells = "".join(
            f"{row[c]:{w}.4f}" if isinstance(row.get(c), float) else f"{row.get(c, ''):>{w}}"
            for c, w in zip(cols, widths, strict=True)
        )
        print(f"{name:10s}{cells}")
