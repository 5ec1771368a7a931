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


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "half", None, True, False,
                                 np.True_, "0.5"])  # fmt: skip
def test_check_alpha(bad):
    with pytest.raises(VidivError, match="alpha must be"):
        check_alpha(bad)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, np.True_, "8", np.array([8]), np.int64(0)])
def test_check_num_particles(bad):
    with pytest.raises(InvalidArgumentError, match="num_particles must be an integer >= 1"):
        check_num_particles(bad)


def test_any_integral_number_is_a_particle_count():
    # issue 15: np.int64(8) and 0-d tensors were refused as "not an integer"
    import jax.numpy as jnp
    import torch

    for good in (8, 8.0, np.int64(8), np.array(8), torch.tensor(8), jnp.array(8),
                 torch.tensor(8.0)):  # fmt: skip
        assert check_num_particles(good) == 8 and type(check_num_particles(good)) is int
    with pytest.raises(InvalidArgumentError, match="got tensor\\(True\\)"):
        check_num_particles(torch.tensor(True))


def test_alpha_accepts_numbers_of_any_kind():
    import torch

    assert check_alpha(np.float32(0.5)) == 0.5 and check_alpha(torch.tensor(2.0)) == 2.0


def test_errors_are_value_errors():
    assert issubclass(VidivError, ValueError)
