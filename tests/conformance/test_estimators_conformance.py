"""The same log weights give the same values and gradients in numpy, torch and jax (float64),
including under jax.jit and jax.vmap, and the core imports no framework on its own."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from vidiv import estimators as E

TOL = 1e-10  # the issue asks for 1e-5; float64 gives far better


def _alpha_fn(alpha):
    return lambda p, q: E.renyi_bound(p, q, alpha)


FUNCS = {
    "elbo": E.elbo,
    "log_marginal": E.log_marginal,
    "renyi_0.5": _alpha_fn(0.5),
    "renyi_1": _alpha_fn(1.0),
    "renyi_1+1e-4": _alpha_fn(1.0 + 1e-4),
    "renyi_-2": _alpha_fn(-2.0),
    "cubo": E.cubo,
    "vis_guide": E.vis_guide_surrogate,
    "vis_model": E.vis_model_surrogate,
    "log_variance": E.log_variance,
    "dreg_0": lambda p, q: E.renyi_dreg_surrogate(p, q, 0.0),
    "score_0.5": lambda p, q: E.renyi_bound(p, q, 0.5) + E.score_surrogate(p - q, q, 0.5),
    "ess": lambda p, q: E.weights.is_ess(p - q),
    "log_z": lambda p, q: E.weights.log_z(p - q).log_z,
    "log_z_se": lambda p, q: E.weights.log_z(p - q).se,
}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    lp = rng.normal(-10, 3, size=(32, 3))
    lq = rng.normal(-8, 1, size=(32, 3))
    return lp, lq


def _torch_value_grad(fn, lp, lq):
    tp = torch.tensor(lp, requires_grad=True)
    tq = torch.tensor(lq, requires_grad=True)
    out = fn(tp, tq)
    gp, gq = torch.autograd.grad(out.sum(), (tp, tq), allow_unused=True)
    zero = np.zeros_like(lp)
    return (
        out.detach().numpy(),
        zero if gp is None else gp.numpy(),
        zero if gq is None else gq.numpy(),
    )


def _jax_value_grad(fn, lp, lq, jit=False):
    f = jax.jit(fn) if jit else fn
    value = f(jnp.asarray(lp), jnp.asarray(lq))
    gp, gq = jax.grad(lambda p, q: fn(p, q).sum(), argnums=(0, 1))(jnp.asarray(lp), jnp.asarray(lq))
    return np.asarray(value), np.asarray(gp), np.asarray(gq)


@pytest.mark.parametrize("name", sorted(FUNCS))
def test_values_and_gradients_agree(data, name):
    fn = FUNCS[name]
    lp, lq = data
    ref = np.asarray(fn(lp, lq))
    tv, tgp, tgq = _torch_value_grad(fn, lp, lq)
    jv, jgp, jgq = _jax_value_grad(fn, lp, lq)
    jjv, _, _ = _jax_value_grad(fn, lp, lq, jit=True)
    for v in (tv, jv, jjv):
        np.testing.assert_allclose(v, ref, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(tgp, jgp, rtol=1e-9, atol=TOL)
    np.testing.assert_allclose(tgq, jgq, rtol=1e-9, atol=TOL)


@pytest.mark.parametrize("name", ["renyi_0.5", "vis_guide", "log_variance", "log_z"])
def test_vmap_equals_batch_axis(data, name):
    fn = FUNCS[name]
    lp, lq = data
    batched = np.asarray(fn(jnp.asarray(lp), jnp.asarray(lq)))
    mapped = jax.vmap(fn, in_axes=(1, 1))(jnp.asarray(lp), jnp.asarray(lq))
    np.testing.assert_allclose(np.asarray(mapped), batched, rtol=1e-12)


def test_extreme_weights_finite_gradients_in_both_frameworks():
    lp = np.array([1e4, -1e4, -np.inf, 0.0])
    lq = np.zeros(4)
    for fn in (E.log_marginal, _alpha_fn(0.5), E.vis_guide_surrogate):
        tv, tgp, _ = _torch_value_grad(fn, lp, lq)
        jv, jgp, _ = _jax_value_grad(fn, lp, lq)
        assert np.isfinite(tv) and np.isfinite(jv)
        np.testing.assert_allclose(tgp, jgp, atol=1e-12)
        np.testing.assert_allclose(tgp[0], 1.0 if fn is not E.vis_guide_surrogate else 0.0)


def test_float32_inputs_stay_float32(data):
    lp, lq = (a.astype(np.float32) for a in data)
    out_t = E.renyi_bound(torch.tensor(lp), torch.tensor(lq), 1.0 - 1e-4)
    out_j = E.renyi_bound(jnp.asarray(lp), jnp.asarray(lq), 1.0 - 1e-4)
    assert out_t.dtype == torch.float32 and out_j.dtype == jnp.float32
    ref = E.renyi_bound(lp.astype(np.float64), lq.astype(np.float64), 1.0 - 1e-4)
    np.testing.assert_allclose(np.asarray(out_j), ref, rtol=1e-5)
    np.testing.assert_allclose(out_t.numpy(), ref, rtol=1e-5)


def test_import_vidiv_loads_no_framework():
    code = (
        "import sys, vidiv, vidiv.estimators, vidiv.errors; "
        "bad = [m for m in ('torch', 'jax', 'pyro', 'numpyro') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
