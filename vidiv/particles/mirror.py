"""Mirror maps for constrained supports (Shi, Liu & Mackey, ICLR 2022, §3 and their code).

A mirror map is a strictly convex ``ψ`` on the support; particles live in the dual space
``η = ∇ψ(θ)`` (all of ``R^d``) and come back with ``θ = ∇ψ*(η)``. Every map below works on the
*value* of the site as the host PPL stores it (a full probability vector for a simplex) and is
computed so that ``θ`` stays inside the support for every finite ``η`` (softmax / sigmoid /
exp; no ``1 - Σθ``).

Quantities each map provides (``v`` is a dual-space vector, ``θ`` the primal coordinates):

* ``SimplexEntropic``: ``∇ψ*(η) = softmax([η, 0])`` (the full vector), ``∇²ψ(θ)⁻¹ v =
  θ∘v − θ (θ·v)``, ``∇_η log det ∇²ψ*(η) = 1 − (d+1) θ``.
* ``PositiveEntropic``: ``∇ψ*(η) = exp η``, ``∇²ψ⁻¹ v = θ∘v``, log-det gradient ``1``.
* ``UnitIntervalEntropic``: ``∇ψ*(η) = sigmoid η``, ``∇²ψ⁻¹ v = θ(1−θ)∘v``, log-det
  gradient ``1 − 2θ``.
* ``Identity``: ``∇ψ*(η) = η``, ``∇²ψ⁻¹ v = v``, log-det gradient ``0``.
* ``OrderedEntropic``: ordered vectors ``θ_1 < … < θ_d`` (``positive=True``: ``0 < θ_1``), see
  its docstring: entropic on the increments ``δ = Aθ``; ``∇²ψ⁻¹ v = A⁻¹ diag(h) A⁻ᵀ v`` and a
  constant log-det gradient.

Simplex: ``ψ(θ) = Σ_{i≤d+1} θ_i log θ_i`` with ``θ ∈ R^d`` and ``θ_{d+1} = 1 − Σθ`` implicit,
``∇ψ(θ) = log θ − log θ_{d+1}``. Positive reals: ``ψ(θ) = Σ θ log θ − θ``. Unit interval
(Fermi–Dirac): ``ψ(θ) = θ log θ + (1−θ) log(1−θ)``. The log-det gradient equals the divergence
of ``∇²ψ(θ)⁻¹`` in ``θ``, which is what SVMD needs as well.

The dual score ``∇_η log p_H(η) = ∇²ψ(θ)⁻¹ ∇_θ log p(θ) + ∇_η log det ∇²ψ*(η)`` is formed from
the gradient with respect to the *value* (``grad_value``), multiplying ``θ_i ∂_i log p`` first,
so ``θ_i ~ 1e-30`` with ``∂_i log p ~ 1e30`` stays exact.

Example:
    >>> import numpy as np
    >>> m = SimplexEntropic()
    >>> x = m.to_value(np.array([0.0, 0.0]))
    >>> np.round(x, 3).tolist(), m.to_dual(x).tolist()
    ([0.333, 0.333, 0.333], [0.0, 0.0])
"""

from __future__ import annotations

from typing import Any

from .._backend import namespace, softmax

Array = Any

__all__ = ["MirrorMap", "SimplexEntropic", "PositiveEntropic", "UnitIntervalEntropic", "Identity",
           "OrderedEntropic", "SUPPORTED_SUPPORTS"]

#: What :func:`vidiv.pyro.MirroredSVGD` / :func:`vidiv.numpyro.MirroredSVGD` accept.
SUPPORTED_SUPPORTS = (
    "simplex (entropic map)",
    "positive / greater_than(0) (entropic map)",
    "unit_interval / interval(0, 1) (Fermi-Dirac entropic map)",
    "ordered_vector / positive_ordered_vector (entropic map on the increments)",
    "real / real_vector / independent(real) (identity map: ordinary SVGD)",
)


def _safe_log(x: Array) -> Array:
    xp = namespace(x)
    tiny = xp.finfo(x.dtype).tiny
    return xp.log(xp.where(x > tiny, x, xp.full_like(x, tiny)))


class MirrorMap:
    """Interface; ``event_dim`` is 1 for maps acting on a vector (simplex), 0 for elementwise."""

    name = "mirror map"
    event_dim = 0
    #: the kernel of ``kernel_space="auto"`` acts on ``η`` for this map (``θ`` when False)
    kernel_on_dual = True

    def dual_shape(self, value_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of ``η`` for one particle whose value has shape ``value_shape``."""
        return tuple(value_shape)

    def to_value(self, eta: Array) -> Array:
        """``∇ψ*(η)`` in the host's representation of the value."""
        raise NotImplementedError

    def to_dual(self, value: Array) -> Array:
        """``∇ψ(θ)`` (values on the boundary are clamped to the dtype's ``tiny``)."""
        raise NotImplementedError

    def primal(self, value: Array) -> Array:
        """The primal coordinates ``θ`` (dual-shaped) that the kernel sees."""
        return value

    def hess_inv(self, value: Array, v: Array) -> Array:
        """``∇²ψ(θ)⁻¹ v`` (``v`` dual-shaped, broadcasting over leading axes)."""
        raise NotImplementedError

    def hess_inv_diag(self, value: Array) -> Array:
        """The diagonal of ``∇²ψ(θ)⁻¹`` (dual-shaped)."""
        raise NotImplementedError

    def hess(self, value: Array, v: Array) -> Array:
        """``∇²ψ(θ) v`` (used by SVMD)."""
        raise NotImplementedError

    def grad_logdet(self, value: Array) -> Array:
        """``∇_η log det ∇²ψ*(η)`` = divergence of ``∇²ψ(θ)⁻¹`` (dual-shaped)."""
        raise NotImplementedError

    def primal_grad(self, value: Array, grad_value: Array) -> Array:
        """``∇_θ log p`` from the gradient with respect to the value."""
        return grad_value

    def dual_score(self, value: Array, grad_value: Array) -> Array:
        """``∇_η log p_H(η) = ∇²ψ⁻¹ ∇_θ log p + ∇_η log det ∇²ψ*``."""
        return self.hess_inv(value, self.primal_grad(value, grad_value)) + self.grad_logdet(value)

    def interior(self, value: Array) -> Array:
        """Elementwise: the value lies in the open support (finite, and not rounded onto its
        boundary, e.g. ``exp(η)`` underflowing to 0). Shape of ``value`` (for a map with
        ``event_dim = 1``: ``value`` without its last axis)."""
        xp = namespace(value)
        ok = xp.isfinite(value)
        return xp.all(ok, axis=-1) if self.event_dim else ok

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SimplexEntropic(MirrorMap):
    """Entropic map of the probability simplex; the value is the full ``(d+1)``-vector."""

    name = "simplex entropic"
    event_dim = 1
    kernel_on_dual = False  # the dual kernel collapses sparse simplexes (see stein.py)

    def dual_shape(self, value_shape):
        return tuple(value_shape[:-1]) + (value_shape[-1] - 1,)

    def interior(self, value):
        xp = namespace(value)
        return xp.all(xp.isfinite(value) & (value > 0), axis=-1)

    def to_value(self, eta):
        xp = namespace(eta)
        return softmax(xp.concat([eta, xp.zeros_like(eta[..., :1])], axis=-1), axis=-1)

    def to_dual(self, value):
        logs = _safe_log(value)
        return logs[..., :-1] - logs[..., -1:]

    def primal(self, value):
        return value[..., :-1]

    def hess_inv(self, value, v):
        xp = namespace(value, v)
        theta = value[..., :-1]
        return theta * v - theta * xp.sum(theta * v, axis=-1, keepdims=True)

    def hess_inv_diag(self, value):
        theta = value[..., :-1]
        return theta * (1.0 - theta)

    def hess(self, value, v):
        xp = namespace(value, v)
        # ∇²ψ = diag(1/θ) + 1/θ_{d+1} 11ᵀ ; θ_{d+1} is the stored last coordinate (never 1 - Σθ)
        return v / value[..., :-1] + xp.sum(v, axis=-1, keepdims=True) / value[..., -1:]

    def grad_logdet(self, value):
        d1 = value.shape[-1]
        return 1.0 - d1 * value[..., :-1]

    def primal_grad(self, value, grad_value):
        return grad_value[..., :-1] - grad_value[..., -1:]

    def dual_score(self, value, grad_value):
        xp = namespace(value, grad_value)
        # ∇²ψ⁻¹ (g_{:d} − g_{d+1}) = x∘g − x (x·g) restricted to the first d coordinates
        w = value * grad_value
        projected = w - value * xp.sum(w, axis=-1, keepdims=True)
        return projected[..., :-1] + self.grad_logdet(value)


class PositiveEntropic(MirrorMap):
    """Entropic map of the positive reals, elementwise: ``θ = exp η``."""

    name = "positive entropic"

    def interior(self, value):
        xp = namespace(value)
        return xp.isfinite(value) & (value > 0)

    def to_value(self, eta):
        return namespace(eta).exp(eta)

    def to_dual(self, value):
        return _safe_log(value)

    def hess_inv(self, value, v):
        return value * v

    def hess_inv_diag(self, value):
        return value

    def hess(self, value, v):
        return v / value

    def grad_logdet(self, value):
        return namespace(value).ones_like(value)

    def dual_score(self, value, grad_value):
        return value * grad_value + 1.0


class UnitIntervalEntropic(MirrorMap):
    """Fermi–Dirac entropic map of ``(0, 1)``, elementwise: ``θ = sigmoid η``."""

    name = "unit-interval entropic"

    def interior(self, value):
        return (value > 0) & (value < 1)

    def to_value(self, eta):
        xp = namespace(eta)
        return xp.exp(-xp.logaddexp(xp.zeros_like(eta), -eta))

    def to_dual(self, value):
        return _safe_log(value) - _safe_log(1.0 - value)

    def hess_inv(self, value, v):
        return value * (1.0 - value) * v

    def hess_inv_diag(self, value):
        return value * (1.0 - value)

    def hess(self, value, v):
        return v / (value * (1.0 - value))

    def grad_logdet(self, value):
        return 1.0 - 2.0 * value

    def dual_score(self, value, grad_value):
        return (1.0 - value) * (value * grad_value) + 1.0 - 2.0 * value


class Identity(MirrorMap):
    """``ψ(θ) = ‖θ‖²/2`` on the reals: MSVGD with this map is ordinary SVGD."""

    name = "identity"

    def to_value(self, eta):
        return eta

    def to_dual(self, value):
        return value

    def hess_inv(self, value, v):
        return v

    def hess_inv_diag(self, value):
        return namespace(value).ones_like(value)

    def hess(self, value, v):
        return v

    def grad_logdet(self, value):
        return namespace(value).zeros_like(value)

    def dual_score(self, value, grad_value):
        return grad_value


class OrderedEntropic(MirrorMap):
    r"""Ordered vectors ``θ_1 < θ_2 < … < θ_d`` (last axis), entropic on the increments.

    With the difference map ``δ = Aθ`` (``δ_1 = θ_1``, ``δ_i = θ_i − θ_{i−1} > 0``),
    ``ψ(θ) = φ(Aθ)`` where ``φ`` is ``δ log δ − δ`` on every positive increment and ``δ_1²/2`` on
    the free first coordinate (``positive=True``, support ``0 < θ_1 < …``: entropic on ``δ_1``
    too). ``A`` is invertible with ``det A = 1``, so ``ψ`` is strictly convex and of Legendre
    type on the ordered cone, and

    * ``η = ∇ψ(θ) = Aᵀ∇φ(δ)``, i.e. ``η_i = ζ_i − ζ_{i+1}`` with ``ζ = log δ`` (``ζ_1 = δ_1``
      for the free coordinate); back: ``ζ = A⁻ᵀη`` (reverse cumulative sum), ``δ = exp ζ``,
      ``θ = A⁻¹δ`` (cumulative sum) — ordered for every finite ``η``;
    * ``∇²ψ(θ)⁻¹ v = A⁻¹ diag(h) A⁻ᵀ v`` with ``h_i = δ_i`` (``1`` for the free coordinate), and
      ``∇²ψ v = Aᵀ diag(1/h) A v``;
    * ``log det ∇²ψ*(η) = Σ_{entropic i} ζ_i``, whose ``η``-gradient is the constant
      ``#{entropic i ≤ j}`` (``j − 1`` for ``ordered_vector``, ``j`` for the positive one,
      1-based).

    Example:
        >>> import numpy as np
        >>> m = OrderedEntropic()
        >>> x = m.to_value(np.array([0.0, 0.0, 0.0]))
        >>> x.tolist(), m.to_dual(x).tolist()
        ([0.0, 1.0, 2.0], [0.0, 0.0, 0.0])
    """

    event_dim = 1

    def __init__(self, positive: bool = False):
        self.positive = bool(positive)
        self.name = "positive-ordered entropic" if self.positive else "ordered entropic"

    def _h(self, delta):
        # ∇²φ(δ)⁻¹ diagonal: δ on entropic coordinates, 1 on the free first one
        if self.positive:
            return delta
        xp = namespace(delta)
        return xp.concat([xp.ones_like(delta[..., :1]), delta[..., 1:]], axis=-1)

    @staticmethod
    def _cumsum(v):
        return namespace(v).cumulative_sum(v, axis=-1)

    @staticmethod
    def _rev_cumsum(v):
        xp = namespace(v)
        return xp.flip(xp.cumulative_sum(xp.flip(v, axis=-1), axis=-1), axis=-1)

    @staticmethod
    def _diff(v):
        # A v: (v_1, v_2 − v_1, ...)
        xp = namespace(v)
        return xp.concat([v[..., :1], v[..., 1:] - v[..., :-1]], axis=-1)

    @staticmethod
    def _diff_t(v):
        # Aᵀ v: (v_1 − v_2, ..., v_{d−1} − v_d, v_d)
        xp = namespace(v)
        return xp.concat([v[..., :-1] - v[..., 1:], v[..., -1:]], axis=-1)

    def interior(self, value):
        xp = namespace(value)
        d = self._diff(value)
        inc = d if self.positive else d[..., 1:]
        return xp.all(xp.isfinite(value), axis=-1) & xp.all(inc > 0, axis=-1)

    def to_value(self, eta):
        xp = namespace(eta)
        zeta = self._rev_cumsum(eta)
        if self.positive:
            return self._cumsum(xp.exp(zeta))
        return self._cumsum(xp.concat([zeta[..., :1], xp.exp(zeta[..., 1:])], axis=-1))

    def to_dual(self, value):
        delta = self._diff(value)
        if self.positive:
            return self._diff_t(_safe_log(delta))
        xp = namespace(value)
        return self._diff_t(xp.concat([delta[..., :1], _safe_log(delta[..., 1:])], axis=-1))

    def hess_inv(self, value, v):
        return self._cumsum(self._h(self._diff(value)) * self._rev_cumsum(v))

    def hess_inv_diag(self, value):
        return self._cumsum(self._h(self._diff(value)))

    def hess(self, value, v):
        return self._diff_t(self._diff(v) / self._h(self._diff(value)))

    def grad_logdet(self, value):
        xp = namespace(value)
        d = value.shape[-1]
        counts = xp.arange(d, dtype=value.dtype) + (1.0 if self.positive else 0.0)
        return xp.zeros_like(value) + counts

    def __repr__(self) -> str:
        return f"OrderedEntropic(positive={self.positive})"
