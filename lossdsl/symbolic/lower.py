"""Lowering: a checked spec's typed tree to SymPy, then rewritten into stable forms.

Each input and param becomes a real `sympy.Symbol` named as in the spec, with the
assumptions its kind or domain allows; `num_classes` is `functions.NUM_CLASSES`. Built-in
calls map to SymPy through the `meaning` of their row in `lossdsl.builtins`. The stable rewrites and
simplification are `rewrites.rewrite`'s, the explained gradient is `gradient.py`'s;
printing is left to `codegen.printer`.
"""

from __future__ import annotations

import math

import sympy
from sympy.core.relational import Relational
from sympy.logic.boolalg import BooleanAtom

from lossdsl.builtins import BUILTINS, CONSTANT_LIST
from lossdsl.kinds import KINDS
from lossdsl.symbolic import functions as fn
from lossdsl.symbolic.gradient import element_gradient
from lossdsl.symbolic.loss import SymbolicLoss
from lossdsl.symbolic.rewrites import rewrite
from lossdsl.typed import (
    CLASS_ONLY,
    CheckedSpec,
    InputInfo,
    ParamDomain,
    ParamInfo,
    Roles,
    TAdd,
    TCall,
    TCompare,
    TConst,
    TExpr,
    TGather,
    TInput,
    TLogic,
    TMul,
    TNeg,
    TNumClasses,
    TParam,
    TPow,
    TSampleIndex,
    TSelect,
)

RELATIONS: dict[str, type[Relational]] = {
    "<": sympy.StrictLessThan,
    "<=": sympy.LessThan,
    ">": sympy.StrictGreaterThan,
    ">=": sympy.GreaterThan,
    "==": sympy.Eq,
    "!=": sympy.Ne,
}


def lower(checked: CheckedSpec, with_gradient: bool = False) -> SymbolicLoss:
    """The spec as SymPy: `result` and `loss` rewritten and simplified.

    The explained gradient costs more than the rest of lowering, so it is worked out only
    `with_gradient` (for `lossdsl explain`); otherwise `gradient` is the unevaluated
    `Derivative(result, y_pred)`.
    """
    symbols = spec_symbols(checked)
    roles = {symbols[info.name]: info.roles for info in _declared(checked)}
    lowering = _Lowering(symbols)
    result, applied = rewrite(lowering.expr(checked.result))
    loss = result if checked.loss is checked.result else rewrite(lowering.expr(checked.loss))[0]
    mask = lowering.expr(checked.mask) if checked.mask is not None else None
    y_pred = symbols[checked.y_pred.name]
    return SymbolicLoss(
        checked=checked,
        result=result,
        loss=loss,
        mask=mask,
        symbols=symbols,
        roles=roles,
        rewrites=applied,
        gradient=(
            element_gradient(result, y_pred)
            if with_gradient
            else sympy.Derivative(result, y_pred, evaluate=False)
        ),
        warnings=checked.warnings,
    )


def spec_symbols(checked: CheckedSpec) -> dict[str, sympy.Symbol]:
    """One symbol per input and param, named as in the spec, with its assumptions."""
    symbols = {
        info.name: sympy.Symbol(info.name, **KINDS[info.kind].assumptions)
        for info in (checked.y_true, checked.y_pred)
    }
    for param in checked.params:
        symbols[param.name] = sympy.Symbol(param.name, **domain_assumptions(param.domain))
    return symbols


def domain_assumptions(domain: ParamDomain) -> dict[str, bool]:
    """The SymPy sign assumptions a param domain implies (always real)."""
    assumptions = {"real": True}
    if domain.low > 0 or (domain.low == 0 and not domain.low_closed):
        assumptions["positive"] = True
    elif domain.low >= 0:
        assumptions["nonnegative"] = True
    if domain.high < 0 or (domain.high == 0 and not domain.high_closed):
        assumptions["negative"] = True
    elif domain.high <= 0:
        assumptions["nonpositive"] = True
    return assumptions


def _declared(checked: CheckedSpec) -> tuple[InputInfo | ParamInfo, ...]:
    return (checked.y_true, checked.y_pred, *checked.params)


SYMBOLIC_CONSTANTS: dict[float, sympy.Expr] = {
    constant.value: constant.meaning
    for constant in CONSTANT_LIST
    if constant.value is not None and constant.meaning is not None
}
"""The value of each built-in constant (`pi`, `eps`) as SymPy writes it."""


def number(value: float) -> sympy.Expr:
    """A literal as an exact SymPy number: `0.25` -> 1/4, `1e-7` -> 1/10000000, and a
    built-in constant's value as the constant (the float of `pi` -> `sympy.pi`)."""
    if value in SYMBOLIC_CONSTANTS:
        return SYMBOLIC_CONSTANTS[value]
    if not math.isfinite(value):
        return sympy.oo if value > 0 else -sympy.oo
    return sympy.Rational(repr(value))


EXACT_POWER_LIMIT = 1000
"""The largest numerator of a non-integer rational exponent a positive rational number is
raised to exactly. SymPy computes b^(p/q) from b^p: 99/100 to the 2000000/1000001 (the
literal 2 / (1 + square(1e-3))) took minutes and ended in an error (found by fuzzing)."""

FLOAT_POWER_DIGITS = 30
"""The digits of such a power computed in floating point instead, as for a literal."""


def power(base: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr:
    """base^exponent; a positive rational to a rational power whose numerator is over
    EXACT_POWER_LIMIT as a float of FLOAT_POWER_DIGITS digits."""
    if (
        base.is_Rational
        and base.is_positive
        and exponent.is_Rational
        and not exponent.is_Integer
        and abs(exponent.p) > EXACT_POWER_LIMIT
    ):
        return sympy.Pow(base, exponent, evaluate=False).evalf(FLOAT_POWER_DIGITS)
    return sympy.Pow(base, exponent)


class _Lowering:
    """Lowers typed nodes, each node object once (a shared `let` is one node)."""

    def __init__(self, symbols: dict[str, sympy.Symbol]) -> None:
        self.symbols = symbols
        self.done: dict[TExpr, sympy.Basic] = {}  # typed nodes hash by identity

    def expr(self, node: TExpr) -> sympy.Basic:
        if node not in self.done:
            self.done[node] = self._lower(node)
        return self.done[node]

    def _lower(self, node: TExpr) -> sympy.Basic:
        match node:
            case TConst(value=value):
                return number(value)
            case TNumClasses():
                return fn.NUM_CLASSES
            case TSampleIndex():
                return fn.SAMPLE_INDEX
            case TInput(info=info) | TParam(info=info):
                return self.symbols[info.name]
            case TAdd(operands=operands, negated=negated):
                terms = [self.expr(o) for o in operands]
                return sympy.Add(*(-t if neg else t for t, neg in zip(terms, negated, strict=True)))
            case TMul(operands=operands, inverted=inverted):
                factors = [self.expr(o) for o in operands]
                return sympy.Mul(
                    *(1 / f if inv else f for f, inv in zip(factors, inverted, strict=True))
                )
            case TNeg(operand=operand):
                return -self.expr(operand)
            case TPow(base=base, exponent=exponent):
                return power(self.expr(base), self.expr(exponent))
            case TCompare(op=op, left=left, right=right):
                return fn.comparison(RELATIONS[op], self.expr(left), self.expr(right))
            # unevaluated (`not x > 0` is not `x <= 0` at NaN), but a connective of a
            # truth value (`2 >= 2 and c`) folds, as the comparison did
            case TLogic(op="not", operands=(operand,)):
                negated = self.expr(operand)
                return sympy.Not(negated, evaluate=isinstance(negated, BooleanAtom))
            case TLogic(op=op, operands=operands):
                connective = sympy.And if op == "and" else sympy.Or
                joined = [self.expr(o) for o in operands]
                folds = any(isinstance(o, BooleanAtom) for o in joined)
                return connective(*joined, evaluate=folds)
            case TGather(vector=vector, index=index) if vector.roles == CLASS_ONLY:
                return fn.Gather(self.expr(vector), self.expr(index))
            case TGather(vector=values, index=index):  # a per-element row: x[class(y)]
                return fn.TakeClass(self.expr(values), self.expr(index))
            case TSelect(operand=operand, start=start, single=True):
                return fn.Channel(self.expr(operand), sympy.Integer(start))
            case TSelect(operand=operand, start=start, stop=stop):
                end = sympy.oo if stop is None else sympy.Integer(stop)
                return fn.Channels(self.expr(operand), sympy.Integer(start or 0), end)
            case TCall(builtin=builtin, args=args, reduced=reduced):
                lowered = tuple(self.expr(a) for a in args)
                removed = _removed(reduced, args[0].roles) if reduced else sympy.S.Zero
                return BUILTINS[builtin].meaning(lowered, removed)
        raise TypeError(f"not a typed expression: {node!r}")


def _removed(reduced: Roles, argument_roles: Roles) -> sympy.Integer:
    """The roles a reduction removes from its argument: the chosen ones it actually has."""
    return fn.encode_roles(reduced & argument_roles)
