"""Second derivatives through the loss's own backward pass on TensorFlow: a Hessian-vector
product from nested tapes equals the central difference of the gradient along the vector,
so that a gradient penalty or a second-order method differentiates what the compiler emits."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from backend_modules import SPECS, generated, inputs, loss_function

OWN_BACKWARD = [
    spec for spec in SPECS if "def backward" in generated(spec, "tensorflow").python_source
]

NOT_FINITE = {
    "giou": (
        "degenerate boxes make the forward's 1 / width infinite where the select takes 0; "
        "a tf.function differentiated twice also differentiates the temporaries it keeps "
        "for the backward function, with cotangent 0, and 0 * inf is NaN (LANGUAGE_NOTES, "
        "'Higher derivatives')"
    ),
}


def gradient(spec: str, y_true: tf.Tensor, y_pred: np.ndarray) -> np.ndarray:
    variable = tf.Variable(y_pred)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(loss_function(spec, "tensorflow")(y_true, variable))
    return np.asarray(tape.gradient(total, variable))


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(spec, marks=pytest.mark.xfail(reason=NOT_FINITE[spec], strict=True))
        if spec in NOT_FINITE
        else spec
        for spec in OWN_BACKWARD
    ],
)
def test_a_hessian_vector_product_is_the_gradient_s_central_difference(spec: str) -> None:
    y_true, y_pred = inputs(spec, seed=3)
    y_true = tf.constant(y_true)
    direction = np.random.default_rng(1).normal(size=y_pred.shape)
    variable = tf.Variable(y_pred)
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            total = tf.reduce_sum(loss_function(spec, "tensorflow")(y_true, variable))
        along = tf.reduce_sum(inner.gradient(total, variable) * direction)
    product = np.asarray(outer.gradient(along, variable))
    assert np.all(np.isfinite(product))
    step = 1e-6
    difference = (
        gradient(spec, y_true, y_pred + step * direction)
        - gradient(spec, y_true, y_pred - step * direction)
    ) / (2 * step)
    scale = max(float(np.max(np.abs(difference))), 1.0)
    np.testing.assert_allclose(product, difference, rtol=0, atol=1e-5 * scale)
