"""Conditions (LANGUAGE.md 6.3): comparisons joined by `and`, `or`, `not`, end to end."""

from __future__ import annotations

import numpy as np
import pytest
from tolerances import ulps

from lossdsl import nodes
from lossdsl.compiler import CompiledLoss, compile_source, generate
from lossdsl.diagnostics import LossSpecError
from lossdsl.parser import parse
from lossdsl.source import SourceFile
from lossdsl.symbolic.display import spec_text
from lossdsl.unparse import unparse_expr

THRESHOLDED = """\
# A thresholded loss on the true class's probability, two labels masked out.
input y: label
input z: logits
mask not (y == -1 or y == -2)
let p = softmax(z)[y]
loss = mean(where(p > 0.5 and y == 1, 1 - p, 2 * (1 - p)))
"""

LABELS = np.array([[1, -1, 0], [1, -2, 2], [1, 0, 1]])
LOGITS = np.array(
    [
        [[0.1, 3.0, -1.0], [0.5, 0.2, 0.3], [2.0, -0.5, 0.1]],
        [[0.3, -2.0, 0.4], [1.0, 1.0, 1.0], [-1.0, 0.5, 2.5]],
        [[-0.2, 0.9, 0.7], [0.0, 0.0, 4.0], [1.5, 2.5, -3.0]],
    ]
)


def condition_of(line: str) -> nodes.Expr:
    spec = parse(SourceFile.from_text(f"input y: label\ninput p: prob\n{line}\nloss = mean(p)\n"))
    mask = next(s for s in spec.statements if isinstance(s, nodes.MaskDecl))
    return mask.condition


def shape(expr: nodes.Expr) -> object:
    """The tree without spans: ("or", [...]) for a condition, `a < b` text for a comparison."""
    if isinstance(expr, nodes.Logic):
        return (expr.op, [shape(operand) for operand in expr.operands])
    return unparse_expr(expr)


def test_or_binds_loosest_then_and_then_not_then_comparisons() -> None:
    assert shape(condition_of("mask not a < b and c > d or e == f")) == (
        "or",
        [("and", [("not", ["a < b"]), "c > d"]), "e == f"],
    )


def test_brackets_and_flat_chains() -> None:
    assert shape(condition_of("mask a < b and (c > d or not e == f) and g != h")) == (
        "and",
        ["a < b", ("or", ["c > d", ("not", ["e == f"])]), "g != h"],
    )


@pytest.mark.parametrize(
    "text",
    [
        "not a < b and c > d or e == f",
        "not (y == -1 or y == -2)",
        "a < b and (c > d or e == f)",
        "not not a < b",
    ],
)
def test_unparse_gives_back_the_text(text: str) -> None:
    assert unparse_expr(condition_of(f"mask {text}")) == text


def test_a_condition_has_the_roles_of_its_comparisons() -> None:
    checked = generate(SourceFile.from_text(THRESHOLDED)).checked
    assert checked.mask is not None
    assert {role.value for role in checked.mask.roles} == {"batch", "spatial"}


@pytest.fixture(scope="module")
def thresholded() -> CompiledLoss:
    return compile_source(SourceFile.from_text(THRESHOLDED), verify=True)


def test_the_generated_code_and_explain_spell_the_conditions(thresholded: CompiledLoss) -> None:
    source = thresholded.python_source
    assert "tf.math.logical_and(tf.math.equal(y, 1), tf.math.greater(" in source
    assert "tf.math.logical_or(tf.math.equal(y, -2), tf.math.equal(y, -1))" in source
    assert "tf.math.logical_not(" in source
    symbolic = thresholded.symbolic
    assert symbolic.mask is not None
    assert spec_text(symbolic.mask, symbolic.roles) == "not (y == -2 or y == -1)"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_agree_with_numpy(thresholded: CompiledLoss, dtype: type[np.floating]) -> None:
    logits = LOGITS.astype(dtype)
    values = thresholded.per_sample_function(LABELS, logits).numpy()
    assert values.dtype == dtype

    exp = np.exp(LOGITS - LOGITS.max(-1, keepdims=True))
    softmax = exp / exp.sum(-1, keepdims=True)
    p = np.take_along_axis(softmax, np.maximum(LABELS, 0)[..., None], -1)[..., 0]
    chosen = (p > 0.5) & (LABELS == 1)
    kept = ~((LABELS == -1) | (LABELS == -2))
    expected = np.where(kept, np.where(chosen, 1 - p, 2 * (1 - p)), 0.0)
    assert chosen[kept].any() and not chosen[kept].all()  # both branches are exercised
    np.testing.assert_allclose(values, expected, rtol=ulps(dtype, 64), atol=ulps(dtype, 64))

    loss = thresholded.loss_class(dtype=np.dtype(dtype).name)
    mean = float(loss(LABELS, logits))
    np.testing.assert_allclose(mean, expected[kept].mean(), rtol=ulps(dtype, 64))


def test_the_analysis_searches_where_an_or_selects_a_branch() -> None:
    spec = "input y: target\ninput p: real\nloss = mean(where(p > 0 or p < -1, log(p), 0) - y)\n"
    with pytest.raises(LossSpecError) as raised:
        generate(SourceFile.from_text(spec))
    (diagnostic,) = raised.value.diagnostics
    assert diagnostic.code == "E402"
    assert "at p = -2" in diagnostic.message


def test_the_analysis_knows_an_and_leaves_a_branch_untaken() -> None:
    spec = "input y: target\ninput p: real\nloss = mean(where(p > 0 and not p > 4, sqrt(p), 0))\n"
    warnings = generate(SourceFile.from_text(spec)).diagnostics
    assert [w.code for w in warnings] == ["W407"]
    assert "not selected there" in warnings[0].message
