"""Forward-backward Gaussian VI (Diao et al., ICML 2023) as a Pyro driver.

Keeps q = N(m, Σ) over all latent sites of the model in unconstrained space (the potential of
``pyro.infer.mcmc.util.initialize_model``). Each ``step`` draws X_s = m + L ε_s, evaluates ∇V (and
∇²V for ``hessian="exact"``; the Stein estimate otherwise), applies ``vidiv.gaussian.fbgvi_step``
(or ``bwgd_step``) and writes (m, chol Σ) into ``self.guide``, a real
``pyro.infer.autoguide.AutoMultivariateNormal(model)``, so ``Predictive``, ``guide.median()``,
``guide.quantiles()`` and ``vidiv.pyro.to_datatree`` work unchanged.

By default q₀ is the Laplace approximation and each step is whitened by the current q.

Example::

    fb = vidiv.pyro.FBGVI(model)
    for _ in range(2000):
        loss = fb.step(x, y)          # free energy (negative ELBO) before the step
    Predictive(model, guide=fb.guide, num_samples=500)(x, None)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro
import torch
from pyro.infer.autoguide import AutoMultivariateNormal
from pyro.infer.autoguide.initialization import init_to_value
from torch.distributions import transform_to

from vidiv.errors import InvalidArgumentError, NonFiniteError
from vidiv.gaussian import (
    bwgd_step,
    curvature_capped,
    default_step_size,
    fbgvi_step,
    free_energy,
    mean_gradient,
    mean_hessian,
    stein_hessian,
    whitened_step,
)
from vidiv.gaussian.laplace import LaplaceResult
from vidiv.gaussian.options import (
    WHITENED_MAX_STEP,
    check_gaussian,
    fbgvi_options,
    nonfinite_advice,
    resolve_init,
)
from vidiv.pyro._fbgvi_model import FlatPotential, check_structure

__all__ = ["FBGVI"]


class FBGVI:
    """Stochastic forward-backward Gaussian VI in Bures–Wasserstein space for a Pyro model.

    Same arguments and defaults as ``vidiv.numpyro.FBGVI``: ``step_size`` (None = ½ / λ_max of
    the whitened Hessian at the start, at most ½, and a cap of ½ / λ_max of the current one),
    ``num_samples`` (4), ``hessian="exact"|"stein"``, ``variant="fbgvi"|"bwgd"``, ``schedule``
    ("decay": η_k = η₀ / (1 + k/100); None/"constant", or a callable k ↦ factor such as
    ``vidiv.gaussian.Decay``), ``init`` ("laplace": q₀ is :func:`vidiv.pyro.laplace`'s
    approximation, kept as :attr:`laplace`; "isotropic": N(m₀, init_scale² I) with m₀ from
    ``init_loc_fn`` or the unconstrained origin; or a ``LaplaceResult``; with ``init_loc_fn``
    given and ``init`` left out, "isotropic"), ``antithetic`` (±ε pairs; None: whenever
    ``num_samples`` is even) and ``precondition`` (True: each step in the current q's whitened
    coordinates, :func:`vidiv.gaussian.whitened_step`, affine invariant; False: the plain
    scheme). The defaults before 0.4 were one draw, a constant step, no pairs, no
    preconditioning and the isotropic start at the origin (KL 0.19 after 3,000 steps on an 8-D
    Gaussian with Hessian eigenvalues 0.05–5, where the defaults now reach < 0.01). The model may
    not have discrete latents or subsampled plates.

    Example:

    >>> import pyro, pyro.distributions as dist, torch, vidiv.pyro
    >>> torch.set_default_dtype(torch.float64)
    >>> def model(x):
    ...     z = pyro.sample("z", dist.Normal(0.0, 2.0))
    ...     pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> pyro.set_rng_seed(0)
    >>> fb = vidiv.pyro.FBGVI(model)
    >>> losses = [fb.step(torch.ones(4)) for _ in range(200)]
    >>> round(float(fb.mean[0]), 4), round(float(fb.cov[0, 0]), 4)  # 16/17, 4/17
    (0.9412, 0.2353)

    A step that would go non-finite (NaN/inf gradient, Hessian, loss or iterate, or a covariance
    that is not positive definite) is not applied: it raises
    :class:`~vidiv.errors.NonFiniteError` naming the step (``num_steps``, the number of updates
    done), and ``mean``/``cov``/``guide`` stay at the last finite state. Refused up front
    (:class:`~vidiv.errors.ModelStructureError`, naming the sites): model parameters
    (``pyro.param`` in the model; FBGVI cannot learn them: fit them with ``pyro.infer.SVI`` and a
    vidiv objective, or hide them with ``poutine.block(model, hide_types=['param'])`` to hold
    them fixed), point-mass (``Delta``) and discrete latents, and a model without latent sites.
    Models written for one draw (``X @ w``) work: the potential falls back to one draw at a time.

    Attributes after :meth:`setup` or the first step: ``mean`` (d,), ``cov`` (d, d),
    ``scale_tril``, ``num_steps``, ``eta0``, ``guide``, ``latent_shapes``. Warm start (e.g. from
    a Laplace approximation): ``fb.setup(*args); fb.set_gaussian(mean, cov)``.
    """

    def __init__(
        self,
        model: Callable,
        step_size: float | None = None,
        num_samples: int = 4,
        hessian: str = "exact",
        variant: str = "fbgvi",
        schedule: Any = "decay",
        init: Any = None,
        init_scale: float = 0.1,
        init_loc_fn: Callable | None = None,
        antithetic: bool | None = None,
        precondition: bool = True,
    ):
        self.model = model
        (self.step_size, self.num_samples, self.hessian, self.variant, self.schedule,
         self.init_scale, self.antithetic, self.precondition) = fbgvi_options(
            step_size, num_samples, hessian, variant, schedule, init_scale, antithetic,
            precondition,
        )  # fmt: skip
        self.init_method = resolve_init(init, init_loc_fn)
        self.laplace: LaplaceResult | None = (
            self.init_method if isinstance(self.init_method, LaplaceResult) else None
        )
        self.init_loc_fn = init_loc_fn
        extra = {} if init_loc_fn is None else {"init_loc_fn": init_loc_fn}
        self.guide = AutoMultivariateNormal(model, init_scale=self.init_scale, **extra)
        self._flat: FlatPotential | None = None
        self.eta0: float | None = self.step_size
        self.mean = self.cov = self.scale_tril = None
        self.num_steps = 0

    def setup(self, *args: Any, **kwargs: Any) -> None:
        """Build the potential and the guide from the model arguments, with q = N(m₀, Σ₀).

        The first :meth:`step` does this by itself; call it first to read :attr:`latent_shapes`
        or to :meth:`set_gaussian` before any step. Calling it again starts over.
        """
        self._setup(args, kwargs)

    @property
    def latent_shapes(self) -> dict[str, torch.Size]:
        """Unconstrained shape of each latent site, in the order of the flat vector.

        ``mean``/``cov`` live on the concatenation of these sites, each raveled (row-major): the
        layout of the guide's ``loc`` (``AutoMultivariateNormal``, sites in trace order).
        Available after :meth:`setup` or the first step.
        """
        return dict(self._require_flat().shapes)

    def _require_flat(self) -> FlatPotential:
        if self._flat is None:
            raise InvalidArgumentError(
                "the FBGVI driver is not set up yet: call fb.setup(*model_args) (or take one "
                "step) first, so the latent sites and their flat layout are known."
            )
        return self._flat

    def set_gaussian(self, mean: Any, cov: Any, *args: Any, **kwargs: Any) -> None:
        """Set q = N(mean, cov) (e.g. a Laplace approximation, or a previous fit) and the guide.

        ``mean`` (d,) and ``cov`` (d, d) live in the UNCONSTRAINED flat space of the guide: the
        sites of :attr:`latent_shapes` concatenated in that order, each raveled (a positive site
        enters as its log, etc.). ``args``/``kwargs`` are the model arguments, needed only if the
        driver is not set up yet. The step counter (and so the schedule) is kept; with the
        default ``step_size=None``, η₀ is re-derived from the curvature at the new mean.
        Raises :class:`~vidiv.errors.VidivError` for a wrong shape, NaN/inf entries, or a ``cov``
        that is not symmetric positive definite.

        Example::

            fb = vidiv.pyro.FBGVI(model)
            fb.setup(x, y)
            print(fb.latent_shapes)          # {'w': torch.Size([3]), 'sigma': torch.Size([])}
            fb.set_gaussian(loc, cov)        # d = 4: w then log(sigma)
            fb.step(x, y)
        """
        if self._flat is None:
            self._setup(args, kwargs)
        host = [x.detach().cpu() if torch.is_tensor(x) else x for x in (mean, cov)]
        m, c = check_gaussian(*host, self._flat.shapes)
        like = self.mean
        self.mean = torch.as_tensor(m, dtype=like.dtype, device=like.device)
        self.cov = torch.as_tensor(c, dtype=like.dtype, device=like.device)
        self.scale_tril = torch.linalg.cholesky(self.cov)
        self._set_step_size()
        self._write_guide()

    def _set_step_size(self) -> None:
        """η₀: the given ``step_size``, or ½/λ_max of the (whitened) Hessian at the mean."""
        if self.step_size is None:
            _, _, H0 = self._flat.value_grad_hessian(self.mean, hessian=True)
            if self.precondition:  # and at most ½ of q's own scale (noisy Hessians, wide q)
                H0 = self.scale_tril.T @ H0 @ self.scale_tril
            self.eta0 = default_step_size(H0)
            if self.precondition:
                self.eta0 = min(self.eta0, WHITENED_MAX_STEP)

    def _setup(self, args: tuple, kwargs: dict) -> None:
        if self.init_method != "isotropic":
            if self.laplace is None or self.init_method == "laplace":
                from vidiv.pyro._laplace import laplace_for

                seed = int(torch.randint(0, 2**31 - 1, ()))  # from Pyro's global seed
                self.laplace = laplace_for("FBGVI", self.model, args, kwargs, seed)
            # the guide's prototype is built at the mode (the hosts' init_to_median needs a
            # sampler and an icdf the prior may not have; the Laplace fit did not)
            self.guide.init_loc_fn = init_to_value(
                values={k: torch.as_tensor(v) for k, v in self.laplace.constrained.items()}
            )
        check_structure(self.model, args, kwargs)
        with pyro.poutine.block(), torch.no_grad():
            self.guide(*args, **kwargs)  # builds the prototype trace and the guide's params
        self._flat = FlatPotential(self.model, args, kwargs, dict(self.guide._unconstrained_shapes))
        loc = self.guide.loc.detach()
        m0 = loc.clone() if self.init_loc_fn is not None else torch.zeros_like(loc)
        eye = torch.eye(self._flat.dim, dtype=loc.dtype, device=loc.device)
        self.mean, self.cov, self.scale_tril = m0, self.init_scale**2 * eye, self.init_scale * eye
        self.num_steps = 0
        if self.init_method == "isotropic":
            self._set_step_size()
            self._write_guide()
            return
        self.set_gaussian(*self.laplace.reordered(list(self._flat.shapes)))

    def _write_guide(self) -> None:
        """Copy (m, L) into the guide's parameters in place (shared with the param store).

        Pyro's AutoMultivariateNormal uses L = diag(scale) · scale_tril with scale_tril unit lower
        triangular, so scale = diag(L) and scale_tril = L with row i divided by L_ii.
        """
        L = self.scale_tril
        scale = torch.diagonal(L)
        values = {"loc": self.mean, "scale": scale, "scale_tril": L / scale[:, None]}
        params = dict(self.guide.named_parameters())
        with torch.no_grad():
            for name, value in values.items():
                if name in params:  # unconstrained (real) parameter stored as is
                    params[name].copy_(value)
                else:
                    constraint = self.guide._pyro_params[name][0]
                    params[name + "_unconstrained"].copy_(transform_to(constraint).inv(value))

    def step(self, *args: Any, **kwargs: Any) -> float:
        """One FBGVI step with fresh N(0, I) draws; returns the free energy before the step."""
        if self._flat is None:
            self._setup(args, kwargs)
        half = self.num_samples // 2 if self.antithetic else self.num_samples
        noise = torch.randn(half, self._flat.dim, dtype=self.mean.dtype, device=self.mean.device)
        if self.antithetic:
            noise = torch.cat([noise, -noise])
        return self._step(noise, args, kwargs)

    def step_with_noise(self, noise: Any, *args: Any, **kwargs: Any) -> float:
        """As :meth:`step` with given standard normal draws (S, d): X_s = m + L noise_s."""
        if self._flat is None:
            self._setup(args, kwargs)
        noise = torch.as_tensor(noise, dtype=self.mean.dtype, device=self.mean.device)
        return self._step(noise.reshape(-1, self._flat.dim), args, kwargs)

    def _step(self, noise: torch.Tensor, args: tuple, kwargs: dict) -> float:
        m, cov, L = self.mean, self.cov, self.scale_tril
        X = m + noise @ L.T
        exact = self.hessian == "exact"
        vals, grads, hessians = self._flat.batch_value_grad_hessian(X, hessian=exact)
        H = mean_hessian(hessians) if exact else None
        if H is None:
            H = stein_hessian(X, grads, m, cov, center=not self.antithetic)
        if not bool(torch.isfinite(grads).all() & torch.isfinite(H).all()):
            raise NonFiniteError(
                f"FBGVI ({self.variant}) step {self.num_steps}: the gradient or Hessian of "
                "-log p is not finite at the sampled points (the Gaussian has moved where the "
                f"model's log density overflows); the last finite state is kept. "
                f"{nonfinite_advice(self.variant)}"
            )
        eta = self.eta0 * float(self.schedule(self.num_steps))
        if self.step_size is None:  # default: also never exceed ½/λ_max of the current Hessian
            eta = curvature_capped(eta, L.T @ H @ L if self.precondition else H)
        update = fbgvi_step if self.variant == "fbgvi" else bwgd_step
        if self.precondition:
            m_new, cov_new = whitened_step(update, m, L, mean_gradient(grads), H, eta)
        else:
            m_new, cov_new = update(m, cov, mean_gradient(grads), H, eta)
        L_new, info = torch.linalg.cholesky_ex(cov_new)
        loss = free_energy(vals, cov)
        finite = bool(torch.isfinite(m_new).all() & torch.isfinite(L_new).all()
                      & torch.isfinite(loss)) and info == 0
        if not finite:
            raise NonFiniteError(
                f"FBGVI ({self.variant}) went non-finite at step {self.num_steps} (NaN/inf "
                "iterate or a covariance that is not positive definite); the last finite state "
                f"is kept. {nonfinite_advice(self.variant)}"
            )
        self.mean, self.cov, self.scale_tril = m_new, cov_new, L_new
        self.num_steps += 1
        self._write_guide()
        return float(loss)
