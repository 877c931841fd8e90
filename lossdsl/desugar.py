"""The checker's desugarings as named rules, each with its law.

The checker applies them while it builds the typed tree (with the functions below where
the rewrite is more than a lookup) and records the name of each one that fires
(`CheckedSpec.desugarings`, listed by `lossdsl explain`). Fixture pairs (spec text in,
the typed tree's text out, `typed.typed_text`) are in `tests/test_desugar.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lossdsl.kinds import DEFAULT_KINDS, Argument
from lossdsl.source import Span
from lossdsl.typed import (
    InputInfo,
    Role,
    Roles,
    TAdd,
    TCall,
    TCompare,
    TCondition,
    TConst,
    TExpr,
    TInput,
    TMul,
    TNeg,
    TPow,
    last_role,
    walk,
)


def default_input(argument: Argument, taken: set[str]) -> InputInfo:
    """The input bound where a spec declares none for `argument` (rule DEFAULT_INPUT): its
    default name takes `_` suffixes until it is free (`input p: onehot` leaves y_pred `p_`)."""
    name, kind = DEFAULT_KINDS[argument]
    while name in taken:
        name += "_"
    return InputInfo(name, kind, argument, None)


def square_as_power(call: TCall) -> TPow:
    """`square(x)` as the typed tree spells it, `x^2` (rule SQUARE_AS_POWER)."""
    return TPow(call.args[0], TConst(2.0, call.span), call.span, call.roles)


def is_constant(expr: TExpr) -> bool:
    """A value with no roles computed from numbers and scalar params only."""
    return not expr.roles and not any(isinstance(t, TInput) for t in walk([expr]))


def lift_outer_mean(loss: TExpr) -> TExpr | None:
    """What the Keras call returns for `loss = mean(x)`: x (rule LIFT_OUTER_MEAN).

    Liftable: `mean(x)` removing x's last role or all of it, where x has batch and no
    class role; and sums, negations and constant multiples of liftable terms. None if
    `loss` is not liftable.
    """
    match loss:
        case TCall(builtin="mean", args=(arg,), reduced=reduced) if (
            Role.BATCH in arg.roles
            and Role.CLASS not in arg.roles
            and reduced in (last_role(arg.roles), arg.roles)
        ):
            return arg
        case TAdd(operands=operands, negated=negated, span=span):
            terms = [lift_outer_mean(operand) for operand in operands]
            lifted_terms = [term for term in terms if term is not None]
            if len(lifted_terms) < len(terms):
                return None
            roles = frozenset().union(*(term.roles for term in lifted_terms))
            return TAdd(tuple(lifted_terms), negated, span, roles)
        case TNeg(operand=operand, span=span):
            inner = lift_outer_mean(operand)
            return None if inner is None else TNeg(inner, span, inner.roles)
        case TMul(operands=operands, inverted=inverted, span=span):
            variable = [i for i, operand in enumerate(operands) if not is_constant(operand)]
            if len(variable) != 1 or inverted[variable[0]]:
                return None
            inner = lift_outer_mean(operands[variable[0]])
            if inner is None:
                return None
            factors = tuple(inner if i == variable[0] else f for i, f in enumerate(operands))
            return TMul(factors, inverted, span, inner.roles)
    return None


def reduce_where(
    name: str, value: TExpr, condition: TCondition, reduced: Roles, span: Span
) -> TExpr:
    """`name(value, where=condition)` over the roles `reduced` (rule REDUCTION_WHERE): a
    reduction of `where(condition, value, neutral)`; an empty selection gives 0 (`sum`,
    `mean`, `max`, `min`) or -inf (`logsumexp`), with finite gradients (LANGUAGE.md 6.5)."""
    roles = value.roles | condition.roles

    def chosen(a: TExpr, b: float) -> TCall:
        return TCall("where", (condition, a, TConst(b, span)), span, condition.roles | a.roles)

    def reduce(reduction: str, argument: TExpr, removed: Roles) -> TExpr:
        removed = removed & argument.roles
        if not removed:
            return argument
        return TCall(reduction, (argument,), span, argument.roles - removed, reduced=removed)

    def when_selected(result: TExpr, empty: float, selected: TExpr) -> TCall:
        some = TCompare(">", selected, TConst(0.0, span), span, selected.roles)
        return TCall("where", (some, result, TConst(empty, span)), span, result.roles)

    if name == "sum":
        return reduce("sum", chosen(value, 0.0), reduced)
    if name == "mean":
        share = reduce("mean", chosen(TConst(1.0, span), 0.0), reduced)  # of those taken
        total = reduce("mean", chosen(value, 0.0), reduced)
        count = when_selected(share, 1.0, share)
        return TMul((total, count), (False, True), span, roles - reduced)
    if name == "logsumexp":
        return reduce("logsumexp", chosen(value, -math.inf), reduced)
    neutral = -math.inf if name == "max" else math.inf
    # whether any is taken: their count, which is what a spec writes for it, computed once
    taken = reduce("sum", chosen(TConst(1.0, span), 0.0), reduced)
    return when_selected(reduce(name, chosen(value, neutral), reduced), 0.0, taken)


@dataclass(frozen=True)
class Desugaring:
    """A named desugaring and its law (`spec form` = `what the typed tree holds`)."""

    name: str
    law: str


DEFAULT_INPUT = Desugaring(
    "default_input",
    "no `input` for an argument = `input y: target` (y_true) or `input p: prob` (y_pred), "
    "renamed `y_`, `p_`... where the name is taken",
)
INLINE_LET = Desugaring(
    "inline_let", "a let's name = its value: every use of `let a = e` is the node `e` itself"
)
NAMED_CONSTANT = Desugaring(
    "named_constant", "a valued built-in constant = its number: `eps` = 1e-07, `pi` = 3.14159..."
)
DEFAULT_ARGUMENTS = Desugaring(
    "default_arguments",
    "omitted trailing arguments = the built-in's defaults: `clip(x)` = `clip(x, eps, 1 - eps)`",
)
SQUARE_AS_POWER = Desugaring("square_as_power", "`square(x)` = `x^2`")
DEFAULT_AXIS = Desugaring(
    "default_axis",
    "a reduction without `axis=` = `axis=-1`: it removes its argument's last role (class, "
    "else spatial, else batch)",
)
REDUCTION_WHERE = Desugaring(
    "reduction_where",
    "`sum(x, where=c)` = `sum(where(c, x, 0))`; `mean(x, where=c)` = `mean(where(c, x, 0)) / "
    "k` with k the share of elements taken (1 if none); `max(x, where=c)` = "
    "`max(where(c, x, -inf))` where any is taken, else 0 (`min` alike); "
    "`logsumexp(x, where=c)` = `logsumexp(where(c, x, -inf))`",
)
LIFT_OUTER_MEAN = Desugaring(
    "lift_outer_mean",
    "`loss = mean(x)` = the Keras call returns x and Keras's mean reduction averages it "
    "(x with batch and no class role; through sums, negations and constant multiples)",
)

DESUGARINGS: dict[str, Desugaring] = {
    rule.name: rule
    for rule in (
        DEFAULT_INPUT,
        INLINE_LET,
        NAMED_CONSTANT,
        DEFAULT_ARGUMENTS,
        SQUARE_AS_POWER,
        DEFAULT_AXIS,
        REDUCTION_WHERE,
        LIFT_OUTER_MEAN,
    )
}
"""Every desugaring, in the order `explain` lists those that fired."""
