"""One interpreter of SymPy expression trees in float64 (numpy) or exactly (mpmath).

The domain analysis searches in float64 and confirms with mpmath, and the verifier's
reference is mpmath: all of them evaluate a built-in through its SymPy meaning (the
`meaning` of its row in `lossdsl.builtins`), so no stage keeps its own copy of what a
function computes. A SymPy function is found by its name: in float64 through numpy,
then Python's `math`, then mpmath rounded to float64 (SymPy's own `NumPyPrinter` and
`MpmathPrinter` tables give the names they differ in); exactly through mpmath. An opaque
loss function (`symbolic.functions.LossFunction`) is evaluated through its
`definition()`. Nothing here executes text: the functions are looked up as attributes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
import sympy
from sympy.core.relational import Relational
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.pycode import MpmathPrinter

from lossdsl.symbolic.functions import LossFunction

Value = Any
"""A number, or a numpy array of them (float64, or objects holding mpmath numbers)."""


def _mpmath_function(name: str) -> Callable[..., Any] | None:
    known = MpmathPrinter._kf.get(name, f"mpmath.{name}")
    return getattr(mpmath, known.removeprefix("mpmath."), None)


EXPONENT_LIMIT = 2**20
"""Binary exponents beyond which mpmath's functions take unbounded time or memory.

exp(exp(exp(50))) reduces an argument of 2^(7e21) modulo log(2), computing log(2) to
7e21 bits; such a value is far beyond every float type, so its callers (the verifier's
reference) take it as overflowing and leave it out, as they do any value beyond float64.
A value as small (exp(-exp(50)), 2^(-7e21)) costs no more than any other: a function of
it is computed: log1p(-exp(-exp(50))), about -2^(-7e21), is not taken as overflowing.
"""


def _beyond_exponents(value: Any) -> bool:
    return (
        isinstance(value, mpmath.mpf)
        and mpmath.isfinite(value)
        and mpmath.mag(value) > EXPONENT_LIMIT
    )


def _real_only(function: Callable[..., Any]) -> Callable[..., Any]:
    """`function` with a complex result, or an argument outside its domain, as NaN.

    An argument above 2^EXPONENT_LIMIT in size is an OverflowError, as mpmath's own overflows are.
    """

    def real(*args: Any) -> Any:
        if any(_beyond_exponents(arg) for arg in args):
            raise OverflowError(f"an argument of {function.__name__} beyond 2^(2^20)")
        try:
            result = function(*args)
        except (ZeroDivisionError, ValueError):
            return mpmath.nan
        return result if isinstance(result, mpmath.mpf) else mpmath.nan

    return real


def _float_from(function: Callable[..., Any]) -> Callable[..., Any]:
    """A scalar function as a numpy function giving float64 (an overflow is inf)."""

    def scalar(*args: Any) -> float:
        try:
            return float(function(*(float(arg) for arg in args)))
        except OverflowError:
            return math.inf
        except (ValueError, ZeroDivisionError, TypeError):
            return math.nan

    def call(*args: Any) -> Any:
        return np.asarray(np.frompyfunc(scalar, len(args), 1)(*args), dtype=np.float64)

    return call


@functools.cache
def float_function(name: str) -> Callable[..., Any]:
    """The float64 numpy function a SymPy function class of this name denotes."""
    numpy_name = NumPyPrinter._kf.get(name, f"numpy.{name}").removeprefix("numpy.")
    if hasattr(np, numpy_name):
        return getattr(np, numpy_name)
    if hasattr(math, name):
        return _float_from(getattr(math, name))
    exact = _mpmath_function(name)
    if exact is None:
        raise KeyError(f"no numeric form of {name}")
    return _float_from(_real_only(exact))


@functools.cache
def exact_function(name: str) -> Callable[..., Any]:
    """The mpmath function (one number in, a real mpf or NaN out) of a SymPy function class."""
    exact = _mpmath_function(name)
    if exact is None:
        raise KeyError(f"no numeric form of {name}")
    return _real_only(exact)


@dataclass(frozen=True)
class Backend:
    """How one number type computes: float64 arrays to search, mpmath objects to confirm."""

    function: Callable[[str], Callable[..., Any]]
    divide: Callable[[Value, Value], Value]
    power: Callable[[Value, Value], Value]
    number: Callable[[float], Any]
    dtype: type

    def call(self, func: Any, *args: Value) -> Value:
        """SymPy function class `func` applied to values."""
        return self.function(func.__name__)(*args)


def _exact_divide(numerator: Any, denominator: Any) -> Any:
    if denominator == 0:
        return mpmath.nan if numerator == 0 else mpmath.inf * mpmath.sign(numerator)
    return numerator / denominator


def _exact_power(base: Any, exponent: Any) -> Any:
    if base == 0 and exponent < 0:
        return mpmath.inf
    return _real_only(mpmath.power)(base, exponent)


@functools.cache
def _exact_elementwise(name: str) -> Callable[..., Any]:
    scalar = exact_function(name)
    by_arity: dict[int, Callable[..., Any]] = {}

    def elementwise(*args: Any) -> Any:
        if len(args) not in by_arity:
            by_arity[len(args)] = np.frompyfunc(scalar, len(args), 1)
        return by_arity[len(args)](*args)

    return elementwise


FLOAT = Backend(float_function, np.divide, np.power, float, np.float64)
EXACT = Backend(
    _exact_elementwise,
    np.frompyfunc(_exact_divide, 2, 1),
    np.frompyfunc(_exact_power, 2, 1),
    mpmath.mpf,
    object,
)

_SPECIAL_NUMBERS: dict[sympy.Basic, float] = {
    sympy.oo: math.inf,
    -sympy.oo: -math.inf,
    sympy.zoo: math.nan,
    sympy.nan: math.nan,
}


def evaluate(expr: sympy.Basic, values: Mapping[sympy.Basic, Value], backend: Backend) -> Value:
    """The value of `expr` with each symbol (or sub-expression) in `values` given."""
    return _Interpreter(values, backend).value(expr)


class _Interpreter:
    def __init__(self, values: Mapping[sympy.Basic, Value], backend: Backend) -> None:
        self.values = values
        self.backend = backend
        self.done: dict[sympy.Basic, Value] = {}

    def value(self, expr: sympy.Basic) -> Value:
        if expr in self.values:
            return self.values[expr]
        if expr not in self.done:
            self.done[expr] = self._compute(expr)
        return self.done[expr]

    def _compute(self, expr: sympy.Basic) -> Value:
        backend = self.backend
        match expr:
            case _ if expr in _SPECIAL_NUMBERS:
                return backend.number(_SPECIAL_NUMBERS[expr])
            case sympy.Rational():
                return backend.divide(backend.number(expr.p), backend.number(expr.q))
            case _ if not expr.args and expr.is_number:  # a Float, pi, E
                return backend.number(float(expr)) if backend is FLOAT else _mpf(expr)
            case sympy.Add():
                terms = [self.value(arg) for arg in expr.args]
                return functools.reduce(lambda a, b: a + b, terms)
            case sympy.Mul():
                factors = [self.value(arg) for arg in expr.args]
                return functools.reduce(lambda a, b: a * b, factors)
            case sympy.Pow():
                return backend.power(self.value(expr.base), self.value(expr.exp))
            case sympy.Abs():
                return np.abs(self.value(expr.args[0]))
            case sympy.Max() | sympy.Min():
                pick = np.maximum if isinstance(expr, sympy.Max) else np.minimum
                return functools.reduce(pick, (self.value(arg) for arg in expr.args))
            case sympy.Piecewise():
                return self._piecewise(expr)
            case Relational():
                return _RELATIONS[type(expr)](*(self.value(arg) for arg in expr.args))
            case sympy.Not():
                return np.logical_not(self.value(expr.args[0]))
            case sympy.And() | sympy.Or():
                combine = np.logical_and if isinstance(expr, sympy.And) else np.logical_or
                return functools.reduce(combine, (self.value(arg) for arg in expr.args))
            case sympy.logic.boolalg.BooleanTrue():
                return True
            case LossFunction():
                return self.value(_definition(expr))
            case sympy.Function():
                return backend.call(expr.func, *(self.value(arg) for arg in expr.args))
        raise KeyError(f"no numeric form of {type(expr).__name__}")

    def _piecewise(self, expr: sympy.Piecewise) -> Value:
        result = self.backend.number(math.nan)
        for value, condition in reversed(expr.args):
            if condition is sympy.true:
                result = self.value(value)
            else:
                result = np.where(self.value(condition), self.value(value), result)
        return result


@functools.lru_cache(maxsize=4096)
def _definition(expr: LossFunction) -> sympy.Basic:
    """A loss function's definition, built once per expression (SymPy builds slowly)."""
    return expr.definition()


def _mpf(expr: sympy.Basic) -> mpmath.mpf:
    return mpmath.mpf(sympy.Float(expr, mpmath.mp.dps + 5)._mpf_)


_RELATIONS: dict[type, Callable[[Value, Value], Value]] = {
    sympy.GreaterThan: np.greater_equal,
    sympy.StrictGreaterThan: np.greater,
    sympy.LessThan: np.less_equal,
    sympy.StrictLessThan: np.less,
    sympy.Equality: np.equal,
    sympy.Unequality: np.not_equal,
}
