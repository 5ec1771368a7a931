"""vidiv.gaussian.laplace: the backend-free Laplace core (optimiser, start fallback, Hessian
inversion and its warnings, PSIS k-hat) and LaplaceResult's layout helpers."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest

from vidiv.errors import InvalidArgumentError, NonFiniteError, VidivError
from vidiv.gaussian.laplace import LaplaceResult, cov_from_hessian, fit

H = np.array([[2.0, 0.5], [0.5, 1.0]])
B = np.array([1.0, -2.0])  # V(u) = u'Hu/2 - b'u: mode H^-1 b, cov H^-1


def _quadratic(H=H, b=B):
    def fg(u):
        return float(0.5 * u @ H @ u - b @ u), H @ u - b

    def batch(U):
        return 0.5 * np.einsum("si,ij,sj->s", U, H, U) - U @ b

    return fg, (lambda u: H), batch


def _fit(starts, **kw):
    fg, hess, batch = _quadratic(**{k: kw.pop(k) for k in ("H", "b") if k in kw})
    return fit(fg, hess, batch, starts, who="laplace", low_precision=kw.pop("low", False),
               seed=3, **kw)  # fmt: skip


def test_quadratic_exact_and_khat_of_the_target_itself():
    core = _fit([("zeros", lambda: np.zeros(2))])
    np.testing.assert_allclose(core.mean, np.linalg.solve(H, B), atol=1e-8)
    np.testing.assert_allclose(core.cov, np.linalg.inv(H), atol=1e-12)
    np.testing.assert_allclose(core.scale_tril @ core.scale_tril.T, core.cov, atol=1e-12)
    assert core.success and core.init_strategy == "zeros"
    assert core.khat == -math.inf  # log weights constant: q is the target
    assert math.isnan(_fit([("zeros", lambda: np.zeros(2))], num_draws=0).khat)


def test_khat_of_a_poor_proposal_is_large():
    # the target is Student-t-like in its tails: V = 3 log(1 + u^2/3), Laplace q far too narrow
    def fg(u):
        return float(3 * np.log1p(u @ u / 3)), 2 * u / (1 + u @ u / 3)

    core = fit(fg, lambda u: 2 * np.eye(1), lambda U: 3 * np.log1p((U**2).sum(1) / 3),
               [("zero", lambda: np.array([0.5]))], who="laplace", low_precision=False,
               seed=0)  # fmt: skip
    assert core.khat > 0.7


def test_starts_fall_back_in_order():
    def broken():
        raise ImportError("Please install `tensorflow_probability>=0.18` for betaincinv.")

    starts = [("init_to_median", broken), ("init_to_uniform", lambda: np.array([np.nan, 0.0])),
              ("init_to_sample", lambda: np.ones(2))]  # fmt: skip
    core = _fit(starts)
    assert core.init_strategy == "init_to_sample"
    np.testing.assert_allclose(core.init_mean, [1.0, 1.0])
    with pytest.raises(NonFiniteError, match="betaincinv") as info:
        _fit(starts[:2])
    assert "init_to_uniform: V = nan" in str(info.value)
    with pytest.raises(NonFiniteError, match="custom"):
        _fit(starts[:1], on_no_start=lambda tried: NonFiniteError(f"custom {len(tried)}"))


def test_cov_from_hessian_floors_eigenvalues():
    Hn = np.diag([4.0, -1.0])
    cov, w = cov_from_hessian(Hn)
    np.testing.assert_allclose(w, [-1.0, 4.0])
    np.testing.assert_allclose(cov, np.diag([0.25, 1 / (4e-12)]))
    np.testing.assert_allclose(cov_from_hessian(H)[0], np.linalg.inv(H), atol=1e-12)


def test_hessian_warnings_name_float64():
    saddle = np.diag([1.0, -1.0])
    with pytest.warns(RuntimeWarning, match="not positive definite") as rec:
        fg, _, batch = _quadratic(np.eye(2))
        fit(fg, lambda u: saddle, batch, [("z", lambda: np.zeros(2))], who="laplace",
            low_precision=False, num_draws=0)  # fmt: skip
    assert "jax_enable_x64" not in str(rec[-1].message)
    for backend, hint in [("numpyro", "jax_enable_x64"), ("pyro", "torch.float64")]:
        with pytest.warns(RuntimeWarning, match=hint):
            fit(fg, lambda u: saddle, batch, [("z", lambda: np.zeros(2))], who="laplace",
                low_precision=True, backend=backend, num_draws=0)  # fmt: skip
        with pytest.warns(RuntimeWarning, match="badly conditioned for float32"):
            fit(fg, lambda u: np.diag([1.0, 1e-8]), batch, [("z", lambda: np.zeros(2))],
                who="laplace", low_precision=True, backend=backend, num_draws=0)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float64 and a well-conditioned Hessian: silent
        fit(fg, lambda u: np.diag([1.0, 1e-8]), batch, [("z", lambda: np.zeros(2))],
            who="laplace", low_precision=False, num_draws=0)  # fmt: skip
    with pytest.raises(NonFiniteError, match="Hessian of V at the mode has NaN"):
        fit(fg, lambda u: np.full((2, 2), np.nan), batch, [("z", lambda: np.zeros(2))],
            who="laplace", low_precision=False, num_draws=0)  # fmt: skip


def test_result_layout_helpers():
    mean = np.arange(4.0)
    cov = np.diag([1.0, 2.0, 3.0, 4.0])
    lap = LaplaceResult(mean, cov, np.sqrt(cov), {"a": (), "b": (3,)}, {}, True, 0.1)
    assert lap.site_slices() == {"a": slice(0, 1), "b": slice(1, 4)}
    parts = lap.unflatten(mean)
    assert parts["a"].shape == () and parts["b"].tolist() == [1.0, 2.0, 3.0]
    m, c = lap.reordered(["b", "a"])
    np.testing.assert_allclose(m, [1.0, 2.0, 3.0, 0.0])
    np.testing.assert_allclose(np.diag(c), [2.0, 3.0, 4.0, 1.0])
    assert lap.sd_min() == 1.0
    with pytest.raises(VidivError, match="not the Laplace approximation's sites"):
        lap.reordered(["a", "c"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        lap.success = False


@pytest.mark.parametrize("num_draws", [-1, 5, 2.5, True])
def test_num_draws_checked(num_draws):
    with pytest.raises(InvalidArgumentError, match="num_draws"):
        _fit([("zeros", lambda: np.zeros(2))], num_draws=num_draws)
