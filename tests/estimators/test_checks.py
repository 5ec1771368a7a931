"""Bad input to the core raises VidivError with a message that says what to do."""

from __future__ import annotations

import numpy as np
import pytest

from vidiv.errors import (
    InvalidArgumentError,
    NonFiniteError,
    VidivError,
    check_alpha,
    check_num_particles,
)
from vidiv.estimators import check_log_weights, cubo, elbo, log_variance, renyi_bound


def test_shape_mismatch():
    with pytest.raises(InvalidArgumentError, match=r"log_p has shape \(4,\) but log_q has shape"):
        elbo(np.zeros(4), np.zeros(5))


def test_scalar_input():
    with pytest.raises(InvalidArgumentError, match="pass one value per particle"):
        renyi_bound(np.float64(0.0), np.float64(0.0), 0.5)


def test_log_variance_needs_two_particles():
    with pytest.raises(InvalidArgumentError, match="needs at least 2"):
        log_variance(np.zeros(1), np.zeros(1))


def test_cubo_order():
    with pytest.raises(InvalidArgumentError, match="n >= 1"):
        cubo(np.zeros(3), np.zeros(3), n=0.5)


def test_check_log_weights_messages():
    with pytest.raises(NonFiniteError, match="1 NaN value"):
        check_log_weights(np.array([0.0, np.nan]))
    with pytest.raises(NonFiniteError, match=r"\+inf"):
        check_log_weights(np.array([0.0, np.inf]))
    with pytest.raises(NonFiniteError, match="every particle has zero weight"):
        check_log_weights(np.full((3, 2), -np.inf))
    check_log_weights(np.array([-np.inf, 0.0]))  # one finite particle is fine


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "half", None])
def test_check_alpha(bad):
    with pytest.raises(VidivError, match="alpha must be"):
        check_alpha(bad)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
def test_check_num_particles(bad):
    with pytest.raises(InvalidArgumentError, match="num_particles must be an integer >= 1"):
        check_num_particles(bad)
    assert check_num_particles(8.0) == 8


def test_errors_are_value_errors():
    assert issubclass(VidivError, ValueError)
