"""Under Keras's mixed-precision policies a compiled loss trains, computes in float32 and stays
finite wherever the float32 loss is finite, also at saturated float16/bfloat16 predictions."""

from __future__ import annotations

from collections.abc import Iterator

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras_harness import (
    BINARY_CE,
    CATEGORICAL_CE,
    FOCAL,
    SPARSE_CE_FROM_LOGITS,
    dense_classifier,
    make_dataset,
    train,
)

import lossdsl

BINARY_CE_FROM_LOGITS = (
    "input y: binary\ninput p: logits\n"
    "loss bce_logits = mean(-(y * log(sigmoid(p)) + (1 - y) * log(1 - sigmoid(p))))\n"
)

POLICIES = ["mixed_float16", "mixed_bfloat16"]

# Saturated predictions: probabilities exactly 0 and 1 (right and wrong), logits of +-1e4.
ONEHOT = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype="float32")
LABELS = np.array([0, 1, 2, 0], dtype="int32")
SATURATED_PROBABILITIES = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0]], dtype="float32")
HUGE_LOGITS = np.array(
    [[1e4, -1e4, 0], [1e4, -1e4, -1e4], [-1e4, 1e4, 1e4], [-1e4, 1e4, -1e4]], dtype="float32"
)

EXTREME_CASES = {
    "categorical_ce": (CATEGORICAL_CE, ONEHOT, SATURATED_PROBABILITIES),
    "binary_ce": (BINARY_CE, ONEHOT, SATURATED_PROBABILITIES),
    "focal": (FOCAL, ONEHOT, SATURATED_PROBABILITIES),
    "sparse_ce_from_logits": (SPARSE_CE_FROM_LOGITS, LABELS, HUGE_LOGITS),
    "binary_ce_from_logits": (BINARY_CE_FROM_LOGITS, ONEHOT, HUGE_LOGITS),
}


@pytest.fixture(params=POLICIES)
def policy(request: pytest.FixtureRequest) -> Iterator[str]:
    """Sets a global mixed-precision policy for one test and restores the previous one."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(request.param)
    try:
        yield request.param
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_model_trains_with_half_precision_outputs(policy: str) -> None:
    data = make_dataset()
    model = dense_classifier("softmax")
    assert model(data.features[:2]).dtype == keras.mixed_precision.Policy(policy).compute_dtype
    _, history = train(model, lossdsl.load(CATEGORICAL_CE), data.features, data.onehot)
    assert np.all(np.isfinite(history))
    assert history[-1] < history[0]


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", None])
def test_loss_computes_in_float32(policy: str, reduction: str | None) -> None:
    half = keras.mixed_precision.Policy(policy).compute_dtype
    loss = lossdsl.load(CATEGORICAL_CE, reduction=reduction)
    value = loss(tf.constant(ONEHOT, half), tf.constant([[0.5, 0.25, 0.25]] * 4, half))
    assert value.dtype == tf.float32


def value_and_gradient(
    loss: keras.losses.Loss, y_true: np.ndarray, y_pred: tf.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample loss values and their gradient with respect to y_pred, as float64 arrays."""
    with tf.GradientTape() as tape:
        tape.watch(y_pred)
        values = loss(y_true, y_pred)
    gradient = tape.gradient(values, y_pred)
    return (
        np.asarray(values, dtype="float64"),
        np.asarray(tf.cast(gradient, tf.float32), dtype="float64"),
    )


@pytest.mark.parametrize("case", sorted(EXTREME_CASES))
def test_saturated_predictions_stay_finite(policy: str, case: str) -> None:
    spec, y_true, y_pred = EXTREME_CASES[case]
    half = keras.mixed_precision.Policy(policy).compute_dtype
    loss = lossdsl.load(spec, reduction=None)
    full_value, full_gradient = value_and_gradient(loss, y_true, tf.constant(y_pred))
    half_value, half_gradient = value_and_gradient(loss, y_true, tf.constant(y_pred, half))
    assert np.all(np.isfinite(full_value)), "the float32 loss itself must be finite here"
    assert np.all(np.isfinite(half_value))
    assert np.all(np.isfinite(half_gradient[np.isfinite(full_gradient)]))
    # The half-precision inputs are the float32 ones rounded: 0, 1 and 1e4 (bfloat16 9984).
    np.testing.assert_allclose(half_value, full_value, rtol=2e-2, atol=1e-3)
