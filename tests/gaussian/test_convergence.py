"""The paper's Gaussian experiment at core level: convergence and stability where BWGD fails."""

from __future__ import annotations

import numpy as np

from tests.gaussian.targets import paper_target
from vidiv.gaussian import Decay, bwgd_step, fbgvi_step, gaussian_kl, stein_hessian


def _run(target, eta, num_steps, variant="fbgvi", rng=None, schedule=None, stein=False):
    d = target.mean.shape[0]
    m, S = np.zeros(d), np.eye(d)
    P = target.precision
    min_eig = np.inf
    for k in range(num_steps):
        e = eta * (schedule(k) if schedule else 1.0)
        if rng is None:  # exact expected gradient / Hessian under q (deterministic oracle)
            g, H = target.grad(m), P
        else:
            x = m + np.linalg.cholesky(S) @ rng.standard_normal(d)
            g = target.grad(x)
            H = stein_hessian(x[None], g[None], m, S) if stein else P
        step = fbgvi_step if variant == "fbgvi" else bwgd_step
        m, S = step(m, S, g, H, e)
        ev = np.linalg.eigvalsh(S)
        min_eig = min(min_eig, ev.min())
        if not np.all(np.isfinite(S)) or ev.min() <= 0:
            return np.inf, ev.min()
    return gaussian_kl(m, S, target.mean, target.cov), min_eig


def test_deterministic_fbgvi_converges_on_paper_target():
    target = paper_target(d=10, cond=200.0, seed=0)
    kl, min_eig = _run(target, eta=1.0, num_steps=600)
    assert kl < 1e-3
    assert min_eig >= 1.0 - 1e-9


def test_stochastic_fbgvi_one_sample_decaying_step_converges():
    target = paper_target(d=10, cond=200.0, seed=0)
    kls = [
        _run(target, 1.0, 3000, rng=np.random.default_rng(s), schedule=Decay(50.0))[0]
        for s in range(3)
    ]
    assert max(kls) < 0.05, kls


def test_bwgd_fails_at_eta_1_1_while_fbgvi_stays_pd_and_converges():
    target = paper_target(d=10, cond=200.0, seed=0)
    kl_fb, min_fb = _run(target, eta=1.1, num_steps=600)
    kl_bw, min_bw = _run(target, eta=1.1, num_steps=600, variant="bwgd")
    # BWGD: loses PD (inf), or its covariance collapses towards singular (the target's smallest
    # variance is 1; measured min eigenvalue 5.6e-7) and it does not converge (measured KL 0.35)
    assert kl_bw == np.inf or (min_bw < 1e-3 and kl_bw > 0.1), (kl_bw, min_bw)
    # FBGVI: eigenvalues ≥ η throughout; with η above the smallest target variance (1) its fixed
    # point is biased by O((η−1)²) in that direction only: KL = 0.0108 here
    assert min_fb >= 1.1 * (1 - 1e-12)
    assert kl_fb < 0.02
    # both converge at η = 1.0
    assert _run(target, 1.0, 600, variant="bwgd")[0] < 1e-3
