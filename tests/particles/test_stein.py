"""Stein directions against independent transcriptions (loops / einsum of the paper's formulas)."""

from __future__ import annotations

import numpy as np
import pytest

from vidiv.errors import InvalidArgumentError
from vidiv.particles import (
    Identity,
    Layout,
    PositiveEntropic,
    SimplexEntropic,
    UnitIntervalEntropic,
    check_options,
    msvgd_direction,
    svgd_direction,
    svmd_direction,
)


def _k(x, y, h, kind):
    r2 = np.sum((x - y) ** 2)
    return np.exp(-r2 / h) if kind == "rbf" else (1 + r2 / h) ** -0.5


def _dk(x, y, h, kind):  # ∇_x k(x, y)
    r2 = np.sum((x - y) ** 2)
    if kind == "rbf":
        return -2 * (x - y) / h * np.exp(-r2 / h)
    return -(x - y) / h * (1 + r2 / h) ** -1.5


def _median(x):
    sq = np.array([[np.sum((a - b) ** 2) for b in x] for a in x]).ravel()
    return np.sort(sq)[sq.size - sq.size // 2]


def _svgd_loops(x, s, kind, h=None):
    h = _median(x) if h is None else h
    p = len(x)
    return np.array([
        sum(_k(x[j], x[i], h, kind) * s[j] + _dk(x[j], x[i], h, kind) for j in range(p)) / p
        for i in range(p)
    ])


@pytest.mark.parametrize("kind", ["imq", "rbf"])
def test_identity_map_msvgd_is_plain_svgd(rng, kind):
    x = rng.normal(size=(9, 3))
    score = -x @ np.array([[2.0, 0.3, 0], [0.3, 1.0, 0], [0, 0, 0.5]])
    lay = Layout([("z", Identity(), (3,))])
    phi = msvgd_direction(lay, {"z": x}, {"z": score}, kernel=kind)
    np.testing.assert_allclose(phi, _svgd_loops(x, score, kind), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(svgd_direction(x, score, kind), phi, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("kind", ["imq", "rbf"])
def test_dual_kernel_space_is_svgd_on_the_dual_target(rng, kind):
    """kernel_space="dual" (the paper code's "k2"): loops of plain SVGD on (η, ∇_η log p_H); the
    primal direction differs once a non-identity map is present; identity maps agree."""
    lay = Layout([("w", SimplexEntropic(), (3,)), ("s", PositiveEntropic(), (2,)),
                  ("z", Identity(), ())])
    eta = rng.normal(size=(8, 5))
    vals = lay.to_values(eta)
    grads = {"w": rng.normal(size=(8, 3)), "s": -vals["s"] + 0.5, "z": -vals["z"]}
    phi = msvgd_direction(lay, vals, grads, kernel=kind, kernel_space="dual")
    expect = _svgd_loops(eta, lay.dual_score(vals, grads), kind)
    np.testing.assert_allclose(phi, expect, rtol=1e-12, atol=1e-14)
    primal = msvgd_direction(lay, vals, grads, kernel=kind)
    assert np.max(np.abs(primal - phi)) > 1e-2
    lay1 = Layout([("z", Identity(), (3,))])
    x = rng.normal(size=(6, 3))
    for mode in ("joint", "coordinatewise"):
        np.testing.assert_allclose(
            msvgd_direction(lay1, {"z": x}, {"z": -x}, kind, mode, kernel_space="dual"),
            msvgd_direction(lay1, {"z": x}, {"z": -x}, kind, mode), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("kind", ["imq", "rbf"])
def test_auto_kernel_space_is_eta_on_elementwise_sites_and_theta_on_simplexes(rng, kind):
    """kernel_space="auto" (the drivers' default) on a simplex + positive + real layout: the
    kernel coordinates are c(η) = (θ_w, η_s, η_z), and the direction is
    1/P Σ_j [k(c_j, c_i) s_j + ∇_{η_j} k(c(η_j), c_i)], the gradient taken here by central
    differences through c; without a simplex "auto" is "dual", with only a simplex "primal"."""
    lay = Layout([("w", SimplexEntropic(), (3,)), ("s", PositiveEntropic(), (2,)),
                  ("z", Identity(), ())])
    eta = rng.normal(size=(7, 5))
    vals = lay.to_values(eta)
    grads = {"w": rng.normal(size=(7, 3)), "s": -vals["s"] + 0.5, "z": -vals["z"]}
    h = 1.7

    def coords(e):
        return np.concatenate([lay.to_values(e[None])["w"][0, :2], e[2:]])

    c = np.stack([coords(e) for e in eta])
    score = lay.dual_score(vals, grads)
    expect = np.zeros_like(eta)
    for i in range(7):
        for j in range(7):
            grad = np.zeros(5)
            for b in range(5):
                d = np.zeros(5)
                d[b] = 1e-6
                grad[b] = (_k(coords(eta[j] + d), c[i], h, kind)
                           - _k(coords(eta[j] - d), c[i], h, kind)) / 2e-6
            expect[i] += _k(c[j], c[i], h, kind) * score[j] + grad
    expect /= 7
    phi = msvgd_direction(lay, vals, grads, kernel=kind, bandwidth=h, kernel_space="auto")
    np.testing.assert_allclose(phi, expect, rtol=1e-7, atol=1e-9)
    for space in ("primal", "dual"):  # neither of the uniform choices
        other = msvgd_direction(lay, vals, grads, kernel=kind, bandwidth=h, kernel_space=space)
        assert np.max(np.abs(other - phi)) > 1e-3, space

    # coordinatewise kernels are separable: each block is that of its own kernel space
    auto = msvgd_direction(lay, vals, grads, kind, "coordinatewise", kernel_space="auto")
    primal = msvgd_direction(lay, vals, grads, kind, "coordinatewise", kernel_space="primal")
    dual = msvgd_direction(lay, vals, grads, kind, "coordinatewise", kernel_space="dual")
    np.testing.assert_allclose(auto[:, :2], primal[:, :2], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(auto[:, 2:], dual[:, 2:], rtol=1e-13, atol=1e-15)

    pos = Layout([("s", PositiveEntropic(), (2,)), ("u", UnitIntervalEntropic(), ())])
    vp = pos.to_values(rng.normal(size=(6, 3)))
    gp = {"s": -vp["s"], "u": 1 - 2 * vp["u"]}
    simplex = Layout([("w", SimplexEntropic(), (4,))])
    vs = simplex.to_values(rng.normal(size=(6, 3)))
    gs = {"w": rng.normal(size=(6, 4))}
    for mode in ("joint", "coordinatewise"):
        np.testing.assert_array_equal(msvgd_direction(pos, vp, gp, kind, mode, kernel_space="auto"),
                                      msvgd_direction(pos, vp, gp, kind, mode, kernel_space="dual"))
        np.testing.assert_array_equal(
            msvgd_direction(simplex, vs, gs, kind, mode, kernel_space="auto"),
            msvgd_direction(simplex, vs, gs, kind, mode, kernel_space="primal"))


def _dense_hinv(m, value, n):
    return np.stack([m.hess_inv(value, np.eye(n)[b]) for b in range(n)], axis=1)


def test_block_msvgd_matches_dense_formula(rng):
    """Simplex (4) + positive (2) + unit interval (1) + real (2): block-diagonal ∇²ψ⁻¹."""
    maps = [("w", SimplexEntropic(), (4,)), ("s", PositiveEntropic(), (2,)),
            ("u", UnitIntervalEntropic(), ()), ("r", Identity(), (2,))]
    lay = Layout(maps)
    p = 8
    eta = rng.normal(size=(p, lay.size))
    vals = lay.to_values(eta)
    grads = {n: rng.normal(size=v.shape) for n, v in vals.items()}
    phi = msvgd_direction(lay, vals, grads, kernel="imq")

    theta = np.concatenate([vals["w"][:, :3], vals["s"], vals["u"][:, None], vals["r"]], 1)
    blocks = []
    for j in range(p):
        hw = _dense_hinv(SimplexEntropic(), vals["w"][j], 3)
        hs = np.diag(vals["s"][j])
        hu = np.array([[vals["u"][j] * (1 - vals["u"][j])]])
        h = np.zeros((8, 8))
        h[:3, :3], h[3:5, 3:5], h[5:6, 5:6], h[6:, 6:] = hw, hs, hu, np.eye(2)
        blocks.append(h)
    # dual score: H⁻¹ ∇θ log p + ∇ log det, ∇θ for the simplex = g_{:3} − g_3
    gtheta = np.concatenate([grads["w"][:, :3] - grads["w"][:, 3:], grads["s"],
                             grads["u"][:, None], grads["r"]], 1)
    logdet = np.concatenate([1 - 4 * vals["w"][:, :3], np.ones((p, 2)),
                             (1 - 2 * vals["u"])[:, None], np.zeros((p, 2))], 1)
    score = np.stack([blocks[j] @ gtheta[j] for j in range(p)]) + logdet
    h = _median(theta)
    expect = np.array([
        sum(_k(theta[j], theta[i], h, "imq") * score[j]
            + blocks[j] @ _dk(theta[j], theta[i], h, "imq") for j in range(p)) / p
        for i in range(p)
    ])
    np.testing.assert_allclose(phi, expect, rtol=1e-11, atol=1e-13)


def test_coordinatewise_msvgd_matches_loops(rng):
    lay = Layout([("w", SimplexEntropic(), (4,))])
    vals = lay.to_values(rng.normal(size=(7, 3)))
    alpha = np.array([0.5, 2.0, 3.0, 1.5])
    grads = {"w": (alpha - 1) / vals["w"]}
    phi = msvgd_direction(lay, vals, grads, kernel="rbf", mode="coordinatewise")
    theta = vals["w"][:, :3]
    score = alpha[:3] - alpha.sum() * theta
    expect = np.zeros_like(theta)
    for a in range(3):
        h = _median(theta[:, a : a + 1])
        for i in range(7):
            for j in range(7):
                xa, ya = theta[j, a : a + 1], theta[i, a : a + 1]
                expect[i, a] += (_k(xa, ya, h, "rbf") * score[j, a]
                                 + theta[j, a] * (1 - theta[j, a]) * _dk(xa, ya, h, "rbf")[0])
    np.testing.assert_allclose(phi, expect / 7, rtol=1e-12, atol=1e-14)


def _svmd_reference(lay, vals, grads, threshold, jitter=1e-5):
    """Einsum transcription of the paper's code (Nyström eigenfunctions, i_reduced, μ, v);
    sites ``w`` (simplex) and ``s`` (positive scalar)."""
    from vidiv.particles import kernel_matrix

    theta = lay.primal(vals)
    kk = theta.shape[0]
    gram, grad_gram, _ = kernel_matrix(theta, "imq")
    lam, vec = np.linalg.eigh(gram + jitter * np.eye(kk))
    frac = lam[::-1] / lam.sum()
    n_eig = int(np.sum(np.cumsum(frac) < threshold)) + 1
    lam, vec = lam[-n_eig:], vec[:, -n_eig:]
    mu, v = lam / kk, vec * np.sqrt(kk)
    grad_u = np.sqrt(kk) * np.einsum("nml,mj->njl", grad_gram, vec) / lam[None, :, None]
    n = theta.shape[1]
    hess = np.stack([np.stack([lay.hess(
        {k: a[j : j + 1] for k, a in vals.items()}, np.eye(n)[b][None])[0] for b in range(n)], 1)
        for j in range(kk)])
    hinv = np.stack([np.linalg.inv(h) for h in hess])
    gtheta = np.concatenate([grads["w"][:, :-1] - grads["w"][:, -1:], grads["s"][:, None]], 1)
    hinv_grad = np.einsum("lab,lb->la", hinv, gtheta)  # ∇²ψ⁻¹ ∇θ log p
    div = lay.grad_logdet(vals)
    ms = np.sqrt(mu)
    ired = np.einsum("i,ki,mi->km", ms, v, v)
    drift = np.einsum("km,j,lj,mj,mab,lb->ka", ired, ms, v, v, hess, hinv_grad) / kk**2
    rep1 = np.einsum("km,j,ljd,mj,mab,lbd->ka", ired, ms, grad_u, v, hess, hinv) / kk**2
    rep2 = np.einsum("km,j,lj,mj,mab,lb->ka", ired, ms, v, v, hess, div) / kk**2
    return drift + rep1 + rep2


@pytest.mark.parametrize("threshold", [0.9, 0.98, 1.0])
def test_svmd_matches_einsum_transcription(rng, threshold):
    lay = Layout([("w", SimplexEntropic(), (4,)), ("s", PositiveEntropic(), ())])
    vals = lay.to_values(rng.normal(size=(10, lay.size)))
    alpha = np.array([3.0, 2.0, 0.5, 4.0])
    grads = {"w": (alpha - 1) / vals["w"], "s": 1.0 / vals["s"] - 1.0}
    phi = svmd_direction(lay, vals, grads, threshold=threshold)
    expect = _svmd_reference(lay, vals, grads, threshold)
    np.testing.assert_allclose(phi, expect, rtol=1e-8, atol=1e-10)


def test_svmd_with_identity_map_and_full_spectrum_is_svgd_with_jittered_gram(rng):
    x = rng.normal(size=(8, 2))
    score = -x
    lay = Layout([("z", Identity(), (2,))])
    phi = svmd_direction(lay, {"z": x}, {"z": score}, threshold=1.0, jitter=1e-3)
    svgd = svgd_direction(x, score) + 1e-3 * score / 8
    np.testing.assert_allclose(phi, svgd, rtol=1e-10, atol=1e-12)


def test_backends_agree(rng):
    import jax
    import jax.numpy as jnp
    import torch

    lay = Layout([("w", SimplexEntropic(), (5,)), ("s", PositiveEntropic(), (2,))])
    eta = rng.normal(size=(12, lay.size))

    def directions(e):
        vals = lay.to_values(e)
        grads = {"w": 0.5 / vals["w"], "s": 1.0 / vals["s"] - vals["s"]}
        return (msvgd_direction(lay, vals, grads),
                msvgd_direction(lay, vals, grads, mode="coordinatewise"),
                svmd_direction(lay, vals, grads))

    out = {"numpy": directions(eta), "torch": directions(torch.as_tensor(eta)),
           "jax": jax.jit(directions)(jnp.asarray(eta))}  # also: traceable under jit
    for name in ("torch", "jax"):
        for a, b in zip(out[name], out["numpy"], strict=True):
            a = a.numpy() if name == "torch" else np.asarray(a)
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"variant": "svn"}, "variant must be one of"), ({"kernel": "gauss"}, "kernel must be"),
     ({"mode": "diag"}, "mode must be one of"), ({"threshold": 0.0}, "threshold must be"),
     ({"variant": "svmd", "mode": "coordinatewise"}, "use mode='joint'"),
     ({"kernel_space": "theta"}, "kernel_space must be one of"),
     ({"variant": "svmd", "kernel_space": "dual"}, "use kernel_space='primal'")],
)
def test_bad_options(kwargs, match):
    opts = {"variant": "msvgd", "kernel": "imq", "mode": "joint", "threshold": 0.98} | kwargs
    with pytest.raises(InvalidArgumentError, match=match):
        check_options(**opts)


@pytest.mark.parametrize("variant", ["msvgd", "svmd"])
def test_direction_vanishes_at_the_target(variant):
    """Stein identity: with 400 exact Dirichlet(α) draws the direction is small (Monte Carlo
    error only); with draws of Dirichlet(reversed α) it is not (measured ratios 15.5, 18.5)."""
    from vidiv.particles import mirrored_direction

    alpha = np.array([10.0, 12.0, 8.0, 15.0])
    lay = Layout([("w", SimplexEntropic(), (4,))])
    rng = np.random.default_rng(0)

    def rms(w):
        phi = mirrored_direction(lay, {"w": w}, {"w": (alpha - 1) / w}, variant=variant)
        return np.sqrt(np.mean(phi**2))

    exact, wrong = rms(rng.dirichlet(alpha, 400)), rms(rng.dirichlet(alpha[::-1], 400))
    assert wrong > 8.0 * exact, (exact, wrong)
