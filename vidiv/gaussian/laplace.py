r"""Laplace approximation in the unconstrained space: backend-free core.

With ``V(u) = -log p(x, T(u)) - log|det J_T(u)|`` the model's potential on the flat unconstrained
vector ``u`` (``T`` maps it to the latent sites' supports), the Laplace approximation is

.. math::

    u^* = \operatorname{argmin}_u V(u), \qquad
    \Sigma = \bigl(\nabla^2 V(u^*)\bigr)^{-1}, \qquad q = \mathcal N(u^*, \Sigma).

The minimum is found by L-BFGS-B (``scipy.optimize.minimize``, gradients from jax/torch on the
host: robust on badly scaled posteriors where a line search in float32 fails); the Hessian is
taken by autodiff at ``u*`` and inverted through its eigendecomposition with eigenvalues floored
at ``1e-12`` of the largest (a warning names a Hessian that needed the floor). PSIS k-hat of ``q``
as an importance proposal for the posterior says whether the Gaussian is a usable start
(``khat < 0.7``).

The adapters ``vidiv.numpyro.laplace`` and ``vidiv.pyro.laplace`` supply the potential, its
Hessian and the starting points (the hosts' ``init_to_median``, then ``init_to_uniform``, then
``init_to_sample``) and return a :class:`LaplaceResult`.

Example::

    >>> import numpy as np
    >>> H = np.array([[2.0, 0.5], [0.5, 1.0]])
    >>> fg = lambda u: (0.5 * u @ H @ u, H @ u)          # V(u) = u'Hu/2: mode 0, cov H^-1
    >>> core = fit(fg, lambda u: H, lambda U: 0.5 * np.einsum("si,ij,sj->s", U, H, U),
    ...            [("zeros", lambda: np.ones(2))], who="laplace", low_precision=False, seed=0)
    >>> np.allclose(core.mean, 0.0, atol=1e-8), np.allclose(core.cov, np.linalg.inv(H))
    (True, True)
    >>> core.khat < 0.7                                    # q is the target itself
    True
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from vidiv.errors import InvalidArgumentError, NonFiniteError, VidivError, check_num_particles

__all__ = ["LaplaceResult", "cov_from_hessian", "fit", "unsupported_guide_error", "X64_HINT"]

EIGEN_FLOOR = 1e-12
X64_HINT = {
    "numpyro": 'enable float64 with jax.config.update("jax_enable_x64", True) before building '
    "the model's arrays",
    "pyro": "run the model in float64 (torch.set_default_dtype(torch.float64), float64 data)",
}


def cov_from_hessian(H: np.ndarray, floor: float = EIGEN_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """``(Σ, eigenvalues)``: ``Σ = H⁻¹`` of the symmetrised ``H`` with its eigenvalues floored at
    ``floor`` times the largest (so a flat or concave direction gets a large finite variance
    instead of a negative or infinite one). The eigenvalues returned are ``H``'s, unfloored."""
    H = 0.5 * (H + H.T)
    w, vecs = np.linalg.eigh(H)
    wf = np.maximum(w, floor * max(float(w.max()), 1e-300))
    return (vecs / wf) @ vecs.T, w


def unsupported_guide_error(guide: Any) -> VidivError:
    """The refusal of a guide that ``LaplaceResult.init_params`` cannot parameterise."""
    return InvalidArgumentError(
        f"init_params supports AutoMultivariateNormal and AutoNormal, not "
        f"{type(guide).__name__}; for another guide use lap.mean / lap.cov (unconstrained, "
        "sites in lap.site_shapes order) or init_loc_fn=init_to_value(values=lap.constrained)."
    )


class CoreFit(NamedTuple):
    mean: np.ndarray
    cov: np.ndarray
    scale_tril: np.ndarray
    success: bool
    khat: float
    potential: float
    init_strategy: str
    init_mean: np.ndarray


def _minimize(fg: Callable, x0: np.ndarray) -> tuple[np.ndarray, bool, float, np.ndarray]:
    import scipy.optimize

    res = scipy.optimize.minimize(
        fg, x0, jac=True, method="L-BFGS-B",
        options={"maxiter": 20000, "maxfun": 40000, "ftol": 1e-15, "gtol": 1e-9},
    )  # fmt: skip
    return np.asarray(res.x, np.float64), bool(res.success), float(res.fun), np.asarray(res.jac)


def _finite_start(fg: Callable, starts: Iterable[tuple[str, Callable[[], Any]]], who: str):
    """The first start (name, u0) where V and its gradient are finite; ``None`` if none."""
    tried = []
    for name, make in starts:
        try:
            u0 = np.asarray(make(), np.float64).reshape(-1)
            v, g = fg(u0)
        except VidivError:
            raise
        except Exception as err:  # noqa: BLE001 - a host strategy that cannot run on this prior
            tried.append(f"{name}: {type(err).__name__}: {str(err)[:120]}")
            continue
        if np.isfinite(v) and np.all(np.isfinite(g)):
            return name, u0, tried
        tried.append(f"{name}: V = {v} at the start")
    return None, None, tried


def khat_of(mean: np.ndarray, scale_tril: np.ndarray, batch_potential: Callable,
            num_draws: int, seed: int) -> float:
    """PSIS k-hat of ``N(mean, L Lᵀ)`` as an importance proposal for ``exp(-V)``."""
    from vidiv.diagnostics.psis import psis_khat

    eps = np.random.default_rng(seed).standard_normal((num_draws, mean.shape[0]))
    U = mean + eps @ scale_tril.T
    log_q = -0.5 * np.sum(eps**2, axis=1) - np.sum(np.log(np.diag(scale_tril)))
    with np.errstate(invalid="ignore", over="ignore"):
        log_w = -np.asarray(batch_potential(U), np.float64).reshape(-1) - log_q
    log_w = np.where(np.isfinite(log_w), log_w, -np.inf)  # NaN / +inf: no usable weight there
    try:
        return float(psis_khat(log_w))
    except VidivError:  # every draw outside the support, ...: not a usable proposal
        return math.inf


def fit(
    value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]],
    hessian: Callable[[np.ndarray], Any],
    batch_potential: Callable[[np.ndarray], Any],
    starts: Iterable[tuple[str, Callable[[], Any]]],
    *,
    who: str,
    low_precision: bool,
    backend: str = "numpyro",
    num_draws: int = 1000,
    seed: int = 0,
    on_no_start: Callable[[list[str]], Exception] | None = None,
) -> CoreFit:
    """Minimise ``V`` from the first finite start, invert its Hessian there, score ``q``.

    Parameters
    ----------
    value_and_grad
        ``u -> (V(u), ∇V(u))`` on float64 numpy vectors (``(float, (d,))``).
    hessian
        ``u -> ∇²V(u)`` ``(d, d)`` by autodiff.
    batch_potential
        ``U (S, d) -> V (S,)``, for the k-hat draws.
    starts
        ``(name, make)`` pairs tried in order; ``make()`` gives ``u₀`` or raises (a host
        strategy that needs an ``icdf`` the prior lacks, a prior that cannot be sampled).
    who
        Name used in messages.
    low_precision
        The model runs in float32: a Hessian that is not positive definite or is badly
        conditioned then asks for float64 (``X64_HINT[backend]``).
    num_draws, seed
        Draws from ``q`` for PSIS k-hat (``num_draws=0``: ``khat = nan``).
    on_no_start
        Builds the error raised when no start has a finite ``V`` (given the tried starts).

    Returns
    -------
    CoreFit
        ``mean`` ``u*``, ``cov`` ``Σ``, ``scale_tril`` ``chol Σ``, ``success``, ``khat``,
        ``potential`` ``V(u*)``, the start's strategy name and ``u₀``.
    """
    num_draws = check_num_particles(num_draws, minimum=0, name="num_draws")
    if 0 < num_draws < 10:
        raise InvalidArgumentError(
            f"num_draws must be 0 (no k-hat) or at least 10 (PSIS needs them), got {num_draws}."
        )
    name, u0, tried = _finite_start(value_and_grad, starts, who)
    if u0 is None:
        if on_no_start is not None:
            raise on_no_start(tried)
        raise NonFiniteError(f"{who}: no start with a finite potential ({'; '.join(tried)}).")
    x, ok, v, g = _minimize(value_and_grad, u0)
    if not (np.isfinite(v) and np.all(np.isfinite(x))):
        raise NonFiniteError(
            f"{who}: the optimiser ended at a non-finite potential V = {v} (started by {name}); "
            "the posterior may be improper (unbounded density): check the priors."
        )
    # L-BFGS-B reports a line-search failure at the limit of floating-point precision too
    ok = ok or float(np.max(np.abs(g), initial=0.0)) <= 1e-6 * max(1.0, abs(v))
    hint = X64_HINT[backend]
    if not ok:
        warnings.warn(
            f"{who}: L-BFGS-B did not converge (largest |gradient| {np.max(np.abs(g)):.3g} at "
            f"V = {v:.6g}); the result's success is False"
            + (f": {hint}." if low_precision else "."),
            RuntimeWarning, stacklevel=3,
        )  # fmt: skip
    H = np.asarray(hessian(x), np.float64)
    if not np.all(np.isfinite(H)):
        raise NonFiniteError(
            f"{who}: the Hessian of V at the mode has NaN/inf entries"
            + (f"; {hint}." if low_precision else "; check the model's log density there.")
        )
    cov, w = cov_from_hessian(H)
    w_max = float(w.max())
    if w_max <= 0 or float(w.min()) <= EIGEN_FLOOR * w_max:
        warnings.warn(
            f"{who}: the Hessian at the mode is not positive definite (eigenvalues "
            f"{float(w.min()):.3g} .. {w_max:.3g}); eigenvalues below {EIGEN_FLOOR:g} of the "
            "largest were floored, so those directions get a large variance"
            + (f": {hint}." if low_precision else " (a flat or unbounded posterior direction)."),
            RuntimeWarning, stacklevel=3,
        )  # fmt: skip
    elif low_precision and float(w.min()) <= 1e-6 * w_max:
        warnings.warn(
            f"{who}: the Hessian at the mode is badly conditioned for float32 (condition "
            f"number {w_max / float(w.min()):.3g}): {hint}.",
            RuntimeWarning, stacklevel=3,
        )  # fmt: skip
    L = np.linalg.cholesky(0.5 * (cov + cov.T))
    khat = khat_of(x, L, batch_potential, num_draws, seed) if num_draws else math.nan
    return CoreFit(x, cov, L, ok, khat, v, name, u0)


@dataclass(frozen=True)
class LaplaceResult:
    """The Laplace approximation ``q = N(mean, cov)`` of a model in its unconstrained space.

    Attributes
    ----------
    mean : numpy.ndarray
        ``u* = argmin V`` ``(d,)``: the latent sites of :attr:`site_shapes` mapped to
        unconstrained space (a positive site as its log, ...), each raveled, concatenated.
    cov : numpy.ndarray
        ``Σ = (∇²V(u*))⁻¹`` ``(d, d)`` (eigenvalues of ``∇²V`` floored at 1e-12 of the largest).
    scale_tril : numpy.ndarray
        ``chol Σ``.
    site_shapes : dict
        Site name -> unconstrained shape, in the flattening order of :attr:`mean` (the model's
        execution order).
    constrained : dict
        Site name -> value at the mode in the site's support, ``T(u*)``.
    success : bool
        Whether the optimiser converged.
    khat : float
        PSIS k-hat of ``q`` as an importance proposal for the posterior (``< 0.7``: usable).
    potential : float
        ``V(u*)``.
    init_strategy : str
        The host strategy that gave the optimiser's start.
    init_mean : numpy.ndarray
        That start, unconstrained.
    init_constrained : dict
        That start, ``{site: value in its support}``.
    backend : str
        ``"numpyro"`` or ``"pyro"``.
    """

    mean: np.ndarray
    cov: np.ndarray
    scale_tril: np.ndarray
    site_shapes: dict
    constrained: dict
    success: bool
    khat: float
    potential: float = math.nan
    init_strategy: str = ""
    init_mean: np.ndarray | None = None
    init_constrained: dict | None = None
    backend: str = field(default="numpyro", repr=False)

    def site_slices(self) -> dict[str, slice]:
        """Site name -> its slice of :attr:`mean`."""
        out, start = {}, 0
        for k, shape in self.site_shapes.items():
            n = int(np.prod(shape, dtype=int))
            out[k] = slice(start, start + n)
            start += n
        return out

    def unflatten(self, u: Any) -> dict[str, np.ndarray]:
        """A flat unconstrained vector ``(d,)`` as ``{site: array of its unconstrained shape}``."""
        u = np.asarray(u)
        return {k: u[s].reshape(self.site_shapes[k]) for k, s in self.site_slices().items()}

    def reordered(self, order: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, cov)`` with the sites in ``order`` (e.g. a guide's own flattening order)."""
        slices = self.site_slices()
        if sorted(order) != sorted(slices):
            raise VidivError(
                f"the sites {list(order)} are not the Laplace approximation's sites "
                f"{list(slices)}; was it computed for this model?"
            )
        perm = np.concatenate([np.arange(slices[k].start, slices[k].stop) for k in order])
        return self.mean[perm], self.cov[np.ix_(perm, perm)]

    def sd_min(self) -> float:
        """The smallest marginal standard deviation of ``q``."""
        return float(np.sqrt(np.diag(self.cov)).min())

    def _adapter(self):
        import importlib

        return importlib.import_module(f"vidiv.{self.backend}._laplace")

    def init_params(self, guide: Any, *args: Any, **kwargs: Any) -> dict:
        """Guide parameters that start ``guide`` at ``q`` (``AutoMultivariateNormal``: mean and
        Cholesky factor; ``AutoNormal``: mean and marginal sds), as constrained values.

        NumPyro: the ``init_params`` of ``SVI.init`` / ``SVI.run``; ``args``/``kwargs`` are the
        model arguments (the guide's prototype is built if needed). Pyro: see
        :meth:`set_guide`, which writes them into the guide (and param store)."""
        return self._adapter().init_params(self, guide, *args, **kwargs)

    def set_guide(self, guide: Any, *args: Any, **kwargs: Any) -> None:
        """Pyro: build ``guide`` if needed and set its parameters to :meth:`init_params`."""
        return self._adapter().set_guide(self, guide, *args, **kwargs)

    def start(self, fbgvi: Any, *args: Any, state: Any = None, **kwargs: Any) -> Any:
        """Start an FBGVI driver at ``q`` (``set_gaussian`` in the driver's site order).

        NumPyro: returns the new state (``state`` from ``fb.init``; built from a fixed key and
        ``args`` if ``None``). Pyro: sets the driver (``args`` set it up if needed), returns
        ``None``."""
        return self._adapter().start(self, fbgvi, *args, state=state, **kwargs)
