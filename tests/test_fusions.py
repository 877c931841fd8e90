"""The target fusions and XLA spellings: fixture pairs per rule, negative fixtures, records."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import sympy
from sympy.codegen.cfunctions import expm1, log1p

from lossdsl.codegen.body import FunctionBody
from lossdsl.codegen.fusions import (
    FUSIONS,
    FUSIONS_BY_NAME,
    LAST_FUSIONS,
    OWN_BACKWARD_FUSIONS,
    XLA_SPELLINGS,
    XLA_SPELLINGS_BY_NAME,
    FusionContext,
    clips_outside_logs,
    fuse,
    fuse_last,
    xla_spelling,
)
from lossdsl.codegen.printer import print_body
from lossdsl.codegen.writer import write_module
from lossdsl.compiler import check_source, generate
from lossdsl.parser import read_source
from lossdsl.symbolic import functions as fn
from lossdsl.symbolic.lower import lower
from lossdsl.typed import ALL_ROLES, PER_ELEMENT, PER_SAMPLE, Role

z = sympy.Symbol("z", real=True)  # y_pred: logits, or probabilities in `clipped_log`
y = sympy.Symbol("y", real=True, nonnegative=True)  # a `onehot` y_true
t = sympy.Symbol("t", real=True, nonnegative=True)  # a `binary` y_true
label = sympy.Symbol("label", integer=True)  # a `label` y_true
k = sympy.Symbol("k", positive=True)  # a scalar param
w = sympy.Symbol("w", positive=True)  # a per-sample weight
e = sympy.Symbol("e", real=True)  # embeddings of a spec that pairs samples: [batch, C]
EPS = sympy.Rational(1, 10**7)
CLASS = fn.CLASS_MASK
ALL = fn.encode_roles(ALL_ROLES)

CONTEXT = FusionContext(
    rows_summing_to_one=frozenset({y}),
    roles={
        z: ALL_ROLES,
        y: ALL_ROLES,
        t: ALL_ROLES,
        label: PER_ELEMENT,
        w: PER_SAMPLE,
        e: frozenset({Role.BATCH, Role.CLASS}),
    },
    y_pred=z,
    labels=frozenset({label}),
)

Builder = Callable[[], sympy.Basic]

# (fusion that must fire, input, expected output)
FIXTURES: list[tuple[str, Builder, Builder]] = [
    (
        "softmax_cross_entropy",
        lambda: fn.ReduceSum(y * fn.LogSoftmax(z), CLASS),
        lambda: -fn.SoftmaxCrossEntropy(y, z),
    ),
    (
        "softmax_cross_entropy",
        lambda: fn.ReduceSum(k * y * fn.LogSoftmax(z), ALL),
        lambda: fn.ReduceSum(-k * fn.SoftmaxCrossEntropy(y, z), fn.encode_roles(PER_ELEMENT)),
    ),
    (  # label smoothing: y (1 - k) + k / C sums to 1 over the classes
        "softmax_cross_entropy",
        lambda: fn.ReduceSum((y * (1 - k) + k / fn.NUM_CLASSES) * fn.LogSoftmax(z), CLASS),
        lambda: -fn.SoftmaxCrossEntropy(y * (1 - k) + k / fn.NUM_CLASSES, z),
    ),
    (  # -(y (1 - k) + k / C) sums to -1: its negation is the labels
        "softmax_cross_entropy",
        lambda: fn.ReduceSum((-y * (1 - k) - k / fn.NUM_CLASSES) * fn.LogSoftmax(z), CLASS),
        lambda: fn.SoftmaxCrossEntropy(y * (1 - k) + k / fn.NUM_CLASSES, z),
    ),
    (
        "sparse_softmax_cross_entropy",
        lambda: fn.TakeClass(fn.LogSoftmax(z), label),
        lambda: -fn.SparseSoftmaxCrossEntropy(z, label),
    ),
    (
        "softplus_pair",
        lambda: t * fn.Softplus(-z) + (1 - t) * fn.Softplus(z),
        lambda: fn.SoftplusPair(t, 1 - t, z),
    ),
    (
        "softplus_pair",
        lambda: k * t * fn.Softplus(-z) + (1 - t) * fn.Softplus(z) + z**2,
        lambda: fn.SoftplusPair(k * t, 1 - t, z) + z**2,
    ),
    (  # the negated pair, exp(-bce) in a focal loss: SymPy writes -(1 - t) as t - 1
        "softplus_pair",
        lambda: sympy.exp(-t * fn.Softplus(-z) - (1 - t) * fn.Softplus(z)),
        lambda: sympy.exp(fn.SoftplusPair(-t, t - 1, z)),
    ),
    (
        "clipped_log",
        lambda: sympy.log(fn.Clip(z, EPS, 1 - EPS)),
        lambda: fn.ClippedLog(z, EPS, 1 - EPS),
    ),
    (
        "huber",
        lambda: fn.Where(sympy.Abs(z - t) <= 1, (z - t) ** 2 / 2, sympy.Abs(z - t) - 0.5),
        lambda: fn.Huber(sympy.Abs(z - t).args[0], 1),
    ),
    (
        "huber",
        lambda: fn.Where(sympy.Abs(z - t) < k, (z - t) ** 2 / 2, k * sympy.Abs(z - t) - k**2 / 2),
        lambda: fn.Huber(sympy.Abs(z - t).args[0], k),
    ),
    (
        "pair_distances",
        lambda: fn.ReduceSum((e - fn.Other(e, 1)) ** 2, CLASS),
        lambda: fn.PairSquaredDistance(e, e, 1),
    ),
    (
        "pair_distances",
        lambda: fn.ReduceSum((e / w + 2 * fn.Other(e, 2)) ** 2, CLASS),
        lambda: fn.PairSquaredDistance(e / w, -2 * e, 2),
    ),
    (
        "pair_distances",
        lambda: fn.ReduceSum((fn.Other(e, 1) - e) ** 2, CLASS),
        lambda: fn.PairSquaredDistance(e, e, 1),
    ),
    (
        "pair_distances",
        lambda: fn.ReduceSum(k * (e - fn.Other(e, 1)) ** 2 / 9, CLASS),
        lambda: k * fn.PairSquaredDistance(e, e, 1) / 9,
    ),
    (
        "pair_products",
        lambda: fn.ReduceSum(e * fn.Other(e, 1), CLASS),
        lambda: fn.PairDot(e, e, 1),
    ),
    (
        "pair_products",
        lambda: fn.ReduceSum(2 * k * e * fn.Other(e / w, 2), CLASS),
        lambda: 2 * fn.PairDot(k * e, e / w, 2),
    ),
    (
        "pair_products",
        lambda: fn.ReduceSum(e / w * fn.Other(e / w, 1), CLASS),
        lambda: fn.PairDot(e / w, e / w, 1),
    ),
    (
        "untaken_branches_guarded",
        lambda: fn.Where(z > 0, sympy.log(z), 0),
        lambda: fn.Where(z > 0, sympy.log(fn.Where(z > 0, z, fn.StopGradient(z))), 0),
    ),
    (
        "untaken_branches_guarded",
        lambda: fn.Minimum(sympy.exp(z), 1),
        lambda: fn.Where(
            sympy.LessThan(sympy.exp(z), 1, evaluate=False),
            sympy.exp(
                fn.Where(sympy.LessThan(sympy.exp(z), 1, evaluate=False), z, fn.StopGradient(z))
            ),
            1,
        ),
    ),
    (  # a value that reads other elements under the condition: its exp's argument gated
        "untaken_branches_guarded",
        lambda: fn.Where(z > 0, sympy.exp(fn.ReduceSum(z, CLASS) - z), 0),
        lambda: fn.Where(
            z > 0,
            sympy.exp(
                fn.Where(
                    z > 0,
                    fn.ReduceSum(z, CLASS) - z,
                    fn.StopGradient(fn.ReduceSum(z, CLASS) - z),
                )
            ),
            0,
        ),
    ),
    (
        "factors_outside_sums",
        lambda: fn.ReduceSum(w * t * z, CLASS),
        lambda: w * fn.ReduceSum(t * z, CLASS),
    ),
    (
        "factors_outside_sums",
        lambda: fn.ReduceMean(-k * t * z, CLASS),
        lambda: -k * fn.ReduceMean(t * z, CLASS),
    ),
    (
        "factors_outside_sums",
        lambda: fn.ReduceSum(-t * z - fn.Softplus(z), CLASS),
        lambda: -fn.ReduceSum(t * z + fn.Softplus(z), CLASS),
    ),
    (  # a number and a per-sample value out of a mean over the classes
        "terms_outside_sums",
        lambda: fn.ReduceMean(t * z - 1 + sympy.log(w), CLASS),
        lambda: fn.ReduceMean(t * z, CLASS) - 1 + sympy.log(w),
    ),
    (  # a sum counts the term once per element; the factors left inside go out too
        "terms_outside_sums",
        lambda: fn.ReduceSum(k * t * z + k, CLASS),
        lambda: k * fn.ReduceSum(t * z, CLASS) + k * fn.ReduceSum(sympy.S.One, CLASS),
    ),
    (  # the factor goes out, then the term of what stays inside
        "factors_outside_sums",
        lambda: fn.ReduceMean(k * (sympy.sqrt(1 + z**2) - 1), ALL),
        lambda: k * (fn.ReduceMean(sympy.sqrt(1 + z**2), ALL) - 1),
    ),
    (  # Tversky's gradient: two products and a sum, where four passes were
        "terms_by_array",
        lambda: t * w + (1 - t) * k,
        lambda: k + fn.Parenthesized(w - k) * t,
    ),
    (  # a select per sample, of the coefficients: one pass fewer again
        "terms_by_array",
        lambda: fn.Where(w > 1, t * w + (1 - t) * k, 0),
        lambda: fn.Where(w > 1, k, 0) + fn.Where(w > 1, fn.Parenthesized(w - k), 0) * t,
    ),
    (  # one log per sample, 0 for a label outside [0, C) as the one-hot row gives
        "functions_inside_takes",
        lambda: fn.TakeClass(sympy.log(z), label),
        lambda: fn.Where(
            sympy.And(label >= 0, label < fn.NUM_CLASSES),
            sympy.log(fn.TakeClass(z, label)),
            0,
        ),
    ),
    (
        "functions_inside_takes",
        lambda: fn.TakeClass(fn.Clip(z, EPS, 1 - EPS) ** k, label),
        lambda: fn.Where(
            sympy.And(label >= 0, label < fn.NUM_CLASSES),
            fn.Clip(fn.TakeClass(z, label), EPS, 1 - EPS) ** k,
            0,
        ),
    ),
    (  # the exponentials are the forward pass's, for the gradient to read
        "log_sum_exp_shared",
        lambda: fn.LogSumExp(k * z**2, ALL),
        lambda: (
            fn.LogSumExpShift(k * z**2, ALL)
            + fn.LogOfSum(sympy.exp(k * z**2 - fn.LogSumExpShift(k * z**2, ALL)), ALL)
        ),
    ),
    (
        "log_sum_exp_shared",
        lambda: fn.LogSumExp(z, CLASS),
        lambda: (
            fn.LogSumExpShift(z, CLASS)
            + fn.LogOfSum(sympy.exp(z - fn.LogSumExpShift(z, CLASS)), CLASS)
        ),
    ),
    (
        "classes_from",
        lambda: 1 - fn.CumSum(fn.OneHot(label)),
        lambda: 1 - fn.ClassesFrom(label),
    ),
    (  # a per-sample select of a whole-shaped product: one value per sample
        "factors_outside_selects",
        lambda: fn.Where(w > 1, t * sympy.log(w), 0),
        lambda: t * fn.Where(w > 1, sympy.log(w), 0),
    ),
    (
        "factors_outside_selects",
        lambda: fn.Where(w > 1, t * w, t * k),
        lambda: t * fn.Where(w > 1, w, k),
    ),
    (  # a softmax written exp(log_softmax(z)) is at most 1: it goes out too
        "factors_outside_selects",
        lambda: fn.Where(w > 1, sympy.exp(fn.LogSoftmax(t)) * w, 0),
        lambda: w * sympy.exp(fn.LogSoftmax(t)) * fn.Where(w > 1, 1, 0),
    ),
    (  # a last fusion: the body computes log_softmax(z) too
        "softmax_from_log_softmax",
        lambda: fn.ReduceSum(fn.Softmax(z) * fn.LogSoftmax(z), CLASS),
        lambda: fn.ReduceSum(sympy.exp(fn.LogSoftmax(z)) * fn.LogSoftmax(z), CLASS),
    ),
    (  # a last fusion: the body computes the ratio too (Itakura-Saito)
        "log_of_a_computed_product",
        lambda: t / z + sympy.log(z) - sympy.log(t),
        lambda: t / z - sympy.log(t / z, evaluate=False),
    ),
    (  # the sum of logs of a product the body computes
        "log_of_a_computed_product",
        lambda: t * z + 2 * sympy.log(z) + 2 * sympy.log(t) + sympy.log(w),
        lambda: t * z + 2 * sympy.log(t * z, evaluate=False) + sympy.log(w),
    ),
    (  # a last fusion: the body computes expm1 (LINEX's loss beside its gradient)
        "expm1_from_the_body",
        lambda: expm1(k * z) + z * (sympy.exp(k * z) - 1),
        lambda: expm1(k * z) + z * expm1(k * z, evaluate=False),
    ),
    (  # a last fusion: the body computes sum(z^2) and sum(y * z) (a softmax's gradient)
        "sum_of_known_sums",
        lambda: (
            fn.ReduceSum(z**2, CLASS)
            + fn.ReduceSum(y * z, CLASS)
            + fn.ReduceSum(z * (w * z - k * y), CLASS)
        ),
        lambda: (
            fn.ReduceSum(z**2, CLASS)
            + fn.ReduceSum(y * z, CLASS)
            + w * fn.ReduceSum(z**2, CLASS)
            - k * fn.ReduceSum(y * z, CLASS)
        ),
    ),
    (  # a term without the class role counts once per class
        "sum_of_known_sums",
        lambda: fn.ReduceSum(z, CLASS) * fn.ReduceSum(z + w, CLASS),
        lambda: fn.ReduceSum(z, CLASS) * (fn.ReduceSum(z, CLASS) + w * fn.ReduceSum(1, CLASS)),
    ),
    (  # a last fusion: the body computes the row sums too
        "sum_of_a_partial_sum",
        lambda: fn.ReduceSum(y * z, ALL) + fn.ReduceSum(fn.ReduceSum(y * z, CLASS) ** 2, ALL),
        lambda: (
            fn.ReduceSum(fn.ReduceSum(y * z, CLASS), fn.encode_roles(PER_ELEMENT))
            + fn.ReduceSum(fn.ReduceSum(y * z, CLASS) ** 2, ALL)
        ),
    ),
    (
        "sum_of_a_partial_sum",
        lambda: fn.ReduceMean(z, ALL) * fn.ReduceMean(z, CLASS),
        lambda: (
            fn.ReduceMean(fn.ReduceMean(z, CLASS), fn.encode_roles(PER_ELEMENT))
            * fn.ReduceMean(z, CLASS)
        ),
    ),
    (  # a last fusion: the body computes t * exp(z) too
        "product_of_a_partial_product",
        lambda: log1p(t * sympy.exp(z)) + k * t * z * sympy.exp(z),
        lambda: log1p(t * sympy.exp(z)) + k * z * fn.Parenthesized(t * sympy.exp(z)),
    ),
    (  # the negated product, which takes the product's sign
        "product_of_a_partial_product",
        lambda: log1p(-t * sympy.exp(z)) - 2 * t * z * sympy.exp(z),
        lambda: log1p(-t * sympy.exp(z)) + 2 * z * fn.Parenthesized(-t * sympy.exp(z)),
    ),
    (  # a partial product rewritten itself is read as it is rewritten, not computed twice
        "product_of_a_partial_product",
        lambda: (
            log1p(t * sympy.exp(z))
            + log1p(t * z * sympy.exp(z))
            + t * z * sympy.exp(z) * sympy.cos(z)
        ),
        lambda: (
            log1p(t * sympy.exp(z))
            + log1p(z * fn.Parenthesized(t * sympy.exp(z)))
            + sympy.cos(z) * fn.Parenthesized(z * fn.Parenthesized(t * sympy.exp(z)))
        ),
    ),
    (  # a last fusion: two channels of z, one split
        "channels_split",
        lambda: fn.Channel(z, 0) - fn.Channel(z, 1),
        lambda: (
            fn.ChannelFromSplit(fn.ChannelSplit(z, 1, 1), 0)
            - fn.ChannelFromSplit(fn.ChannelSplit(z, 1, 1), 1)
        ),
    ),
    (  # a gap between them, and a range to the end
        "channels_split",
        lambda: fn.Channel(z, 0) * fn.Channels(z, 2, sympy.oo),
        lambda: (
            fn.ChannelFromSplit(fn.ChannelSplit(z, 1, 1), 0)
            * fn.ChannelsFromSplit(fn.ChannelSplit(z, 1, 1), 2)
        ),
    ),
    (  # a last fusion: a ReLU's gradient, in one pass on TensorFlow
        "where_positive",
        lambda: fn.Where(z > 0, t * k, 0),
        lambda: fn.WherePositive(z, t * k),
    ),
    (
        "where_positive",
        lambda: fn.Where(sympy.StrictLessThan(0, z, evaluate=False), t, 0),
        lambda: fn.WherePositive(z, t),
    ),
    (  # a last fusion: the body computes z - t too, and SymPy multiplied 2 into the terms
        "terms_of_a_partial_sum",
        lambda: sympy.exp(z - t) * (2 * z - 2 * t - 2 * w),
        lambda: 2 * sympy.exp(z - t) * fn.Parenthesized(fn.Parenthesized(z - t) - w),
    ),
    (  # its negation, subtracted
        "terms_of_a_partial_sum",
        lambda: sympy.exp(t - z) * (2 * z - 2 * t - 2 * w),
        lambda: 2 * sympy.exp(t - z) * fn.Parenthesized(-fn.Parenthesized(t - z) - w),
    ),
    (  # a sigmoid's derivative times a g of its shape: one SigmoidGrad
        "sigmoid_derivatives",
        lambda: t * sympy.exp(z) * fn.Sigmoid(z) * (1 - fn.Sigmoid(z)),
        lambda: fn.SigmoidGradient(fn.Sigmoid(z), t * sympy.exp(z)),
    ),
    (  # s - 1 is the negated complement; a square of s gives one s to the derivative
        "sigmoid_derivatives",
        lambda: t * fn.Sigmoid(z) ** 2 * (fn.Sigmoid(z) - 1),
        lambda: -fn.SigmoidGradient(fn.Sigmoid(z), t * fn.Sigmoid(z)),
    ),
    (  # a tanh's derivative times a g of its shape: one TanhGrad
        "tanh_derivatives",
        lambda: t * z * (1 - sympy.tanh(z) ** 2),
        lambda: fn.TanhGradient(sympy.tanh(z), t * z),
    ),
    (  # the negated derivative, beside a power of the tanh
        "tanh_derivatives",
        lambda: t * sympy.tanh(z) ** 3 * (sympy.tanh(z) ** 2 - 1),
        lambda: -fn.TanhGradient(sympy.tanh(z), t * sympy.tanh(z) ** 3),
    ),
    (  # a clip's derivative read from the clip the body computes: one comparison
        "clip_masks_read_from_the_clip",
        lambda: fn.Clip(z, EPS, 1 - EPS) * fn.Where(sympy.And(z >= EPS, z <= 1 - EPS), t / z, 0),
        lambda: (
            fn.Clip(z, EPS, 1 - EPS)
            * fn.Where(sympy.Eq(fn.Clip(z, EPS, 1 - EPS), z, evaluate=False), t / z, 0)
        ),
    ),
    (  # a partial sum read with its own number taken out (the shrinkage loss's gradient)
        "terms_of_a_partial_sum",
        lambda: sympy.exp(z - t) * (k * w * sympy.exp(z) + 2 * z - 2 * t),
        lambda: sympy.exp(z - t) * (k * w * sympy.exp(z) + 2 * fn.Parenthesized(z - t)),
    ),
    (  # no partial sum: the number multiplied once
        "terms_of_a_partial_sum",
        lambda: sympy.exp(z) * (2 * z - 2 * t),
        lambda: 2 * sympy.exp(z) * fn.Parenthesized(z - t),
    ),
]

# expressions no fusion changes: the conditions each law states
UNCHANGED: list[Builder] = [
    lambda: fn.ReduceSum(t * fn.LogSoftmax(z), CLASS),  # t's rows need not sum to 1
    lambda: fn.ReduceSum((y + k / fn.NUM_CLASSES) * fn.LogSoftmax(z), CLASS),  # sums to 1 + k
    # sums to 1, but the fused node passes no gradient to labels that read y_pred
    lambda: fn.ReduceSum(
        (
            y * fn.Sigmoid(fn.ReduceSum(z, CLASS))
            + (1 - fn.Sigmoid(fn.ReduceSum(z, CLASS))) / fn.NUM_CLASSES
        )
        * fn.LogSoftmax(z),
        CLASS,
    ),
    lambda: t * fn.Softplus(-t) + (1 - t) * fn.Softplus(t),  # x does not depend on y_pred
    lambda: t * fn.Softplus(-z) + (1 - t) * fn.Softplus(2 * z),  # not one x
    lambda: sympy.log(fn.Clip(z, t, 1)),  # a bound that is no number
    lambda: fn.Where(sympy.Abs(z - t) <= 1, (z - t) ** 2, sympy.Abs(z - t) - 0.5),  # not Huber
    lambda: fn.Where(sympy.Abs(z - t) <= t, (z - t) ** 2 / 2, t * sympy.Abs(z - t) - t**2 / 2),
    lambda: fn.Where(z > 0, z**2, 0),  # a branch that cannot be non-finite
    lambda: fn.ReduceSum(t * z, CLASS),  # every factor has the class role
    lambda: fn.ReduceSum((e - fn.Other(e, 1)) ** 3, CLASS),  # no square
    lambda: fn.ReduceSum((e - fn.Other(e, 1) - fn.Other(e, 2)) ** 2, CLASS),  # two partners
    lambda: fn.ReduceSum((w - fn.Other(e, 1)) ** 2, CLASS),  # w is no row
    lambda: fn.ReduceSum(e * (e - fn.Other(e, 1)) ** 2, CLASS),  # a factor with classes
    lambda: fn.CumSum(t),  # no one-hot row
    lambda: fn.ReduceSum(t * z - fn.Softplus(z), CLASS),  # a term that is not negated
    lambda: fn.ReduceMean(t * z + t, CLASS),  # every term has the class role
    # an exp under a class sum: each element meets the other classes' conditions too
    lambda: fn.Maximum(fn.ReduceSum(sympy.exp(z), CLASS), t),
    lambda: fn.Where(w > 1, sympy.exp(t) * w, 0),  # a factor that can be infinite stays
    lambda: fn.Where(z > 0, t * w, 0),  # a whole-shaped condition: no smaller select
]


@pytest.mark.parametrize(("fusion", "before", "after"), FIXTURES)
def test_fusion_fixture(fusion: str, before: Builder, after: Builder) -> None:
    if fusion in {last.name for last in LAST_FUSIONS}:
        [fused], applied = fuse_last([before()], CONTEXT)
    elif fusion in {own.name for own in FUSIONS}:
        fused, applied = fuse(before(), CONTEXT)
    else:  # a fusion of a module with its own backward pass only
        fused, applied = fuse(before(), CONTEXT, OWN_BACKWARD_FUSIONS)
    assert fused == after()
    assert fusion in {step.rule for step in applied}


@pytest.mark.parametrize(
    "build",
    [
        lambda: fn.LogSumExp(w, CLASS),  # over a role x lacks: log(C) + w, no exp
        lambda: fn.LogSumExp(z + sympy.log(t), CLASS),  # SymPy makes exp(x - m) t exp(z - m)
    ],
)
def test_a_log_sum_exp_stays_outside_its_conditions(build: Builder) -> None:
    expr = build()
    assert fuse(expr, CONTEXT, OWN_BACKWARD_FUSIONS) == (expr, ())


@pytest.mark.parametrize("build", UNCHANGED)
def test_no_fusion_outside_its_conditions(build: Builder) -> None:
    expr = build()
    fused, applied = fuse(expr, CONTEXT)
    assert fused == expr
    assert applied == ()


def test_a_clip_used_outside_logs_is_no_clipped_log() -> None:
    clip = fn.Clip(z, EPS, 1 - EPS)
    expr = (1 - clip) ** 2 * sympy.log(clip)
    context = FusionContext(
        CONTEXT.rows_summing_to_one, CONTEXT.roles, z, clips_outside_logs([expr])
    )
    assert "clipped_log" not in {step.rule for step in fuse(expr, context)[1]}


# expressions no last fusion changes: nothing else in the body to read
LAST_UNCHANGED: list[Builder] = [
    lambda: fn.ReduceSum(fn.Softmax(z) * fn.LogSoftmax(2 * z), CLASS),  # other logits
    lambda: fn.ReduceSum(y * z, ALL) + fn.ReduceSum(y * z**2, CLASS),  # another operand
    lambda: fn.ReduceSum(y * z, ALL) + fn.ReduceMean(y * z, CLASS),  # a mean, not a sum
    lambda: fn.ReduceSum(w, ALL) + fn.ReduceSum(w, CLASS),  # w lacks the classes: a count
    # k * w is small: z times their product is as many passes as z times each
    lambda: sympy.log(k * w) + k * w * z,
    lambda: sympy.exp(t * z) + t * z,  # the product itself
    lambda: sympy.exp(z) * (z + 2 * t),  # no number common to the terms
    lambda: sympy.exp(z) * (2 * z + 4 * t),  # 2 * (z + 2 * t) takes as many passes
    lambda: fn.Where(z >= 0, t, 0),  # the tie of maximum(z, 0) goes to z
    lambda: fn.Where(z > 1, t, 0),
    lambda: fn.Where(z > 0, sympy.exp(t), 0),  # 0 * inf would be NaN
    lambda: fn.Where(z > 0, fn.ReduceMax(fn.Where(t > 0, z, -sympy.oo), CLASS), 0),
    lambda: fn.Where(z > 0, w, 0),  # a value of another shape
    lambda: 2 * fn.Channel(z, 1),  # one channel: a slice
    lambda: t * sympy.exp(z) + (1 - t) * w,  # t * exp(z), a product, is no array to read
    lambda: fn.Where(t > 1, t * w + k, 0),  # a condition on every element
    lambda: t * w + k * y,  # as many passes either way
    lambda: w * fn.Sigmoid(z) * (1 - fn.Sigmoid(z)),  # w per sample: SigmoidGrad broadcasts not
    lambda: t * fn.Sigmoid(z) * (1 - fn.Sigmoid(2 * z)),  # another sigmoid's complement
    lambda: k * (1 - sympy.tanh(z) ** 2),  # k is a scalar: TanhGrad broadcasts not
    lambda: fn.Where(sympy.And(z >= EPS, z <= 1 - EPS), t, 0),  # no clip in the body
    lambda: fn.Clip(z, k, w) * fn.Where(sympy.And(z >= k, z <= w), t, 0),  # k <= w unknown
    lambda: fn.Channel(z, 0) - fn.Channel(z, -1),  # counted from the end
    lambda: fn.Channels(z, 0, 2) * fn.Channel(z, 1),  # overlapping
    lambda: sympy.log(z) - sympy.log(t),  # no ratio computed: the logs stay apart
    lambda: fn.ReduceSum(z**2, CLASS) + fn.ReduceSum(z * (z - y), CLASS),  # sum(y z) unknown
    lambda: t / z + 2 * sympy.log(z) - sympy.log(t),  # logs of different weights
]


@pytest.mark.parametrize("build", LAST_UNCHANGED)
def test_no_last_fusion_without_what_it_reads(build: Builder) -> None:
    expr = build()
    assert fuse_last([expr], CONTEXT) == ([expr], ())


def test_a_body_with_both_computes_the_softmax_from_the_log_softmax() -> None:
    text = CE.replace("-sum(y * log_softmax(z))", "sum(softmax(z) * log_softmax(z))")
    symbolic = lower(check_source(read_source(text.encode(), "<fusions>")))
    for own_backward in (False, True):
        body = print_body(symbolic, own_backward=own_backward)
        assert "softmax_from_log_softmax" in body.target_rules
        module = write_module(symbolic.checked, symbolic, body)
        assert "tf.nn.log_softmax(" in module and "tf.nn.softmax(" not in module
    assert "softmax_from_log_softmax" in print_body(symbolic, target="torch").target_rules


def test_a_module_xla_compiles_keeps_its_softmax() -> None:
    """XLA fuses the softmax's passes with the log_softmax's itself (COMPILED_LAST_FUSIONS)."""
    text = CE.replace("-sum(y * log_softmax(z))", "sum(softmax(z) * log_softmax(z))")
    symbolic = lower(check_source(read_source(text.encode(), "<fusions>")))
    for body in (print_body(symbolic, jit_compile=True), print_body(symbolic, target="jax")):
        assert "softmax_from_log_softmax" not in body.target_rules


def test_channels_are_split_once_on_tensorflow_without_xla() -> None:
    """One tf.split for the Gaussian NLL's two channels of y_pred; XLA fuses slices into
    their readers, and PyTorch's slices are views (`Fusion.form`)."""
    spec = Path(__file__).parent.parent / "examples" / "gaussian_nll.loss"
    symbolic = lower(check_source(read_source(spec.read_bytes(), spec.name)))
    body = print_body(symbolic)
    assert "channels_split" in body.target_rules
    # p[0] and p[1], once each, though the value and the gradient both read them
    assert [step.rule for step in body.fusions].count("channels_split") == 2
    assert body.backward is not None
    code = "\n".join(body.backward.forward)
    assert code.count("tf.split(") == 1 and "p[..., " not in code
    assert "channels_split" not in print_body(symbolic, jit_compile=True).target_rules
    assert "channels_split" not in print_body(symbolic, target="torch").target_rules


def test_every_fusion_has_a_fixture_and_a_law() -> None:
    assert {fusion for fusion, _, _ in FIXTURES} == set(FUSIONS_BY_NAME)
    for fusion in FUSIONS + LAST_FUSIONS:
        assert " = " in fusion.law.split("\n\n")[0]


# ---------------------------------------------------------------- XLA spellings

# (spelling that must apply, node); the printer writes the node as the spelling's helper
SPELLINGS: list[tuple[str, Builder]] = [
    ("xla_sum_over_classes", lambda: fn.ReduceSum(t * z, CLASS)),
    ("xla_sum_over_classes", lambda: fn.ReduceSum(y * fn.Softmax(z), CLASS)),
    ("xla_mean_over_classes", lambda: fn.ReduceMean(z, CLASS)),
    ("xla_class_of", lambda: fn.ClassId(y)),
    ("xla_softmax_cross_entropy", lambda: fn.SoftmaxCrossEntropy(y, z)),
    ("xla_log1p", lambda: log1p(-z)),
]

NOT_SPELLED: list[Builder] = [
    lambda: fn.ReduceSum(z, ALL),  # over more axes than the classes
    lambda: fn.ReduceSum(w, CLASS),  # w has no class axis: a count, no sum
    lambda: fn.ReduceMax(z, CLASS),
    lambda: fn.ClassId(label),  # a label is its class
    lambda: log1p(k),  # no array
]


@pytest.mark.parametrize(("spelling", "build"), SPELLINGS)
def test_spelling_fixture(spelling: str, build: Builder) -> None:
    found = xla_spelling(build(), CONTEXT)
    assert found is not None and found.name == spelling


@pytest.mark.parametrize("build", NOT_SPELLED)
def test_no_spelling_outside_its_conditions(build: Builder) -> None:
    assert xla_spelling(build(), CONTEXT) is None


def test_every_spelling_has_a_fixture_a_law_and_a_helper() -> None:
    assert {spelling for spelling, _ in SPELLINGS} == set(XLA_SPELLINGS_BY_NAME)
    for spelling in XLA_SPELLINGS:
        assert " = " in spelling.law.split("\n\n")[0]
        assert spelling.helper in spelling.law


# ---------------------------------------------------------------- records


def body_of(text: str, jit_compile: bool) -> FunctionBody:
    symbolic = lower(check_source(read_source(text.encode(), "<fusions>")))
    return print_body(symbolic, jit_compile=jit_compile, own_backward=False)


CE = "input y: onehot\ninput z: logits\nloss ce = mean(-sum(y * log_softmax(z)))\n"


def test_the_body_records_fusions_and_spellings_that_fired() -> None:
    plain = body_of(CE, jit_compile=False)
    assert plain.target_rules == ("softmax_cross_entropy",)
    assert plain.spellings == ()
    xla = body_of(CE, jit_compile=True)
    assert xla.target_rules == ("softmax_cross_entropy", "xla_softmax_cross_entropy")
    assert "_softmax_cross_entropy(" in xla.result


def test_a_backward_pass_reads_the_forward_pass_s_product() -> None:
    """The Student-t NLL's gradient with respect to the log-scale multiplies the value's
    e^2 * exp(-2 s) / nu again, where it can read it (`product_of_a_partial_product`)."""
    spec = Path(__file__).parent.parent / "examples" / "student_t_nll.loss"
    symbolic = lower(check_source(read_source(spec.read_bytes(), spec.name)))
    body = print_body(symbolic)
    assert "product_of_a_partial_product" in body.target_rules
    assert body.backward is not None
    [product] = [line.split(" = ")[0] for line in body.backward.forward if "square(" in line]
    backward = " ".join([*body.backward.statements, body.backward.gradient])
    # 1 / (1 + product), and the log-scale's gradient, which multiplied its factors again
    assert re.findall(rf"\b{product}\b", backward) == [product] * 2


def test_the_module_docstring_lists_the_target_rules() -> None:
    symbolic = lower(check_source(read_source(CE.encode(), "<fusions>")))
    body = print_body(symbolic, jit_compile=True)
    module = write_module(symbolic.checked, symbolic, body, jit_compile=True)
    assert "Target fusions applied: softmax_cross_entropy, xla_softmax_cross_entropy." in module


def test_the_module_docstring_lists_the_mean_function_s_rules_too() -> None:
    """Taylor CE's mean over everything sums its row sums (`sum_of_a_partial_sum`), which
    only the mean function's body meets."""
    text = (
        "input y: onehot\ninput p: prob\nlet pt = sum(y * p)\n"
        "loss t = mean(1 - pt + square(1 - pt))\n"
    )
    source = generate(read_source(text.encode(), "<fusions>")).python_source
    assert "def t_mean(" in source
    [applied] = [line for line in source.splitlines() if "Target fusions applied" in line]
    assert "sum_of_a_partial_sum" in applied
