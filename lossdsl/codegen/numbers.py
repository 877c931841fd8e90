"""Numbers in printed code: constant folding to floats, and coefficients beyond float64."""

from __future__ import annotations

import math
import sys

import sympy

from lossdsl.symbolic import functions as fn


def literal_value(expr: sympy.Basic) -> float | None:
    """The float a constant expression prints as, or None: not a number, or one that
    evalf cannot reduce (a reduction of a number counts copies only when the loss runs)."""
    if not isinstance(expr, sympy.Expr) or not expr.is_number:
        return None
    if any(
        isinstance(node, fn.LossFunction) and not isinstance(node, fn.Elementwise)
        for node in sympy.preorder_traversal(expr)
    ):
        return None
    value = expr if expr.is_Rational else expr.evalf(17)
    return float(value) if value.is_Number and value is not sympy.zoo else None


def divides_by_a_value(factor: sympy.Basic) -> bool:
    """Whether a factor is a negative power of something that is not a number."""
    return (
        isinstance(factor, sympy.Pow)
        and factor.exp.is_negative is True
        and not factor.base.is_number
    )


FLOAT_STEP = sympy.Integer(10) ** 300
"""The factor a coefficient beyond float64's range is split by (`representable_factors`)."""


def float_representable(number: sympy.Rational) -> bool:
    """Whether a nonzero number is a normal float64 (0 is too)."""
    size = abs(number)
    return number == 0 or sympy.Float(sys.float_info.min) <= size <= sympy.Float(sys.float_info.max)


def representable_factors(number: sympy.Rational) -> list[float]:
    """`number` as floats whose product it is: its sign and what is left, then 1e300s
    (or 1e-300s), so that applying them one by one never leaves float64's range first."""
    size = abs(number)
    scales: list[float] = []
    while size > FLOAT_STEP:
        size = size / FLOAT_STEP
        scales.append(1e300)
    while size < 1 / FLOAT_STEP:
        size = size * FLOAT_STEP
        scales.append(1e-300)
    return [float(sympy.sign(number) * size), *scales]


def number_text(value: float) -> str:
    """A float as Python source: its repr, or float("inf") and the like."""
    return repr(value) if math.isfinite(value) else f'float("{value}")'
