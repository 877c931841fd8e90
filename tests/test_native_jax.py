"""The JAX modules' native API: `<name>(y_true, y_pred, *params)` under jax.jit, jax.grad
and jax.vmap, against optax's documented formulas written in jax.numpy, with the
input's dtype kept (float64 under `jax.enable_x64`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from backend_harness import BROADCAST_P, BROADCAST_Y, BROADCAST_Y_TRUE
from backend_modules import generated, module
from tolerances import ulps

import lossdsl
from lossdsl.codegen.names import function_names

jax = pytest.importorskip("jax")
jnp = jax.numpy

N, C = 6, 4
"""Batch and class sizes of the inputs."""

Formula = Callable[[Any, Any], Any]
"""(y_true, y_pred) -> the loss per sample, as optax documents it (per element losses
averaged over the class axis, as the spec's `mean` does)."""


def loss_function(spec: str) -> Callable[..., Any]:
    """`<name>(y_true, y_pred, *params)` of examples/`spec`.loss's JAX module."""
    name = function_names(generated(spec, "jax").checked.loss_name)[0]
    function: Callable[..., Any] = getattr(module(spec, "jax"), name)
    return function


# optax's formulas (optax/losses/_classification.py and _regression.py), in jax.numpy.


def softmax_cross_entropy(labels: Any, logits: Any) -> Any:
    return -jnp.sum(labels * jax.nn.log_softmax(logits, axis=-1), axis=-1)


def sigmoid_binary_cross_entropy(labels: Any, logits: Any) -> Any:
    return -labels * jax.nn.log_sigmoid(logits) - (1.0 - labels) * jax.nn.log_sigmoid(-logits)


def smoothed(alpha: float) -> Formula:
    """optax.softmax_cross_entropy of optax.smooth_labels(labels, alpha)."""
    return lambda labels, logits: softmax_cross_entropy(
        (1.0 - alpha) * labels + alpha / labels.shape[-1], logits
    )


def integer_labels(labels: Any, logits: Any) -> Any:
    """optax.softmax_cross_entropy_with_integer_labels."""
    picked = jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
    return jax.nn.logsumexp(logits, axis=-1) - picked


def sigmoid_focal(alpha: float, gamma: float) -> Formula:
    def formula(labels: Any, logits: Any) -> Any:
        p = jax.nn.sigmoid(logits)
        p_t = p * labels + (1 - p) * (1 - labels)
        alpha_t = alpha * labels + (1 - alpha) * (1 - labels)
        loss = alpha_t * sigmoid_binary_cross_entropy(labels, logits) * (1 - p_t) ** gamma
        return jnp.mean(loss, axis=-1)

    return formula


def huber(delta: float) -> Formula:
    def formula(targets: Any, predictions: Any) -> Any:
        errors = jnp.abs(predictions - targets)
        quadratic = jnp.minimum(errors, delta)
        return jnp.mean(0.5 * quadratic**2 + delta * (errors - quadratic), axis=-1)

    return formula


def poly_loss_cross_entropy(epsilon: float) -> Formula:
    def formula(labels: Any, logits: Any) -> Any:
        one_minus_pt = jnp.sum(labels * (1 - jax.nn.softmax(logits, axis=-1)), axis=-1)
        return softmax_cross_entropy(labels, logits) + epsilon * one_minus_pt

    return formula


@dataclass(frozen=True)
class Case:
    spec: str
    y_true: str  # how y_true is drawn (`draw_true`)
    formula: Formula
    params: dict[str, Any] = field(default_factory=dict)


# fmt: off
CASES = (
    Case("categorical_crossentropy_logits", "onehot", smoothed(0.1), {"label_smoothing": 0.1}),
    Case("sparse_categorical_crossentropy_logits", "labels", integer_labels),
    Case("binary_crossentropy_logits", "binary",
         lambda y, z: jnp.mean(sigmoid_binary_cross_entropy(y, z), axis=-1)),
    Case("binary_focal_logits", "binary", sigmoid_focal(0.25, 2.0), {"alpha": 0.25, "gamma": 2.0}),
    Case("huber", "real", huber(0.5), {"delta": 0.5}),
    Case("mean_squared_error", "real", lambda y, p: jnp.mean((p - y) ** 2, axis=-1)),
    Case("log_cosh", "real",
         lambda y, p: jnp.mean(jnp.logaddexp(p - y, y - p) - jnp.log(2.0), axis=-1)),
    Case("hinge", "signs", lambda y, p: jnp.mean(jax.nn.relu(1 - y * p), axis=-1)),
    Case("poly1", "onehot", poly_loss_cross_entropy(2.0), {"epsilon": 2.0}),
)
# fmt: on
CASE_IDS = [case.spec for case in CASES]


def draw_true(kind: str, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    labels = rng.integers(0, shape[-1], shape[:-1])
    if kind == "labels":
        return labels.astype(np.int32)
    if kind == "onehot":
        return np.eye(shape[-1], dtype=np.float32)[labels]
    if kind == "binary":
        return rng.integers(0, 2, shape).astype(np.float32)
    if kind == "signs":
        return rng.choice([-1.0, 1.0], shape).astype(np.float32)
    return rng.normal(size=shape).astype(np.float32)


def case_inputs(
    case: Case, seed: int = 0, shape: tuple[int, ...] = (N, C)
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return draw_true(case.y_true, rng, shape), (2 * rng.normal(size=shape)).astype(np.float32)


def ours(case: Case) -> Callable[[Any, Any], Any]:
    function = loss_function(case.spec)
    return lambda y_true, y_pred: function(y_true, y_pred, **case.params)


def value_and_gradient(loss: Callable[[Any, Any], Any], y_true: Any, y_pred: Any) -> Any:
    """loss's values and the gradient of their sum, weighted 1, 2, ..., under jax.jit."""

    def objective(y_pred: Any) -> tuple[Any, Any]:
        values = loss(y_true, y_pred)
        weights = jnp.arange(1, values.size + 1, dtype=jnp.float32).reshape(values.shape)
        return jnp.sum(values.astype(jnp.float32) * weights), values

    (_, values), gradient = jax.jit(jax.value_and_grad(objective, has_aux=True))(y_pred)
    return values, gradient


def assert_close(actual: Any, expected: Any, dtype: str = "float32", count: float = 16) -> None:
    actual = np.asarray(jnp.asarray(actual, jnp.float32), np.float64)
    expected = np.asarray(jnp.asarray(expected, jnp.float32), np.float64)
    tolerance = ulps(dtype, count)
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance * scale)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_values_and_gradients_equal_optax_formulas_under_jit(case: Case) -> None:
    y_true, y_pred = case_inputs(case)
    values, gradient = value_and_gradient(ours(case), y_true, y_pred)
    expected, expected_gradient = value_and_gradient(case.formula, y_true, y_pred)
    assert values.shape == (N,) and values.dtype == jnp.float32
    assert_close(values, expected)
    assert_close(gradient, expected_gradient)
    assert_close(ours(case)(y_true, y_pred), expected)  # eagerly, as well


@pytest.mark.parametrize("case", CASES[:5], ids=CASE_IDS[:5])
def test_vmap_over_an_outer_axis_and_per_example(case: Case) -> None:
    """jax.vmap over batches [K, N, C], and over the examples of one batch: a rank-1
    y_pred is [batch] as Keras reads it, so a per-example call adds its batch axis."""
    y_true, y_pred = case_inputs(case, seed=1, shape=(3, N, C))
    loss = ours(case)
    batches = jax.vmap(loss)(y_true, y_pred)
    assert_close(batches, np.stack([loss(y_true[k], y_pred[k]) for k in range(3)]))
    per_example = jax.jit(jax.vmap(lambda y, p: loss(y[None], p[None])[0]))
    assert_close(per_example(y_true[0], y_pred[0]), loss(y_true[0], y_pred[0]))
    gradients = jax.vmap(jax.grad(lambda p, y: jnp.sum(loss(y, p))))(y_pred, y_true)
    assert_close(gradients[1], jax.grad(lambda p: jnp.sum(loss(y_true[1], p)))(y_pred[1]))


def test_a_param_is_a_traced_array_under_vmap_and_grad() -> None:
    """huber's delta vmapped over values and differentiated: d/d(delta) is
    relu(|e| - delta), averaged over the classes as the loss is."""
    case = CASES[CASE_IDS.index("huber")]
    y_true, y_pred = case_inputs(case, seed=2)
    function = loss_function("huber")
    deltas = jnp.asarray([0.25, 0.5, 2.0])
    values = jax.vmap(lambda delta: function(y_true, y_pred, delta))(deltas)
    for row, delta in zip(values, [0.25, 0.5, 2.0], strict=True):
        assert_close(row, huber(delta)(y_true, y_pred))
    gradient = jax.grad(lambda delta: jnp.sum(function(y_true, y_pred, delta)))(0.5)
    assert_close(gradient, np.sum(np.maximum(np.abs(y_pred - y_true) - 0.5, 0.0)) / C)


DTYPE_CASES = [case for case in CASES if case.spec in {"sparse_categorical_crossentropy_logits",
                                                       "binary_focal_logits", "huber"}]  # fmt: skip


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
@pytest.mark.parametrize("case", DTYPE_CASES, ids=lambda case: case.spec)
def test_the_input_dtype_is_kept(case: Case, dtype: str) -> None:
    y_true, y_pred = case_inputs(case, seed=3)
    if case.y_true != "labels":
        y_true = jnp.asarray(y_true, dtype)
    low = jnp.asarray(y_pred, dtype)
    values, gradient = value_and_gradient(ours(case), y_true, low)
    assert values.dtype == gradient.dtype == jnp.dtype(dtype)
    wide = jnp.asarray(y_true, jnp.float32) if case.y_true != "labels" else y_true
    expected, expected_gradient = value_and_gradient(case.formula, wide, low.astype(jnp.float32))
    assert_close(values, expected, dtype, count=8)
    assert_close(gradient, expected_gradient, dtype, count=8)


@pytest.mark.parametrize("case", DTYPE_CASES, ids=lambda case: case.spec)
def test_float64_under_enable_x64(case: Case) -> None:
    y_true, y_pred = case_inputs(case, seed=4)
    with jax.enable_x64(True):
        if case.y_true != "labels":
            y_true = jnp.asarray(y_true, jnp.float64)
        wide = jnp.asarray(y_pred, jnp.float64)
        values = jax.jit(ours(case))(y_true, wide)
        gradient = jax.jit(jax.grad(lambda p: jnp.sum(ours(case)(y_true, p))))(wide)
        expected = case.formula(y_true, wide)
        expected_gradient = jax.grad(lambda p: jnp.sum(case.formula(y_true, p)))(wide)
        assert values.dtype == gradient.dtype == jnp.float64
        for got, wanted in ((values, expected), (gradient, expected_gradient)):
            got, wanted = np.asarray(got), np.asarray(wanted)
            tolerance = ulps("float64", 64)
            scale = max(1.0, float(np.max(np.abs(wanted))))
            np.testing.assert_allclose(got, wanted, rtol=tolerance, atol=tolerance * scale)


@pytest.mark.parametrize("spec", BROADCAST_Y_TRUE, ids=range(len(BROADCAST_Y_TRUE)))
def test_y_true_with_a_class_axis_of_size_one_gets_the_gradient_of_its_broadcast(
    spec: str,
) -> None:
    loss = lossdsl.load(spec, framework="jax")

    def gradient(y: Any) -> Any:
        return jax.grad(lambda p: jnp.sum(loss(y, p)))(jnp.asarray(BROADCAST_P, "float32"))

    broadcast = np.broadcast_to(BROADCAST_Y, BROADCAST_P.shape)
    got, want = gradient(jnp.asarray(BROADCAST_Y, "float32")), gradient(broadcast)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)
