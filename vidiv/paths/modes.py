r"""Which gradient estimator a diffusion guide builds: ``"lv"`` or ``"kl"``.

A guide cannot see the loss that runs it, yet the two estimators need different computation
graphs (detached trajectory vs reparameterised trajectory). ``DiffusionGuide(estimator=...)``
takes ``"lv"``, ``"kl"`` or ``"auto"`` (default). ``"auto"`` resolves, in this order, to

1. the innermost :func:`estimator_scope`, if any;
2. ``"lv"`` when the enclosing objective *detaches the guide's sample values* (vidiv's
   ``LogVariance``, ``ChiSquaredVIS``: their particle traces run the guide under vidiv's
   detach-samples handler, which the adapters detect on the effect-handler stack). With values
   detached only ``log q`` can carry a gradient, and the detached-trajectory graph makes that
   gradient the score of the path density (at :math:`\mathrm{sg}(u)=u`,
   :math:`\nabla[u\cdot(\mathrm{sg}(u)-\frac12u)\Delta t+u\cdot\Delta W]=\nabla u\cdot\Delta W`);
3. ``"kl"`` otherwise (``Trace_ELBO``, ``AlphaDivergence``, ``Predictive``): correct for every
   reparameterised objective.

Example
-------
>>> with estimator_scope("lv"):
...     resolve_estimator("auto")
'lv'
>>> resolve_estimator("auto")
'kl'
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from ..errors import InvalidArgumentError

__all__ = ["estimator_scope", "resolve_estimator", "check_estimator", "current_scope"]

_SCOPE: contextvars.ContextVar[str | None] = contextvars.ContextVar("vidiv_path_est", default=None)
_CHOICES = ("auto", "lv", "kl")


def check_estimator(estimator: str) -> str:
    if estimator not in _CHOICES:
        raise InvalidArgumentError(
            f"estimator must be 'auto', 'lv' (log-variance: detached trajectory, for "
            f"LogVariance) or 'kl' (reparameterised path, for Trace_ELBO / AlphaDivergence), "
            f"got {estimator!r}."
        )
    return estimator


@contextlib.contextmanager
def estimator_scope(estimator: str) -> Iterator[None]:
    """Within this block, guides built with ``estimator="auto"`` use ``estimator``."""
    if check_estimator(estimator) == "auto":
        raise InvalidArgumentError("estimator_scope needs 'lv' or 'kl', not 'auto'.")
    token = _SCOPE.set(estimator)
    try:
        yield
    finally:
        _SCOPE.reset(token)


def current_scope() -> str | None:
    """The innermost :func:`estimator_scope` value, or ``None`` outside any scope."""
    return _SCOPE.get()


def resolve_estimator(estimator: str, values_detached: bool = False) -> str:
    """``"lv"``/``"kl"`` as given; ``"auto"``: the innermost scope, else ``"lv"`` if the caller
    reports detached sample values, else ``"kl"``."""
    if check_estimator(estimator) != "auto":
        return estimator
    return _SCOPE.get() or ("lv" if values_detached else "kl")
