"""Domain and differentiability checks on the typed tree: E4xx errors with witnesses, W4xx
warnings and E5xx (no gradient path to y_pred); lowering and code generation are left to
the later stages.

How it works:

1. **Value ranges.** `RangeAnalysis` computes, for every node, an interval holding all
   values the node can take for any inputs inside their kinds and any params inside
   their domains (all values a domain allows, not only the default). Each finite end is
   open or closed, so `sigmoid(z)` is (0, 1) and `clip(p)` is [eps, 1 - eps]. Built-ins
   follow their row's `shape` in `lossdsl.builtins` (or a rule in `CUSTOM_RANGES`). Sums,
   products and integer powers are also bounded by evaluating them at the corners of the
   box of their *atoms* (the non-arithmetic sub-expressions they combine) when every
   atom occurs with degree at most 1: a multi-affine function takes its extremes at
   corners, and treating the atoms as independent only widens the range. This proves,
   for example, that `1 - (y*q + (1-y)*(1-q))` stays in [eps, 1 - eps] for `q = clip(p)`.
2. **Witnesses.** Where the ranges say that something can go wrong, a numeric search
   looks for input and param values where it does: `Evaluator` evaluates the
   sub-expression with numpy (a built-in through its SymPy meaning, `symbolic.numeric`) on a grid of
   candidate points (see `CANDIDATE_LIMIT`). Sub-expressions without class-axis
   operations are evaluated per element (each input is one element of its tensor); the
   others on one sample of C = 2 classes, and the witness then names whole rows. The
   simplest witness found is confirmed with mpmath at 40 digits, so rounding never
   makes an error. An E4xx error is raised only with a confirmed witness; where the
   ranges allow a problem but no witness is found, a W402 warning says the compiler
   could not prove the value stays in the function's domain.
3. **Gradient paths.** The loss must reach y_pred through something differentiable:
   not only through `stop_gradient`, `class`, `onehot`, comparisons or gather indices
   (E501, E502). Infinite-gradient warnings (W404, W405) are given only where a gradient
   actually flows. `where` evaluates both branches (as TensorFlow does), so both are
   checked whatever the condition; the mask is checked for values, not gradients.

Codes are documented in docs/LANGUAGE_NOTES.md ("Diagnostic codes: E4xx, W4xx, E5xx").
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
import numpy.typing as npt
import sympy

from lossdsl.builtins import BUILTIN_LIST, BUILTINS, Builtin, Domain, RoleRule, Shape
from lossdsl.codes import (
    CONSTANT_OVERFLOW,
    DIVISION_BY_ZERO,
    DIVISION_BY_ZERO_EVERYWHERE,
    FLOAT32_OVERFLOW,
    LOG_NEVER_FINITE,
    LOG_OF_NEGATIVE,
    LOG_OF_ZERO,
    NEGATIVE_POWER_OF_ZERO,
    NO_GRADIENT_PATH,
    NO_PREDICTION,
    POWER_GRADIENT_AT_ZERO,
    POWER_OF_NEGATIVE,
    SQRT_GRADIENT_AT_ZERO,
    SQRT_OF_NEGATIVE,
    UNPROVEN_DOMAIN,
    UNSELECTED_NAN,
)
from lossdsl.diagnostics import Diagnostic, LossSpecError, error, warning
from lossdsl.kinds import KINDS
from lossdsl.source import SourceFile, Span
from lossdsl.symbolic import numeric
from lossdsl.typed import (
    CLASS_ONLY,
    CheckedSpec,
    ParamDomain,
    Role,
    TAdd,
    TCall,
    TCompare,
    TConst,
    TExpr,
    TGather,
    TInput,
    TMul,
    TNeg,
    TNumClasses,
    TParam,
    TPow,
    children,
    walk,
)

FLOAT64_MAX = float(np.finfo(np.float64).max)
FLOAT32_MAX = float(np.finfo(np.float32).max)
"""The largest finite values of the dtype the checks reason in and the one the loss runs in
(float32: Keras's `floatx()`, also under the mixed-precision policies)."""

Array = npt.NDArray[Any]


# ---------------------------------------------------------------- ranges


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
            (self.low, self.low_closed), (other.low, other.low_closed), key=_lower_key
        )
        high, high_closed = min(
            (self.high, self.high_closed), (other.high, other.high_closed), key=_upper_key
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


def _lower_key(bound: Bound) -> tuple[float, int]:
    """Orders lower ends: a larger value is tighter; at equal values an open end is."""
    return (bound[0], 0 if bound[1] else 1)


def _upper_key(bound: Bound) -> tuple[float, int]:
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


def _at(function: Callable[[Any], Any], value: float) -> float:
    """`function(value)` in float64 with IEEE semantics: a result beyond the float range is
    +-inf (never an OverflowError), and infinities and poles give numpy's limits."""
    with np.errstate(all="ignore"):
        return float(function(np.float64(value)))


def _increasing(values: Range, function: Callable[[float], float]) -> Range:
    return Range(
        _at(function, values.low),
        _at(function, values.high),
        values.low_closed,
        values.high_closed,
    )


def _add(ranges: Sequence[Range], negated: Sequence[bool]) -> Range:
    terms = [_negate(r) if minus else r for r, minus in zip(ranges, negated, strict=True)]
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


def _negate(values: Range) -> Range:
    return Range(-values.high, -values.low, values.high_closed, values.low_closed)


def _multiply(left: Range, right: Range) -> Range:
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


def _reciprocal(values: Range) -> Range:
    low, high = values.low, values.high
    if low > 0 or high < 0:
        return Range(_at(_inverse, high), _at(_inverse, low), values.high_closed, values.low_closed)
    if low == 0 and high > 0:
        return Range(_at(_inverse, high), math.inf, values.high_closed, False)
    if high == 0 and low < 0:
        return Range(-math.inf, _at(_inverse, low), False, values.low_closed)
    return FULL


def _absolute(values: Range) -> Range:
    if values.low >= 0:
        return values
    if values.high <= 0:
        return _negate(values)
    magnitudes = [(-values.low, values.low_closed), (values.high, values.high_closed)]
    return Range(0.0, max(-values.low, values.high), True, _from_bounds(magnitudes).high_closed)


def _integer_power(base: Range, exponent: int) -> Range:
    if exponent == 0:
        return Range.point(1.0)
    if exponent < 0:
        return _reciprocal(_integer_power(base, -exponent))
    magnitude = _absolute(base) if exponent % 2 == 0 else base
    return _increasing(magnitude, functools.partial(_float_power, exponent=exponent))


def _real_power(base: Range, exponent: Range) -> Range:
    """`base ^ exponent` for a base >= 0: monotone in each argument, so extreme at corners."""
    nonnegative = base.intersect(NONNEGATIVE)
    if nonnegative is None:
        return FULL
    candidates: list[Bound] = []
    for b, b_closed in nonnegative.bounds():
        for e, e_closed in exponent.bounds():
            value = _at(functools.partial(_float_power, exponent=e), b)
            candidates.append((value, b_closed and e_closed and math.isfinite(value)))
    if nonnegative.low == 0 and nonnegative.low_closed and exponent.high > 0:
        candidates.append((0.0, True))  # 0^e = 0 for every e > 0
    return _from_bounds(candidates)


def _float_power(base: float, exponent: float) -> float:
    return float(np.power(np.float64(base), np.float64(exponent)))


def _repeated_sum(values: Range) -> Range:
    """A sum of n >= 1 values in `values`, n unknown (C, spatial sizes, batch)."""
    if values.low >= 0:
        return Range(values.low, math.inf if values.high > 0 else 0.0, values.low_closed, True)
    if values.high <= 0:
        return Range(-math.inf, values.high, False, values.high_closed)
    return FULL


# ---------------------------------------------------------------- range analysis

RangeRule = Callable[["RangeAnalysis", TCall], Range]


def _elementwise_rule(
    function: Callable[[float], float], domain: Range = FULL, negated: bool = False
) -> RangeRule:
    """An increasing function (the negation of one: decreasing), defined on `domain`
    (outside it the value is NaN)."""

    def rule(analysis: RangeAnalysis, call: TCall) -> Range:
        inside = analysis.argument(call, 0).intersect(domain)
        if inside is None:
            return FULL
        values = _increasing(inside, function)
        return _negate(values) if negated else values

    return rule


def _relu_rule(analysis: RangeAnalysis, call: TCall) -> Range:
    return _clamp_below(analysis.argument(call, 0), Range.point(0.0))


def _clamp_below(values: Range, floor: Range) -> Range:
    """maximum(values, floor) for independent values."""
    low = max(values.bounds()[0], floor.bounds()[0], key=_lower_key)
    high = max(values.bounds()[1], floor.bounds()[1], key=_upper_key)
    return Range(low[0], high[0], low[1], high[1])


def _clamp_above(values: Range, ceiling: Range) -> Range:
    """minimum(values, ceiling) for independent values."""
    return _negate(_clamp_below(_negate(values), _negate(ceiling)))


def _cosh_rule(analysis: RangeAnalysis, call: TCall) -> Range:
    magnitude = _absolute(analysis.argument(call, 0))
    return _increasing(magnitude, np.cosh)


def _clip_rule(analysis: RangeAnalysis, call: TCall) -> Range:
    low = _clamp_below(analysis.argument(call, 0), analysis.argument(call, 1))
    return _clamp_above(low, analysis.argument(call, 2))


def _sum_rule(analysis: RangeAnalysis, call: TCall) -> Range:
    argument = call.args[0]
    if call.reduced == CLASS_ONLY:
        if _is_distribution(argument):
            return Range.point(1.0)
        if isinstance(argument, TMul):
            weighted = analysis.convex_combination(argument)
            if weighted is not None:
                return weighted
    return _repeated_sum(analysis.range_of(argument))


def _logsumexp_rule(analysis: RangeAnalysis, call: TCall) -> Range:
    values = analysis.argument(call, 0)
    return Range(values.low, math.inf, values.low_closed, False)


LGAMMA_MINIMUM = -0.12148629053584961
"""The least value of lgamma on (0, inf), at x = 1.4616..."""


def _lgamma_rule(analysis: RangeAnalysis, call: TCall) -> Range:
    """lgamma is at least its minimum for positive x; below 0 it takes every value."""
    values = analysis.argument(call, 0)
    if values.low >= 0:
        return Range(LGAMMA_MINIMUM, math.inf)
    return FULL


def _constant_rule(values: Range) -> RangeRule:
    return lambda analysis, call: values


def _argument_rule(index: int) -> RangeRule:
    return lambda analysis, call: analysis.argument(call, index)


CUSTOM_RANGES: dict[str, RangeRule] = {
    "relu": _relu_rule,
    "sign": _constant_rule(Range(-1.0, 1.0)),
    "lgamma": _lgamma_rule,
    "minimum": lambda analysis, call: _clamp_above(
        analysis.argument(call, 0), analysis.argument(call, 1)
    ),
    "maximum": lambda analysis, call: _clamp_below(
        analysis.argument(call, 0), analysis.argument(call, 1)
    ),
    "where": lambda analysis, call: analysis.argument(call, 1).hull(analysis.argument(call, 2)),
    "clip": _clip_rule,
    # Assumes C >= 2: over one class softmax is the constant 1 and trains nothing.
    "softmax": _constant_rule(Range(0.0, 1.0, False, False)),
    "log_softmax": _constant_rule(Range(-math.inf, 0.0, False, False)),
    "class": _constant_rule(NONNEGATIVE),
    "onehot": _constant_rule(UNIT),
    "sum": _sum_rule,
    "logsumexp": _logsumexp_rule,
}
"""Value range of the result of each built-in whose row's shape is `Shape.CUSTOM`."""


def _float_of(builtin: Builtin) -> Callable[[Any], Any]:
    """A one-argument built-in as a float64 function, through its SymPy meaning."""
    argument = sympy.Dummy("x", real=True)
    meaning = builtin.meaning((argument,), sympy.S.Zero)
    return lambda value: numeric.evaluate(meaning, {argument: value}, numeric.FLOAT)


def _past_the_poles(function: Callable[[Any], Any]) -> RangeRule:
    """A function increasing on (0, inf) from -inf, with poles at 0, -1, -2, ...: below 0
    it takes every value."""

    def rule(analysis: RangeAnalysis, call: TCall) -> Range:
        values = analysis.argument(call, 0)
        if values.low > 0:
            return _increasing(values, function)
        if values.low == 0:
            return Range(-math.inf, _at(function, values.high), False, values.high_closed)
        return FULL

    return rule


@functools.cache
def range_rule(builtin: Builtin) -> RangeRule:
    """The range rule a row's `shape` (and `domain`) gives."""
    if builtin.shape is Shape.CUSTOM:
        return CUSTOM_RANGES[builtin.name]
    if builtin.shape is Shape.ARGUMENT:
        return _argument_rule(0)
    function = _float_of(builtin)
    if builtin.shape is Shape.EVEN:
        return lambda analysis, call: _increasing(_absolute(analysis.argument(call, 0)), function)
    if builtin.domain is not None and builtin.domain.poles:
        return _past_the_poles(function)
    domain = FULL if builtin.domain is None else Range(builtin.domain.edge, math.inf)
    if builtin.shape is Shape.DECREASING:
        return _elementwise_rule(lambda value: -function(value), domain, negated=True)
    return _elementwise_rule(function, domain)


"""Value range of each built-in's result from its arguments' ranges."""


def _is_distribution(node: TExpr) -> bool:
    """Whether `node`'s values are >= 0 and sum to 1 over the class axis."""
    match node:
        case TInput(info=info):
            return info.kind == "onehot"
        case TCall(builtin="onehot" | "softmax"):
            return True
        case TCall(builtin="stop_gradient", args=(inner,)):
            return _is_distribution(inner)
    return False


AtomKey = tuple[bool, object]  # (is a divisor, `atom_identity` of the node)


def atom_identity(node: TExpr) -> object:
    """What makes two atoms the same: the name an input or param reference reads (each
    reference is its own node), else the node object (a let's body is shared)."""
    match node:
        case TInput(info=info) | TParam(info=info):
            return info.name
    return id(node)


MAX_CORNER_ATOMS = 8
"""Multi-affine refinement is tried for at most this many atoms (2^8 corners)."""

MAX_CORNER_DEPTH = 64
"""... and on arithmetic at most this deep (it is evaluated recursively)."""


class RangeAnalysis:
    """Value ranges of the nodes of one typed tree, memoised by node identity."""

    def __init__(self) -> None:
        self._ranges: dict[int, Range] = {}
        self._degrees: dict[int, dict[AtomKey, int]] = {}
        self._depths: dict[int, int] = {}  # nesting of the arithmetic above the atoms
        self._atoms: dict[AtomKey, TExpr] = {}
        self._synthetic: list[TExpr] = []

    def argument(self, call: TCall, index: int) -> Range:
        return self.range_of(call.args[index])

    def range_of(self, node: TExpr) -> Range:
        known = self._ranges.get(id(node))
        if known is None:
            known = self._compute(node)
            self._ranges[id(node)] = known
        return known

    def _compute(self, node: TExpr) -> Range:
        match node:
            case TConst(value=value):
                return Range.point(value)
            case TNumClasses():
                return NUM_CLASSES_RANGE
            case TInput(info=info):
                return KIND_RANGES[info.kind]
            case TParam(info=info):
                return Range.of_domain(info.domain)
            case TCompare():
                return COMPARISON
            case TGather(vector=vector):
                return self.range_of(vector)
            case TCall():
                return range_rule(BUILTINS[node.builtin])(self, node)
            case TAdd(operands=operands, negated=negated):
                naive = _add([self.range_of(op) for op in operands], negated)
                combined = self._combined_reductions(node)
                if combined is not None:
                    naive = naive.intersect(combined) or naive
            case TMul(operands=operands, inverted=inverted):
                naive = self.product(operands, inverted)
                share = self._share(node)
                if share is not None:
                    naive = naive.intersect(share) or naive
            case TNeg(operand=operand):
                naive = _negate(self.range_of(operand))
            case TPow():
                naive = self._power(node)
        corners = self._corner_range(node)
        refined = naive.intersect(corners) if corners is not None else None
        return naive if refined is None else refined

    def _combined_reductions(self, node: TAdd) -> Range | None:
        """`sum(a) + sum(b) - sum(c)` over the same elements is `sum(a + b - c)`, whose
        argument the multi-affine refinement may bound better (likewise for `mean`)."""
        groups: dict[tuple[str, frozenset[Role], frozenset[Role]], list[int]] = {}
        for index, operand in enumerate(node.operands):
            if isinstance(operand, TCall) and operand.builtin in ("sum", "mean"):
                key = (operand.builtin, operand.reduced, operand.args[0].roles)
                groups.setdefault(key, []).append(index)
        grouped = [indices for indices in groups.values() if len(indices) > 1]
        if not grouped:
            return None
        ranges: list[Range] = []
        in_group = {index for indices in grouped for index in indices}
        for indices in grouped:
            operands = [op for i in indices if isinstance(op := node.operands[i], TCall)]
            argument = TAdd(
                tuple(op.args[0] for op in operands),
                tuple(node.negated[i] for i in indices),
                node.span,
                operands[0].roles,
            )
            self._synthetic.append(argument)  # keeps its id (a memo key) unique
            inner = self.range_of(argument)
            ranges.append(_repeated_sum(inner) if operands[0].builtin == "sum" else inner)
        rest = [i for i in range(len(node.operands)) if i not in in_group]
        ranges += [self.range_of(node.operands[i]) for i in rest]
        return _add(ranges, [False] * len(grouped) + [node.negated[i] for i in rest])

    def _share(self, node: TMul) -> Range | None:
        """`a / (a + b)` with a, b >= 0 (a the sum of some of the divisor's terms, b the
        rest) is a share, in [0, 1]: 1 where b is 0, 0 where a is. Focal Tversky's
        `ti = (tp + s) / (tp + a*fn + b*fp + s)` is one, so `1 - ti` is at least 0."""
        if len(node.operands) != 2 or sorted(node.inverted) != [False, True]:
            return None
        part, whole = node.operands if node.inverted[1] else reversed(node.operands)
        rest = _terms(whole)
        for term in _terms(part):
            if term not in rest:
                return None
            rest.remove(term)
        part_range = self.range_of(part)
        rest_range = _add(
            [self.range_of(operand) for operand, _ in rest], [minus for _, minus in rest]
        )
        if not rest or part_range.low < 0 or rest_range.low < 0:
            return None
        return Range(
            0.0,
            1.0,
            part_range.contains(0.0) and rest_range.high > 0,
            rest_range.contains(0.0) and part_range.high > 0,
        )

    def product(self, operands: Sequence[TExpr], inverted: Sequence[bool]) -> Range:
        result = Range.point(1.0)
        for operand, divides in zip(operands, inverted, strict=True):
            factor = self.range_of(operand)
            result = _multiply(result, _reciprocal(factor) if divides else factor)
        return result

    def _power(self, node: TPow) -> Range:
        base = self.range_of(node.base)
        exponent = constant_value(node.exponent)
        if exponent is not None and exponent.is_integer():
            return _integer_power(base, int(exponent))
        if base.low < 0 and is_integer_valued(node.exponent):
            return FULL
        return _real_power(base, self.range_of(node.exponent))

    def convex_combination(self, product: TMul) -> Range | None:
        """`sum(w * x)` over classes with w a distribution lies within x's range."""
        for index, operand in enumerate(product.operands):
            sign = 1.0
            if isinstance(operand, TNeg):
                operand, sign = operand.operand, -1.0
            if product.inverted[index] or not _is_distribution(operand):
                continue
            rest = [op for i, op in enumerate(product.operands) if i != index]
            rest_inverted = [inv for i, inv in enumerate(product.inverted) if i != index]
            values = self.product(rest, rest_inverted)
            return values if sign > 0 else _negate(values)
        return None

    # -- multi-affine refinement --------------------------------------------------

    def degrees(self, node: TExpr) -> dict[AtomKey, int]:
        """The degree of each atom in `node` seen as a polynomial in its atoms."""
        known = self._degrees.get(id(node))
        if known is not None:
            return known
        result: dict[AtomKey, int] = {}
        match node:
            case TConst():
                pass
            case TAdd(operands=operands):
                for operand in operands:
                    for key, degree in self.degrees(operand).items():
                        result[key] = max(result.get(key, 0), degree)
            case TNeg(operand=operand):
                result = self.degrees(operand)
            case TMul(operands=operands, inverted=inverted):
                for operand, divides in zip(operands, inverted, strict=True):
                    if divides and constant_value(operand) is None:
                        parts = {self._atom(operand, divisor=True): 1}
                    elif divides:
                        parts = {}
                    else:
                        parts = self.degrees(operand)
                    for key, degree in parts.items():
                        result[key] = result.get(key, 0) + degree
            case TPow(base=base, exponent=exponent) if _natural_exponent(exponent) is not None:
                power = _natural_exponent(exponent) or 0
                result = {key: degree * power for key, degree in self.degrees(base).items()}
                result = {key: degree for key, degree in result.items() if degree}
            case _:
                result = {self._atom(node, divisor=False): 1}
        self._degrees[id(node)] = result
        arithmetic = isinstance(node, TAdd | TNeg | TMul | TPow)
        below = [self._depths.get(id(child), 0) for child in children(node)] if arithmetic else []
        self._depths[id(node)] = 1 + max(below, default=0) if arithmetic else 0
        return result

    def _atom(self, node: TExpr, divisor: bool) -> AtomKey:
        key = (divisor, atom_identity(node))
        self._atoms[key] = node
        return key

    def _atom_range(self, key: AtomKey) -> Range:
        node_range = self.range_of(self._atoms[key])
        return _reciprocal(node_range) if key[0] else node_range

    def _corner_range(self, node: TExpr) -> Range | None:
        degrees = self.degrees(node)
        if (
            not degrees
            or (False, atom_identity(node)) in degrees  # the node is an atom itself
            or len(degrees) > MAX_CORNER_ATOMS
            or max(degrees.values()) > 1
            or self._depths.get(id(node), 0) > MAX_CORNER_DEPTH
        ):
            return None
        keys = list(degrees)
        ranges = [self._atom_range(key) for key in keys]
        if not all(math.isfinite(r.low) and math.isfinite(r.high) for r in ranges):
            return None
        choice = np.array(list(itertools.product((0, 1), repeat=len(keys))), dtype=bool)
        lows = np.array([r.low for r in ranges])
        highs = np.array([r.high for r in ranges])
        corners = np.where(choice, highs, lows)
        closed = np.where(choice, [r.high_closed for r in ranges], [r.low_closed for r in ranges])
        nudged = np.where(closed, corners, (lows + highs) / 2)
        with np.errstate(all="ignore"):
            values = self._polynomial(node, dict(zip(keys, corners.T, strict=True)))
            nudged_values = self._polynomial(node, dict(zip(keys, nudged.T, strict=True)))
        values = np.broadcast_to(values, (len(corners),)).copy()
        if not np.all(np.isfinite(values)):
            return None  # overflow at a corner: the naive range (with its infinities) stands
        scale = max(1.0, float(np.max(np.abs(values))))
        values[np.abs(values) <= 1e-12 * scale] = 0.0
        low, high = float(values.min()), float(values.max())
        attained = np.all(closed, axis=1) | np.isclose(nudged_values, values, rtol=0, atol=0)
        return Range(
            low,
            high,
            bool(np.any(attained & (values == low))),
            bool(np.any(attained & (values == high))),
        )

    def _polynomial(self, node: TExpr, atoms: dict[AtomKey, Array]) -> Array:
        """`node` evaluated with its atoms replaced by the given values (see `degrees`)."""
        match node:
            case TConst(value=value):
                return np.asarray(value)
            case TAdd(operands=operands, negated=negated):
                total: Array = np.asarray(0.0)
                for operand, minus in zip(operands, negated, strict=True):
                    term = self._polynomial(operand, atoms)
                    total = total - term if minus else total + term
                return total
            case TNeg(operand=operand):
                return -self._polynomial(operand, atoms)
            case TMul(operands=operands, inverted=inverted):
                result: Array = np.asarray(1.0)
                for operand, divides in zip(operands, inverted, strict=True):
                    constant = constant_value(operand)
                    if divides and constant is not None:
                        result = result / constant
                    elif divides:
                        result = result * atoms[(True, atom_identity(operand))]
                    else:
                        result = result * self._polynomial(operand, atoms)
                return result
            case TPow(base=base, exponent=exponent) if _natural_exponent(exponent) is not None:
                power = _natural_exponent(exponent) or 0
                if power == 0:  # x^0 is 1 (also at 0); `degrees` dropped the base's atoms
                    return np.asarray(1.0)
                return np.power(self._polynomial(base, atoms), power)
        return atoms[(False, atom_identity(node))]


class _Term:
    """A term of a sum, compared by what it reads (see `atom_identity`) and its sign."""

    def __init__(self, node: TExpr, minus: bool) -> None:
        self.node = node
        self.minus = minus

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Term)
            and self.minus == other.minus
            and atom_identity(self.node) == atom_identity(other.node)
        )

    def __iter__(self) -> Iterator[Any]:
        return iter((self.node, self.minus))


def _terms(node: TExpr) -> list[_Term]:
    if isinstance(node, TAdd):
        return [_Term(op, minus) for op, minus in zip(node.operands, node.negated, strict=True)]
    return [_Term(node, False)]


def constant_value(node: TExpr) -> float | None:
    """The value of a number or a negated number, else None."""
    match node:
        case TConst(value=value):
            return value
        case TNeg(operand=TConst(value=value)):
            return -value
    return None


def _natural_exponent(node: TExpr) -> int | None:
    value = constant_value(node)
    if value is None or not value.is_integer() or value < 0:
        return None
    return int(value)


def is_integer_valued(node: TExpr) -> bool:
    """Whether `node` only takes integer values (integer numbers, `num_classes`, class ids)."""
    value = constant_value(node)
    if value is not None:
        return value.is_integer()
    return node.integer or isinstance(node, TNumClasses)


# ---------------------------------------------------------------- numeric evaluation

ROLE_AXES: dict[Role, int] = {Role.BATCH: 1, Role.SPATIAL: 2, Role.CLASS: 3}
"""Evaluated tensors are [candidates, batch, spatial, class]; a role's axis."""

WITNESS_CLASSES = 2
"""C when a witness needs whole rows (and the value of `num_classes` in every witness)."""


class Evaluator:
    """Values of typed nodes for given input and param values, one backend, memoised."""

    def __init__(self, numerics: numeric.Backend, bindings: dict[str, Array]) -> None:
        self.numerics = numerics
        self.bindings = bindings
        self._values: dict[int, Array] = {}

    def number(self, value: float) -> Array:
        return np.full((1, 1, 1, 1), self.numerics.number(value), dtype=self.numerics.dtype)

    def numbers(self, values: Array) -> Array:
        """Booleans or integers as this backend's numbers."""
        converted = np.vectorize(self.numerics.number, otypes=[self.numerics.dtype])
        return converted(values.astype(float))

    def value(self, node: TExpr) -> Array:
        known = self._values.get(id(node))
        if known is None:
            known = self._compute(node)
            self._values[id(node)] = known
        return known

    def _compute(self, node: TExpr) -> Array:
        numerics = self.numerics
        match node:
            case TConst(value=value):
                return self.number(value)
            case TNumClasses():
                return self.number(WITNESS_CLASSES)
            case TInput(info=info):
                return self.bindings[info.name]
            case TParam(info=info):
                return self.bindings[info.name]
            case TAdd(operands=operands, negated=negated):
                total = self.number(0.0)
                for operand, minus in zip(operands, negated, strict=True):
                    total = total - self.value(operand) if minus else total + self.value(operand)
                return total
            case TMul(operands=operands, inverted=inverted):
                product = self.number(1.0)
                for operand, divides in zip(operands, inverted, strict=True):
                    factor = self.value(operand)
                    product = numerics.divide(product, factor) if divides else product * factor
                return product
            case TNeg(operand=operand):
                return -self.value(operand)
            case TPow(base=base, exponent=exponent):
                return numerics.power(self.value(base), self.value(exponent))
            case TCompare(op=op, left=left, right=right):
                return COMPARISONS[op](self.value(left), self.value(right))
            case TGather(vector=vector, index=index):
                ids = self.value(index).astype(float).astype(int)
                rows = np.broadcast_to(self.value(vector), (*ids.shape[:-1], WITNESS_CLASSES))
                return np.take_along_axis(rows, ids, axis=-1)
            case TCall(builtin=builtin) if builtin in SPECIAL_EVALUATORS:
                return SPECIAL_EVALUATORS[builtin](self, node)
            case TCall(builtin=builtin, args=args):
                arguments, meaning = _meaning(BUILTINS[builtin], len(args))
                values = zip(arguments, map(self.value, args), strict=True)
                return numeric.evaluate(meaning, dict(values), numerics)
        raise AssertionError(f"unknown node {node!r}")

    def argument(self, call: TCall, index: int = 0) -> Array:
        return self.value(call.args[index])

    def assume(self, node: TExpr, value: object) -> None:
        """Take `value` as `node`'s value instead of evaluating its sub-tree."""
        self._values[id(node)] = np.full((1, 1, 1, 1), value, dtype=self.numerics.dtype)


COMPARISONS: dict[str, Callable[[Array, Array], Array]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}

EvaluationRule = Callable[[Evaluator, TCall], Array]


def _axes(call: TCall) -> tuple[int, ...]:
    return tuple(sorted(ROLE_AXES[role] for role in call.reduced))


def _reduce_sum(ev: Evaluator, values: Array, axes: tuple[int, ...]) -> Array:
    return np.sum(values, axis=axes, keepdims=True)


def _logsumexp(ev: Evaluator, values: Array, axes: tuple[int, ...]) -> Array:
    peak = np.max(values, axis=axes, keepdims=True)
    peak = np.where(np.isfinite(peak.astype(float)), peak, ev.number(0.0))
    exp = ev.numerics.call(sympy.exp, values - peak)
    return peak + ev.numerics.call(sympy.log, _reduce_sum(ev, exp, axes))


def _mean(ev: Evaluator, call: TCall) -> Array:
    values = ev.argument(call)
    axes = _axes(call)
    count = math.prod(values.shape[axis] for axis in axes)
    return ev.numerics.divide(_reduce_sum(ev, values, axes), ev.number(count))


def _softmax(ev: Evaluator, call: TCall) -> Array:
    peak = np.max(ev.argument(call), axis=3, keepdims=True)
    shifted = ev.numerics.call(sympy.exp, ev.argument(call) - peak)
    return ev.numerics.divide(shifted, _reduce_sum(ev, shifted, (3,)))


def _class_id(ev: Evaluator, call: TCall) -> Array:
    (argument,) = call.args
    if isinstance(argument, TInput) and argument.info.kind == "label":
        return ev.value(argument)
    return ev.numbers(np.argmax(ev.value(argument).astype(float), axis=3, keepdims=True))


def _onehot(ev: Evaluator, call: TCall) -> Array:
    ids = ev.argument(call).astype(float)
    return ev.numbers(np.arange(WITNESS_CLASSES) == ids)


SPECIAL_EVALUATORS: dict[str, EvaluationRule] = {
    "softmax": _softmax,
    "log_softmax": lambda ev, call: ev.argument(call) - _logsumexp(ev, ev.argument(call), (3,)),
    "class": _class_id,
    "onehot": _onehot,
    "sum": lambda ev, call: _reduce_sum(ev, ev.argument(call), _axes(call)),
    "mean": _mean,
    "max": lambda ev, call: np.max(ev.argument(call), axis=_axes(call), keepdims=True),
    "min": lambda ev, call: np.min(ev.argument(call), axis=_axes(call), keepdims=True),
    "logsumexp": lambda ev, call: _logsumexp(ev, ev.argument(call), _axes(call)),
}
"""How the built-ins over the class axis and the reductions are evaluated on [candidates,
batch, spatial, class] arrays; every other built-in is evaluated through its SymPy meaning."""


@functools.cache
def _meaning(builtin: Builtin, arity: int) -> tuple[tuple[sympy.Dummy, ...], sympy.Basic]:
    """A built-in's SymPy meaning applied to `arity` placeholder arguments."""
    arguments = tuple(sympy.Dummy(f"x{index}", real=True) for index in range(arity))
    return arguments, builtin.meaning(arguments, sympy.S.Zero)


ROW_BUILTINS = frozenset(
    builtin.name
    for builtin in BUILTIN_LIST
    if builtin.role_rule in (RoleRule.CLASS_AXIS, RoleRule.CLASS_ID, RoleRule.ONE_HOT)
)
"""Built-ins that mix the classes of a row: witnesses for them are whole rows."""


# ---------------------------------------------------------------- witness search

CANDIDATE_LIMIT = 4096
"""At most this many candidate points per search: the full grid when it is smaller, else
the simplest values of every variable combined, plus random points (seeded) to fill."""

CONFIRMATIONS = 5
"""How many of the simplest float64 witnesses are re-evaluated exactly before giving up."""

PARAM_VALUES = (0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 0.25, 0.75, 10.0, -10.0, 50.0, -50.0)

KIND_VALUES: dict[str, tuple[float, ...]] = {name: kind.witnesses for name, kind in KINDS.items()}
"""Candidate values of one element of an input, simplest first (large ends stand for inf)."""


def simplicity(value: float) -> int:
    """How simple a value reads in a message: 0 for 0 and 1, more for others."""
    magnitude = abs(value)
    if magnitude in (0.0, 1.0):
        return 0
    if magnitude in (0.5, 2.0):
        return 1
    return 2 if magnitude < 10 else 3


def format_number(value: float) -> str:
    """A number as short as Python writes it, without a trailing `.0` (`1`, `0.9999999`)."""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = repr(value + 0.0)
    return text.removesuffix(".0")


@dataclass(frozen=True)
class Variable:
    """A free input or param of a searched sub-expression and its candidate values."""

    name: str
    rows: Array  # [candidates, width]; width 1 (one element or a scalar) or C


@dataclass(frozen=True)
class Witness:
    """Input and param values where a problem happens, as the message shows them."""

    values: tuple[tuple[str, str], ...]

    def describe(self) -> str:
        return ", ".join(f"{name} = {value}" for name, value in self.values)


Condition = Callable[[Callable[[TExpr], Array]], Array]
"""Where a problem happens, from the float64 values of any sub-expression."""


def _param_values(domain: ParamDomain) -> tuple[float, ...]:
    ends = ((domain.low, domain.low_closed), (domain.high, domain.high_closed))
    values = [bound for bound, closed in ends if closed and math.isfinite(bound)]
    values += [value for value in PARAM_VALUES if domain.contains(value)]
    if math.isfinite(domain.low) and math.isfinite(domain.high):
        step = min(1e-3, (domain.high - domain.low) / 4)
        values += [domain.low + step, domain.high - step]
    elif math.isfinite(domain.low):
        values.append(domain.low + 1e-3)
    elif math.isfinite(domain.high):
        values.append(domain.high - 1e-3)
    inside = [value for value in dict.fromkeys(values) if domain.contains(value)]
    return tuple(sorted(inside, key=simplicity))


def _rows(values: tuple[float, ...], width: int, distribution: bool) -> Array:
    if width == 1:
        return np.array(values, dtype=float)[:, None]
    if distribution:
        return np.array([(value, 1.0 - value) for value in values])
    rows = sorted(
        itertools.product(values, repeat=width), key=lambda row: sum(map(simplicity, row))
    )
    return np.array(rows, dtype=float)


class WitnessSearch:
    """Finds input and param values where a condition holds (see the module docstring)."""

    def __init__(self, input_limit: float = math.inf) -> None:
        self.input_limit = input_limit  # inputs take only candidates of at most this size
        self._free: dict[int, tuple[TInput | TParam, ...]] = {}
        self._rows_needed: dict[int, bool] = {}

    def find(self, scope: Sequence[TExpr], condition: Condition) -> Witness | None:
        """The simplest confirmed witness of `condition`, over the inputs and params that
        the nodes of `scope` read."""
        needs_rows = any(self._needs_rows(node) for node in scope)
        leaves: dict[str, TInput | TParam] = {}
        for node in scope:
            for leaf in self._free_leaves(node):
                leaves.setdefault(leaf.info.name, leaf)
        variables = [self._variable(leaf, needs_rows) for leaf in leaves.values()]
        choices = _candidate_indices([len(v.rows) for v in variables])
        bindings = {
            v.name: v.rows[choices[:, i]][:, None, None, :] for i, v in enumerate(variables)
        }
        with np.errstate(all="ignore"):
            found = np.asarray(condition(Evaluator(numeric.FLOAT, bindings).value))
        found = np.broadcast_to(found, (len(choices), *found.shape[1:]))
        candidates = np.flatnonzero(found.reshape(len(choices), -1).any(axis=1))
        if not len(candidates):
            return None
        scores = np.zeros(len(choices))
        for i, variable in enumerate(variables):
            row_scores = np.array([sum(map(simplicity, row)) for row in variable.rows])
            scores += row_scores[choices[:, i]]
        ordered = candidates[np.argsort(scores[candidates], kind="stable")]
        for index in ordered[:CONFIRMATIONS]:
            rows = {v.name: v.rows[choices[index, i]] for i, v in enumerate(variables)}
            if _confirmed(condition, rows):
                return Witness(tuple((name, _format_row(row)) for name, row in rows.items()))
        return None

    def _variable(self, leaf: TInput | TParam, needs_rows: bool) -> Variable:
        width = WITNESS_CLASSES if needs_rows and Role.CLASS in leaf.roles else 1
        if isinstance(leaf, TInput):
            values = tuple(v for v in KIND_VALUES[leaf.info.kind] if abs(v) <= self.input_limit)
            return Variable(leaf.info.name, _rows(values, width, leaf.info.kind == "onehot"))
        return Variable(leaf.info.name, _rows(_param_values(leaf.info.domain), width, False))

    def _free_leaves(self, node: TExpr) -> tuple[TInput | TParam, ...]:
        """The inputs and params `node` reads, by name, in order of first occurrence."""
        known = self._free.get(id(node))
        if known is None:
            leaves: dict[str, TInput | TParam] = {}
            if isinstance(node, TInput | TParam):
                leaves[node.info.name] = node
            for child in children(node):
                for leaf in self._free_leaves(child):
                    leaves.setdefault(leaf.info.name, leaf)
            known = tuple(leaves.values())
            self._free[id(node)] = known
        return known

    def _needs_rows(self, node: TExpr) -> bool:
        known = self._rows_needed.get(id(node))
        if known is None:
            mixes = isinstance(node, TGather) or (
                isinstance(node, TCall)
                and (node.builtin in ROW_BUILTINS or Role.CLASS in node.reduced)
            )
            known = mixes or any(self._needs_rows(child) for child in children(node))
            self._rows_needed[id(node)] = known
        return known


def _candidate_indices(sizes: list[int]) -> npt.NDArray[np.intp]:
    """Index tuples into each variable's candidates: all, or the simplest plus random ones."""
    if not sizes:
        return np.zeros((1, 0), dtype=np.intp)
    if math.prod(sizes) <= CANDIDATE_LIMIT:
        return np.indices(sizes).reshape(len(sizes), -1).T
    # The simplest values: each variable's first `level` candidates, the largest level
    # whose combinations fit in half the limit (found by bisection, in logarithms).
    budget = math.log(CANDIDATE_LIMIT // 2)
    low, high = 1, max(sizes)
    while low < high:
        level = (low + high + 1) // 2
        if sum(math.log(min(size, level)) for size in sizes) <= budget:
            low = level
        else:
            high = level - 1
    core = [min(size, low) for size in sizes]
    # Only the variables with more than one simplest value vary (at most log2 of the limit
    # of them, so np.indices stays within NumPy's 64 dimensions however many there are).
    varying = [i for i, size in enumerate(core) if size > 1]
    simplest = np.zeros((math.prod(core), len(sizes)), dtype=np.intp)
    if varying:
        grid = np.indices([core[i] for i in varying]).reshape(len(varying), -1).T
        simplest[:, varying] = grid
    generator = np.random.default_rng(0)
    extra = generator.integers(0, sizes, size=(CANDIDATE_LIMIT - len(simplest), len(sizes)))
    return np.concatenate([simplest, extra]).astype(np.intp)


def _confirmed(condition: Condition, rows: dict[str, Array]) -> bool:
    """Whether `condition` holds at one point when evaluated with 40-digit arithmetic."""
    bindings = {
        name: np.array([mpmath.mpf(float(v)) for v in row], dtype=object)[None, None, None, :]
        for name, row in rows.items()
    }
    evaluator = Evaluator(numeric.EXACT, bindings)
    try:
        with mpmath.workdps(40):
            found = condition(lambda node: np.asarray(evaluator.value(node)).astype(float))
    except (ZeroDivisionError, ValueError, OverflowError):
        return False
    return bool(np.any(found))


def _format_row(row: Array) -> str:
    if len(row) == 1:
        return format_number(float(row[0]))
    return "[" + ", ".join(format_number(float(v)) for v in row) + "]"


def below(node: TExpr, edge: float) -> Condition:
    def condition(value: Callable[[TExpr], Array]) -> Array:
        values = value(node)
        return np.isfinite(values) & (values < edge)

    return condition


def equal(node: TExpr, target: float) -> Condition:
    return lambda value: value(node) == target


def at_pole(node: TExpr) -> Condition:
    """Where `node` is 0, -1, -2, ...: the poles of a `Domain` with poles."""

    def condition(value: Callable[[TExpr], Array]) -> Array:
        values = value(node)
        return np.isfinite(values) & (values <= 0) & (values == np.round(values))

    return condition


def _reaches_pole(values: Range) -> bool:
    """Whether an integer <= 0 lies in `values`."""
    top = 0.0 if values.high >= 0 else float(math.floor(values.high))
    return values.contains(top) or values.contains(top - 1)


def nan_power(power: TPow) -> Condition:
    def condition(value: Callable[[TExpr], Array]) -> Array:
        base, exponent = value(power.base), value(power.exponent)
        finite = np.isfinite(base) & np.isfinite(exponent)
        return finite & (base < 0) & np.isnan(value(power))

    return condition


# ---------------------------------------------------------------- tree walking


def _gradient_children(node: TExpr) -> tuple[tuple[TExpr, str | None], ...]:
    """Children with what blocks the gradient through them (None: it flows)."""
    match node:
        case TCall(builtin=name, args=args) if not BUILTINS[name].differentiable:
            return tuple((arg, f"`{name}(...)`") for arg in args)
        case TCall(builtin="where", args=(condition, *branches)):
            return ((condition, "a comparison"), *((b, None) for b in branches))
        case TCompare(left=left, right=right):
            return ((left, "a comparison"), (right, "a comparison"))
        case TGather(vector=vector, index=index):
            return ((vector, None), (index, "a gather index"))
    return tuple((child, None) for child in children(node))


class GradientPaths:
    """Which nodes a gradient reaches from the result, and which depend on y_pred."""

    def __init__(self, result: TExpr) -> None:
        self._flows: dict[int, bool] = {}
        self.reached: set[int] = set()
        self.blockers: list[str] = []  # where y_pred occurs without a gradient
        self._walk(result)

    def _walk(self, result: TExpr) -> None:
        seen: set[tuple[int, str | None]] = set()
        stack: list[tuple[TExpr, str | None]] = [(result, None)]
        while stack:
            node, blocker = stack.pop()
            if (id(node), blocker) in seen:
                continue
            seen.add((id(node), blocker))
            if blocker is None:
                self.reached.add(id(node))
            elif (
                isinstance(node, TInput)
                and node.info.argument == "y_pred"
                and blocker not in self.blockers
            ):
                self.blockers.append(blocker)
            for child, child_blocker in _gradient_children(node):
                stack.append((child, blocker or child_blocker))

    def flows(self, node: TExpr) -> bool:
        """Whether `node` depends differentiably on y_pred."""
        known = self._flows.get(id(node))
        if known is None:
            if isinstance(node, TInput):
                known = node.info.argument == "y_pred"
            else:
                known = any(
                    self.flows(child)
                    for child, blocker in _gradient_children(node)
                    if blocker is None
                )
            self._flows[id(node)] = known
        return known

    def differentiated(self, node: TExpr, argument: TExpr) -> bool:
        """Whether a gradient flows through `node` into its `argument`."""
        return id(node) in self.reached and self.flows(argument)


# ---------------------------------------------------------------- the checks


Guard = tuple[TExpr, bool]
"""A `where` condition on the way to a node, and the value that selects the branch."""

MAX_GUARD_PATHS = 4
"""Distinct `where` guard combinations remembered per node (more are not followed)."""


def guard_paths(roots: Sequence[TExpr]) -> dict[int, list[tuple[Guard, ...]]]:
    """For every node, the `where` conditions that must hold for its value to be used."""
    paths: dict[int, list[tuple[Guard, ...]]] = {}
    stack: list[tuple[TExpr, tuple[Guard, ...]]] = [(root, ()) for root in reversed(roots)]
    while stack:
        node, guards = stack.pop()
        known = paths.setdefault(id(node), [])
        if guards in known or len(known) >= MAX_GUARD_PATHS:
            continue
        known.append(guards)
        match node:
            case TCall(builtin="where", args=(condition, chosen, other)):
                stack.append((other, (*guards, (condition, False))))
                stack.append((chosen, (*guards, (condition, True))))
                stack.append((condition, guards))
            case _:
                stack.extend((child, guards) for child in reversed(children(node)))
    return paths


def _when(condition: Condition, guards: tuple[Guard, ...]) -> Condition:
    def guarded(value: Callable[[TExpr], Array]) -> Array:
        found = condition(value)
        for comparison, wanted in guards:
            found = found & (value(comparison).astype(bool) == wanted)
        return found

    return guarded


@dataclass(frozen=True)
class Found:
    """A witness, and whether the value there is used (not in an unselected `where` branch)."""

    witness: Witness | None
    selected: bool


class DomainChecker:
    """Collects the E4xx/W4xx diagnostics of one checked spec."""

    def __init__(self, checked: CheckedSpec, roots: Sequence[TExpr]) -> None:
        self.source = checked.source
        self.roots = roots
        self.ranges = RangeAnalysis()
        self.search = WitnessSearch()
        self.gradients = GradientPaths(checked.result)
        self.guards = guard_paths(roots)
        self.diagnostics: list[Diagnostic] = []

    def text(self, node: TExpr) -> str:
        return source_text(self.source, node.span)

    def run(self) -> list[Diagnostic]:
        for node in walk(self.roots):
            match node:
                case TCall(builtin=builtin) if BUILTINS[builtin].domain is not None:
                    self._check_defined(node, BUILTINS[builtin].domain)
                case TPow():
                    self._check_power(node)
                case TMul(operands=operands, inverted=inverted):
                    for operand, divides in zip(operands, inverted, strict=True):
                        if divides:
                            self._check_divisor(node, operand)
        overflow = OverflowCheck(self)
        for node in post_order(self.roots):  # children first: memoised, shallow recursion
            overflow.check(node)
        return self.diagnostics

    def _search(
        self,
        node: TExpr,
        scope: Sequence[TExpr],
        condition: Condition,
        search: WitnessSearch | None = None,
    ) -> Found:
        """A witness where `node`'s value is used if there is one, else any witness."""
        search = search or self.search
        for guards in self.guards[id(node)]:
            conditions = [comparison for comparison, _ in guards]
            witness = search.find([*scope, *conditions], _when(condition, guards))
            if witness is not None:
                return Found(witness, True)
        return Found(search.find(scope, condition), False)

    def _check_defined(self, call: TCall, domain: Domain | None) -> None:
        if domain is not None and domain.poles:
            self._check_poles(call, domain)
        elif domain is not None:
            self._check_domain(call, domain)

    def _check_domain(self, call: TCall, rule: Domain) -> None:
        argument = call.args[0]
        values = self.ranges.range_of(argument)
        edge = format_number(rule.edge)
        never_finite = rule.at_edge is not None and (
            values.high < rule.edge or (values.high == rule.edge and values.high_closed)
        )
        if never_finite:
            found, result = self._search(call, [argument], below(argument, rule.edge)), "NaN"
            if not found.selected:
                found = self._search(call, [argument], equal(argument, rule.edge))
                result = rule.at_edge or ""
            if found.selected and found.witness is not None:
                self.diagnostics.append(
                    error(
                        LOG_NEVER_FINITE,
                        f"`{self.text(call)}` is never finite: `{self.text(argument)}` is at "
                        f"most {edge} for every value ({result} at {found.witness.describe()})",
                        argument.span,
                        f"never above {edge}",
                        "check the sign of the argument",
                    )
                )
                return
        elif values.low < rule.edge:
            found = self._search(call, [argument], below(argument, rule.edge))
            if found.witness is None:
                self._unproven(call, argument, f"at least {edge}", values)
            elif found.selected:
                self.diagnostics.append(
                    error(
                        LOG_OF_NEGATIVE if rule.at_edge else SQRT_OF_NEGATIVE,
                        f"`{self.text(call)}` is NaN at {found.witness.describe()}",
                        argument.span,
                        f"below {edge} there",
                        rule.help,
                    )
                )
            elif rule.nan_gradient:
                self._unselected_nan(call, argument, found.witness)
            if found.witness is None or found.selected or rule.nan_gradient:
                return
        if values.contains(rule.edge):
            self._at_edge(call, argument, rule)

    def _at_edge(self, call: TCall, argument: TExpr, rule: Domain) -> None:
        shown = self.text(argument)
        witness = self.search.find([argument], equal(argument, rule.edge))
        at = witness.describe() if witness else f"`{shown}` = {format_number(rule.edge)}"
        if rule.at_edge is not None:
            fix = (
                f"use `{call.builtin}(clip({shown}))` (values in [eps, 1 - eps]), or take "
                "logits as y_pred and use `log_softmax` or `softplus`"
                if rule.edge == 0
                else rule.help
            )
            self.diagnostics.append(
                warning(
                    LOG_OF_ZERO,
                    f"`{self.text(call)}` is {rule.at_edge} at {at}",
                    argument.span,
                    f"can be {format_number(rule.edge)}",
                    fix,
                )
            )
        elif self.gradients.differentiated(call, argument):
            self.diagnostics.append(
                warning(
                    SQRT_GRADIENT_AT_ZERO,
                    f"`{self.text(call)}` has an infinite gradient at {at}",
                    argument.span,
                    "can be 0",
                    f"add a small constant inside: `sqrt({shown} + eps)`",
                )
            )

    def _check_poles(self, call: TCall, domain: Domain) -> None:
        """W401 where the argument can be at a pole 0, -1, -2, ... (E403 where it always is),
        W402 where the ranges allow one but no witness is found."""
        argument = call.args[0]
        values = self.ranges.range_of(argument)
        if not _reaches_pole(values):
            return
        shown = self.text(argument)
        if values.low == values.high:
            self.diagnostics.append(
                error(
                    LOG_NEVER_FINITE,
                    f"`{self.text(call)}` is never finite: `{shown}` is always "
                    f"{format_number(values.low)}, a pole",
                    argument.span,
                    "always a pole",
                    domain.help,
                )
            )
            return
        found = self._search(call, [argument], at_pole(argument))
        if found.witness is None:
            self.diagnostics.append(
                warning(
                    UNPROVEN_DOMAIN,
                    f"could not prove that `{shown}` avoids the poles 0, -1, -2, ... of "
                    f"`{self.text(call)}`",
                    argument.span,
                    "may be a pole",
                    f"interval arithmetic allows values in {values.describe()}, but no input "
                    "or param values were found where it is at a pole",
                    domain.help,
                )
            )
            return
        branch = "" if found.selected else ", in a `where` branch not selected there"
        self.diagnostics.append(
            warning(
                LOG_OF_ZERO,
                f"`{self.text(call)}` is not finite at {found.witness.describe()}, a pole{branch}",
                argument.span,
                "can be a pole (0, -1, -2, ...)",
                domain.help,
            )
        )

    def _unproven(self, node: TExpr, argument: TExpr, requirement: str, values: Range) -> None:
        self.diagnostics.append(
            warning(
                UNPROVEN_DOMAIN,
                f"could not prove that `{self.text(argument)}` is {requirement} "
                f"in `{self.text(node)}`",
                argument.span,
                f"may be below {requirement.split()[-1]}",
                f"interval arithmetic allows values in {values.describe()}, but no input or "
                "param values were found where it is out of range",
                "if it can never be, write it so that this shows, e.g. with `clip`, `relu` "
                "or `abs`",
            )
        )

    def _unselected_nan(self, node: TExpr, argument: TExpr, witness: Witness) -> None:
        self.diagnostics.append(
            warning(
                UNSELECTED_NAN,
                f"`{self.text(node)}` is NaN at {witness.describe()}, in a `where` branch "
                "that is not selected there; TensorFlow still computes it, and its gradient "
                "there is NaN",
                argument.span,
                "out of range there",
                "guard the argument too, e.g. `sqrt(where(x > 0, x, 1))` inside "
                "`where(x > 0, ..., 0)`",
            )
        )

    def _check_power(self, power: TPow) -> None:
        base = self.ranges.range_of(power.base)
        exponent = self.ranges.range_of(power.exponent)
        if not is_integer_valued(power.exponent) and base.low < 0:
            found = self._search(power, [power], nan_power(power))
            if found.witness is None:
                self._unproven(power, power.base, "at least 0", base)
            elif found.selected:
                self.diagnostics.append(
                    error(
                        POWER_OF_NEGATIVE,
                        f"`{self.text(power)}` is NaN at {found.witness.describe()}: a "
                        "negative base to a non-integer power",
                        power.base.span,
                        "negative there",
                        "make the base non-negative (e.g. with `abs`, `relu` or `clip`), or "
                        "use an integer exponent",
                    )
                )
            else:
                self._unselected_nan(power, power.base, found.witness)
            return
        if not base.contains(0.0):
            return
        if exponent.low < 0:
            self._negative_power(power)
        elif (
            exponent.low < 1
            and exponent.high > 0
            and not is_integer_valued(power.exponent)
            and self.gradients.differentiated(power, power.base)
        ):
            self._power_gradient(power)

    def _negative_power(self, power: TPow) -> None:
        witness = self.search.find([power.base], equal(power.base, 0.0))
        at = f" (at {witness.describe()})" if witness else ""
        when = (
            ""
            if constant_value(power.exponent) is not None
            else f" when `{self.text(power.exponent)}` < 0"
        )
        self.diagnostics.append(
            warning(
                NEGATIVE_POWER_OF_ZERO,
                f"`{self.text(power)}` is infinite where `{self.text(power.base)}` is 0{at}{when}",
                power.base.span,
                "can be 0",
                "keep the base away from 0, e.g. add a small constant (`... + eps`) or use `clip`",
            )
        )

    def _power_gradient(self, power: TPow) -> None:
        witness = self.search.find([power.base], equal(power.base, 0.0))
        at = witness.describe() if witness else f"`{self.text(power.base)}` = 0"
        when = (
            ""
            if constant_value(power.exponent) is not None
            else f" when `{self.text(power.exponent)}` is in (0, 1)"
        )
        help_lines = ["keep the base away from 0, e.g. with `clip`"]
        if isinstance(power.exponent, TParam) and not power.exponent.info.is_vector:
            info = power.exponent.info
            default = info.default if isinstance(info.default, float) else 1.0
            help_lines.insert(
                0,
                f"restrict `{info.name}` to values >= 1, e.g. "
                f"`param {info.name}: [1, inf) = {format_number(max(default, 1.0))}`",
            )
        self.diagnostics.append(
            warning(
                POWER_GRADIENT_AT_ZERO,
                f"`{self.text(power)}` has an infinite gradient at {at}{when}",
                power.base.span,
                "can be 0",
                *help_lines,
            )
        )

    def _check_divisor(self, product: TMul, divisor: TExpr) -> None:
        values = self.ranges.range_of(divisor)
        if not values.contains(0.0):
            return
        shown = f"division by `{self.text(divisor)}`"
        if divisor.span.line != product.span.line:
            shown += f" (in `{self.text(product)}`)"
        if values.low == values.high == 0 and () in self.guards[id(product)]:
            self.diagnostics.append(
                error(
                    DIVISION_BY_ZERO_EVERYWHERE,
                    f"{shown}, which is 0 everywhere",
                    divisor.span,
                    "always 0",
                    "the result is infinite or NaN for every input",
                )
            )
            return
        witness = self.search.find([divisor], equal(divisor, 0.0))
        at = f"is 0 at {witness.describe()}" if witness else "can be 0"
        self.diagnostics.append(
            warning(
                DIVISION_BY_ZERO,
                f"{shown}, which {at}",
                divisor.span,
                "can be 0",
                "keep it away from 0, e.g. add a small constant (`... + eps`) or use `clip`",
            )
        )


EXACT_MAGNITUDE_LIMIT = 2**20
"""Constants above 2^(2^20) in magnitude are not computed further (`2^2^1e5` would take
memory without end); they are reported as too large."""

OVERFLOW_INPUT_LIMIT = 2.0
"""The overflow search takes inputs of at most this size: inputs of unbounded kinds make
`exp`, `cosh` or a power overflow when large enough whatever the spec (the model's range,
as with Keras's built-ins); params take every value their domains allow."""


class OverflowCheck:
    """E407 and W408: values beyond the float range of float64 and of float32.

    A constant (a sub-expression without input, param or `num_classes`) is evaluated
    exactly with mpmath and judged as the generated code holds it: SymPy folds each
    largest constant sub-expression into one number, and combines the constant factors of
    a product (terms of a sum) into one, so those are what is judged. Beyond float64's
    largest value it is E407 (the code would compute with inf for every input); beyond
    float32's W408 (inf for a loss computing in float32). Sub-expressions of scalar params
    and constants ("fixed": the same for every input) are judged likewise with the params
    at their defaults. A param whose default or domain allows a value beyond float32's
    range is W408. Any other sub-expression whose range reaches
    beyond float32's largest value is searched for a witness where it exceeds it while its
    arguments do not (where the overflow happens), with inputs of moderate size
    (`OVERFLOW_INPUT_LIMIT`): W408 names that witness. Float16 is not checked: under
    Keras's mixed-precision policies a loss computes in float32 (docs/LANGUAGE_NOTES.md).
    """

    def __init__(self, checker: DomainChecker) -> None:
        self.checker = checker
        self._under_log = _under_log(checker.roots)
        self._search = WitnessSearch(input_limit=OVERFLOW_INPUT_LIMIT)
        self._constant: dict[int, bool] = {}
        self._fixed: dict[int, bool] = {}
        self._exact: dict[int, mpmath.mpf | None] = {}
        self._huge: set[int] = set()
        self._judged: set[int] = set()
        self._params_seen: set[str] = set()

    def check(self, node: TExpr) -> None:
        if isinstance(node, TCompare | TInput):
            return
        if isinstance(node, TParam):
            self._check_param(node)
            return
        fixed = self.is_fixed(node)
        if fixed:
            self.exact(node)  # in post order, so its arguments' values are known
        if fixed and any(node is root for root in self.checker.roots):
            self._judge(node, [node], [False])
        if fixed and not self.is_constant(node):
            self._check_range(node)  # params take every value of their domains
        if fixed:
            return
        operands = children(node)
        combined = [self.is_fixed(operand) for operand in operands]
        if isinstance(node, TAdd | TMul) and sum(combined) >= 2:
            inverse = node.inverted if isinstance(node, TMul) else node.negated
            parts = [(op, inv) for op, inv, c in zip(operands, inverse, combined, strict=True) if c]
            self._judge(node, [op for op, _ in parts], [inv for _, inv in parts])
        else:
            for operand, is_constant in zip(operands, combined, strict=True):
                if is_constant:
                    self._judge(operand, [operand], [False])
        self._check_range(node)

    def is_constant(self, node: TExpr) -> bool:
        """Whether `node` reads no input, param or `num_classes`."""
        known = self._constant.get(id(node))
        if known is None:
            known = not isinstance(node, TInput | TParam | TNumClasses) and all(
                self.is_constant(child) for child in children(node)
            )
            self._constant[id(node)] = known
        return known

    def is_fixed(self, node: TExpr) -> bool:
        """Whether `node` reads no input or `num_classes` (scalar params allowed): the same
        for every input once the params are given."""
        known = self._fixed.get(id(node))
        if known is None:
            if isinstance(node, TParam):
                known = not node.info.is_vector
            else:
                known = not isinstance(node, TInput | TNumClasses) and all(
                    self.is_fixed(child) for child in children(node)
                )
            self._fixed[id(node)] = known
        return known

    def exact(self, node: TExpr) -> mpmath.mpf | None:
        """A fixed node's exact value, params at their defaults; None where it is not
        finite (a pole, NaN: other checks report those) or too large to compute (then the
        node is in `_huge`)."""
        if id(node) in self._exact:
            return self._exact[id(node)]
        if isinstance(node, TParam) and isinstance(node.info.default, float):
            self._exact[id(node)] = mpmath.mpf(node.info.default)
            return self._exact[id(node)]
        arguments = [(child, self.exact(child)) for child in children(node)]
        value: mpmath.mpf | None = None
        if any(id(child) in self._huge for child, _ in arguments):
            self._huge.add(id(node))
        elif all(known is not None for _, known in arguments):
            evaluator = Evaluator(numeric.EXACT, {})
            for child, known in arguments:
                evaluator.assume(child, known)
            try:
                with mpmath.workdps(40):
                    value = mpmath.mpf(np.asarray(evaluator.value(node)).flat[0])
            except (ZeroDivisionError, ValueError, OverflowError, TypeError):
                value = None
            if value is not None and not mpmath.isfinite(value):
                value = None
            elif value is not None and mpmath.mag(value) > EXACT_MAGNITUDE_LIMIT:
                self._huge.add(id(node))
                value = None
        self._exact[id(node)] = value
        return value

    def _judge(self, node: TExpr, constants: Sequence[TExpr], inverse: Sequence[bool]) -> None:
        """Report the value of `constants` combined into one number (a product's factors
        when `node` is a product, else a sum's terms) as `node`'s generated code holds it."""
        if id(node) in self._judged or isinstance(node, TParam):
            return  # a param on its own: `_check_param` covers its default and domain
        self._judged.add(id(node))
        values = [self.exact(constant) for constant in constants]
        what = "its constant parts" if len(constants) > 1 else ""
        if not all(self.is_constant(constant) for constant in constants):
            what = " ".join([what, "with the params at their defaults"]).strip()
        if any(id(constant) in self._huge for constant in constants):
            self._report_float64(node, "too large to compute", what)
            return
        known = [value for value in values if value is not None]
        if len(known) < len(values):
            return
        with mpmath.workdps(40):
            if isinstance(node, TMul) and len(constants) > 1:
                combined = mpmath.mpf(1)
                for value, divides in zip(known, inverse, strict=True):
                    if divides and value == 0:
                        return  # a division by 0 (E406/W403)
                    combined = combined / value if divides else combined * value
            else:
                combined = mpmath.fsum(
                    -value if minus else value for value, minus in zip(known, inverse, strict=True)
                )
        if not _within(combined, FLOAT64_MAX):
            self._report_float64(node, _scientific(combined), what)
        elif not _within(combined, FLOAT32_MAX):
            shown = f" ({what})" if what else ""
            self._report_float32(node, f"{shown} is {_scientific(combined)}")

    def _check_param(self, param: TParam) -> None:
        info = param.info
        if info.name in self._params_seen:
            return
        self._params_seen.add(info.name)
        defaults = info.default if isinstance(info.default, tuple) else (info.default,)
        values = [*defaults, *_param_values(info.domain)]
        beyond = [v for v in values if not _within(v, FLOAT32_MAX)]
        if beyond:
            self._report_float32(
                param,
                f" can be {format_number(beyond[0])} (its default or domain allows it)",
                f"restrict `{info.name}`'s domain to values within +-3.4e38",
            )

    def _check_range(self, node: TExpr) -> None:
        if id(node) in self._under_log:
            return
        values = self.checker.ranges.range_of(node)
        if _within(values.low, FLOAT32_MAX) and _within(values.high, FLOAT32_MAX):
            return
        found = self.checker._search(node, [node], self._exceeds(node), self._search)
        if found.witness is not None:
            self._report_float32(node, f" exceeds it at {found.witness.describe()}")

    def _exceeds(self, node: TExpr) -> Condition:
        """Where `node` is beyond float32's range and its arguments are not; an infinite
        value counts only where `node` has no pole (else it is a division by 0, a log of
        0..., which other checks report)."""
        pole_free = _pole_free(node, self.checker.ranges)
        arguments = children(node)

        def condition(value: Callable[[TExpr], Array]) -> Array:
            magnitude = np.abs(value(node).astype(float))
            found = (magnitude > FLOAT32_MAX) & ~np.isnan(magnitude)
            if not pole_free:
                found = found & np.isfinite(magnitude)
            for argument in arguments:
                small = np.abs(value(argument).astype(float)) <= FLOAT32_MAX
                reduced = tuple(
                    axis
                    for axis in range(1, small.ndim)
                    if found.shape[axis] == 1 and small.shape[axis] > 1
                )  # every element a reduction combines
                found = found & np.all(small, axis=reduced, keepdims=True)
            return found

        return condition

    def _report_float64(self, node: TExpr, value: str, what: str = "") -> None:
        text = self.checker.text(node)
        subject = f"`{text}`" + (f" ({what})" if what else "")
        self.checker.diagnostics.append(
            error(
                CONSTANT_OVERFLOW,
                f"{subject} is {value}, beyond the largest float64 value (1.8e308): a float "
                "holds it as inf, so the loss differs from the spec for every input",
                node.span,
                "too large for any float",
                "use a smaller constant, or write the formula so that the large factors "
                "cancel before they are computed",
            )
        )

    def _report_float32(self, node: TExpr, what: str, *help_lines: str) -> None:
        self.checker.diagnostics.append(
            warning(
                FLOAT32_OVERFLOW,
                f"`{self.checker.text(node)}`{what}, beyond the largest float32 value "
                "(3.4e38): a loss computing in float32 (Keras's default) gets inf there",
                node.span,
                "too large for float32",
                *help_lines,
                "keep it below 3.4e38 for every value the kinds and domains allow (e.g. with "
                '`clip` or `minimum`), or construct the loss with `dtype="float64"`',
            )
        )


def _under_log(roots: Sequence[TExpr]) -> set[int]:
    """Nodes whose value only a `log` takes, directly or as a term of a sum: the stable
    rewrites compute `log(cosh(x))`, `log(sum(exp(x)))` and `log(exp(x))` without forming
    the value, so its overflow is not the loss's."""
    found: set[int] = set()
    for node in walk(roots):
        if isinstance(node, TCall) and node.builtin in ("log", "log1p"):
            (argument,) = node.args
            found.add(id(argument))
            if isinstance(argument, TAdd) or (
                isinstance(argument, TCall) and argument.builtin in ("sum", "logsumexp")
            ):
                found.update(id(term) for term in children(argument))
    return found


def _within(value: float | mpmath.mpf, limit: float) -> bool:
    return bool(abs(value) <= limit)


def _scientific(value: mpmath.mpf) -> str:
    return str(mpmath.nstr(value, 2, min_fixed=0, max_fixed=0)).replace("e+", "e")


def _pole_free(node: TExpr, ranges: RangeAnalysis) -> bool:
    """Whether `node` is infinite only where an argument is or where it overflows."""
    match node:
        case TAdd() | TNeg():
            return True
        case TMul(inverted=inverted):
            return not any(inverted)
        case TPow(exponent=exponent):
            return ranges.range_of(exponent).low >= 0
        case TCall(builtin=builtin):
            return BUILTINS[builtin].pole_free
    return False


def post_order(roots: Sequence[TExpr]) -> list[TExpr]:
    """Every node under the roots once, each after all of its children (iteratively)."""
    order: list[TExpr] = []
    seen: set[int] = set()
    stack: list[tuple[TExpr, bool]] = [(root, False) for root in reversed(roots)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(children(node)))
    return order


def source_text(source: SourceFile, span: Span) -> str:
    """The spec text a span covers, on one line."""
    if span.line == span.end_line:
        return source.line_text(span.line)[span.column - 1 : span.end_column - 1]
    parts = [source.line_text(span.line)[span.column - 1 :]]
    parts += [source.line_text(line) for line in range(span.line + 1, span.end_line)]
    parts.append(source.line_text(span.end_line)[: span.end_column - 1])
    return " ".join(part.strip() for part in parts)


def gradient_diagnostics(checked: CheckedSpec) -> list[Diagnostic]:
    """E5xx: the result must reach y_pred through something differentiable."""
    paths = GradientPaths(checked.result)
    if paths.flows(checked.result):
        return []
    name = checked.y_pred.name
    if not paths.blockers:
        return [
            error(
                NO_PREDICTION,
                f"the loss does not depend on y_pred `{name}`",
                checked.loss_span,
                f"no gradient path to `{name}`",
                f"use `{name}` (the second input, the model's prediction) in the loss: "
                "its gradient is what trains the model",
            )
        ]
    places = " or ".join(paths.blockers)
    return [
        error(
            NO_GRADIENT_PATH,
            f"the loss has no gradient path to y_pred `{name}`: it occurs only inside {places}",
            checked.loss_span,
            f"gradient with respect to `{name}` is always 0",
            f"use `{name}` outside `stop_gradient`, `class`, comparisons and gather indices "
            "so that a gradient can flow",
        )
    ]


def check_domains(checked: CheckedSpec) -> tuple[Diagnostic, ...]:
    """E4xx/W4xx/E5xx for a checked spec: raises LossSpecError on errors, else warnings."""
    roots = [checked.loss] + ([checked.mask] if checked.mask is not None else [])
    diagnostics = DomainChecker(checked, roots).run() + gradient_diagnostics(checked)
    if any(d.is_error for d in diagnostics):
        raise LossSpecError(diagnostics, checked.source)
    return tuple(diagnostics)
