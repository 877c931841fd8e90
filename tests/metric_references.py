"""Hand-written TensorFlow references of the metric-learning losses, written without lossdsl.

Each function takes integer labels y ([batch] or [batch, 1]) and embeddings e ([batch, D])
and returns one value per anchor (float32 or float64, as e), differentiable with
tf.GradientTape, such that Keras's mean over the batch is the library's value:

- `keras.losses.Circle` is its own reference (`circle` below only calls it);
- TensorFlow Addons' `triplet_hard_loss`, `triplet_semihard_loss` and `lifted_struct_loss`
  (tensorflow_addons/losses/triplet.py, lifted.py, metric_learning.py) return one scalar
  for the batch. Batch-hard is a mean over anchors already; semi-hard and lifted divide a
  sum over all positive pairs of the batch by the number of such pairs, so each anchor's
  value here is its own sum divided by the batch's mean number of pairs per anchor: the
  mean over anchors is TensorFlow Addons' scalar, and sample weights weigh each anchor's
  share. Where TensorFlow Addons divides 0 by 0 (no positive pair in the batch), the value
  is 0;
- batch-all triplet (Hermans et al. 2017, "BA"; TensorFlow Addons has none): the mean of
  relu(d(a, p) - d(a, n) + margin) over all valid triplets of the batch, shared out the
  same way;
- NT-Xent (Chen et al. 2020), supervised contrastive (Khosla et al. 2020, L_out) and
  multi-similarity (Wang et al. 2019, with its pair mining) as documented on each function.

Distances are TensorFlow Addons' "L2" (`pairwise_distance(squared=False)`): the Euclidean
distance, 0 with gradient 0 where two embeddings coincide (a sample with itself). It is
computed from the differences e_i - e_j, where TensorFlow Addons expands
|e_i|^2 + |e_j|^2 - 2 e_i.e_j (equal in exact arithmetic; the expansion loses digits to
cancellation). Cosine similarities normalise as `tf.math.l2_normalize` does.

The masked reductions follow LANGUAGE.md 6.5's conventions for an empty selection (sum and
mean 0, max and min 0, logsumexp -inf), each with a finite gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf
from keras.src import backend as keras_backend  # set_keras_mask, as keras.losses.circle uses

MetricFn = Callable[..., tf.Tensor]
EPS = 1e-7
"""Keras's epsilon: the floor of the batch's mean number of pairs per anchor."""


class MetricReference(keras.losses.Loss):
    """A reference function as a Keras loss, so that Keras applies weights, mask and reduction."""

    def __init__(
        self,
        fn: MetricFn,
        reduction: str | None = "sum_over_batch_size",
        dtype: str | None = None,
        **params: Any,
    ) -> None:
        super().__init__(reduction=reduction, name="metric_reference", dtype=dtype)
        self.fn = fn
        self.params = params

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        return self.fn(y_true, y_pred, **self.params)


# ---------------------------------------------------------------- pairs


def _labels(y: tf.Tensor) -> tf.Tensor:
    """Labels as an int32 vector [batch]."""
    return tf.reshape(tf.cast(y, tf.int32), [-1])


def _pairs(y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The [batch, batch] masks of positive pairs (same label, not itself) and negative pairs."""
    labels = _labels(y)
    same = tf.equal(labels[:, None], labels[None, :])
    not_self = tf.logical_not(tf.eye(tf.size(labels), dtype=tf.bool))
    return tf.logical_and(same, not_self), tf.logical_not(same)


def l2_distances(e: tf.Tensor) -> tf.Tensor:
    """[batch, batch] Euclidean distances; 0 (gradient 0) where two embeddings coincide."""
    squared = tf.reduce_sum(tf.square(e[:, None, :] - e[None, :, :]), axis=-1)
    apart = squared > 0
    distance = tf.sqrt(tf.where(apart, squared, tf.ones_like(squared)))
    return tf.where(apart, distance, tf.zeros_like(distance))


def cosine_similarities(e: tf.Tensor) -> tf.Tensor:
    """[batch, batch] cosine similarities of embeddings normalised by `tf.math.l2_normalize`."""
    z = tf.math.l2_normalize(e, axis=-1)
    return tf.reduce_sum(z[:, None, :] * z[None, :, :], axis=-1)


def _filled(x: tf.Tensor, value: float) -> tf.Tensor:
    """A tensor shaped like x, every element `value`."""
    return tf.fill(tf.shape(x), tf.constant(value, x.dtype))


def _any(mask: tf.Tensor, axis: int = -1) -> tf.Tensor:
    return tf.reduce_any(mask, axis=axis)


def _count(mask: tf.Tensor, dtype: tf.DType, axis: int | list[int] = -1) -> tf.Tensor:
    return tf.reduce_sum(tf.cast(mask, dtype), axis=axis)


def masked_sum(x: tf.Tensor, mask: tf.Tensor, axis: int | list[int] = -1) -> tf.Tensor:
    """The sum of the selected elements (0 for none)."""
    return tf.reduce_sum(tf.where(mask, x, tf.zeros_like(x)), axis=axis)


def masked_mean(x: tf.Tensor, mask: tf.Tensor, axis: int = -1) -> tf.Tensor:
    """The mean of the selected elements (0 for none)."""
    count = _count(mask, x.dtype, axis)
    return masked_sum(x, mask, axis) / tf.maximum(count, 1)


def masked_max(x: tf.Tensor, mask: tf.Tensor, axis: int = -1) -> tf.Tensor:
    """The largest selected element (0 for none)."""
    largest = tf.reduce_max(tf.where(mask, x, _filled(x, x.dtype.min)), axis=axis)
    return tf.where(_any(mask, axis), largest, tf.zeros_like(largest))


def masked_min(x: tf.Tensor, mask: tf.Tensor, axis: int = -1) -> tf.Tensor:
    """The smallest selected element (0 for none)."""
    return -masked_max(-x, mask, axis)


def masked_logsumexp(x: tf.Tensor, mask: tf.Tensor, axis: int = -1) -> tf.Tensor:
    """log(sum(exp(x))) over the selected elements (-inf for none, with gradient 0)."""
    return tf.reduce_logsumexp(tf.where(mask, x, _filled(x, -float("inf"))), axis=axis)


def _shares(per_anchor: tf.Tensor, pairs_per_anchor: tf.Tensor) -> tf.Tensor:
    """Each anchor's sum over the batch's mean number of pairs per anchor: the mean over
    anchors is the batch's sum over its number of pairs (0 when it has none)."""
    return per_anchor / tf.maximum(tf.reduce_mean(pairs_per_anchor), EPS)


# ---------------------------------------------------------------- Keras


def circle(
    y: tf.Tensor,
    e: tf.Tensor,
    gamma: float = 80.0,
    margin: float = 0.4,
    remove_diagonal: bool = True,
) -> tf.Tensor:
    """keras.losses.circle itself (Sun et al. 2020), with the mask Keras sets (loss > 0)."""
    return keras.losses.circle(
        y, e, gamma=gamma, margin=margin, remove_diagonal=bool(remove_diagonal)
    )


# ---------------------------------------------------------------- TensorFlow Addons


def triplet_batch_hard(y: tf.Tensor, e: tf.Tensor, margin: float = 1.0) -> tf.Tensor:
    """tfa.losses.triplet_hard_loss (soft=False, "L2"), per anchor.

    relu(hardest positive - hardest negative + margin). Without positives the hardest
    positive is 0; without negatives the hardest negative is the anchor's largest distance
    (TensorFlow Addons' `_masked_minimum` of an empty row).
    """
    positive, negative = _pairs(y)
    d = l2_distances(e)
    hardest_positive = masked_max(d, positive)
    hardest_negative = tf.where(_any(negative), masked_min(d, negative), tf.reduce_max(d, axis=-1))
    return tf.nn.relu(hardest_positive - hardest_negative + margin)


def triplet_semihard(y: tf.Tensor, e: tf.Tensor, margin: float = 1.0) -> tf.Tensor:
    """tfa.losses.triplet_semihard_loss ("L2"), as per-anchor shares.

    For each positive pair (a, p): the negative n is the nearest one farther than p
    (d(a, n) > d(a, p)); if there is none, the farthest negative (0 without negatives).
    The batch's value is the mean of relu(d(a, p) - d(a, n) + margin) over its positive
    pairs.
    """
    positive, negative = _pairs(y)
    d = l2_distances(e)
    d_an = d[:, None, :]  # [anchor, positive, negative]
    outside = tf.logical_and(negative[:, None, :], d_an > d[:, :, None])
    nearest_outside = masked_min(tf.broadcast_to(d_an, tf.shape(outside)), outside)
    farthest = masked_max(d, negative)[:, None]
    chosen = tf.where(_any(outside), nearest_outside, farthest)
    hinge = tf.nn.relu(d - chosen + margin)
    return _shares(masked_sum(hinge, positive), _count(positive, e.dtype))


def triplet_batch_all(y: tf.Tensor, e: tf.Tensor, margin: float = 1.0) -> tf.Tensor:
    """Batch-all triplet loss (Hermans et al. 2017, "BA"), as per-anchor shares.

    The mean of relu(d(a, p) - d(a, n) + margin) over every valid triplet of the batch
    (p a positive of a, n a negative of a), zero-loss triplets included.
    """
    positive, negative = _pairs(y)
    d = l2_distances(e)
    valid = tf.logical_and(positive[:, :, None], negative[:, None, :])
    hinge = tf.nn.relu(d[:, :, None] - d[:, None, :] + margin)
    return _shares(masked_sum(hinge, valid, [1, 2]), _count(valid, e.dtype, [1, 2]))


def lifted_structured(y: tf.Tensor, e: tf.Tensor, margin: float = 1.0) -> tf.Tensor:
    """tfa.losses.lifted_struct_loss (Oh Song et al. 2016), as per-anchor shares.

    For a positive pair (i, j): J = log(sum over negatives k of i of exp(margin - d(i, k))
    + sum over negatives l of j of exp(margin - d(j, l))) + d(i, j); the batch's value is
    1 / (2 |P|) times the sum of relu(J)^2 over its unordered positive pairs P, which is
    half the mean of relu(J)^2 over ordered pairs. The two views (i, j) and (j, i) share
    the same negatives or none: without negatives a pair counts 0.
    """
    positive, negative = _pairs(y)
    d = l2_distances(e)
    has_negative = _any(negative)
    lse = masked_logsumexp(margin - d, negative)
    lse = tf.where(has_negative, lse, tf.zeros_like(lse))
    both = tf.stack([tf.broadcast_to(lse[:, None], tf.shape(d)), tf.broadcast_to(lse, tf.shape(d))])
    j = tf.reduce_logsumexp(both, axis=0) + d  # log(exp(lse_i) + exp(lse_j)) + d(i, j)
    selected = tf.logical_and(positive, has_negative[:, None])
    per_anchor = 0.5 * masked_sum(tf.square(tf.nn.relu(j)), selected)
    return _shares(per_anchor, _count(positive, e.dtype))


# ---------------------------------------------------------------- contrastive


def _contrastive_mask(values: tf.Tensor, positive: tf.Tensor) -> tf.Tensor:
    """The values, carrying Keras's mask: anchors without positives are not counted."""
    has_positive = _any(positive)
    values = tf.where(has_positive, values, tf.zeros_like(values))
    keras_backend.set_keras_mask(values, has_positive)
    return values


def nt_xent(y: tf.Tensor, e: tf.Tensor, temperature: float = 0.1) -> tf.Tensor:
    """NT-Xent (SimCLR, Chen et al. 2020), the views of one image given by a shared label.

    For anchor i: -log(sum over positives p of exp(s(i, p) / t) / sum over k != i of
    exp(s(i, k) / t)), s the cosine similarity. With two views per label (SimCLR's 2N
    batch) the one positive is the other view and this is NT-Xent exactly; with more it
    is supervised contrastive's L_in. Anchors without a positive are masked out of Keras's
    mean.
    """
    positive, _ = _pairs(y)
    logits = cosine_similarities(e) / temperature
    not_self = tf.logical_not(tf.eye(tf.shape(logits)[0], dtype=tf.bool))
    values = masked_logsumexp(logits, not_self) - masked_logsumexp(logits, positive)
    return _contrastive_mask(values, positive)


def supervised_contrastive(y: tf.Tensor, e: tf.Tensor, temperature: float = 0.07) -> tf.Tensor:
    """Supervised contrastive loss, L_out (Khosla et al. 2020, eq. 2).

    For anchor i: -1/|P(i)| sum over positives p of log(exp(s(i, p) / t) / sum over
    k != i of exp(s(i, k) / t)), s the cosine similarity. Anchors without a positive are
    masked out of Keras's mean (the paper leaves them undefined).
    """
    positive, _ = _pairs(y)
    logits = cosine_similarities(e) / temperature
    not_self = tf.logical_not(tf.eye(tf.shape(logits)[0], dtype=tf.bool))
    values = masked_logsumexp(logits, not_self) - masked_mean(logits, positive)
    return _contrastive_mask(values, positive)


def multi_similarity(
    y: tf.Tensor,
    e: tf.Tensor,
    alpha: float = 2.0,
    beta: float = 50.0,
    base: float = 0.5,
    margin: float = 0.1,
) -> tf.Tensor:
    """Multi-similarity loss with its pair mining (Wang et al. 2019; the authors' code).

    For anchor i with cosine similarities s: a negative n is kept if s(i, n) + margin >
    the smallest positive similarity, a positive p if s(i, p) - margin < the largest
    negative similarity. An anchor without kept positives or kept negatives gives 0 (and
    still counts in the batch mean, as in the authors' code); otherwise
    1/alpha log(1 + sum over kept p of exp(-alpha (s(i, p) - base)))
    + 1/beta log(1 + sum over kept n of exp(beta (s(i, n) - base))).
    """
    positive, negative = _pairs(y)
    s = cosine_similarities(e)
    hardest_positive = masked_min(s, positive)[:, None]
    hardest_negative = masked_max(s, negative)[:, None]
    kept_negative = tf.logical_and(negative, s + margin > hardest_positive)
    kept_positive = tf.logical_and(positive, s - margin < hardest_negative)
    positive_term = tf.math.softplus(masked_logsumexp(-alpha * (s - base), kept_positive)) / alpha
    negative_term = tf.math.softplus(masked_logsumexp(beta * (s - base), kept_negative)) / beta
    valid = tf.logical_and(_any(kept_positive), _any(kept_negative))
    values = positive_term + negative_term
    return tf.where(valid, values, tf.zeros_like(values))


# ---------------------------------------------------------------- Keras's own Circle cases

_CIRCLE_LABELS = [1, 1, 2, 2, 3]
_CIRCLE_EMBEDDINGS = [
    [0.70014004, -0.42008403, 0.14002801, 0.56011203],
    [0.17609018, 0.70436073, -0.52827054, 0.44022545],
    [-0.34050261, 0.25537696, -0.68100522, 0.59587957],
    [0.32163376, -0.75047877, 0.53605627, -0.21442251],
    [0.51261459, -0.34174306, 0.17087153, 0.76892189],
]
_CIRCLE_REF_LABELS = [1, 1, 2, 2, 3, 4]
_CIRCLE_REF_EMBEDDINGS = [
    [0.40824829, -0.54433105, 0.27216553, 0.68041382],
    [0.76376261, 0.10910895, -0.54554473, 0.32732684],
    [-0.74420841, 0.24806947, 0.49613894, -0.3721042],
    [0.52981294, -0.13245324, 0.79471941, -0.26490647],
    [0.54554473, -0.32732684, 0.10910895, 0.76376261],
    [-0.27216553, 0.68041382, 0.40824829, -0.54433105],
]
_CIRCLE_WEIGHTS = [2.0, 2.0, 1.0, 1.0, 0.5]
_DECIMAL_3 = {"rtol": 0.0, "atol": 1.5e-3}  # Keras's assertAlmostEqual (decimal=3)
_ALL_CLOSE = {"rtol": 1e-6, "atol": 1e-6}  # Keras's assertAllClose

KERAS_CIRCLE_CASES: dict[str, dict[str, Any]] = {
    # keras/src/losses/losses_test.py, CircleTest (Keras 3.15.1), float32 as Keras runs
    # them. Its ref_labels/ref_embeddings case (queries apart from the references) has no
    # in-batch equivalent and is left out.
    "correctness": {
        "labels": _CIRCLE_LABELS,
        "embeddings": _CIRCLE_EMBEDDINGS,
        "params": {"gamma": 80.0, "margin": 0.4},
        "expected": 188.3883,
        **_DECIMAL_3,
    },
    "correctness_gamma_256": {
        "labels": _CIRCLE_LABELS,
        "embeddings": _CIRCLE_EMBEDDINGS,
        "params": {"gamma": 256.0, "margin": 0.25},
        "expected": 652.7617,
        **_DECIMAL_3,
    },
    "correctness_weighted": {
        "labels": _CIRCLE_LABELS,
        "embeddings": _CIRCLE_EMBEDDINGS,
        "params": {"gamma": 80.0, "margin": 0.4},
        "sample_weight": _CIRCLE_WEIGHTS,
        "expected": 244.91918,
        **_DECIMAL_3,
    },
    "no_reduction": {
        "labels": _CIRCLE_REF_LABELS,
        "embeddings": _CIRCLE_REF_EMBEDDINGS,
        "params": {"gamma": 80.0, "margin": 0.4},
        "reduction": None,
        "expected": [82.9116, 36.7942, 92.4590, 52.6798, 0.0, 0.0],
        **_ALL_CLOSE,
    },
    "sum_reduction": {
        "labels": _CIRCLE_REF_LABELS,
        "embeddings": _CIRCLE_REF_EMBEDDINGS,
        "params": {"gamma": 80.0, "margin": 0.4},
        "reduction": "sum",
        "expected": 264.845,
        **_DECIMAL_3,
    },
    "mean_with_sample_weight_reduction": {
        "labels": _CIRCLE_LABELS,
        "embeddings": _CIRCLE_EMBEDDINGS,
        "params": {"gamma": 80.0, "margin": 0.4},
        "reduction": "mean_with_sample_weight",
        "sample_weight": _CIRCLE_WEIGHTS,
        "expected": 163.27948,
        **_DECIMAL_3,
    },
}


def replay_circle_case(loss_class: Callable[..., keras.losses.Loss], case: dict[str, Any]) -> Any:
    """One of KERAS_CIRCLE_CASES on a Circle-like loss class: its value, as a NumPy array."""
    loss = loss_class(reduction=case.get("reduction", "sum_over_batch_size"), **case["params"])
    weights = case.get("sample_weight")
    return loss(
        tf.constant(case["labels"]),
        tf.constant(case["embeddings"], tf.float32),
        sample_weight=None if weights is None else tf.constant(weights),
    ).numpy()
