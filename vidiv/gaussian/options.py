"""Validated FBGVI options, shared by the Pyro and NumPyro drivers (one set of rules, one set of
error messages)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from vidiv.errors import InvalidArgumentError, NonFiniteError, check_num_particles, check_positive

from .schedule import check_step_size, resolve_schedule

__all__ = [
    "WHITENED_MAX_STEP",
    "FBGVIOptions",
    "check_gaussian",
    "fbgvi_options",
    "nonfinite_advice",
    "resolve_init",
]


# The default η₀ of the whitened step never exceeds ½ (in units of the current q's scale): with
# η > 1 the entropy step alone doubles Σ each step, which a noisy (Stein) Hessian turns into a
# divergence (measured: the two-site conformance model from an init_scale=0.1 start, η₀ = 1.16).
WHITENED_MAX_STEP = 0.5


class FBGVIOptions(NamedTuple):
    step_size: float | None
    num_samples: int
    hessian: str
    variant: str
    schedule: Any
    init_scale: float
    antithetic: bool
    precondition: bool


def _choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidArgumentError(f"{name} must be one of {choices}, got {value!r}.")
    return value


def fbgvi_options(
    step_size: float | None = None,
    num_samples: int = 4,
    hessian: str = "exact",
    variant: str = "fbgvi",
    schedule: Any = "decay",
    init_scale: float = 0.1,
    antithetic: bool | None = None,
    precondition: bool = True,
) -> FBGVIOptions:
    """Check the drivers' arguments; raise :class:`~vidiv.errors.InvalidArgumentError` with a
    fix-it message on bad input. ``antithetic=None`` pairs the draws when ``num_samples`` is even.

    >>> opts = fbgvi_options()
    >>> opts.num_samples, opts.antithetic, opts.precondition
    (4, True, True)
    >>> fbgvi_options(num_samples=1).antithetic
    False
    """
    n = check_num_particles(num_samples, name="num_samples")
    if antithetic is None:  # the default: pairs whenever the number of draws allows them
        antithetic = n % 2 == 0
    if antithetic and n % 2:
        raise InvalidArgumentError(
            f"antithetic=True pairs each draw ε with −ε, so num_samples must be even, got "
            f"{num_samples}; pass e.g. num_samples={n + 1}."
        )
    return FBGVIOptions(
        check_step_size(step_size),
        n,
        _choice(hessian, "hessian", ("exact", "stein")),
        _choice(variant, "variant", ("fbgvi", "bwgd")),
        resolve_schedule(schedule),
        check_positive(init_scale, "init_scale", "init_scale=0.1 (the initial sd)"),
        bool(antithetic),
        _flag(precondition, "precondition"),
    )


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidArgumentError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def resolve_init(init: Any, init_loc_fn: Any) -> Any:
    """The drivers' start: ``"laplace"``, ``"isotropic"`` or a ``LaplaceResult``.

    ``init=None`` (the default) is ``"laplace"``, unless an ``init_loc_fn`` is given: then the
    start is ``"isotropic"`` at that strategy's point (the behaviour before the Laplace default).

    >>> resolve_init(None, None), resolve_init(None, object()), resolve_init("isotropic", None)
    ('laplace', 'isotropic', 'isotropic')
    """
    from .laplace import LaplaceResult

    if init is None:
        return "isotropic" if init_loc_fn is not None else "laplace"
    if isinstance(init, LaplaceResult):
        return init
    if init in ("laplace", "isotropic"):
        if init == "laplace" and init_loc_fn is not None:
            raise InvalidArgumentError(
                "init='laplace' finds its own start (the hosts' init_to_median, then "
                "init_to_uniform, init_to_sample); init_loc_fn is used only with "
                "init='isotropic'. Drop one of the two."
            )
        return init
    raise InvalidArgumentError(
        f"init must be 'laplace' (the default: q starts at the model's Laplace approximation), "
        f"'isotropic' (N(m0, init_scale² I) with m0 from init_loc_fn, or the unconstrained "
        f"origin), or a LaplaceResult from vidiv.<backend>.laplace; got {init!r}."
    )


def nonfinite_advice(variant: str) -> str:
    """What to try when an FBGVI/BWGD step goes non-finite (one wording for both adapters)."""
    fixes = "use a smaller step_size or a decaying schedule, or start closer to the posterior " \
        "with set_gaussian (e.g. from a Laplace approximation)"
    if variant == "bwgd":
        fixes += ", or variant='fbgvi' (its backward step keeps the covariance positive definite)"
    return fixes[0].upper() + fixes[1:] + "."


def _layout_text(layout: dict) -> str:
    return ", ".join(f"{k} {tuple(s)}" for k, s in layout.items())


def check_gaussian(mean: Any, cov: Any, layout: dict) -> tuple[np.ndarray, np.ndarray]:
    """Validate a user-given Gaussian N(mean, cov) over the drivers' flat unconstrained vector.

    ``layout`` maps each latent site to its unconstrained shape, in flattening order (the
    drivers' ``latent_shapes``). Returns float64 numpy copies, ``cov`` symmetrised exactly.
    Raises :class:`~vidiv.errors.InvalidArgumentError` (shape, asymmetry, not positive definite)
    or :class:`~vidiv.errors.NonFiniteError` (NaN/inf), each saying what to pass instead.

    >>> m, c = check_gaussian([0.0, 1.0], [[2.0, 0.5], [0.5, 1.0]], {"z": (2,)})
    >>> c.shape
    (2, 2)
    """
    d = int(sum(int(np.prod(s)) for s in layout.values()))
    sites = _layout_text(layout)
    m, c = np.asarray(mean, dtype=np.float64), np.asarray(cov, dtype=np.float64)
    if m.shape != (d,):
        raise InvalidArgumentError(
            f"mean must have shape ({d},): the flat unconstrained latent vector, sites in the "
            f"order of latent_shapes ({sites}), each raveled; got shape {m.shape}."
        )
    if c.shape != (d, d):
        raise InvalidArgumentError(
            f"cov must have shape ({d}, {d}) over the same flat vector as mean ({sites}); got "
            f"shape {c.shape}."
        )
    for name, value in (("mean", m), ("cov", c)):
        if not np.isfinite(value).all():
            raise NonFiniteError(
                f"{name} has NaN or inf entries; pass finite values (e.g. a Laplace "
                "approximation, or a previous fit's mean and cov)."
            )
    asym = float(np.abs(c - c.T).max())
    if asym > 1e-8 * max(float(np.abs(c).max()), 1e-300):
        raise InvalidArgumentError(
            f"cov is not symmetric (max |cov - cov.T| = {asym:.3g}); pass a covariance matrix, "
            "e.g. 0.5 * (cov + cov.T) if the asymmetry is round-off."
        )
    c = 0.5 * (c + c.T)
    eig = np.linalg.eigvalsh(c)
    low, high = float(eig[0]), float(eig[-1])
    if not low > 1e-13 * abs(high):  # numerically: its Cholesky factor must exist
        raise InvalidArgumentError(
            f"cov is not positive definite (eigenvalues from {low:.3g} to {high:.3g}); FBGVI "
            "needs a full-rank Gaussian: add jitter (cov + 1e-6 * I) or, for a Laplace "
            "approximation from an indefinite Hessian, clip its eigenvalues."
        )
    return m, c
