"""Second derivatives through the losses' own backward passes: on TensorFlow, JAX and
PyTorch, a Hessian-vector product (the gradient differentiated again along a vector)
equals the central difference of the gradient along that vector, so that a gradient
penalty or a second-order method differentiates what the compiler emits."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from backend_modules import SPECS, inputs, loss_function

Array = np.ndarray

NOT_FINITE = {
    "circle": (
        "JAX differentiates the pair distances' square root at 0 twice: inf times 0 "
        "(docs/LANGUAGE_NOTES.md, 'Higher derivatives')"
    ),
}
"""Specs whose second derivative is NaN at the drawn points, per framework below."""

KNOWN: dict[str, set[str]] = {"tensorflow": set(), "jax": {"circle"}, "torch": set()}


def tensorflow_derivatives(spec: str) -> tuple[Callable[..., Array], Callable[..., Array]]:
    """The gradient of sum(loss) at y_pred, and its derivative along a direction."""
    import tensorflow as tf

    function = loss_function(spec, "tensorflow")

    def gradient(y_true: Array, y_pred: Array) -> Array:
        x = tf.constant(y_pred)
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(function(tf.constant(y_true), x))
        return np.asarray(tape.gradient(total, x))

    def along(y_true: Array, y_pred: Array, direction: Array) -> Array:
        x = tf.constant(y_pred)
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(x)
                total = tf.reduce_sum(function(tf.constant(y_true), x))
            projected = tf.reduce_sum(inner.gradient(total, x) * direction)
        return np.asarray(outer.gradient(projected, x))

    return gradient, along


def jax_derivatives(spec: str) -> tuple[Callable[..., Array], Callable[..., Array]]:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    function = loss_function(spec, "jax")

    def gradient(y_true: Array, y_pred: Array) -> Array:
        with jax.enable_x64(True):
            return np.asarray(jax.grad(lambda x: jnp.sum(function(y_true, x)))(y_pred))

    def along(y_true: Array, y_pred: Array, direction: Array) -> Array:
        with jax.enable_x64(True):
            first = jax.grad(lambda x: jnp.sum(function(y_true, x)))
            return np.asarray(jax.grad(lambda x: jnp.sum(first(x) * direction))(y_pred))

    return gradient, along


def torch_derivatives(spec: str) -> tuple[Callable[..., Array], Callable[..., Array]]:
    torch = pytest.importorskip("torch")
    function = loss_function(spec, "torch")

    def first(y_true: Array, y_pred: Array, create_graph: bool) -> tuple[object, object]:
        x = torch.tensor(y_pred, requires_grad=True)
        total = function(torch.as_tensor(y_true), x).sum()
        return x, torch.autograd.grad(total, x, create_graph=create_graph)[0]

    def gradient(y_true: Array, y_pred: Array) -> Array:
        return first(y_true, y_pred, False)[1].numpy()

    def along(y_true: Array, y_pred: Array, direction: Array) -> Array:
        x, found = first(y_true, y_pred, True)
        if not found.requires_grad:  # a piecewise constant gradient, as autograd's is
            return np.zeros_like(y_pred)
        projected = (found * torch.as_tensor(direction)).sum()
        return torch.autograd.grad(projected, x)[0].numpy(force=True)  # sign's: a ZeroTensor

    return gradient, along


DERIVATIVES = {
    "tensorflow": tensorflow_derivatives,
    "jax": jax_derivatives,
    "torch": torch_derivatives,
}

CASES = [
    pytest.param(
        framework,
        spec,
        id=f"{framework}-{spec}",
        marks=(
            [pytest.mark.xfail(reason=NOT_FINITE[spec], strict=True)]
            if spec in KNOWN[framework]
            else []
        ),
    )
    for framework in DERIVATIVES
    for spec in SPECS
]


@pytest.mark.parametrize(("framework", "spec"), CASES)
def test_a_hessian_vector_product_is_the_gradient_s_central_difference(
    framework: str, spec: str
) -> None:
    gradient, along = DERIVATIVES[framework](spec)
    y_true, y_pred = inputs(spec, seed=3)
    direction = np.random.default_rng(1).normal(size=y_pred.shape)
    product = along(y_true, y_pred, direction)
    assert np.all(np.isfinite(product))
    step = 1e-6
    difference = (
        gradient(y_true, y_pred + step * direction) - gradient(y_true, y_pred - step * direction)
    ) / (2 * step)
    scale = max(float(np.max(np.abs(difference))), 1.0)
    np.testing.assert_allclose(product, difference, rtol=0, atol=1e-5 * scale)
