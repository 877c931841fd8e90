"""Named stable rewrites (the ordered `RULES`) and the bounded simplification around them.

Each rule is one function whose docstring states its law; it looks at the direct
structure of one node and returns the replacement, or None. Every law holds on the
whole domain, and no rule looks through `Clip`, `Where`, `Minimum` or `Maximum`, so a
clipped `log(clip(softmax(z)))` keeps its clip (`safe_divisor_in_guarded_branch` looks at a
`Where` itself: a division its own condition guards). `rewrite` applies the rules at every
node (before and after its children are rewritten) until nothing changes, simplifies
cheaply, and applies them again. Lowering is `lower.py`'s; printing is the printer's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import sympy
from sympy.codegen.cfunctions import expm1, log1p

from lossdsl.symbolic.functions import (
    CLASS_MASK,
    NUM_CLASSES,
    LogCosh,
    LogSoftmax,
    LogSumExp,
    Maximum,
    Minimum,
    OneHot,
    ReduceMean,
    ReduceSum,
    Sigmoid,
    Softmax,
    Softplus,
    TakeClass,
    Where,
    decode_roles,
    encode_roles,
    one_hot_row,
    with_args,
)
from lossdsl.symbolic.loss import AppliedRewrite
from lossdsl.typed import Role

MAX_PASSES = 8
"""Whole-tree passes before `rewrite` stops looking for more rewrites."""

MAX_STEPS_AT_NODE = 16
"""Rules applied at one node in a row, at most (no rule undoes another)."""

SIMPLIFY_MAX_OPS = 40
"""Expressions with more operations than this are left as SymPy builds them."""

SIMPLIFY_NODE_LIMIT = 10 * SIMPLIFY_MAX_OPS
"""Expressions with more nodes than this have more operations too, and are left as they
are before their operations are counted (`count_ops` walks all of a long sum)."""


# ---------------------------------------------------------------- the rules


def _one_plus(expr: sympy.Basic) -> sympy.Expr | None:
    """x for a sum 1 + x, else None."""
    if isinstance(expr, sympy.Add):
        constant, rest = expr.as_coeff_Add()
        if constant == 1:
            return rest
    return None


def _log_of_one_plus(expr: sympy.Basic) -> sympy.Expr | None:
    """x for log(1 + x) or log1p(x), else None."""
    if isinstance(expr, sympy.log):
        return _one_plus(expr.args[0])
    return expr.args[0] if isinstance(expr, log1p) else None


def _negated(expr: sympy.Basic | None) -> sympy.Expr | None:
    """x for a product -1 * x, else None."""
    if isinstance(expr, sympy.Mul) and expr.args[0] == -1:
        return sympy.Mul(*expr.args[1:])
    return None


def softplus_of_log_sigmoid(expr: sympy.Basic) -> sympy.Basic | None:
    """log(sigmoid(z)) = -softplus(-z)."""
    if isinstance(expr, sympy.log) and isinstance(expr.args[0], Sigmoid):
        return -Softplus(-expr.args[0].args[0])
    return None


def softplus_of_log_one_plus_exp(expr: sympy.Basic) -> sympy.Basic | None:
    """log(1 + exp(x)) = log1p(exp(x)) = softplus(x)."""
    power = _log_of_one_plus(expr)
    return Softplus(power.args[0]) if isinstance(power, sympy.exp) else None


def softplus_of_log_two_exps(expr: sympy.Basic) -> sympy.Basic | None:
    """log(exp(a) + exp(b)) = a + softplus(b - a), and log(c + exp(b)) = log(c) +
    softplus(b - log(c)) for c > 0, a log1p(c + exp(b)) as log(1 + c + exp(b)), where
    either exp may be a sum of exps, exp(logsumexp(x)): the exps overflow from a or b = 89
    in float32 (a margin or ranking loss over two scores, log(2 cosh(x)) written out, a
    negative binomial's log(r + exp(s)), the N-pair loss's log(1 + sum(exp(s), where=m)))."""
    if isinstance(expr, log1p):
        total = 1 + expr.args[0]
    elif isinstance(expr, sympy.log):
        total = expr.args[0]
    else:
        return None
    terms = sympy.Add.make_args(total)
    exponents = {term: exponent for term in terms if (exponent := _exponent(term)) is not None}
    if len(terms) == 2 and len(exponents) == 2:
        a, b = exponents.values()
    elif len(exponents) == 1 and (rest := total - next(iter(exponents))).is_positive:
        a, b = sympy.log(rest), next(iter(exponents.values()))
    else:
        return None
    return a + Softplus(b - a)


def log_softmax_of_log_softmax(expr: sympy.Basic) -> sympy.Basic | None:
    """log(softmax(z)) = log_softmax(z)."""
    if isinstance(expr, sympy.log) and isinstance(expr.args[0], Softmax):
        return LogSoftmax(expr.args[0].args[0])
    return None


def log_softmax_of_log_of_gathered_softmax(expr: sympy.Basic) -> sympy.Basic | None:
    """log(softmax(z)[y]) = log_softmax(z)[y] + log(1[y]): the true class's log-probability
    of a label, -log(p_t) written with p_t = sum(onehot(y) * softmax(z)). softmax(z)[y]
    underflows to 0 where the logits are far apart, and its log is -inf there. The
    gather of 1 is 1 for a label in [0, C) and 0 outside, so a label that selects
    nothing still gives log(0), as it did."""
    if not isinstance(expr, sympy.log) or not isinstance(expr.args[0], TakeClass):
        return None
    probabilities, label = expr.args[0].args
    if not isinstance(probabilities, Softmax):
        return None
    selected = TakeClass(sympy.S.One, label)
    return TakeClass(LogSoftmax(probabilities.args[0]), label) + sympy.log(selected)


def logsumexp_of_log_of_one_minus_gathered_softmax(expr: sympy.Basic) -> sympy.Basic | None:
    """log(1 - softmax(z)[y]) = logsumexp(log_softmax(z) + log(1 - onehot(y))): the log of
    the other classes' probability, for a label y (unlikelihood training). 1 - p_t is 0 in
    float32 when the true class's logit is 17 above the others', and its log -inf. A
    label outside [0, C) gives log(1) = 0 either way."""
    gathered = _negated(_log_of_one_plus(expr))
    if not isinstance(gathered, TakeClass) or not isinstance(gathered.args[0], Softmax):
        return None
    probabilities, label = gathered.args
    others = sympy.log(1 - OneHot(label))
    return LogSumExp(LogSoftmax(probabilities.args[0]) + others, CLASS_MASK)


def logsumexp_of_log_of_weighted_softmax(expr: sympy.Basic) -> sympy.Basic | None:
    """log(sum(w * softmax(z), class)) = logsumexp(log_softmax(z) + log(w)), for weights
    w >= 0 (soft labels): the likelihood of a mixture, or Poly-1's -log(p_t) with p_t =
    sum(y * softmax(z)). softmax(z) underflows to 0 at the weighted classes where the
    logits are far apart, and the sum's log is -inf there. (logsumexp(z + log(w)) -
    logsumexp(z) is the same, but subtracts two values as large as the logits.)"""
    if not isinstance(expr, sympy.log) or not isinstance(expr.args[0], ReduceSum):
        return None
    body, removed = expr.args[0].args
    factors = sympy.Mul.make_args(body)
    softmaxes = [factor for factor in factors if isinstance(factor, Softmax)]
    if removed != CLASS_MASK or len(softmaxes) != 1:
        return None
    weight = sympy.Mul(*(factor for factor in factors if factor is not softmaxes[0]))
    if not weight.is_nonnegative or weight.is_number:
        return None
    z = softmaxes[0].args[0]
    return LogSumExp(LogSoftmax(z) + sympy.log(weight), CLASS_MASK)


def logsumexp_of_log_sum_exp(expr: sympy.Basic) -> sympy.Basic | None:
    """log(sum(exp(x), r)) = logsumexp(x, r), and log(mean(exp(x), r)) = logsumexp(x, r) -
    log(n) for the n elements the mean takes (`sum(1, r)`, a count); a masked sum of
    exp(x) (`where=`, InfoNCE's positives) is the logsumexp of x with -inf outside the
    mask."""
    if isinstance(expr, sympy.log) and isinstance(expr.args[0], ReduceSum | ReduceMean):
        return _exponent(expr.args[0])
    return None


def _exponent(term: sympy.Basic) -> sympy.Expr | None:
    """b for exp(b); for a sum of exp(x) over the roles r, logsumexp(x, r), with x at -inf
    where a mask (a `Where` with a 0 branch) leaves an element out; for their mean over n
    elements, logsumexp(x, r) - log(n). None for any other term."""
    if isinstance(term, sympy.exp):
        return term.args[0]
    if not isinstance(term, ReduceSum | ReduceMean):
        return None
    body, removed = term.args
    if isinstance(body, Where) and body.args[2] == 0 and isinstance(body.args[1], sympy.exp):
        exponent = Where(body.args[0], body.args[1].args[0], -sympy.oo)  # a masked sum
    elif isinstance(body, sympy.exp):
        exponent = body.args[0]
    else:
        return None
    result = LogSumExp(exponent, removed)
    if isinstance(term, ReduceMean):
        return result - sympy.log(ReduceSum(sympy.S.One, removed), evaluate=False)
    return result


def stable_log_cosh(expr: sympy.Basic) -> sympy.Basic | None:
    """log(cosh(x)) = logcosh(x), printed as x + softplus(-2x) - log(2)."""
    if isinstance(expr, sympy.log) and isinstance(expr.args[0], sympy.cosh):
        return LogCosh(expr.args[0].args[0])
    return None


ERFC_TAIL_FROM = sympy.Integer(8)
"""Where `log_erfc_tail` switches to erfc's asymptotic series: erfc(8) = 1.1e-29 is still a
normal float32, and 10 terms of the series are exact to float64 from there on."""

ERFC_TAIL_TERMS = 10


def log_erfc_tail(expr: sympy.Basic) -> sympy.Basic | None:
    """log(erfc(x)) = where(x < 8, log(erfc(min(x, 8))), -u^2 - log(u) - log(pi) / 2 +
    log1p(s)) with u = max(x, 8) and s = sum over n = 1..10 of (-1)^n (2n - 1)!! / (2u^2)^n.

    erfc(x) underflows to 0 beyond x = 9.2 in float32 and 26.5 in float64, so log(erfc(x))
    is -inf there; the asymptotic series of erfc(x) exp(x^2) x sqrt(pi) is finite and exact
    to float64 (relative error below 1e-15) for x >= 8. The min and max keep the branch not
    taken finite, so that its zero gradient is not NaN.
    """
    if not isinstance(expr, sympy.log) or not isinstance(expr.args[0], sympy.erfc):
        return None
    x = expr.args[0].args[0]
    if isinstance(x, Minimum) and x.args[1] == ERFC_TAIL_FROM:
        return None  # the rule's own small-x branch
    u = Maximum(x, ERFC_TAIL_FROM)
    w = 1 / (2 * u**2)
    series: sympy.Expr = sympy.S.Zero
    for n in range(ERFC_TAIL_TERMS, 0, -1):  # Horner: w (c1 + w (c2 + ...))
        series = w * ((-1) ** n * sympy.factorial2(2 * n - 1) + series)
    tail = -(u**2) - sympy.log(u) - sympy.log(sympy.pi) / 2 + log1p(series, evaluate=False)
    head = sympy.log(sympy.erfc(Minimum(x, ERFC_TAIL_FROM)))
    return Where(sympy.StrictLessThan(x, ERFC_TAIL_FROM), head, tail)


def log_of_exp(expr: sympy.Basic) -> sympy.Basic | None:
    """log(exp(x)) = x.

    SymPy's own functions are built unevaluated (`builtins`), so a log of an exp stays
    one: log(exp(-exp(z))) is -inf in float32 from z = 4.5 (its value is -exp(z)), as
    log(1 - p) is for p = 1 - exp(-exp(z)) written as a let.
    """
    if isinstance(expr, sympy.log) and isinstance(expr.args[0], sympy.exp):
        return expr.args[0].args[0]
    return None


def log_of_one_minus_exp(expr: sympy.Basic) -> sympy.Basic | None:
    """log(1 - exp(x)) = log(-expm1(x)) (also written log1p(-exp(x))).

    Where x is close to 0 from below, exp(x) rounds to 1 and 1 - exp(x) to 0: the log is
    -inf and its gradient divides by 0 (the complementary log-log likelihood
    log(1 - exp(-exp(z))) at z = -50, whose value is -50). expm1 keeps those digits.
    """
    power = _negated(_log_of_one_plus(expr))
    if not isinstance(power, sympy.exp):
        return None
    return sympy.log(-expm1(power.args[0], evaluate=False), evaluate=False)


def log1p_of_one_plus(expr: sympy.Basic) -> sympy.Basic | None:
    """log(1 + x) = log1p(x)."""
    if isinstance(expr, sympy.log) and (rest := _one_plus(expr.args[0])) is not None:
        return log1p(rest, evaluate=False)
    return None


def _beside_one(
    expr: sympy.Basic, constant: int, function: type[sympy.Function], scale: sympy.Expr
) -> tuple[sympy.Expr, sympy.Expr] | None:
    """(the other terms, x) for a sum `constant + f(x) / scale + others` with f `function`
    (scale -1: `constant - f(x)`), else None."""
    if not isinstance(expr, sympy.Add):
        return None
    found, rest = expr.as_coeff_Add()
    if found != constant:
        return None
    for term in sympy.Add.make_args(rest):
        if isinstance(applied := term * scale, function):
            return rest - term, applied.args[0]
    return None


def expm1_of_exp_minus_one(expr: sympy.Basic) -> sympy.Basic | None:
    """exp(x) - 1 = expm1(x) (inside a longer sum too)."""
    if (found := _beside_one(expr, -1, sympy.exp, sympy.S.One)) is None:
        return None
    others, x = found
    return others + expm1(x, evaluate=False)


def one_minus_sigmoid(expr: sympy.Basic) -> sympy.Basic | None:
    """1 - sigmoid(z) = sigmoid(-z) (inside a longer sum too)."""
    if (found := _beside_one(expr, 1, Sigmoid, sympy.S.NegativeOne)) is None:
        return None
    others, z = found
    return others + Sigmoid(-z)


def sigmoid_of_one_plus_tanh(expr: sympy.Basic) -> sympy.Basic | None:
    """1 + tanh(x) = 2 sigmoid(2x) and 1 - tanh(x) = 2 sigmoid(-2x) (inside a longer sum
    too): at x = -20 the first is 0 in float32, log((1 + tanh(x)) / 2) -inf where it is
    -40."""
    for sign in (sympy.S.One, sympy.S.NegativeOne):
        if (found := _beside_one(expr, 1, sympy.tanh, sign)) is not None:
            others, x = found
            return others + 2 * Sigmoid(2 * sign * x)
    return None


def tanh_of_two_sigmoids_minus_one(expr: sympy.Basic) -> sympy.Basic | None:
    """2 sigmoid(x) - 1 = tanh(x / 2) and 1 - 2 sigmoid(x) = -tanh(x / 2) (inside a longer
    sum too): at x = 1e-8 the first is 0 in float32, where tanh(x / 2) is 5e-9, and it is
    one op where the sigmoid, its doubling and the subtraction are three."""
    for constant, scale in ((-1, sympy.Rational(1, 2)), (1, sympy.Rational(-1, 2))):
        if (found := _beside_one(expr, constant, Sigmoid, scale)) is not None:
            others, x = found
            return others - constant * sympy.tanh(x / 2)
    return None


def erfc_of_one_plus_erf(expr: sympy.Basic) -> sympy.Basic | None:
    """1 + erf(x) = erfc(-x) and 1 - erf(x) = erfc(x) (inside a longer sum too): the
    normal distribution's CDF written (1 + erf(z / sqrt(2))) / 2 is 0 in float64 from
    z = -8.3 (its log, through `log_erfc_tail`, is finite down to -1e154)."""
    for sign in (sympy.S.One, sympy.S.NegativeOne):
        if (found := _beside_one(expr, 1, sympy.erf, sign)) is not None:
            others, x = found
            return others + sympy.erfc(-sign * x, evaluate=False)
    return None


def erfc_of_one_minus_half_erfc(expr: sympy.Basic) -> sympy.Basic | None:
    """1 - erfc(x) / 2 = erfc(-x) / 2 (inside a longer sum too): one minus the normal
    distribution's CDF written erfc(-z / sqrt(2)) / 2."""
    if (found := _beside_one(expr, 1, sympy.erfc, sympy.Integer(-2))) is None:
        return None
    others, x = found
    return others + sympy.erfc(-x, evaluate=False) / 2


def log_of_product(expr: sympy.Basic) -> sympy.Basic | None:
    """log(a x) = log(a) + log(x) and log(a^b) = b log(a) for a > 0, so that the rules for
    log(a) apply: a density's log written log(exp(-e^2 / 2) / (s sqrt(2 pi))), a likelihood's
    log(sigmoid(z)^y (1 - sigmoid(z))^(1 - y)), half an erfc (the normal distribution's CDF).
    """
    if not isinstance(expr, sympy.log):
        return None
    argument = expr.args[0]
    if all(isinstance(node, sympy.Symbol) or node.is_number for node in _factors_of(argument)):
        return None  # no rule for its factors' logs: log(2 pi), log(nu pi) stay one log
    if isinstance(argument, sympy.Pow) and argument.base.is_positive:
        return argument.exp * sympy.log(argument.base, evaluate=False)
    if not isinstance(argument, sympy.Mul):
        return None
    factors = sympy.Mul.make_args(argument)
    number = sympy.Mul(*[factor for factor in factors if factor.is_number])
    positive = [factor for factor in factors if not factor.is_number and factor.is_positive]
    rest = [factor for factor in factors if not factor.is_number and not factor.is_positive]
    if not number.is_positive or (number == 1 and not positive):
        return None
    return sympy.Add(
        *([sympy.log(number)] if number != 1 else []),
        *[sympy.log(factor, evaluate=False) for factor in positive],
        *([sympy.log(sympy.Mul(*rest), evaluate=False)] if rest else []),
    )


def _factors_of(expr: sympy.Expr) -> tuple[sympy.Basic, ...]:
    """The factors of a product, the base of a power, else the expression itself."""
    if isinstance(expr, sympy.Mul):
        return expr.args
    return (expr.base,) if isinstance(expr, sympy.Pow) else (expr,)


def one_minus_ratio(expr: sympy.Basic) -> sympy.Basic | None:
    """1 - a/b = (b - a)/b for b != 0 (inside a longer sum too; at b = 0 neither is defined).

    Where a/b is close to 1, 1 - a/b cancels to 0 in floating point and a power of it has a
    NaN gradient (focal Tversky's (1 - ti)^gamma); b - a, once SymPy cancels the terms a
    and b share, is computed without that loss. Only a ratio that is itself a term of the
    sum is taken, so a clip, where, minimum or maximum of a ratio is left as it is, and
    only one whose numerator is not a number: 1 - 1/(1 + exp(-z)) is left to
    `sigmoid_of_reciprocal`, as 1 - sigmoid(z), and then to `one_minus_sigmoid`.
    """
    if not isinstance(expr, sympy.Add):
        return None
    constant, rest = expr.as_coeff_Add()
    if constant != 1:
        return None
    for term in sympy.Add.make_args(rest):
        if not isinstance(term, sympy.Mul) or not term.as_coeff_Mul()[0].is_negative:
            continue
        numerator, denominator = sympy.fraction(-term)
        if numerator.is_number or denominator.is_number:
            continue
        return rest - term + (denominator - numerator) / denominator
    return None


def safe_divisor_in_guarded_branch(expr: sympy.Basic) -> sympy.Basic | None:
    """where(d != 0, e, f) with 1 / b in e, b a factor of d, = the same with
    1 / where(d != 0, b, 1): b itself wherever e is taken.

    Where d is 0 the select takes f, but e is still computed, 1 / b as inf; the select's
    value and first derivative leave it out, but a derivative of that temporary (a
    second derivative, or TensorFlow's first under an outer tape) is 0 * inf, NaN.
    """
    if not isinstance(expr, Where):
        return None
    condition, taken, other = expr.args
    if not (isinstance(condition, sympy.Ne) and condition.rhs == 0):
        return None
    factors = {factor for factor in sympy.Mul.make_args(condition.lhs) if not factor.is_number}
    divisions = {
        node: sympy.Pow(Where(condition, node.base, sympy.S.One), node.exp)
        for node in sympy.preorder_traversal(taken)
        if isinstance(node, sympy.Pow) and node.exp.is_negative and node.base in factors
    }
    if not divisions:
        return None
    return Where(condition, taken.xreplace(divisions), other)


def sigmoid_of_reciprocal(expr: sympy.Basic) -> sympy.Basic | None:
    """1 / (1 + exp(-x)) = sigmoid(x), and (1 + exp(-x))^-k = sigmoid(x)^k for every
    k > 0 (the base is positive): the Savage loss's 1 / (1 + exp(2 m))^2 has a finite
    gradient at a margin of 1e4, where exp(2 m) / (1 + exp(2 m))^3 was inf / inf."""
    is_reciprocal = isinstance(expr, sympy.Pow) and bool(expr.exp.is_negative)
    if is_reciprocal and isinstance(power := _one_plus(expr.base), sympy.exp):
        return Sigmoid(-power.args[0]) ** -expr.exp
    return None


def sigmoid_of_exp_ratio(expr: sympy.Basic) -> sympy.Basic | None:
    """exp(x) / (1 + exp(x)) = sigmoid(x) (the denominator is sigmoid(-x) by then,
    `sigmoid_of_reciprocal`: exp(x) * sigmoid(-x), inf * 0 at x = 1e4)."""
    if not isinstance(expr, sympy.Mul):
        return None
    factors = list(expr.args)
    for power in factors:
        if isinstance(power, sympy.exp) and (partner := Sigmoid(-power.args[0])) in factors:
            factors.remove(power)
            factors.remove(partner)
            return sympy.Mul(*factors) * Sigmoid(power.args[0])
    return None


def softmax_of_exp_ratio(expr: sympy.Basic) -> sympy.Basic | None:
    """exp(z) / sum(exp(z), class) = softmax(z)."""
    if not isinstance(expr, sympy.Mul):
        return None
    factors = list(expr.args)
    for denominator in factors:
        if not isinstance(denominator, sympy.Pow) or denominator.exp != -1:
            continue
        total = denominator.base
        if isinstance(total, ReduceSum) and total.args[1] == CLASS_MASK:
            numerator = total.args[0]
            if isinstance(numerator, sympy.exp) and numerator in factors:
                rest = [f for f in factors if f not in (numerator, denominator)]
                return sympy.Mul(*rest, Softmax(numerator.args[0]))
    return None


def gather_of_onehot_sum(expr: sympy.Basic) -> sympy.Basic | None:
    """sum_c onehot(y)_c * x_c = x at class y (mean: divided by C); 0 for y outside [0, C)."""
    if not isinstance(expr, ReduceSum | ReduceMean):
        return None
    body, removed = expr.args
    roles = decode_roles(removed)
    if Role.CLASS not in roles:
        return None
    terms = sympy.Add.make_args(body)
    taken = [_take_class(term) for term in terms]
    if all(take is None for take in taken):
        return None
    gathered = sympy.Add(*(take for take in taken if take is not None))
    others = sympy.Add(*(term for term, take in zip(terms, taken, strict=True) if take is None))
    outer = roles - {Role.CLASS}
    reduced = type(expr)(gathered, encode_roles(outer)) if outer else gathered
    if isinstance(expr, ReduceMean):
        reduced = reduced / NUM_CLASSES
    return reduced + (type(expr)(others, removed) if others != 0 else 0)


def _take_class(term: sympy.Expr) -> sympy.Expr | None:
    """c * TakeClass(x, y) for a term c * onehot(y) * x, else None."""
    factors = list(sympy.Mul.make_args(term))
    if (row := one_hot_row(factors)) is None:
        return None
    factors.remove(row)
    coefficient, rest = sympy.Mul(*factors).as_coeff_Mul()
    return coefficient * TakeClass(rest, row.args[0])


@dataclass(frozen=True)
class Rule:
    """A named rewrite: `apply` gives a node's replacement or None."""

    name: str
    apply: Callable[[sympy.Basic], sympy.Basic | None]

    @property
    def law(self) -> str:
        return (self.apply.__doc__ or "").strip()


RULES: tuple[Rule, ...] = tuple(
    Rule(function.__name__, function)
    for function in (
        softplus_of_log_sigmoid,
        softplus_of_log_one_plus_exp,
        softplus_of_log_two_exps,
        log_softmax_of_log_softmax,
        log_softmax_of_log_of_gathered_softmax,
        logsumexp_of_log_of_one_minus_gathered_softmax,
        logsumexp_of_log_of_weighted_softmax,
        logsumexp_of_log_sum_exp,
        stable_log_cosh,
        log_erfc_tail,
        log_of_exp,
        log_of_one_minus_exp,
        log1p_of_one_plus,
        expm1_of_exp_minus_one,
        one_minus_sigmoid,
        sigmoid_of_one_plus_tanh,
        tanh_of_two_sigmoids_minus_one,
        erfc_of_one_plus_erf,
        erfc_of_one_minus_half_erfc,
        log_of_product,
        one_minus_ratio,
        safe_divisor_in_guarded_branch,
        sigmoid_of_reciprocal,
        sigmoid_of_exp_ratio,
        softmax_of_exp_ratio,
        gather_of_onehot_sum,
    )
)
"""The rewrites, in the order they are tried at each node."""

RULES_BY_NAME: dict[str, Rule] = {rule.name: rule for rule in RULES}


# ---------------------------------------------------------------- the driver


def rewrite(expr: sympy.Basic) -> tuple[sympy.Basic, tuple[AppliedRewrite, ...]]:
    """`expr` in stable form: rules to a fixpoint, a bounded simplification, rules again."""
    applied: list[AppliedRewrite] = []
    stable = apply_rules(expr, applied)
    simplified = simplify_bounded(stable)
    if simplified != stable:
        simplified = apply_rules(simplified, applied)
    return simplified, tuple(_unique(applied))


def apply_rules(expr: sympy.Basic, applied: list[AppliedRewrite]) -> sympy.Basic:
    """`expr` with the rules applied everywhere until nothing changes (bounded passes)."""
    for _ in range(MAX_PASSES):
        rewritten = _Pass(applied).visit(expr)
        if rewritten == expr:
            break
        expr = rewritten
    return expr


class _Pass:
    """One pass over a tree: rules at each node after its children, so that a rule sees its
    arguments in stable form (log(1 - 1 / (1 + exp(-z))) is log(sigmoid(-z)), then
    -softplus(z), before `log1p_of_one_plus` could take the log as it is written)."""

    def __init__(self, applied: list[AppliedRewrite]) -> None:
        self.applied = applied
        self.done: dict[sympy.Basic, sympy.Basic] = {}

    def visit(self, node: sympy.Basic) -> sympy.Basic:
        if node not in self.done:
            args = tuple(self.visit(arg) for arg in node.args)
            self.done[node] = self.at_node(with_args(node, args))
        return self.done[node]

    def at_node(self, node: sympy.Basic) -> sympy.Basic:
        for _ in range(MAX_STEPS_AT_NODE):
            replaced = next(
                (
                    (rule, after)
                    for rule in RULES
                    if (after := rule.apply(node)) is not None and after != node
                ),
                None,
            )
            if replaced is None:
                break
            rule, after = replaced
            self.applied.append(AppliedRewrite(rule.name, node, after))
            node = after
        return node


def _unique(applied: list[AppliedRewrite]) -> list[AppliedRewrite]:
    seen: set[tuple[str, sympy.Basic]] = set()
    unique = []
    for step in applied:
        if (step.rule, step.before) not in seen:
            seen.add((step.rule, step.before))
            unique.append(step)
    return unique


# ---------------------------------------------------------------- simplification


def simplify_bounded(expr: sympy.Basic) -> sympy.Basic:
    """A cheap canonical form: common factors pulled out where that shortens `expr`.

    Small expressions only (`SIMPLIFY_MAX_OPS`), and a candidate is taken only when it
    is shorter and uses no function more often than `expr` does, so simplification
    never brings back an `exp` or `log` that a rule removed.
    """
    if not isinstance(expr, sympy.Expr) or _larger_than(expr, SIMPLIFY_NODE_LIMIT):
        return expr
    if sympy.count_ops(expr) > SIMPLIFY_MAX_OPS:
        return expr
    candidate = sympy.factor_terms(expr)
    shorter = sympy.count_ops(candidate) < sympy.count_ops(expr)
    return candidate if shorter and _no_new_functions(candidate, expr) else expr


def _larger_than(expr: sympy.Basic, nodes: int) -> bool:
    """Whether `expr` has more than `nodes` nodes (stops counting there)."""
    return any(count > nodes for count, _ in enumerate(sympy.preorder_traversal(expr), 1))


def _no_new_functions(candidate: sympy.Basic, original: sympy.Basic) -> bool:
    before = _function_counts(original)
    return all(before[kind] >= count for kind, count in _function_counts(candidate).items())


def _function_counts(expr: sympy.Basic) -> Counter[type]:
    return Counter(type(node) for node in sympy.preorder_traversal(expr) if node.is_Function)
