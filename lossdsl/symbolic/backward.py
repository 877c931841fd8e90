"""The backward pass: the gradient of sum(upstream * result) with respect to y_pred, in SymPy.

Reverse mode over the expression's graph, in keepdims form (docs/ARCHITECTURE.md): the
`UPSTREAM` symbol has the result's roles, and each node's adjoint (the derivative of
sum(upstream * result) by that node's value, per element) is the sum of what its users
pass down. A user passes down its adjoint times its partial derivative, summed over the
roles the argument lacks (the argument was broadcast over them; a sum over the classes
runs over the node's, y_pred's, where the adjoint has y_true's alone, which may have
size 1: `in_the_shape_of`):

- an elementwise function multiplies by its derivative (`fdiff`); a selector at a kink
  (`where(c, 1, 0)`, from `clip`, `minimum`, `relu`...) becomes a select of the product,
  `where(c, adjoint * rest, 0)`, so that an untaken branch that is not finite never
  meets the 0;
- a sum broadcasts its adjoint back, a mean multiplies it by 1 / the count of what it
  averaged (`InverseCount`, taken in float32 for half precision, whose counts overflow),
  a logsumexp weighs it by exp(x - result) (a log of a sum, a shifted logsumexp's
  `codegen.fusions.log_sum_exp_shared`, by exp(-result), which with the forward pass's
  exp(x - m) is that weight), a max or min shares it among the elements
  equal to the result;
- softmax s passes s * (A - sum_c(A * s)), log_softmax l passes A - exp(l) * sum_c(A),
  both reusing the forward value (exp(l) is the forward's softmax of the same logits
  where the loss computes one);
- a class gather passes A * onehot(label), a channel selection puts A back at its
  channels (`IntoChannels`); class ids, one-hots and gathers of params pass nothing;
- the fused nodes of the target fusions have their derivatives on paper: Huber's is
  clip(x, -delta, delta), a softplus pair's b * sigmoid(x) - a * sigmoid(-x), a clipped
  log's 1/x inside the clip, a softmax cross-entropy's softmax(z) * sum(y) - y
  (softmax(z) - y where y's rows sum to 1, `class_sums_known`; a label's y is its
  one-hot row, whose sum is 1 for a label in [0, C) and 0 outside).

Values at another sample (`other`, pair products) and cumulative sums have no rule:
`backward` returns None for them and the module keeps the framework's autodiff. The
forward nodes the gradient reuses (exp(l), s, the result of a logsumexp) are the same
SymPy objects, so the printer's shared sub-expressions compute them once for both.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping

import sympy
from sympy.core.function import ArgumentIndexError

from lossdsl.builtins import Sign, row_of
from lossdsl.symbolic import functions as fn
from lossdsl.typed import Role, Roles

UPSTREAM = sympy.Symbol("upstream", real=True)
"""The incoming gradient: d(objective)/d(result), with the result's roles."""

NO_RULE: tuple[type, ...] = (fn.Other, fn.PairDot, fn.CumSum)
"""Nodes whose gradient moves values between samples or positions: no rule here."""

CONSTANT: tuple[type, ...] = (
    fn.ClassId,
    fn.OneHot,
    fn.ClassesFrom,
    fn.Gather,
    fn.StopGradient,
    fn.LogSumExpShift,
    Sign,
)
"""Nodes that are constant almost everywhere (or by definition) in their arguments."""


def backward(
    result: sympy.Expr,
    y_pred: sympy.Symbol,
    roles: Mapping[sympy.Symbol, Roles],
    rows_summing_to_one: frozenset[sympy.Symbol] = frozenset(),
) -> sympy.Expr | None:
    """d sum(UPSTREAM * result) / d y_pred per element, or None where a node has no rule.

    `roles` gives each symbol's roles, UPSTREAM's included (the result's);
    `rows_summing_to_one` the inputs whose class rows sum to 1 (`onehot`).
    """
    return _Backward(y_pred, roles, rows_summing_to_one).gradient(result)


def selector(condition: sympy.Basic) -> sympy.Expr:
    """1 where `condition` holds, else 0."""
    return fn.Where(condition, sympy.S.One, sympy.S.Zero)


def count(removed: Roles) -> sympy.Expr:
    """The number of elements a reduction over `removed` combines (1 for none)."""
    return fn.ReduceSum(sympy.S.One, fn.encode_roles(removed)) if removed else sympy.S.One


def product(*factors: sympy.Expr) -> sympy.Expr:
    """The product, with the selects `where(c, x, 0)` among the factors taken outside:
    `where(c, x * rest, 0)`, so that the rest is never multiplied by the 0. A sum with
    such a select among its terms takes the rest into each term where the rest may be
    infinite: the two clipped logs of a complementary log-log link pass
    (where(c1, a, 0) + where(c2, b, 0)) * exp(z) * exp(-exp(z)), which was 0 * inf at a
    logit of 1e4, where both clips hold and the gradient is 0.

    A factor that a term of a sum among the factors divides by is taken into each of
    its terms, where it cancels (`_divisions_cancelled`)."""
    factors = _divisions_cancelled(
        tuple(itertools.chain.from_iterable(map(sympy.Mul.make_args, factors)))
    )
    for index, factor in enumerate(factors):
        others = factors[:index] + factors[index + 1 :]
        if _has_a_zero_select(factor) and not all(map(_never_infinite, others)):
            return sympy.Add(*(product(term, *others) for term in factor.args))
    selects = [f for f in factors if _is_a_zero_select(f)]
    if not selects:
        return sympy.Mul(*factors)
    first = selects[0]
    rest = [f for f in factors if f is not first]
    condition, taken, _ = first.args
    joined = _power_joined_with_its_base(condition, taken, rest)
    if joined is not None:
        return product(*joined)
    return fn.Where(condition, product(taken, *rest), sympy.S.Zero)


def _divisions_cancelled(factors: tuple[sympy.Expr, ...]) -> tuple[sympy.Expr, ...]:
    """The factors with the first sum among them whose terms divide by some of the other
    factors multiplied by those: s * (a / sqrt(s) - b) is a sqrt(s) - s b, which SymPy's
    product joins. A softmax s, positive but 0 in floating point far below the largest logit,
    passes sqrt(softmax)'s adjoint so: as a quotient it was 0 / 0 there (the squared
    Hellinger distance's gradient was NaN from a logit gap of 104 in float32)."""
    for index, factor in enumerate(factors):
        if not isinstance(factor, sympy.Add):
            continue
        divisors = {
            part.base
            for term in factor.args
            for part in sympy.Mul.make_args(term)
            if isinstance(part, sympy.Pow) and part.exp.is_negative
        }
        others = factors[:index] + factors[index + 1 :]
        cancelling = [f for f in others if _base_of(f) in divisors]
        if cancelling:
            rest = [f for f in others if f not in cancelling]
            taken_in = sympy.Add(*(sympy.Mul(term, *cancelling) for term in factor.args))
            return (*rest, taken_in)
    return factors


def _base_of(factor: sympy.Expr) -> sympy.Expr:
    """A positive power's base; any other factor itself."""
    if isinstance(factor, sympy.Pow) and factor.exp.is_positive:
        return factor.base
    return factor


def _is_a_zero_select(expr: sympy.Expr) -> bool:
    """Whether `expr` is a select `where(c, x, 0)`."""
    return isinstance(expr, fn.Where) and expr.args[2] == 0


def _has_a_zero_select(expr: sympy.Expr) -> bool:
    """Whether `expr` is a sum with a term that is, or has as a factor, a select
    `where(c, x, 0)`."""
    return isinstance(expr, sympy.Add) and any(
        any(map(_is_a_zero_select, sympy.Mul.make_args(term))) for term in expr.args
    )


_BOUNDED = (fn.Sigmoid, sympy.tanh, sympy.erf, sympy.erfc, Sign, fn.Softmax, fn.OneHot)
"""Functions whose values are bounded whatever their finite arguments."""

_FINITE_OF_FINITE = (
    sympy.Add,
    sympy.Mul,
    sympy.Abs,
    fn.Softplus,
    fn.Relu,
    fn.Clip,
    fn.Minimum,
    fn.Maximum,
    fn.Where,
    fn.Channel,
    fn.Channels,
    fn.TakeClass,
    fn.Gather,
    fn.ReduceSum,
    fn.ReduceMean,
    fn.ReduceMax,
    fn.ReduceMin,
    fn.InverseCount,
)
"""Nodes that are finite where their arguments are (an overflow of a finite sum aside)."""


def _never_infinite(expr: sympy.Basic) -> bool:
    """Whether `expr` is finite wherever its inputs are: no exp, log or division by a
    value that may reach 0 (`_floored` divisors only), and whole powers of such."""
    if isinstance(expr, fn.CONDITIONS) or expr.is_Symbol:
        return True
    if expr.is_Number:
        return bool(expr.is_finite)
    if isinstance(expr, _BOUNDED):
        return True
    if isinstance(expr, sympy.Pow):
        base, exponent = expr.args
        whole = exponent.is_Integer and (exponent > 0 or _floored(base))
        return bool(whole) and _never_infinite(base)
    return isinstance(expr, _FINITE_OF_FINITE) and all(map(_never_infinite, expr.args))


def quotients_combined(adjoint: sympy.Expr) -> sympy.Expr:
    """A sum whose every term divides by a power of one sum b, over b's highest power
    where the numerator then cancels to fewer operations: the quotient rule's
    a' / b - a b' / b^2 of 2 r / (r + 4) is 2 / (r + 4) - 2 r / (r + 4)^2, which is
    8 / (r + 4)^2, one term where there were two, and exact where the two terms are
    large and nearly equal. A term that does not divide by b has b's power 0: Fair's
    1 - 1 / (1 + x) is x / (1 + x), exact for a small x. Only powers one apart are
    brought together (b's terms distributed once); anything else stays as it was."""
    terms = sympy.Add.make_args(adjoint)
    if len(terms) < 2:
        return adjoint
    powers = [_powers_of_sums(term) for term in terms]
    for base in sorted(set().union(*powers), key=sympy.default_sort_key):
        highest = max(power.get(base, 0) for power in powers)
        if any(highest - power.get(base, 0) > 1 for power in powers):
            continue
        numerator: list[sympy.Expr] = []
        for term, power in zip(terms, powers, strict=True):
            rest = term * base ** power.get(base, 0)
            if power.get(base, 0) == highest:
                numerator.append(rest)
            else:
                numerator.extend(rest * part for part in base.args)
        combined = sympy.Add(*numerator) / base**highest
        if sympy.count_ops(combined) < sympy.count_ops(adjoint):
            return combined
    return adjoint


def _powers_of_sums(term: sympy.Expr) -> dict[sympy.Basic, int]:
    """The sums a term divides by, with the power of each (1 / (r + 4)^2: r + 4, 2)."""
    return {
        factor.base: -int(factor.exp)
        for factor in sympy.Mul.make_args(term)
        if isinstance(factor, sympy.Pow)
        and isinstance(factor.base, sympy.Add)
        and factor.exp.is_Integer
        and factor.exp < 0
    }


def selects_merged(gradient: sympy.Expr) -> sympy.Expr:
    """The selects of one condition in a sum as one, at every sum (`one_select_per_condition`)."""
    return fn.fold(gradient, lambda node, args: one_select_per_condition(fn.with_args(node, args)))


def one_select_per_condition(expr: sympy.Expr) -> sympy.Expr:
    """A sum's selects of one condition as one select of their branches' sums:
    where(c, a, b) + where(c, x, y) is where(c, a + x, b + y), and where(not c, x, y) is
    where(c, y, x). The two sides of a branch (`where`, `abs`, `minimum`...) become one
    select, and so do two paths through one branch (a hinge's max and sum). A product
    with a select where(c, a, 0) among its factors counts as where(c, product, 0)
    (`product`) where it merges. A merged branch has its products distributed where
    that takes fewer operations (`_cheaper`): Balanced L1's select passes
    b * where(c, a / b + a * l / b, 0) + where(c, -a, g), which is where(c, a * l, g)."""
    if not isinstance(expr, sympy.Add):
        return expr
    branches: dict[sympy.Basic, list[tuple[sympy.Basic, sympy.Expr, sympy.Expr]]] = {}
    for term in expr.args:
        select = term if isinstance(term, fn.Where) else product(*sympy.Mul.make_args(term))
        if not isinstance(select, fn.Where):
            continue
        condition, taken, other = select.args
        if condition not in branches and sympy.Not(condition) in branches:
            condition, taken, other = sympy.Not(condition), other, taken
        branches.setdefault(condition, []).append((term, taken, other))
    merged = {condition: pairs for condition, pairs in branches.items() if len(pairs) > 1}
    if not merged:
        return expr
    selects = [
        fn.Where(
            condition,
            _cheaper(sympy.Add(*(taken for _, taken, _ in terms))),
            _cheaper(sympy.Add(*(other for _, _, other in terms))),
        )
        for condition, terms in merged.items()
    ]
    taken_apart = {id(term) for terms in merged.values() for term, _, _ in terms}
    kept = [term for term in expr.args if id(term) not in taken_apart]
    return sympy.Add(*kept, *selects)


def _cheaper(expr: sympy.Expr) -> sympy.Expr:
    """`expr` with the products in its sums and products distributed over their sums
    (not inside other functions), where that takes fewer operations."""

    def distributed(node: sympy.Expr) -> sympy.Expr:
        if isinstance(node, sympy.Add):
            return sympy.Add(*(distributed(term) for term in node.args))
        if isinstance(node, sympy.Mul):
            return sympy.expand_mul(sympy.Mul(*(distributed(f) for f in node.args)), deep=False)
        return node

    expanded = distributed(expr)
    return expanded if sympy.count_ops(expanded) < sympy.count_ops(expr) else expr


def channels_joined(gradient: sympy.Expr, roles: Callable[[sympy.Basic], Roles]) -> sympy.Expr:
    """The adjoints of several channel selections of one value, put back together: a sum
    of `IntoChannels` of disjoint slices of numbers as one `ChannelsJoined` (one
    concatenation, where each `IntoChannels` pads a whole array)."""

    def join(node: sympy.Basic, args: list[sympy.Basic]) -> sympy.Basic:
        rebuilt = fn.with_args(node, args)
        if not isinstance(rebuilt, sympy.Add):
            return rebuilt
        groups: dict[tuple[sympy.Basic, Roles], list[fn.IntoChannels]] = {}
        for term in rebuilt.args:
            if isinstance(term, fn.IntoChannels) and _joinable(term, roles):
                groups.setdefault((term.args[1], roles(term.args[0])), []).append(term)
        joined = {key: terms for key, terms in groups.items() if _disjoint(terms)}
        if not joined:
            return rebuilt
        merged = [term for terms in joined.values() for term in terms]
        rest = [term for term in rebuilt.args if term not in merged]
        for (like, _), terms in joined.items():
            ordered = sorted(terms, key=lambda term: int(term.args[2]))
            flat = [arg for term in ordered for arg in (term.args[0], *term.args[2:])]
            rest.append(fn.ChannelsJoined(like, *flat))
        return sympy.Add(*rest)

    return fn.fold(gradient, join)


def _joinable(term: fn.IntoChannels, roles: Callable[[sympy.Basic], Roles]) -> bool:
    """A slice of numbers from 0 on, its values with the class role or one channel wide,
    and with every other role of the value selected from (concatenated as they are)."""
    values, like, start, stop = term.args
    if stop == sympy.oo or not (start.is_Integer and stop.is_Integer) or start < 0:
        return False
    if not roles(like) - {Role.CLASS} <= roles(values):
        return False  # a scalar mean's adjoint: broadcast by `IntoChannels`
    return stop - start == 1 or Role.CLASS in roles(values)


def _disjoint(terms: list[fn.IntoChannels]) -> bool:
    """Whether two or more slices, none overlapping another."""
    slices = sorted((int(term.args[2]), int(term.args[3])) for term in terms)
    return len(slices) > 1 and all(a[1] <= b[0] for a, b in itertools.pairwise(slices))


def class_sums_known(
    gradient: sympy.Expr,
    rows_summing_to_one: frozenset[sympy.Symbol],
    roles: Mapping[sympy.Symbol, Roles],
) -> sympy.Expr:
    """Every sum over the class axis of a value affine in rows that sum to 1, in closed
    form (`functions.class_sum`): log_softmax passes A - exp(l) * sum(A), and for
    A = -upstream * y with a `onehot` y, sum(A) is -upstream, not a pass over the
    classes; a value without the class role sums to C times itself (`count`), not to a
    pass over an array it is broadcast to."""

    def known(node: sympy.Basic, args: list[sympy.Basic]) -> sympy.Basic:
        rebuilt = fn.with_args(node, args)
        if isinstance(rebuilt, fn.ReduceSum) and rebuilt.args[1] == fn.CLASS_MASK:
            total = fn.class_sum(rebuilt.args[0], rows_summing_to_one, roles)
            if total is not None:  # a count stays one, printed from integer sizes
                return total.xreplace({fn.NUM_CLASSES: count(frozenset({Role.CLASS}))})
        return rebuilt

    return fn.fold(gradient, known)


def common_factors_outside(
    gradient: sympy.Expr, roles: Callable[[sympy.Basic], Roles]
) -> sympy.Expr:
    """Every sum whose terms share factors that are UPSTREAM or smaller than the sum (a
    count, a param, a per-sample value; numbers aside) as those factors times the sum of
    the rest: one product by each, not one per term. Through products, the branches of
    selects and the values put back at channels: upstream * (c - c * y / x) is
    upstream * c * (1 - y / x), whose small factors `small_factors_first` then
    multiplies first. Where no factor is shared by every term, the terms that share a
    whole-shaped one are collected (`_whole_factors_collected`).

    Every select is taken so where it is, inside sums over the classes too (`fn.fold`:
    one result per distinct select), so that a select the gradient reads in two places
    stays one node: the ratio of a clipped log, in a select that a class sum reads too,
    divides by its base once."""

    def select_factored(node: sympy.Basic, args: list[sympy.Basic]) -> sympy.Basic:
        rebuilt = fn.with_args(node, args)
        return _factored(rebuilt, roles) if isinstance(rebuilt, fn.Where) else rebuilt

    return _factored(fn.fold(gradient, select_factored), roles)


def _factored(gradient: sympy.Expr, roles: Callable[[sympy.Basic], Roles]) -> sympy.Expr:
    """`common_factors_outside` of `gradient` from the top down."""
    if isinstance(gradient, fn.Where):
        condition, taken, other = gradient.args
        outside = (_factored(branch, roles) for branch in (taken, other))
        return fn.Where(condition, *outside)
    if isinstance(gradient, fn.IntoChannels | fn.ChannelsJoined):
        values = range(1, len(gradient.args), 3) if gradient.func is fn.ChannelsJoined else [0]
        return fn.with_args(
            gradient,
            [
                _factored(arg, roles) if index in values else arg
                for index, arg in enumerate(gradient.args)
            ],
        )
    if isinstance(gradient, sympy.Mul):
        factored = (_factored(factor, roles) for factor in gradient.args)
        return sympy.Mul(*itertools.chain.from_iterable(map(_number_apart, factored)))
    terms = sympy.Add.make_args(gradient)
    if len(terms) < 2:
        return gradient
    whole = roles(gradient)
    shared: set[sympy.Basic] | None = None
    for term in terms:
        factors = {
            factor
            for factor in sympy.Mul.make_args(term)
            if not factor.is_Number and (factor == UPSTREAM or roles(factor) != whole)
        }
        shared = factors if shared is None else shared & factors
    if not shared:
        return _whole_factors_collected(terms, whole, roles)
    rest = _factored(sympy.Add(*(fn.taken_out(term, shared) for term in terms)), roles)
    return _small_factor_inside(sympy.Mul(*shared), rest, roles)


def _number_apart(factor: sympy.Expr) -> tuple[sympy.Expr, ...]:
    """A sum whose terms all have one number as their coefficient (up to sign) as that
    number and the sum of the rest, a factor of a product with others (where SymPy keeps
    the number apart): s * (2 a - 2 b) is 2 s (a - b), and the 2 joins the product's
    other numbers and small factors, where it took a product per term."""
    if not isinstance(factor, sympy.Add):
        return (factor,)
    sizes = {abs(term.as_coeff_Mul()[0]) for term in factor.args}
    if len(sizes) > 1 or not (number := sizes.pop()).is_Rational or number == 1:
        return (factor,)
    return (number, sympy.Add(*(term / number for term in factor.args)))


def _small_factor_inside(
    common: sympy.Expr, rest: sympy.Expr, roles: Callable[[sympy.Basic], Roles]
) -> sympy.Expr:
    """common * rest, with a common factor smaller than the sum multiplied into each of
    its whole-shaped terms where each of those has a smaller factor already, and into
    the sum of the others: upstream * (y * a + b) is y * (upstream * a) + upstream * b,
    two passes over the whole shape where there were three (the product with y, the
    sum, the product with upstream). A whole-shaped term with no smaller factor would
    take a product of its own (upstream * (exp(z) - y) stays)."""
    terms = sympy.Add.make_args(rest)
    whole = roles(rest)
    large = [term for term in terms if roles(term) == whole]
    small = [term for term in terms if roles(term) != whole]

    def has_a_smaller_factor(term: sympy.Expr) -> bool:
        factors = sympy.Mul.make_args(term)
        return any(not factor.is_Number and roles(factor) != whole for factor in factors)

    if len(terms) < 2 or roles(common) == whole or not all(map(has_a_smaller_factor, large)):
        return common * rest
    return sympy.Add(*(common * term for term in large), common * sympy.Add(*small))


def _whole_factors_collected(
    terms: tuple[sympy.Expr, ...], whole: Roles, roles: Callable[[sympy.Basic], Roles]
) -> sympy.Expr:
    """A sum whose terms share no factor throughout, with the terms that share a
    whole-shaped factor f as f times the sum of their rest: f * a + f * b + c is
    f * (a + b) + c, one product by f where there were two. Only where two of those
    rests are more than a sign: f + f * b takes as many passes as f * (1 + b). The
    factor most terms share goes first; a select is left where it is (`product`). A
    reciprocal's power counts as that many reciprocals (`_factors`): the quotient rule's
    a' / b - a b' / b^2 is (a' - a b' / b) / b, two divisions where there were a square
    and two (and one division by b only, where the forward pass has 1 / b already)."""
    counts: dict[sympy.Basic, int] = {}
    for term in terms:
        factors = _factors(term)
        for factor in set(factors):
            if factor.is_Number or isinstance(factor, fn.Where) or roles(factor) != whole:
                continue
            # more than a sign: compared as written (SymPy's Abs expands its argument,
            # exponential in a nested polynomial like log(erfc(x))'s tail)
            if sympy.Mul(*_without(factors, factor)) not in (sympy.S.One, sympy.S.NegativeOne):
                counts[factor] = counts.get(factor, 0) + 1
    candidates = [factor for factor, n in counts.items() if n > 1]
    if not candidates:
        return sympy.Add(*terms)
    factor = max(candidates, key=lambda f: (counts[f], sympy.default_sort_key(f)))
    sharing = [term for term in terms if factor in _factors(term)]
    others = [term for term in terms if term not in sharing]
    rests = [sympy.Mul(*_without(_factors(term), factor)) for term in sharing]
    collected = factor * _factored(sympy.Add(*rests), roles)
    if not others:
        return collected
    # fewer terms, which may share factors now: in upstream * y * exp(z) + (upstream * y
    # * z + upstream * y) * exp(z) + 2 * k * upstream * y * z, once exp(z) is collected,
    # the two terms left share upstream and y
    rest = _factored(sympy.Add(*others), roles)
    return _factored(collected + rest, roles)


def _power_of_a_param(base: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr:
    """base^exponent in the derivative of base^(exponent + 1), the exponent a param's: 0
    at base 0 for an exponent below 0, where 0^exponent is inf (the base is >= 0 there,
    E405). A focal factor (1 - p_t)^gamma at a logit of 1e4 has base 0 in float32, and
    its chain product gamma * 0^(gamma - 1) * 0 was NaN for gamma below 1 (gamma = 0 is
    plain cross-entropy) where the whole's derivative is 0. For gamma in (0, 1) the
    factor's own derivative at base 0 is infinite (W405); 0^0 = 1 and 0^(> 0) = 0 stay."""
    return fn.Where(_finite_power(base, exponent), base**exponent, sympy.S.Zero)


def _finite_power(base: sympy.Expr, exponent: sympy.Expr) -> sympy.Basic:
    """Where base^exponent is finite, for a base >= 0: base > 0 or exponent >= 0."""
    return sympy.Or(
        fn.comparison(sympy.StrictGreaterThan, base, sympy.S.Zero),
        fn.comparison(sympy.GreaterThan, exponent, sympy.S.Zero),
    )


def _power_joined_with_its_base(
    condition: sympy.Basic, taken: sympy.Expr, rest: list[sympy.Expr]
) -> list[sympy.Expr] | None:
    """The factors of `where(condition, taken, 0) * rest` with no select, where the select
    is `_power_of_a_param`'s, its power x^e meets a factor x of the rest and the product
    has e + 1 as a factor: then the select's product is (e + 1) x^(e + 1) ..., which is 0
    where the select gives 0 (x = 0 and e in [-1, 0): 0^(e + 1) is 0, or 1 times e + 1 =
    0; below -1 the forward pass's x^(e + 1) is infinite itself), and reads the forward
    pass's own x^(e + 1). The chain rule of a focal factor sigmoid(-z)^gamma
    multiplies gamma sigmoid(-z)^(gamma - 1) by sigmoid's derivative, which has the
    factor sigmoid(-z). None where the factors do not meet so."""
    factors = list(sympy.Mul.make_args(taken))
    others = [factor for f in rest for factor in sympy.Mul.make_args(f)]
    for power in factors:
        if not isinstance(power, sympy.Pow) or power.base not in others:
            continue
        base, exponent = power.args
        if condition != _finite_power(base, exponent):
            continue
        whole = exponent + 1
        if not all(f in factors for f in sympy.Mul.make_args(whole) if not f.is_Number):
            continue
        others.remove(base)
        return [*_without(tuple(factors), power), base**whole, *others]
    return None


def _at_least_a_positive_number(base: sympy.Expr) -> bool:
    """Whether `base` is a positive number plus terms that are never negative (Barron's
    x^2 / |a - 2| + 1): x^e / x is then x^(e - 1) in floating point too, where a base
    that may reach 0 gives 0 / 0."""
    terms = sympy.Add.make_args(base)
    numbers = [term for term in terms if term.is_Number]
    return (
        len(numbers) == 1
        and numbers[0] > 0
        and all(_never_negative(term) for term in terms if not term.is_Number)
    )


def _floored(expr: sympy.Expr) -> bool:
    """Whether `expr` is at least a positive number in floating point too: a positive
    number, a clip whose lower bound is one, a number less a clip whose upper bound is below
    it (1 - clip(p), at least eps), a positive number plus terms never negative, or a
    product of such. (sigmoid(z) is positive, but 0 in float32 at z = -1e4.)"""
    if expr.is_Number:
        return bool(expr > 0)
    if isinstance(expr, fn.Clip):
        return _floored(expr.args[1])
    if isinstance(expr, sympy.Mul):
        return all(_floored(factor) for factor in expr.args)
    if isinstance(expr, sympy.Add) and _at_least_a_positive_number(expr):
        return True
    number, rest = expr.as_coeff_Add()
    scale, clip = (-rest).as_coeff_Mul()
    return isinstance(clip, fn.Clip) and bool(scale > 0 and (number - scale * clip.args[2]) > 0)


def _never_negative(expr: sympy.Expr) -> bool:
    """Whether `expr` is >= 0 wherever it is a number: SymPy's nonnegative, or a product
    or power of such (1 / |a - 2|, which SymPy leaves open because of a = 2)."""
    if expr.is_nonnegative:
        return True
    if isinstance(expr, sympy.Mul):
        return all(_never_negative(factor) for factor in expr.args)
    if isinstance(expr, sympy.Pow):
        return _never_negative(expr.base) and bool(expr.exp.is_real)
    return False


RECIPROCALS_SPLIT = 8
"""The highest power of a reciprocal `_factors` takes apart (a spec may write b^-10000)."""


def _factors(term: sympy.Expr) -> tuple[sympy.Basic, ...]:
    """A product's factors, with a reciprocal's integer power (up to RECIPROCALS_SPLIT) as
    that many reciprocals: a / b^2 is a, 1 / b, 1 / b."""
    factors: list[sympy.Basic] = []
    for factor in sympy.Mul.make_args(term):
        exponent = factor.exp if isinstance(factor, sympy.Pow) else None
        if exponent is not None and exponent.is_Integer and -RECIPROCALS_SPLIT <= exponent < -1:
            factors.extend([1 / factor.base] * -int(exponent))
        else:
            factors.append(factor)
    return tuple(factors)


def _without(factors: tuple[sympy.Basic, ...], factor: sympy.Basic) -> list[sympy.Basic]:
    """`factors` less one occurrence of `factor`."""
    index = factors.index(factor)
    return [*factors[:index], *factors[index + 1 :]]


class _Backward:
    """One backward pass: which nodes depend on y_pred, and their adjoints."""

    def __init__(
        self,
        y_pred: sympy.Symbol,
        roles: Mapping[sympy.Symbol, Roles],
        rows_summing_to_one: frozenset[sympy.Symbol],
    ) -> None:
        self.y_pred = y_pred
        self.rows_summing_to_one = rows_summing_to_one
        self.symbol_roles = roles
        self.role_memo: dict[sympy.Basic, Roles] = {}
        self.class_axis_memo: dict[sympy.Basic, dict[sympy.Basic, bool]] = {}

    def roles(self, expr: sympy.Basic) -> Roles:
        return fn.roles_of(expr, self.symbol_roles, self.role_memo)

    def gradient(self, result: sympy.Expr) -> sympy.Expr | None:
        order = self.topological(result)
        if result not in self.dependent:
            return sympy.S.Zero
        if any(isinstance(node, NO_RULE) for node in order):
            return None
        adjoints: dict[sympy.Basic, list[sympy.Expr]] = {result: [UPSTREAM]}
        for node in reversed(order):
            if node == self.y_pred:
                continue
            adjoint = quotients_combined(sympy.Add(*adjoints.pop(node, [])))
            if adjoint == 0:
                continue
            for index, arg in enumerate(node.args):
                if arg not in self.dependent:
                    continue
                passed = self.passed(node, index, adjoint)
                if passed is None:
                    return None
                if passed != 0:
                    adjoints.setdefault(arg, []).append(self.unbroadcast(passed, node, arg))
        gradient = selects_merged(quotients_combined(sympy.Add(*adjoints.get(self.y_pred, []))))
        gradient = class_sums_known(gradient, self.rows_summing_to_one, self.symbol_roles)
        return common_factors_outside(channels_joined(gradient, self.roles), self.roles)

    def topological(self, result: sympy.Expr) -> list[sympy.Basic]:
        """The nodes that depend on y_pred, each after its arguments (`fold` combines the
        arguments first, and its memo keeps that order)."""
        depends: dict[sympy.Basic, bool] = {}

        def reaches(node: sympy.Basic, args: list[bool]) -> bool:
            return not isinstance(node, fn.CONDITIONS) and (node == self.y_pred or any(args))

        fn.fold(result, reaches, depends)
        self.dependent = {node for node, value in depends.items() if value}
        self.slices = [node for node in self.dependent if isinstance(node, fn.Channels)]
        return [node for node in depends if node in self.dependent]

    def unbroadcast(self, passed: sympy.Expr, node: sympy.Basic, arg: sympy.Basic) -> sympy.Expr:
        """What `node` passes to `arg`, summed over the roles `arg` lacks: the passed value
        has the node's roles at least (broadcast), so a role it lacks is a count of copies
        (a `ReduceSum` over a role its operand lacks)."""
        extra = (self.roles(passed) | self.roles(node)) - self.roles(arg)
        if Role.CLASS in extra:
            passed = self.in_the_shape_of(passed, node)
        return fn.ReduceSum(passed, fn.encode_roles(extra)) if extra else passed

    def in_the_shape_of(self, adjoint: sympy.Expr, node: sympy.Basic) -> sympy.Expr:
        """`adjoint`, summed over the classes next, broadcast to `node`'s class axis where
        that is y_pred's (or a slice's) and the adjoint's is y_true's alone, which may have
        size 1 (LANGUAGE.md 6.2): the adjoint of log_softmax(z) in -sum(y * log_softmax(z))
        is -upstream * y, and with y of shape [batch, 1] its sum over z's C classes is
        C times y's, not y's own (`IntoChannels` over all the channels: a broadcast, of
        the factors with the class role alone, so that the others still leave the sum).
        A `onehot` y_true has C classes by its kind."""
        if Role.CLASS not in self.roles(adjoint):
            return adjoint
        sources = [self.y_pred, *self.slices]
        source = next((s for s in sources if self.has_the_class_axis_of(node, s)), None)
        if source is None or self.has_the_class_axis_of(adjoint, source):
            return adjoint
        factors = sympy.Mul.make_args(adjoint)
        per_class = [f for f in factors if Role.CLASS in self.roles(f)]
        rest = [f for f in factors if f not in per_class]
        return sympy.Mul(*rest, fn.IntoChannels(sympy.Mul(*per_class), node, 0, sympy.oo))

    def has_the_class_axis_of(self, expr: sympy.Basic, source: sympy.Basic) -> bool:
        memo = self.class_axis_memo.setdefault(source, {})
        return fn.has_the_class_axis_of(expr, source, self.roles, self.rows_summing_to_one, memo)

    def passed(self, node: sympy.Basic, index: int, adjoint: sympy.Expr) -> sympy.Expr | None:
        """What `node` passes down to its argument `index`, given its adjoint."""
        if isinstance(node, CONSTANT):
            return sympy.S.Zero
        if isinstance(node, sympy.Add):
            return adjoint
        if isinstance(node, sympy.Mul):
            others = [arg for i, arg in enumerate(node.args) if i != index]
            return product(adjoint, *others)
        rule = _RULES.get(type(node)) or next(
            (rule for kind, rule in _RULES.items() if isinstance(node, kind)), None
        )
        if rule is not None:
            return rule(self, node, index, adjoint)
        if isinstance(node, sympy.Function):
            try:
                partial = node.fdiff(index + 1)
            except (ArgumentIndexError, NotImplementedError, AttributeError):
                return None
            return product(adjoint, partial) if _in_vocabulary(partial) else None
        return None

    # ------------------------------------------------------------ rules

    def power(self, node: sympy.Pow, index: int, adjoint: sympy.Expr) -> sympy.Expr:
        base, exponent = node.args
        if index == 1:
            return product(adjoint, node, sympy.log(base))
        if exponent.is_number and not exponent.is_integer and exponent < 1:
            return product(adjoint, exponent, node, 1 / base)  # sqrt: x / (2 sqrt(x)) reuses it
        if not exponent.is_integer and _at_least_a_positive_number(base):
            return product(adjoint, exponent, node / base)  # one division, not a second power
        if not exponent.is_number and not _floored(base):
            return product(adjoint, exponent, _power_of_a_param(base, exponent - 1))
        return product(adjoint, exponent, base ** (exponent - 1))

    def absolute(self, node: sympy.Abs, index: int, adjoint: sympy.Expr) -> sympy.Expr:
        """adjoint * sign(a), without the sign where the adjoint has |a|^k or a^k among
        its factors: sign(a) |a|^k is a |a|^(k - 1) (Fair's |a| / (1 + x) sign(a) is
        a / (1 + x)), and sign(a) a^k is |a| a^(k - 1) (|a|^3, which SymPy writes
        a^2 |a|, passes 3 a |a|): the sign is a pass fewer."""
        a = node.args[0]
        factors = sympy.Mul.make_args(adjoint)
        for factor in factors:
            base, exponent = factor.as_base_exp()
            if not (exponent.is_Integer and exponent > 0):
                continue
            rest = _without(factors, factor)
            if base == node:
                return product(*rest, a, node ** (exponent - 1))
            if base == a or (base == -a and exponent.is_even):
                return product(*rest, node, a ** (exponent - 1))
        return product(adjoint, Sign(a))

    def where(self, node: fn.Where, index: int, adjoint: sympy.Expr) -> sympy.Expr:
        condition = node.args[0]
        if index == 1:
            return fn.Where(condition, adjoint, sympy.S.Zero)
        return fn.Where(sympy.Not(condition), adjoint, sympy.S.Zero)

    def reduce_sum(self, node: fn.ReduceSum, index: int, adjoint: sympy.Expr) -> sympy.Expr:
        missing = node.removed_roles - self.roles(node.args[0])
        return product(adjoint, count(missing))

    def reduce_mean(
        self, node: fn.ReduceMean, index: int, adjoint: sympy.Expr
    ) -> sympy.Expr | None:
        x = node.args[0]
        present = node.removed_roles & self.roles(x)
        if Role.CLASS in present and x.has(fn.Channels):
            return None  # a mean over a slice of channels: counts know C, not the slice
        return product(adjoint, fn.InverseCount(fn.encode_roles(present)) if present else 1)

    def log_sum_exp(self, node: fn.LogSumExp, index: int, adjoint: sympy.Expr) -> sympy.Expr:
        """softmax(x), as exp(x - logsumexp(x)), which reads the forward pass's value. SymPy
        takes a log out of an exp, so for x = z + log(w) that is w exp(z - logsumexp(x)),
        0 * inf where w is 0 and z far above the weighted logits: there (over the classes)
        softmax(x) itself."""
        x = node.args[0]
        missing = node.removed_roles - self.roles(x)
        derivative = sympy.exp(x - node)
        if not isinstance(derivative, sympy.exp) and node.args[1] == fn.CLASS_MASK:
            derivative = fn.Softmax(x)
        return product(adjoint, derivative, count(missing))

    def log_of_sum(self, node: fn.LogOfSum, index: int, adjoint: sympy.Expr) -> sympy.Expr:
        """1 / sum(x) as exp(-log(sum(x))), the node's own value: its sum is not
        computed in a half precision, where it may overflow. A role x lacks was summed
        count times over, as in `reduce_sum`."""
        missing = node.removed_roles - self.roles(node.args[0])
        return product(adjoint, sympy.exp(-node), count(missing))

    def extremum(self, node: fn.Reduction, index: int, adjoint: sympy.Expr) -> sympy.Expr:
        x = node.args[0]
        present = node.removed_roles & self.roles(x)
        chosen = selector(sympy.Eq(x, node, evaluate=False))
        ties = fn.ReduceSum(chosen, fn.encode_roles(present)) if present else sympy.S.One
        return product(adjoint, chosen, 1 / ties)

    def softmax(self, node: fn.Softmax, index: int, adjoint: sympy.Expr) -> sympy.Expr:
        """s * (A - sum(A * s)) for s = softmax(z) and the adjoint A. Where a term of A has
        a label's one-hot row, s times it is s at the label times it (onehot(y) * s is
        onehot(y) * s[y]), the forward pass's probability pt of the true class, as
        `functions.picked_class` takes the sum. So the chain rule of pt^q is
        q pt^(q - 1) * pt * (onehot(y) - s), which is q pt^q (onehot(y) - s): 0 where pt
        is 0 (a label outside [0, C), or an underflow), where q pt^(q - 1) * s *
        (onehot(y) - pt) was infinity times 0."""
        weighted = fn.ReduceSum(adjoint * node, fn.CLASS_MASK)
        terms = sympy.Add.make_args(adjoint)
        at_labels = [_at_its_label(node, term) for term in terms]
        if at_labels == [node * term for term in terms]:
            return product(node, adjoint - weighted)
        return sympy.Add(*at_labels) - node * weighted

    def log_softmax(self, node: fn.LogSoftmax, index: int, adjoint: sympy.Expr) -> sympy.Expr:
        softmax = fn.Softmax(*node.args)
        probabilities = softmax if softmax in self.dependent else sympy.exp(node)
        total = fn.ReduceSum(self.in_the_shape_of(adjoint, node), fn.CLASS_MASK)
        return adjoint - probabilities * total

    def take_class(self, node: fn.TakeClass, index: int, adjoint: sympy.Expr) -> sympy.Expr:
        return adjoint * fn.OneHot(node.args[1]) if index == 0 else sympy.S.Zero

    def channel(self, node: fn.Channel, index: int, adjoint: sympy.Expr) -> sympy.Expr:
        x, position = node.args
        stop = sympy.oo if position == -1 else position + 1
        return fn.IntoChannels(adjoint, x, position, stop) if index == 0 else sympy.S.Zero

    def channels(self, node: fn.Channels, index: int, adjoint: sympy.Expr) -> sympy.Expr:
        x, start, stop = node.args
        single = stop - start == 1 if stop != sympy.oo else start == -1
        if single and Role.CLASS in self.roles(adjoint):  # one channel, broadcast over others
            adjoint = fn.ReduceSum(adjoint, fn.CLASS_MASK)
        return fn.IntoChannels(adjoint, x, start, stop) if index == 0 else sympy.S.Zero

    def clipped_log(
        self, node: fn.ClippedLog, index: int, adjoint: sympy.Expr
    ) -> sympy.Expr | None:
        x = node.args[0]
        return product(adjoint, fn.Clip(*node.args).fdiff(1), 1 / x) if index == 0 else None

    def huber(self, node: fn.Huber, index: int, adjoint: sympy.Expr) -> sympy.Expr | None:
        x, delta = node.args
        return product(adjoint, fn.Clip(x, -delta, delta)) if index == 0 else None

    def softplus_pair(self, node: fn.SoftplusPair, index: int, adjoint: sympy.Expr) -> sympy.Expr:
        a, b, x = node.args
        partials = {
            0: fn.Softplus(-x),
            1: fn.Softplus(x),
            2: b * fn.Sigmoid(x) - a * fn.Sigmoid(-x),
        }
        return product(adjoint, partials[index])

    def cross_entropy(
        self, node: sympy.Basic, index: int, adjoint: sympy.Expr
    ) -> sympy.Expr | None:
        """A fused cross-entropy passes softmax(z) * sum(y) - y to the logits, y a label's
        one-hot row for a sparse one; y or the label gets nothing from this rule."""
        if isinstance(node, fn.SoftmaxCrossEntropy):
            y, z = node.args
            logits = 1
        else:
            (z, label), logits = node.args, 0
            y = fn.OneHot(label)
        if index != logits:
            return None
        return product(adjoint, fn.Softmax(z) * fn.ReduceSum(y, fn.CLASS_MASK) - y)


def _at_its_label(x: sympy.Expr, term: sympy.Expr) -> sympy.Expr:
    """x * term, with x taken at the label's class where term has that label's one-hot
    row (and only one): onehot(y) * x is onehot(y) * x[y]."""
    if (row := fn.one_hot_row(sympy.Mul.make_args(term))) is None:
        return x * term
    return fn.TakeClass(x, row.args[0]) * term


def _in_vocabulary(expr: sympy.Expr) -> bool:
    """Whether every function of a derivative is the loss vocabulary's (a built-in's row or
    a loss function), which every target prints; SymPy's own (polygamma, Derivative) are
    not."""
    return all(
        isinstance(node, fn.LossFunction) or row_of(type(node)) is not None
        for node in expr.atoms(sympy.Function, sympy.Derivative, sympy.Subs)
    )


_Rule = Callable[[_Backward, sympy.Basic, int, sympy.Expr], sympy.Expr | None]

_RULES: dict[type, _Rule] = {
    sympy.Pow: _Backward.power,
    sympy.Abs: _Backward.absolute,
    fn.Where: _Backward.where,
    fn.ReduceSum: _Backward.reduce_sum,
    fn.ReduceMean: _Backward.reduce_mean,
    fn.LogSumExp: _Backward.log_sum_exp,
    fn.LogOfSum: _Backward.log_of_sum,
    fn.ReduceMax: _Backward.extremum,
    fn.ReduceMin: _Backward.extremum,
    fn.Softmax: _Backward.softmax,
    fn.LogSoftmax: _Backward.log_softmax,
    fn.TakeClass: _Backward.take_class,
    fn.Channel: _Backward.channel,
    fn.Channels: _Backward.channels,
    fn.ClippedLog: _Backward.clipped_log,
    fn.Huber: _Backward.huber,
    fn.SoftplusPair: _Backward.softplus_pair,
    fn.SoftmaxCrossEntropy: _Backward.cross_entropy,
    fn.SparseSoftmaxCrossEntropy: _Backward.cross_entropy,
}
"""The partial-derivative rules of the nodes that are not plain `fdiff` functions."""
