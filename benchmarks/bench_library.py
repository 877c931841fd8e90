"""Every example spec beside hand-written TensorFlow and its Keras built-in: loss + gradient time.

Each spec in examples/ and in benchmarks/specs/literature/ (losses from the literature the
compiler was not tuned for when they were written; found by glob: a spec without a
hand-written version below stops the script) is loaded with `lossdsl.load` and timed
against the same formula written by hand in
plain TensorFlow, differentiated by `tf.GradientTape`, and against the Keras built-in where
one computes the same function. Every variant computes the loss and its gradient with
respect to y_pred inside one `tf.function`, without and with `jit_compile=True`, interleaved
in one process as in bench_losses.py, whose timing helpers this script imports. Before
timing, each hand-written version and Keras built-in must agree with the spec on the
benchmark inputs (value and gradient, relative 1e-4 in float32, in graph mode).

Run `python benchmarks/bench_library.py --help`; benchmarks/README.md lists the pairings.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf
from bench_losses import (
    LossFunction,
    add_run_arguments,
    checked_run_arguments,
    class_weights,
    keras_loss,
    machine_description,
    mode_name,
    paired_ratio,
    parse_shapes,
    shape_name,
    softmax64,
    time_interleaved,
    value_and_gradient,
)

import lossdsl

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LITERATURE = Path(__file__).resolve().parent / "specs" / "literature"
"""Losses from the literature, apart from examples/: the set that stands for unseen losses."""
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_library.json"
EPS = 1e-7  # Keras's epsilon, the specs' `eps`
AGREEMENT = 1e-4  # relative, float32: hand-written and Keras values against the spec's

COMPILED = "lossdsl"
HAND_WRITTEN = "hand-written"
KERAS = "keras"
LITERATURE_SET = "literature"  # the summary's row: hand-written, the literature set alone

ELEMENT, CHANNELS, CLASS, ORDINAL = "element", "channels", "class", "ordinal"
PAIRS, TRIPLETS = "pairs", "triplets"
FAMILY_SHAPES: dict[str, tuple[tuple[int, int], ...]] = {
    ELEMENT: ((1024, 256), (4096, 10)),  # [batch, outputs]: elementwise and per-sample losses
    # [batch, channels] where the spec selects y_pred's channels (`p[0]`): the width is the
    # spec's number of channels (Case.channels), whatever the shape says
    CHANNELS: ((65536, 1), (4096, 1)),
    CLASS: ((1024, 256), (4096, 10), (256, 32000)),  # [batch, classes]: over a class axis
    # [batch, ordered classes or thresholds]: cumulative sums over a few ordered classes
    # (at thousands, XLA takes minutes to compile squared_emd: see benchmarks/README.md)
    ORDINAL: ((1024, 256), (4096, 10)),
    PAIRS: ((256, 128), (1024, 128)),  # [batch, D] embeddings, [batch, batch] pairs
    TRIPLETS: ((64, 128), (256, 128)),  # [batch, D] embeddings, [batch, batch, batch] triplets
}
QUICK_SHAPES = ((32, 10), (16, 100))

Array = np.ndarray
Inputs = tuple[Array, Array]  # y_true (float32, or int32 labels), y_pred (float32)
Draw = Callable[[np.random.Generator, int, int], Inputs]  # (rng, batch, width)
HandWritten = Callable[..., tf.Tensor]  # (y_true, y_pred, **params) -> scalar
KerasBuilder = Callable[..., LossFunction]  # (**params) -> loss(y_true, y_pred)


# ---------------------------------------------------------------------- inputs


def f32(array: Array) -> Array:
    return np.asarray(array, np.float32)


def ids(rng: np.random.Generator, batch: int, width: int) -> Array:
    return rng.integers(0, width, batch).astype(np.int32)


def binary_probabilities(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    """Multi-label 0/1 targets and probabilities sigmoid(N(0, 2^2)), inside the clip bounds."""
    labels = rng.integers(0, 2, (batch, width))
    return f32(labels), f32(1 / (1 + np.exp(-rng.normal(0, 2, (batch, width)))))


def binary_logits(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    return f32(rng.integers(0, 2, (batch, width))), f32(rng.normal(0, 3, (batch, width)))


def heatmaps(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    """Heatmap targets, 1 at about 5% of the entries (the peaks) and U(0, 1)^4 elsewhere
    (mostly near 0, as a Gaussian heatmap's tails), and predictions sigmoid(N(0, 2^2))."""
    peaks = rng.random((batch, width)) < 0.05
    targets = np.where(peaks, 1.0, rng.uniform(0, 1, (batch, width)) ** 4)
    return f32(targets), f32(1 / (1 + np.exp(-rng.normal(0, 2, (batch, width)))))


def onehot_probabilities(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    labels = np.eye(width)[ids(rng, batch, width)]
    return f32(labels), f32(softmax64(rng.normal(0, 2, (batch, width))))


def onehot_logits(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    return f32(np.eye(width)[ids(rng, batch, width)]), f32(rng.normal(0, 3, (batch, width)))


def onehot_scores(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    return f32(np.eye(width)[ids(rng, batch, width)]), f32(rng.normal(0, 1, (batch, width)))


def soft_labels_and_logits(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    """Target distributions softmax(N(0, 1)) and logits N(0, 3^2)."""
    targets = softmax64(rng.normal(0, 1, (batch, width)))
    return f32(targets), f32(rng.normal(0, 3, (batch, width)))


def log_rates(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    """Poisson counts of mean 2 and log-rates N(log 2, 0.5^2)."""
    counts = rng.poisson(2.0, (batch, width))
    return f32(counts), f32(rng.normal(math.log(2.0), 0.5, (batch, width)))


def label_probabilities(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    return ids(rng, batch, width), f32(softmax64(rng.normal(0, 2, (batch, width))))


def label_logits(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    return ids(rng, batch, width), f32(rng.normal(0, 3, (batch, width)))


def ignored_label_logits(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    """Labels of which about 30% are -1 (ignored), and logits."""
    labels = np.where(rng.random(batch) < 0.3, -1, ids(rng, batch, width))
    return labels.astype(np.int32), f32(rng.normal(0, 3, (batch, width)))


def ranks_and_thresholds(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    """Ranks in [0, width] (width + 1 of them) and a logit per threshold, N(0, 3^2)."""
    return ids(rng, batch, width + 1), f32(rng.normal(0, 3, (batch, width)))


def location_and_log_scale(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    """Targets y [batch, 1] N(0, 1); y_pred [batch, 2]: a location with N(0, 1) residuals
    and a log-scale (or log-variance) N(0, 0.5^2)."""
    targets = rng.normal(0, 1, (batch, 1))
    location = targets[:, 0] + rng.normal(0, 1, batch)
    return f32(targets), f32(np.stack([location, rng.normal(0, 0.5, batch)], axis=1))


def quantile_predictions(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    """Targets y [batch, 1] N(0, 1) and one prediction per quantile [batch, width]: a
    location with N(0, 1) residuals plus offsets evenly spaced from -1.5 to 1.5."""
    targets = rng.normal(0, 1, (batch, 1))
    location = targets + rng.normal(0, 1, (batch, 1))
    return f32(targets), f32(location + np.linspace(-1.5, 1.5, width))


def evidential_outputs(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    """Targets y [batch, 1] N(0, 1); y_pred [batch, 4]: a location with N(0, 1) residuals
    and three raw evidence outputs N(0, 1) (the spec's softplus makes nu, alpha - 1, beta)."""
    targets = rng.normal(0, 1, (batch, 1))
    location = targets[:, 0] + rng.normal(0, 1, batch)
    raw = rng.normal(0, 1, (batch, 3))
    return f32(targets), f32(np.column_stack([location, raw]))


def ranked_pairs(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    """Which of two scores should rank higher, 1 or -1 [batch, 1], and the scores [batch, 2]."""
    return f32(rng.choice([-1.0, 1.0], (batch, 1))), f32(rng.normal(0, 1, (batch, 2)))


def boxes(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    """Boxes [x_min, y_min, x_max, y_max] in the unit square, sides 0.1 to 0.5, and
    predictions with N(0, 0.05^2) noise on every coordinate."""
    corner = rng.uniform(0, 0.5, (batch, 2))
    true = np.concatenate([corner, corner + rng.uniform(0.1, 0.5, (batch, 2))], axis=1)
    return f32(true), f32(true + rng.normal(0, 0.05, (batch, 4)))


def regression(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    """Targets N(0, 1) and predictions with N(0, 2^2) residuals."""
    targets = rng.normal(0, 1, (batch, width))
    return f32(targets), f32(targets + rng.normal(0, 2, (batch, width)))


def nonneg_regression(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    targets = rng.uniform(0, 3, (batch, width))
    return f32(targets), f32(targets + rng.normal(0, 1, (batch, width)))


def binary_scores(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    """0/1 labels (the hinge losses read 0 as -1) and real scores N(0, 1)."""
    return f32(rng.integers(0, 2, (batch, width))), f32(rng.normal(0, 1, (batch, width)))


def counts_and_rates(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    return f32(rng.poisson(2.0, (batch, width))), f32(rng.uniform(0.05, 3.0, (batch, width)))


def grouped_embeddings(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    """Class ids, about 4 samples per class, and N(0, 1) embeddings of width D."""
    return ids(rng, batch, max(batch // 4, 2)), f32(rng.normal(0, 1, (batch, width)))


def sphere_embeddings(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    """As grouped_embeddings, at norm 0.9: Circle's inputs are unit-norm (off the kink of
    max(1 - e.e, 0) at a sample with itself, as tests/test_metric_library.py puts them)."""
    labels, e = grouped_embeddings(rng, batch, width)
    return labels, f32(0.9 * e / np.linalg.norm(e, axis=1, keepdims=True))


def two_views(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    """Image ids, each twice in no order (SimCLR's two views), and N(0, 1) projections."""
    views = rng.permutation(np.arange(batch) // 2).astype(np.int32)
    return views, f32(rng.normal(0, 1, (batch, width)))


def iou_targets(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    """IoU-aware classification targets, U(0.1, 1) at about 25% of the entries (the
    positives) and 0 elsewhere, and logits N(0, 3^2)."""
    positive = rng.random((batch, width)) < 0.25
    targets = np.where(positive, rng.uniform(0.1, 1, (batch, width)), 0.0)
    return f32(targets), f32(rng.normal(0, 3, (batch, width)))


def depths(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    """Depths U(0.5, 10) [batch, pixels] and predicted log depths with N(0, 0.3^2) residuals."""
    depth = rng.uniform(0.5, 10, (batch, width))
    return f32(depth), f32(np.log(depth) + rng.normal(0, 0.3, (batch, width)))


def times_to_event(rng: np.random.Generator, batch: int, width: int) -> Inputs:
    """y_true [batch, 2]: times Weibull(shape 1.5) and event flags, 1 (observed) for about
    70% and 0 (censored) for the rest; y_pred [batch, 2]: a log-scale and a log-shape,
    N(0, 0.5^2)."""
    times = rng.weibull(1.5, batch)
    events = (rng.random(batch) < 0.7).astype(np.float64)
    return f32(np.column_stack([times, events])), f32(rng.normal(0, 0.5, (batch, 2)))


# ---------------------------------------------------------------------- params


def per_class_weights(width: int) -> dict[str, Any]:
    """A weight per class or output, `w`: bench_losses.py's, evenly spaced from 0.5 to 4."""
    return {"w": [float(w) for w in class_weights(width)]}


def class_prior(width: int) -> list[float]:
    raw = np.linspace(1.0, 2.0, width)
    return [float(p) for p in raw / raw.sum()]


def ldam_margins(width: int) -> list[float]:
    """The paper's margins, 0.5 n_c^(-1/4) over the largest, for class counts 1000 down to 10."""
    scaled = np.geomspace(1000.0, 10.0, width) ** -0.25
    return [float(m) for m in 0.5 * scaled / scaled.max()]


def quantile_levels(width: int) -> list[float]:
    """One quantile per prediction, evenly spaced from 0.1 to 0.9 (0.1, 0.5, 0.9 for three)."""
    return [float(tau) for tau in np.linspace(0.1, 0.9, width)]


def no_params(width: int) -> dict[str, Any]:
    return {}


def fixed(**params: Any) -> Callable[[int], dict[str, Any]]:
    return lambda width: params


# ---------------------------------------------------------------------- hand-written
# The formulas as a user would write them in plain TensorFlow: the usual ops, no tricks
# beyond the numerically safe forms (tf.nn.log_softmax, softplus) that any guide teaches.


def clip(x: tf.Tensor, low: float = EPS, high: float = 1 - EPS) -> tf.Tensor:
    return tf.clip_by_value(x, low, high)


def mean_of_sums(x: tf.Tensor) -> tf.Tensor:
    """Sum over the last axis per sample, mean over the batch."""
    return tf.reduce_mean(tf.reduce_sum(x, axis=-1))


def at_label(x: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """x[i, labels[i]] for each row i."""
    return tf.gather(x, labels, axis=-1, batch_dims=1)


def bce_terms(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    q = clip(p)
    return -(y * tf.math.log(q) + (1 - y) * tf.math.log(1 - q))


def asymmetric(
    y: tf.Tensor, z: tf.Tensor, gamma_pos: float, gamma_neg: float, margin: float
) -> tf.Tensor:
    p_m = tf.maximum(tf.sigmoid(z) - margin, 0.0)
    positive = tf.pow(tf.sigmoid(-z), gamma_pos) * tf.nn.softplus(-z)
    negative = -tf.pow(p_m, gamma_neg) * tf.math.log(1 - p_m)
    return mean_of_sums(y * positive + (1 - y) * negative)


def binary_crossentropy(y: tf.Tensor, p: tf.Tensor, label_smoothing: float) -> tf.Tensor:
    t = y * (1 - label_smoothing) + 0.5 * label_smoothing
    return tf.reduce_mean(bce_terms(t, p))


def binary_crossentropy_logits(y: tf.Tensor, z: tf.Tensor, label_smoothing: float) -> tf.Tensor:
    t = y * (1 - label_smoothing) + 0.5 * label_smoothing
    return tf.reduce_mean(t * tf.nn.softplus(-z) + (1 - t) * tf.nn.softplus(z))


def binary_focal(y: tf.Tensor, p: tf.Tensor, gamma: float, alpha: float) -> tf.Tensor:
    p_t = y * p + (1 - y) * (1 - p)
    alpha_t = y * alpha + (1 - y) * (1 - alpha)
    return tf.reduce_mean(alpha_t * tf.pow(1 - p_t, gamma) * bce_terms(y, p))


def binary_focal_crossentropy(
    y: tf.Tensor, p: tf.Tensor, gamma: float, label_smoothing: float
) -> tf.Tensor:
    t = y * (1 - label_smoothing) + 0.5 * label_smoothing
    p_t = t * p + (1 - t) * (1 - p)
    return tf.reduce_mean(tf.pow(1 - p_t, gamma) * bce_terms(t, p))


def binary_focal_logits(y: tf.Tensor, z: tf.Tensor, gamma: float, alpha: float) -> tf.Tensor:
    bce = y * tf.nn.softplus(-z) + (1 - y) * tf.nn.softplus(z)
    one_minus_p_t = y * tf.sigmoid(-z) + (1 - y) * tf.sigmoid(z)
    alpha_t = y * alpha + (1 - y) * (1 - alpha)
    return tf.reduce_mean(alpha_t * tf.pow(one_minus_p_t, gamma) * bce)


def smoothed(y: tf.Tensor, label_smoothing: float) -> tf.Tensor:
    return y * (1 - label_smoothing) + label_smoothing / tf.cast(tf.shape(y)[-1], y.dtype)


def renormalised(p: tf.Tensor) -> tf.Tensor:
    return clip(p / tf.reduce_sum(p, axis=-1, keepdims=True))


def categorical_crossentropy(y: tf.Tensor, p: tf.Tensor, label_smoothing: float) -> tf.Tensor:
    return mean_of_sums(-smoothed(y, label_smoothing) * tf.math.log(renormalised(p)))


def categorical_crossentropy_logits(
    y: tf.Tensor, z: tf.Tensor, label_smoothing: float
) -> tf.Tensor:
    return mean_of_sums(-smoothed(y, label_smoothing) * tf.nn.log_softmax(z))


def categorical_focal_crossentropy(
    y: tf.Tensor, p: tf.Tensor, alpha: float, gamma: float, label_smoothing: float
) -> tf.Tensor:
    q = renormalised(p)
    t = smoothed(y, label_smoothing)
    return mean_of_sums(alpha * tf.pow(1 - q, gamma) * -t * tf.math.log(q))


def categorical_focal_logits(y: tf.Tensor, z: tf.Tensor, gamma: float, alpha: float) -> tf.Tensor:
    factor = alpha * tf.pow(1 - tf.nn.softmax(z), gamma)
    return mean_of_sums(factor * -y * tf.nn.log_softmax(z))


def categorical_generalized_cross_entropy(y: tf.Tensor, p: tf.Tensor, q: float) -> tf.Tensor:
    return tf.reduce_mean((1 - tf.pow(at_label(p, y), q)) / q)


def categorical_hinge(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    positive = tf.reduce_sum(y * p, axis=-1)
    negative = tf.reduce_max((1 - y) * p, axis=-1)
    return tf.reduce_mean(tf.maximum(negative - positive + 1, 0.0))


def ce_kl_prior(y: tf.Tensor, p: tf.Tensor, prior: tf.Tensor, beta: float) -> tf.Tensor:
    log_q = tf.math.log(clip(p))
    kl = tf.reduce_sum(prior * (tf.math.log(prior) - log_q), axis=-1)
    return tf.reduce_mean(-tf.reduce_sum(y * log_q, axis=-1) + beta * kl)


def ce_l1(y: tf.Tensor, p: tf.Tensor, l1: float) -> tf.Tensor:
    return tf.reduce_mean(bce_terms(y, p) + l1 * tf.abs(p))


def class_balanced(y: tf.Tensor, z: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(-tf.gather(w, y) * at_label(tf.nn.log_softmax(z), y))


def coral(y: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    levels = tf.cast(y[:, None] > tf.range(tf.shape(z)[-1]), z.dtype)  # [rank > k]
    log_sigmoid = tf.math.log_sigmoid(z)
    return mean_of_sums(-(levels * log_sigmoid + (1 - levels) * (log_sigmoid - z)))


def cosine_similarity(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    y_unit = y / tf.maximum(tf.norm(y, axis=-1, keepdims=True), EPS)
    p_unit = p / tf.maximum(tf.norm(p, axis=-1, keepdims=True), EPS)
    return tf.reduce_mean(-tf.reduce_sum(y_unit * p_unit, axis=-1))


def dice(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    overlap = tf.reduce_sum(y * p)
    return 1 - 2 * overlap / (tf.reduce_sum(y) + tf.reduce_sum(p) + EPS)


def focal(y: tf.Tensor, p: tf.Tensor, gamma: float, alpha: float) -> tf.Tensor:
    q = clip(p)
    return mean_of_sums(alpha * tf.pow(1 - q, gamma) * -y * tf.math.log(q))


def gaussian_crps(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    sigma = tf.exp(p[:, 1])
    z = (y[:, 0] - p[:, 0]) / sigma
    density = math.sqrt(2 / math.pi) * tf.exp(-tf.square(z) / 2)
    return tf.reduce_mean(
        sigma * (z * tf.math.erf(z / math.sqrt(2)) + density - 1 / math.sqrt(math.pi))
    )


def gaussian_nll(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    mu, log_var = p[:, 0], p[:, 1]
    return tf.reduce_mean(
        0.5 * (log_var + tf.square(y[:, 0] - mu) * tf.exp(-log_var) + math.log(2 * math.pi))
    )


def giou(y: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    def area(box: tf.Tensor) -> tf.Tensor:
        return tf.nn.relu(box[:, 2] - box[:, 0]) * tf.nn.relu(box[:, 3] - box[:, 1])

    low, high = tf.maximum(y[:, :2], b[:, :2]), tf.minimum(y[:, 2:], b[:, 2:])
    overlap = tf.reduce_prod(tf.nn.relu(high - low), axis=1)
    union = area(y) + area(b) - overlap
    iou = tf.math.divide_no_nan(overlap, union)
    low, high = tf.minimum(y[:, :2], b[:, :2]), tf.maximum(y[:, 2:], b[:, 2:])
    enclosing = tf.reduce_prod(tf.nn.relu(high - low), axis=1)
    return tf.reduce_mean(1 - (iou - tf.math.divide_no_nan(enclosing - union, enclosing)))


def signed(y: tf.Tensor) -> tf.Tensor:
    """0/1 labels as -1/1 (a -1/1 label stays)."""
    return tf.where(tf.equal(y, 0.0), -1.0, y)


def hinge(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.maximum(1 - signed(y) * p, 0.0))


def huber(y: tf.Tensor, p: tf.Tensor, delta: float) -> tf.Tensor:
    e = tf.abs(p - y)
    return tf.reduce_mean(tf.where(e <= delta, 0.5 * tf.square(e), delta * e - 0.5 * delta**2))


def kl_divergence(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    t = clip(y, EPS, 1.0)
    return mean_of_sums(t * tf.math.log(t / clip(p, EPS, 1.0)))


def label_smoothed_ce(y: tf.Tensor, z: tf.Tensor, smoothing: float) -> tf.Tensor:
    log_q = tf.nn.log_softmax(z)
    per_sample = (1 - smoothing) * -tf.reduce_sum(y * log_q, axis=-1) - smoothing * tf.reduce_mean(
        log_q, axis=-1
    )
    return tf.reduce_mean(per_sample)


def ldam(y: tf.Tensor, z: tf.Tensor, margins: tf.Tensor, s: float) -> tf.Tensor:
    shifted = s * (z - margins * tf.one_hot(y, tf.shape(z)[-1]))
    return tf.reduce_mean(-at_label(tf.nn.log_softmax(shifted), y))


def log_cosh(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.math.log(tf.math.cosh(p - y)))


def margin_ranking(y: tf.Tensor, p: tf.Tensor, margin: float) -> tf.Tensor:
    return tf.reduce_mean(tf.nn.relu(-y[:, 0] * (p[:, 0] - p[:, 1]) + margin))


def mean_absolute_error(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.abs(p - y))


def mean_absolute_percentage_error(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    return 100 * tf.reduce_mean(tf.abs((y - p) / tf.maximum(tf.abs(y), EPS)))


def mean_squared_error(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.square(p - y))


def mean_squared_logarithmic_error(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    log_p = tf.math.log(tf.maximum(p, EPS) + 1)
    log_y = tf.math.log(tf.maximum(y, EPS) + 1)
    return tf.reduce_mean(tf.square(log_p - log_y))


def poisson(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(p - y * tf.math.log(p + EPS))


def poly1(y: tf.Tensor, z: tf.Tensor, epsilon: float) -> tf.Tensor:
    p_t = tf.reduce_sum(y * tf.nn.softmax(z), axis=-1)
    return tf.reduce_mean(-tf.reduce_sum(y * tf.nn.log_softmax(z), axis=-1) + epsilon * (1 - p_t))


def quantile(y: tf.Tensor, p: tf.Tensor, tau: float) -> tf.Tensor:
    e = y - p
    return tf.reduce_mean(tf.maximum(tau * e, (tau - 1) * e))


def soft_jaccard(y: tf.Tensor, p: tf.Tensor, smooth: float) -> tf.Tensor:
    intersection = tf.reduce_sum(y * p, axis=-1)
    union = tf.reduce_sum(y, axis=-1) + tf.reduce_sum(p, axis=-1) - intersection
    return tf.reduce_mean(1 - (intersection + smooth) / (union + smooth))


def sparse_categorical_crossentropy(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    q = clip(p)
    return tf.reduce_mean(tf.math.log(tf.reduce_sum(q, axis=-1)) - tf.math.log(at_label(q, y)))


def sparse_categorical_crossentropy_ignore(y: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    kept = tf.not_equal(y, -1)
    losses = -at_label(tf.nn.log_softmax(z), tf.maximum(y, 0))
    return tf.reduce_sum(tf.where(kept, losses, 0.0)) / tf.reduce_sum(tf.cast(kept, z.dtype))


def sparse_categorical_crossentropy_logits(y: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(-at_label(tf.nn.log_softmax(z), y))


def sparse_ce_ignore_per_sample(y: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    """The same function as sparse_categorical_crossentropy_ignore (the spec masks per
    sample instead of per batch)."""
    return sparse_categorical_crossentropy_ignore(y, z)


def squared_emd(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.square(tf.cumsum(p, axis=-1) - tf.cumsum(y, axis=-1)))


def squared_hinge(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.square(tf.maximum(1 - signed(y) * p, 0.0)))


def student_t_nll(y: tf.Tensor, p: tf.Tensor, nu: float) -> tf.Tensor:
    log_scale = p[:, 1]
    e = (y[:, 0] - p[:, 0]) * tf.exp(-log_scale)
    normaliser = math.lgamma(nu / 2) - math.lgamma((nu + 1) / 2) + math.log(nu * math.pi) / 2
    return tf.reduce_mean(normaliser + log_scale + (nu + 1) / 2 * tf.math.log1p(tf.square(e) / nu))


def tversky(y: tf.Tensor, p: tf.Tensor, alpha: float, beta: float) -> tf.Tensor:
    tp = tf.reduce_sum(y * p)
    fp = tf.reduce_sum((1 - p) * y)
    fn = tf.reduce_sum(p * (1 - y))
    return 1 - tp / (tp + alpha * fp + beta * fn + EPS)


def weighted_bce(y: tf.Tensor, p: tf.Tensor, pos_weight: float) -> tf.Tensor:
    q = clip(p)
    return tf.reduce_mean(-(pos_weight * y * tf.math.log(q) + (1 - y) * tf.math.log(1 - q)))


def weighted_bce_logits(y: tf.Tensor, z: tf.Tensor, pos_weight: float) -> tf.Tensor:
    return tf.reduce_mean(pos_weight * y * tf.nn.softplus(-z) + (1 - y) * tf.nn.softplus(z))


def weighted_ce(y: tf.Tensor, p: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    weights = tf.gather(w, tf.argmax(y, axis=-1))
    return tf.reduce_mean(weights * -tf.reduce_sum(y * tf.math.log(clip(p)), axis=-1))


def weighted_ce_classwise(y: tf.Tensor, p: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    return mean_of_sums(-w * y * tf.math.log(clip(p)))


def weighted_mse(y: tf.Tensor, p: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(w * tf.square(p - y))


def weighted_sparse_ce(y: tf.Tensor, p: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(-tf.gather(w, y) * tf.math.log(at_label(clip(p), y)))


# ---------------------------------------------- hand-written: losses from the literature


def balanced_l1(y: tf.Tensor, p: tf.Tensor, alpha: float, gamma: float) -> tf.Tensor:
    x = tf.abs(p - y)
    b = math.exp(gamma / alpha) - 1
    inside = alpha / b * (b * x + 1) * tf.math.log(b * x + 1) - alpha * x
    return tf.reduce_mean(tf.where(x < 1, inside, gamma * x + gamma / b - alpha))


def barron(y: tf.Tensor, p: tf.Tensor, alpha: float, c: float) -> tf.Tensor:
    x = (p - y) / c
    a = abs(alpha - 2)
    return tf.reduce_mean(a / alpha * (tf.pow(tf.square(x) / a + 1, alpha / 2) - 1))


def bootstrap(y: tf.Tensor, p: tf.Tensor, beta: float) -> tf.Tensor:
    q = clip(p)
    return mean_of_sums(-(beta * y + (1 - beta) * q) * tf.math.log(q))


def cauchy(y: tf.Tensor, p: tf.Tensor, c: float) -> tf.Tensor:
    return tf.reduce_mean(tf.math.log(1 + tf.square((p - y) / c)))


def charbonnier(y: tf.Tensor, p: tf.Tensor, eps2: float) -> tf.Tensor:
    return tf.reduce_mean(tf.sqrt(tf.square(p - y) + eps2))


def distill_kl(y: tf.Tensor, z: tf.Tensor, t: float) -> tf.Tensor:
    return t * t * mean_of_sums(y * (tf.math.log(clip(y)) - tf.nn.log_softmax(z / t)))


def focal_tversky(y: tf.Tensor, p: tf.Tensor, alpha: float, gamma: float) -> tf.Tensor:
    tp = tf.reduce_sum(y * p, axis=-1)
    fn = tf.reduce_sum(y * (1 - p), axis=-1)
    fp = tf.reduce_sum((1 - y) * p, axis=-1)
    index = (tp + 1) / (tp + alpha * fn + (1 - alpha) * fp + 1)
    return tf.reduce_mean(tf.pow(1 - index, gamma))


def geman_mcclure(y: tf.Tensor, p: tf.Tensor, c: float) -> tf.Tensor:
    r = tf.square((p - y) / c)
    return tf.reduce_mean(2 * r / (r + 4))


def js_divergence(y: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    q = tf.nn.softmax(z)
    m = 0.5 * (y + q)
    to_y = tf.reduce_sum(y * tf.math.log(clip(y) / clip(m)), axis=-1)
    to_q = tf.reduce_sum(q * tf.math.log(clip(q) / clip(m)), axis=-1)
    return tf.reduce_mean(0.5 * to_y + 0.5 * to_q)


def log_cosh_dice(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    overlap = tf.reduce_sum(y * p, axis=-1)
    dice = 1 - (2 * overlap + 1) / (tf.reduce_sum(y, axis=-1) + tf.reduce_sum(p, axis=-1) + 1)
    return tf.reduce_mean(tf.math.log(tf.math.cosh(dice)))


def nce_rce(y: tf.Tensor, z: tf.Tensor, alpha: float, beta: float) -> tf.Tensor:
    log_q = tf.nn.log_softmax(z)
    nce = tf.reduce_sum(y * log_q, axis=-1) / tf.reduce_sum(log_q, axis=-1)
    rce = -tf.reduce_sum(tf.nn.softmax(z) * tf.math.log(clip(y, 1e-4, 1.0)), axis=-1)
    return tf.reduce_mean(alpha * nce + beta * rce)


def poisson_log(y: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.exp(z) - y * z)


def smape(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(2 * tf.abs(p - y) / (tf.abs(p) + tf.abs(y) + 1e-7))


def symmetric_ce(y: tf.Tensor, z: tf.Tensor, alpha: float, beta: float) -> tf.Tensor:
    ce = tf.nn.softmax_cross_entropy_with_logits(y, z)
    rce = -tf.reduce_sum(tf.nn.softmax(z) * tf.math.log(clip(y, 1e-4, 1.0)), axis=-1)
    return tf.reduce_mean(alpha * ce + beta * rce)


def tweedie(y: tf.Tensor, p: tf.Tensor, rho: float) -> tf.Tensor:
    log_p = tf.math.log(p + EPS)
    deviance = -y * tf.exp((1 - rho) * log_p) / (1 - rho) + tf.exp((2 - rho) * log_p) / (2 - rho)
    return tf.reduce_mean(deviance)


def welsch(y: tf.Tensor, p: tf.Tensor, c: float) -> tf.Tensor:
    return tf.reduce_mean(1 - tf.exp(-0.5 * tf.square((p - y) / c)))


def wing(y: tf.Tensor, p: tf.Tensor, w: float, e: float) -> tf.Tensor:
    x = tf.abs(p - y)
    outside = x - (w - w * math.log(1 + w / e))
    return tf.reduce_mean(tf.where(x < w, w * tf.math.log(1 + x / e), outside))


def confidence_penalty(y: tf.Tensor, z: tf.Tensor, beta: float) -> tf.Tensor:
    log_q = tf.nn.log_softmax(z)
    return mean_of_sums(-y * log_q + beta * tf.exp(log_q) * log_q)


def expectile(y: tf.Tensor, p: tf.Tensor, tau: float) -> tf.Tensor:
    e = y - p
    return tf.reduce_mean(tf.where(e >= 0, tau, 1 - tau) * tf.square(e))


def exponential(y: tf.Tensor, f: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.exp(-(2 * y - 1) * f))


def hellinger(y: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    return mean_of_sums(0.5 * tf.square(tf.sqrt(tf.nn.softmax(z)) - tf.sqrt(y)))


def pseudo_huber(y: tf.Tensor, p: tf.Tensor, d: float) -> tf.Tensor:
    return tf.reduce_mean(d * d * (tf.sqrt(1 + tf.square((p - y) / d)) - 1))


def rmse(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.sqrt(tf.reduce_mean(tf.square(p - y), axis=-1)))


def smooth_l1(y: tf.Tensor, p: tf.Tensor, beta: float) -> tf.Tensor:
    x = tf.abs(p - y)
    return tf.reduce_mean(tf.where(x < beta, 0.5 * x * x / beta, x - 0.5 * beta))


def soft_mae(y: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    return mean_of_sums(tf.abs(tf.nn.softmax(z) - y))


def taylor_ce(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    q = 1 - tf.reduce_sum(y * p, axis=-1)
    return tf.reduce_mean(q + tf.square(q) / 2)


def tukey(y: tf.Tensor, p: tf.Tensor, c: float) -> tf.Tensor:
    r = (p - y) / c
    inside = c * c / 6 * (1 - (1 - r**2) ** 3)
    return tf.reduce_mean(tf.where(tf.abs(r) <= 1, inside, c * c / 6))


def berhu(y: tf.Tensor, p: tf.Tensor, c: float) -> tf.Tensor:
    x = tf.abs(p - y)
    return tf.reduce_mean(tf.where(x <= c, x, (tf.square(x) + c**2) / (2 * c)))


def brier(y: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    return mean_of_sums(tf.square(tf.nn.softmax(z) - y))


def gce_logits(y: tf.Tensor, z: tf.Tensor, q: float) -> tf.Tensor:
    p_y = tf.reduce_sum(y * tf.nn.softmax(z), axis=-1)
    return tf.reduce_mean((1 - tf.pow(p_y, q)) / q)


def generalized_dice(y: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    p = tf.sigmoid(z)
    r = tf.stack([y, 1 - y], axis=-1)  # [batch, pixels, 2]: foreground, background
    q = tf.stack([p, 1 - p], axis=-1)
    w = 1 / (tf.square(tf.reduce_sum(r, axis=1)) + EPS)  # [batch, 2]
    overlap = tf.reduce_sum(w * tf.reduce_sum(r * q, axis=1), axis=-1)
    total = tf.reduce_sum(w * tf.reduce_sum(r + q, axis=1), axis=-1)
    return tf.reduce_mean(1 - 2 * overlap / total)


def laplace_nll(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    mu, log_b = p[:, 0], p[:, 1]
    return tf.reduce_mean(math.log(2) + log_b + tf.abs(y[:, 0] - mu) * tf.exp(-log_b))


def logistic(y: tf.Tensor, f: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.nn.softplus(-(2 * y - 1) * f))


def modified_huber(y: tf.Tensor, f: tf.Tensor) -> tf.Tensor:
    m = signed(y) * f
    return tf.reduce_mean(tf.where(m >= -1, tf.square(tf.maximum(1 - m, 0.0)), -4 * m))


def multi_margin(y: tf.Tensor, z: tf.Tensor, margin: float) -> tf.Tensor:
    z_y = tf.reduce_sum(y * z, axis=-1, keepdims=True)
    violations = (1 - y) * tf.nn.relu(margin - z_y + z)
    return tf.reduce_mean(tf.reduce_mean(violations, axis=-1))


def quantile_huber(y: tf.Tensor, p: tf.Tensor, tau: float, kappa: float) -> tf.Tensor:
    u = y - p
    huber = tf.where(tf.abs(u) <= kappa, 0.5 * tf.square(u), kappa * (tf.abs(u) - 0.5 * kappa))
    weight = tf.abs(tau - tf.cast(u < 0, u.dtype))
    return tf.reduce_mean(weight * huber / kappa)


def reverse_kl(y: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    log_q = tf.nn.log_softmax(z)
    return mean_of_sums(tf.exp(log_q) * (log_q - tf.math.log(clip(y))))


def beta_nll(y: tf.Tensor, p: tf.Tensor, beta: float) -> tf.Tensor:
    mu, log_var = p[:, 0], p[:, 1]
    variance = tf.exp(log_var)
    nll = 0.5 * (log_var + tf.square(y[:, 0] - mu) / variance)
    return tf.reduce_mean(tf.stop_gradient(tf.pow(variance, beta)) * nll)


def cauchy_schwarz(y: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    q = tf.nn.softmax(z)
    cross = tf.reduce_sum(y * q, axis=-1) + EPS
    norms = tf.sqrt(
        tf.reduce_sum(tf.square(y), axis=-1) * tf.reduce_sum(tf.square(q), axis=-1) + EPS
    )
    return tf.reduce_mean(-tf.math.log(cross / norms))


def cosface(y: tf.Tensor, z: tf.Tensor, s: float, m: float) -> tf.Tensor:
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y, s * (z - m * y)))


def fair(y: tf.Tensor, p: tf.Tensor, c: float) -> tf.Tensor:
    x = tf.abs(p - y) / c
    return tf.reduce_mean(c * c * (x - tf.math.log1p(x)))


def itakura_saito(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    ratio = (y + EPS) / (p + EPS)
    return tf.reduce_mean(ratio - tf.math.log(ratio) - 1)


def negative_binomial_nll(y: tf.Tensor, z: tf.Tensor, r: float) -> tf.Tensor:
    log_r_plus_mu = tf.math.log(r + tf.exp(z))
    log_likelihood = (
        tf.math.lgamma(y + r)
        - tf.math.lgamma(y + 1)
        - math.lgamma(r)
        + r * (math.log(r) - log_r_plus_mu)
        + y * (z - log_r_plus_mu)
    )
    return -tf.reduce_mean(log_likelihood)


def poly1_focal(y: tf.Tensor, z: tf.Tensor, gamma: float, epsilon: float) -> tf.Tensor:
    q = tf.nn.softmax(z)
    p_t = tf.reduce_sum(y * q, axis=-1)
    focal_term = -tf.reduce_sum(y * tf.pow(1 - q, gamma) * tf.nn.log_softmax(z), axis=-1)
    return tf.reduce_mean(focal_term + epsilon * tf.pow(1 - p_t, gamma + 1))


def smooth_hinge(y: tf.Tensor, f: tf.Tensor) -> tf.Tensor:
    m = signed(y) * f
    quadratic = 0.5 * tf.square(1 - m)
    return tf.reduce_mean(tf.where(m <= 0, 0.5 - m, tf.where(m < 1, quadratic, 0.0)))


def spherical_softmax(y: tf.Tensor, z: tf.Tensor, e: float) -> tf.Tensor:
    s = tf.square(z) + e
    q = s / tf.reduce_sum(s, axis=-1, keepdims=True)
    return mean_of_sums(-y * tf.math.log(q))


def vnet_dice(y: tf.Tensor, z: tf.Tensor, smooth: float) -> tf.Tensor:
    q = tf.nn.softmax(z)
    overlap = tf.reduce_sum(y * q, axis=-1)
    squares = tf.reduce_sum(tf.square(y), axis=-1) + tf.reduce_sum(tf.square(q), axis=-1)
    return tf.reduce_mean(1 - (2 * overlap + smooth) / (squares + smooth))


def adaptive_wing(
    y: tf.Tensor, p: tf.Tensor, omega: float, theta: float, epsilon: float, alpha: float
) -> tf.Tensor:
    x = tf.abs(y - p)
    a = alpha - y
    r = tf.pow(theta / epsilon, a)
    big_a = omega / (1 + r) * a * tf.pow(theta / epsilon, a - 1) / epsilon
    big_c = theta * big_a - omega * tf.math.log1p(r)
    inside = omega * tf.math.log1p(tf.pow(x / epsilon, a))
    return tf.reduce_mean(tf.where(x < theta, inside, big_a * x - big_c))


def centernet_focal(y: tf.Tensor, p: tf.Tensor, alpha: float, beta: float) -> tf.Tensor:
    q = clip(p)
    peak = tf.cast(tf.equal(y, 1.0), p.dtype)
    positive = -peak * tf.pow(1 - q, alpha) * tf.math.log(q)
    negative = -(1 - peak) * tf.pow(1 - y, beta) * tf.pow(q, alpha) * tf.math.log(1 - q)
    peaks = tf.maximum(tf.reduce_sum(peak, axis=-1), 1.0)
    return tf.reduce_mean(tf.reduce_sum(positive + negative, axis=-1) / peaks)


def combo(y: tf.Tensor, p: tf.Tensor, alpha: float, beta: float, smooth: float) -> tf.Tensor:
    q = clip(p)
    weighted_ce = beta * y * tf.math.log(q) + (1 - beta) * (1 - y) * tf.math.log(1 - q)
    bce = -tf.reduce_mean(weighted_ce, axis=-1)
    overlap = tf.reduce_sum(y * p, axis=-1)
    dice = (2 * overlap + smooth) / (tf.reduce_sum(y, axis=-1) + tf.reduce_sum(p, axis=-1) + smooth)
    return tf.reduce_mean(alpha * bce - (1 - alpha) * dice)


def focal_l1(y: tf.Tensor, p: tf.Tensor, beta: float, gamma: float) -> tf.Tensor:
    e = tf.abs(p - y)
    return tf.reduce_mean(tf.pow(2 * tf.sigmoid(beta * e) - 1, gamma) * e)


def logit_adjusted(y: tf.Tensor, z: tf.Tensor, prior: tf.Tensor, tau: float) -> tf.Tensor:
    adjusted = z + tau * tf.math.log(prior)
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y, adjusted))


def multi_quantile(y: tf.Tensor, p: tf.Tensor, tau: tf.Tensor) -> tf.Tensor:
    e = y - p  # [batch, 1] against [batch, quantiles]
    return mean_of_sums(tf.maximum(tau * e, (tau - 1) * e))


def shrinkage(y: tf.Tensor, p: tf.Tensor, a: float, c: float) -> tf.Tensor:
    e = tf.abs(p - y)
    return tf.reduce_mean(tf.square(e) * tf.sigmoid(a * (e - c)))


def tanimoto_complement(y: tf.Tensor, p: tf.Tensor, smooth: float) -> tf.Tensor:
    def tanimoto(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        overlap = tf.reduce_sum(a * b, axis=-1)
        total = tf.reduce_sum(tf.square(a) + tf.square(b) - a * b, axis=-1)
        return (overlap + smooth) / (total + smooth)

    return tf.reduce_mean(1 - (tanimoto(p, y) + tanimoto(1 - p, 1 - y)) / 2)


def asymmetric_laplace_nll(y: tf.Tensor, p: tf.Tensor, tau: float) -> tf.Tensor:
    mu, log_b = p[:, 0], p[:, 1]
    u = y[:, 0] - mu
    rho = u * (tau - tf.cast(u < 0, u.dtype))
    return tf.reduce_mean(log_b - math.log(tau * (1 - tau)) + rho / tf.exp(log_b))


def bhattacharyya(y: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    coefficient = tf.reduce_sum(tf.sqrt(y * tf.nn.softmax(z)), axis=-1)
    return tf.reduce_mean(-tf.math.log(coefficient))


def diou(y: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    def area(box: tf.Tensor) -> tf.Tensor:
        return (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])

    low, high = tf.maximum(y[:, :2], b[:, :2]), tf.minimum(y[:, 2:], b[:, 2:])
    overlap = tf.reduce_prod(tf.nn.relu(high - low), axis=1)
    iou = overlap / (area(y) + area(b) - overlap + EPS)
    centre_offset = (b[:, :2] + b[:, 2:]) / 2 - (y[:, :2] + y[:, 2:]) / 2
    low, high = tf.minimum(y[:, :2], b[:, :2]), tf.maximum(y[:, 2:], b[:, 2:])
    diagonal = tf.reduce_sum(tf.square(high - low), axis=1)
    return tf.reduce_mean(
        1 - iou + tf.reduce_sum(tf.square(centre_offset), axis=1) / (diagonal + EPS)
    )


def epsilon_insensitive(y: tf.Tensor, p: tf.Tensor, epsilon: float) -> tf.Tensor:
    return tf.reduce_mean(tf.maximum(tf.abs(p - y) - epsilon, 0.0))


def evidential_regression(y: tf.Tensor, p: tf.Tensor, lam: float) -> tf.Tensor:
    gamma = p[:, 0]
    nu = tf.nn.softplus(p[:, 1])
    alpha = tf.nn.softplus(p[:, 2]) + 1
    beta = tf.nn.softplus(p[:, 3])
    omega = 2 * beta * (1 + nu)
    error = y[:, 0] - gamma
    nll = (
        0.5 * tf.math.log(math.pi / nu)
        - alpha * tf.math.log(omega)
        + (alpha + 0.5) * tf.math.log(nu * tf.square(error) + omega)
        + tf.math.lgamma(alpha)
        - tf.math.lgamma(alpha + 0.5)
    )
    return tf.reduce_mean(nll + lam * tf.abs(error) * (2 * nu + alpha))


def generalized_charbonnier(y: tf.Tensor, p: tf.Tensor, alpha: float, epsilon: float) -> tf.Tensor:
    return tf.reduce_mean(tf.pow(tf.square(p - y) + epsilon**2, alpha))


def listnet(y: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    return mean_of_sums(-tf.nn.softmax(y) * tf.nn.log_softmax(z))


def nfl_mae(y: tf.Tensor, z: tf.Tensor, alpha: float, beta: float, gamma: float) -> tf.Tensor:
    q = tf.nn.softmax(z)
    focal = -tf.pow(1 - q, gamma) * tf.nn.log_softmax(z)
    nfl = tf.reduce_sum(y * focal, axis=-1) / tf.reduce_sum(focal, axis=-1)
    mae = tf.reduce_sum(tf.abs(q - y), axis=-1)
    return tf.reduce_mean(alpha * nfl + beta * mae)


def evidential_classification(y: tf.Tensor, z: tf.Tensor, lam: float) -> tf.Tensor:
    alpha = tf.nn.softplus(z) + 1
    strength = tf.reduce_sum(alpha, axis=-1, keepdims=True)
    risk = tf.reduce_sum(y * (tf.math.digamma(strength) - tf.math.digamma(alpha)), axis=-1)
    alpha_t = y + (1 - y) * alpha  # the true class's evidence removed
    strength_t = tf.reduce_sum(alpha_t, axis=-1, keepdims=True)
    classes = tf.cast(tf.shape(z)[-1], z.dtype)
    kl = (
        tf.math.lgamma(strength_t[:, 0])
        - tf.math.lgamma(classes)
        - tf.reduce_sum(tf.math.lgamma(alpha_t), axis=-1)
        + tf.reduce_sum(
            (alpha_t - 1) * (tf.math.digamma(alpha_t) - tf.math.digamma(strength_t)), axis=-1
        )
    )
    return tf.reduce_mean(risk + lam * kl)


def guided_complement_entropy(y: tf.Tensor, z: tf.Tensor, alpha: float) -> tf.Tensor:
    q = tf.nn.softmax(z)
    q_g = tf.reduce_sum(y * q, axis=-1)
    px = q / (1 - q_g[:, None] + EPS)
    negative_entropy = tf.reduce_sum((1 - y) * px * tf.math.log(px + 1e-10), axis=-1)
    classes = tf.cast(tf.shape(z)[-1], z.dtype)
    return tf.reduce_mean(tf.pow(q_g + EPS, alpha) * negative_entropy / tf.math.log(classes - 1))


def gumbel_nll(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    mu, log_scale = p[:, 0], p[:, 1]
    z = (y[:, 0] - mu) / tf.exp(log_scale)
    return tf.reduce_mean(log_scale + z + tf.exp(-z))


def hed_balanced_bce(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    beta = tf.reduce_mean(1 - y, axis=-1, keepdims=True)  # the share of negatives per image
    q = clip(p)
    return mean_of_sums(-beta * y * tf.math.log(q) - (1 - beta) * (1 - y) * tf.math.log(1 - q))


def phuber_ce(y: tf.Tensor, z: tf.Tensor, tau: float) -> tf.Tensor:
    p_t = tf.reduce_sum(y * tf.nn.softmax(z), axis=-1)
    ce = tf.nn.softmax_cross_entropy_with_logits(y, z)
    return tf.reduce_mean(tf.where(p_t <= 1 / tau, -tau * p_t + math.log(tau) + 1, ce))


def smooth_pinball(y: tf.Tensor, p: tf.Tensor, tau: float, alpha: float) -> tf.Tensor:
    u = y - p
    return tf.reduce_mean(tau * u + alpha * tf.nn.softplus(-u / alpha))


def soft_f_beta(y: tf.Tensor, z: tf.Tensor, beta: float) -> tf.Tensor:
    p = tf.sigmoid(z)
    tp = tf.reduce_sum(y * p, axis=-1)
    fp = tf.reduce_sum((1 - y) * p, axis=-1)
    fn = tf.reduce_sum(y * (1 - p), axis=-1)
    b2 = beta**2
    return tf.reduce_mean(1 - (1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp + EPS))


def tilted_mse(y: tf.Tensor, p: tf.Tensor, t: float) -> tf.Tensor:
    squared = tf.square(p - y)
    return tf.math.log(tf.reduce_mean(tf.exp(t * squared))) / t


def linex(y: tf.Tensor, p: tf.Tensor, a: float, b: float) -> tf.Tensor:
    e = p - y
    return tf.reduce_mean(b * (tf.exp(a * e) - a * e - 1))


def mdca_ce(y: tf.Tensor, z: tf.Tensor, beta: float) -> tf.Tensor:
    ce = tf.nn.softmax_cross_entropy_with_logits(y, z)
    confidence = tf.reduce_mean(tf.nn.softmax(z), axis=0)  # per class, over the batch
    accuracy = tf.reduce_mean(y, axis=0)
    return tf.reduce_mean(ce) + beta * tf.reduce_mean(tf.abs(confidence - accuracy))


def silog(y: tf.Tensor, z: tf.Tensor, lam: float) -> tf.Tensor:
    d = z - tf.math.log(y)
    mean_square = tf.reduce_mean(tf.square(d), axis=-1)
    return tf.reduce_mean(mean_square - lam * tf.square(tf.reduce_mean(d, axis=-1)))


def tempered_logistic(y: tf.Tensor, z: tf.Tensor, t1: float) -> tf.Tensor:
    def log_t(x: tf.Tensor) -> tf.Tensor:
        return (tf.pow(x, 1 - t1) - 1) / (1 - t1)

    q = tf.nn.softmax(z)
    terms = y * (log_t(y) - log_t(q)) - (tf.pow(y, 2 - t1) - tf.pow(q, 2 - t1)) / (2 - t1)
    return mean_of_sums(terms)


def varifocal(q: tf.Tensor, z: tf.Tensor, alpha: float, gamma: float) -> tf.Tensor:
    bce = tf.nn.sigmoid_cross_entropy_with_logits(q, z)  # -log(1 - p) where q = 0
    weight = tf.where(q > 0, q, alpha * tf.pow(tf.sigmoid(z), gamma))
    return tf.reduce_mean(weight * bce)


def weibull_nll(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    t, u = y[:, 0], y[:, 1]
    a, b = tf.exp(p[:, 0]), tf.exp(p[:, 1])
    ya = (t + EPS) / a
    return -tf.reduce_mean(u * (tf.math.log(b) + b * tf.math.log(ya)) - tf.pow(ya, b))


def zlpr(y: tf.Tensor, s: tf.Tensor) -> tf.Tensor:
    # Su's own Keras version: the other set's logits pushed to -1e12, and a 0 logit for the 1.
    zeros = tf.zeros_like(s[:, :1])
    negatives = tf.concat([s - y * 1e12, zeros], axis=-1)
    positives = tf.concat([-s - (1 - y) * 1e12, zeros], axis=-1)
    return tf.reduce_mean(
        tf.reduce_logsumexp(negatives, axis=-1) + tf.reduce_logsumexp(positives, axis=-1)
    )


# ------------------------------------------------- hand-written: pairs of samples
# [batch, batch] matrices (anchor i, partner j) and, for triplets, [batch, batch, batch]
# (anchor a, positive p, negative n). Distances by the expansion |a|^2 + |b|^2 - 2 a.b, as
# TensorFlow Addons' pairwise_distance computes them, 0 with gradient 0 on the diagonal.


def pair_masks(y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Positive pairs (same label, not the anchor itself) and negative pairs."""
    same = tf.equal(y[:, None], y[None, :])
    not_self = tf.logical_not(tf.eye(tf.size(y), dtype=tf.bool))
    return tf.logical_and(same, not_self), tf.logical_not(same)


def euclidean_distances(e: tf.Tensor) -> tf.Tensor:
    norms = tf.reduce_sum(tf.square(e), axis=1)
    squared = norms[:, None] + norms[None, :] - 2 * tf.matmul(e, e, transpose_b=True)
    squared = tf.maximum(squared, 0.0) * (1 - tf.eye(tf.shape(e)[0], dtype=e.dtype))
    positive = squared > 0
    return tf.where(positive, tf.sqrt(tf.where(positive, squared, 1.0)), 0.0)


def cosine_similarities(e: tf.Tensor) -> tf.Tensor:
    z = tf.math.l2_normalize(e, axis=1)
    return tf.matmul(z, z, transpose_b=True)


def masked_logsumexp(x: tf.Tensor, mask: tf.Tensor, axis: int = 1) -> tf.Tensor:
    """logsumexp over the selected entries; -inf where none is."""
    return tf.reduce_logsumexp(tf.where(mask, x, -np.inf), axis=axis)


def count(mask: tf.Tensor, dtype: tf.DType, axis: int | None = 1) -> tf.Tensor:
    return tf.reduce_sum(tf.cast(mask, dtype), axis=axis)


def per_anchor_share(total: tf.Tensor, terms: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """A sum over the batch's pairs or triplets divided by their number, as the specs write
    it: the mean over anchors of each anchor's sum over max(terms per anchor, eps)."""
    batch = tf.cast(tf.size(y), total.dtype)
    return total / batch / tf.maximum(terms / batch, EPS)


def circle(
    y: tf.Tensor, e: tf.Tensor, gamma: float, margin: float, remove_diagonal: float
) -> tf.Tensor:
    positive, negative = pair_masks(y)
    if remove_diagonal == 0:
        positive = tf.equal(y[:, None], y[None, :])
    d = tf.maximum(1 - tf.matmul(e, e, transpose_b=True), 0.0)
    positive_logits = -gamma * tf.nn.relu(margin + d) * (margin - d)
    negative_logits = gamma * tf.nn.relu(1 + margin - d) * (1 - margin - d)
    losses = tf.nn.softplus(
        masked_logsumexp(positive_logits, positive) + masked_logsumexp(negative_logits, negative)
    )
    return tf.math.divide_no_nan(tf.reduce_sum(losses), count(losses > 0, e.dtype, None))


def lifted_structured(y: tf.Tensor, e: tf.Tensor, margin: float) -> tf.Tensor:
    positive, negative = pair_masks(y)
    d = euclidean_distances(e)
    has_negatives = tf.reduce_any(negative, axis=1)
    log_negatives = tf.where(has_negatives, masked_logsumexp(margin - d, negative), 0.0)
    j = tf.experimental.numpy.logaddexp(log_negatives[:, None], log_negatives[None, :]) + d
    kept = tf.logical_and(positive, has_negatives[:, None])
    total = 0.5 * tf.reduce_sum(tf.where(kept, tf.square(tf.nn.relu(j)), 0.0))
    return per_anchor_share(total, count(positive, e.dtype, None), y)


def multi_similarity(
    y: tf.Tensor, e: tf.Tensor, alpha: float, beta: float, base: float, margin: float
) -> tf.Tensor:
    positive, negative = pair_masks(y)
    s = cosine_similarities(e)
    least_positive = tf.where(
        tf.reduce_any(positive, 1), tf.reduce_min(tf.where(positive, s, np.inf), 1), 0.0
    )
    most_negative = tf.where(
        tf.reduce_any(negative, 1), tf.reduce_max(tf.where(negative, s, -np.inf), 1), 0.0
    )
    kept_positive = tf.logical_and(positive, s - margin < most_negative[:, None])
    kept_negative = tf.logical_and(negative, s + margin > least_positive[:, None])
    positive_sum = tf.reduce_sum(tf.where(kept_positive, tf.exp(-alpha * (s - base)), 0.0), 1)
    negative_sum = tf.reduce_sum(tf.where(kept_negative, tf.exp(beta * (s - base)), 0.0), 1)
    losses = tf.math.log1p(positive_sum) / alpha + tf.math.log1p(negative_sum) / beta
    both = tf.logical_and(tf.reduce_any(kept_positive, 1), tf.reduce_any(kept_negative, 1))
    return tf.reduce_mean(tf.where(both, losses, 0.0))


def contrastive_logits(y: tf.Tensor, e: tf.Tensor, temperature: float) -> tuple[tf.Tensor, ...]:
    """Logits s / t, the positive pairs, the pairs other than the anchor itself, and the
    -log of the softmax's denominator over the latter."""
    positive, _ = pair_masks(y)
    logits = cosine_similarities(e) / temperature
    not_self = tf.logical_not(tf.eye(tf.shape(e)[0], dtype=tf.bool))
    return logits, positive, masked_logsumexp(logits, not_self)


def nt_xent(y: tf.Tensor, e: tf.Tensor, temperature: float) -> tf.Tensor:
    logits, positive, log_denominator = contrastive_logits(y, e, temperature)
    has_positive = tf.reduce_any(positive, 1)
    losses = tf.where(has_positive, log_denominator - masked_logsumexp(logits, positive), 0.0)
    return tf.reduce_sum(losses) / count(has_positive, e.dtype, None)


def supervised_contrastive(y: tf.Tensor, e: tf.Tensor, temperature: float) -> tf.Tensor:
    logits, positive, log_denominator = contrastive_logits(y, e, temperature)
    positives = count(positive, e.dtype)
    mean_positive = tf.math.divide_no_nan(
        tf.reduce_sum(tf.where(positive, logits, 0.0), 1), positives
    )
    has_positive = positives > 0
    losses = tf.where(has_positive, log_denominator - mean_positive, 0.0)
    return tf.reduce_sum(losses) / count(has_positive, e.dtype, None)


def triplet_batch_all(y: tf.Tensor, e: tf.Tensor, margin: float) -> tf.Tensor:
    positive, negative = pair_masks(y)
    d = euclidean_distances(e)
    valid = tf.logical_and(positive[:, :, None], negative[:, None, :])
    losses = tf.nn.relu(d[:, :, None] - d[:, None, :] + margin)
    total = tf.reduce_sum(tf.where(valid, losses, 0.0))
    return per_anchor_share(total, count(valid, e.dtype, None), y)


def triplet_batch_hard(y: tf.Tensor, e: tf.Tensor, margin: float) -> tf.Tensor:
    positive, negative = pair_masks(y)
    d = euclidean_distances(e)
    hardest_positive = tf.reduce_max(tf.where(positive, d, 0.0), 1)
    nearest_negative = tf.reduce_min(tf.where(negative, d, np.inf), 1)
    hardest_negative = tf.where(tf.reduce_any(negative, 1), nearest_negative, tf.reduce_max(d, 1))
    return tf.reduce_mean(tf.nn.relu(hardest_positive - hardest_negative + margin))


def triplet_semihard(y: tf.Tensor, e: tf.Tensor, margin: float) -> tf.Tensor:
    positive, negative = pair_masks(y)
    d = euclidean_distances(e)
    farther = tf.logical_and(negative[:, None, :], d[:, None, :] > d[:, :, None])
    nearest_farther = tf.reduce_min(tf.where(farther, d[:, None, :], np.inf), 2)
    farthest = tf.reduce_max(tf.where(negative, d, 0.0), 1)
    semihard = tf.where(tf.reduce_any(farther, 2), nearest_farther, farthest[:, None])
    total = tf.reduce_sum(tf.where(positive, tf.nn.relu(d - semihard + margin), 0.0))
    return per_anchor_share(total, count(positive, e.dtype, None), y)


def contrastive(y: tf.Tensor, e: tf.Tensor, margin: float) -> tf.Tensor:
    positive, negative = pair_masks(y)
    d = euclidean_distances(e)
    pulled = tf.where(positive, 0.5 * tf.square(d), 0.0)
    pushed = tf.where(negative, 0.5 * tf.square(tf.nn.relu(margin - d)), 0.0)
    partners = tf.cast(tf.size(y) - 1, e.dtype)  # every other sample of the batch
    return tf.reduce_mean(tf.reduce_sum(pulled + pushed, axis=1) / partners)


# ---------------------------------------------------------------------- the table


def built_in(make: Callable[..., keras.losses.Loss], **arguments: Any) -> KerasBuilder:
    """A Keras built-in taking the spec's params under the same names."""
    return lambda **params: keras_loss(make(**arguments, **params))


def keras_label_smoothed_ce(smoothing: float) -> LossFunction:
    return keras_loss(
        keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=smoothing)
    )


def keras_class_balanced(w: list[float]) -> LossFunction:
    """Sparse CE on logits with w[y] as the sample weight: Keras's mean of w[y] * CE."""
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    weights = tf.constant(w, tf.float32)
    return lambda y, z: loss(y, z, sample_weight=tf.gather(weights, y))


def keras_circle(gamma: float, margin: float, remove_diagonal: float) -> LossFunction:
    return keras_loss(
        keras.losses.Circle(gamma=gamma, margin=margin, remove_diagonal=bool(remove_diagonal))
    )


@dataclass(frozen=True)
class Case:
    """One example spec, named by its file's stem: the hand-written function of that name,
    its shape family, its inputs, its params at a width, the Keras built-in computing the
    same function, if one does, and y_pred's channels, if the spec selects them."""

    hand_written: HandWritten
    family: str
    draw: Draw
    params: Callable[[int], dict[str, Any]] = no_params
    keras: KerasBuilder | None = None
    channels: int | None = None  # y_pred's number of channels, where the spec selects them

    def shapes(self, requested: Sequence[tuple[int, int]] | None) -> list[tuple[int, int]]:
        """The requested shapes, else the family's; the width is the channel count, if any."""
        shapes = requested or FAMILY_SHAPES[self.family]
        return [(batch, self.channels or width) for batch, width in shapes]

    @property
    def name(self) -> str:
        return self.hand_written.__name__


K = keras.losses
CASES: dict[str, Case] = {
    case.name: case
    for case in (
        # Elementwise and per-sample losses: [batch, outputs].
        Case(
            asymmetric,
            ELEMENT,
            binary_logits,
            fixed(gamma_pos=0.0, gamma_neg=4.0, margin=0.05),
        ),
        Case(
            binary_crossentropy,
            ELEMENT,
            binary_probabilities,
            fixed(label_smoothing=0.1),
            built_in(K.BinaryCrossentropy),
        ),
        Case(
            binary_crossentropy_logits,
            ELEMENT,
            binary_logits,
            fixed(label_smoothing=0.1),
            built_in(K.BinaryCrossentropy, from_logits=True),
        ),
        Case(
            binary_focal,
            ELEMENT,
            binary_probabilities,
            fixed(gamma=2.0, alpha=0.25),
            built_in(K.BinaryFocalCrossentropy, apply_class_balancing=True),
        ),
        Case(
            binary_focal_crossentropy,
            ELEMENT,
            binary_probabilities,
            fixed(gamma=2.0, label_smoothing=0.1),
            built_in(K.BinaryFocalCrossentropy),
        ),
        Case(
            binary_focal_logits,
            ELEMENT,
            binary_logits,
            fixed(gamma=2.0, alpha=0.25),
            built_in(K.BinaryFocalCrossentropy, apply_class_balancing=True, from_logits=True),
        ),
        Case(ce_l1, ELEMENT, binary_probabilities, fixed(l1=0.01)),
        Case(cosine_similarity, ELEMENT, regression, keras=built_in(K.CosineSimilarity)),
        Case(dice, ELEMENT, binary_probabilities, keras=built_in(K.Dice)),
        Case(hinge, ELEMENT, binary_scores, keras=built_in(K.Hinge)),
        Case(huber, ELEMENT, regression, fixed(delta=1.0), built_in(K.Huber)),
        Case(log_cosh, ELEMENT, regression, keras=built_in(K.LogCosh)),
        Case(mean_absolute_error, ELEMENT, regression, keras=built_in(K.MeanAbsoluteError)),
        Case(
            mean_absolute_percentage_error,
            ELEMENT,
            regression,
            keras=built_in(K.MeanAbsolutePercentageError),
        ),
        Case(mean_squared_error, ELEMENT, regression, keras=built_in(K.MeanSquaredError)),
        Case(
            mean_squared_logarithmic_error,
            ELEMENT,
            nonneg_regression,
            keras=built_in(K.MeanSquaredLogarithmicError),
        ),
        Case(poisson, ELEMENT, counts_and_rates, keras=built_in(K.Poisson)),
        Case(quantile, ELEMENT, regression, fixed(tau=0.9)),
        Case(soft_jaccard, ELEMENT, binary_probabilities, fixed(smooth=1.0)),
        Case(squared_hinge, ELEMENT, binary_scores, keras=built_in(K.SquaredHinge)),
        Case(
            tversky,
            ELEMENT,
            binary_probabilities,
            fixed(alpha=0.3, beta=0.7),
            built_in(K.Tversky),
        ),
        Case(weighted_bce, ELEMENT, binary_probabilities, fixed(pos_weight=2.0)),
        Case(weighted_bce_logits, ELEMENT, binary_logits, fixed(pos_weight=2.0)),
        Case(weighted_mse, ELEMENT, regression, per_class_weights),
        # Channels selected by the spec: [batch, channels].
        Case(gaussian_crps, CHANNELS, location_and_log_scale, channels=2),
        Case(gaussian_nll, CHANNELS, location_and_log_scale, channels=2),
        Case(giou, CHANNELS, boxes, channels=4),
        Case(margin_ranking, CHANNELS, ranked_pairs, fixed(margin=0.1), channels=2),
        Case(student_t_nll, CHANNELS, location_and_log_scale, fixed(nu=3.0), channels=2),
        # Over a class axis: [batch, classes].
        Case(
            categorical_crossentropy,
            CLASS,
            onehot_probabilities,
            fixed(label_smoothing=0.1),
            built_in(K.CategoricalCrossentropy),
        ),
        Case(
            categorical_crossentropy_logits,
            CLASS,
            onehot_logits,
            fixed(label_smoothing=0.1),
            built_in(K.CategoricalCrossentropy, from_logits=True),
        ),
        Case(
            categorical_focal_crossentropy,
            CLASS,
            onehot_probabilities,
            fixed(alpha=0.25, gamma=2.0, label_smoothing=0.1),
            built_in(K.CategoricalFocalCrossentropy),
        ),
        Case(categorical_focal_logits, CLASS, onehot_logits, fixed(gamma=2.0, alpha=0.25)),
        Case(
            categorical_generalized_cross_entropy,
            CLASS,
            label_probabilities,
            fixed(q=0.5),
            built_in(K.CategoricalGeneralizedCrossEntropy),
        ),
        Case(categorical_hinge, CLASS, onehot_scores, keras=built_in(K.CategoricalHinge)),
        Case(coral, ORDINAL, ranks_and_thresholds),
        Case(
            ce_kl_prior,
            CLASS,
            onehot_probabilities,
            lambda width: {"prior": class_prior(width), "beta": 0.1},
        ),
        Case(
            class_balanced,
            CLASS,
            label_logits,
            per_class_weights,
            keras_class_balanced,
        ),
        Case(focal, CLASS, onehot_probabilities, fixed(gamma=2.0, alpha=0.25)),
        Case(kl_divergence, CLASS, onehot_probabilities, keras=built_in(K.KLDivergence)),
        Case(
            label_smoothed_ce,
            CLASS,
            onehot_logits,
            fixed(smoothing=0.1),
            keras_label_smoothed_ce,
        ),
        Case(
            ldam,
            CLASS,
            label_logits,
            lambda width: {"margins": ldam_margins(width), "s": 30.0},
        ),
        Case(poly1, CLASS, onehot_logits, fixed(epsilon=1.0)),
        Case(
            sparse_categorical_crossentropy,
            CLASS,
            label_probabilities,
            keras=built_in(K.SparseCategoricalCrossentropy),
        ),
        Case(
            sparse_categorical_crossentropy_ignore,
            CLASS,
            ignored_label_logits,
            keras=built_in(K.SparseCategoricalCrossentropy, from_logits=True, ignore_class=-1),
        ),
        Case(
            sparse_categorical_crossentropy_logits,
            CLASS,
            label_logits,
            keras=built_in(K.SparseCategoricalCrossentropy, from_logits=True),
        ),
        Case(
            sparse_ce_ignore_per_sample,
            CLASS,
            ignored_label_logits,
            keras=built_in(K.SparseCategoricalCrossentropy, from_logits=True, ignore_class=-1),
        ),
        Case(squared_emd, ORDINAL, onehot_probabilities),
        Case(weighted_ce, CLASS, onehot_probabilities, per_class_weights),
        Case(
            weighted_ce_classwise,
            CLASS,
            onehot_probabilities,
            per_class_weights,
        ),
        Case(
            weighted_sparse_ce,
            CLASS,
            label_probabilities,
            per_class_weights,
        ),
        # Losses from the literature (benchmarks/specs/literature/).
        Case(balanced_l1, ELEMENT, regression, fixed(alpha=0.5, gamma=1.5)),
        Case(barron, ELEMENT, regression, fixed(alpha=1.5, c=1.0)),
        Case(charbonnier, ELEMENT, regression, fixed(eps2=0.001)),
        Case(tweedie, ELEMENT, counts_and_rates, fixed(rho=1.5)),
        Case(wing, ELEMENT, regression, fixed(w=10.0, e=2.0)),
        Case(focal_tversky, ELEMENT, binary_probabilities, fixed(alpha=0.7, gamma=0.75)),
        Case(log_cosh_dice, ELEMENT, binary_probabilities),
        Case(bootstrap, CLASS, onehot_probabilities, fixed(beta=0.95)),
        Case(distill_kl, CLASS, onehot_logits, fixed(t=4.0)),
        Case(nce_rce, CLASS, onehot_logits, fixed(alpha=1.0, beta=1.0)),
        Case(symmetric_ce, CLASS, onehot_logits, fixed(alpha=0.1, beta=1.0)),
        Case(cauchy, ELEMENT, regression, fixed(c=1.0)),
        Case(geman_mcclure, ELEMENT, regression, fixed(c=1.0)),
        Case(welsch, ELEMENT, regression, fixed(c=1.0)),
        Case(smape, ELEMENT, regression),
        Case(poisson_log, ELEMENT, log_rates),
        Case(js_divergence, CLASS, soft_labels_and_logits),
        # The second literature set (nineteenth session), timed before any tuning for it.
        Case(confidence_penalty, CLASS, onehot_logits, fixed(beta=0.1)),
        Case(expectile, ELEMENT, regression, fixed(tau=0.8)),
        Case(exponential, ELEMENT, binary_scores),
        Case(hellinger, CLASS, soft_labels_and_logits),
        Case(pseudo_huber, ELEMENT, regression, fixed(d=1.0)),
        Case(rmse, ELEMENT, regression),
        Case(smooth_l1, ELEMENT, regression, fixed(beta=1.0)),
        Case(soft_mae, CLASS, onehot_logits),
        Case(taylor_ce, CLASS, onehot_probabilities),
        Case(tukey, ELEMENT, regression, fixed(c=4.685)),
        # The third literature set, timed before any tuning for it.
        Case(berhu, ELEMENT, regression, fixed(c=1.0)),
        Case(brier, CLASS, onehot_logits),
        Case(gce_logits, CLASS, onehot_logits, fixed(q=0.7)),
        Case(generalized_dice, ELEMENT, binary_logits),
        Case(laplace_nll, CHANNELS, location_and_log_scale, channels=2),
        Case(logistic, ELEMENT, binary_scores),
        Case(modified_huber, ELEMENT, binary_scores),
        Case(multi_margin, CLASS, onehot_scores, fixed(margin=1.0)),
        Case(quantile_huber, ELEMENT, regression, fixed(tau=0.25, kappa=1.0)),
        Case(reverse_kl, CLASS, soft_labels_and_logits),
        # The fourth literature set, timed before any tuning for it.
        Case(beta_nll, CHANNELS, location_and_log_scale, fixed(beta=0.5), channels=2),
        Case(cauchy_schwarz, CLASS, soft_labels_and_logits),
        Case(cosface, CLASS, onehot_scores, fixed(s=30.0, m=0.35)),
        Case(fair, ELEMENT, regression, fixed(c=1.0)),
        Case(itakura_saito, ELEMENT, counts_and_rates),
        Case(negative_binomial_nll, ELEMENT, log_rates, fixed(r=2.0)),
        Case(poly1_focal, CLASS, onehot_logits, fixed(gamma=2.0, epsilon=1.0)),
        Case(smooth_hinge, ELEMENT, binary_scores),
        Case(spherical_softmax, CLASS, onehot_scores, fixed(e=0.001)),
        Case(vnet_dice, CLASS, onehot_logits, fixed(smooth=1.0)),
        # The fifth literature set, timed before any tuning for it.
        Case(
            adaptive_wing,
            ELEMENT,
            heatmaps,
            fixed(omega=14.0, theta=0.5, epsilon=1.0, alpha=2.1),
        ),
        Case(centernet_focal, ELEMENT, heatmaps, fixed(alpha=2.0, beta=4.0)),
        Case(combo, ELEMENT, binary_probabilities, fixed(alpha=0.5, beta=0.5, smooth=1.0)),
        Case(focal_l1, ELEMENT, regression, fixed(beta=0.2, gamma=1.0)),
        Case(
            logit_adjusted,
            CLASS,
            onehot_logits,
            lambda width: {"prior": class_prior(width), "tau": 1.0},
        ),
        Case(
            multi_quantile,
            CHANNELS,
            quantile_predictions,
            lambda width: {"tau": quantile_levels(width)},
            channels=3,
        ),
        Case(shrinkage, ELEMENT, regression, fixed(a=10.0, c=0.2)),
        Case(tanimoto_complement, ELEMENT, binary_probabilities, fixed(smooth=1e-5)),
        # The sixth literature set, timed before any tuning for it.
        Case(
            asymmetric_laplace_nll,
            CHANNELS,
            location_and_log_scale,
            fixed(tau=0.25),
            channels=2,
        ),
        Case(bhattacharyya, CLASS, soft_labels_and_logits),
        Case(diou, CHANNELS, boxes, channels=4),
        Case(epsilon_insensitive, ELEMENT, regression, fixed(epsilon=0.1)),
        Case(
            evidential_regression,
            CHANNELS,
            evidential_outputs,
            fixed(lam=0.01),
            channels=4,
        ),
        Case(generalized_charbonnier, ELEMENT, regression, fixed(alpha=0.45, epsilon=0.001)),
        Case(listnet, CLASS, regression),
        Case(nfl_mae, CLASS, onehot_logits, fixed(alpha=1.0, beta=1.0, gamma=0.5)),
        # The seventh literature set (twenty-fourth session), timed before any tuning for it.
        Case(evidential_classification, CLASS, onehot_logits, fixed(lam=0.1)),
        Case(guided_complement_entropy, CLASS, onehot_logits, fixed(alpha=0.2)),
        Case(gumbel_nll, CHANNELS, location_and_log_scale, channels=2),
        Case(hed_balanced_bce, ELEMENT, binary_probabilities),
        Case(phuber_ce, CLASS, onehot_logits, fixed(tau=10.0)),
        Case(smooth_pinball, ELEMENT, regression, fixed(tau=0.9, alpha=0.1)),
        Case(soft_f_beta, ELEMENT, binary_logits, fixed(beta=1.0)),
        Case(tilted_mse, ELEMENT, regression, fixed(t=-1.0)),
        # The eighth literature set (twenty-fifth session), timed before any tuning for it.
        Case(contrastive, PAIRS, sphere_embeddings, fixed(margin=1.0)),
        Case(linex, ELEMENT, regression, fixed(a=1.0, b=1.0)),
        Case(mdca_ce, CLASS, onehot_logits, fixed(beta=1.0)),
        Case(silog, ELEMENT, depths, fixed(lam=0.5)),
        Case(tempered_logistic, CLASS, onehot_logits, fixed(t1=0.8)),
        Case(varifocal, ELEMENT, iou_targets, fixed(alpha=0.75, gamma=2.0)),
        Case(weibull_nll, CHANNELS, times_to_event, channels=2),
        Case(zlpr, CLASS, binary_logits),
        # Pairs and triplets of samples: [batch, D] embeddings, labels [batch].
        Case(
            circle,
            PAIRS,
            sphere_embeddings,
            fixed(gamma=80.0, margin=0.4, remove_diagonal=1.0),
            keras_circle,
        ),
        Case(lifted_structured, PAIRS, grouped_embeddings, fixed(margin=1.0)),
        Case(
            multi_similarity,
            PAIRS,
            grouped_embeddings,
            fixed(alpha=2.0, beta=50.0, base=0.5, margin=0.1),
        ),
        Case(nt_xent, PAIRS, two_views, fixed(temperature=0.1)),
        Case(supervised_contrastive, PAIRS, grouped_embeddings, fixed(temperature=0.07)),
        Case(triplet_batch_hard, PAIRS, grouped_embeddings, fixed(margin=1.0)),
        Case(triplet_batch_all, TRIPLETS, grouped_embeddings, fixed(margin=1.0)),
        Case(triplet_semihard, TRIPLETS, grouped_embeddings, fixed(margin=1.0)),
    )
}


def example_specs() -> dict[str, Path]:
    """Every spec under examples/ and the literature set, by its file's stem."""
    specs: dict[str, Path] = {}
    for path in [*sorted(EXAMPLES.rglob("*.loss")), *sorted(LITERATURE.glob("*.loss"))]:
        if path.stem in specs:
            raise SystemExit(f"error: two example specs named {path.stem}: {specs[path.stem]}")
        specs[path.stem] = path
    return specs


def missing_cases() -> list[str]:
    """The example specs that have no hand-written version in CASES."""
    return sorted(set(example_specs()) - set(CASES))


def check_coverage() -> None:
    """Stop unless every example spec has a case and every case a spec."""
    specs = example_specs()
    missing = missing_cases()
    if missing:
        raise SystemExit(
            f"error: no hand-written version in {Path(__file__).name} for "
            + ", ".join(str(specs[name].relative_to(EXAMPLES.parent)) for name in missing)
            + ": add a function of the spec's name and a Case to CASES"
        )
    orphans = sorted(set(CASES) - set(specs))
    if orphans:
        raise SystemExit(f"error: cases without a spec in examples/: {', '.join(orphans)}")


# ---------------------------------------------------------------------- timing


class Mismatch(Exception):
    """A hand-written version or Keras built-in that does not compute the spec's loss."""


@dataclass(frozen=True)
class Group:
    """One spec at one shape and mode: median times and paired median ratios."""

    case: str
    family: str
    shape: tuple[int, int]
    jit_compile: bool
    literature: bool  # a spec of the literature set, not of examples/
    median_ms: dict[str, float]
    ratio_to_hand_written: float  # median over rounds of lossdsl / hand-written, same round
    ratio_to_keras: float | None  # the same against the Keras built-in; None without one
    # Against the spec's in this group's mode: relative, and relative to the largest |grad|.
    value_error: dict[str, float] = field(default_factory=dict)
    gradient_error: dict[str, float] = field(default_factory=dict)


def compiled_loss(path: Path, jit_compile: bool, params: dict[str, Any]) -> LossFunction:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lossdsl.LossSpecWarning)
        loss = lossdsl.load(path, jit_compile=jit_compile, **params)
    return keras_loss(loss)


def hand_written_loss(case: Case, params: dict[str, Any]) -> LossFunction:
    """The hand-written function with the params bound; vector params as float32 tensors."""
    bound = {
        name: tf.constant(value, tf.float32) if isinstance(value, list) else value
        for name, value in params.items()
    }
    return lambda y_true, y_pred: case.hand_written(y_true, y_pred, **bound)


def disagreement(got: tuple[Any, Any], want: tuple[Any, Any]) -> tuple[float, float]:
    """Relative errors of a value and of a gradient (scaled to the largest |entry|) against
    the spec's; inf where anything is not finite."""
    value, gradient = (np.asarray(x, np.float64) for x in got)
    want_value, want_gradient = (np.asarray(x, np.float64) for x in want)
    if not (np.all(np.isfinite(value)) and np.all(np.isfinite(gradient))):
        return math.inf, math.inf
    tiny = np.finfo(np.float32).tiny
    value_error = float(np.max(np.abs(value - want_value)) / max(np.max(np.abs(want_value)), tiny))
    scale = max(float(np.max(np.abs(want_gradient), initial=0.0)), tiny)
    return value_error, float(np.max(np.abs(gradient - want_gradient), initial=0.0) / scale)


Steps = dict[str, Callable[..., Any]]  # variant -> (y_true, y_pred) -> (value, gradient)


def prepare(
    case: Case, path: Path, shape: tuple[int, int], jit_compile: bool
) -> tuple[Steps, tuple[tf.Tensor, tf.Tensor]]:
    """Every variant's loss-and-gradient step in one mode, and the benchmark's inputs."""
    batch, width = shape
    params = case.params(width)
    y_true, y_pred = case.draw(np.random.default_rng(0), batch, width)
    losses = {
        COMPILED: compiled_loss(path, jit_compile, params),
        HAND_WRITTEN: hand_written_loss(case, params),
    }
    if case.keras is not None:
        losses[KERAS] = case.keras(**params)
    # Not converted by AutoGraph (none of them has tensor-dependent Python control flow):
    # its cache of converted closures mixed up the hand-written functions of two cases.
    steps = {
        name: value_and_gradient(tf.autograph.experimental.do_not_convert(loss), jit_compile)
        for name, loss in losses.items()
    }
    return steps, (tf.constant(y_true), tf.constant(y_pred))


class Disagreement(NamedTuple):
    """A peer's value beside the spec's, and its errors (see `disagreement`)."""

    value: float
    spec_value: float
    value_error: float
    gradient_error: float


def peer_errors(steps: Steps, arguments: tuple[tf.Tensor, tf.Tensor]) -> dict[str, Disagreement]:
    """How far each peer's value and gradient are from the compiled spec's."""
    results = {name: step(*arguments) for name, step in steps.items()}
    spec = results[COMPILED]
    return {
        name: Disagreement(float(result[0]), float(spec[0]), *disagreement(result, spec))
        for name, result in results.items()
        if name != COMPILED
    }


def check_agreement(case: Case, path: Path, shape: tuple[int, int]) -> None:
    """Stop unless every peer computes the spec's value and gradient at the benchmark's
    inputs, in graph mode. Not with XLA: on the CPU it adds float32 terms in another order
    (the hand-written CORAL, 32,000 positive terms a sample, moved by 2.3e-4 there while
    graph mode and the spec stayed within 1e-7 of the exact value), so there the check
    would measure rounding, not the formula."""
    for name, found in peer_errors(*prepare(case, path, shape, jit_compile=False)).items():
        if max(found.value_error, found.gradient_error) > AGREEMENT:
            raise Mismatch(
                f"{case.name} at {shape_name(shape)}: the {name} version does not compute "
                f"the spec's loss (value {found.value:.7g} against {found.spec_value:.7g}, "
                f"relative error {found.value_error:.1e}; gradient error "
                f"{found.gradient_error:.1e}; at most {AGREEMENT:g} allowed, in graph mode)"
            )


def benchmark_group(
    case: Case,
    path: Path,
    shape: tuple[int, int],
    jit_compile: bool,
    repeats: int,
    warmup: int,
) -> Group:
    steps, arguments = prepare(case, path, shape, jit_compile)
    errors = peer_errors(steps, arguments)
    seconds = time_interleaved(steps, arguments, repeats, warmup)
    keras_seconds = seconds.get(KERAS)
    return Group(
        case=case.name,
        family=case.family,
        shape=shape,
        jit_compile=jit_compile,
        literature=path.parent == LITERATURE,
        median_ms={name: 1e3 * statistics.median(times) for name, times in seconds.items()},
        ratio_to_hand_written=paired_ratio(seconds[COMPILED], seconds[HAND_WRITTEN]),
        ratio_to_keras=None
        if keras_seconds is None
        else paired_ratio(seconds[COMPILED], keras_seconds),
        value_error={name: found.value_error for name, found in errors.items()},
        gradient_error={name: found.gradient_error for name, found in errors.items()},
    )


# ---------------------------------------------------------------------- report


def group_line(group: Group) -> str:
    keras_ms = group.median_ms.get(KERAS)
    keras_ratio = group.ratio_to_keras
    return (
        f"{group.case:<40} {shape_name(group.shape):<10} {mode_name(group.jit_compile):<5} "
        f"{group.median_ms[COMPILED]:>10.3f} {group.median_ms[HAND_WRITTEN]:>8.3f} "
        + (f"{keras_ms:>9.3f}" if keras_ms is not None else f"{'-':>9}")
        + f" {group.ratio_to_hand_written:>6.2f} "
        + (f"{keras_ratio:>7.2f}" if keras_ratio is not None else f"{'-':>7}")
    )


TABLE_HEADER = (
    f"{'case':<40} {'shape':<10} {'mode':<5} {'lossdsl ms':>10} {'hand ms':>8} {'keras ms':>9} "
    f"{'/hand':>6} {'/keras':>7}"
)


def summary(groups: Sequence[Group]) -> dict[str, dict[str, Any]]:
    """Per mode: the median and the worst (largest) ratio to each peer, with where; and to
    the hand-written versions of the literature set alone (`LITERATURE_SET`)."""
    result: dict[str, dict[str, Any]] = {}
    for jit_compile in sorted({group.jit_compile for group in groups}):
        in_mode = [group for group in groups if group.jit_compile == jit_compile]
        per_peer: dict[str, Any] = {}
        ratios: tuple[tuple[str, Callable[[Group], float | None]], ...] = (
            (HAND_WRITTEN, lambda group: group.ratio_to_hand_written),
            (KERAS, lambda group: group.ratio_to_keras),
            (
                LITERATURE_SET,
                lambda group: group.ratio_to_hand_written if group.literature else None,
            ),
        )
        for peer, ratio in ratios:
            rated = [(value, group) for group in in_mode if (value := ratio(group)) is not None]
            if not rated:
                continue
            worst_ratio, worst = max(rated, key=lambda pair: pair[0])
            per_peer[peer] = {
                "groups": len(rated),
                "median": statistics.median(value for value, _ in rated),
                "worst": worst_ratio,
                "worst_case": f"{worst.case} {shape_name(worst.shape)}",
            }
        result[mode_name(jit_compile)] = per_peer
    return result


def summary_table(summaries: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'mode':<5} {'lossdsl /':<13} {'groups':>6} {'median':>7} {'worst':>7}  worst at"]
    for mode, per_peer in summaries.items():
        for peer, row in per_peer.items():
            lines.append(
                f"{mode:<5} {peer:<13} {row['groups']:>6} {row['median']:>7.2f} "
                f"{row['worst']:>7.2f}  {row['worst_case']}"
            )
    return "\n".join(lines)


# ---------------------------------------------------------------------- command line


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time every example spec against hand-written TensorFlow and the Keras "
        "built-in computing the same loss (forward + backward, interleaved)."
    )
    add_run_arguments(parser, CASES, "every example", "32x10,16x100", DEFAULT_OUT)
    parser.add_argument(
        "--shapes",
        type=parse_shapes,
        help="comma-separated BATCHxWIDTH for every case (default: each family's shapes: "
        + "; ".join(
            f"{family} {','.join(map(shape_name, shapes))}"
            for family, shapes in FAMILY_SHAPES.items()
        )
        + ")",
    )
    arguments = checked_run_arguments(parser, parser.parse_args(argv), CASES)
    if arguments.quick and arguments.shapes is None:
        arguments.shapes = list(QUICK_SHAPES)
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    check_coverage()
    arguments = parse_arguments(argv)
    tf.get_logger().setLevel("ERROR")
    started = time.perf_counter()
    specs = example_specs()
    groups: list[Group] = []
    print(f"lossdsl library benchmark on {machine_description()}", flush=True)
    print(TABLE_HEADER, flush=True)
    try:
        for name in arguments.cases:
            case = CASES[name]
            for shape in case.shapes(arguments.shapes):
                check_agreement(case, specs[name], shape)
                for jit_compile in (mode == "xla" for mode in arguments.modes):
                    group = benchmark_group(
                        case, specs[name], shape, jit_compile, arguments.repeats, arguments.warmup
                    )
                    groups.append(group)
                    print(group_line(group), flush=True)
    except Mismatch as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    summaries = summary(groups)
    print("\nlossdsl time / peer time (medians of paired ratios), per mode")
    print(summary_table(summaries))
    elapsed = time.perf_counter() - started
    print(f"total {elapsed:.0f} s")
    report = {
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": machine_description(),
        "settings": {
            "cases": arguments.cases,
            "shapes": arguments.shapes or {k: list(v) for k, v in FAMILY_SHAPES.items()},
            "modes": arguments.modes,
            "repeats": arguments.repeats,
            "warmup": arguments.warmup,
        },
        "seconds": elapsed,
        "groups": [asdict(group) for group in groups],
        "summary": summaries,
    }
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {arguments.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
