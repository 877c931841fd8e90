"""The SymPy vocabulary: derivatives, definitions, role bookkeeping."""

from __future__ import annotations

import pytest
import sympy

from lossdsl.symbolic import functions as fn
from lossdsl.typed import ALL_ROLES, CLASS_ONLY, NO_ROLES, PER_ELEMENT, PER_SAMPLE, Role

x = sympy.Symbol("x", real=True)
a = sympy.Symbol("a", real=True)
b = sympy.Symbol("b", real=True)
y = sympy.Symbol("y", integer=True)
t = sympy.Symbol("t", real=True)
w = sympy.Symbol("w", real=True)

ELEMENTWISE_DEFINITIONS = [
    (fn.Sigmoid(x), 1 / (1 + sympy.exp(-x))),
    (fn.Softplus(x), sympy.log(1 + sympy.exp(x))),
    (fn.Relu(x), sympy.Max(x, 0)),
    (fn.LogCosh(x), sympy.log(sympy.cosh(x))),
    (fn.StopGradient(x), x),
    (fn.Clip(x, a, b), sympy.Min(sympy.Max(x, a), b)),
    (fn.Minimum(x, a), sympy.Min(x, a)),
    (fn.Maximum(x, a), sympy.Max(x, a)),
    (fn.Where(x > a, x, b), sympy.Piecewise((x, x > a), (b, True))),
]


@pytest.mark.parametrize(("expr", "meaning"), ELEMENTWISE_DEFINITIONS)
def test_definition_is_the_plain_meaning(expr: sympy.Expr, meaning: sympy.Expr) -> None:
    assert expr.definition() == meaning


@pytest.mark.parametrize(
    ("expr", "meaning"),
    [pair for pair in ELEMENTWISE_DEFINITIONS if not isinstance(pair[0], fn.StopGradient)],
)
def test_derivative_agrees_with_the_definition_away_from_kinks(
    expr: sympy.Expr, meaning: sympy.Expr
) -> None:
    points = (
        {x: 0.3, a: -0.7, b: 1.9},
        {x: -1.3, a: 0.2, b: 0.9},
        {x: 2.5, a: 0.2, b: 0.9},
        {x: 0.5, a: 0.9, b: 0.2},  # a clip with reversed bounds is b: derivative 0
    )
    for point in points:
        ours = fn.expand_definitions(expr.diff(x)).subs(point)
        exact = meaning.diff(x).subs(point)
        assert float(ours) == pytest.approx(float(exact), rel=1e-12, abs=1e-12)


def test_derivatives_are_written_in_the_vocabulary() -> None:
    assert fn.Sigmoid(x).diff(x) == fn.Sigmoid(x) * (1 - fn.Sigmoid(x))
    assert fn.Softplus(x).diff(x) == fn.Sigmoid(x)
    assert fn.LogCosh(x).diff(x) == sympy.tanh(x)
    assert fn.StopGradient(x**2).diff(x) == 0
    assert fn.Relu(x).diff(x) == fn.Where(x > 0, 1, 0)
    assert fn.Clip(x, a, b).diff(x) == fn.Where(sympy.And(x >= a, fn.Maximum(x, a) <= b), 1, 0)
    low, high = sympy.Rational(1, 10), sympy.Rational(9, 10)
    assert fn.Clip(x, low, high).diff(x) == fn.Where(sympy.And(x >= low, x <= high), 1, 0)
    assert fn.Where(x > 0, x**2, -x).diff(x) == fn.Where(x > 0, 2 * x, -1)


def test_tie_rules_follow_tensorflow() -> None:
    # tf.maximum gives the gradient to its first argument on a tie, tf.minimum too.
    assert fn.Maximum(x, a).diff(x).subs({x: 1, a: 1}) == 1
    assert fn.Maximum(x, a).diff(a).subs({x: 1, a: 1}) == 0
    assert fn.Minimum(x, a).diff(x).subs({x: 1, a: 1}) == 1
    assert fn.Minimum(x, a).diff(a).subs({x: 1, a: 1}) == 0


def test_opaque_functions_do_not_expand_under_simplify() -> None:
    expr = sympy.log(fn.Sigmoid(x)) + fn.Softplus(x)
    assert sympy.simplify(expr).has(fn.Sigmoid, fn.Softplus)
    assert fn.Sigmoid(x).is_positive and fn.Softplus(x).is_positive
    assert fn.Relu(x).is_nonnegative and fn.LogCosh(x).is_nonnegative


def test_numeric_evaluation_uses_the_definition() -> None:
    assert float(fn.Sigmoid(2).evalf()) == pytest.approx(0.8807970779778823)
    assert float(fn.Softplus(sympy.Rational(1, 2)).evalf()) == pytest.approx(0.9740769841801067)


def test_class_axis_and_reduction_definitions_reach_the_primitives() -> None:
    z = x
    assert fn.expand_definitions(fn.LogSoftmax(z)) == z - sympy.log(
        fn.ReduceSum(sympy.exp(z), fn.CLASS_MASK)
    )
    assert fn.expand_definitions(fn.TakeClass(x, y)) == fn.ReduceSum(
        fn.OneHot(y) * x, fn.CLASS_MASK
    )
    assert fn.expand_definitions(fn.SoftmaxCrossEntropy(t, x)) == -fn.ReduceSum(
        t * fn.expand_definitions(fn.LogSoftmax(x)), fn.CLASS_MASK
    )
    assert fn.SparseSoftmaxCrossEntropy(x, y).definition() == -fn.TakeClass(fn.LogSoftmax(x), y)
    for primitive in (fn.ReduceSum(x, 4), fn.OneHot(y), fn.Gather(w, y)):
        assert fn.expand_definitions(primitive) == primitive


def test_class_id_of_a_label_is_the_label() -> None:
    assert fn.ClassId(y) == y
    assert isinstance(fn.ClassId(t), fn.ClassId)


def test_role_masks_round_trip() -> None:
    for roles in (NO_ROLES, CLASS_ONLY, PER_SAMPLE, PER_ELEMENT, ALL_ROLES):
        assert fn.decode_roles(fn.encode_roles(roles)) == roles
    assert fn.encode_roles(frozenset({Role.CLASS})) == 4
    assert fn.encode_roles(frozenset({Role.SPATIAL, Role.CLASS})) == 6


def test_roles_of() -> None:
    roles = {x: ALL_ROLES, t: ALL_ROLES, y: PER_ELEMENT, w: CLASS_ONLY}
    assert fn.roles_of(x * t + 1, roles) == ALL_ROLES
    assert fn.roles_of(fn.ReduceSum(x, 4), roles) == PER_ELEMENT
    assert fn.roles_of(fn.ReduceMean(fn.ReduceSum(x, 4), 2), roles) == PER_SAMPLE
    assert fn.roles_of(fn.LogSumExp(x, 7), roles) == NO_ROLES
    assert fn.roles_of(fn.Gather(w, y), roles) == PER_ELEMENT
    assert fn.roles_of(fn.ClassId(t), roles) == PER_ELEMENT
    assert fn.roles_of(fn.OneHot(y), roles) == ALL_ROLES
    assert fn.roles_of(fn.TakeClass(fn.LogSoftmax(x), y), roles) == PER_ELEMENT
    assert fn.roles_of(fn.TakeClass(w, y), roles) == PER_ELEMENT
    assert fn.roles_of(w * 2, roles) == CLASS_ONLY
    assert fn.roles_of(fn.SoftmaxCrossEntropy(t, x), roles) == PER_ELEMENT
    assert fn.roles_of(fn.SparseSoftmaxCrossEntropy(x, y), roles) == PER_ELEMENT
    assert fn.roles_of(fn.NUM_CLASSES, roles) == NO_ROLES


def test_a_select_inside_a_select_on_its_condition_is_its_taken_branch() -> None:
    assert fn.Where(x > a, fn.Where(x > a, x, b), 1) == fn.Where(x > a, x, 1)
    assert fn.Where(x > a, 1, fn.Where(x > a, x, b)) == fn.Where(x > a, 1, b)
    assert fn.Where(x > a, fn.Where(x > b, x, b), 1).args[1] == fn.Where(x > b, x, b)


def test_a_function_of_a_select_is_a_commutative_real_scalar() -> None:
    """A relational (a select's condition) has no commutativity in SymPy; the functions
    are scalars by declaration, so a product of one is real and its minimum differentiates."""
    lam = sympy.Symbol("lam", real=True)
    p = sympy.Symbol("p", real=True)
    tail = fn.Where(lam < 8, sympy.log(sympy.erfc(fn.Minimum(lam, 8))), lam + 1)
    product = p * fn.Maximum(sympy.erf(tail), p)
    assert tail.is_commutative and product.is_commutative and product.is_real is not False
    assert fn.Minimum(product, p).fdiff(1) == fn.Where(sympy.LessThan(product, p), 1, 0)
