"""Independent reference implementations of the example losses, for tests/test_library.py.

Each function is written from the loss's paper or definition with plain TensorFlow ops
(float32, as Keras runs) and returns what a Keras `call` returns: one value per sample
or per element. Nothing here uses lossdsl. The float64 NumPy functions at the end are
exact references for the accuracy comparisons at extreme inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

EPS = 1e-7

ReferenceFn = Callable[..., tf.Tensor]


class ReferenceLoss(keras.losses.Loss):
    """A reference function as a Keras loss, so Keras applies weights and reduction."""

    def __init__(
        self,
        fn: ReferenceFn,
        reduction: str | None = "sum_over_batch_size",
        dtype: str | None = None,
        **params: Any,
    ) -> None:
        super().__init__(reduction=reduction, name="reference", dtype=dtype)
        self.fn = fn
        self.params = params

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        return self.fn(y_true, y_pred, **self.params)


def _clip(p: tf.Tensor) -> tf.Tensor:
    return tf.clip_by_value(p, EPS, 1.0 - EPS)


def _ids(y: tf.Tensor) -> tf.Tensor:
    """Integer labels as int32, without a trailing axis of size 1."""
    return tf.cast(tf.reshape(y, tf.shape(y)[: tf.rank(y)]), tf.int32)


def _true_class_value(values: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """values[..., label] for every element (labels shaped like values without its last axis)."""
    return tf.reduce_sum(values * tf.one_hot(_ids(labels), tf.shape(values)[-1]), axis=-1)


def weighted_ce(y: tf.Tensor, p: tf.Tensor, w: list[float]) -> tf.Tensor:
    """-w[argmax(y)] * sum(y log(clip(p)))."""
    ce = -tf.reduce_sum(y * tf.math.log(_clip(p)), axis=-1)
    return tf.gather(tf.constant(w, p.dtype), tf.argmax(y, axis=-1)) * ce


def weighted_ce_classwise(y: tf.Tensor, p: tf.Tensor, w: list[float]) -> tf.Tensor:
    """-sum(w y log(clip(p)))."""
    return -tf.reduce_sum(tf.constant(w, p.dtype) * y * tf.math.log(_clip(p)), axis=-1)


def weighted_sparse_ce(y: tf.Tensor, p: tf.Tensor, w: list[float]) -> tf.Tensor:
    """-w[y] log(clip(p)[y]) for integer labels."""
    log_true = _true_class_value(tf.math.log(_clip(p)), y)
    return -tf.gather(tf.constant(w, p.dtype), _ids(y)) * log_true


def weighted_bce(y: tf.Tensor, p: tf.Tensor, pos_weight: float) -> tf.Tensor:
    """mean(-(pos_weight y log q + (1 - y) log(1 - q))), q = clip(p)."""
    q = _clip(p)
    return tf.reduce_mean(
        -(pos_weight * y * tf.math.log(q) + (1 - y) * tf.math.log(1 - q)), axis=-1
    )


def weighted_bce_logits(y: tf.Tensor, z: tf.Tensor, pos_weight: float) -> tf.Tensor:
    """TensorFlow's weighted_cross_entropy_with_logits, averaged over the last axis."""
    return tf.reduce_mean(
        tf.nn.weighted_cross_entropy_with_logits(y, z, pos_weight=pos_weight), axis=-1
    )


def weighted_mse(y: tf.Tensor, p: tf.Tensor, w: list[float]) -> tf.Tensor:
    """mean(w (p - y)^2) over the last axis."""
    return tf.reduce_mean(tf.constant(w, p.dtype) * tf.square(p - y), axis=-1)


def focal(y: tf.Tensor, p: tf.Tensor, gamma: float, alpha: float) -> tf.Tensor:
    """sum(alpha (1 - q)^gamma * -y log q), q = clip(p) (LANGUAGE.md's focal spec)."""
    q = _clip(p)
    return tf.reduce_sum(alpha * tf.pow(1 - q, gamma) * -y * tf.math.log(q), axis=-1)


def ce_l1(y: tf.Tensor, p: tf.Tensor, l1: float) -> tf.Tensor:
    """mean(bce(y, clip(p)) + l1 |p|) over the last axis."""
    q = _clip(p)
    bce = -(y * tf.math.log(q) + (1 - y) * tf.math.log(1 - q))
    return tf.reduce_mean(bce + l1 * tf.abs(p), axis=-1)


def ce_kl_prior(y: tf.Tensor, p: tf.Tensor, prior: list[float], beta: float) -> tf.Tensor:
    """-sum(y log q) + beta KL(prior || q), q = clip(p)."""
    q = _clip(p)
    prior_t = tf.constant(prior, p.dtype)
    kl = tf.reduce_sum(prior_t * tf.math.log(prior_t / q), axis=-1)
    return -tf.reduce_sum(y * tf.math.log(q), axis=-1) + beta * kl


def class_balanced(y: tf.Tensor, z: tf.Tensor, w: list[float]) -> tf.Tensor:
    """Keras's sparse categorical cross-entropy on logits times the true class's weight."""
    ce = keras.losses.sparse_categorical_crossentropy(y, z, from_logits=True)
    return tf.gather(tf.constant(w, z.dtype), _ids(y)) * ce


def poly1(y: tf.Tensor, z: tf.Tensor, epsilon: float) -> tf.Tensor:
    """softmax cross-entropy + epsilon (1 - p_t) (Leng et al., 2022, eq. 3)."""
    ce = tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=z)
    p_t = tf.reduce_sum(y * tf.nn.softmax(z), axis=-1)
    return ce + epsilon * (1 - p_t)


def asymmetric(
    y: tf.Tensor, z: tf.Tensor, gamma_pos: float, gamma_neg: float, margin: float
) -> tf.Tensor:
    """The official AsymmetricLoss (Ridnik et al., 2021), summed over the labels."""
    xs_pos = tf.sigmoid(z)
    xs_neg = tf.minimum(1 - xs_pos + margin, 1.0)
    loss = y * tf.math.log(tf.maximum(xs_pos, 1e-8)) + (1 - y) * tf.math.log(
        tf.maximum(xs_neg, 1e-8)
    )
    pt = xs_pos * y + xs_neg * (1 - y)
    gamma = gamma_pos * y + gamma_neg * (1 - y)
    return -tf.reduce_sum(loss * tf.pow(1 - pt, gamma), axis=-1)


def ldam(y: tf.Tensor, z: tf.Tensor, margins: list[float], s: float) -> tf.Tensor:
    """The official LDAMLoss (Cao et al., 2019): CE(s * (z - m_y on the true logit))."""
    ids = _ids(y)
    one_hot = tf.one_hot(ids, tf.shape(z)[-1], dtype=z.dtype)
    batch_m = tf.gather(tf.constant(margins, z.dtype), ids)[..., None]
    shifted = tf.where(one_hot > 0, z - batch_m, z)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids, logits=s * shifted)


def quantile(y: tf.Tensor, p: tf.Tensor, tau: float) -> tf.Tensor:
    """Pinball loss: tau e for e >= 0, (tau - 1) e below, e = y - p, averaged."""
    e = y - p
    return tf.reduce_mean(tf.where(e >= 0, tau * e, (tau - 1) * e), axis=-1)


def gaussian_crps(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    """CRPS of N(mu, sigma^2) at y: sigma (z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi)),
    with p's channels the mean and log(sigma)."""
    mu, sigma = p[:, 0], tf.exp(p[:, 1])
    z = (y[:, 0] - mu) / sigma
    cdf = 0.5 * (1 + tf.math.erf(z / math.sqrt(2.0)))
    pdf = tf.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return sigma * (z * (2 * cdf - 1) + 2 * pdf - 1 / math.sqrt(math.pi))


def student_t_nll(y: tf.Tensor, p: tf.Tensor, nu: float) -> tf.Tensor:
    """-log of the location-scale Student-t density with nu degrees of freedom, with p's
    channels the location and log(sigma)."""
    half = tf.constant(0.5 * nu, y.dtype)
    log_norm = tf.math.lgamma(half) - tf.math.lgamma(half + 0.5) + 0.5 * math.log(nu * math.pi)
    sigma = tf.exp(p[:, 1])
    e = (y[:, 0] - p[:, 0]) / sigma
    return log_norm + tf.math.log(sigma) + 0.5 * (nu + 1) * tf.math.log1p(e * e / nu)


def gaussian_nll(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    """torch.nn.GaussianNLLLoss(full=True) without its clamp of the variance:
    (log var + (y - mu)^2 / var + log(2 pi)) / 2, with p's channels mu and log(var)."""
    var = tf.exp(p[:, 1])
    return 0.5 * (tf.math.log(var) + tf.square(y[:, 0] - p[:, 0]) / var + math.log(2 * math.pi))


def margin_ranking(y: tf.Tensor, p: tf.Tensor, margin: float) -> tf.Tensor:
    """torch.nn.MarginRankingLoss: max(0, -y (x1 - x2) + margin), p's channels x1, x2."""
    return tf.maximum(0.0, -y[:, 0] * (p[:, 0] - p[:, 1]) + margin)


def giou(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    """TensorFlow Addons' `giou_loss` (tensorflow_addons/losses/giou_loss.py), boxes in its
    [y_min, x_min, y_max, x_max] order: callers reorder the spec's [x_min, y_min, ...]."""
    zero = tf.constant(0.0, p.dtype)
    b1_ymin, b1_xmin, b1_ymax, b1_xmax = tf.unstack(p, 4, axis=-1)
    b2_ymin, b2_xmin, b2_ymax, b2_xmax = tf.unstack(y, 4, axis=-1)
    b1_area = tf.maximum(zero, b1_xmax - b1_xmin) * tf.maximum(zero, b1_ymax - b1_ymin)
    b2_area = tf.maximum(zero, b2_xmax - b2_xmin) * tf.maximum(zero, b2_ymax - b2_ymin)
    intersect_width = tf.maximum(zero, tf.minimum(b1_xmax, b2_xmax) - tf.maximum(b1_xmin, b2_xmin))
    intersect_height = tf.maximum(zero, tf.minimum(b1_ymax, b2_ymax) - tf.maximum(b1_ymin, b2_ymin))
    intersect_area = intersect_width * intersect_height
    union_area = b1_area + b2_area - intersect_area
    iou = tf.math.divide_no_nan(intersect_area, union_area)
    enclose_width = tf.maximum(zero, tf.maximum(b1_xmax, b2_xmax) - tf.minimum(b1_xmin, b2_xmin))
    enclose_height = tf.maximum(zero, tf.maximum(b1_ymax, b2_ymax) - tf.minimum(b1_ymin, b2_ymin))
    enclose_area = enclose_width * enclose_height
    return 1 - (iou - tf.math.divide_no_nan(enclose_area - union_area, enclose_area))


def soft_jaccard(y: tf.Tensor, p: tf.Tensor, smooth: float) -> tf.Tensor:
    """1 - (I + smooth) / (U + smooth) over each sample's elements."""
    axes = tf.range(1, tf.rank(p))
    intersection = tf.reduce_sum(y * p, axis=axes)
    union = tf.reduce_sum(y + p, axis=axes) - intersection
    return 1 - (intersection + smooth) / (union + smooth)


def coral(y: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    """coral_pytorch's `coral_loss` per sample: the levels [y > k] of the rank y against the
    K - 1 threshold logits, -sum(levels log_sigmoid(z) + (1 - levels)(log_sigmoid(z) - z))."""
    thresholds = tf.range(tf.shape(z)[-1])
    levels = tf.cast(_ids(y)[..., tf.newaxis] > thresholds, z.dtype)
    log_sigmoid = tf.math.log_sigmoid(z)
    return -tf.reduce_sum(levels * log_sigmoid + (1 - levels) * (log_sigmoid - z), axis=-1)


def squared_emd(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    """Hou et al.'s squared EMD: the mean over the classes of the squared gap between the
    cumulative distributions, each a product with an upper-triangular matrix of ones."""
    classes = tf.shape(p)[-1]
    upper = tf.linalg.band_part(tf.ones([classes, classes], p.dtype), 0, -1)
    gap = tf.linalg.matvec(upper, p - y, transpose_a=True)
    return tf.reduce_mean(tf.square(gap), axis=-1)


# ---------------------------------------------------------------- float64 NumPy references


def np_softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def np_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np_softplus(-x))


def np_log_softmax(z: np.ndarray) -> np.ndarray:
    """log_softmax with the largest term kept out of the sum, exact when one class dominates."""
    top = np.argmax(z, axis=-1)[..., None]
    shifted = z - np.take_along_axis(z, top, axis=-1)
    others = np.where(np.arange(z.shape[-1]) == top, 0.0, np.exp(shifted))
    return shifted - np.log1p(others.sum(axis=-1, keepdims=True))


def np_bce(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Exact binary cross-entropy on probabilities inside the clip range, averaged."""
    return -(y * np.log(p) + (1 - y) * np.log1p(-p)).mean(axis=-1)


def np_msle(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Exact mean squared logarithmic error (with Keras's max(., eps))."""
    return np.square(np.log1p(np.maximum(p, EPS)) - np.log1p(np.maximum(y, EPS))).mean(axis=-1)


def np_categorical_focal_logits(
    y: np.ndarray, z: np.ndarray, gamma: float, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Exact value and d/dz (by central differences in float64) of the focal loss on logits."""

    def value(logits: np.ndarray) -> np.ndarray:
        log_q = np_log_softmax(logits)
        one_minus_q = -np.expm1(log_q)  # exact also when q -> 1
        return (alpha * one_minus_q**gamma * -y * log_q).sum(axis=-1)

    grad = np.zeros_like(z)
    for index in np.ndindex(z.shape):
        step = 1e-6 * max(1.0, abs(z[index]))
        up, down = z.copy(), z.copy()
        up[index] += step
        down[index] -= step
        grad[index] = (value(up)[index[:-1]] - value(down)[index[:-1]]) / (2 * step)
    return value(z), grad


def np_bce_logits(y: np.ndarray, z: np.ndarray, pos_weight: float) -> np.ndarray:
    """Exact weighted binary cross-entropy on logits, averaged over the last axis."""
    return (pos_weight * y * np_softplus(-z) + (1 - y) * np_softplus(z)).mean(axis=-1)
