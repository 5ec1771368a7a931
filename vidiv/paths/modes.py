r"""Which gradient estimator a diffusion guide builds: ``"lv"`` or ``"kl"``.

A guide cannot see the loss that runs it, yet the two estimators need different computation
graphs (detached trajectory vs reparameterised trajectory). ``DiffusionGuide(estimator=...)``
takes ``"lv"``, ``"kl"`` or ``"auto"`` (default). ``"auto"`` reads the innermost
:func:`estimator_scope`: a loss that wants the log-variance graph (``LogVariance``) wraps its guide
calls in ``estimator_scope("lv")``; everywhere else (``Trace_ELBO``, ``AlphaDivergence``,
``Predictive``) ``"auto"`` means ``"kl"``, which is correct for every reparameterised objective.

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

__all__ = ["estimator_scope", "resolve_estimator", "check_estimator"]

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


def resolve_estimator(estimator: str) -> str:
    """``"lv"``/``"kl"`` as given; ``"auto"`` from the innermost scope, else ``"kl"``."""
    if check_estimator(estimator) != "auto":
        return estimator
    return _SCOPE.get() or "kl"
