"""The checked constructor options of the diffusion guides (one function for both adapters)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from ..errors import ModelStructureError, check_positive
from .control import check_hidden
from .modes import check_estimator
from .sde import ReferenceSDE, check_num_steps, make_sde


class GuideOptions(NamedTuple):
    """``DiffusionGuide``'s options after validation."""

    num_steps: int
    hidden: tuple[int, ...]
    sde: ReferenceSDE
    estimator: str
    use_score: bool
    score_clip: float
    init_scale: float


def guide_options(
    num_steps: int,
    hidden: Sequence[int],
    sde: Any,
    sde_kwargs: dict | None,
    estimator: str,
    use_score: bool,
    score_clip: float,
    init_scale: float,
) -> GuideOptions:
    """Validate ``DiffusionGuide``'s arguments, raising
    :class:`~vidiv.errors.InvalidArgumentError` with the value to pass instead.

    >>> guide_options(50, (32, 32), "pis", None, "auto", True, 10.0, 1.0).num_steps
    50
    """
    return GuideOptions(
        check_num_steps(num_steps),
        check_hidden(hidden),
        make_sde(sde, **(sde_kwargs or {})),
        check_estimator(estimator),
        bool(use_score),
        check_positive(score_clip, "score_clip", "score_clip=10.0 (inf: no clipping)",
                       allow_inf=True),  # fmt: skip
        check_positive(init_scale, "init_scale",
                       "init_scale=1.0 (the scale of the drift network's initial weights)"),
    )


def check_continuous_latents(sites: list[tuple[str, str, bool]], backend: str) -> None:
    """Refuse a model ``DiffusionGuide`` cannot cover: no latent site, or a discrete one.

    ``sites``: ``(name, distribution name, is_discrete)`` for every latent sample site of the
    model, in order; ``backend``: ``"pyro"`` or ``"numpyro"`` (for the advice).

    >>> check_continuous_latents([("z", "Normal", False)], "numpyro")  # nothing happens
    """
    if not sites:
        raise ModelStructureError(
            "DiffusionGuide: the model has no latent sample site (every site is observed or a "
            "parameter), so there is no path to learn. With no latents every objective is the "
            "log likelihood log p(x | theta): fit the parameters with an empty guide "
            "(guide = lambda *args, **kwargs: None)."
        )
    for name, fn, discrete in sites:
        if discrete:
            raise ModelStructureError(
                f"DiffusionGuide: latent site {name!r} is discrete ({fn}); the diffusion moves "
                "continuous latents in unconstrained space. Marginalise it out in the model (a "
                "mixture distribution), or fit the model with a guide that has a discrete site "
                f"for {name!r} and vidiv.{backend}.LogVariance or AlphaDivergence (their "
                "score-function term handles discrete guide sites)."
            )
