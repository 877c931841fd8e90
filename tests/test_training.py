"""A compiled loss trains like the Keras built-in it spells out: same weights after `fit`
with no weights, per-sample and per-element `sample_weight`, `class_weight` and masks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import pytest
from keras_harness import (
    BATCH,
    BINARY_CE,
    CATEGORICAL_CE,
    FEATURES,
    MASKED_SPARSE_CE,
    MASKED_SPARSE_CE_PER_SAMPLE,
    MEAN_SQUARED_ERROR,
    SPARSE_CE_FROM_LOGITS,
    Dataset,
    assert_weights_close,
    dense_classifier,
    make_dataset,
    segmentation_net,
    train,
)

import lossdsl

BATCH_CENTRED_MSE = """
input y: target
input p: real
loss centred_mse = mean(square(p - y - mean(p - y, axis=0)))
"""

CLASS_WEIGHT = {0: 0.5, 1: 2.0, 2: 4.0}


@dataclass(frozen=True)
class Equivalent:
    """A spec, the Keras built-in it equals, the model's activation and the target encoding."""

    spec: str
    builtin: Callable[[], keras.losses.Loss]
    activation: str | None
    targets: Callable[[Dataset], np.ndarray]


EQUIVALENTS = {
    "categorical_ce": Equivalent(
        CATEGORICAL_CE, keras.losses.CategoricalCrossentropy, "softmax", lambda d: d.onehot
    ),
    "sparse_ce_from_logits": Equivalent(
        SPARSE_CE_FROM_LOGITS,
        lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        None,
        lambda d: d.labels,
    ),
    "binary_ce": Equivalent(
        BINARY_CE, keras.losses.BinaryCrossentropy, "sigmoid", lambda d: d.onehot
    ),
    "mse": Equivalent(MEAN_SQUARED_ERROR, keras.losses.MeanSquaredError, None, lambda d: d.real),
}

WEIGHTINGS: dict[str, Callable[[Dataset], dict[str, object]]] = {
    "plain": lambda d: {},
    "sample_weight": lambda d: {"sample_weight": d.sample_weight},
    "class_weight": lambda d: {"class_weight": CLASS_WEIGHT},
}


# Keras turns `class_weight` into per-sample weights from the label (or the one-hot argmax),
# which is meaningful for the classifiers; the other pairs are weighted per sample.
CLASSIFIERS = ("categorical_ce", "sparse_ce_from_logits")
FIT_CASES = [
    (pair, weighting)
    for pair in sorted(EQUIVALENTS)
    for weighting in sorted(WEIGHTINGS)
    if weighting != "class_weight" or pair in CLASSIFIERS
]


@pytest.mark.parametrize(("pair", "weighting"), FIT_CASES)
def test_fit_reaches_the_builtin_weights(pair: str, weighting: str) -> None:
    equivalent, data = EQUIVALENTS[pair], make_dataset()
    targets, fit_arguments = equivalent.targets(data), WEIGHTINGS[weighting](data)
    compiled_weights, compiled_history = train(
        dense_classifier(equivalent.activation),
        lossdsl.load(equivalent.spec),
        data.features,
        targets,
        **fit_arguments,
    )
    builtin_weights, builtin_history = train(
        dense_classifier(equivalent.activation),
        equivalent.builtin(),
        data.features,
        targets,
        **fit_arguments,
    )
    assert_weights_close(compiled_weights, builtin_weights)
    np.testing.assert_allclose(compiled_history, builtin_history, rtol=1e-5)
    assert compiled_history[-1] < compiled_history[0]


def per_element_ce(onehot: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Cross-entropy of every element (sample, time step or pixel), in float64."""
    return -np.sum(onehot * np.log(probabilities.astype("float64")), axis=-1)


@pytest.mark.parametrize(
    ("feature_shape", "make_model"),
    [
        ((5, FEATURES), lambda: dense_classifier("softmax", (5, FEATURES))),
        ((6, 6, FEATURES), segmentation_net),
    ],
    ids=["sequence", "segmentation"],
)
def test_per_element_sample_weight_is_the_lifted_mean(
    feature_shape: tuple[int, ...], make_model: Callable[[], keras.Model]
) -> None:
    data = make_dataset(feature_shape)
    assert data.sample_weight.shape == data.labels.shape  # [N, T] or [N, H, W]
    loss = lossdsl.load(CATEGORICAL_CE)

    batch = slice(0, BATCH)
    probabilities = keras.ops.convert_to_numpy(make_model()(data.features[batch]))
    per_element = per_element_ce(data.onehot[batch], probabilities)
    unreduced = lossdsl.load(CATEGORICAL_CE, reduction=None)(data.onehot[batch], probabilities)
    assert tuple(unreduced.shape) == data.labels[batch].shape
    np.testing.assert_allclose(unreduced, per_element, rtol=1e-5, atol=1e-6)
    weights = data.sample_weight[batch]
    value = loss(data.onehot[batch], probabilities, sample_weight=weights)
    # The spec's outer mean is Keras's reduction: weighted sum over the number of elements.
    np.testing.assert_allclose(value, np.sum(per_element * weights) / weights.size, rtol=1e-5)

    compiled_weights, _ = train(
        make_model(), loss, data.features, data.onehot, sample_weight=data.sample_weight
    )
    builtin_weights, _ = train(
        make_model(),
        keras.losses.CategoricalCrossentropy(),
        data.features,
        data.onehot,
        sample_weight=data.sample_weight,
    )
    assert_weights_close(compiled_weights, builtin_weights)


def labels_with_ignored(data: Dataset) -> np.ndarray:
    """The dataset's labels with every fourth one set to the ignored class -1."""
    labels = data.labels.copy()
    labels[::4] = -1
    return labels


MASKED = {"lifted": MASKED_SPARSE_CE, "per_sample": MASKED_SPARSE_CE_PER_SAMPLE}
"""The lifted mean and the per-sample result (LANGUAGE.md 6.4): both are `ignore_class`."""


@pytest.mark.parametrize("masked", MASKED)
@pytest.mark.parametrize(
    "reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight", None]
)
def test_mask_matches_ignore_class_in_value(reduction: str | None, masked: str) -> None:
    data = make_dataset()
    labels = labels_with_ignored(data)[:BATCH]
    logits = keras.ops.convert_to_numpy(dense_classifier(None)(data.features[:BATCH]))
    compiled = lossdsl.load(MASKED[masked], reduction=reduction)
    builtin = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=-1, reduction=reduction
    )
    for sample_weight in (None, data.sample_weight[:BATCH]):
        expected = keras.ops.convert_to_numpy(builtin(labels, logits, sample_weight=sample_weight))
        actual = keras.ops.convert_to_numpy(compiled(labels, logits, sample_weight=sample_weight))
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("masked", MASKED)
def test_mask_matches_ignore_class_in_training(masked: str) -> None:
    data = make_dataset()
    labels = labels_with_ignored(data)
    compiled_weights, compiled_history = train(
        dense_classifier(None), lossdsl.load(MASKED[masked]), data.features, labels
    )
    builtin_weights, builtin_history = train(
        dense_classifier(None),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1),
        data.features,
        labels,
    )
    assert_weights_close(compiled_weights, builtin_weights)
    np.testing.assert_allclose(compiled_history, builtin_history, rtol=1e-5)


def test_per_element_mask_matches_ignore_class_on_void_pixels() -> None:
    data = make_dataset((6, 6, FEATURES))
    labels = labels_with_ignored(data)
    labels[:, ::3, 1::2] = -1  # void pixels inside every image too
    compiled = lossdsl.load(MASKED_SPARSE_CE_PER_SAMPLE)
    builtin = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    arguments = {"sample_weight": data.sample_weight}
    compiled_weights, compiled_history = train(
        segmentation_net(None), compiled, data.features, labels, **arguments
    )
    builtin_weights, builtin_history = train(
        segmentation_net(None), builtin, data.features, labels, **arguments
    )
    assert_weights_close(compiled_weights, builtin_weights)
    np.testing.assert_allclose(compiled_history, builtin_history, rtol=1e-5)
    assert compiled_history[-1] < compiled_history[0]


def test_batch_coupled_loss_warns_and_still_trains() -> None:
    with pytest.warns(lossdsl.LossSpecWarning, match="batch"):
        loss = lossdsl.load(BATCH_CENTRED_MSE)
    data = make_dataset()
    _, history = train(
        dense_classifier(None), loss, data.features, data.real, sample_weight=data.sample_weight
    )
    assert np.all(np.isfinite(history))
    assert history[-1] < history[0]
