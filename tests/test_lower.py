"""Lowering checked specs to SymPy: symbols, numbers, built-ins, lets, masks, gradients."""

from __future__ import annotations

import pytest
import sympy

from lossdsl.compiler import check_source
from lossdsl.source import SourceFile
from lossdsl.symbolic import functions as fn
from lossdsl.symbolic import lower as lowering
from lossdsl.symbolic.gradient import latex
from lossdsl.symbolic.loss import SymbolicLoss
from lossdsl.symbolic.lower import lower
from lossdsl.typed import ALL_ROLES, CLASS_ONLY, NO_ROLES, PER_ELEMENT


def lowered(text: str, with_gradient: bool = False) -> SymbolicLoss:
    return lower(check_source(SourceFile.from_text(text)), with_gradient=with_gradient)


def test_symbols_carry_the_assumptions_of_kinds_and_domains() -> None:
    symbolic = lowered(
        "input y: label\ninput p: prob\nparam a: positive = 1.0\nparam b: (-inf, 0] = -1.0\n"
        "param w: nonneg = [1.0, 2.0]\nloss = mean(-sum(onehot(y) * log(clip(p))) * a - b)\n"
    )
    y, p, a, b, w = (symbolic.symbols[name] for name in ("y", "p", "a", "b", "w"))
    assert y.is_integer and y.is_nonnegative is None
    assert p.is_real and p.is_nonnegative
    assert a.is_positive and b.is_nonpositive and w.is_nonnegative
    assert symbolic.roles == {y: PER_ELEMENT, p: ALL_ROLES, a: NO_ROLES, b: NO_ROLES, w: CLASS_ONLY}


@pytest.mark.parametrize(
    ("value", "exact"),
    [(0.25, sympy.Rational(1, 4)), (1e-7, sympy.Rational(1, 10**7)), (2.0, sympy.Integer(2))],
)
def test_literals_become_exact_numbers(value: float, exact: sympy.Rational) -> None:
    assert lowering.number(value) == exact


def test_lets_are_lowered_once(monkeypatch: pytest.MonkeyPatch) -> None:
    lowered_nodes: list[object] = []
    original = lowering._Lowering._lower

    def counting(self: lowering._Lowering, node: object) -> sympy.Basic:
        lowered_nodes.append(node)
        return original(self, node)  # type: ignore[arg-type]

    monkeypatch.setattr(lowering._Lowering, "_lower", counting)
    lowered("input y: target\ninput p: real\nlet d = exp(p - y)\nloss = mean(d * d + d)\n")
    assert len(lowered_nodes) == len({id(node) for node in lowered_nodes})


def test_calls_masks_and_class_ids() -> None:
    symbolic = lowered(
        "input y: label\ninput z: logits\nmask y != -1\n"
        "loss = mean(-sum(onehot(y) * log_softmax(z)))\n"
    )
    y, z = symbolic.symbols["y"], symbolic.symbols["z"]
    assert symbolic.mask == sympy.Ne(y, -1, evaluate=False)
    assert symbolic.result == -fn.TakeClass(fn.LogSoftmax(z), y)
    assert [step.rule for step in symbolic.rewrites] == ["gather_of_onehot_sum"]
    onehot = lowered(
        "input y: onehot\ninput p: prob\nparam w = [1, 2]\nloss = mean(w[class(y)] * sum(y * p))\n"
    )
    assert onehot.result.has(fn.Gather(onehot.symbols["w"], fn.ClassId(onehot.symbols["y"])))


def test_reductions_remove_roles_the_argument_has() -> None:
    symbolic = lowered(
        "input y: binary\ninput p: prob\nloss = 1 - sum(y * p, axis=all) / sum(p, axis=all)\n"
    )
    p, y = symbolic.symbols["p"], symbolic.symbols["y"]
    all_roles = fn.encode_roles(ALL_ROLES)
    total = fn.ReduceSum(p, all_roles)
    assert symbolic.result == (total - fn.ReduceSum(p * y, all_roles)) / total  # one_minus_ratio
    per_sample = lowered(
        "input y: target\ninput p: real\nloss = mean(mean(square(p - y)), axis=all)"
    )
    assert per_sample.loss.args[1] == fn.encode_roles(frozenset({fn.Role.BATCH, fn.Role.SPATIAL}))


def test_num_classes_is_one_symbol() -> None:
    symbolic = lowered("input y: onehot\ninput p: prob\nloss = mean(sum(p) / num_classes)\n")
    assert fn.NUM_CLASSES in symbolic.result.free_symbols


def test_gradient_of_sparse_cross_entropy_is_softmax_minus_onehot() -> None:
    text = "input y: label\ninput z: logits\nloss = mean(-sum(onehot(y) * log_softmax(z)))\n"
    y_z = lowered(text, with_gradient=True)
    y, z = y_z.symbols["y"], y_z.symbols["z"]
    expected = fn.ReduceSum(fn.OneHot(y), fn.CLASS_MASK) * fn.Softmax(z) - fn.OneHot(y)
    assert y_z.gradient == expected
    assert isinstance(lowered(text).gradient, sympy.Derivative)


def test_gradient_of_binary_logits_and_means() -> None:
    symbolic = lowered(
        "input y: binary\ninput z: logits\n"
        "loss = mean(-y * log(sigmoid(z)) - (1 - y) * log(1 - sigmoid(z)))\n",
        with_gradient=True,
    )
    y, z = symbolic.symbols["y"], symbolic.symbols["z"]
    exact = (-y * fn.Sigmoid(-z) + (1 - y) * fn.Sigmoid(z)) / fn.NUM_CLASSES
    point = {y: sympy.Rational(1, 3), z: sympy.Rational(7, 5), fn.NUM_CLASSES: 3}
    value = fn.expand_definitions(symbolic.gradient - exact).subs(point)
    assert abs(float(value)) < 1e-15


def test_latex_uses_readable_names() -> None:
    symbolic = lowered(
        "input y: label\ninput z: logits\nparam w = [1, 2]\n"
        "loss = mean(-w[class(y)] * sum(onehot(y) * log_softmax(z)) "
        "+ sum(sigmoid(z) + softplus(z)))\n"
    )
    text = latex(symbolic.result)
    for fragment in (
        r"\operatorname{log\_softmax}",
        r"\sigma",
        r"\operatorname{softplus}",
        r"\sum_{c}",
        "{w}_{y}",
        r"_{c = y}",
    ):
        assert fragment in text


@pytest.mark.parametrize(
    ("condition", "folded"),
    [
        ("2 >= 2", sympy.true),
        ("1 > 2", sympy.false),
        ("not 1 > 2", sympy.true),
        ("2 >= 2 and p > 0.5", sympy.StrictGreaterThan(sympy.Symbol("p"), sympy.Rational(1, 2))),
        ("1 > 2 or p > 0.5", sympy.StrictGreaterThan(sympy.Symbol("p"), sympy.Rational(1, 2))),
        ("1 > 2 and p > 0.5", sympy.false),
    ],
)
def test_a_comparison_of_numbers_is_a_truth_value(condition: str, folded: sympy.Basic) -> None:
    symbolic = lowered(f"input y: target\ninput p: real\nloss = mean(where({condition}, p, y))\n")
    p, y = sympy.Symbol("p", real=True), sympy.Symbol("y", real=True)
    assert (symbolic.symbols["p"], symbolic.symbols["y"]) == (p, y)
    assert symbolic.result.args[0] == fn.Where(folded.subs(sympy.Symbol("p"), p), p, y)


def test_a_comparison_of_an_input_with_itself_stays_as_written() -> None:
    """`x == x` is False at NaN: only numbers fold."""
    symbolic = lowered("input y: target\ninput p: real\nloss = mean(where(p == p, p, y))\n")
    p = symbolic.symbols["p"]
    assert sympy.Eq(p, p, evaluate=False) in sympy.preorder_traversal(symbolic.result)


def test_a_rational_power_with_a_huge_numerator_is_a_float() -> None:
    """SymPy raises a rational to p/q exactly through its p-th power: minutes for 0.99 to
    the 2000000/1000001. Past EXACT_POWER_LIMIT such a power is a 30-digit float; small
    exponents stay exact."""
    huge = lowering.power(sympy.Rational(99, 100), sympy.Rational(2000000, 1000001))
    assert isinstance(huge, sympy.Float)
    assert float(huge) == pytest.approx(0.99 ** (2000000 / 1000001), rel=1e-15)
    assert lowering.power(sympy.Integer(4), sympy.Rational(1, 2)) == 2
    assert lowering.power(sympy.Integer(2), sympy.Rational(1, 2)) == sympy.sqrt(2)
    assert lowering.power(sympy.Rational(1, 2), sympy.Integer(3000)) == sympy.Rational(1, 2**3000)
