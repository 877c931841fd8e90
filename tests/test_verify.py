"""Verification: the exact reference on hand-built SymPy losses, and E9xx on broken code."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy
import tensorflow as tf
from sympy.codegen.cfunctions import log1p

from lossdsl import builtins
from lossdsl.compiler import compile_source
from lossdsl.diagnostics import LossSpecError
from lossdsl.source import SourceFile, Span
from lossdsl.symbolic import functions as fn
from lossdsl.symbolic.loss import SymbolicLoss
from lossdsl.typed import NAMED_DOMAINS, CheckedSpec, InputInfo, InputKind, ParamInfo, TConst
from lossdsl.verification.compare import BUG_HELP, worst_mismatch
from lossdsl.verification.driver import verify_module
from lossdsl.verification.expander import select
from lossdsl.verification.layouts import Draw, Layout
from lossdsl.verification.reference import (
    ReferenceGraph,
    near_kinks,
    reference,
    underflow_followed,
)

SPAN = Span.point(1, 1)
EXAMPLES = Path(__file__).parent.parent / "examples"
EPS = 1e-7


def hand_built(
    build: Callable[[dict[str, sympy.Symbol]], sympy.Expr],
    true_kind: InputKind = "onehot",
    pred_kind: InputKind = "prob",
    params: tuple[ParamInfo, ...] = (),
    mask: Callable[[dict[str, sympy.Symbol]], sympy.Basic] | None = None,
) -> SymbolicLoss:
    """A SymbolicLoss over inputs `y` and `p` (and `params`) without the parser or lowering."""
    y_true = InputInfo("y", true_kind, "y_true", None)
    y_pred = InputInfo("p", pred_kind, "y_pred", None)
    placeholder = TConst(0.0, SPAN)
    checked = CheckedSpec(
        SourceFile.from_text("loss = 0"), "hand", SPAN, "", y_true, y_pred, params,
        placeholder, placeholder, True, False, None, (),
    )  # fmt: skip
    symbols = {"y": sympy.Symbol("y", real=True), "p": sympy.Symbol("p", real=True)}
    roles = {symbols["y"]: y_true.roles, symbols["p"]: y_pred.roles}
    for param in params:
        symbols[param.name] = sympy.Symbol(param.name, real=True)
        roles[symbols[param.name]] = param.roles
    result = build(symbols)
    return SymbolicLoss(
        checked, result, result, mask(symbols) if mask else None, symbols, roles, (), sympy.S.Zero
    )


FOCAL_PARAMS = (
    ParamInfo("gamma", NAMED_DOMAINS["nonneg"], 2.0, SPAN),
    ParamInfo("alpha", NAMED_DOMAINS["unit"], 0.25, SPAN),
)


def focal_expression(s: dict[str, sympy.Symbol]) -> sympy.Expr:
    q = fn.Clip(s["p"], EPS, 1 - EPS)
    return fn.ReduceSum(s["alpha"] * (1 - q) ** s["gamma"] * -s["y"] * sympy.log(q), fn.CLASS_MASK)


FOCAL = hand_built(focal_expression, params=FOCAL_PARAMS)


@tf.function
def focal_by_hand(y_true, y_pred, gamma, alpha):
    q = tf.clip_by_value(y_pred, EPS, 1 - EPS)
    return tf.reduce_sum(alpha * (1 - q) ** gamma * -y_true * tf.math.log(q), axis=-1)


@tf.function
def focal_on_the_wrong_axis(y_true, y_pred, gamma, alpha):
    q = tf.clip_by_value(y_pred, EPS, 1 - EPS)
    terms = alpha * (1 - q) ** gamma * -y_true * tf.math.log(q)
    return tf.reduce_sum(terms, axis=-1) * 0.5 + tf.reduce_mean(terms, axis=-1) * 2.0


def codes(diagnostics: tuple) -> set[str]:
    return {diagnostic.code for diagnostic in diagnostics}


# ---------------------------------------------------------------- hand-built references


def test_a_correct_hand_written_function_passes() -> None:
    assert verify_module(FOCAL, focal_by_hand) == ()


def test_a_wrong_value_is_E901_naming_shape_inputs_and_values() -> None:
    (value_error, gradient_error) = verify_module(FOCAL, focal_on_the_wrong_axis)
    assert value_error.code == "E901" and gradient_error.code == "E902"
    assert "y_pred of shape [2, 5, 3]" in value_error.message  # C = 4 hides this bug
    assert value_error.span == SPAN
    assert any("SymPy gives" in line and "the generated code" in line for line in value_error.help)
    assert any(line.startswith("inputs at [") for line in value_error.help)
    assert value_error.help[-1] == BUG_HELP


def test_a_wrong_gradient_alone_is_E902() -> None:
    @tf.function
    def doubled_gradient(y_true, y_pred, gamma, alpha):
        q = tf.clip_by_value(y_pred, EPS, 1 - EPS)
        value = tf.reduce_sum(alpha * (1 - q) ** gamma * -y_true * tf.math.log(q), axis=-1)
        return 2.0 * value - tf.stop_gradient(value)

    assert codes(verify_module(FOCAL, doubled_gradient)) == {"E902"}


def test_a_raising_function_or_a_wrong_shape_is_E903() -> None:
    def raises(y_true, y_pred, gamma, alpha):
        raise ValueError("boom")

    def keeps_the_class_axis(y_true, y_pred, gamma, alpha):
        return focal_by_hand(y_true, y_pred, gamma, alpha)[..., tf.newaxis]

    (raised,) = verify_module(FOCAL, raises)
    assert raised.code == "E903" and "ValueError: boom" in raised.message
    (shaped,) = verify_module(FOCAL, keeps_the_class_axis)
    assert shaped.code == "E903" and "returned shape [3, 1], expected [3]" in shaped.message


def test_a_mean_function_is_verified_as_the_mean_of_the_values() -> None:
    @tf.function
    def focal_mean(y_true, y_pred, gamma, alpha):
        return tf.reduce_mean(focal_by_hand(y_true, y_pred, gamma, alpha))

    @tf.function
    def summed(y_true, y_pred, gamma, alpha):
        return tf.reduce_sum(focal_by_hand(y_true, y_pred, gamma, alpha))

    @tf.function
    def doubled_gradient(y_true, y_pred, gamma, alpha):
        value = focal_mean(y_true, y_pred, gamma, alpha)
        return 2.0 * value - tf.stop_gradient(value)

    @tf.function
    def per_sample(y_true, y_pred, gamma, alpha):
        return focal_by_hand(y_true, y_pred, gamma, alpha)

    assert verify_module(FOCAL, focal_by_hand, mean_function=focal_mean) == ()
    (value_error, gradient_error) = verify_module(FOCAL, focal_by_hand, mean_function=summed)
    assert value_error.code == "E901" and gradient_error.code == "E902"
    assert "as their mean (`hand_mean`)" in value_error.message
    assert any(line.startswith("at result element []") for line in value_error.help)
    (gradient_error,) = verify_module(FOCAL, focal_by_hand, mean_function=doubled_gradient)
    assert gradient_error.code == "E902" and "as their mean" in gradient_error.message
    (shaped,) = verify_module(FOCAL, focal_by_hand, mean_function=per_sample)
    assert shaped.code == "E903" and "expected []" in shaped.message


def test_reference_expands_reductions_softmax_and_broadcast_copies() -> None:
    # sum over the classes of a per-sample value counts C copies (as the printer does).
    symbolic = hand_built(
        lambda s: fn.ReduceSum(
            fn.ReduceMax(s["p"], fn.CLASS_MASK) + fn.Softmax(s["p"]) * s["y"], fn.CLASS_MASK
        ),
        pred_kind="logits",
    )
    layout = Layout(2, (), 3)
    y = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    p = np.array([[0.5, -1.0, 2.0], [0.1, 0.3, -0.2]])
    draw = Draw(layout, y, p, np.array([1.0, -2.0]), "test")
    exact = reference(symbolic, draw, {}, np.random.default_rng(0))
    softmax = np.exp(p) / np.exp(p).sum(axis=-1, keepdims=True)
    expected = 3 * p.max(axis=-1) + (softmax * y).sum(axis=-1)
    np.testing.assert_allclose(exact.values, expected, rtol=1e-14)
    with tf.GradientTape() as tape:
        z = tf.constant(p)
        tape.watch(z)
        value = 3 * tf.reduce_max(z, axis=-1) + tf.reduce_sum(tf.nn.softmax(z) * y, axis=-1)
        objective = tf.reduce_sum(tf.constant([1.0, -2.0], tf.float64) * value)
    np.testing.assert_allclose(exact.gradient, tape.gradient(objective, z).numpy(), rtol=1e-12)


def test_reference_gathers_labels_and_gives_zero_outside_the_classes() -> None:
    weights = ParamInfo("w", NAMED_DOMAINS["nonneg"], (1.0, 2.0, 4.0), SPAN)
    symbolic = hand_built(
        lambda s: (
            fn.Gather(s["w"], fn.ClassId(s["y"])) * fn.TakeClass(fn.LogSoftmax(s["p"]), s["y"])
        ),
        true_kind="label",
        pred_kind="logits",
        params=(weights,),
        mask=lambda s: sympy.Ne(s["y"], -1),
    )
    layout = Layout(4, (), 3)
    labels = np.array([2, -1, 3, 0], dtype=np.int32)
    p = np.arange(12.0).reshape(4, 3) / 7
    draw = Draw(layout, labels, p, np.ones(4), "test")
    exact = reference(symbolic, draw, {"w": (1.0, 2.0, 4.0)}, np.random.default_rng(0))
    log_softmax = p - np.log(np.exp(p).sum(axis=-1, keepdims=True))
    np.testing.assert_allclose(
        exact.values, [4.0 * log_softmax[0, 2], 0.0, 0.0, 1.0 * log_softmax[3, 0]], rtol=1e-14
    )
    assert np.all(exact.gradient[1:3] == 0.0)


def test_stop_gradient_has_a_value_and_no_derivative() -> None:
    symbolic = hand_built(
        lambda s: fn.ReduceSum(fn.StopGradient(s["p"] ** 2) * s["p"], fn.CLASS_MASK),
        pred_kind="real",
    )
    draw = Draw(Layout(1, (), 2), np.zeros((1, 2)), np.array([[3.0, -2.0]]),
                       np.array([1.0]), "test")  # fmt: skip
    exact = reference(symbolic, draw, {}, np.random.default_rng(0))
    np.testing.assert_allclose(exact.values, [27.0 - 8.0])
    np.testing.assert_allclose(exact.gradient, [[9.0, 4.0]])


def test_points_near_a_kink_are_moved_away() -> None:
    # relu(p - 0.5) with p = 0.5 + 1e-9: the element is drawn again, away from the kink.
    symbolic = hand_built(lambda s: fn.ReduceSum(fn.Relu(s["p"] - 0.5), fn.CLASS_MASK))
    p = np.array([[0.5 + 1e-9, 0.9]])
    draw = Draw(Layout(1, (), 2), np.zeros((1, 2)), p, np.array([1.0]), "test")
    exact = reference(symbolic, draw, {}, np.random.default_rng(0))
    assert exact.draw.y_pred[0, 1] == 0.9
    assert abs(exact.draw.y_pred[0, 0] - 0.5) > 1e-4
    assert not exact.skipped_gradient


def test_a_tie_that_rounding_alone_decides_is_not_compared() -> None:
    """logsumexp over one class of w = [1] is 1, a tie with y = 1: at 50 digits
    log(exp(1)) is not exactly 1, in float32 it is, and no redraw of y_pred moves a
    condition on y_true and params, so the samples at the tie are not compared (they
    were E901 on every target). Exact ties of data (`y == 1`, the masks' `y != -1`)
    are still decided, by the tests of masks and selects."""
    tie = (
        "input y: binary\ninput p: real\nparam w: nonneg = [1]\n"
        "loss = mean(max(where(logsumexp(w) < y, 0.5, 0.1) + square(p)))\n"
    )
    compile_source(SourceFile.from_text(tie))
    exact_tie = tie.replace("logsumexp(w) < y", "y == 1")
    compile_source(SourceFile.from_text(exact_tie))


def test_worst_mismatch_tolerances_and_non_finite_values() -> None:
    expected = np.array([1.0, np.inf, np.nan, 1e-22])
    assert worst_mismatch(expected, np.array([1 + 1e-9, np.inf, 5.0, 0.0]), frozenset()) is None
    mismatch = worst_mismatch(expected, np.array([1.0, 1e308, 0.0, 0.0]), frozenset())
    assert mismatch is not None and mismatch.index == (1,)
    finite_wanted = worst_mismatch(np.array([2.0]), np.array([np.nan]), frozenset())
    assert finite_wanted is not None


# ---------------------------------------------------------------- the whole pipeline


@pytest.mark.parametrize("name", ["focal", "weighted_ce", "sparse_categorical_crossentropy_ignore"])
def test_examples_verify_clean(name: str) -> None:
    path = EXAMPLES / f"{name}.loss"
    compiled = compile_source(SourceFile(path.name, path.read_text()), verify=False)
    assert verify_module(compiled.symbolic, compiled.per_sample_function) == ()


SIGMOID_SPEC = """\
input y: binary
input z: logits
loss = mean(square(sigmoid(z) - y))
"""


def test_a_broken_printer_rule_fails_the_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    row = builtins.BUILTINS["sigmoid"]
    wrong = dataclasses.replace(row, calls=row.calls._replace(tensorflow="tf.math.tanh"))
    monkeypatch.setitem(builtins.BUILTINS, "sigmoid", wrong)
    with pytest.raises(LossSpecError) as failure:
        compile_source(SourceFile.from_text(SIGMOID_SPEC))
    assert {"E901", "E902"} <= {d.code for d in failure.value.errors}
    assert "this is a bug in lossdsl" in str(failure.value)


def test_a_reduction_printed_as_another_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    row = builtins.BUILTINS["mean"]
    wrong = dataclasses.replace(row, calls=row.calls._replace(tensorflow="tf.math.reduce_max"))
    monkeypatch.setitem(builtins.BUILTINS, "mean", wrong)
    spec = "input y: target\ninput p: real\nloss = sum(mean(square(p - y)))"
    with pytest.raises(LossSpecError) as failure:
        compile_source(SourceFile.from_text(spec))
    assert "E901" in {d.code for d in failure.value.errors}


# ---------------------------------------------------------------- valid specs once rejected

ONCE_REJECTED = [
    pytest.param("loss = mean(where(eps <= num_classes, p, y))", id="compare-two-constants"),
    pytest.param(
        "param k: positive = 3.0\nloss = mean(where(k < num_classes, p, square(p - y)))",
        id="compare-param-and-num-classes",
    ),
    pytest.param("loss = mean(clip(p, 0.9, 0.1) * y)", id="clip-bounds-reversed"),
    pytest.param(
        "loss = mean(sum(-y * log(clip(p, 0.9, 0.1)) + square(clip(p, 0.2, 0.6) - y)))",
        id="clipped-log-bounds-reversed",
    ),
    pytest.param(
        "param k: real = 0.0\nparam a: real = 1.0\nloss = mean(square(p - y) * exp(-a / k))",
        id="param-quotient-by-zero",
    ),
    pytest.param("loss = mean(where(p < 0.5, exp(1000 * p), p))", id="where-untaken-exp"),
    pytest.param("loss = mean(where(p > 0.5, p, exp(1000 * p)))", id="where-untaken-exp-else"),
    pytest.param(
        "input y: target\ninput p: real\nloss = mean(where(p > 0, p, exp(100 * sum(p))))",
        id="where-untaken-sum-of-classes",
    ),
    pytest.param(
        "input y: target\ninput p: logits\nloss = mean(minimum(exp(100 * p), 1))",
        id="minimum-untaken-exp",
    ),
    pytest.param(
        "input y: target\ninput p: logits\nloss = mean(maximum(-exp(100 * p), -1))",
        id="maximum-untaken-exp",
    ),
    pytest.param(
        "input y: target\ninput p: logits\nloss = mean(clip(exp(100 * p), 0, 10))",
        id="clip-of-overflowing-exp",
    ),
    pytest.param(
        "input y: onehot\ninput p: logits\n"
        "loss = mean(where(y > 0.5, -log_softmax(p), exp(100 * p)))",
        id="where-untaken-by-y",
    ),
    pytest.param(
        "input y: label\ninput p: logits\nloss = mean(where(class(y) == 1, exp(200 * p), p))",
        id="where-untaken-by-label",
    ),
    pytest.param("loss = mean(where(p > 0.5, 1e300, p))", id="where-of-a-huge-number"),
    pytest.param("input y: target\ninput p: real\nloss = mean(relu(p) ^ 0.5)", id="sqrt-of-relu"),
    pytest.param(
        "input y: target\ninput p: real\nloss = mean(sqrt(relu(p - y)) + y * sqrt(relu(p)))",
        id="sqrt-of-relu-weighted",
    ),
    pytest.param(
        "input y: target\ninput p: real\n"
        "loss = mean(where(mean(p) < 0, log(sum(square(p))), exp(50 * max(p))))",
        id="taken-branch-beyond-float64",
    ),
    pytest.param(
        "input y: target\ninput p: real\nloss = mean(sqrt(square(p - y) + 1e-320))",
        id="subnormal-constant",
    ),
    pytest.param(
        "input y: label\ninput p: logits\nparam w: positive = [1, 1e-300, 1e300]\n"
        "loss = mean(-w[class(y)] * log_softmax(p)[y])",
        id="extreme-class-weights",
    ),
    pytest.param(
        "input y: binary\ninput p: real\nloss = mean(maximum(2, log1p(sigmoid(p))))",
        id="number-compared-with-a-guarded-branch",
    ),
    pytest.param(
        "input y: binary\ninput p: logits\n"
        "loss = mean(sum(log(clip(num_classes)) + sigmoid(p), axis=sample), axis=all)",
        id="clip-of-num-classes",
    ),
    pytest.param(
        "input y: label\ninput p: logits\nparam a: [1, 5] = 1\n"
        "loss = mean(sum(abs(log(a + eps)) * clip(p, -3, 3)))",
        id="param-arithmetic-in-float64",
    ),
    pytest.param(
        "input y: target\ninput p: real\nlet g = log1p(maximum(p, eps^2))\n"
        "let c = sqrt(minimum(g, eps) + eps)\n"
        "loss = mean(mean(exp(clip(mean(p / (1 + square(c)) + c + c), -5, 5))))",
        id="guarded-clip-of-a-mean",
    ),
    pytest.param(
        "input y: target\ninput p: nonneg\n"
        "loss = mean(max(cosh(clip(sum(where(p != 2, 2, 2), axis=all), -4, 4)) / (p + 1)))",
        id="clip-of-a-sum-of-a-number",
    ),
]
"""Valid specs that verification once rejected as a bug in lossdsl ("E9xx")."""

EXTREME = [
    pytest.param(  # k + r is -50 in float64 at k = -50, r = exp(-50): a pole of lgamma
        "input y: target\ninput p: real\nlet r = exp(-p[1])\n"
        "loss = mean(lgamma(r) - lgamma(y[0] + r) + r * softplus(p[0] + p[1]))",
        id="lgamma-beside-a-pole-float64-cannot-tell-apart",
    ),
    pytest.param(
        "param g: real = 10\nloss = mean(square(p - y) * g ^ 1000)", id="param-power-overflows"
    ),
    pytest.param(
        "param w: [0, 1e300] = 1e300\nloss = mean(w * w * square(p - y) / 1e300)",
        id="param-beyond-float32-squared-beyond-float64",
    ),
    pytest.param(
        "input y: target\ninput p: real\nparam d: [1e300, 1e301] = 1e300\n"
        "loss = mean(where(abs(p - y) <= d, square(p - y) / 2, d * abs(p - y) - d ^ 2 / 2))",
        id="huber-with-a-huge-delta",
    ),
    pytest.param(
        "input y: binary\ninput p: logits\nloss = mean(exp(exp(exp(p))) - y * p)",
        id="beyond-mpmath-exponents",
    ),
    pytest.param(
        "input y: target\ninput p: real\n"
        "loss = mean(where(p > 0, where(p > 1, log(p - 1), sqrt(p)), exp(-1000 * p)))",
        id="nested-where-log-sqrt-exp",
    ),
    pytest.param(
        "input y: target\ninput p: real\nloss = mean(minimum(maximum(exp(100 * p), 1), 2))",
        id="minimum-of-maximum-of-exp",
    ),
    pytest.param(
        "input y: target\ninput p: real\nloss = mean(clip(clip(exp(100 * p), 0, 5), 1, 2))",
        id="clip-of-clip-of-exp",
    ),
    pytest.param(
        "input y: target\ninput p: real\nloss = mean(logsumexp(where(p > 0, 1000 * p, p)))",
        id="logsumexp-of-where",
    ),
    pytest.param(
        "input y: target\ninput p: real\n"
        "loss = mean(where(p > 0, p, stop_gradient(p) * exp(1000 * p)))",
        id="stop-gradient-in-a-branch",
    ),
    pytest.param(
        "input y: target\ninput p: real\nparam lo: real = [0, 1, 2, 3]\n"
        "loss = mean(sum(square(clip(p, lo, 1) - y)))",
        id="clip-vector-bounds-crossing",
    ),
    pytest.param(
        "input y: onehot\ninput p: logits\nloss = mean(sum(where(y > 0.5, p, exp(100 * sum(p)))))",
        id="where-by-class-of-a-class-sum",
    ),
]
"""Valid specs at float64's limits that once failed with E9xx or an internal error: the
domain checks may refuse them (E407), but never as a bug in lossdsl."""


@pytest.mark.parametrize("spec", ONCE_REJECTED)
def test_valid_specs_once_rejected_compile_and_verify(spec: str) -> None:
    compiled = compile_source(SourceFile.from_text(spec))
    assert compiled.per_sample_function is not None


@pytest.mark.parametrize("spec", EXTREME)
def test_specs_at_the_limits_of_floats_are_no_bug_in_lossdsl(spec: str) -> None:
    try:
        compile_source(SourceFile.from_text(spec))
    except LossSpecError as failure:
        assert not [d.code for d in failure.errors if d.code.startswith("E9")], str(failure)


def test_the_reference_leaves_out_what_float64_cannot_compute() -> None:
    p = sympy.Symbol("p_0", real=True)
    huge = sympy.Pow(sympy.Integer(10), 400, evaluate=False)
    graph = ReferenceGraph({p: 0.5})
    with sympy.evaluate(False):
        beyond = huge * p / huge
        within = p / 2
    with sympy.evaluate(False):
        subnormal = p * sympy.Rational(1, 10**320)  # flushed to 0 by TensorFlow's CPU kernels
    assert graph.overflowing([beyond, within, subnormal]) == {beyond, subnormal}
    flat = select(sympy.GreaterThan(p, 1, evaluate=False), p - 1, sympy.S.Zero)
    root = sympy.sqrt(flat, evaluate=False)  # sqrt(relu(p - 1)) at p = 0.5: 0 * inf
    adjoints = graph.gradient({root: 1.0})
    assert adjoints.get(p, 0) == 0 and root in graph.singular


def test_a_pole_float64_cannot_tell_the_argument_from_is_left_out() -> None:
    """lgamma(k + exp(-s)) at k = -50, s = 50: exp(-50) is below float64's resolution at
    50, so a float64 program computes lgamma(-50), a pole, where the exact value and its
    derivative are finite (a negative binomial NLL at the verifier's edge points stopped
    with E902). At s = 1 the argument is 0.37 from the pole, and is compared."""
    k, s = sympy.Symbol("y_0", real=True), sympy.Symbol("p_0", real=True)
    with sympy.evaluate(False):
        beside = builtins.Lgamma(k + sympy.exp(-s))
    for at, left_out in ((50.0, True), (1.0, False)):
        graph = ReferenceGraph({k: -50.0, s: at})
        assert mpmath.isfinite(graph.value(beside))
        assert (graph.overflowing([beside]) == {beside}) is left_out


def test_a_sign_of_a_value_float64_computes_as_0_is_a_kink() -> None:
    """sign(clip(square(log_softmax(z)[0]), -4, 4)) at logits (0.735, -50, -50): the log
    softmax is -2.6e-22 exactly, 0 in float64 (two terms of 0.735 cancel), so the sign is
    1 exactly and 0 as computed (fuzzing, JAX, seed 95198: E901). Its argument's
    magnitude follows the square's derivative and the clip it passes: a kink, whose y_pred
    elements are drawn again, as a comparison's."""
    z = [sympy.Symbol(f"p_{i}", real=True) for i in range(3)]
    with sympy.evaluate(False):
        log_softmax = z[0] - sympy.log(sympy.Add(*(sympy.exp(x) for x in z)))
        jump = builtins.Sign(fn.Clip(log_softmax**2, -4, 4))
    for point, kinked in (((0.735, -50.0, -50.0), True), ((0.735, -1.0, -1.0), False)):
        graph = ReferenceGraph(dict(zip(z, point, strict=True)))
        kinks = near_kinks(graph, graph.order([jump]), {x: i for i, x in enumerate(z)})
        assert [kink.condition for kink in kinks] == ([jump] if kinked else [])


def test_an_underflow_that_float64_follows_is_compared() -> None:
    """exp(-exp(50)) is 2^(-7e21): below float64's normal numbers, so a root computed from
    it was left out, and with it every other element of its row (a complementary log-log
    loss was inf at a logit of -50 beside one of 50, and passed). Flushed to 0, the value
    and gradient are the same in float64: such a root is compared. log(p * 1e-320) is not
    followed: flushed, it is -inf."""
    p, q = sympy.Symbol("p_0", real=True), sympy.Symbol("p_1", real=True)
    graph = ReferenceGraph({p: 50.0, q: 50.0})
    with sympy.evaluate(False):
        followed = log1p(-sympy.exp(-sympy.exp(p))) + p
        lost = sympy.log(q * sympy.Rational(1, 10**320))
    roots = {followed, lost}
    seeds = {root: 1.0 for root in roots}
    assert graph.overflowing(list(roots)) == roots
    assert not graph.overflowed  # a tiny argument is computed, not taken as overflowing
    adjoints = graph.gradient(seeds)
    assert underflow_followed(graph, roots, seeds, adjoints, [p, q]) == {followed}
