"""Speed and accuracy of compiled lossdsl losses beside Keras built-ins, fused ops and plain TF.

Every variant of a case (the compiled loss, the Keras built-in, the fused `tf.nn` op where
one exists, the usual hand-written TensorFlow, and a memory floor) computes the loss and
its gradient with respect to y_pred inside one `tf.function`, with and without
`jit_compile=True`. The variants run interleaved in one process (A B C A B C ..., the
order reversed every other round), and every ratio is the median over rounds of the
ratio measured within one round, so drifts in machine load cancel out. The accuracy
part compares values and gradients with a float64 NumPy reference at moderate extremes
and counts non-finite results on an edge grid in float32 and float16.

Run `python benchmarks/bench_losses.py --help`; benchmarks/README.md explains the columns.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

import lossdsl

SPEC_DIR = Path(__file__).resolve().parent / "specs"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_losses.json"
EPS = 1e-7  # Keras's default epsilon, the `eps` of the specs
ALPHA, GAMMA = 0.25, 2.0  # focal
POS_WEIGHT = 2.0  # weighted binary cross-entropy
DELTA = 1.0  # Huber
FULL_SHAPES = ((4096, 10), (1024, 1000), (256, 32000))
QUICK_SHAPES = ((64, 10), (16, 100))
COMPILED = "lossdsl"
COMPILED_PLAIN = "lossdsl-plain"  # with XLA only: loaded without jit_compile (no XLA forms)
KERAS = "keras"
FUSED = "fused"
HAND_WRITTEN = "hand-written"
FLOOR = "floor"

Array = np.ndarray
LossFunction = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]  # (y_true, y_pred) -> scalar
Reference = Callable[[Array, Array], tuple[float, Array]]  # float64 value and gradient
Inputs = tuple[Array, Array]  # y_true, y_pred in float64


# ---------------------------------------------------------------------- inputs


def class_weights(num_classes: int) -> Array:
    """The per-class weights of the weighted case: evenly spaced from 0.5 to 4."""
    return np.linspace(0.5, 4.0, num_classes)


def onehot_labels(rng: np.random.Generator, batch: int, num_classes: int) -> Array:
    return np.eye(num_classes)[rng.integers(0, num_classes, batch)]


def softmax64(logits: Array) -> Array:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def typical_probabilities(rng: np.random.Generator, batch: int, num_classes: int) -> Inputs:
    return onehot_labels(rng, batch, num_classes), softmax64(rng.normal(0, 2, (batch, num_classes)))


def typical_logits(rng: np.random.Generator, batch: int, num_classes: int) -> Inputs:
    return onehot_labels(rng, batch, num_classes), rng.normal(0, 3, (batch, num_classes))


def typical_binary(rng: np.random.Generator, batch: int, num_classes: int) -> Inputs:
    labels = rng.integers(0, 2, (batch, num_classes)).astype(np.float64)
    return labels, rng.normal(0, 3, (batch, num_classes))


def typical_regression(rng: np.random.Generator, batch: int, num_classes: int) -> Inputs:
    targets = rng.normal(0, 1, (batch, num_classes))
    return targets, targets + rng.normal(0, 2, (batch, num_classes))


def extreme_probabilities(rng: np.random.Generator, batch: int, num_classes: int) -> Inputs:
    """Rows summing to 1 in float64 where a quarter of the entries are 1e-9.

    Every other row puts 1e-9 on the true class (a confident mistake). No entry exceeds
    0.999, so the upper clip bound (1 - 1e-7, not representable in float32) never acts.
    """
    labels = onehot_labels(rng, batch, num_classes)
    raw = softmax64(rng.normal(0, 2, (batch, num_classes)))
    tiny = rng.random((batch, num_classes)) < 0.25
    tiny[::2] |= labels[::2].astype(bool)
    raw = np.minimum(np.where(tiny, 0.0, raw), 0.9)
    scale = (1 - 1e-9 * tiny.sum(axis=-1, keepdims=True)) / raw.sum(axis=-1, keepdims=True)
    return labels, np.where(tiny, 1e-9, raw * scale)


def extreme_logits(rng: np.random.Generator, batch: int, num_classes: int) -> Inputs:
    """Logits in [-30, 30], each row holding both ends."""
    logits = rng.uniform(-30, 30, (batch, num_classes))
    logits[:, 0], logits[:, -1] = 30.0, -30.0
    labels = onehot_labels(rng, batch, num_classes)
    return labels, logits


def extreme_binary(rng: np.random.Generator, batch: int, num_classes: int) -> Inputs:
    labels = rng.integers(0, 2, (batch, num_classes)).astype(np.float64)
    return labels, rng.choice([-30.0, -10.0, 10.0, 30.0], (batch, num_classes))


def extreme_regression(rng: np.random.Generator, batch: int, num_classes: int) -> Inputs:
    """Residuals up to 1e4 in size (the linear branch), a quarter below delta."""
    targets = rng.normal(0, 1, (batch, num_classes))
    residuals = rng.choice([-1e4, -1e2, 1e2, 1e4], (batch, num_classes))
    small = rng.random((batch, num_classes)) < 0.25
    residuals = np.where(small, rng.uniform(-0.9, 0.9, (batch, num_classes)), residuals)
    return targets, targets + residuals


def edge_probabilities(num_classes: int) -> Inputs:
    """Predictions that are exactly 0 and 1: right, wrong, and uniform."""
    labels = np.eye(num_classes)[[0, 1, 2, 0]]
    predictions = np.eye(num_classes)[[0, 0, 1, 0]]
    predictions[3] = 1.0 / num_classes
    return labels, predictions


def edge_logits(num_classes: int) -> Inputs:
    labels = np.eye(num_classes)[[0, 1, 0, 2]]
    logits = np.full((4, num_classes), -1e4)
    logits[0, 0] = logits[1, 0] = 1e4
    logits[2] = 1e4
    logits[3, 2] = 0.0
    return labels, logits


def edge_binary(num_classes: int) -> Inputs:
    labels = np.zeros((4, num_classes))
    labels[1::2] = 1.0
    logits = np.full((4, num_classes), 1e4)
    logits[2:] = -1e4
    return labels, logits


def edge_regression(num_classes: int) -> Inputs:
    targets = np.zeros((4, num_classes))
    predictions = np.array([[1e4], [-1e4], [0.0], [DELTA]]) * np.ones((1, num_classes))
    return targets, predictions


# ---------------------------------------------------------------------- references


def sigmoid64(x: Array) -> Array:
    return np.where(
        x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x)))
    )


def clipped(p: Array) -> tuple[Array, Array]:
    """clip(p) and where its gradient passes (TF passes it on the closed interval)."""
    return np.clip(p, EPS, 1 - EPS), (p >= EPS) & (p <= 1 - EPS)


def through_renormalisation(
    p: Array, per_q: Callable[[Array], tuple[Array, Array]]
) -> tuple[Array, Array]:
    """Per-sample values and d/dp of a loss of q = p / sum(p), given its values and d/dq."""
    total = p.sum(axis=-1, keepdims=True)
    q = p / total
    values, gradient_q = per_q(q)
    return values, (gradient_q - (gradient_q * q).sum(axis=-1, keepdims=True)) / total


def cross_entropy_terms(y: Array, p: Array, weights: Array) -> tuple[Array, Array]:
    q, active = clipped(p)
    values = weights * (-y * np.log(q)).sum(axis=-1)
    return values, np.where(active, -weights[:, None] * y / q, 0.0)


def focal_terms(y: Array, p: Array) -> tuple[Array, Array]:
    q, active = clipped(p)
    values = (-ALPHA * (1 - q) ** GAMMA * y * np.log(q)).sum(axis=-1)
    derivative = -GAMMA * (1 - q) ** (GAMMA - 1) * np.log(q) + (1 - q) ** GAMMA / q
    return values, np.where(active, -ALPHA * y * derivative, 0.0)


def batch_mean(per_sample: tuple[Array, Array]) -> tuple[float, Array]:
    values, gradient = per_sample
    return float(np.mean(values)), gradient / values.shape[0]


def element_mean(values: Array, gradient: Array) -> tuple[float, Array]:
    return float(np.mean(values)), gradient / values.size


def reference_ce_prob(y: Array, p: Array, renormalise: bool) -> tuple[float, Array]:
    ones = np.ones(len(y))
    if renormalise:
        return batch_mean(through_renormalisation(p, lambda q: cross_entropy_terms(y, q, ones)))
    return batch_mean(cross_entropy_terms(y, p, ones))


def reference_weighted_ce(y: Array, p: Array, renormalise: bool) -> tuple[float, Array]:
    weights = class_weights(y.shape[-1])[np.argmax(y, axis=-1)]
    if renormalise:
        return batch_mean(through_renormalisation(p, lambda q: cross_entropy_terms(y, q, weights)))
    return batch_mean(cross_entropy_terms(y, p, weights))


def reference_focal(y: Array, p: Array, renormalise: bool) -> tuple[float, Array]:
    if renormalise:
        return batch_mean(through_renormalisation(p, lambda q: focal_terms(y, q)))
    return batch_mean(focal_terms(y, p))


def reference_ce_logits(y: Array, z: Array) -> tuple[float, Array]:
    shifted = z - z.max(axis=-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    values = -(y * log_softmax).sum(axis=-1)
    return batch_mean((values, np.exp(log_softmax) * y.sum(axis=-1, keepdims=True) - y))


def reference_weighted_bce(y: Array, z: Array, pos_weight: float) -> tuple[float, Array]:
    values = pos_weight * y * np.logaddexp(0, -z) + (1 - y) * np.logaddexp(0, z)
    gradient = -pos_weight * y * sigmoid64(-z) + (1 - y) * sigmoid64(z)
    return element_mean(values, gradient)


def reference_huber(y: Array, p: Array) -> tuple[float, Array]:
    e = p - y
    quadratic = np.abs(e) <= DELTA
    values = np.where(quadratic, 0.5 * e**2, DELTA * np.abs(e) - 0.5 * DELTA**2)
    return element_mean(values, np.clip(e, -DELTA, DELTA))


# ---------------------------------------------------------------------- variants


def keras_loss(loss: keras.losses.Loss) -> LossFunction:
    """A Keras loss called as Keras calls it: `loss(y_true, y_pred)`, with its reduction."""
    return lambda y_true, y_pred: loss(y_true, y_pred)


def compiled_loss(spec: str, jit_compile: bool, dtype: str, **params: Any) -> LossFunction:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lossdsl.LossSpecWarning)
        loss = lossdsl.load(SPEC_DIR / spec, jit_compile=jit_compile, dtype=dtype, **params)
    return keras_loss(loss)


def clip(x: tf.Tensor) -> tf.Tensor:
    return tf.clip_by_value(x, EPS, 1 - EPS)


def gathered_weights(num_classes: int, dtype: str) -> Callable[[tf.Tensor], tf.Tensor]:
    weights = tf.constant(class_weights(num_classes), dtype=dtype)
    return lambda y_true: tf.gather(weights, tf.argmax(y_true, axis=-1))


def hand_ce_prob(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(-tf.reduce_sum(y * tf.math.log(clip(p)), axis=-1))


def hand_ce_logits(y: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    return hand_ce_prob(y, tf.nn.softmax(z))


def hand_focal(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    q = clip(p)
    return tf.reduce_mean(
        tf.reduce_sum(-ALPHA * tf.pow(1 - q, GAMMA) * y * tf.math.log(q), axis=-1)
    )


def hand_weighted_bce(y: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    q = clip(tf.sigmoid(z))
    return tf.reduce_mean(-(POS_WEIGHT * y * tf.math.log(q) + (1 - y) * tf.math.log(1 - q)))


def hand_huber(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    e = p - y
    size = tf.abs(e)
    per_element = tf.where(size <= DELTA, 0.5 * tf.square(e), DELTA * size - 0.5 * DELTA**2)
    return tf.reduce_mean(tf.reduce_mean(per_element, axis=-1))


def fused_ce_logits(y: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=z))


def fused_weighted_bce(y: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.nn.weighted_cross_entropy_with_logits(y, z, POS_WEIGHT))


def weighted_keras_ce(num_classes: int, dtype: str) -> LossFunction:
    """Keras's categorical cross-entropy with w[class(y)] as the sample weight."""
    loss = keras.losses.CategoricalCrossentropy(dtype=dtype)
    weights = gathered_weights(num_classes, dtype)
    return lambda y_true, y_pred: loss(y_true, y_pred, sample_weight=weights(y_true))


def weighted_hand_ce(num_classes: int, dtype: str) -> LossFunction:
    weights = gathered_weights(num_classes, dtype)

    def loss(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
        return tf.reduce_mean(weights(y) * -tf.reduce_sum(y * tf.math.log(clip(p)), axis=-1))

    return loss


VariantBuilder = Callable[[int, bool, str], LossFunction]  # (num_classes, jit, dtype)


@dataclass(frozen=True)
class Case:
    """One loss: its spec, its peers, its inputs and its float64 references.

    `keras_reference` is the Keras built-in's own definition where it differs from the
    spec's (Keras renormalises probabilities to sum to 1 before clipping; its binary
    cross-entropy has no positive weight).
    """

    name: str
    description: str
    compiled: VariantBuilder
    keras: VariantBuilder
    hand_written: VariantBuilder
    typical_inputs: Callable[[np.random.Generator, int, int], Inputs]
    extreme_inputs: Callable[[np.random.Generator, int, int], Inputs]
    edge_inputs: Callable[[int], Inputs]
    reference: Reference
    keras_reference: Reference
    fused: VariantBuilder | None = None
    keras_note: str = ""

    def variants(self, num_classes: int, jit_compile: bool) -> dict[str, LossFunction]:
        built = {
            COMPILED: self.compiled(num_classes, jit_compile, "float32"),
            KERAS: self.keras(num_classes, jit_compile, "float32"),
        }
        if self.fused is not None:
            built[FUSED] = self.fused(num_classes, jit_compile, "float32")
        built[HAND_WRITTEN] = self.hand_written(num_classes, jit_compile, "float32")
        if jit_compile:
            built[COMPILED_PLAIN] = self.compiled(num_classes, False, "float32")
        return built


def fixed(function: LossFunction) -> VariantBuilder:
    return lambda num_classes, jit_compile, dtype: function


def spec(file_name: str, **params: Any) -> VariantBuilder:
    return lambda num_classes, jit_compile, dtype: compiled_loss(
        file_name, jit_compile, dtype, **params
    )


def built_in(make: Callable[..., keras.losses.Loss], **arguments: Any) -> VariantBuilder:
    return lambda num_classes, jit_compile, dtype: keras_loss(make(dtype=dtype, **arguments))


CASES: dict[str, Case] = {
    case.name: case
    for case in (
        Case(
            name="ce_prob",
            description="categorical cross-entropy on probabilities",
            compiled=spec("ce_prob.loss"),
            keras=built_in(keras.losses.CategoricalCrossentropy),
            hand_written=fixed(hand_ce_prob),
            typical_inputs=typical_probabilities,
            extreme_inputs=extreme_probabilities,
            edge_inputs=edge_probabilities,
            reference=lambda y, p: reference_ce_prob(y, p, renormalise=False),
            keras_reference=lambda y, p: reference_ce_prob(y, p, renormalise=True),
            keras_note="Keras renormalises p / sum(p) first",
        ),
        Case(
            name="ce_logits",
            description="categorical cross-entropy on logits",
            compiled=spec("ce_logits.loss"),
            keras=built_in(keras.losses.CategoricalCrossentropy, from_logits=True),
            hand_written=fixed(hand_ce_logits),
            fused=fixed(fused_ce_logits),
            typical_inputs=typical_logits,
            extreme_inputs=extreme_logits,
            edge_inputs=edge_logits,
            reference=reference_ce_logits,
            keras_reference=reference_ce_logits,
        ),
        Case(
            name="weighted_ce",
            description="categorical cross-entropy weighted by w[class(y)]",
            compiled=lambda num_classes, jit_compile, dtype: compiled_loss(
                "weighted_ce.loss", jit_compile, dtype, w=list(class_weights(num_classes))
            ),
            keras=lambda num_classes, jit_compile, dtype: weighted_keras_ce(num_classes, dtype),
            hand_written=lambda num_classes, jit_compile, dtype: weighted_hand_ce(
                num_classes, dtype
            ),
            typical_inputs=typical_probabilities,
            extreme_inputs=extreme_probabilities,
            edge_inputs=edge_probabilities,
            reference=lambda y, p: reference_weighted_ce(y, p, renormalise=False),
            keras_reference=lambda y, p: reference_weighted_ce(y, p, renormalise=True),
            keras_note="Keras: sample_weight = w[argmax(y)]; renormalises p",
        ),
        Case(
            name="focal",
            description="categorical focal cross-entropy on probabilities",
            compiled=spec("focal.loss", alpha=ALPHA, gamma=GAMMA),
            keras=built_in(keras.losses.CategoricalFocalCrossentropy, alpha=ALPHA, gamma=GAMMA),
            hand_written=fixed(hand_focal),
            typical_inputs=typical_probabilities,
            extreme_inputs=extreme_probabilities,
            edge_inputs=edge_probabilities,
            reference=lambda y, p: reference_focal(y, p, renormalise=False),
            keras_reference=lambda y, p: reference_focal(y, p, renormalise=True),
            keras_note="Keras renormalises p / sum(p) first",
        ),
        Case(
            name="weighted_bce_logits",
            description=f"binary cross-entropy on logits, pos_weight={POS_WEIGHT}",
            compiled=spec("weighted_bce_logits.loss", pos_weight=POS_WEIGHT),
            keras=built_in(keras.losses.BinaryCrossentropy, from_logits=True),
            hand_written=fixed(hand_weighted_bce),
            fused=fixed(fused_weighted_bce),
            typical_inputs=typical_binary,
            extreme_inputs=extreme_binary,
            edge_inputs=edge_binary,
            reference=lambda y, z: reference_weighted_bce(y, z, POS_WEIGHT),
            keras_reference=lambda y, z: reference_weighted_bce(y, z, 1.0),
            keras_note="Keras BinaryCrossentropy has no pos_weight: it computes pos_weight=1",
        ),
        Case(
            name="huber",
            description=f"Huber loss, delta={DELTA}",
            compiled=spec("huber.loss", delta=DELTA),
            keras=built_in(keras.losses.Huber, delta=DELTA),
            hand_written=fixed(hand_huber),
            typical_inputs=typical_regression,
            extreme_inputs=extreme_regression,
            edge_inputs=edge_regression,
            reference=reference_huber,
            keras_reference=reference_huber,
        ),
    )
}


# ---------------------------------------------------------------------- timing


def value_and_gradient(loss: LossFunction, jit_compile: bool) -> Callable[..., Any]:
    """The loss and its gradient with respect to y_pred, in one tf.function."""

    @tf.function(jit_compile=jit_compile)
    def step(y_true: tf.Tensor, y_pred: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(y_pred)
            value = loss(y_true, y_pred)
        return value, tape.gradient(value, y_pred)

    return step


def memory_floor(jit_compile: bool) -> Callable[..., Any]:
    """Read both inputs and write one array of their size: no loss can move less memory."""

    @tf.function(jit_compile=jit_compile)
    def floor(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        return y_pred + y_true

    return floor


def finish(result: Any) -> None:
    """Wait until a result is computed (a no-op on CPU, where calls return when done)."""
    if tf.config.list_logical_devices("GPU"):
        tf.experimental.sync_devices()
    del result


@dataclass(frozen=True)
class Timing:
    """One variant of one case at one shape and mode: medians over interleaved rounds."""

    case: str
    shape: tuple[int, int]
    jit_compile: bool
    variant: str
    median_ms: float
    ratio_to_keras: float  # median over rounds of (this variant / Keras), same round
    floor_multiple: float  # median over rounds of (this variant / memory floor)


@dataclass(frozen=True)
class Summary:
    """How the compiled loss fares in one case, shape and mode against the issue's targets."""

    case: str
    shape: tuple[int, int]
    jit_compile: bool
    compiled_ms: float
    floor_ms: float
    ratio_to_keras: float
    ratio_to_fastest_peer: float  # the largest median paired ratio compiled / peer
    fastest_peer: str
    floor_multiple: float


def time_interleaved(
    functions: dict[str, Callable[..., Any]],
    arguments: tuple[tf.Tensor, tf.Tensor],
    repeats: int,
    warmup: int,
) -> dict[str, list[float]]:
    """Seconds per call of each function, one call each per round, order reversed each round."""
    names = list(functions)
    for _ in range(warmup):
        for name in names:
            finish(functions[name](*arguments))
    seconds: dict[str, list[float]] = {name: [] for name in names}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for round_index in range(repeats):
            for name in names if round_index % 2 == 0 else reversed(names):
                start = time.perf_counter()
                finish(functions[name](*arguments))
                seconds[name].append(time.perf_counter() - start)
    finally:
        if gc_was_enabled:
            gc.enable()
    return seconds


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    return statistics.median(a / b for a, b in zip(numerators, denominators, strict=True))


def benchmark_group(
    case: Case,
    shape: tuple[int, int],
    jit_compile: bool,
    repeats: int,
    warmup: int,
) -> tuple[list[Timing], Summary]:
    batch, num_classes = shape
    y_true, y_pred = case.typical_inputs(np.random.default_rng(0), batch, num_classes)
    arguments = (tf.constant(y_true, tf.float32), tf.constant(y_pred, tf.float32))
    functions: dict[str, Callable[..., Any]] = {
        name: value_and_gradient(loss, jit_compile)
        for name, loss in case.variants(num_classes, jit_compile).items()
    }
    functions[FLOOR] = memory_floor(jit_compile)
    seconds = time_interleaved(functions, arguments, repeats, warmup)
    timings = [
        Timing(
            case=case.name,
            shape=shape,
            jit_compile=jit_compile,
            variant=name,
            median_ms=1e3 * statistics.median(times),
            ratio_to_keras=paired_ratio(times, seconds[KERAS]),
            floor_multiple=paired_ratio(times, seconds[FLOOR]),
        )
        for name, times in seconds.items()
    ]
    peer_ratios = {
        name: paired_ratio(seconds[COMPILED], times)
        for name, times in seconds.items()
        if name not in (COMPILED, COMPILED_PLAIN, FLOOR)
    }
    fastest_peer = max(peer_ratios, key=peer_ratios.__getitem__)
    by_variant = {timing.variant: timing for timing in timings}
    summary = Summary(
        case=case.name,
        shape=shape,
        jit_compile=jit_compile,
        compiled_ms=by_variant[COMPILED].median_ms,
        floor_ms=by_variant[FLOOR].median_ms,
        ratio_to_keras=by_variant[COMPILED].ratio_to_keras,
        ratio_to_fastest_peer=peer_ratios[fastest_peer],
        fastest_peer=fastest_peer,
        floor_multiple=by_variant[COMPILED].floor_multiple,
    )
    return timings, summary


# ---------------------------------------------------------------------- accuracy


@dataclass(frozen=True)
class Accuracy:
    """Largest relative errors against the float64 reference at moderate extremes."""

    case: str
    shape: tuple[int, int]
    jit_compile: bool
    variant: str
    value_error: float
    gradient_error: float


@dataclass(frozen=True)
class Finiteness:
    """Non-finite entries of value and gradient on the edge grid (p in {0, 1}, logits 1e4)."""

    case: str
    dtype: str
    jit_compile: bool
    variant: str
    non_finite: int
    entries: int
    examples: list[str] = field(default_factory=list)


def relative_error(got: Array | float, expected: Array | float) -> float:
    """max |got - expected| / |expected| elementwise (0 where both are 0; inf if got is not finite).

    Denominators below float32's smallest normal number are raised to it, so an expected
    0 compares absolutely there.
    """
    got = np.asarray(got, np.float64)
    expected = np.asarray(expected, np.float64)
    if not np.all(np.isfinite(got)):
        return float("inf")
    scale = np.maximum(np.abs(expected), np.finfo(np.float32).tiny)
    return float(np.max(np.abs(got - expected) / scale))


def evaluate(
    loss: LossFunction, jit_compile: bool, y_true: Array, y_pred: Array, dtype: str
) -> tuple[Array, Array]:
    step = value_and_gradient(loss, jit_compile)
    value, gradient = step(tf.constant(y_true, dtype), tf.constant(y_pred, dtype))
    return value.numpy(), gradient.numpy()


def accuracy_rows(case: Case, shape: tuple[int, int], jit_compile: bool) -> list[Accuracy]:
    batch, num_classes = shape
    y_true, y_pred = case.extreme_inputs(np.random.default_rng(1), batch, num_classes)
    y_true, y_pred = (x.astype(np.float32).astype(np.float64) for x in (y_true, y_pred))
    rows = []
    for variant, builder, reference in (
        (COMPILED, case.compiled, case.reference),
        (KERAS, case.keras, case.keras_reference),
    ):
        expected_value, expected_gradient = reference(y_true, y_pred)
        value, gradient = evaluate(
            builder(num_classes, jit_compile, "float32"), jit_compile, y_true, y_pred, "float32"
        )
        rows.append(
            Accuracy(
                case=case.name,
                shape=shape,
                jit_compile=jit_compile,
                variant=variant,
                value_error=relative_error(value, expected_value),
                gradient_error=relative_error(gradient, expected_gradient),
            )
        )
    return rows


def finiteness_rows(
    case: Case, dtype: str, jit_compile: bool, num_classes: int
) -> list[Finiteness]:
    y_true, y_pred = case.edge_inputs(num_classes)
    rows = []
    for variant, builder in ((COMPILED, case.compiled), (KERAS, case.keras)):
        value, gradient = evaluate(
            builder(num_classes, jit_compile, dtype), jit_compile, y_true, y_pred, dtype
        )
        bad_rows = sorted({int(i) for i in np.argwhere(~np.isfinite(gradient))[:, 0]})
        rows.append(
            Finiteness(
                case=case.name,
                dtype=dtype,
                jit_compile=jit_compile,
                variant=variant,
                non_finite=int((~np.isfinite(value)).sum() + (~np.isfinite(gradient)).sum()),
                entries=int(np.size(value) + np.size(gradient)),
                examples=[
                    f"grad row {i}: y_pred={y_pred[i, :3].tolist()}..." for i in bad_rows[:2]
                ],
            )
        )
    return rows


# ---------------------------------------------------------------------- report


def mode_name(jit_compile: bool) -> str:
    return "xla" if jit_compile else "graph"


def shape_name(shape: tuple[int, int]) -> str:
    return f"{shape[0]}x{shape[1]}"


def timing_table(timings: Sequence[Timing]) -> str:
    lines = [
        f"{'case':<20} {'shape':<10} {'mode':<5} {'variant':<13} "
        f"{'median ms':>10} {'/keras':>7} {'/floor':>7}"
    ]
    previous = None
    for t in timings:
        group = (t.case, t.shape, t.jit_compile)
        if previous is not None and group != previous:
            lines.append("")
        previous = group
        lines.append(
            f"{t.case:<20} {shape_name(t.shape):<10} {mode_name(t.jit_compile):<5} "
            f"{t.variant:<13} {t.median_ms:>10.3f} {t.ratio_to_keras:>7.2f} "
            f"{t.floor_multiple:>7.2f}"
        )
    return "\n".join(lines)


def summary_table(summaries: Sequence[Summary]) -> str:
    lines = [
        f"{'case':<20} {'shape':<10} {'mode':<5} {'lossdsl ms':>10} {'floor ms':>9} "
        f"{'/keras':>7} {'/fastest peer':>22} {'x floor':>8}"
    ]
    for s in summaries:
        peer = f"{s.ratio_to_fastest_peer:.2f} ({s.fastest_peer})"
        lines.append(
            f"{s.case:<20} {shape_name(s.shape):<10} {mode_name(s.jit_compile):<5} "
            f"{s.compiled_ms:>10.3f} {s.floor_ms:>9.3f} {s.ratio_to_keras:>7.2f} "
            f"{peer:>22} {s.floor_multiple:>8.2f}"
        )
    return "\n".join(lines)


def accuracy_table(rows: Sequence[Accuracy]) -> str:
    lines = [
        f"{'case':<20} {'shape':<10} {'mode':<5} {'variant':<8} {'value rel err':>14} "
        f"{'grad rel err':>13}"
    ]
    for row in rows:
        lines.append(
            f"{row.case:<20} {shape_name(row.shape):<10} {mode_name(row.jit_compile):<5} "
            f"{row.variant:<8} {row.value_error:>14.2e} {row.gradient_error:>13.2e}"
        )
    return "\n".join(lines)


def finiteness_table(rows: Sequence[Finiteness]) -> str:
    lines = [f"{'case':<20} {'dtype':<8} {'mode':<5} {'variant':<8} {'non-finite':>12}"]
    for row in rows:
        lines.append(
            f"{row.case:<20} {row.dtype:<8} {mode_name(row.jit_compile):<5} {row.variant:<8} "
            f"{f'{row.non_finite}/{row.entries}':>12}"
            + (f"   {row.examples[0]}" if row.examples else "")
        )
    return "\n".join(lines)


def machine_description() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "lossdsl": lossdsl.__version__,
        "gpus": [device.name for device in tf.config.list_logical_devices("GPU")],
    }


# ---------------------------------------------------------------------- command line


def parse_shapes(text: str) -> list[tuple[int, int]]:
    shapes = []
    for part in text.split(","):
        batch, _, classes = part.strip().lower().partition("x")
        shapes.append((int(batch), int(classes)))
    return shapes


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time compiled lossdsl losses against Keras built-ins, fused tf.nn ops "
        "and hand-written TensorFlow (forward + backward, interleaved), and measure accuracy."
    )
    parser.add_argument(
        "--shapes",
        type=parse_shapes,
        help="comma-separated BATCHxCLASSES (default 4096x10,1024x1000,256x32000)",
    )
    add_run_arguments(parser, CASES, f"all: {','.join(CASES)}", "64x10,16x100", DEFAULT_OUT)
    parser.add_argument(
        "--accuracy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also the accuracy and finiteness tables (default on)",
    )
    parser.add_argument(
        "--timing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the timing tables (default on)",
    )
    arguments = checked_run_arguments(parser, parser.parse_args(argv), CASES)
    arguments.shapes = arguments.shapes or list(QUICK_SHAPES if arguments.quick else FULL_SHAPES)
    return arguments


def add_run_arguments(
    parser: argparse.ArgumentParser,
    cases: Iterable[str],
    cases_default: str,
    quick_shapes: str,
    out: Path,
) -> None:
    """The options the benchmarks share: cases, rounds, modes, `--quick` and the JSON file."""
    parser.add_argument(
        "--cases",
        type=lambda text: [name.strip() for name in text.split(",")],
        default=list(cases),
        help=f"comma-separated cases (default {cases_default})",
    )
    parser.add_argument("--repeats", type=int, help="timed rounds per group (default 30)")
    parser.add_argument("--warmup", type=int, help="untimed rounds first (default 3)")
    parser.add_argument(
        "--modes",
        type=lambda text: [part.strip() for part in text.split(",")],
        default=["graph", "xla"],
        help="graph (tf.function), xla (jit_compile=True), or both (default)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"small shapes ({quick_shapes}), 5 rounds, 1 warm-up: proves the script runs",
    )
    parser.add_argument("--out", type=Path, default=out, help=f"JSON file ({out})")


def checked_run_arguments(
    parser: argparse.ArgumentParser, arguments: argparse.Namespace, cases: Collection[str]
) -> argparse.Namespace:
    """`add_run_arguments`' options checked (a usage error names what is unknown), with
    the rounds `--quick` implies."""
    unknown = [name for name in arguments.cases if name not in cases]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; known: {', '.join(cases)}")
    bad_modes = [mode for mode in arguments.modes if mode not in ("graph", "xla")]
    if bad_modes:
        parser.error(f"unknown mode {bad_modes[0]!r}; use graph, xla or both")
    quick = arguments.quick
    arguments.repeats = arguments.repeats or (5 if quick else 30)
    arguments.warmup = arguments.warmup if arguments.warmup is not None else (1 if quick else 3)
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    tf.get_logger().setLevel("ERROR")  # the accuracy tables trace many small functions
    started = time.perf_counter()
    cases = [CASES[name] for name in arguments.cases]
    modes = [mode == "xla" for mode in arguments.modes]
    timings: list[Timing] = []
    summaries: list[Summary] = []
    accuracy: list[Accuracy] = []
    finiteness: list[Finiteness] = []
    print(f"lossdsl loss benchmark on {machine_description()}", flush=True)
    if arguments.timing:
        for shape in arguments.shapes:
            for case in cases:
                for jit_compile in modes:
                    group_timings, summary = benchmark_group(
                        case, shape, jit_compile, arguments.repeats, arguments.warmup
                    )
                    timings += group_timings
                    summaries.append(summary)
                    print(timing_table(group_timings) + "\n", flush=True)
        print("Timings (median ms of forward + backward; ratios are medians of paired ratios)")
        print(timing_table(timings) + "\n")
        print("Compiled loss against its peers")
        print(summary_table(summaries) + "\n", flush=True)
    if arguments.accuracy:
        for case in cases:
            for shape in arguments.shapes:
                for jit_compile in modes:
                    accuracy += accuracy_rows(case, shape, jit_compile)
            for dtype in ("float32", "float16"):
                for jit_compile in modes:
                    finiteness += finiteness_rows(case, dtype, jit_compile, num_classes=10)
        print("Accuracy at moderate extremes (max relative error vs float64 reference)")
        print(accuracy_table(accuracy) + "\n")
        print("Non-finite values and gradients on the edge grid")
        print(finiteness_table(finiteness) + "\n")
    elapsed = time.perf_counter() - started
    print(f"total {elapsed:.0f} s")
    report = {
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": machine_description(),
        "settings": {
            "shapes": arguments.shapes,
            "cases": arguments.cases,
            "modes": arguments.modes,
            "repeats": arguments.repeats,
            "warmup": arguments.warmup,
        },
        "seconds": elapsed,
        "timings": [asdict(timing) for timing in timings],
        "summary": [asdict(summary) for summary in summaries],
        "accuracy": [asdict(row) for row in accuracy],
        "finiteness": [asdict(row) for row in finiteness],
    }
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {arguments.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
