"""Params learned in a TensorFlow custom training loop: a tf.Variable (or a tensor) given
for a scalar param gets its gradient through the loss's own backward pass, as autodiff
would give it, on every call of the traced function and in y_pred's dtype."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from backend_modules import SPECS, generated, inputs

from lossdsl.codegen.names import function_names
from lossdsl.compiler import generate
from lossdsl.parser import read_source

Function = Callable[..., Any]

SCALAR_PARAMS = [
    (spec, param.name)
    for spec in SPECS
    for param in generated(spec, "tensorflow").checked.params
    if not param.is_vector
]
SCALAR_IDS = [f"{spec}-{param}" for spec, param in SCALAR_PARAMS]


def default(spec: str, param: str) -> float:
    """The default value of `spec`'s scalar param."""
    params = generated(spec, "tensorflow").checked.params
    return float(next(p.default for p in params if p.name == param))


def tensorflow_function(text: str, name: str, jit_compile: bool = False) -> Function:
    """The per-element function of the TensorFlow module of spec `text`."""
    source = generate(read_source(text.encode(), f"{name}.loss"), jit_compile=jit_compile)
    namespace: dict[str, object] = {}
    exec(compile(source.python_source, f"{name}.py", "exec"), namespace)  # generated code
    function = namespace[function_names(source.checked.loss_name)[0]]
    assert callable(function)
    return function


def example_function(spec: str, jit_compile: bool = False) -> Function:
    return tensorflow_function(generated(spec, "tensorflow").source.text, spec, jit_compile)


def variable_gradient(function: Function, spec: str, param: str, value: float) -> object:
    """d sum(loss) / d param at `value`, the param a float64 tf.Variable."""
    y_true, y_pred = (tf.constant(array) for array in inputs(spec, seed=1))
    variable = tf.Variable(value, dtype=tf.float64)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(function(y_true, y_pred, **{param: variable}))
    return tape.gradient(total, variable)


def central_difference(function: Function, spec: str, param: str, value: float) -> float:
    y_true, y_pred = (tf.constant(array) for array in inputs(spec, seed=1))
    step = 1e-6 * max(1.0, abs(value))
    totals = [
        float(tf.reduce_sum(function(y_true, y_pred, **{param: value + sign * step})))
        for sign in (1, -1)
    ]
    return (totals[0] - totals[1]) / (2 * step)


@pytest.mark.parametrize(("spec", "param"), SCALAR_PARAMS, ids=SCALAR_IDS)
def test_a_variable_param_gets_the_gradient_central_differences_give(spec: str, param: str) -> None:
    """None where the param has no path to the value (a margin that only selects pairs)."""
    function = example_function(spec)
    value = default(spec, param)
    found = variable_gradient(function, spec, param, value)
    expected = central_difference(function, spec, param, value)
    if found is None:
        assert expected == 0.0
    else:
        np.testing.assert_allclose(float(found), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("spec", "param"), [("huber", "delta"), ("focal", "gamma")])
def test_a_variable_param_gets_its_gradient_under_xla(spec: str, param: str) -> None:
    value = default(spec, param)
    plain = variable_gradient(example_function(spec), spec, param, value)
    compiled = variable_gradient(example_function(spec, jit_compile=True), spec, param, value)
    np.testing.assert_allclose(float(compiled), float(plain), rtol=1e-9)


def test_a_param_that_reaches_the_custom_gradient_computed_is_a_constant() -> None:
    """`t * mean(y)` is computed before the custom gradient for the mask and read inside
    it: the custom gradient cannot differentiate it with respect to t, so t is held, and
    its gradient is None rather than part of it."""
    text = (
        "input y: target\ninput p: real\nparam t: positive = 0.5\n"
        "let s = log(1 + exp(t * mean(y)))\nmask s > 0.2\nloss l = s * mean(square(p - y))\n"
    )
    function = tensorflow_function(text, "l")
    rng = np.random.default_rng(0)
    y_true, y_pred = tf.constant(rng.uniform(size=(4, 3))), tf.constant(rng.normal(size=(4, 3)))
    variable = tf.Variable(0.5, dtype=tf.float64)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(function(y_true, y_pred, variable))
    assert tape.gradient(total, variable) is None


def test_a_vector_param_is_a_constant() -> None:
    """Vector params are converted to y_pred's dtype before the custom gradient."""
    function = example_function("weighted_ce")
    y_true, y_pred = (tf.constant(array) for array in inputs("weighted_ce", seed=1))
    weights = tf.Variable(np.ones(y_pred.shape[-1]))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(function(y_true, y_pred, weights))
    assert tape.gradient(total, weights) is None


def test_a_custom_training_loop_learns_a_keras_variable() -> None:
    """docs/KERAS.md's recipe: a keras.Variable is learned with the model's weights."""
    import keras

    import lossdsl

    huber = lossdsl.compile_file("examples/huber.loss").per_sample_function
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, 4)).astype("float32")
    y_true = (3 * x[:, :2]).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    delta = keras.Variable(1.0)
    with tf.GradientTape() as tape:
        residuals = y_true - model(x)
        loss = tf.reduce_mean(huber(y_true, model(x), delta))
    gradients = tape.gradient(loss, [*model.trainable_variables, delta])
    expected = np.mean(np.maximum(np.abs(residuals.numpy()) - 1.0, 0.0))
    np.testing.assert_allclose(float(gradients[-1]), expected, rtol=1e-5)
    keras.optimizers.SGD(0.1).apply_gradients(
        zip(gradients, [*model.trainable_variables, delta], strict=True)
    )
    np.testing.assert_allclose(float(delta.numpy()), 1.0 - 0.1 * expected, rtol=1e-5)


def test_each_variable_gets_its_own_gradient_from_one_traced_function() -> None:
    """A tf.function traced once takes other variables of the same type on later calls:
    each gets the gradient at its own value (tf.custom_gradient's `variables` would give
    every later one the first one's)."""
    function = example_function("focal")
    for gamma in (1.0, 2.0, 3.0):
        found = variable_gradient(function, "focal", "gamma", gamma)
        expected = central_difference(function, "focal", "gamma", gamma)
        np.testing.assert_allclose(float(found), expected, rtol=1e-5)


def test_a_masked_loss_takes_a_new_variable_on_each_call() -> None:
    """A masked spec's function computes its values through `_<name>_with_mask`, traced
    inside it: another tf.function called from it would keep the first call's variable
    (and fail once that variable is deleted)."""
    text = (
        "input y: label\ninput z: logits\nparam s: positive = 1.0\nmask y != -1\n"
        "loss l = mean(-sum(onehot(y) * log_softmax(s * z)))\n"
    )
    function = tensorflow_function(text, "l")
    rng = np.random.default_rng(3)
    labels = tf.constant(rng.integers(-1, 3, size=(6,)), tf.int32)
    logits = tf.constant(rng.normal(size=(6, 3)))
    for scale in (1.0, 2.0, 3.0):
        variable = tf.Variable(scale, dtype=tf.float64)
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(function(labels, logits, variable))
        step = 1e-6
        totals = [float(tf.reduce_sum(function(labels, logits, scale + d))) for d in (step, -step)]
        expected = (totals[0] - totals[1]) / (2 * step)
        np.testing.assert_allclose(float(tape.gradient(total, variable)), expected, rtol=1e-5)
        del variable


def test_a_float32_variable_is_learned_with_float16_predictions() -> None:
    """Mixed precision: the variable is cast to y_pred's dtype inside, its gradient
    back to its own."""
    function = example_function("huber")
    y_true, y_pred = (tf.constant(array, tf.float16) for array in inputs("huber", seed=1))
    delta = tf.Variable(1.0)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(tf.cast(function(y_true, y_pred, delta), tf.float32))
    found = tape.gradient(total, delta)
    assert found.dtype == tf.float32
    residual = np.abs(np.float32(y_pred.numpy()) - np.float32(y_true.numpy()))
    expected = np.sum(np.maximum(residual - 1.0, 0.0)) / residual.shape[-1]
    np.testing.assert_allclose(float(found), expected, rtol=1e-2)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_a_guard_on_params_given_as_numbers_is_decided_when_traced(gamma: float) -> None:
    """The guard of (1 - p)^gamma's gradient, `gamma - 1 >= 0 or 1 - p > 0`, is a
    Python bool and an array's condition where gamma is a number: the graph takes no
    logical or, and the gradient is the one a tensor gamma gets, at p = 1 too."""
    text = (
        "input y: binary\ninput p: prob\nparam gamma: nonneg = 2\n"
        "loss l = mean(-y * (1 - p)^gamma * log(clip(p)))\n"
    )
    function = tensorflow_function(text, "l")

    @tf.function(autograph=False)
    def value_and_gradient(y_true: tf.Tensor, y_pred: tf.Tensor, gamma: Any) -> tuple:
        with tf.GradientTape() as tape:
            tape.watch(y_pred)
            total = tf.reduce_sum(function(y_true, y_pred, gamma))
        return total, tape.gradient(total, y_pred)

    y_true = tf.constant([[1.0, 0.0, 1.0, 1.0]])
    y_pred = tf.constant([[1.0, 0.3, 0.6, 0.0]])
    graph = value_and_gradient.get_concrete_function(y_true, y_pred, gamma).graph.as_graph_def()
    ops = {node.op for node in graph.node}
    ops |= {node.op for function_def in graph.library.function for node in function_def.node_def}
    assert "LogicalOr" not in ops
    as_number = value_and_gradient(y_true, y_pred, gamma)
    as_tensor = value_and_gradient(y_true, y_pred, tf.constant(gamma))
    for found, expected in zip(as_number, as_tensor, strict=True):
        np.testing.assert_array_equal(found.numpy(), expected.numpy())
    assert np.isfinite(as_number[1].numpy()).all()
