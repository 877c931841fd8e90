"""`x[class(y)]` on a per-class value (not only a vector param) picks the true class's entry."""

from __future__ import annotations

import keras
import numpy as np

import lossdsl


def test_log_softmax_at_the_label_is_sparse_categorical_crossentropy() -> None:
    compiled = lossdsl.compile("input y: label\ninput z: logits\nloss = mean(-log_softmax(z)[y])")
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 5)).astype("float32")
    labels = np.array([0, 4, 2, 2, 1, 3])
    loss = compiled.loss_class()
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    np.testing.assert_allclose(float(loss(labels, logits)), float(expected), rtol=1e-6)


def test_a_probability_at_the_argmax_of_a_onehot_target() -> None:
    compiled = lossdsl.compile(
        "input y: onehot\ninput p: prob\nloss = mean(-log(clip(p[class(y)])))"
    )
    targets = np.eye(3, dtype="float32")[[2, 0, 1]]
    probabilities = np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2], [0.1, 0.8, 0.1]], "float32")
    values = compiled.per_sample_function(targets, probabilities)
    np.testing.assert_allclose(values.numpy(), -np.log([0.5, 0.6, 0.8]), rtol=1e-6)
