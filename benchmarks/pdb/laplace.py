"""Laplace approximation in the unconstrained space: the shared starting point of every VI run.

``u* = argmin V(u)`` by L-BFGS-B (scipy, gradients from jax/torch; robust on the badly scaled
posteriordb models where jax's BFGS line search fails), ``Sigma = (grad^2 V(u*))^-1`` with
eigenvalues floored at 1e-12 of the largest. ``V`` is the host's potential energy (minus log joint
with the Jacobian), started from ``init_to_median``. Its cost is counted in each method's time.
Where the Laplace Gaussian is not a usable importance proposal (PSIS k-hat >= 0.7: e.g. the
centred eight schools, whose unconstrained density is unbounded as tau -> 0, or the non-centred
one, whose mode sits at tau ~ 29 while the posterior mean is 3.6), ``Laplace.fallback()`` gives
the hosts' default start instead (``init_to_median`` mean, scale 0.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize


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
        idx, start = {}, 0
        for k, n in zip(self.order, self.sizes, strict=True):
            idx[k] = np.arange(start, start + n)
            start += n
        perm = np.concatenate([idx[k] for k in order])
        return self.loc[perm], self.cov[np.ix_(perm, perm)]

    def sd_min(self) -> float:
        return float(np.sqrt(np.diag(self.cov)).min())


def _cov_from_hessian(H: np.ndarray) -> np.ndarray:
    H = 0.5 * (H + H.T)
    w, V = np.linalg.eigh(H)
    w = np.maximum(w, 1e-12 * max(w.max(), 1e-300))
    return (V / w) @ V.T


def _minimize(fg, x0):
    res = scipy.optimize.minimize(fg, x0, jac=True, method="L-BFGS-B",
                                  options={"maxiter": 20000, "maxfun": 40000, "ftol": 1e-15,
                                           "gtol": 1e-9})
    return res.x, bool(res.success)


def laplace_numpyro(model, seed: int = 0) -> Laplace:
    """Laplace approximation of a NumPyro model (sites flattened in ``initialize_model``'s order,
    which is the order of NumPyro's ``AutoMultivariateNormal``; use ``reordered`` for others)."""
    import jax
    import jax.numpy as jnp
    from numpyro.infer.initialization import init_to_median
    from numpyro.infer.util import initialize_model

    info, potential_fn, postprocess_fn, _ = initialize_model(
        jax.random.PRNGKey(seed), model, init_strategy=init_to_median
    )
    z0 = info.z
    order = list(z0)  # initialize_model's order = the order AutoMultivariateNormal flattens in
    shapes = {k: tuple(jnp.shape(z0[k])) for k in order}
    sizes = [int(np.prod(shapes[k], dtype=int)) for k in order]

    def unflat(f):
        out, start = {}, 0
        for k, n in zip(order, sizes, strict=True):
            out[k] = jnp.reshape(f[start : start + n], shapes[k])
            start += n
        return out

    flat0 = jnp.concatenate([jnp.reshape(z0[k], (-1,)) for k in order])

    def V(f):
        return potential_fn(unflat(f))

    vg = jax.jit(jax.value_and_grad(V))

    def fg(x):
        v, g = vg(jnp.asarray(x, dtype=flat0.dtype))
        return float(v), np.asarray(g, dtype=np.float64)

    x, ok = _minimize(fg, np.asarray(flat0, np.float64))
    H = np.asarray(jax.jit(jax.hessian(V))(jnp.asarray(x, dtype=flat0.dtype)), np.float64)
    constrained = {k: np.asarray(v) for k, v in postprocess_fn(unflat(jnp.asarray(x))).items()}
    init_c = {k: np.asarray(v) for k, v in postprocess_fn(unflat(flat0)).items()}
    return Laplace(order, sizes, shapes, x, _cov_from_hessian(H), constrained, ok,
                   np.asarray(flat0, np.float64), init_c)


def laplace_pyro(model, order: list[str] | None = None, seed: int = 0) -> Laplace:
    """Laplace approximation of a Pyro model; ``order`` defaults to the model's execution order
    (the order of Pyro's ``AutoMultivariateNormal``). ``seed`` seeds the ``init_to_median`` prior
    draws, as ``laplace_numpyro``'s key does (unseeded, the fallback start of eight schools moved
    between runs: log tau 1.3-2.4)."""
    import pyro
    import torch
    from pyro.infer.autoguide.initialization import init_to_median
    from pyro.infer.mcmc.util import initialize_model

    pyro.set_rng_seed(seed)
    init, potential_fn, transforms, proto = initialize_model(model, init_strategy=init_to_median)
    order = order or [k for k in proto.nodes if k in init]
    shapes = {k: tuple(init[k].shape) for k in order}
    sizes = [int(np.prod(shapes[k], dtype=int)) for k in order]
    dtype = init[order[0]].dtype

    def unflat(x):
        out, start = {}, 0
        for k, n in zip(order, sizes, strict=True):
            out[k] = x[start : start + n].reshape(shapes[k])
            start += n
        return out

    def fg(x):
        t = torch.as_tensor(x, dtype=dtype).requires_grad_(True)
        v = potential_fn(unflat(t))
        (g,) = torch.autograd.grad(v, t)
        return float(v.detach()), g.detach().numpy().astype(np.float64)

    x0 = torch.cat([init[k].reshape(-1) for k in order]).detach().numpy()
    x, ok = _minimize(fg, x0.astype(np.float64))
    xt = torch.as_tensor(x, dtype=dtype)
    H = torch.autograd.functional.hessian(lambda t: potential_fn(unflat(t)), xt).numpy()
    constrained = {k: transforms[k].inv(v).detach().numpy() for k, v in unflat(xt).items()}
    init_c = {k: transforms[k].inv(init[k]).detach().numpy() for k in order}
    return Laplace(order, sizes, shapes, x, _cov_from_hessian(H), constrained, ok,
                   x0.astype(np.float64), init_c)
