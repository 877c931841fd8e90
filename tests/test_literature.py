"""Losses from the literature that need erf, lgamma and pi, against hand-written TensorFlow.

Each spec in examples/ is compared, value and gradient with respect to y_pred, in float32
and float64, with the direct TensorFlow form in tests/references.py (which uses
TensorFlow's own erf and lgamma, and Python's math.pi). The model predicts a location and
a log-scale (or log-variance) as y_pred's two channels; y_true has one.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import references as refs
import tensorflow as tf

import lossdsl

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

CASES: dict[str, tuple[refs.ReferenceFn, list[dict[str, float]]]] = {
    "gaussian_crps": (refs.gaussian_crps, [{}]),
    "student_t_nll": (refs.student_t_nll, [{"nu": 3.0}, {"nu": 30.0}]),
    "gaussian_nll": (refs.gaussian_nll, [{}]),
}

TOLERANCES = {tf.float32: 2e-6, tf.float64: 1e-13}
"""Relative tolerance per dtype: a few ulps of the value computed."""


@functools.cache
def compiled(name: str) -> Any:
    return lossdsl.compile_file(EXAMPLES / f"{name}.loss")  # verified against mpmath


def value_and_gradient(loss: Any, y: tf.Tensor, mu: tf.Tensor) -> tuple[np.ndarray, np.ndarray]:
    with tf.GradientTape() as tape:
        tape.watch(mu)
        value = loss(y, mu)
        total = tf.reduce_sum(value)
    return value.numpy(), tape.gradient(total, mu).numpy()


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_example_matches_the_hand_written_reference(name: str, dtype: tf.DType) -> None:
    reference, param_sets = CASES[name]
    rng = np.random.default_rng(11)
    y = tf.constant(rng.normal(size=(8, 1)) * 3, dtype)
    mu = tf.constant(np.stack([rng.normal(size=8) * 3, rng.normal(size=8)], axis=1), dtype)
    for params in param_sets:
        ours = compiled(name).loss_class(reduction=None, dtype=dtype.name, **params)
        expected = value_and_gradient(functools.partial(reference, **params), y, mu)
        actual = value_and_gradient(ours, y, mu)
        for got, want, what in zip(actual, expected, ("value", "gradient"), strict=True):
            assert got.dtype == dtype.as_numpy_dtype, what
            scale = float(np.max(np.abs(want)))
            np.testing.assert_allclose(
                got, want, rtol=TOLERANCES[dtype], atol=TOLERANCES[dtype] * scale, err_msg=what
            )


def test_gaussian_crps_of_a_perfect_point_forecast_tends_to_zero() -> None:
    # CRPS(N(y, sigma^2), y) = sigma (sqrt(2) - 1) / sqrt(pi): pi and erf as printed
    loss = compiled("gaussian_crps").loss_class(reduction=None, dtype="float64")
    forecast = tf.constant([[0.0, np.log(0.5)]], tf.float64)  # mean 0, sigma 0.5
    value = loss(tf.zeros((1, 1), tf.float64), forecast).numpy()
    np.testing.assert_allclose(value, [0.5 * (np.sqrt(2) - 1) / np.sqrt(np.pi)], rtol=1e-15)
