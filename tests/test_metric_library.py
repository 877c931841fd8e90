"""The metric-learning specs (examples/) against tests/metric_references.py.

Each spec, loaded with `lossdsl.load`, is compared with its hand-written TensorFlow
reference (keras.losses.Circle itself for circle.loss): per-anchor values
(`reduction=None`), the sample-weighted mean and its gradient with respect to the
embeddings, in float32 and float64, with default and other params; then at extreme inputs
(large and tiny embeddings, a batch of one label, a batch of distinct labels), where value
and gradient must be finite and still agree; and Keras's own Circle test cases are
replayed on circle.loss.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import keras
import metric_references as refs
import numpy as np
import pytest
import tensorflow as tf
from tolerances import ulps

import lossdsl

METRIC_EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

REFERENCES: dict[str, tuple[refs.MetricFn, list[dict[str, Any]]]] = {
    "circle": (refs.circle, [{}, {"gamma": 256.0, "margin": 0.25}, {"remove_diagonal": 0.0}]),
    "triplet_batch_hard": (refs.triplet_batch_hard, [{}, {"margin": 0.2}]),
    "triplet_semihard": (refs.triplet_semihard, [{}, {"margin": 0.2}]),
    "triplet_batch_all": (refs.triplet_batch_all, [{}, {"margin": 0.2}]),
    "lifted_structured": (refs.lifted_structured, [{}, {"margin": 2.0}]),
    "nt_xent": (refs.nt_xent, [{}, {"temperature": 0.5}]),
    "supervised_contrastive": (refs.supervised_contrastive, [{}, {"temperature": 0.5}]),
    "multi_similarity": (
        refs.multi_similarity,
        [{}, {"alpha": 1.0, "beta": 10.0, "base": 0.2, "margin": 0.3}],
    ),
}
ON_THE_SPHERE = {"circle"}
"""Keras's Circle takes unit-norm embeddings (it does not normalise them). The tests put
them at norm 0.9: on the sphere a sample with itself sits at the kink of
max(1 - e_i . e_j, 0), where rounding decides whether the gradient of a pair with itself
(a positive when remove_diagonal is 0) passes, in Keras as in the spec."""

TOLERANCES = {tf.float32: ulps(np.float32, 256), tf.float64: ulps(np.float64, 256)}
"""Relative tolerances: the spec and the reference sum pairs and triplets in other orders."""

BATCH, DIM = 8, 5
LABELS = {
    "mixed": np.array([0, 1, 0, 2, 1, 0, 3, 2]),  # label 3 has no positive
    "pairs": np.array([3, 0, 1, 3, 2, 0, 1, 2]),  # two views per id, in no order
    "one_label": np.zeros(BATCH, dtype=np.int64),  # no negatives
    "distinct": np.arange(BATCH),  # no positives
}


@functools.cache
def spec_path(name: str) -> Path:
    path = METRIC_EXAMPLES / f"{name}.loss"
    assert path.is_file(), path
    return path


def spec_loss(name: str, reduction: str | None, dtype: tf.DType, **params: Any) -> Any:
    return lossdsl.load(spec_path(name), reduction=reduction, dtype=dtype.name, **params)


def reference_loss(name: str, reduction: str | None, dtype: tf.DType, **params: Any) -> Any:
    return refs.MetricReference(REFERENCES[name][0], reduction, dtype=dtype.name, **params)


def embeddings(name: str, seed: int, scale: float = 1.0) -> np.ndarray:
    e = np.random.default_rng(seed).normal(size=(BATCH, DIM))
    if name in ON_THE_SPHERE:
        e *= 0.9 / np.linalg.norm(e, axis=1, keepdims=True)
    return scale * e


def evaluate(
    loss: keras.losses.Loss,
    y: np.ndarray,
    e: np.ndarray,
    dtype: tf.DType,
    weights: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The loss's value and its gradient with respect to the embeddings."""
    embedding = tf.constant(e, dtype)
    with tf.GradientTape() as tape:
        tape.watch(embedding)
        value = loss(
            tf.constant(y, tf.int32),
            embedding,
            sample_weight=None if weights is None else tf.constant(weights, dtype),
        )
        total = tf.reduce_sum(value)
    gradient = tape.gradient(total, embedding)
    assert gradient is not None
    return value.numpy(), gradient.numpy()


def assert_agree(
    got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray], dtype: tf.DType
) -> None:
    for actual, expected, what in zip(got, want, ("value", "gradient"), strict=True):
        assert actual.dtype == dtype.as_numpy_dtype, what
        assert np.all(np.isfinite(actual)), what
        scale = max(float(np.max(np.abs(expected))), 1.0)
        rtol = TOLERANCES[dtype]
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


DTYPES = pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=["float32", "float64"])


@DTYPES
@pytest.mark.parametrize("labels", ["mixed", "pairs"])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_spec_matches_its_reference(name: str, labels: str, dtype: tf.DType) -> None:
    y = LABELS[labels]
    weights = np.random.default_rng(5).uniform(0.2, 2.0, size=BATCH)
    for seed, params in enumerate(REFERENCES[name][1]):
        e = embeddings(name, seed)
        for reduction, sample_weight in ((None, None), ("sum_over_batch_size", weights)):
            got = evaluate(spec_loss(name, reduction, dtype, **params), y, e, dtype, sample_weight)
            want = evaluate(
                reference_loss(name, reduction, dtype, **params), y, e, dtype, sample_weight
            )
            assert_agree(got, want, dtype)


@DTYPES
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_labels_with_a_trailing_axis_give_the_same_loss(name: str, dtype: tf.DType) -> None:
    y, e = LABELS["mixed"], embeddings(name, 1)
    flat = evaluate(spec_loss(name, None, dtype), y, e, dtype, None)
    column = evaluate(spec_loss(name, None, dtype), y[:, None], e, dtype, None)
    assert_agree(column, flat, dtype)


@DTYPES
@pytest.mark.parametrize("scale", [1e3, 1e-3], ids=["large", "tiny"])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_extreme_embeddings_give_finite_values_and_gradients(
    name: str, scale: float, dtype: tf.DType
) -> None:
    y, e = LABELS["mixed"], embeddings(name, 2, scale)
    got = evaluate(spec_loss(name, "sum_over_batch_size", dtype), y, e, dtype, None)
    want = evaluate(reference_loss(name, "sum_over_batch_size", dtype), y, e, dtype, None)
    assert_agree(got, want, dtype)


@DTYPES
@pytest.mark.parametrize("labels", ["one_label", "distinct"])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_batches_without_negatives_or_positives_stay_finite(
    name: str, labels: str, dtype: tf.DType
) -> None:
    y, e = LABELS[labels], embeddings(name, 3)
    for reduction in (None, "sum_over_batch_size"):
        got = evaluate(spec_loss(name, reduction, dtype), y, e, dtype, None)
        want = evaluate(reference_loss(name, reduction, dtype), y, e, dtype, None)
        assert_agree(got, want, dtype)


@pytest.mark.parametrize("case", sorted(refs.KERAS_CIRCLE_CASES))
def test_keras_circle_cases_replayed_on_the_spec(case: str) -> None:
    data = refs.KERAS_CIRCLE_CASES[case]
    circle = functools.partial(lossdsl.load, spec_path("circle"))
    got = refs.replay_circle_case(circle, data)
    np.testing.assert_allclose(got, data["expected"], rtol=data["rtol"], atol=data["atol"])
    keras_value = refs.replay_circle_case(keras.losses.Circle, data)
    np.testing.assert_allclose(got, keras_value, rtol=TOLERANCES[tf.float32])


def test_circle_defaults_are_keras_defaults() -> None:
    loss = lossdsl.load(spec_path("circle"))
    config = loss.get_config()
    assert (config["gamma"], config["margin"], config["remove_diagonal"]) == (80.0, 0.4, 1.0)
