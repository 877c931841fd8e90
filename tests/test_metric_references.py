"""The metric-learning references (tests/metric_references.py) against brute-force NumPy loops.

Each loop walks the anchors, pairs and triplets of a small batch one at a time in float64,
written from the loss's definition (and, for TensorFlow Addons, from the loops of its own
tests, tensorflow_addons/losses/tests/triplet_test.py), so the vectorised references the
library tests use are trusted. The batches include anchors without a positive, without a
negative, a batch of one label and a batch of distinct labels. Gradients of the
references are checked to be finite there, and against central differences.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import metric_references as refs
import numpy as np
import pytest
import tensorflow as tf
from tolerances import ulps

Loop = Callable[..., float]
"""A brute-force loop: labels, embeddings (float64 NumPy), params -> the batch's value."""

LABEL_SETS = {
    "mixed": np.array([0, 1, 0, 2, 1, 0, 3, 2]),  # label 3: an anchor without a positive
    "one_label": np.zeros(6, dtype=np.int64),  # no negatives
    "distinct": np.arange(6),  # no positives
    "pairs": np.array([0, 0, 1, 1, 2, 2]),  # SimCLR's two views
}


def _distances(e: np.ndarray) -> np.ndarray:
    batch = len(e)
    return np.array([[math.dist(e[i], e[j]) for j in range(batch)] for i in range(batch)])


def _cosines(e: np.ndarray) -> np.ndarray:
    batch = len(e)
    unit = [e[i] / max(float(np.linalg.norm(e[i])), 1e-6) for i in range(batch)]
    return np.array([[float(unit[i] @ unit[j]) for j in range(batch)] for i in range(batch)])


def _logsumexp(values: list[float]) -> float:
    if not values:
        return -math.inf
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x))) if x > -math.inf else 0.0


def _positives(y: np.ndarray, i: int) -> list[int]:
    return [j for j in range(len(y)) if y[j] == y[i] and j != i]


def _negatives(y: np.ndarray, i: int) -> list[int]:
    return [k for k in range(len(y)) if y[k] != y[i]]


# ---------------------------------------------------------------- loops


def circle_loop(
    y: np.ndarray,
    e: np.ndarray,
    gamma: float = 80.0,
    margin: float = 0.4,
    remove_diagonal: bool = True,
) -> float:
    """keras.losses.Circle: softplus(lse_p + lse_n) per anchor, mean over anchors with loss > 0."""
    losses = []
    for i in range(len(y)):
        positives = [j for j in range(len(y)) if y[j] == y[i] and (j != i or not remove_diagonal)]
        d = [max(1 - float(e[i] @ e[j]), 0.0) for j in range(len(y))]
        p = [-gamma * max(margin + d[j], 0) * (margin - d[j]) for j in positives]
        n = [gamma * max(1 + margin - d[k], 0) * (1 - margin - d[k]) for k in _negatives(y, i)]
        losses.append(_softplus(_logsumexp(p) + _logsumexp(n)))
    counted = [loss for loss in losses if loss > 0]
    return sum(counted) / len(counted) if counted else 0.0


def triplet_batch_hard_loop(y: np.ndarray, e: np.ndarray, margin: float = 1.0) -> float:
    """TensorFlow Addons' triplet_hard_loss_np; without negatives, the largest distance."""
    d = _distances(e)
    total = 0.0
    for i in range(len(y)):
        hardest_positive = max([d[i, j] for j in _positives(y, i)], default=0.0)
        negatives = [d[i, k] for k in _negatives(y, i)]
        hardest_negative = min(negatives) if negatives else max(d[i])
        total += max(hardest_positive - hardest_negative + margin, 0.0)
    return total / len(y)


def triplet_semihard_loop(y: np.ndarray, e: np.ndarray, margin: float = 1.0) -> float:
    """TensorFlow Addons' triplet_semihard_loss_np; 0 for a batch without positive pairs."""
    d = _distances(e)
    total, pairs = 0.0, 0
    for i in range(len(y)):
        negatives = sorted(d[i, k] for k in _negatives(y, i))
        for j in _positives(y, i):
            pairs += 1
            farther = [n for n in negatives if n > d[i, j]]
            chosen = farther[0] if farther else (negatives[-1] if negatives else 0.0)
            total += max(margin - chosen + d[i, j], 0.0)
    return total / pairs if pairs else 0.0


def triplet_batch_all_loop(y: np.ndarray, e: np.ndarray, margin: float = 1.0) -> float:
    """The mean of the hinge over every valid triplet (0 for a batch without one)."""
    d = _distances(e)
    hinges = [
        max(d[i, j] - d[i, k] + margin, 0.0)
        for i in range(len(y))
        for j in _positives(y, i)
        for k in _negatives(y, i)
    ]
    return sum(hinges) / len(hinges) if hinges else 0.0


def lifted_structured_loop(y: np.ndarray, e: np.ndarray, margin: float = 1.0) -> float:
    """Oh Song et al. 2016, eq. 4, over unordered positive pairs (0 without one)."""
    d = _distances(e)
    total, pairs = 0.0, 0
    for i in range(len(y)):
        for j in _positives(y, i):
            if j < i:
                continue
            pairs += 1
            terms = [margin - d[i, k] for k in _negatives(y, i)]
            terms += [margin - d[j, k] for k in _negatives(y, j)]
            if terms:
                total += max(_logsumexp(terms) + d[i, j], 0.0) ** 2
    return total / (2 * pairs) if pairs else 0.0


def _counted_mean(values: list[float | None]) -> float:
    counted = [value for value in values if value is not None]
    return sum(counted) / len(counted) if counted else 0.0


def nt_xent_loop(y: np.ndarray, e: np.ndarray, temperature: float = 0.1) -> float:
    """-log(sum_p exp(s_ip / t) / sum_{k != i} exp(s_ik / t)) over anchors with a positive."""
    s = _cosines(e) / temperature
    values: list[float | None] = []
    for i in range(len(y)):
        positives = _positives(y, i)
        others = [s[i, k] for k in range(len(y)) if k != i]
        values.append(
            _logsumexp(others) - _logsumexp([s[i, j] for j in positives]) if positives else None
        )
    return _counted_mean(values)


def supervised_contrastive_loop(y: np.ndarray, e: np.ndarray, temperature: float = 0.07) -> float:
    """Khosla et al. 2020, L_out, over anchors with a positive."""
    s = _cosines(e) / temperature
    values: list[float | None] = []
    for i in range(len(y)):
        positives = _positives(y, i)
        others = [s[i, k] for k in range(len(y)) if k != i]
        log_probs = [s[i, j] - _logsumexp(others) for j in positives]
        values.append(-sum(log_probs) / len(log_probs) if positives else None)
    return _counted_mean(values)


def multi_similarity_loop(
    y: np.ndarray,
    e: np.ndarray,
    alpha: float = 2.0,
    beta: float = 50.0,
    base: float = 0.5,
    margin: float = 0.1,
) -> float:
    """The authors' loop (msight-tech/research-ms-loss), self pairs left out by index."""
    s = _cosines(e)
    total = 0.0
    for i in range(len(y)):
        positive_sims = [s[i, j] for j in _positives(y, i)]
        negative_sims = [s[i, k] for k in _negatives(y, i)]
        if not positive_sims or not negative_sims:
            continue
        kept_negatives = [n for n in negative_sims if n + margin > min(positive_sims)]
        kept_positives = [p for p in positive_sims if p - margin < max(negative_sims)]
        if not kept_negatives or not kept_positives:
            continue
        total += math.log1p(sum(math.exp(-alpha * (p - base)) for p in kept_positives)) / alpha
        total += math.log1p(sum(math.exp(beta * (n - base)) for n in kept_negatives)) / beta
    return total / len(y)


CASES: dict[str, tuple[refs.MetricFn, Loop, list[dict[str, Any]]]] = {
    "circle": (refs.circle, circle_loop, [{}, {"gamma": 256.0, "margin": 0.25}]),
    "triplet_batch_hard": (refs.triplet_batch_hard, triplet_batch_hard_loop, [{}, {"margin": 0.3}]),
    "triplet_semihard": (refs.triplet_semihard, triplet_semihard_loop, [{}, {"margin": 0.3}]),
    "triplet_batch_all": (refs.triplet_batch_all, triplet_batch_all_loop, [{}, {"margin": 0.3}]),
    "lifted_structured": (refs.lifted_structured, lifted_structured_loop, [{}, {"margin": 2.0}]),
    "nt_xent": (refs.nt_xent, nt_xent_loop, [{}, {"temperature": 0.5}]),
    "supervised_contrastive": (
        refs.supervised_contrastive,
        supervised_contrastive_loop,
        [{}, {"temperature": 0.5}],
    ),
    "multi_similarity": (
        refs.multi_similarity,
        multi_similarity_loop,
        [{}, {"alpha": 1.0, "beta": 10.0, "base": 0.2, "margin": 0.3}],
    ),
}

UNIT_NORM = {"circle"}
"""Losses that expect unit-norm embeddings (Keras's Circle does not normalise them)."""


def embeddings(name: str, batch: int, seed: int) -> np.ndarray:
    """Random float64 embeddings [batch, 4]; unit rows for Circle."""
    e = np.random.default_rng(seed).normal(size=(batch, 4))
    return e / np.linalg.norm(e, axis=1, keepdims=True) if name in UNIT_NORM else e


def reference_value(name: str, y: np.ndarray, e: tf.Tensor, **params: Any) -> tf.Tensor:
    """The reference reduced by Keras (sum_over_batch_size, mask included)."""
    fn = CASES[name][0]
    reference = refs.MetricReference(fn, dtype=e.dtype.name, **params)
    return reference(tf.constant(y, tf.int32), e)


@pytest.mark.parametrize("labels", sorted(LABEL_SETS))
@pytest.mark.parametrize("name", sorted(CASES))
def test_reference_matches_the_brute_force_loop(name: str, labels: str) -> None:
    _, loop, param_sets = CASES[name]
    y = LABEL_SETS[labels]
    for seed, params in enumerate(param_sets):
        e = embeddings(name, len(y), seed)
        got = float(reference_value(name, y, tf.constant(e, tf.float64), **params))
        want = loop(y, e, **params)
        np.testing.assert_allclose(got, want, rtol=ulps(np.float64, 256), atol=1e-300)


@pytest.mark.parametrize("labels", sorted(LABEL_SETS))
@pytest.mark.parametrize("name", sorted(CASES))
def test_reference_gradient_is_finite_and_matches_central_differences(
    name: str, labels: str
) -> None:
    y = LABEL_SETS[labels]
    e = embeddings(name, len(y), 7)
    variable = tf.constant(e, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(variable)
        value = reference_value(name, y, variable)
    gradient = tape.gradient(value, variable)
    gradient = np.zeros_like(e) if gradient is None else gradient.numpy()
    assert np.all(np.isfinite(gradient))
    step = 1e-6
    numeric = np.zeros_like(e)
    for index in np.ndindex(*e.shape):
        shifted = [e.copy(), e.copy()]
        shifted[0][index] += step
        shifted[1][index] -= step
        up, down = (float(reference_value(name, y, tf.constant(s, tf.float64))) for s in shifted)
        numeric[index] = (up - down) / (2 * step)
    # central differences of smooth pieces: error O(step^2) times the third derivative
    scale = max(float(np.max(np.abs(numeric))), 1.0)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("name", sorted(CASES))
def test_reference_returns_one_value_per_anchor_in_the_embeddings_dtype(name: str) -> None:
    fn, _, _ = CASES[name]
    y = LABEL_SETS["mixed"]
    for dtype in (tf.float32, tf.float64):
        values = fn(tf.constant(y[:, None]), tf.constant(embeddings(name, len(y), 3), dtype))
        assert values.shape == (len(y),) and values.dtype == dtype


def test_tensorflow_addons_doctest_values() -> None:
    # triplet.py's docstrings: labels [0, 0], embeddings [[0, 1], [1, 0]], "L2"
    y = tf.constant([0, 0])
    e = tf.constant([[0.0, 1.0], [1.0, 0.0]])
    semihard = refs.MetricReference(refs.triplet_semihard)(y, e)
    hard = refs.MetricReference(refs.triplet_batch_hard)(y, e)
    np.testing.assert_allclose(
        [float(semihard), float(hard)], [2.4142137, 1.0], rtol=ulps(np.float32)
    )


def test_circle_reference_is_keras_circle_with_its_mask() -> None:
    # Keras's CircleTest data: label 3 has no positive, so its loss (0) is not counted
    y, e = np.array([0, 0, 1, 1, 2]), embeddings("circle", 5, 0)
    per_anchor = keras.losses.Circle(reduction=None)(y, e).numpy()
    assert per_anchor[-1] == 0
    mean = keras.losses.Circle()(y, e).numpy()
    np.testing.assert_allclose(mean, per_anchor[:4].mean(), rtol=ulps(np.float32))


@pytest.mark.parametrize("case", sorted(refs.KERAS_CIRCLE_CASES))
def test_keras_circle_cases_are_transcribed_as_keras_passes_them(case: str) -> None:
    data = refs.KERAS_CIRCLE_CASES[case]
    got = refs.replay_circle_case(keras.losses.Circle, data)
    np.testing.assert_allclose(got, data["expected"], rtol=data["rtol"], atol=data["atol"])
