"""The compiler's own backward pass: rule fixtures, coverage of the examples, and proof
that the verifier checks every backward pass it emits."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import sympy
import tensorflow as tf

from lossdsl.builtins import Sign
from lossdsl.codegen.printer import print_body
from lossdsl.codegen.targets import TARGETS
from lossdsl.compiler import check_source
from lossdsl.diagnostics import LossSpecError
from lossdsl.parser import read_source
from lossdsl.source import SourceFile
from lossdsl.symbolic import backward as backward_module
from lossdsl.symbolic import functions as fn
from lossdsl.symbolic.backward import NO_RULE, UPSTREAM, backward, count
from lossdsl.symbolic.lower import lower
from lossdsl.typed import ALL_ROLES, PER_ELEMENT, PER_SAMPLE, Role

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.loss"))


z = sympy.Symbol("z", real=True)  # y_pred
y = sympy.Symbol("y", real=True)  # y_true, every role
label = sympy.Symbol("label", integer=True)  # a label, per element
k = sympy.Symbol("k", positive=True)  # a scalar param
CLASS = fn.CLASS_MASK
ROLES = {z: ALL_ROLES, y: ALL_ROLES, label: PER_ELEMENT, k: frozenset()}


def roles_with_upstream(upstream_roles: frozenset[Role]) -> dict[sympy.Symbol, frozenset[Role]]:
    return {**ROLES, UPSTREAM: upstream_roles}


U = UPSTREAM


def y_like(node: sympy.Basic) -> sympy.Expr:
    """y_true broadcast to `node`'s classes, which are y_pred's (`in_the_shape_of`)."""
    return fn.IntoChannels(y, node, 0, sympy.oo)


Builder = Callable[[], sympy.Basic]

# (what it shows, the result, the roles of the upstream gradient, the expected gradient)
FIXTURES: list[tuple[str, Builder, frozenset[Role], Builder]] = [
    ("a sum broadcasts back", lambda: fn.ReduceSum(z, CLASS), PER_ELEMENT, lambda: U),
    (
        "a mean divides by what it averaged",
        lambda: fn.ReduceMean(z, CLASS),
        PER_ELEMENT,
        lambda: U * fn.InverseCount(CLASS),
    ),
    (
        "a sum over a role the operand lacks counts its copies",
        lambda: fn.ReduceSum(fn.ReduceSum(z, CLASS), CLASS),
        PER_ELEMENT,
        lambda: U * count(frozenset({Role.CLASS})),
    ),
    (
        "log_softmax: upstream - softmax * its sum, softmax as exp of the forward value; "
        "y_true's values summed over z's classes (its class axis may have size 1)",
        lambda: fn.ReduceSum(y * fn.LogSoftmax(z), CLASS),
        PER_ELEMENT,
        lambda: (
            U * y - sympy.exp(fn.LogSoftmax(z)) * fn.ReduceSum(U * y_like(fn.LogSoftmax(z)), CLASS)
        ),
    ),
    (
        "log_softmax: softmax is the forward's own; a sum of softmax is 1, its gradient 0",
        lambda: fn.ReduceSum(y * fn.LogSoftmax(z) + fn.Softmax(z), CLASS),
        PER_ELEMENT,
        lambda: U * y - fn.Softmax(z) * fn.ReduceSum(U * y_like(fn.LogSoftmax(z)), CLASS),
    ),
    (
        "a value of z's classes keeps them: softmax(z) * log_softmax(z) sums as it is",
        lambda: fn.ReduceSum(fn.Softmax(z) * fn.LogSoftmax(z), CLASS),
        PER_ELEMENT,
        lambda: (
            fn.Softmax(z)
            * (U * fn.LogSoftmax(z) - fn.ReduceSum(U * fn.LogSoftmax(z) * fn.Softmax(z), CLASS))
        ),
    ),
    (
        "a value broadcast over the classes passes their sum, over z's classes",
        lambda: fn.ReduceSum(y * (z - fn.ReduceMean(z, CLASS)), CLASS),
        PER_ELEMENT,
        lambda: (
            U * y
            - fn.ReduceSum(U * y_like(z - fn.ReduceMean(z, CLASS)), CLASS) * fn.InverseCount(CLASS)
        ),
    ),
    (
        "softmax reuses its forward value",
        lambda: fn.ReduceSum(y * fn.Softmax(z), CLASS),
        PER_ELEMENT,
        lambda: fn.Softmax(z) * (U * y - fn.ReduceSum(U * y * fn.Softmax(z), CLASS)),
    ),
    (
        "logsumexp weighs by exp(x - result)",
        lambda: fn.LogSumExp(z, CLASS),
        PER_ELEMENT,
        lambda: U * sympy.exp(z - fn.LogSumExp(z, CLASS)),
    ),
    (
        "Huber's derivative is a clip",
        lambda: fn.Huber(z - y, k),
        ALL_ROLES,
        lambda: U * fn.Clip(z - y, -k, k),
    ),
    (
        "the selector of a clip becomes a select of the product",
        lambda: sympy.log(fn.Clip(z, sympy.Rational(1, 10), 1)),
        ALL_ROLES,
        lambda: fn.Where(
            sympy.And(z >= sympy.Rational(1, 10), z <= 1),
            U / fn.Clip(z, sympy.Rational(1, 10), 1),
            0,
        ),
    ),
    (
        "a square root's derivative reuses it",
        lambda: sympy.sqrt(z**2 + k),
        ALL_ROLES,
        lambda: U * z / sympy.sqrt(z**2 + k),
    ),
    (
        "a power of a base at least a positive number reuses the power",
        lambda: (z**2 / sympy.Abs(k - 2) + 1) ** k,
        ALL_ROLES,
        lambda: (
            2
            * k
            * U
            * z
            * (z**2 / sympy.Abs(k - 2) + 1) ** k
            / (sympy.Abs(k - 2) * (z**2 / sympy.Abs(k - 2) + 1))
        ),
    ),
    (
        "a power of a base that may reach 0 takes the power less one, 0 where that is inf",
        lambda: (z**2 + y) ** k,
        ALL_ROLES,
        lambda: fn.Where(
            sympy.Or(z**2 + y > 0, k - 1 >= 0), 2 * k * U * z * (z**2 + y) ** (k - 1), sympy.S.Zero
        ),
    ),
    (
        "abs passes its sign",
        lambda: sympy.Abs(z),
        ALL_ROLES,
        lambda: U * Sign(z),
    ),
    (
        "a class gather passes a one-hot",
        lambda: fn.TakeClass(z, label),
        PER_ELEMENT,
        lambda: U * fn.OneHot(label),
    ),
    (
        "a softplus pair: b * sigmoid(x) - a * sigmoid(-x)",
        lambda: fn.SoftplusPair(y, k, z),
        ALL_ROLES,
        lambda: U * (k * fn.Sigmoid(z) - y * fn.Sigmoid(-z)),
    ),
    (
        "a channel selection puts the gradient back at its channel",
        lambda: sympy.exp(fn.Channel(z, 1)),
        PER_ELEMENT,
        lambda: fn.IntoChannels(U * sympy.exp(fn.Channel(z, 1)), z, 1, 2),
    ),
    (
        "several channel selections of one value are put back together",
        lambda: sympy.exp(fn.Channel(z, 0)) + 2 * fn.Channel(z, 1),
        PER_ELEMENT,
        lambda: fn.ChannelsJoined(z, U * sympy.exp(fn.Channel(z, 0)), 0, 1, 2 * U, 1, 2),
    ),
    (
        "a class id passes nothing",
        lambda: fn.Gather(sympy.Symbol("w"), fn.ClassId(z)),
        PER_ELEMENT,
        lambda: sympy.S.Zero,
    ),
    (
        "a per-sample upstream broadcasts over the sample's elements",
        lambda: fn.ReduceMean(z**2, fn.encode_roles(frozenset({Role.SPATIAL, Role.CLASS}))),
        PER_SAMPLE,
        lambda: 2 * U * z * fn.InverseCount(fn.encode_roles(frozenset({Role.SPATIAL, Role.CLASS}))),
    ),
]


@pytest.mark.parametrize(
    ("result", "upstream_roles", "expected"),
    [pytest.param(r, u, e, id=name) for name, r, u, e in FIXTURES],
)
def test_rule(result: Builder, upstream_roles: frozenset[Role], expected: Builder) -> None:
    gradient = backward(result(), z, roles_with_upstream(upstream_roles))
    assert gradient is not None
    assert sympy.expand(gradient - expected()) == 0


@pytest.mark.parametrize("node", NO_RULE, ids=lambda kind: kind.__name__)
def test_values_at_other_samples_or_positions_have_no_rule(node: type) -> None:
    result = {
        fn.Other: lambda: fn.ReduceSum(z * fn.Other(z, 1), CLASS),
        fn.PairDot: lambda: fn.PairDot(z, z, 1),
        fn.CumSum: lambda: fn.ReduceSum(fn.CumSum(z), CLASS),
    }[node]()
    assert backward(result, z, roles_with_upstream(PER_ELEMENT)) is None


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_every_example_has_its_own_backward_pass_unless_it_moves_values(
    path: Path, target: str
) -> None:
    """Only a y_pred that reaches `other` or `cumsum`, or (JAX, PyTorch) a fused node
    whose helper's gradient the target keeps, is left to the framework's autodiff."""
    symbolic = lower(check_source(read_source(path.read_bytes(), path.name)))
    y_pred = symbolic.symbols[symbolic.checked.y_pred.name]
    moves_values = any(node.has(y_pred) for node in symbolic.result.atoms(*NO_RULE))
    body = print_body(symbolic, target=target)
    kept = TARGETS[target].helper_gradients
    helpers_differentiate = any(
        type(node).__name__ in kept for step in body.fusions for node in fn.nodes_of([step.after])
    )
    assert (body.backward is None) == (moves_values or helpers_differentiate)


@pytest.mark.parametrize("target", list(TARGETS))
def test_the_verifier_checks_the_backward_pass(
    monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    """A wrong rule makes every loss that uses it fail verification (E902) on every
    target, so every backward pass that compiles was checked against the exact gradient."""
    import lossdsl

    pytest.importorskip({"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[target])
    right = backward_module._Backward.reduce_mean

    def doubled(self, node, index, adjoint):  # type: ignore[no-untyped-def]
        return 2 * right(self, node, index, adjoint)

    monkeypatch.setitem(backward_module._RULES, fn.ReduceMean, doubled)
    spec = "input y: target\ninput p: real\nloss l = mean(square(p - y))\n"
    with pytest.raises(LossSpecError) as failure:
        lossdsl.compile(spec, target=target)
    assert "E902" in str(failure.value)


def test_y_true_gets_no_gradient_and_a_tensor_param_its_own() -> None:
    """The documented choice: the loss's own backward pass differentiates y_pred, and
    the params given as tensors or tf.Variables (tests/test_learned_params.py)."""
    import tensorflow as tf

    import lossdsl

    compiled = lossdsl.compile(
        "input y: target\ninput p: real\nparam k: positive = 2.0\n"
        "loss l = mean(k * square(p - y))\n"
    )
    y_true = tf.constant(np.ones((2, 3), np.float32))
    y_pred = tf.constant(np.zeros((2, 3), np.float32))
    k = tf.constant(2.0)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([y_true, y_pred, k])
        value = tf.reduce_sum(compiled.per_sample_function(y_true, y_pred, k))
    gradients = tape.gradient(value, [y_true, y_pred, k])
    assert gradients[0] is None  # None, not a silent 0
    np.testing.assert_allclose(gradients[1].numpy(), -4.0 / 3.0 * np.ones((2, 3)), rtol=1e-6)
    np.testing.assert_allclose(gradients[2].numpy(), 2.0, rtol=1e-6)  # sum of means of 1


def test_a_mean_over_more_elements_than_float16_counts_keeps_its_gradient() -> None:
    """A mean over 90,000 elements in float16 (whose largest number is 65504): the count
    the backward pass divides by is taken in float32, so the gradient is not 0."""
    import tensorflow as tf

    import lossdsl

    spec = "input y: target\ninput p: real\nloss l = relu(mean(mean(square(p - y))))\n"
    compiled = lossdsl.compile(spec)  # per sample: relu keeps the means out of Keras's
    y_true = tf.zeros((1, 300, 300, 1), tf.float16)
    y_pred = tf.fill((1, 300, 300, 1), tf.constant(100.0, tf.float16))
    with tf.GradientTape() as tape:
        tape.watch(y_pred)
        value = tf.reduce_sum(compiled.per_sample_function(y_true, y_pred))
    gradient = tape.gradient(value, y_pred).numpy().astype(np.float64)
    np.testing.assert_allclose(gradient, 200.0 / 90_000, rtol=1e-2)


def test_the_factors_every_term_shares_and_smaller_than_the_sum_go_outside_it() -> None:
    """Poisson's mean(z - y * log(z)) passes upstream * InverseCount * (1 - y / z): one
    product by each small factor, not one per term; a shared whole-shaped factor (y)
    stays inside, where taking it out saves no pass."""
    roles = roles_with_upstream(PER_ELEMENT)
    poisson = backward(fn.ReduceMean(z - y * sympy.log(z), CLASS), z, roles)
    assert poisson == U * fn.InverseCount(CLASS) * (1 - y / z)
    shared_whole = backward(fn.ReduceMean(k * y * z + k * y * z**2, CLASS), z, roles)
    assert shared_whole == k * U * fn.InverseCount(CLASS) * (y + 2 * y * z)


def test_a_shared_power_by_a_param_is_taken_out_once() -> None:
    """The terms of (1 - d)^(1 / k)'s derivative share x^(1/k - 1), with x = 1 - d. Taken
    out by SymPy's division, x^(1/k - 1) * x^(1 - 1/k) stayed a product of two powers
    (SymPy merges exponents whose terms are the same), which every level took out again
    with doubled exponents: a RecursionError, E900, for a focal Dice loss."""
    x = sympy.Symbol("x", positive=True)  # a per-sample value
    shared = x ** (1 / k - 1)
    gradient = U * shared * y / k + U * shared * z / k

    def roles(expr: sympy.Basic) -> frozenset[Role]:
        return ALL_ROLES if expr.has(y, z) else PER_SAMPLE

    factored = backward_module.common_factors_outside(gradient, roles)
    assert sympy.simplify(factored - gradient) == 0
    assert factored.count(sympy.Pow) == gradient.count(sympy.Pow) // 2


def test_a_power_of_the_true_class_probability_meets_its_base() -> None:
    """d p_t^q / dz for p_t = softmax(z)[label] is q p_t^q (onehot - softmax): softmax
    times a one-hot row is the row times p_t, and a class sum of the row times softmax
    is p_t, so p_t^(q - 1) meets p_t. The chain rule as it came, q p_t^(q - 1) *
    softmax * (onehot - p_t), was infinity times 0 where p_t is 0 (an underflow, or a
    label outside [0, C)): E902 for a class-balanced generalized cross-entropy."""
    roles = roles_with_upstream(PER_ELEMENT)
    p_t = fn.TakeClass(fn.Softmax(z), label)
    gce = backward((1 - p_t ** sympy.Rational(7, 10)) * sympy.Rational(10, 7), z, roles)
    assert gce == U * (fn.Softmax(z) - fn.OneHot(label)) * p_t ** sympy.Rational(7, 10)
    summed = fn.ReduceSum(fn.OneHot(label) * fn.Softmax(z), CLASS)
    root = backward(sympy.sqrt(summed), z, roles)
    assert sympy.expand(root - U * (fn.OneHot(label) - fn.Softmax(z)) * sympy.sqrt(p_t) / 2) == 0


def test_the_values_put_back_at_channels_take_their_shared_factors_outside() -> None:
    """c0 * exp(-c1) + c1 passes upstream * (1 - c0 * exp(-c1)) back to channel 1, one
    product by upstream, not upstream - upstream * c0 * exp(-c1): the channel losses'
    gradients (gaussian_nll's, gaussian_crps') are values put back at channels."""
    c0, c1 = fn.Channel(z, 0), fn.Channel(z, 1)
    gradient = backward(c0 * sympy.exp(-c1) + c1, z, roles_with_upstream(PER_ELEMENT))
    assert gradient == fn.ChannelsJoined(
        z, U * sympy.exp(-c1), 0, 1, U * (1 - c0 * sympy.exp(-c1)), 1, 2
    )
    single = backward(c1 - c1 * sympy.exp(-c1), z, roles_with_upstream(PER_ELEMENT))
    assert single == fn.IntoChannels(U * (1 - sympy.exp(-c1) + c1 * sympy.exp(-c1)), z, 1, 2)


def test_a_factor_that_terms_of_a_sum_divide_by_is_taken_into_them() -> None:
    """softmax passes sqrt(s)'s adjoint, a / sqrt(s), as a sqrt(s) - s * sum(...): no
    quotient by s, which is 0 in floating point far below the largest logit (0 / 0)."""
    s = fn.Softmax(z)
    result = fn.ReduceSum(y * sympy.sqrt(s), CLASS)
    gradient = backward(result, z, roles_with_upstream(PER_ELEMENT))
    assert gradient is not None
    half = U * y * sympy.sqrt(s) / 2
    assert sympy.expand(gradient - (half - s * fn.ReduceSum(half, CLASS))) == 0
    divisions = [
        node
        for node in sympy.preorder_traversal(gradient)
        if isinstance(node, sympy.Pow) and node.base == s and node.exp.is_negative
    ]
    assert divisions == [], gradient


def test_quotient_rule_terms_cancel_over_their_common_denominator() -> None:
    """2 r / (r + 4), r = z^2 (Geman-McClure's), passes upstream * 16 z / (z^2 + 4)^2:
    the quotient rule's 2 / (r + 4) - 2 r / (r + 4)^2 over (r + 4)^2 cancels to 8.
    Where the numerator would not cancel, or the powers are more than one apart, the
    terms stay as they are."""
    roles = roles_with_upstream(ALL_ROLES)
    gradient = backward(2 * z**2 / (z**2 + 4), z, roles)
    assert gradient == 16 * U * z / (z**2 + 4) ** 2
    assert backward(z / (z + y), z, roles) == U * y / (y + z) ** 2
    no_cancelling = U * y / (z + y) - U * k / (z + y) ** 2
    assert backward_module.quotients_combined(no_cancelling) == no_cancelling
    two_apart = U / (z + 1) - U * z / (z + 1) ** 3
    assert backward_module.quotients_combined(two_apart) == two_apart


def test_a_term_without_the_denominator_joins_the_quotient() -> None:
    """Fair's c^2 (x - log(1 + x)), x = |z - y| / c, passes c^2 (1 - 1 / (1 + x)) to x:
    over 1 + x that is x / (1 + x), exact for a small x, and |z - y| sign(z - y) then
    is z - y, so the gradient has no sign and no subtraction."""
    roles = roles_with_upstream(ALL_ROLES)
    x = sympy.Abs(z - y) / k
    assert backward(k**2 * (x - sympy.log(1 + x)), z, roles) == -U * (y - z) / (1 + x)
    assert backward_module.quotients_combined(U * k - U * k / (z + 1)) == U * k * z / (z + 1)
    assert backward_module.quotients_combined(U - U / (z + 1) ** 2) == U - U / (z + 1) ** 2


def test_a_sign_times_its_own_power_is_not_computed() -> None:
    """sign(a) |a|^k is a |a|^(k - 1), and sign(a) a^k is |a| a^(k - 1): |z - y|^3, which
    SymPy writes (y - z)^2 |y - z|, passes 3 (z - y) |y - z|, with no sign left."""
    roles = roles_with_upstream(ALL_ROLES)
    assert backward(sympy.Abs(z - y) ** 3, z, roles) == -3 * U * (y - z) * sympy.Abs(y - z)
    assert backward(sympy.Abs(z) * sympy.Abs(z - y), z, roles).has(Sign)


def test_a_quotient_s_terms_divide_by_its_denominator_once() -> None:
    """|z - y| / d, d = |z| + |y| + 1 (sMAPE's), passes upstream * (s - |y - z| sign(z)
    / d) / d, s the sign of z - y: the quotient rule's s / d - |y - z| sign(z) / d^2
    with 1 / d^2 taken as two reciprocals, one of them shared by both terms. So
    d^2 is never computed, and the forward pass's 1 / d serves both divisions."""
    roles = roles_with_upstream(ALL_ROLES)
    d = sympy.Abs(z) + sympy.Abs(y) + 1
    gradient = backward(sympy.Abs(z - y) / d, z, roles)
    assert gradient == U * (-Sign(y - z) - sympy.Abs(y - z) * Sign(z) / d) / d
    assert not any(power.exp == -2 for power in gradient.atoms(sympy.Pow))


def test_a_reciprocal_power_is_taken_apart_only_up_to_a_bound() -> None:
    """a / b^2 is a, 1 / b, 1 / b to the collection of shared factors; a power beyond
    RECIPROCALS_SPLIT (a spec may write b^-20000) stays one factor."""
    b = z + 1
    assert sorted(backward_module._factors(y / b**2), key=str) == sorted([y, 1 / b, 1 / b], key=str)
    assert backward_module._factors(y * b**-20000) == (y, b**-20000)


def test_a_select_is_factored_alike_wherever_the_gradient_reads_it() -> None:
    """A select read by the gradient and by a class sum inside it (the clipped logs of a
    Jensen-Shannon divergence): its branch (upstream * y * s + upstream * z * s) / s^2
    is upstream * (y + z) / s in both places, one node, one division."""
    roles = roles_with_upstream(ALL_ROLES)
    s = fn.Sigmoid(z)
    select = fn.Where(z > 0, (y * s * U + s * U * z) / s**2, 0)
    gradient = select + fn.ReduceSum(select * z, CLASS)
    factored = backward_module.common_factors_outside(
        gradient, lambda expr: fn.roles_of(expr, roles)
    )
    assert factored.atoms(fn.Where) == {fn.Where(z > 0, U * (y + z) / s, 0)}


def test_a_number_every_term_of_a_factor_shares_joins_the_product_s_numbers() -> None:
    """2 |z - y| / d (sMAPE's) passes upstream (-2 s - 2 |y - z| sign(z) / d) / d; taken
    apart (`common_factors_outside`) the 2 multiplies upstream, once, not each term. A
    sum whose terms' numbers differ keeps them."""
    roles = roles_with_upstream(ALL_ROLES)
    d = sympy.Abs(z) + sympy.Abs(y) + 1
    gradient = backward(2 * sympy.Abs(z - y) / d, z, roles)
    factored = backward_module.common_factors_outside(
        gradient, lambda expr: fn.roles_of(expr, roles)
    )
    inner = -Sign(y - z) - sympy.Abs(y - z) * Sign(z) / d
    assert factored.args == sympy.Mul(2, U, inner, 1 / d).args
    mixed = U * sympy.exp(z) * (2 * y - 3 * z)
    assert backward_module.common_factors_outside(mixed, lambda expr: ALL_ROLES) == mixed


def test_terms_that_share_a_whole_shaped_factor_multiply_by_it_once() -> None:
    """y * exp(z) + y * z^2 + z passes upstream * (y * (exp(z) + 2 z) + 1): one product
    by y where there were two, the term without y left outside; the factor most terms
    share goes first."""
    roles = roles_with_upstream(ALL_ROLES)
    gradient = backward(y * sympy.exp(z) + y * z**2 + z, z, roles)
    assert gradient == U * (y * (sympy.exp(z) + 2 * z) + 1)
    both = backward(y * sympy.exp(z) + y * k * z**2 + y * z * sympy.exp(z), z, roles)
    assert both == U * y * (sympy.exp(z) * (2 + z) + 2 * k * z)


def test_a_small_common_factor_goes_into_the_whole_shaped_terms_that_have_one() -> None:
    """sum(y * z) * sum(z) passes upstream * (y * sum(z) + sum(y * z)) as
    y * (upstream * sum(z)) + upstream * sum(y * z): two passes over the whole shape,
    not three. A whole-shaped term with no smaller factor (exp(z), or -y) keeps the
    common factor outside, where taking it in would cost a product of its own."""
    roles = roles_with_upstream(PER_SAMPLE)
    inner, total = fn.ReduceSum(y * z, CLASS), fn.ReduceSum(z, CLASS)
    gradient = backward(inner * total, z, roles)
    assert gradient == y * (U * total) + U * inner
    assert isinstance(gradient, sympy.Add)
    with_exp = backward(inner * total + fn.ReduceSum(sympy.exp(z), CLASS), z, roles)
    assert with_exp == U * (y * total + sympy.exp(z) + inner)
    scaled = backward(k * fn.ReduceSum(sympy.exp(z) - y * z, CLASS), z, roles)
    assert scaled == k * U * (sympy.exp(z) - y)


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_the_backward_pass_reads_the_forward_passes_log_softmax(path: Path) -> None:
    """A log_softmax runs once (every example has at most one): the backward function
    reads the forward pass's. LDAM's logits s * (z - margins * onehot(y)) were grouped
    differently in the two passes, and its cross-entropy ran twice."""
    symbolic = lower(check_source(read_source(path.read_bytes(), path.name)))
    body = print_body(symbolic)
    passes = [*body.statements, body.result]
    if body.backward is not None:
        passes += [*body.backward.forward, *body.backward.statements, body.backward.gradient]
    assert "\n".join(passes).count("log_softmax(") <= 1


def test_a_class_sum_of_rows_that_sum_to_one_is_known_in_closed_form() -> None:
    """Cross-entropy on logits with a `onehot` y: log_softmax's sum(A) for A = -upstream
    * y is -upstream, so the gradient is upstream * (softmax(z) - y) with no pass over
    the classes; without rows summing to 1 the sum stays."""
    roles = roles_with_upstream(PER_ELEMENT)
    result = fn.ReduceSum(-y * fn.LogSoftmax(z), CLASS)
    gradient = backward(result, z, roles, frozenset({y}))
    assert gradient is not None and not gradient.has(fn.ReduceSum)
    assert sympy.expand(gradient - U * (sympy.exp(fn.LogSoftmax(z)) - y)) == 0
    assert backward(result, z, roles).has(fn.ReduceSum)


def test_a_softmax_of_y_true_broadcast_to_the_classes_sums_to_their_ratio() -> None:
    """ListNet's -sum(softmax(y) * log_softmax(z)), y a `target` of C classes or of one
    (LANGUAGE.md 6.2): log_softmax passes exp(l) * sum(s) - s, and the sum over z's
    classes of softmax(y) broadcast to them is C / C_y, read from the shapes, not a pass
    over the classes. Against TensorFlow's autodiff of the formula at both widths."""
    import tensorflow as tf

    import lossdsl

    spec = "input y: target\ninput z: logits\nloss = mean(-sum(softmax(y) * log_softmax(z)))\n"
    body = print_body(lower(check_source(SourceFile.from_text(spec))))
    assert body.backward is not None
    backward_text = "\n".join([*body.backward.statements, body.backward.gradient])
    assert "reduce_sum" not in backward_text and "tf.shape(t1)[-1]" in backward_text
    loss = lossdsl.load(spec, dtype="float64")
    z = tf.constant(np.linspace(-3.0, 2.0, 12).reshape(4, 3), tf.float64)
    for y in (np.linspace(-1.0, 1.5, 12).reshape(4, 3), np.array([[0.5], [-2.0], [1.0], [3.0]])):
        y = tf.constant(y, tf.float64)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(z)
            value = loss(y, z)
            expected = tf.reduce_mean(
                -tf.reduce_sum(tf.nn.softmax(y) * tf.nn.log_softmax(z), axis=-1)
            )
        np.testing.assert_allclose(tape.gradient(value, z), tape.gradient(expected, z), 1e-12)


def test_a_log_sum_exp_gradient_reads_the_forward_pass_exponentials() -> None:
    """Tilted risk (TERM), log(mean(exp(t * e^2))) / t: its logsumexp is m + log(sum(exp(x
    - m))) in the module (`fusions.log_sum_exp_shared`), so the module takes one exp,
    whose values the gradient reads. Against TensorFlow's autodiff of reduce_logsumexp
    in float64, and in float16 over 2 ** 17 elements, whose sum of exponentials (each
    near 1) and count are far above float16's largest number (the value, log(sum) -
    log(count) of two numbers near 11.8, is within a few of their float16 ulps, 2^-7)."""
    import tensorflow as tf

    import lossdsl

    spec = (
        "input y: target\ninput p: real\nparam t: (-inf, 0) = -1.0\n"
        "# lossdsl: allow W301 W302\n"
        "loss = log(mean(exp(t * square(p - y)), axis=all)) / t\n"
    )
    body = print_body(lower(check_source(SourceFile.from_text(spec))))
    assert body.backward is not None
    backward_pass = body.backward
    text = "\n".join([*backward_pass.forward, *backward_pass.statements, backward_pass.gradient])
    assert text.count("tf.math.exp(") == 2  # the exponentials, and exp(-log(sum)) of a scalar
    assert "reduce_logsumexp" not in text and "_log_sum_exp_shift" in text
    for dtype, shape, tolerance in (("float64", (4, 3), 1e-12), ("float16", (1024, 128), 3e-2)):
        loss = lossdsl.load(spec, dtype=dtype)
        rng = np.random.default_rng(0)
        p = tf.constant(rng.normal(size=shape) * 0.1, dtype)
        y = tf.constant(rng.normal(size=shape) * 0.1, dtype)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(p)
            value = loss(y, p)
            wide = tf.cast(p - y, tf.float64)
            expected = -tf.math.reduce_logsumexp(-tf.square(wide)) + np.log(np.prod(shape))
        gradient = tf.cast(tape.gradient(value, p), tf.float64)
        expected_gradient = tf.cast(tape.gradient(expected, p), tf.float64)
        np.testing.assert_allclose(float(value), float(expected), atol=tolerance)
        scale = float(tf.reduce_max(tf.abs(expected_gradient)))
        np.testing.assert_allclose(gradient / scale, expected_gradient / scale, atol=tolerance)


def test_digamma_has_its_own_backward_pass_through_trigamma() -> None:
    """digamma's derivative is trigamma (polygamma(1, x)), which every target spells, so
    a loss with digamma (the Bayes risk of evidential classification) gets its own
    backward pass, where it took the framework's autodiff. Against TensorFlow's autodiff
    of the formula in float64."""
    import tensorflow as tf

    import lossdsl

    spec = (
        "input y: onehot\ninput z: logits\nlet a = softplus(z) + 1\n"
        "loss = mean(sum(y * (digamma(sum(a)) - digamma(a))))\n"
    )
    body = print_body(lower(check_source(SourceFile.from_text(spec))))
    assert body.backward is not None and "_trigamma(" in body.backward.gradient
    loss = lossdsl.load(spec, dtype="float64")
    z = tf.constant(np.linspace(-4.0, 3.0, 12).reshape(4, 3), tf.float64)
    y = tf.constant(np.eye(3)[[0, 2, 1, 0]], tf.float64)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        value = loss(y, z)
        a = tf.nn.softplus(z) + 1
        expected = tf.reduce_mean(
            tf.reduce_sum(
                y * (tf.math.digamma(tf.reduce_sum(a, -1, keepdims=True)) - tf.math.digamma(a)),
                -1,
            )
        )
    np.testing.assert_allclose(float(value), float(expected), rtol=1e-12)
    # `_trigamma` is within 2e-12 of polygamma, less in a difference of two
    np.testing.assert_allclose(tape.gradient(value, z), tape.gradient(expected, z), 1e-10)


def test_a_class_mean_in_a_known_class_sum_cancels_the_count() -> None:
    """Label smoothing as a mean: -(1 - k) * sum(y * l) - k * mean(l) for l = log_softmax(z).
    The mean passes upstream * k / C per class, whose sum over the C classes is k: the
    gradient needs no pass over the classes."""
    roles = roles_with_upstream(PER_ELEMENT)
    log_q = fn.LogSoftmax(z)
    result = -(1 - k) * fn.ReduceSum(y * log_q, CLASS) - k * fn.ReduceMean(log_q, CLASS)
    gradient = backward(result, z, roles, frozenset({y}))
    assert gradient is not None and not gradient.has(fn.ReduceSum)


def test_a_value_without_the_class_role_sums_to_the_count_times_itself() -> None:
    """NCE's sum(y * l) / sum(l) passes upstream * (y / s - t / s^2) per class to l, whose
    class sum is upstream * (1 / s - C * t / s^2) with a `onehot` y: the count times the
    per-sample term (`count`, printed from integer sizes), not a pass over an array it
    is broadcast to."""
    roles = roles_with_upstream(PER_ELEMENT)
    log_q = fn.LogSoftmax(z)
    result = fn.ReduceSum(y * log_q, CLASS) / fn.ReduceSum(log_q, CLASS)
    gradient = backward(result, z, roles, frozenset({y}))
    assert gradient is not None
    forward_sums = {fn.ReduceSum(y * log_q, CLASS), fn.ReduceSum(log_q, CLASS)}
    assert gradient.atoms(fn.ReduceSum) == forward_sums | {count(frozenset({Role.CLASS}))}


def test_selects_on_one_condition_merge_into_one() -> None:
    """where(c, a, 0) + where(c, b, 0) = where(c, a + b, 0), and where(c, a, 0) +
    where(not c, b, 0) = where(c, a, b): one select, not two and a sum."""
    condition = z > 0
    same = backward_module.selects_merged(fn.Where(condition, y, 0) + fn.Where(condition, k, 0))
    assert same == fn.Where(condition, y + k, 0)
    sides = backward_module.selects_merged(
        fn.Where(condition, y, 0) + fn.Where(sympy.Not(condition), k, 0)
    )
    assert sides == fn.Where(condition, y, k)


def test_a_product_with_a_select_merges_with_another_select_of_its_condition() -> None:
    """Balanced L1's gradient, b * where(c, a / b + a * l / b, 0) + where(c, -a, g), is
    where(c, a * l, g): the product counts as a select, and the merged branch is taken
    distributed, which is shorter; quantile's -where(c, a, 0) - where(not c, b, 0) is
    where(c, -a, -b). Two sides of different conditions stay apart."""
    c, b, log1p = z < 1, sympy.Symbol("b", positive=True), sympy.Function("log1p")(z)
    balanced = b * fn.Where(c, k / b + k * log1p / b, 0) + fn.Where(c, -k, y)
    assert backward_module.selects_merged(balanced) == fn.Where(c, k * log1p, y)
    quantile = -fn.Where(c, k, 0) - fn.Where(sympy.Not(c), y, 0)
    assert backward_module.selects_merged(quantile) == fn.Where(c, -k, -y)
    apart = b * fn.Where(c, k, 0) + fn.Where(z > 2, y, 0)
    assert backward_module.selects_merged(apart) == apart


def test_a_factor_that_may_be_infinite_goes_into_a_sum_of_selects() -> None:
    """(where(c1, a, 0) + where(c2, b, 0)) * exp(z) is 0 * inf where neither holds and
    exp(z) overflows: each select takes the factor into its branch, and a factor inside a
    product (-where(c, a, 0)) counts as a select. A factor that is never infinite (a
    sigmoid, a number) stays outside, one product for the sum."""
    c1, c2 = z > 1, z < -1
    selects = fn.Where(c1, k, 0) - fn.Where(c2, y, 0)
    assert backward_module.product(selects, sympy.exp(z)) == fn.Where(
        c1, k * sympy.exp(z), 0
    ) + fn.Where(c2, -y * sympy.exp(z), 0)
    bounded = backward_module.product(selects, fn.Sigmoid(z), 2)
    assert bounded == sympy.Mul(selects, fn.Sigmoid(z), 2)


def test_a_power_by_a_param_at_a_base_of_zero_has_a_finite_derivative() -> None:
    """sigmoid(-z)^gamma at z = 1e4: the base is 0 in float32 and the power rule's
    gamma * 0^(gamma - 1) * 0 was NaN for gamma below 1 (gamma = 0, the asymmetric loss's
    default, is plain cross-entropy), where the whole's derivative is 0. A base that a clip
    keeps at eps or more (1 - clip(p)) needs no select."""
    import tensorflow as tf

    import lossdsl

    header = "input y: binary\ninput z: logits\nparam gamma: nonneg = 0.0\n"
    focal = header + "loss = mean(sigmoid(-z)^gamma * softplus(-z))\n"
    # erfc(z) is 0 in float32 at z = 1e4, and its derivative has no factor erfc(z)
    tail = header + "loss = mean(erfc(z)^gamma)\n"
    z = tf.constant([[1e4, -1e4, 30.0, 0.3]])
    y = tf.constant([[1.0, 0.0, 1.0, 0.0]])
    for spec, gamma in itertools.product((focal, tail), (0.0, 0.5, 1.0, 2.0)):
        loss = lossdsl.load(spec, gamma=gamma)
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = loss.call(y, z)
        gradient = tape.gradient(value, z).numpy()
        assert np.all(np.isfinite(gradient)), (spec, gamma, gradient)
        if spec == focal:
            assert gradient[0, 0] == 0.0 and gradient[0, 1] < 0.0
    clipped = (
        b"input y: onehot\ninput p: prob\nparam gamma: nonneg = 2.0\n"
        b"loss = mean(sum(-(1 - clip(p))^gamma * y * log(clip(p))))\n"
    )
    for spec, select in ((clipped, False), (focal.encode(), False), (tail.encode(), True)):
        body = print_body(lower(check_source(read_source(spec, "focal.loss"))))
        assert body.backward is not None
        backward_text = "\n".join([*body.backward.statements, body.backward.gradient])
        assert ("_params_or(" in backward_text) == select, spec


def test_a_power_by_a_param_times_its_base_is_the_forward_passs_power() -> None:
    """gamma sigmoid(-z)^(gamma - 1) times sigmoid's derivative sigmoid(-z) (1 - sigmoid(-z))
    is gamma sigmoid(-z)^gamma (1 - sigmoid(-z)), with no select for the base 0: the
    forward pass's own power, not a second one."""
    gamma = sympy.Symbol("gamma")
    x = fn.Sigmoid(-z)
    roles = {z: ALL_ROLES, gamma: frozenset(), UPSTREAM: ALL_ROLES}
    gradient = backward(x**gamma, z, roles)
    assert gradient is not None and not gradient.has(fn.Where)
    assert sympy.expand(gradient - UPSTREAM * gamma * x**gamma * (x - 1)) == 0
    # without the factor gamma (the exponent's e + 1), 0^0 = 1 would be no 0: the select stays
    assert backward_module.product(backward_module._power_of_a_param(x, gamma - 1), x).has(fn.Where)


def test_a_relu_s_gradient_is_one_relu_grad_where_its_value_is_finite() -> None:
    """where(x > 0, g, 0) is TensorFlow's ReluGrad(g, x), one pass where the select takes
    three, for a g that cannot be infinite (a multi-class margin's); a g that can keeps
    the select, which gives 0 for it where ReluGrad's product would give NaN."""
    margin = (
        "input y: onehot\ninput z: real\nlet z_y = sum(y * z)\n"
        "loss = mean(sum((1 - y) * maximum(0, 1 - z_y + z)))\n"
    )
    logs = "input y: target\ninput p: prob\nloss = mean(maximum(0, log(p) - y))\n"
    backward = {}
    for name, text in (("margin", margin), ("logs", logs)):
        symbolic = lower(check_source(SourceFile.from_text(text)))
        body = print_body(symbolic)
        assert body.backward is not None
        backward[name] = "\n".join([*body.backward.statements, body.backward.gradient])
        # JAX and PyTorch have no such op: their select shares its condition
        assert "where_positive" not in print_body(symbolic, target="jax").target_rules
    assert "tf.raw_ops.ReluGrad(" in backward["margin"] and "_where_zero" not in backward["margin"]
    assert "tf.raw_ops.ReluGrad(" not in backward["logs"] and "_where_zero" in backward["logs"]


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_relu_grad_is_the_select_of_a_finite_value(dtype: str, jit_compile: bool) -> None:
    special = [0.0, -0.0, 1.5, -2.0, float("inf"), -float("inf"), float("nan")]
    x = tf.constant(special, dtype)
    value = tf.constant([1.0, -3.0, 2.5, -0.5, 4.0, 1e4, -1.0], dtype)

    @tf.function(jit_compile=jit_compile)
    def both() -> tuple[tf.Tensor, tf.Tensor]:
        select = tf.where(x > 0, value, tf.constant(0.0, dtype))
        return tf.raw_ops.ReluGrad(gradients=value, features=x), select

    relu_grad, select = both()
    np.testing.assert_array_equal(relu_grad.numpy(), select.numpy())  # -0.0 == 0.0
