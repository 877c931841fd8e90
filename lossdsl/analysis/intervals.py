"""Interval arithmetic: `Range`, a set of reals with open or closed ends, and its operations."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lossdsl.analysis.report import format_number
from lossdsl.kinds import KINDS
from lossdsl.typed import (
    ParamDomain,
)

Array = npt.NDArray[Any]


@dataclass(frozen=True)
class Range:
    """An interval of real values; a finite end is open or closed, an infinite end open."""

    low: float
    high: float
    low_closed: bool = True
    high_closed: bool = True

    def __post_init__(self) -> None:
        if math.isinf(self.low):
            object.__setattr__(self, "low_closed", False)
        if math.isinf(self.high):
            object.__setattr__(self, "high_closed", False)

    @staticmethod
    def point(value: float) -> Range:
        return Range(value, value)

    @staticmethod
    def of_domain(domain: ParamDomain) -> Range:
        return Range(domain.low, domain.high, domain.low_closed, domain.high_closed)

    def contains(self, value: float) -> bool:
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below

    def hull(self, other: Range) -> Range:
        return _from_bounds([*self.bounds(), *other.bounds()])

    def intersect(self, other: Range) -> Range | None:
        """The common part, or None when there is none."""
        low, low_closed = max(
            (self.low, self.low_closed), (other.low, other.low_closed), key=lower_key
        )
        high, high_closed = min(
            (self.high, self.high_closed), (other.high, other.high_closed), key=upper_key
        )
        if low > high or (low == high and not (low_closed and high_closed)):
            return None
        return Range(low, high, low_closed, high_closed)

    def bounds(self) -> tuple[Bound, Bound]:
        return ((self.low, self.low_closed), (self.high, self.high_closed))

    def describe(self) -> str:
        left = "[" if self.low_closed else "("
        right = "]" if self.high_closed else ")"
        return f"{left}{format_number(self.low)}, {format_number(self.high)}{right}"


Bound = tuple[float, bool]  # a value the set reaches (or approaches), and whether it is attained


def lower_key(bound: Bound) -> tuple[float, int]:
    """Orders lower ends: a larger value is tighter; at equal values an open end is."""
    return (bound[0], 0 if bound[1] else 1)


def upper_key(bound: Bound) -> tuple[float, int]:
    return (bound[0], 1 if bound[1] else 0)


def _from_bounds(bounds: Sequence[Bound]) -> Range:
    """The hull of candidate extremes; an extreme is closed if any candidate attains it."""
    values = [value for value, _ in bounds if not math.isnan(value)]
    if not values:
        return FULL
    low, high = min(values), max(values)
    low_closed = any(closed for value, closed in bounds if value == low)
    high_closed = any(closed for value, closed in bounds if value == high)
    return Range(low, high, low_closed, high_closed)


FULL = Range(-math.inf, math.inf)
UNIT = Range(0.0, 1.0)
NONNEGATIVE = Range(0.0, math.inf)
COMPARISON = UNIT

KIND_RANGES: dict[str, Range] = {name: Range(kind.low, kind.high) for name, kind in KINDS.items()}
NUM_CLASSES_RANGE = Range(1.0, math.inf)
SAMPLE_INDEX_RANGE = Range(0.0, math.inf)


def at(function: Callable[[Any], Any], value: float) -> float:
    """`function(value)` in float64 with IEEE semantics: a result beyond the float range is
    +-inf (never an OverflowError), and infinities and poles give numpy's limits."""
    with np.errstate(all="ignore"):
        return float(function(np.float64(value)))


def increasing(values: Range, function: Callable[[float], float]) -> Range:
    return Range(
        at(function, values.low),
        at(function, values.high),
        values.low_closed,
        values.high_closed,
    )


def add(ranges: Sequence[Range], negated: Sequence[bool]) -> Range:
    terms = [negate(r) if minus else r for r, minus in zip(ranges, negated, strict=True)]
    return Range(
        _sum_of_ends([r.low for r in terms], -math.inf),
        _sum_of_ends([r.high for r in terms], math.inf),
        all(r.low_closed for r in terms),
        all(r.high_closed for r in terms),
    )


def _sum_of_ends(ends: Sequence[float], unbounded: float) -> float:
    """The sum of interval ends in float64; an end unbounded in the sum's own direction
    wins (so a term of [inf, inf] cannot cancel one of [-inf, x] into NaN)."""
    if unbounded in ends:
        return unbounded
    return sum(ends)  # overflows to +-inf as IEEE addition does


def negate(values: Range) -> Range:
    return Range(-values.high, -values.low, values.high_closed, values.low_closed)


def multiply(left: Range, right: Range) -> Range:
    candidates: list[Bound] = []
    for a, a_closed in left.bounds():
        for b, b_closed in right.bounds():
            if a == 0 or b == 0:  # 0 * inf is approached as 0
                attained = (a == 0 and a_closed) or (b == 0 and b_closed)
                candidates.append((0.0, attained or (a_closed and b_closed)))
            else:
                candidates.append((a * b, a_closed and b_closed))
    return _from_bounds(candidates)


def _inverse(value: float) -> float:
    return float(np.divide(1.0, value))


def reciprocal(values: Range) -> Range:
    low, high = values.low, values.high
    if low > 0 or high < 0:
        return Range(at(_inverse, high), at(_inverse, low), values.high_closed, values.low_closed)
    if low == 0 and high > 0:
        return Range(at(_inverse, high), math.inf, values.high_closed, False)
    if high == 0 and low < 0:
        return Range(-math.inf, at(_inverse, low), False, values.low_closed)
    return FULL


def absolute(values: Range) -> Range:
    if values.low >= 0:
        return values
    if values.high <= 0:
        return negate(values)
    magnitudes = [(-values.low, values.low_closed), (values.high, values.high_closed)]
    return Range(0.0, max(-values.low, values.high), True, _from_bounds(magnitudes).high_closed)


def integer_power(base: Range, exponent: int) -> Range:
    if exponent == 0:
        return Range.point(1.0)
    if exponent < 0:
        return reciprocal(integer_power(base, -exponent))
    magnitude = absolute(base) if exponent % 2 == 0 else base
    return increasing(magnitude, functools.partial(_float_power, exponent=exponent))


def real_power(base: Range, exponent: Range) -> Range:
    """`base ^ exponent` for a base >= 0: monotone in each argument, so extreme at corners."""
    nonnegative = base.intersect(NONNEGATIVE)
    if nonnegative is None:
        return FULL
    candidates: list[Bound] = []
    for b, b_closed in nonnegative.bounds():
        for e, e_closed in exponent.bounds():
            value = at(functools.partial(_float_power, exponent=e), b)
            candidates.append((value, b_closed and e_closed and math.isfinite(value)))
    if nonnegative.low == 0 and nonnegative.low_closed and exponent.high > 0:
        candidates.append((0.0, True))  # 0^e = 0 for every e > 0
    return _from_bounds(candidates)


def _float_power(base: float, exponent: float) -> float:
    return float(np.power(np.float64(base), np.float64(exponent)))


def repeated_sum(values: Range) -> Range:
    """A sum of n >= 1 values in `values`, n unknown (C, spatial sizes, batch)."""
    if values.low >= 0:
        return Range(values.low, math.inf if values.high > 0 else 0.0, values.low_closed, True)
    if values.high <= 0:
        return Range(-math.inf, values.high, False, values.high_closed)
    return FULL
