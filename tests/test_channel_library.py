"""The library's channel losses (LANGUAGE.md 6.2) against hand-written references.

`gaussian_nll`, `student_t_nll`, `gaussian_crps`, `margin_ranking` and `giou` read their
quantities from y_pred's (and y_true's) channels. Each is compared with its direct
TensorFlow form in tests/references.py (the paper's formula; TensorFlow Addons' code for
GIoU, in its own box order), value and gradient with respect to y_pred, in float32 and
float64, unweighted and with sample_weight; at extreme inputs value and gradient stay
finite.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import references as refs
import tensorflow as tf

import lossdsl

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
B = 8

TFA_ORDER = [1, 0, 3, 2]
"""The spec's [x_min, y_min, x_max, y_max] in TensorFlow Addons' [y_min, x_min, y_max, x_max]."""


def tfa_giou(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    return refs.giou(tf.gather(y, TFA_ORDER, axis=-1), tf.gather(p, TFA_ORDER, axis=-1))


REFERENCES: dict[str, tuple[refs.ReferenceFn, dict[str, float]]] = {
    "gaussian_nll": (refs.gaussian_nll, {}),
    "student_t_nll": (refs.student_t_nll, {"nu": 4.0}),
    "gaussian_crps": (refs.gaussian_crps, {}),
    "margin_ranking": (refs.margin_ranking, {"margin": 0.5}),
    "giou": (tfa_giou, {}),
}

TOLERANCES = {tf.float32: 1e-5, tf.float64: 1e-12}
"""Relative tolerance per dtype (atol scaled by the largest value): a few ulps of the sums."""


@functools.cache
def compiled(name: str) -> Any:
    return lossdsl.compile_file(EXAMPLES / f"{name}.loss")  # verified against mpmath


def boxes(rng: np.random.Generator, count: int) -> np.ndarray:
    """[x_min, y_min, x_max, y_max] boxes, some overlapping, some not, one inside out."""
    corner = rng.uniform(-2, 2, size=(count, 2))
    size = rng.uniform(0.2, 3, size=(count, 2))
    found = np.concatenate([corner, corner + size], axis=1)
    found[0] = [1.0, 1.0, 0.5, 2.0]  # x_max below x_min: no area
    return found


def inputs(name: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if name == "giou":
        return boxes(rng, B), boxes(rng, B)
    if name == "margin_ranking":
        return rng.choice([-1.0, 1.0], size=(B, 1)), rng.normal(size=(B, 2))
    y = rng.normal(size=(B, 1)) * 2
    return y, np.stack([rng.normal(size=B) * 2, rng.normal(size=B)], axis=1)


def value_and_gradient(
    loss: Any, y: np.ndarray, p: np.ndarray, dtype: tf.DType, sample_weight: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    y_pred = tf.constant(p, dtype)
    with tf.GradientTape() as tape:
        tape.watch(y_pred)
        value = loss(tf.constant(y, dtype), y_pred, sample_weight=sample_weight)
        total = tf.reduce_sum(value)
    return value.numpy(), tape.gradient(total, y_pred).numpy()


def assert_close(actual: np.ndarray, expected: np.ndarray, dtype: tf.DType, what: str) -> None:
    tolerance = TOLERANCES[dtype]
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(
        actual, expected, rtol=tolerance, atol=tolerance * scale, err_msg=what
    )


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_matches_the_reference(name: str, dtype: tf.DType, weighted: bool) -> None:
    reference, params = REFERENCES[name]
    rng = np.random.default_rng(len(name))
    y, p = inputs(name, rng)
    weights = tf.constant(rng.uniform(0, 2, size=B), dtype) if weighted else None
    reduction = "sum_over_batch_size" if weighted else None
    ours = compiled(name).loss_class(reduction=reduction, dtype=dtype.name, **params)
    theirs = refs.ReferenceLoss(reference, reduction=reduction, dtype=dtype.name, **params)
    actual = value_and_gradient(ours, y, p, dtype, weights)
    expected = value_and_gradient(theirs, y, p, dtype, weights)
    for got, want, what in zip(actual, expected, ("value", "gradient"), strict=True):
        assert got.dtype == dtype.as_numpy_dtype, what
        assert_close(got, want, dtype, f"{name} {what}")


EXTREMES: dict[str, tuple[list[list[float]], list[list[float]]]] = {
    "gaussian_nll": ([[0.0], [1e3], [-1e3]], [[0.0, -20.0], [-1e3, 20.0], [1e3, -20.0]]),
    "student_t_nll": ([[0.0], [1e3], [-1e3]], [[0.0, -20.0], [-1e3, 20.0], [1e3, -20.0]]),
    "gaussian_crps": ([[0.0], [1e3], [-1e3]], [[0.0, -20.0], [-1e3, 20.0], [1e3, -20.0]]),
    "margin_ranking": ([[1.0], [-1.0], [1.0]], [[1e30, -1e30], [1e30, -1e30], [0.0, 0.0]]),
    "giou": (
        [[0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 1, 1]],
        [[0, 0, 1, 1], [0, 0, 0, 0], [1e6, 1e6, 1e6 + 1, 1e6 + 1]],
    ),
}


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", sorted(EXTREMES))
def test_extreme_inputs_give_finite_values_and_gradients(name: str, dtype: tf.DType) -> None:
    params = REFERENCES[name][1]
    y, p = (np.asarray(rows, dtype=np.float64) for rows in EXTREMES[name])
    loss = compiled(name).loss_class(reduction=None, dtype=dtype.name, **params)
    value, gradient = value_and_gradient(loss, y, p, dtype)
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(gradient)), (value, gradient)


def test_giou_reproduces_tensorflow_addons_docstring_example() -> None:
    # tfa.losses.GIoULoss's docstring: gl(boxes1, boxes2) = 1.5041667 (mean of the two)
    boxes1 = np.array([[4.0, 3.0, 7.0, 5.0], [5.0, 6.0, 10.0, 7.0]])[:, TFA_ORDER]
    boxes2 = np.array([[3.0, 4.0, 6.0, 8.0], [14.0, 14.0, 15.0, 15.0]])[:, TFA_ORDER]
    loss = compiled("giou").loss_class(reduction=None, dtype="float64")
    np.testing.assert_allclose(loss(boxes1, boxes2).numpy(), [1.075, 29 / 15], rtol=1e-15)


def test_giou_of_a_box_with_itself_is_zero_and_of_empty_boxes_one() -> None:
    loss = compiled("giou").loss_class(reduction=None, dtype="float64")
    same = np.array([[0.0, 0.0, 2.0, 1.0]])
    empty = np.zeros((1, 4))
    np.testing.assert_allclose(loss(same, same).numpy(), [0.0], atol=1e-15)
    np.testing.assert_allclose(loss(empty, empty).numpy(), [1.0])


def test_gaussian_nll_is_torch_gaussian_nll_loss_with_full() -> None:
    # torch.nn.GaussianNLLLoss(full=True)(mu, y, var) = (log var + (y - mu)^2 / var + log 2 pi) / 2
    loss = compiled("gaussian_nll").loss_class(reduction=None, dtype="float64")
    y, mu, var = 1.5, 0.5, 4.0
    expected = 0.5 * (math.log(var) + (y - mu) ** 2 / var + math.log(2 * math.pi))
    value = loss(np.array([[y]]), np.array([[mu, math.log(var)]])).numpy()
    np.testing.assert_allclose(value, [expected], rtol=1e-15)


def test_margin_ranking_is_zero_beyond_the_margin() -> None:
    loss = compiled("margin_ranking").loss_class(reduction=None, dtype="float64", margin=1.0)
    values = loss(np.array([[1.0], [-1.0], [1.0]]), np.array([[3.0, 1.0], [3.0, 1.0], [1.0, 1.5]]))
    np.testing.assert_allclose(values.numpy(), [0.0, 3.0, 1.5])
