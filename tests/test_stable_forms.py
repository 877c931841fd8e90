"""Losses written the way they read on paper compile to forms finite in float32 at the edges.

Each spec in `tests/stable_forms/` writes a literature loss naively (a sigmoid or the
normal CDF spelled out, a probability as a let whose complement is taken): the rewrites
must give a form whose float32 value and gradient are finite at logits of +-1e4, where the
exact values are (they are compiled with verification, against the exact reference in
float64, first), on TensorFlow, JAX and PyTorch alike, and equal to TensorFlow's float64
values there.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from backend_modules import loss_function

import lossdsl
from lossdsl.compiler import check_source
from lossdsl.source import SourceFile

SPECS = sorted((Path(__file__).parent / "stable_forms").glob("*.loss"))
LOGITS = (-50.0, -20.0, -5.0, 0.0, 5.0, 20.0, 50.0)
LABELS = (0.0, 1.0)
LARGEST_LOGIT = 1e4
ONLY_UP_TO_50 = {
    "cloglog_through_a_let",
    "infonce_with_a_masked_sum",
    "npair_with_one_plus_a_masked_sum",
}
"""Specs tested at logits of +-50 only: the complementary log-log loss is exp(z) at y = 0,
beyond float32 from z = 89, and at z = -1e4 exp(z) is below every float's range; pairs'
similarities are products of two values (2500 at 50, exp of it far beyond float32)."""
LARGEST_INTERMEDIATE = {
    "infonce_with_a_masked_sum": 50.0**2,
    "npair_with_one_plus_a_masked_sum": 2 * 50.0**2,
}
"""Specs whose value is a difference of values larger than the logits (logsumexps of
similarities): float32 holds it to about that size times its epsilon, not to 1e-5."""


SOFT_LABELS = ((1.0, 0.0), (0.0, 1.0), (0.25, 0.75))
"""The labels of a spec with `onehot` labels, over two classes."""


def edge_grid(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """y_true and y_pred: every logit under each label, one a sample. For `onehot`
    labels two classes, the logits (l, -l), each under every row of SOFT_LABELS; for
    `label`s the same logits under the class ids 0 and 1."""
    largest = () if path.stem in ONLY_UP_TO_50 else (-LARGEST_LOGIT, LARGEST_LOGIT)
    logits = LOGITS + largest
    kind = check_source(SourceFile.from_text(path.read_text())).y_true.kind
    if kind in ("onehot", "label"):
        labels = SOFT_LABELS if kind == "onehot" else ((0.0,), (1.0,))
        rows = [(label, (logit, -logit)) for label in labels for logit in logits]
        return np.array([label for label, _ in rows]), np.array([pair for _, pair in rows])
    return np.repeat(LABELS, len(logits))[:, None], np.array(logits * len(LABELS))[:, None]


@functools.cache
def compiled(path: Path) -> Any:
    with warnings.catch_warnings():  # W402: exp(z) / (1 + exp(z)) is not proven below 1
        warnings.simplefilter("ignore", lossdsl.LossSpecWarning)
        return lossdsl.load(path)


def value_and_gradient(
    loss: Any, y_true: np.ndarray, y_pred: np.ndarray, dtype: tf.DType
) -> tuple[np.ndarray, np.ndarray]:
    y, p = tf.constant(y_true, dtype), tf.constant(y_pred, dtype)
    with tf.GradientTape() as tape:
        tape.watch(p)
        value = loss.call(y, p)
    return value.numpy(), tape.gradient(value, p).numpy()


def test_there_is_a_spec_per_family_of_naive_forms() -> None:
    assert len(SPECS) >= 10


def run_jax(path: Path, y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The JAX module's values and gradient in float32, under jax.jit."""
    jax = pytest.importorskip("jax")
    function = loss_function(path.stem, "jax", path.parent)

    def total(predictions: Any, labels: Any) -> tuple[Any, Any]:
        values = function(labels, predictions)
        return jax.numpy.sum(values), values

    step = jax.jit(jax.value_and_grad(total, has_aux=True))
    (_, values), gradient = step(np.float32(y_pred), np.float32(y_true))
    return np.asarray(values), np.asarray(gradient)


def run_torch(path: Path, y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The PyTorch module's values and gradient in float32, eagerly."""
    torch = pytest.importorskip("torch")
    function = loss_function(path.stem, "torch", path.parent)
    predictions = torch.tensor(y_pred, dtype=torch.float32, requires_grad=True)
    values = function(torch.tensor(y_true, dtype=torch.float32), predictions)
    values.sum().backward()
    return values.detach().numpy(), predictions.grad.numpy()


def run_tensorflow(
    path: Path, y_true: np.ndarray, y_pred: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The TensorFlow module's values and gradient in float32, as Keras calls its loss."""
    return value_and_gradient(compiled(path), y_true, y_pred, tf.float32)


@pytest.mark.parametrize("run", [run_tensorflow, run_jax, run_torch], ids=["tf", "jax", "torch"])
@pytest.mark.parametrize("path", SPECS, ids=[path.stem for path in SPECS])
def test_a_loss_written_on_paper_is_finite_in_float32_at_the_edges(path: Path, run: Any) -> None:
    """Every backend's module is finite in float32 on the grid, and equal to TensorFlow's
    float64 values there (the same rewrites reach them all)."""
    y_true, y_pred = edge_grid(path)
    value, gradient = run(path, y_true, y_pred)
    assert np.all(np.isfinite(value)), y_pred[~np.isfinite(value)]
    assert np.all(np.isfinite(gradient)), y_pred[~np.isfinite(gradient)]
    exact_value, exact_gradient = value_and_gradient(compiled(path), y_true, y_pred, tf.float64)
    scale = max(1.0, float(np.max(np.abs(exact_gradient))))
    atol, gradient_atol = 1e-5, 1e-6 * scale
    if path.stem in LARGEST_INTERMEDIATE:
        atol = 4 * LARGEST_INTERMEDIATE[path.stem] * float(np.finfo(np.float32).eps)
        # a similarity's gradient carries the other sample's value, up to the grid's largest
        gradient_atol = max(gradient_atol, atol * float(np.max(np.abs(y_pred))))
    np.testing.assert_allclose(value, exact_value, rtol=1e-5, atol=atol)
    np.testing.assert_allclose(gradient, exact_gradient, rtol=1e-4, atol=gradient_atol)


MIXTURE = Path(__file__).parent / "stable_forms" / "channels" / "mixture_density_network.loss"
MIXTURE_INPUTS = (
    np.array([[0.0], [5.0], [1e3], [-1e3], [0.5]]),
    np.array(
        [  # the mixture's logits, means, log standard deviations
            [0, 0, 0, 0, 1, 2, 0, 0, 0],
            [50, -50, 0, 0, 1, -30, -10, -20, 10],
            [0, 0, 0, 0, 0, 0, -5, -5, -5],
            [1e4, 0, -1e4, 0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0.5, 0.5, 0.5, -40, -40, -40],
        ]
    ),
)
"""y far from every mean in units of sigma (1e3 at sigma e^-5): each density underflows."""


@pytest.mark.parametrize("run", [run_tensorflow, run_jax, run_torch], ids=["tf", "jax", "torch"])
def test_a_mixture_density_networks_likelihood_is_finite_far_from_its_means(run: Any) -> None:
    y_true, y_pred = MIXTURE_INPUTS
    value, gradient = run(MIXTURE, y_true, y_pred)
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(gradient))
    exact_value, exact_gradient = value_and_gradient(compiled(MIXTURE), y_true, y_pred, tf.float64)
    np.testing.assert_allclose(value, exact_value, rtol=1e-5)
    scale = float(np.max(np.abs(exact_gradient)))
    np.testing.assert_allclose(gradient, exact_gradient, rtol=1e-4, atol=1e-6 * scale)
