r"""Reference SDEs for diffusion-path guides (Richter & Berner, ICLR 2024; Zhang & Chen, PIS 2022).

A guide moves a latent :math:`X\in\mathbb R^d` along the *controlled* SDE

.. math:: dX_t = \big(\mu(X_t,t) + \sigma(t)\,u(X_t,t)\big)\,dt + \sigma(t)\,dW_t,
          \qquad t\in[0,T],

whose uncontrolled version (:math:`u=0`) is the *reference* process. Both references here have a
linear drift :math:`\mu(x,t)=a(t)\,x` and a Gaussian law at every time, so the reference marginal
at the end of the time grid, :math:`p_{\rm ref}`, is known in closed form.

``PIS``  scaled Brownian motion from :math:`X_0=0`: :math:`a=0`, :math:`\sigma` constant,
         :math:`p_{\rm ref}=\mathcal N(0,\sigma^2T)` (path integral sampler; sde_sampler ``bm_pis``
         uses :math:`\sigma=\sqrt{0.2}`, :math:`T=5`, i.e. a unit-variance end point).
``VP``   variance-preserving Ornstein–Uhlenbeck process started in its invariant law
         :math:`X_0\sim\mathcal N(0,s^2)`: :math:`a(t)=-\tfrac12\beta(t)`,
         :math:`\sigma(t)=s\sqrt{\beta(t)}`, with a linear schedule that runs from
         :math:`\beta_{\max}` at :math:`t=0` to :math:`\beta_{\min}` at :math:`t=T` (the generative
         direction of a diffusion model; sde_sampler ``vp_10``: 0.1, 10, :math:`T=1`).

Exactness under Euler–Maruyama. The importance weight of a trajectory is only unbiased for
:math:`Z` if :math:`p_{\rm ref}` is the marginal of the *discretised* reference chain. Both
chains are linear Gaussian recursions
:math:`X_{k+1}=(1+a_k\Delta t_k)X_k+\sigma_k\sqrt{\Delta t_k}\,\xi_k`, so
:meth:`ReferenceSDE.terminal_variance` runs the variance recursion
:math:`v_{k+1}=(1+a_k\Delta t_k)^2v_k+\sigma_k^2\Delta t_k` exactly (for PIS it is
:math:`\sigma^2T`; for VP it differs from :math:`s^2` by :math:`O(\Delta t)`).

Example
-------
>>> from vidiv.paths import make_sde
>>> sde = make_sde("pis")
>>> round(sde.terminal_variance(100), 12)
1.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._backend import Array, namespace
from ..errors import InvalidArgumentError, check_num_particles, check_positive

__all__ = ["ReferenceSDE", "PIS", "VP", "Schedule", "make_sde", "check_num_steps"]


@dataclass(frozen=True)
class Schedule:
    """Per-step coefficients on the Euler grid (numpy float64 arrays of length ``num_steps``):
    left time ``t``, step ``dt``, diffusion ``sigma`` and linear drift coefficient ``drift``
    (:math:`\\mu(x,t_k)=` ``drift[k] * x``)."""

    t: np.ndarray
    dt: np.ndarray
    sigma: np.ndarray
    drift: np.ndarray


def check_num_steps(num_steps: int) -> int:
    """Validate the number of Euler steps (any integral number >= 1, as for particle counts)."""
    return check_num_particles(num_steps, minimum=1, name="num_steps")


def _positive(name: str, value: float) -> float:
    return check_positive(value, name, f"{name}=1.0")


class ReferenceSDE:
    """Base class: linear drift ``a(t) x``, scalar diffusion ``sigma(t)``, Gaussian start."""

    name = "base"
    T: float = 1.0
    initial_std: float = 0.0

    def drift_coef(self, t: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def sigma(self, t: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def schedule(self, num_steps: int) -> Schedule:
        """Uniform Euler grid :math:`t_k = kT/N` and the coefficients at the left end points."""
        n = check_num_steps(num_steps)
        t = np.arange(n, dtype=np.float64) * (self.T / n)
        dt = np.full(n, self.T / n)
        return Schedule(t=t, dt=dt, sigma=self.sigma(t), drift=self.drift_coef(t))

    def terminal_variance(self, num_steps: int) -> float:
        """Exact per-coordinate variance of the discretised reference chain after ``num_steps``."""
        s = self.schedule(num_steps)
        v = self.initial_std**2
        for a, sig, dt in zip(s.drift, s.sigma, s.dt, strict=True):
            v = (1.0 + a * dt) ** 2 * v + sig**2 * dt
        return float(v)

    def log_p_ref(self, x: Array, num_steps: int) -> Array:
        """Log density of the reference end point :math:`\\mathcal N(0, v_N I)` at ``x``
        (shape ``(..., d)``), summed over the last axis."""
        xp = namespace(x)
        v = self.terminal_variance(num_steps)
        d = x.shape[-1]
        return -0.5 * xp.sum(x * x, axis=-1) / v - 0.5 * d * math.log(2.0 * math.pi * v)

    def describe(self) -> dict:
        return {"sde": self.name, "T": self.T}


class PIS(ReferenceSDE):
    """Scaled Brownian motion :math:`dX=\\sigma\\,dW`, :math:`X_0=0` (PIS reference)."""

    name = "pis"

    def __init__(self, sigma: float = math.sqrt(0.2), T: float = 5.0):
        self.sigma_value = _positive("sigma", sigma)
        self.T = _positive("T", T)
        self.initial_std = 0.0

    def drift_coef(self, t):
        return np.zeros_like(np.asarray(t, dtype=np.float64))

    def sigma(self, t):
        return np.full_like(np.asarray(t, dtype=np.float64), self.sigma_value)

    def describe(self) -> dict:
        return {"sde": "pis", "sigma": self.sigma_value, "T": self.T}


class VP(ReferenceSDE):
    """Variance-preserving OU reference started in :math:`\\mathcal N(0,s^2)`."""

    name = "vp"

    def __init__(
        self, beta_min: float = 0.1, beta_max: float = 10.0, T: float = 1.0, scale: float = 1.0
    ):
        self.beta_min = _positive("beta_min", beta_min)
        self.beta_max = _positive("beta_max", beta_max)
        self.T = _positive("T", T)
        self.scale = _positive("scale", scale)
        self.initial_std = self.scale

    def beta(self, t):
        t = np.asarray(t, dtype=np.float64)
        return self.beta_max + (self.beta_min - self.beta_max) * t / self.T

    def drift_coef(self, t):
        return -0.5 * self.beta(t)

    def sigma(self, t):
        return self.scale * np.sqrt(self.beta(t))

    def describe(self) -> dict:
        return {"sde": "vp", "beta_min": self.beta_min, "beta_max": self.beta_max,
                "T": self.T, "scale": self.scale}


_SDES = {"pis": PIS, "vp": VP}


def make_sde(sde: str | ReferenceSDE = "pis", **kwargs) -> ReferenceSDE:
    """``"pis"`` or ``"vp"`` (keyword arguments go to the constructor), or an instance."""
    if isinstance(sde, ReferenceSDE):
        if kwargs:
            raise InvalidArgumentError("sde_kwargs only apply when sde is given by name.")
        return sde
    if not isinstance(sde, str) or sde.lower() not in _SDES:
        raise InvalidArgumentError(
            f"unknown sde {sde!r}; use 'pis' (scaled Brownian motion from 0) or 'vp' "
            "(variance-preserving Ornstein-Uhlenbeck), or pass a vidiv.paths.ReferenceSDE."
        )
    try:
        return _SDES[sde.lower()](**kwargs)
    except TypeError as err:
        raise InvalidArgumentError(f"bad sde_kwargs for sde={sde!r}: {err}") from None
