"""The ordinal losses of examples/ (CORAL, squared EMD) against independent float64 NumPy
references: value and gradient in float32 and float64, sample_weight, extreme inputs."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from lossdsl.analysis.sign import is_ordinal, sign_diagnostics
from lossdsl.compiler import CompiledLoss, compile_source
from lossdsl.parser import read_source

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
K = 5
"""Ranks 0 .. K - 1: CORAL's y_pred holds K - 1 threshold logits, EMD's y_pred K classes."""

RTOL = {"float32": 1e-5, "float64": 1e-12}
"""A few ulps of the dtype, relative to the values' scale (`assert_close`)."""

Reference = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@functools.cache
def compiled(name: str) -> CompiledLoss:
    """The example compiled once, verified against the exact reference as every compile."""
    path = EXAMPLES / f"{name}.loss"
    return compile_source(read_source(path.read_bytes(), path.name))


def np_softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def np_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np_softplus(-x))


def coral_reference(ranks: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CORAL per sample and its gradient: each threshold k a logistic regression on the
    level [rank > k], so -log_sigmoid(z) where the level is 1, -log_sigmoid(-z) where 0."""
    levels = (ranks[..., None] > np.arange(z.shape[-1])).astype(np.float64)
    value = np.sum(levels * np_softplus(-z) + (1 - levels) * np_softplus(z), axis=-1)
    return value, np_sigmoid(z) - levels


def emd_reference(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The squared EMD per sample and its gradient: with the gap g_k = sum over c <= k of
    (p_c - y_c), the value is the mean of g_k^2 and d/dp_c the sum over k >= c of 2 g_k / C."""
    classes = p.shape[-1]
    gap = np.array([np.sum(p[..., : k + 1] - y[..., : k + 1], axis=-1) for k in range(classes)])
    gap = np.moveaxis(gap, 0, -1)
    slope = np.array([np.sum(gap[..., c:], axis=-1) for c in range(classes)])
    return np.mean(gap**2, axis=-1), 2 * np.moveaxis(slope, 0, -1) / classes


def value_and_gradient(
    name: str,
    y: np.ndarray,
    y_pred: np.ndarray,
    dtype: str,
    reduction: str | None = None,
    sample_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    prediction = tf.constant(y_pred, dtype)
    loss = compiled(name).loss_class(reduction=reduction, dtype=dtype)
    with tf.GradientTape() as tape:
        tape.watch(prediction)
        value = loss(tf.constant(y), prediction, sample_weight=sample_weight)
        total = tf.reduce_sum(value)
    return value.numpy(), tape.gradient(total, prediction).numpy()


def assert_close(actual: np.ndarray, expected: np.ndarray, dtype: str, what: str) -> None:
    assert actual.shape == expected.shape, what
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(
        actual, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * scale, err_msg=what
    )


def random_inputs(name: str, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ranks (or their one-hot rows) and y_pred of `shape` ([batch, ...]) plus the class axis."""
    rng = np.random.default_rng(seed)
    ranks = rng.integers(0, K, size=shape)
    if name == "coral":
        return ranks.astype(np.int32), 4 * rng.normal(size=(*shape, K - 1))
    return np.eye(K)[ranks], rng.dirichlet(np.ones(K), size=shape)


REFERENCES: dict[str, Reference] = {"coral": coral_reference, "squared_emd": emd_reference}

EXTREMES: dict[str, tuple[np.ndarray, np.ndarray]] = {
    # Every rank, the first and the last included (levels all 0, all 1), against logits
    # far in both tails and at 0.
    "coral": (
        np.array([0, 4, 2, 1, 3, 4], dtype=np.int32),
        np.array(
            [
                [1e4, -1e4, 80.0, -80.0],
                [-1e4, 1e4, -80.0, 80.0],
                [30.0, -30.0, 0.0, 1e-20],
                [0.0, 0.0, 0.0, 0.0],
                [-17.0, 17.0, -40.0, 40.0],
                [1e-3, -1e-3, 1e2, -1e2],
            ]
        ),
    ),
    # Predictions at the corners of the simplex (exact 0 and 1), at the right and at the
    # farthest class, and entries below float32's normal numbers.
    "squared_emd": (
        np.eye(K)[[0, 4, 2, 4, 1, 3]],
        np.array(
            [
                [1.0, 0.0, 0.0, 0.0, 0.0],
                [1.0, 0.0, 0.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, 0.0, 0.0],
                [1e-40, 1e-30, 1e-20, 1e-10, 1 - 1e-10],
                [0.2, 0.2, 0.2, 0.2, 0.2],
                [0.5, 0.0, 0.0, 0.0, 0.5],
            ]
        ),
    ),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(6,), (2, 3)], ids=["per_sample", "per_element"])
@pytest.mark.parametrize("name", REFERENCES)
def test_matches_the_numpy_reference(name: str, shape: tuple[int, ...], dtype: str) -> None:
    y, y_pred = random_inputs(name, shape, seed=len(shape))
    y_pred = y_pred.astype(dtype)  # the reference sees exactly the values the loss sees
    expected_value, expected_gradient = REFERENCES[name](y, y_pred.astype(np.float64))
    value, gradient = value_and_gradient(name, y, y_pred, dtype)
    assert_close(value, expected_value, dtype, f"{name} value")
    assert_close(gradient, expected_gradient, dtype, f"{name} gradient")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", REFERENCES)
def test_extreme_inputs_stay_exact(name: str, dtype: str) -> None:
    y, y_pred = EXTREMES[name]
    y_pred = y_pred.astype(dtype)
    expected_value, expected_gradient = REFERENCES[name](y, y_pred.astype(np.float64))
    value, gradient = value_and_gradient(name, y, y_pred, dtype)
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(gradient))
    assert_close(value, expected_value, dtype, f"{name} value")
    assert_close(gradient, expected_gradient, dtype, f"{name} gradient")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", REFERENCES)
def test_sample_weight_weighs_each_sample(name: str, dtype: str) -> None:
    y, y_pred = random_inputs(name, (6,), seed=7)
    y_pred = y_pred.astype(dtype)
    weights = np.array([0.5, 0.0, 2.0, 1.0, 3.0, 0.25], dtype=dtype)
    values, gradients = REFERENCES[name](y, y_pred.astype(np.float64))
    expected_value = np.sum(weights * values) / len(weights)
    expected_gradient = weights[:, None] * gradients / len(weights)
    value, gradient = value_and_gradient(
        name, y, y_pred, dtype, "sum_over_batch_size", sample_weight=weights
    )
    assert_close(value, np.asarray(expected_value), dtype, f"{name} weighted value")
    assert_close(gradient, expected_gradient, dtype, f"{name} weighted gradient")
    assert np.all(gradient[1] == 0.0)


def test_coral_reproduces_the_coral_pytorch_docs_example() -> None:
    """coral_pytorch's `coral_loss` docstring: levels [[1, 1, 0, 0], [1, 0, 0, 0],
    [1, 1, 1, 1]] (ranks 2, 1 and 4) give tensor(0.6920) with reduction="mean"."""
    logits = np.array(
        [[2.1, 1.8, -2.1, -1.8], [1.9, -1.0, -1.5, -1.3], [1.9, 1.8, 1.7, 1.6]], np.float32
    )
    loss = compiled("coral").loss_class()
    np.testing.assert_allclose(float(loss(np.array([2, 1, 4]), logits)), 0.6920, atol=5e-5)


def test_coral_takes_the_last_rank_as_every_level_set() -> None:
    """The rank K - 1 is outside onehot's K - 1 columns: a row of zeros, levels all 1."""
    z = np.array([[-2.0, 0.5, 3.0, -1.0]])
    value, gradient = value_and_gradient("coral", np.array([K - 1]), z, "float64")
    np.testing.assert_allclose(value, np_softplus(-z).sum(axis=-1), rtol=1e-12)
    np.testing.assert_allclose(gradient, np_sigmoid(z) - 1, rtol=1e-12)


def test_the_ordinal_specs_pass_the_sign_check() -> None:
    """CORAL's logits are thresholds (the ordinal direction), EMD's p classes."""
    coral, emd = compiled("coral"), compiled("squared_emd")
    assert is_ordinal(coral.checked) and not is_ordinal(emd.checked)
    assert sign_diagnostics(coral.checked) == [] and sign_diagnostics(emd.checked) == []
    assert coral.diagnostics == () and emd.diagnostics == ()
