"""The TensorFlow printer: exact text for representative specs, and values against NumPy.

The forward pass as a module differentiated by autodiff prints it (`own_backward=False`:
JAX and PyTorch modules, and losses whose values move between samples); the loss's own
backward pass has its tests in test_backward.py and the golden modules.

The numeric tests run the printed statements (generated code, not spec text) inside a
small function built here, with the inputs bound as the module writer's prelude binds
them: float64 tensors, labels as int32 `[B, S..., 1]`, scalar params as Python floats.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import sympy
import tensorflow as tf
from sympy.core.cache import clear_cache

from lossdsl.codegen.body import FunctionBody
from lossdsl.codegen.helpers import HELPERS
from lossdsl.codegen.layout import BACKWARD, FORWARD, lay_out
from lossdsl.codegen.names import python_name
from lossdsl.codegen.printer import print_body, shared_subexpressions
from lossdsl.codegen.writer import write_module
from lossdsl.compiler import check_source, generate
from lossdsl.parser import read_source
from lossdsl.source import SourceFile
from lossdsl.symbolic import functions as fn
from lossdsl.symbolic.loss import SymbolicLoss
from lossdsl.symbolic.lower import lower

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SHAPES = [(4, 3), (2, 3, 5, 4)]
EPS = 1e-7


def compiled(text: str) -> tuple[SymbolicLoss, FunctionBody]:
    symbolic = lower(check_source(SourceFile.from_text(text)))
    return symbolic, print_body(symbolic, own_backward=False)


def run(text: str, y_true: np.ndarray, y_pred: np.ndarray, **params: object) -> tuple:
    """The printed body's result (and mask) on the given inputs, as NumPy arrays."""
    symbolic, body = compiled(text)
    checked = symbolic.checked
    names = [python_name(checked.y_true.name), python_name(checked.y_pred.name)]
    names += [python_name(param.name) for param in checked.params]
    lines = [f"def loss_body({', '.join(names)}):"]
    lines += [f"    {line}" for statement in body.statements for line in statement.split("\n")]
    lines.append(f"    return {body.result}, {body.mask}")
    namespace: dict[str, object] = {"tf": tf}
    for helper in body.helpers:
        exec(compile(HELPERS[helper], "<generated helper>", "exec"), namespace)  # generated code
    exec(compile("\n".join(lines), "<generated>", "exec"), namespace)  # generated code
    if checked.y_true.kind == "label":
        y = tf.constant(y_true.astype(np.int32))
    else:
        y = tf.constant(y_true, tf.float64)
    values = []
    for param in checked.params:
        value = params.get(param.name, param.default)
        values.append(tf.constant(value, tf.float64) if isinstance(value, tuple) else value)
    result, mask = namespace["loss_body"](y, tf.constant(y_pred, tf.float64), *values)
    return result.numpy(), None if mask is None else mask.numpy()


def onehot_and_prob(shape: tuple[int, ...], rng: np.random.Generator) -> tuple:
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    onehot = np.eye(shape[-1])[labels]
    logits = rng.normal(size=shape) * 3
    prob = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return labels, onehot, logits, prob


def log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def take(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """x at each label's class, 0 for labels outside [0, C)."""
    inside = (labels >= 0) & (labels < x.shape[-1])
    taken = np.take_along_axis(x, np.clip(labels, 0, x.shape[-1] - 1)[..., None], -1)[..., 0]
    return np.where(inside, taken, 0.0)


# ---------------------------------------------------------------- exact text


def test_sparse_categorical_crossentropy_with_ignored_label() -> None:
    _, body = compiled(
        "input y: label\ninput z: logits\nmask y != -1\n"
        "loss = mean(-sum(onehot(y) * log_softmax(z)))\n"
    )
    assert body.target_rules == ("sparse_softmax_cross_entropy",)
    assert replace(body, fusions=()) == FunctionBody(
        statements=(
            "t0 = tf.expand_dims(\n"
            "    tf.nn.sparse_softmax_cross_entropy_with_logits(\n"
            "        labels=tf.clip_by_value(y, 0, tf.shape(z)[-1] - 1)[..., 0], logits=z\n"
            "    ),\n"
            "    -1,\n"
            ")",
        ),
        result="tf.squeeze(_where_zero((y >= 0) & (y < tf.shape(z)[-1]), t0), axis=-1)",
        helpers=("_where_zero",),
        mask="tf.squeeze(tf.math.not_equal(y, -1), axis=-1)",
    )


def test_a_label_gather_is_tf_gather_with_batch_dims() -> None:
    _, body = compiled("input y: label\ninput p: prob\nloss = mean(-sum(onehot(y) * log(clip(p))))")
    code = "\n".join([*body.statements, body.result])
    assert "tf.gather(" in code and "batch_dims=len(p.shape) - 1," in code
    assert "take_along_axis" not in code


def test_categorical_crossentropy_of_onehot_labels_is_the_fused_op() -> None:
    _, body = compiled("input y: onehot\ninput z: logits\nloss = mean(-sum(y * log(softmax(z))))")
    assert body.target_rules == ("softmax_cross_entropy",)
    assert replace(body, fusions=()) == FunctionBody(
        statements=(), result="tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=z)"
    )
    _, weighted = compiled(
        "input y: onehot\ninput z: logits\nparam a: positive = 2.0\n"
        "loss = mean(a * sum(y * log_softmax(z)))"
    )
    code = "\n".join([*weighted.statements, weighted.result])
    assert "tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=z)" in code
    assert "log_softmax" not in code


def test_xla_modules_compute_crossentropy_and_class_ids_with_helpers() -> None:
    def xla_body(text: str) -> FunctionBody:
        symbolic = lower(check_source(SourceFile.from_text(text)))
        return print_body(symbolic, jit_compile=True, own_backward=False)

    logits = xla_body("input y: onehot\ninput z: logits\nloss = mean(-sum(y * log(softmax(z))))")
    assert logits.result == "tf.squeeze(_softmax_cross_entropy(y, z), axis=-1)"
    assert logits.helpers == (
        "_sum_over_classes",
        "_class_block",
        "_softmax_cross_entropy",
        "_cpu_only",
    )
    weighted = xla_body(
        "input y: onehot\ninput p: prob\nparam w: nonneg = [1.0, 2.0]\n"
        "loss = mean(w[class(y)] * sum(-y * log(clip(p))))"
    )
    assert "_class_of(y)" in "\n".join([*weighted.statements, weighted.result])
    assert "_class_of" in weighted.helpers


def test_xla_modules_take_log1p_of_arrays_with_a_helper() -> None:
    text = (
        "input y: binary\ninput p: prob\nparam s: unit = 0.5\n"
        "loss = mean(-(y * log(clip(p)) + (1 - y) * log(1 - clip(p))) + log1p(s))"
    )
    symbolic = lower(check_source(SourceFile.from_text(text)))
    xla = print_body(symbolic, jit_compile=True, own_backward=False)
    xla_code = "\n".join([*xla.statements, xla.result])
    assert "_log1p(-t0)" in xla_code and "tf.math.log1p(tf.cast(" in xla_code  # s: a scalar
    assert {"_log1p", "_cpu_only"} <= set(xla.helpers)
    plain = print_body(symbolic, own_backward=False)
    plain_code = "\n".join([*plain.statements, plain.result])
    assert "tf.math.log1p(t0 * -1.0)" in plain_code and "_log1p" not in plain.helpers
    pair = print_body(
        lower(
            check_source(
                SourceFile.from_text(
                    "input y: binary\ninput z: logits\n"
                    "loss = mean(-(y * log(sigmoid(z)) + (1 - y) * log(1 - sigmoid(z))))"
                )
            )
        ),
        jit_compile=True,
        own_backward=False,
    )
    assert (
        pair.helpers[:2] == ("_softplus_pair_same_shape", "_log1p") and "_cpu_only" in pair.helpers
    )


def test_crossentropy_of_labels_that_need_not_sum_to_one_is_not_fused() -> None:
    _, body = compiled("input y: binary\ninput z: logits\nloss = mean(-sum(y * log_softmax(z)))")
    code = "\n".join([*body.statements, body.result])
    assert "softmax_cross_entropy_with_logits" not in code and "log_softmax" in code


def test_binary_crossentropy_on_logits_is_one_softplus_pair() -> None:
    _, body = compiled(
        "input y: binary\ninput z: logits\nparam w: nonneg = 2.0\n"
        "loss = mean(-(w * y * log(sigmoid(z)) + (1 - y) * log(1 - sigmoid(z))))"
    )
    assert body.helpers == ("_softplus_pair_same_shape",)
    code = "\n".join([*body.statements, body.result])
    assert "_softplus_pair_same_shape(w * y, 1.0 - y, z)" in code
    assert "tf.math.softplus" not in code
    _, per_sample_weight = compiled(
        "input y: binary\ninput z: logits\n"
        "loss = mean(-(sum(y) * log(sigmoid(z)) + (1 - y) * log(1 - sigmoid(z))))"
    )
    assert per_sample_weight.helpers == ("_softplus_pair", "_softplus_pair_same_shape")
    assert "_softplus_pair(" in "\n".join([*per_sample_weight.statements, per_sample_weight.result])


def test_a_softplus_pair_without_y_pred_is_not_fused() -> None:
    _, body = compiled(
        "input y: target\ninput p: real\nloss = mean(softplus(y) + softplus(-y) + square(p))"
    )
    assert body.helpers == ()
    assert "tf.math.softplus(y)" in "\n".join([*body.statements, body.result])


def test_class_sums_of_xla_modules_are_products_with_ones() -> None:
    symbolic = lower(
        check_source(
            SourceFile.from_text(
                "input y: onehot\ninput p: prob\n"
                "loss = mean(sum(-y * log(clip(p))) + 0.1 * mean(square(p)))"
            )
        )
    )
    plain = print_body(symbolic, own_backward=False)
    assert plain.helpers == ("_clipped_log", "_inside", "_where_zero")
    xla = print_body(symbolic, jit_compile=True, own_backward=False)
    assert xla.helpers == (
        "_clipped_log",
        "_inside",
        "_where_zero",
        "_sum_over_classes",
        "_class_block",
        "_mean_over_classes",
        "_cpu_only",
    )
    code = "\n".join([*xla.statements, xla.result])
    assert "_sum_over_classes(" in code and "_mean_over_classes(" in code
    assert "tf.math.reduce_sum" not in code and "tf.math.reduce_mean" not in code


def test_focal_loss_shares_the_clipped_probability_and_scales_the_sum() -> None:
    _, body = compiled(
        "input y: onehot\ninput p: prob\nparam gamma: nonneg = 2.0\nparam alpha: unit = 0.25\n"
        "let q = clip(p)\nloss focal = mean(sum(alpha * (1 - q)^gamma * -y * log(q)))\n"
    )
    assert body.statements == (
        "sum_dtype = tf.float32 if p.dtype in (tf.float16, tf.bfloat16) else p.dtype",
        "t0 = _clip(p, 1e-07, 0.9999999)",
        "t1 = tf.math.reduce_sum(\n"
        "    tf.cast(y * _power(1.0 - t0, gamma) * tf.math.log(t0), sum_dtype),\n"
        "    axis=-1,\n"
        "    keepdims=True,\n"
        ")",
    )
    assert body.result == "tf.squeeze(-alpha * tf.cast(t1, p.dtype), axis=-1)"
    assert body.helpers == (
        "_clip",
        "_inside",
        "_where_zero",
        "_power",
        "_power_form",
        "_whole_power",
    )


def test_the_log_of_a_clipped_probability_is_one_helper() -> None:
    _, body = compiled("input y: onehot\ninput p: prob\nloss = mean(sum(-y * log(clip(p))))\n")
    assert body.statements[1] == (
        "t0 = tf.math.reduce_sum(\n"
        "    tf.cast(y * _clipped_log(p, 1e-07, 0.9999999), sum_dtype),\n"
        "    axis=-1,\n"
        "    keepdims=True,\n"
        ")"
    )
    assert body.helpers == ("_clipped_log", "_inside", "_where_zero")


def test_a_clip_without_y_pred_is_no_clipped_log_and_param_bounds_stay_min_max() -> None:
    _, body = compiled(
        "input y: target\ninput p: real\nparam hi: positive = 2.0\n"
        "loss = mean(log(clip(y, 0.5, 1.5)) * clip(p, 0, hi))\n"
    )
    code = "\n".join([*body.statements, body.result])
    assert "_clip(y, 0.5, 1.5)" in code and "_clipped_log" not in code
    assert "tf.math.minimum(tf.math.maximum(p, 0.0), hi)" in code
    assert body.helpers == ("_clip", "_inside", "_where_zero")


def test_a_clip_whose_bounds_are_reversed_is_its_upper_bound_as_in_numpy() -> None:
    text = (
        "input y: target\ninput p: real\nparam hi: real = 0.1\n"
        "loss = mean(clip(p, 0.9, 0.1) + clip(p, 0.9, hi) + log(clip(p, 0.8, 0.2)))\n"
    )
    y_pred = np.linspace(-1.0, 2.0, 12).reshape(4, 3)
    result, _ = run(text, np.zeros_like(y_pred), y_pred)
    assert np.allclose(result, np.full(4, 0.1 + 0.1 + np.log(0.2)), rtol=1e-15)
    assert np.array_equal(np.clip(y_pred, 0.9, 0.1), np.full((4, 3), 0.1))


def test_powers_and_quotients_of_params_are_tensors_that_overflow_to_inf() -> None:
    text = (
        "input y: target\ninput p: real\nparam w: real = 10.0\nparam k: real = 0.0\n"
        "loss = mean(square(p - y) * (w ^ 400 + exp(-1 / k) + 2 / k))\n"
    )
    _, body = compiled(text)
    code = "\n".join([*body.statements, body.result])
    assert "w ** " not in code and "/ k" not in code
    y_pred = np.full((2, 3), 0.5)
    result, _ = run(text, np.zeros_like(y_pred), y_pred)  # no OverflowError, ZeroDivisionError
    assert np.all(np.isinf(result))


def test_a_positive_scalar_to_an_arrays_power_is_an_exp_of_its_log() -> None:
    """pow's general kernel is several times slower than exp (adaptive wing's
    (theta / epsilon)^(alpha - y)); a base that may be 0 or negative keeps pow."""
    text = (
        "input y: target\ninput p: real\nparam b: positive = 0.5\nparam c: real = 0.5\n"
        "loss = mean(square(p - y) * (b ^ (2 - y) + 2 ^ y + c ^ y))\n"
    )
    _, body = compiled(text)
    code = "\n".join([*body.statements, body.result])
    assert code.count("tf.math.exp(") == 2 and code.count("_power(") == 1
    y_true, y_pred = np.array([[0.0, 0.5, 3.0]]), np.array([[1.0, -1.0, 2.0]])
    result, _ = run(text, y_true, y_pred)
    powers = 0.5 ** (2 - y_true) + 2**y_true + 0.5**y_true
    want = np.mean((y_pred - y_true) ** 2 * powers, axis=-1)
    np.testing.assert_allclose(np.ravel(result), want, rtol=1e-12)


@pytest.mark.parametrize(
    "expression",
    [
        "where(p < 0.5, exp(1000 * p), p)",
        "where(p > 0.5, p, log(0.75 - p) * exp(1000 * p))",
        "minimum(exp(1000 * p), 1)",
        "maximum(-exp(1000 * p), -1)",
        "clip(exp(1000 * p), 0, 10)",
        "where(mean(p) < 0.5, exp(1000 * p), p)",
    ],
)
def test_untaken_branches_that_overflow_give_no_nan_gradient(expression: str) -> None:
    text = f"input y: target\ninput p: real\nloss = mean({expression})\n"
    symbolic, body = compiled(text)
    assert "tf.stop_gradient(p)" in "\n".join([*body.statements, body.result])
    checked = symbolic.checked
    lines = ["def loss_body(y, p):"]
    lines += [f"    {line}" for statement in body.statements for line in statement.split("\n")]
    lines.append(f"    return {body.result}")
    namespace: dict[str, object] = {"tf": tf}
    for helper in body.helpers:
        exec(compile(HELPERS[helper], "<generated helper>", "exec"), namespace)  # generated code
    exec(compile("\n".join(lines), "<generated>", "exec"), namespace)  # generated code
    assert checked.y_pred.name == "p"
    y_pred = tf.constant([[0.1, 0.9, 0.45], [0.8, 0.2, 0.7]], tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(y_pred)
        result = namespace["loss_body"](tf.zeros_like(y_pred), y_pred)
    gradient = tape.gradient(result, y_pred).numpy()
    assert not np.any(np.isnan(gradient))


def test_a_branch_reading_other_elements_of_the_condition_is_not_gated() -> None:
    _, body = compiled(
        "input y: target\ninput p: real\nloss = mean(where(p > 0, exp(100 * sum(p)), p))\n"
    )
    assert "stop_gradient" not in "\n".join([*body.statements, body.result])


def test_a_folded_coefficient_beyond_float64_is_applied_in_representable_steps() -> None:
    text = (
        "input y: target\ninput p: real\n"
        "loss = mean((1e200 * p) * (1e200 * y) + 1e-200 * 1e-200 * p)\n"
    )
    _, body = compiled(text)
    code = "\n".join([*body.statements, body.result])
    assert "inf" not in code and "1e300 * (1e100 * " in code and "1e-300 * (1e-100 * " in code
    y_pred = np.array([[1e-150, 0.0], [2e-150, 3.0]])
    y_true = np.array([[1e-150, 5.0], [-1e-150, 1e-300]])
    result, _ = run(text, y_true, y_pred)
    np.testing.assert_allclose(result, [5e99, 5e99], rtol=1e-15)  # 1e-400 * p is below 1e-300


def test_comparisons_of_values_without_roles_are_in_y_preds_dtype() -> None:
    text = (
        "param k: real = 2.0\n"
        "loss = mean(where(eps <= num_classes, p, where(k < 1, y, where(0.5 < p, p, y))))"
    )
    _, body = compiled(text)
    code = "\n".join([*body.statements, body.result])
    assert "tf.math.less_equal(tf.constant(1e-07, p.dtype), num_classes)" in code
    assert "tf.math.less(tf.constant(0.5, p.dtype), p)" in code
    assert "tf.cast(tf.convert_to_tensor(k, dtype_hint=p.dtype), p.dtype)" in code
    y_pred = np.full((2, 3), 0.25)
    result, _ = run(text, np.zeros_like(y_pred), y_pred)
    assert np.array_equal(result, np.full(2, 0.25))


def test_factors_without_the_summed_roles_multiply_the_sum() -> None:
    _, body = compiled(
        "input y: onehot\ninput p: prob\nparam w: nonneg = [1.0, 2.0]\n"
        "loss = mean(w[class(y)] * sum(-2 * y * log(clip(p))))"
    )
    code = "\n".join([*body.statements, body.result])
    assert "tf.cast(y * _clipped_log(" in code and "-2.0 * y" not in code
    assert body.result == "tf.squeeze(-2.0 * tf.gather(w, t0) * tf.cast(t1, p.dtype), axis=-1)"


def test_terms_without_the_sums_roles_are_added_first() -> None:
    """1 - y * (1 - s) - s / 2 adds the two numbers and params first, then one pass over
    y's shape: label smoothing's coefficient is one product and one sum of arrays."""
    _, body = compiled(
        "input y: binary\ninput p: prob\nparam s: unit = 0.1\n"
        "loss = mean((1 - y * (1 - s) - s / 2) * log(clip(p)))"
    )
    code = "\n".join([*body.statements, body.result])
    assert "y * (s - 1.0) + (1.0 - 0.5 * s)" in code


def test_weights_at_a_label_keep_the_range_check_the_class_of_y_needs_none() -> None:
    gathers = {}
    for kind, index in (("label", "y"), ("onehot", "t0")):
        _, body = compiled(
            f"input y: {kind}\ninput p: prob\nparam w: nonneg = [1.0, 2.0]\n"
            "loss = mean(w[class(y)] * sum(p))"
        )
        code = "\n".join([*body.statements, body.result])
        gathers[kind] = "_where_zero(" in code, f"tf.gather(w, {index})" in code
    assert gathers == {"label": (True, False), "onehot": (False, True)}


def test_log_cosh_is_printed_without_overflow() -> None:
    _, body = compiled("input y: target\ninput p: real\nloss = mean(log(cosh(p - y)))\n")
    assert body.statements == (
        "sum_dtype = tf.float32 if p.dtype in (tf.float16, tf.bfloat16) else p.dtype",
        "t0 = p - y",
        "t1 = tf.math.reduce_mean(\n"
        "    tf.cast(t0 + tf.math.softplus(-2.0 * t0) - 0.6931471805599453, sum_dtype),\n"
        "    axis=-1,\n"
        "    keepdims=True,\n"
        ")",
    )
    assert body.result == "tf.squeeze(tf.cast(t1, p.dtype), axis=-1)"


def test_locals_spatial_reductions_and_per_sample_results() -> None:
    _, body = compiled(
        "input y: binary\ninput p: prob\nloss = mean(1 - sum(p * y, axis=sample) / num_classes)\n"
    )
    assert body.statements == (
        "num_classes = tf.cast(tf.shape(p)[-1], p.dtype)",
        "spatial_axes = list(range(1, len(p.shape) - 1))",
        "sum_dtype = tf.float32 if p.dtype in (tf.float16, tf.bfloat16) else p.dtype",
        "t0 = tf.math.reduce_sum(\n"
        "    tf.cast(p * y, sum_dtype), axis=[*spatial_axes, -1], keepdims=True\n"
        ")",
    )
    assert body.result == "tf.reshape((num_classes - tf.cast(t0, p.dtype)) / num_classes, [-1])"


def test_numbers_are_python_literals_and_scalars_are_cast_for_tf_ops() -> None:
    _, body = compiled(
        "input y: target\ninput p: real\nparam a: positive = 2.0\n"
        "loss = mean(square(p - y) * log(a) + where(p > 0, 1, 0.5))\n"
    )
    code = "\n".join([*body.statements, body.result])
    assert "tf.math.log(tf.cast(tf.convert_to_tensor(a, dtype_hint=p.dtype), p.dtype))" in code
    assert (
        "tf.where(\n"
        "    tf.math.greater(p, 0.0), tf.constant(1.0, p.dtype), tf.constant(0.5, p.dtype)\n)"
    ) in code


def test_shared_subexpressions_come_before_their_users() -> None:
    x, z = sympy.symbols("x z", real=True)
    inner = sympy.exp(x + z)
    outer = sympy.log(1 + inner)
    shared = shared_subexpressions([outer * inner + outer, -x * inner])
    assert shared == [inner, outer]


def test_a_negated_product_reads_the_product_it_negates() -> None:
    """1 - a * exp(b) beside a * exp(b): the printer writes the negated product as minus
    the product (`1.0 - t0`), so the product is the temporary both read, not computed
    twice (gaussian_nll's backward pass reads its forward pass's e^2 exp(-s) so)."""
    a, b = sympy.symbols("a b", real=True)
    product = a * sympy.exp(b)
    assert shared_subexpressions([product + b, 1 - product]) == [product]


def test_a_negated_value_read_twice_is_subtracted_where_it_is_read() -> None:
    """1 - q and y - q (NFL's focal factor and its MAE, q a softmax): the temporary is q,
    and each sum subtracts it (`1.0 - t1`), with no pass that writes -q."""
    q, y = sympy.exp(sympy.Symbol("z", real=True)), sympy.Symbol("y", real=True)
    assert shared_subexpressions([sympy.sqrt(1 - q) + sympy.Abs(y - q)]) == [q]
    spec = (
        "input y: onehot\ninput z: logits\nlet q = softmax(z)\n"
        "loss = mean(sum(y * sqrt(1 - q)) + sum(abs(y - q)))"
    )
    body = print_body(lower(check_source(SourceFile.from_text(spec))), own_backward=False)
    assert not any(line.split(" = ", 1)[1].startswith("-") for line in body.statements)


@pytest.mark.parametrize(
    ("target", "jit_compile", "printed"),
    [
        ("tensorflow", False, r"tf\.math\.exp\(t\d+ \* -1\.0\)"),
        ("tensorflow", True, r"tf\.math\.exp\(-t\d+\)"),
        ("jax", False, r"jnp\.exp\(-t\d+\)"),
        ("torch", False, r"torch\.exp\(-t\d+\)"),
    ],
)
def test_a_negated_array_in_a_tensorflow_graph_is_no_chain_of_unary_ops(
    target: str, jit_compile: bool, printed: str
) -> None:
    """exp(-log_scale) of a [4096, 2] NLL: in a TensorFlow graph Neg then Exp is one
    `_UnaryOpsComposition` that Grappler makes, 90 us slower there, so the negation is a
    product; XLA, JAX and PyTorch read `-x` as it is."""
    spec = (
        "input y: target\ninput p: real\nlet s = p[1]\nloss = mean(s + abs(y[0] - p[0]) * exp(-s))"
    )
    body = print_body(
        lower(check_source(SourceFile.from_text(spec))), target=target, jit_compile=jit_compile
    )
    assert body.backward is not None
    assert re.search(printed, "\n".join([*body.statements, *body.backward.forward]))


@pytest.mark.parametrize(
    ("target", "jit_compile", "scattered"),
    [("tensorflow", False, True), ("tensorflow", True, False), ("jax", False, False)],
)
def test_a_label_gathers_gradient_is_scattered_in_a_tensorflow_graph(
    target: str, jit_compile: bool, scattered: bool
) -> None:
    """The generalized cross-entropy's gradient one_hot(y) * v (v per sample) is
    `_one_hot_times(y, v, p)` in a TensorFlow graph, which scatters v from 1,024 classes;
    XLA and the other targets keep the product."""
    spec = (
        "input y: label\ninput p: prob\nparam q: (0, 1) = 0.5\n"
        "loss = mean((1 - sum(onehot(y) * p)^q) / q)"
    )
    body = print_body(
        lower(check_source(SourceFile.from_text(spec))), target=target, jit_compile=jit_compile
    )
    assert body.backward is not None
    assert body.backward.gradient.startswith("_one_hot_times(y, ") == scattered
    assert ("_one_hot_times" in body.helpers) == scattered


def test_a_group_of_small_factors_that_is_a_negated_name_stays_inline() -> None:
    """-alpha grouped apart from a product's whole-shaped factors (`Parenthesized`) is
    written where it is used, as -alpha is, not as a temporary `t8 = -alpha`."""
    x, alpha = sympy.Symbol("x", real=True), sympy.Symbol("alpha", positive=True)
    negated = fn.Parenthesized(-alpha)
    assert shared_subexpressions([negated * sympy.exp(x) + negated * x]) == []


def test_a_term_with_a_negated_group_of_small_factors_is_subtracted() -> None:
    """A sum subtracts `p * y * (beta * gamma)`: it added `p * y * (-beta * gamma)`, which
    reads as a sign slip (`+ -smoothing * t0` in label-smoothed cross-entropies)."""
    spec = (
        "param beta: nonneg = 0.5\nparam gamma: nonneg = 0.5\n"
        "loss = mean(square(p - y) - beta * gamma * y * p)"
    )
    body = print_body(lower(check_source(SourceFile.from_text(spec))), own_backward=False)
    assert "tf.math.square(p - y) - p * y * (beta * gamma)" in body.statements[-1]


def test_output_does_not_depend_on_hash_seeds() -> None:
    script = (
        "from lossdsl.compiler import check_source\n"
        "from lossdsl.source import SourceFile\n"
        "from lossdsl.symbolic.lower import lower\n"
        "from lossdsl.codegen.printer import print_body\n"
        f"text = open({str(EXAMPLES / 'binary_focal_crossentropy.loss')!r}).read()\n"
        "print(print_body(lower(check_source(SourceFile.from_text(text)))))\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1


def test_typical_spec_compiles_to_tensorflow_quickly() -> None:
    text = (EXAMPLES / "binary_focal_logits.loss").read_text()
    best = float("inf")
    for _ in range(3):
        clear_cache()
        start = time.perf_counter()
        compiled(text)
        best = min(best, time.perf_counter() - start)
    assert best < 0.5  # about 30 ms on an idle machine


# ---------------------------------------------------------------- layout


def test_operators_are_spaced_and_parenthesized_as_black_writes_them() -> None:
    body = lay_out(
        [("t0", "-(a+b)*c - -x**2 + (-x)**2 + x**-2.0 + (1.0-a)**g + p.dtype**2")],
        "tf.reshape(tf.cast(t0, p.dtype), [])",
        "(y>=0)&(y<tf.shape(z)[-1])",
    )
    assert body == FunctionBody(
        statements=(
            "t0 = -(a + b) * c - -(x**2) + (-x) ** 2 + x**-2.0 + (1.0 - a) ** g + p.dtype**2",
        ),
        result="tf.reshape(tf.cast(t0, p.dtype), [])",
        mask="(y >= 0) & (y < tf.shape(z)[-1])",
    )


def test_long_calls_are_split_and_long_sums_get_temporaries() -> None:
    long_sum = " + ".join(f"tf.math.log(tf.math.abs(argument_{i}))" for i in range(4))
    body = lay_out(
        [("t0", "tf.clip_by_value(p, 1e-07, 0.9999999)")],
        f"tf.squeeze(tf.math.reduce_sum({long_sum}, axis=-1, keepdims=True), axis=-1)",
        None,
    )
    assert body == FunctionBody(
        statements=(
            "t0 = tf.clip_by_value(p, 1e-07, 0.9999999)",
            "t1 = tf.math.log(tf.math.abs(argument_0))",
            "t2 = tf.math.log(tf.math.abs(argument_1))",
            "t3 = tf.math.log(tf.math.abs(argument_2))",
            "t4 = tf.math.reduce_sum(\n"
            "    t1 + t2 + t3 + tf.math.log(tf.math.abs(argument_3)), axis=-1, keepdims=True\n"
            ")",
        ),
        result="tf.squeeze(t4, axis=-1)",
    )


def test_a_hoisted_part_is_computed_once_where_a_statement_repeats_it() -> None:
    count = "tf.cast(1.0 / tf.cast(tf.shape(p)[-1], sum_dtype), p.dtype)"
    body = lay_out(
        [("t0", "tf.math.less(a, b)")],
        f"tf.where(t0, upstream * (-a_scale * {count}), upstream * (-b_scale * {count}))",
        None,
    )
    assert body.statements == ("t0 = tf.math.less(a, b)", f"t1 = {count}")
    assert body.result == "tf.where(t0, upstream * (-a_scale * t1), upstream * (-b_scale * t1))"


def test_an_output_reads_the_part_a_statement_hoisted_before_it() -> None:
    """binary_focal_logits' backward pass computed `1.0 / C` in two temporaries: a long
    statement hoisted it, then the gradient, too long as well, hoisted it again."""
    count = "tf.cast(1.0 / tf.cast(tf.shape(z)[-1], sum_dtype), z.dtype)"
    select = f"_where_zero(tf.math.greater(t1, 0.0), t1 * gamma_scale * upstream * {count})"
    body = lay_out(
        [("t0", "tf.math.sigmoid(z)"), ("t1", "t0 - margin"), ("t2", select)],
        "t1",
        None,
        regions=[FORWARD, FORWARD, BACKWARD],
        gradient=f"t0 * first_factor * (upstream * {count}) + t2 * second_factor_of_the_gradient",
    )
    assert body.backward is not None
    assert body.backward.statements == (
        f"t2 = {count}",
        f"t3 = {select.replace(count, 't2')}",
        "t4 = t0 * first_factor * (upstream * t2)",
    )
    assert body.backward.gradient == "t4 + t3 * second_factor_of_the_gradient"


def code_lines(module: str) -> list[str]:
    """The module's lines that hold no part of a string literal (docstrings, messages)."""
    in_strings = {
        number
        for node in ast.walk(ast.parse(module))
        if isinstance(node, ast.JoinedStr)
        or (isinstance(node, ast.Constant) and isinstance(node.value, str))
        for number in range(node.lineno, (node.end_lineno or node.lineno) + 1)
    }
    return [line for number, line in enumerate(module.split("\n"), 1) if number not in in_strings]


RUFF_FORMAT_CHECK = (sys.executable, "-m", "ruff", "format", "--check", "--diff")


def test_every_example_compiles_to_formatted_code(tmp_path: Path) -> None:
    for spec_path in sorted(EXAMPLES.glob("*.loss")):
        source = read_source(spec_path.read_bytes(), str(spec_path))
        checked = check_source(source)
        symbolic = lower(checked)
        module = write_module(checked, symbolic, print_body(symbolic), jit_compile=False)
        ast.parse(module)
        assert all(len(line) <= 88 for line in code_lines(module)), spec_path.name
        (tmp_path / f"{spec_path.stem}.py").write_text(module, encoding="utf-8")
    if importlib.util.find_spec("ruff") is None:
        return
    done = subprocess.run(
        [*RUFF_FORMAT_CHECK, "--no-cache", "--line-length", "88", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


SPEC_SETS = [
    EXAMPLES,
    EXAMPLES.parent / "benchmarks" / "specs" / "literature",
    Path(__file__).resolve().parent / "stable_forms",
]


@pytest.mark.parametrize(
    "spec_path",
    sorted(path for folder in SPEC_SETS for path in folder.glob("*.loss")),
    ids=lambda path: f"{path.parent.name}/{path.stem}",
)
def test_every_temporary_of_a_module_is_read(spec_path: Path) -> None:
    """A temporary the printer defines but prints no reader of is a pass over memory for
    nothing (the product of a number and a temporary, printed as the factors it
    multiplies, left one in the probit losses' erfc tail); and each is read after its
    line."""
    for target, jit_compile in (("tensorflow", False), ("tensorflow", True), ("torch", False)):
        source = read_source(spec_path.read_bytes(), spec_path.name)
        module = ast.parse(generate(source, jit_compile=jit_compile, target=target).python_source)
        for function in (node for node in module.body if isinstance(node, ast.FunctionDef)):
            names = [node for node in ast.walk(function) if isinstance(node, ast.Name)]
            read = {name.id for name in names if isinstance(name.ctx, ast.Load)}
            written = {name.id for name in names if isinstance(name.ctx, ast.Store)}
            unread = {name for name in written - read if re.fullmatch(r"t\d+", name)}
            assert not unread, (target, jit_compile, function.name, sorted(unread))
        assert temporaries_read_before_written(module) == [], (target, jit_compile)


def temporaries_read_before_written(module: ast.Module) -> list[str]:
    """The temporaries (t0, t1, ...) some function of `module` reads on a line before
    the one that assigns them."""
    early = []
    for function in (node for node in module.body if isinstance(node, ast.FunctionDef)):
        names = [node for node in ast.walk(function) if isinstance(node, ast.Name)]
        written: dict[str, int] = {}
        for name in names:
            if isinstance(name.ctx, ast.Store) and re.fullmatch(r"t\d+", name.id):
                written.setdefault(name.id, name.lineno)
        early += [
            f"{function.name}: {name.id} at line {name.lineno}"
            for name in names
            if isinstance(name.ctx, ast.Load) and name.lineno < written.get(name.id, 0)
        ]
    return early


# A fuzz find (seed 270885): 2 times a product that is a temporary was printed as
# `2.0 * t27` before t27's line, where the product's reads did not include it.
NUMBER_TIMES_A_LATER_PRODUCT = (
    "input y: target\ninput p: nonneg\nloss = mean(max(log(erfc(erfc(p))) + abs(clip(p, -4, 4))))\n"
)


@pytest.mark.parametrize("target", ["tensorflow", "torch"])
def test_a_number_times_a_temporary_reads_it_after_its_line(target: str) -> None:
    source = read_source(NUMBER_TIMES_A_LATER_PRODUCT.encode(), "fuzz.loss")
    module = ast.parse(generate(source, target=target).python_source)
    assert temporaries_read_before_written(module) == []


# A fuzz find (seed 320510): log(cosh(c)) is printed as the sum c + softplus(-2c) -
# log(2), which a product with a count took as a call: `c + t3 - 0.69 * t2 *
# num_classes` (E901 on every target).
LOGCOSH_TIMES_A_COUNT = (
    "input y: label\ninput p: prob\nparam c: unit = 0.25\n"
    "loss = sum(log(cosh(c)) - square(p), axis=sample)\n"
)


@pytest.mark.parametrize(
    "spec",
    [
        LOGCOSH_TIMES_A_COUNT,
        (
            "input y: target\ninput p: nonneg\n"
            "loss = mean(p / softmax(sum(y) + where(num_classes >= y, 0.5, 0.5)))\n"
        ),
        (
            "input y: target\ninput p: nonneg\n"
            "loss = mean(p * square(log_softmax(sum(y) + where(num_classes >= y, 0.5, 0.5))))\n"
        ),
    ],
    ids=["logcosh", "softmax_of_a_sum", "log_softmax_of_a_sum"],
)
@pytest.mark.parametrize("target", ["tensorflow", "jax", "torch"])
def test_a_node_printed_as_an_operation_is_parenthesized_as_one(spec: str, target: str) -> None:
    """logcosh (a sum), and a softmax or log_softmax of a value without the class axis
    (1 / C, -log(C)), in a product, a quotient and a power: compiled and verified."""
    pytest.importorskip({"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[target])
    from lossdsl.compiler import compile_source

    compile_source(SourceFile.from_text(spec), target=target)


def many_terms(count: int) -> str:
    """A regression loss summing `count` distinct terms, as benchmarks/compile_speed.py's."""
    functions = ("square", "abs", "softplus", "tanh")
    terms = " + ".join(
        f"{0.5 + i / (2 * count):.6g} * {functions[i % 4]}(p - {1 + (i + 1) / 4096:.6g} * y)"
        for i in range(count)
    )
    return f"input y: target\ninput p: real\nloss = mean({terms})\n"


def syntax_depth(tree: ast.AST) -> int:
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def test_a_sum_of_500_terms_compiles_quickly_to_short_shallow_statements(tmp_path: Path) -> None:
    text = many_terms(500)
    clear_cache()
    start = time.perf_counter()
    symbolic, body = compiled(text)
    module = write_module(symbolic.checked, symbolic, body, jit_compile=False)
    assert time.perf_counter() - start < 20  # about 1.5 s on an idle machine
    assert syntax_depth(ast.parse(module)) < 60  # a flat 500-term sum is 500 deep
    assert all(len(line) <= 88 for line in code_lines(module))
    rng = np.random.default_rng(7)
    targets, predictions = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    value, _ = run(text, targets, predictions)
    functions = (np.square, np.abs, lambda x: np.logaddexp(0.0, x), np.tanh)
    expected = sum(
        (0.5 + i / 1000) * functions[i % 4](predictions - (1 + (i + 1) / 4096) * targets)
        for i in range(500)
    ).mean(-1)
    np.testing.assert_allclose(value, expected, rtol=1e-5)  # the spec's 6-digit constants


def test_a_long_chain_of_names_is_split_until_it_fits() -> None:
    names = [f"a_rather_long_input_name_{i}" for i in range(12)]
    body = lay_out([("t0", " + ".join(names))], "tf.squeeze(t0, axis=-1)", None)
    assert all(len(line) <= 84 for s in body.statements for line in s.split("\n"))
    values: dict[str, object] = {name: 2**i for i, name in enumerate(names)}
    exec("\n".join(body.statements), {}, values)  # generated code
    assert values["t" + body.result.split("(t")[1].split(",")[0]] == 2**12 - 1


def test_float16_sums_are_accumulated_in_float32() -> None:
    text = "input y: target\ninput p: real\nloss = mean(abs(p - y))"
    _, body = compiled(text)
    namespace: dict[str, object] = {"tf": tf}
    for helper in body.helpers:
        exec(compile(HELPERS[helper], "<generated helper>", "exec"), namespace)  # generated code
    lines = [
        "def loss_body(y, p):",
        *(f"    {line}" for s in body.statements for line in s.split("\n")),
    ]
    exec(
        compile("\n".join([*lines, f"    return {body.result}"]), "<generated>", "exec"), namespace
    )
    large = tf.constant(np.full((2, 10), 1e4), tf.float16)
    value = namespace["loss_body"](tf.zeros_like(large), large)
    assert value.dtype == tf.float16
    np.testing.assert_array_equal(value.numpy(), [1e4, 1e4])  # the float16 sum is 1e5: inf


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("shape", SHAPES)
def test_categorical_crossentropy_and_focal(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    _, onehot, _, prob = onehot_and_prob(shape, rng)
    q = np.clip(prob, EPS, 1 - EPS)
    ce, _ = run("input y: onehot\ninput p: prob\nloss = mean(-sum(y * log(clip(p))))", onehot, prob)
    np.testing.assert_allclose(ce, -(onehot * np.log(q)).sum(-1), rtol=1e-12)
    focal, _ = run((EXAMPLES / "focal.loss").read_text(), onehot, prob, gamma=3.0)
    expected = (0.25 * (1 - q) ** 3.0 * -onehot * np.log(q)).sum(-1)
    np.testing.assert_allclose(focal, expected, rtol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_sparse_logits_with_labels_outside_the_classes(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    labels, _, logits, _ = onehot_and_prob(shape, rng)
    labels.flat[0], labels.flat[1] = -1, shape[-1]
    text = (
        "input y: label\ninput z: logits\nmask y != -1\n"
        "loss = mean(-sum(onehot(y) * log_softmax(z)))"
    )
    value, mask = run(text, labels[..., None], logits)
    np.testing.assert_allclose(value, -take(log_softmax(logits), labels), rtol=1e-12)
    assert value.flat[0] == 0 and value.flat[1] == 0
    np.testing.assert_array_equal(mask, labels != -1)


@pytest.mark.parametrize("shape", SHAPES)
def test_weighted_gather(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(2)
    labels, _, _, prob = onehot_and_prob(shape, rng)
    labels.flat[0] = shape[-1] + 2
    weights = tuple(float(i + 1) for i in range(shape[-1]))
    text = (
        f"input y: label\ninput p: prob\nparam w: nonneg = {list(weights)}\n"
        "loss = mean(-w[class(y)] * sum(onehot(y) * log(clip(p))))"
    )
    value, _ = run(text, labels[..., None], prob)
    gathered = take(np.broadcast_to(np.array(weights), prob.shape), labels)
    expected = -gathered * take(np.log(np.clip(prob, EPS, 1 - EPS)), labels)
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    assert value.flat[0] == 0


@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_and_logsumexp_forms_stay_finite(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(3)
    _, onehot, logits, _ = onehot_and_prob(shape, rng)
    logits = logits * 300  # exp overflows float64 without the stable forms
    via_softmax, _ = run(
        "input y: onehot\ninput z: logits\nloss = mean(-sum(y * log(softmax(z))))", onehot, logits
    )
    expected = -(onehot * log_softmax(logits)).sum(-1)
    np.testing.assert_allclose(via_softmax, expected, rtol=1e-12)
    via_lse, _ = run(
        "input y: onehot\ninput z: logits\nloss = mean(log(sum(exp(z))) - sum(y * z))",
        onehot,
        logits,
    )
    np.testing.assert_allclose(via_lse, expected, rtol=1e-9, atol=1e-9)
    assert np.isfinite(via_lse).all()


@pytest.mark.parametrize("shape", SHAPES)
def test_binary_logits_and_log_cosh_for_large_values(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(4)
    targets = rng.integers(0, 2, size=shape).astype(float)
    logits = rng.normal(size=shape) * 400
    bce, _ = run(
        "input y: binary\ninput z: logits\n"
        "loss = mean(-y * log(sigmoid(z)) - (1 - y) * log(1 - sigmoid(z)))",
        targets,
        logits,
    )
    expected = (np.maximum(logits, 0) - logits * targets + np.log1p(np.exp(-np.abs(logits)))).mean(
        -1
    )
    np.testing.assert_allclose(bce, expected, rtol=1e-12)
    log_cosh, _ = run(
        "input y: target\ninput p: real\nloss = mean(log(cosh(p - y)))", targets, logits
    )
    d = logits - targets
    expected = (np.abs(d) + np.log1p(np.exp(-2 * np.abs(d))) - np.log(2.0)).mean(-1)
    np.testing.assert_allclose(log_cosh, expected, rtol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_per_sample_and_scalar_results(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(5)
    _, onehot, _, prob = onehot_and_prob(shape, rng)
    per_sample, _ = run(
        "input y: onehot\ninput p: prob\nloss = mean(1 - sum(p * y, axis=sample))", onehot, prob
    )
    axes = tuple(range(1, len(shape)))
    np.testing.assert_allclose(per_sample, 1 - (prob * onehot).sum(axes), rtol=1e-12)
    assert per_sample.shape == shape[:1]
    dice, _ = run((EXAMPLES / "dice.loss").read_text(), onehot, prob)
    total = 2 * (prob * onehot).sum() / (prob.sum() + onehot.sum() + EPS)
    assert dice.shape == ()
    np.testing.assert_allclose(dice, 1 - total, rtol=1e-12)


@pytest.mark.parametrize(
    ("line", "printed"),
    [
        (
            "param delta: positive = 1.0\n"
            "loss = mean(where(abs(p - y) <= delta, 0.5 * square(p - y), "
            "delta * abs(p - y) - 0.5 * delta^2))",
            "_huber(p - y, delta)",
        ),
        (
            "loss = mean(where(abs(y - p) < 2, (y - p)^2 / 2, 2 * (abs(y - p) - 1)))",
            "_huber(y - p, 2.0)",
        ),
    ],
)
def test_the_huber_loss_is_one_helper_however_it_is_written(line: str, printed: str) -> None:
    _, body = compiled(f"input y: target\ninput p: real\n{line}\n")
    code = "\n".join([*body.statements, body.result])
    assert printed in code and "tf.where" not in code
    assert body.helpers == ("_huber",)


@pytest.mark.parametrize(
    "line",
    [
        # delta may be 0 or negative: the clip gradient would be wrong
        "param delta: real = 1.0\n"
        "loss = mean(where(abs(p - y) <= delta, 0.5 * square(p - y), "
        "delta * abs(p - y) - 0.5 * delta^2))",
        # not Huber: the branches do not meet
        "loss = mean(where(abs(p - y) <= 1, square(p - y), abs(p - y) - 0.5))",
    ],
)
def test_other_selects_on_a_residual_stay_selects(line: str) -> None:
    _, body = compiled(f"input y: target\ninput p: real\n{line}\n")
    code = "\n".join([*body.statements, body.result])
    assert "tf.where(" in code and "_huber" not in code


def test_any_taken_is_one_boolean_reduction_unless_the_count_is_a_number_too() -> None:
    """`max(x, where=c)` tests whether any c holds with `tf.math.reduce_any`, not a cast
    and a sum; a count the spec also uses as a number is read, not reduced again."""
    maximum = "input y: binary\ninput p: real\nloss = mean(max(p, where=y > 0.5))\n"
    _, body = compiled(maximum)
    code = "\n".join([*body.statements, body.result])
    assert code.count("tf.math.reduce_any(t0, axis=-1, keepdims=True)") == 1
    assert "reduce_sum" not in code and "reduce_mean" not in code
    y_true = np.array([[0.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    y_pred = np.array([[5.0, -2.0, -1.0], [1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(run(maximum, y_true, y_pred)[0], [-1.0, 0.0])
    counted = (
        "input y: binary\ninput p: real\nlet n = sum(where(y > 0.5, 1, 0))\n"
        "loss = mean(n * max(p, where=y > 0.5))\n"
    )
    _, body = compiled(counted)
    code = "\n".join([*body.statements, body.result])
    assert "reduce_any" not in code and code.count("reduce_sum") == 1
    np.testing.assert_array_equal(run(counted, y_true, y_pred)[0], [-2.0, 0.0])


# A fuzz find (seed 270602): softmax of a value constant over the classes is 1 / C, a
# Python number in a PyTorch module, which torch.maximum does not take (E903 before).
MAXIMUM_OF_A_CONSTANT = (
    "input y: target\ninput p: nonneg\n"
    "loss = mean(maximum(softmax(sum(y) + where(num_classes >= y, 0.5, 0.5)), erf(p / pi)))\n"
)


def test_a_number_beside_an_array_in_a_maximum_is_a_tensor_on_pytorch() -> None:
    pytest.importorskip("torch")
    from lossdsl.compiler import compile_source

    compile_source(SourceFile.from_text(MAXIMUM_OF_A_CONSTANT), target="torch")
