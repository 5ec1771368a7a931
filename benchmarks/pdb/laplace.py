"""Laplace approximation in the unconstrained space: the shared starting point of every VI run.

``vidiv.numpyro.laplace`` / ``vidiv.pyro.laplace`` (``vidiv.gaussian.laplace``): ``u* = argmin
V(u)`` by L-BFGS-B (scipy, gradients from jax/torch; robust on the badly scaled posteriordb models
where jax's BFGS line search fails), ``Sigma = (grad^2 V(u*))^-1`` with eigenvalues floored at
1e-12 of the largest. ``V`` is the host's potential energy (minus log joint with the Jacobian),
started from ``init_to_median`` (then ``init_to_uniform``, ``init_to_sample`` where it cannot
run). Its cost is counted in each method's time; the package's own k-hat draws are skipped here
(``num_draws=0``: the benchmark scores the Laplace start like a method).
Where the Laplace Gaussian is not a usable importance proposal (PSIS k-hat >= 0.7: e.g. the
centred eight schools, whose unconstrained density is unbounded as tau -> 0, or the non-centred
one, whose mode sits at tau ~ 29 while the posterior mean is 3.6), ``Laplace.fallback()`` gives
the hosts' default start instead (``init_to_median`` mean, scale 0.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vidiv.gaussian.laplace import LaplaceResult


@dataclass
class Laplace:
    order: list[str]  # site names, in the order of ``loc``
    sizes: list[int]
    shapes: dict
    loc: np.ndarray  # (d,)
    cov: np.ndarray  # (d, d)
    constrained: dict  # site -> constrained value at u*
    success: bool
    init_loc: np.ndarray | None = None  # the optimiser's start (init_to_median), unconstrained
    init_constrained: dict | None = None
    kind: str = "laplace"

    def fallback(self, scale: float = 0.1) -> Laplace:
        """The hosts' default start instead: ``init_to_median`` mean, ``scale**2 * I``."""
        d = len(self.loc)
        return Laplace(self.order, self.sizes, self.shapes, np.asarray(self.init_loc),
                       scale**2 * np.eye(d), dict(self.init_constrained), False, self.init_loc,
                       self.init_constrained, kind=f"prior median, scale {scale}")

    def reordered(self, order: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(loc, cov)`` with the sites in ``order`` (e.g. a guide's own flattening order)."""
        return self._result().reordered(order)

    def sd_min(self) -> float:
        return float(np.sqrt(np.diag(self.cov)).min())

    def _result(self) -> LaplaceResult:
        shapes = {k: self.shapes[k] for k in self.order}
        return LaplaceResult(self.loc, self.cov, np.linalg.cholesky(self.cov), shapes,
                             self.constrained, self.success, float("nan"))


def _from_result(r: LaplaceResult, order: list[str] | None = None) -> Laplace:
    order = list(order or r.site_shapes)
    loc, cov = r.reordered(order)
    init = r.unflatten(r.init_mean)
    shapes = {k: tuple(r.site_shapes[k]) for k in order}
    sizes = [int(np.prod(shapes[k], dtype=int)) for k in order]
    init_loc = np.concatenate([np.reshape(init[k], -1) for k in order]).astype(np.float64)
    return Laplace(order, sizes, shapes, loc, cov, dict(r.constrained), r.success, init_loc,
                   dict(r.init_constrained))


def laplace_numpyro(model, seed: int = 0) -> Laplace:
    """Laplace approximation of a NumPyro model (sites flattened in trace order, the order of
    NumPyro's ``AutoMultivariateNormal``; use ``reordered`` for others)."""
    import jax

    import vidiv.numpyro

    return _from_result(vidiv.numpyro.laplace(model, rng_key=jax.random.PRNGKey(seed),
                                              num_draws=0))


def laplace_pyro(model, order: list[str] | None = None, seed: int = 0) -> Laplace:
    """Laplace approximation of a Pyro model; ``order`` defaults to the model's execution order
    (the order of Pyro's ``AutoMultivariateNormal``). ``seed`` seeds the init strategies' prior
    draws, as ``laplace_numpyro``'s key does, and (as before) the global Pyro RNG."""
    import pyro

    import vidiv.pyro

    pyro.set_rng_seed(seed)
    return _from_result(vidiv.pyro.laplace(model, seed=seed, num_draws=0), order)
