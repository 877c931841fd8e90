"""Compiled losses under XLA: `model.compile(jit_compile=True)` trains to the weights of the
plain run, `lossdsl.load(..., jit_compile=True)` computes the same values (its XLA forms over
many classes included), and a vector param of the wrong length fails at trace time with a
clear ValueError (XLA drops runtime asserts)."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras_harness import (
    BATCH,
    CATEGORICAL_CE,
    FOCAL,
    MASKED_SPARSE_CE,
    WEIGHTED_SPARSE_CE,
    assert_weights_close,
    dense_classifier,
    make_dataset,
    train,
)

import lossdsl
from lossdsl.compiler import compile_source
from lossdsl.source import SourceFile

FOUR_CLASS_WEIGHTS = """
input y: onehot
input p: prob
param w: nonneg = [1.0, 2.5, 4.0, 8.0]
loss per_class_ce = mean(-sum(w * y * log(clip(p))))
"""

# spec, the model's activation, whether it takes labels (with some ignored, -1) or one-hot.
CASES = {
    "categorical_ce": (CATEGORICAL_CE, "softmax", "onehot"),
    "focal": (FOCAL, "softmax", "onehot"),
    "weighted_gather": (WEIGHTED_SPARSE_CE, None, "labels"),
    "mask": (MASKED_SPARSE_CE, None, "labels_with_ignored"),
}

XLA_CASES = sorted(CASES)


def targets_for(encoding: str) -> tuple[np.ndarray, np.ndarray]:
    """The dataset's features and its targets in the given encoding."""
    data = make_dataset()
    labels_with_ignored = data.labels.copy()
    labels_with_ignored[::4] = -1
    targets = {
        "onehot": data.onehot,
        "labels": data.labels,
        "labels_with_ignored": labels_with_ignored,
    }
    return data.features, targets[encoding]


@pytest.mark.parametrize("case", XLA_CASES)
def test_jit_compiled_model_trains_like_the_plain_one(case: str) -> None:
    spec, activation, encoding = CASES[case]
    features, targets = targets_for(encoding)
    xla_weights, xla_history = train(
        dense_classifier(activation), lossdsl.load(spec), features, targets, jit_compile=True
    )
    plain_weights, plain_history = train(
        dense_classifier(activation), lossdsl.load(spec), features, targets, jit_compile=False
    )
    assert_weights_close(xla_weights, plain_weights)
    np.testing.assert_allclose(xla_history, plain_history, rtol=1e-5)
    assert xla_history[-1] < xla_history[0]


@pytest.mark.parametrize("case", XLA_CASES)
def test_load_with_jit_compile_computes_the_same_values(case: str) -> None:
    spec, activation, encoding = CASES[case]
    features, targets = targets_for(encoding)
    predictions = dense_classifier(activation)(features[:BATCH])
    for reduction in ("sum_over_batch_size", None):
        xla_value, xla_gradient = value_and_gradient(
            lossdsl.load(spec, reduction=reduction, jit_compile=True), targets[:BATCH], predictions
        )
        value, gradient = value_and_gradient(
            lossdsl.load(spec, reduction=reduction), targets[:BATCH], predictions
        )
        np.testing.assert_allclose(xla_value, value, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(xla_gradient, gradient, rtol=1e-5, atol=1e-7)


def test_only_a_module_without_xla_takes_the_mean_in_one_function() -> None:
    # XLA fuses Keras's reduction itself (docs/KERAS.md, "The default reduction in one function")
    plain = compile_source(SourceFile.from_text(FOCAL), verify=False)
    xla = compile_source(SourceFile.from_text(FOCAL), verify=False, jit_compile=True)
    assert "def focal_mean(" in plain.python_source
    assert "_mean(" not in xla.python_source and "def __call__" not in xla.python_source


def value_and_gradient(
    loss: keras.losses.Loss, y_true: np.ndarray, y_pred: tf.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """The loss's value and the gradient of its sum with respect to y_pred."""
    with tf.GradientTape() as tape:
        tape.watch(y_pred)
        value = loss(y_true, y_pred)
    return np.asarray(value), np.asarray(tape.gradient(value, y_pred))


def assert_names_param_and_lengths(error: ValueError) -> None:
    """The message names the param `w`, its length 4 and the 3 classes of y_pred."""
    message = str(error)
    assert re.search(r"\bw\b", message), message
    assert re.search(r"\b4\b", message) and re.search(r"\b3\b", message), message


@pytest.mark.parametrize("jit_compile", [False, True])
def test_vector_param_of_the_wrong_length_fails_when_called(jit_compile: bool) -> None:
    features, onehot = targets_for("onehot")
    loss = lossdsl.load(FOUR_CLASS_WEIGHTS, jit_compile=jit_compile)
    probabilities = dense_classifier("softmax")(features[:BATCH])  # three classes
    with pytest.raises(ValueError) as failure:
        loss(onehot[:BATCH], probabilities)
    assert_names_param_and_lengths(failure.value)


def test_vector_param_of_the_wrong_length_fails_in_a_jit_compiled_fit() -> None:
    features, onehot = targets_for("onehot")
    model = dense_classifier("softmax")  # three classes
    model.compile(
        optimizer=keras.optimizers.SGD(0.1), loss=lossdsl.load(FOUR_CLASS_WEIGHTS), jit_compile=True
    )
    with pytest.raises(ValueError) as failure:
        model.fit(features, onehot, batch_size=BATCH, epochs=1, verbose=0)
    assert_names_param_and_lengths(failure.value)


WIDE_SPECS = {
    "ce_logits": ("input y: onehot\ninput z: logits\nloss = mean(-sum(y * log_softmax(z)))", {}),
    "weighted_ce": (
        "input y: onehot\ninput p: prob\nparam w: nonneg = [1.0]\n"
        "loss = mean(w[class(y)] * sum(-y * log(clip(p))))",
        {"w": list(np.linspace(0.5, 2.0, 4000))},
    ),
    "bce_logits": (
        "input y: binary\ninput z: logits\nparam pos_weight: nonneg = 2.0\n"
        "loss = mean(-(pos_weight * y * log(sigmoid(z)) + (1 - y) * log(1 - sigmoid(z))))",
        {},
    ),
    "huber": (
        "input y: target\ninput p: real\n"
        "loss = mean(where(abs(p - y) <= 1, 0.5 * square(p - y), abs(p - y) - 0.5))",
        {},
    ),
    "weighted_ce_classwise": (
        "input y: onehot\ninput p: prob\nparam w: nonneg = [1.0]\n"
        "loss = mean(-sum(w * y * log(clip(p))))",
        {"w": list(np.linspace(0.5, 2.0, 4000))},
    ),
}


@pytest.mark.parametrize("name", sorted(WIDE_SPECS))
def test_xla_forms_over_many_classes_match_the_plain_module(name: str) -> None:
    """4000 classes: blocked class sums, `_class_of` and the logsumexp cross-entropy."""
    text, params = WIDE_SPECS[name]
    rng = np.random.default_rng(6)
    logits = rng.normal(0, 3, (6, 4000)).astype(np.float32)
    if name in ("ce_logits", "weighted_ce", "weighted_ce_classwise"):
        y_true = np.eye(4000, dtype=np.float32)[rng.integers(0, 4000, 6)]
    else:
        y_true = (rng.random((6, 4000)) < 0.5).astype(np.float32)
    probabilities = name.startswith("weighted_ce")
    y_pred = tf.nn.softmax(logits) if probabilities else tf.constant(logits)
    module = compile_source(SourceFile.from_text(text), verify=False, jit_compile=True)
    assert "_over_classes(" in module.python_source
    # a per-class vector in the sum: no blocks, which XLA computes slowly with it
    assert ("blocks=False" in module.python_source) == (name == "weighted_ce_classwise")
    assert ("_class_of(" in module.python_source) == (name == "weighted_ce")
    xla = lossdsl.load(text, jit_compile=True, **params)
    plain = lossdsl.load(text, **params)
    xla_value, xla_gradient = value_and_gradient(xla, y_true, y_pred)
    value, gradient = value_and_gradient(plain, y_true, y_pred)
    np.testing.assert_allclose(xla_value, value, rtol=1e-6)
    np.testing.assert_allclose(xla_gradient, gradient, rtol=1e-5, atol=1e-12)
