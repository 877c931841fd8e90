"""Value ranges of typed nodes: `RangeAnalysis`, the built-ins' range rules (`CUSTOM_RANGES`)."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import sympy

from lossdsl.analysis import intervals
from lossdsl.analysis.intervals import (
    COMPARISON,
    FULL,
    KIND_RANGES,
    NONNEGATIVE,
    NUM_CLASSES_RANGE,
    SAMPLE_INDEX_RANGE,
    UNIT,
    Array,
    Range,
)
from lossdsl.builtins import BUILTINS, Builtin, Shape
from lossdsl.symbolic import numeric
from lossdsl.typed import (
    CLASS_ONLY,
    Role,
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
    children,
)

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
        values = intervals.increasing(inside, function)
        return intervals.negate(values) if negated else values

    return rule


def _relu_rule(analysis: RangeAnalysis, call: TCall) -> Range:
    return _clamp_below(analysis.argument(call, 0), Range.point(0.0))


def _clamp_below(values: Range, floor: Range) -> Range:
    """maximum(values, floor) for independent values."""
    low = max(values.bounds()[0], floor.bounds()[0], key=intervals.lower_key)
    high = max(values.bounds()[1], floor.bounds()[1], key=intervals.upper_key)
    return Range(low[0], high[0], low[1], high[1])


def _clamp_above(values: Range, ceiling: Range) -> Range:
    """minimum(values, ceiling) for independent values."""
    return intervals.negate(_clamp_below(intervals.negate(values), intervals.negate(ceiling)))


def _cosh_rule(analysis: RangeAnalysis, call: TCall) -> Range:
    magnitude = intervals.absolute(analysis.argument(call, 0))
    return intervals.increasing(magnitude, np.cosh)


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
    return intervals.repeated_sum(analysis.range_of(argument))


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


def _branch_range(analysis: RangeAnalysis, call: TCall, taken: bool) -> Range:
    """The range of a branch of `where(c, a, b)` where it is chosen: a where c holds, b
    where it does not, narrowed when c compares that branch with a number, as in the
    safe division `x / where(k > 0, k, 1)`."""
    condition, branch = call.args[0], call.args[1 if taken else 2]
    values = analysis.range_of(branch)
    if not isinstance(condition, TCompare):
        return values
    op, left, right = condition.op, condition.left, condition.right
    if right is branch and constant_value(left) is not None:
        op, left, right = FLIPPED[op], right, left
    bound = constant_value(right)
    if left is not branch or bound is None:
        return values
    if not taken:
        op = NEGATED[op]
    allowed = {
        ">": Range(bound, math.inf, False, False),
        ">=": Range(bound, math.inf, True, False),
        "<": Range(-math.inf, bound, False, False),
        "<=": Range(-math.inf, bound, False, True),
        "==": Range.point(bound),
    }.get(op)
    narrowed = values.intersect(allowed) if allowed is not None else values
    return values if narrowed is None else narrowed


FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
"""A comparison with its sides swapped: `c < x` is `x > c`."""

NEGATED = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}
"""The comparison that holds where one does not."""


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
    "where": lambda analysis, call: _branch_range(analysis, call, True).hull(
        _branch_range(analysis, call, False)
    ),
    "clip": _clip_rule,
    # Assumes C >= 2: over one class softmax is the constant 1 and trains nothing.
    "softmax": _constant_rule(Range(0.0, 1.0, False, False)),
    "log_softmax": _constant_rule(Range(-math.inf, 0.0, False, False)),
    "cumsum": lambda analysis, call: intervals.repeated_sum(analysis.argument(call, 0)),
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
            return intervals.increasing(values, function)
        if values.low == 0:
            return Range(-math.inf, intervals.at(function, values.high), False, values.high_closed)
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
        return lambda analysis, call: intervals.increasing(
            intervals.absolute(analysis.argument(call, 0)), function
        )
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
    """What makes two atoms the same: what they compute. An input or param reference is
    the name it reads (each reference is its own node); any other node its structure
    without spans, so that `exp(z) / (1 + exp(z))` written out is a share of one atom, as
    it is with `let e = exp(z)`."""
    known = _IDENTITIES.get(node)
    if known is not None:
        return known
    stack = [node]
    while stack:  # children first, without recursion: chains of lets are deep
        current = stack[-1]
        pending = [child for child in children(current) if child not in _IDENTITIES]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        _IDENTITIES[current] = _identity(current)
    return _IDENTITIES[node]


_IDENTITIES: weakref.WeakKeyDictionary[Any, object] = weakref.WeakKeyDictionary()
"""`atom_identity` of the nodes seen, while they live."""


def _identity(node: TExpr) -> object:
    """`atom_identity` of a node whose children's are known."""
    if isinstance(node, TInput | TParam):
        return node.info.name

    def key(value: object) -> object:
        if isinstance(value, tuple):
            return tuple(key(item) for item in value)
        return _IDENTITIES[value] if isinstance(value, TExpr) else value

    fields = dataclasses.fields(node)
    return (type(node).__name__, *(key(getattr(node, f.name)) for f in fields if f.name != "span"))


MAX_CORNER_ATOMS = 8
"""Multi-affine refinement is tried for at most this many atoms (2^8 corners)."""

MAX_CORNER_DEPTH = 64
"""... and on arithmetic at most this deep (it is evaluated recursively)."""


class _Corners(NamedTuple):
    """A multi-affine node at the corners of its atoms' box (`RangeAnalysis._corners`)."""

    choice: np.ndarray  # [corner, atom]: whether the atom is at its high end
    values: np.ndarray
    attained: np.ndarray


def _range_of(lows: np.ndarray, highs: np.ndarray, attained: np.ndarray) -> Range:
    """From the smallest of the corners' lows to the largest of their highs (each corner's
    value, or where it leads along a half-line), an end closed where a corner attains it."""
    low, high = float(lows.min()), float(highs.max())
    return Range(
        low,
        high,
        bool(np.any(attained & (lows == low))),
        bool(np.any(attained & (highs == high))),
    )


class RangeAnalysis:
    """Value ranges of the nodes of one typed tree, memoised by node identity; with
    `input_limit`, of inputs at most that size (as `WitnessSearch` takes them)."""

    def __init__(self, input_limit: float = math.inf) -> None:
        self._input_range = Range(-input_limit, input_limit)
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
            case TSampleIndex():
                return SAMPLE_INDEX_RANGE
            case TInput(info=info):
                kind = KIND_RANGES[info.kind]
                return kind.intersect(self._input_range) or kind
            case TParam(info=info):
                return Range.of_domain(info.domain)
            case TCompare() | TLogic():
                return COMPARISON
            case TGather(vector=vector):
                return self.range_of(vector)
            case TSelect(operand=operand):
                return self.range_of(operand)
            case TCall():
                return range_rule(BUILTINS[node.builtin])(self, node)
            case TAdd(operands=operands, negated=negated):
                naive = intervals.add([self.range_of(op) for op in operands], negated)
                for refined in (self._combined_reductions(node), self._above_a_share(node)):
                    if refined is not None:
                        naive = naive.intersect(refined) or naive
            case TMul(operands=operands, inverted=inverted):
                naive = self.product(operands, inverted)
                share = self._share(node)
                if share is not None:
                    naive = naive.intersect(share) or naive
            case TNeg(operand=operand):
                naive = intervals.negate(self.range_of(operand))
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
            ranges.append(intervals.repeated_sum(inner) if operands[0].builtin == "sum" else inner)
        rest = [i for i in range(len(node.operands)) if i not in in_group]
        ranges += [self.range_of(node.operands[i]) for i in rest]
        return intervals.add(ranges, [False] * len(grouped) + [node.negated[i] for i in rest])

    def _above_a_share(self, node: TAdd) -> Range | None:
        """relu(x) - c * x and softplus(x) - c * x, for c in [0, 1], are at least 0: both
        functions are at least max(x, 0), which is at least c * x. The binary
        cross-entropy on logits is one, softplus(z) - y * z (and TensorFlow's formula for
        it, relu(z) - z * y + log1p(exp(-|z|))), so a focal loss's p_t = exp(-bce) is at
        most 1. The pair's range is [0, inf); the other terms add theirs."""
        terms = list(zip(node.operands, node.negated, strict=True))
        for index, (above, minus) in enumerate(terms):
            if minus or not (isinstance(above, TCall) and above.builtin in ("relu", "softplus")):
                continue
            argument = atom_identity(above.args[0])
            for other, (share_of, subtracted) in enumerate(terms):
                if not subtracted or (share := self._share_of(share_of, argument)) is None:
                    continue
                if share.low < 0 or share.high > 1:
                    continue
                rest = [term for at, term in enumerate(terms) if at not in (index, other)]
                return intervals.add(
                    [NONNEGATIVE, *(self.range_of(term) for term, _ in rest)],
                    [False, *(negated for _, negated in rest)],
                )
        return None

    def _share_of(self, node: TExpr, argument: object) -> Range | None:
        """The range of c where `node` is c * x for the x whose identity is `argument` (1
        for x itself), else None."""
        if atom_identity(node) == argument:
            return Range.point(1.0)
        if not isinstance(node, TMul) or any(node.inverted):
            return None
        positions = [i for i, op in enumerate(node.operands) if atom_identity(op) == argument]
        if len(positions) != 1:
            return None
        others = [op for i, op in enumerate(node.operands) if i != positions[0]]
        return self.product(others, [False] * len(others))

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
        rest_range = intervals.add(
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
        """The product's range, a factor repeated (`y * y`) taken as its power, which is
        never negative for an even one: the same value each time, not two independent
        ones."""
        powers: dict[tuple[bool, object], tuple[TExpr, int]] = {}
        for operand, divides in zip(operands, inverted, strict=True):
            key = (divides, atom_identity(operand))
            _, count = powers.get(key, (operand, 0))
            powers[key] = (operand, count + 1)
        result = Range.point(1.0)
        for (divides, _), (operand, count) in powers.items():
            factor = intervals.integer_power(self.range_of(operand), count)
            result = intervals.multiply(result, intervals.reciprocal(factor) if divides else factor)
        return result

    def _power(self, node: TPow) -> Range:
        base = self.range_of(node.base)
        exponent = constant_value(node.exponent)
        if exponent is not None and exponent.is_integer():
            return intervals.integer_power(base, int(exponent))
        if base.low < 0 and is_integer_valued(node.exponent):
            return FULL
        return intervals.real_power(base, self.range_of(node.exponent))

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
            return values if sign > 0 else intervals.negate(values)
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
        return intervals.reciprocal(node_range) if key[0] else node_range

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
        rays = [i for i, r in enumerate(ranges) if math.isinf(r.low) or math.isinf(r.high)]
        if not rays:
            corners = self._corners(node, keys, ranges)
            if corners is None:
                return None
            return _range_of(corners.values, corners.values, corners.attained)
        if len(rays) > 1 or (math.isinf(ranges[rays[0]].low) and math.isinf(ranges[rays[0]].high)):
            return None
        return self._ray_range(node, keys, ranges, rays[0])

    def _ray_range(
        self, node: TExpr, keys: list[AtomKey], ranges: list[Range], ray: int
    ) -> Range | None:
        """The range of a multi-affine `node` whose atom `ray` ranges over a half-line: at
        each corner of the other atoms, node is a + b x in that atom x, so over x >= l it
        runs from a + b l to +inf (b > 0), -inf (b < 0), or is a + b l alone (b = 0).
        `y + (1 - y) * alpha` with y in [0, 1] and alpha = exp(z) + 1 is at least 1."""
        half_line = ranges[ray]
        rising = math.isfinite(half_line.low)  # x in [l, inf), else in (-inf, h]
        end = half_line.low if rising else half_line.high
        end_closed = half_line.low_closed if rising else half_line.high_closed
        step = 1.0 if rising else -1.0
        segment = ranges.copy()  # x at its end and one step inside, to read b
        segment[ray] = (
            Range(end, end + step, end_closed, True)
            if rising
            else Range(end + step, end, True, end_closed)
        )
        corners = self._corners(node, keys, segment)
        if corners is None:
            return None
        at_end = corners.choice[:, ray] != rising  # the choice of the end: low, or high
        values, attained = corners.values[at_end], corners.attained[at_end]
        slopes = corners.values[~at_end] - values  # along the half-line, away from its end
        scale = max(1.0, float(np.max(np.abs(values))))
        slopes[np.abs(slopes) <= 1e-12 * scale] = 0.0
        lows = np.where(slopes < 0, -math.inf, values)
        highs = np.where(slopes > 0, math.inf, values)
        return _range_of(lows, highs, attained)

    def _corners(self, node: TExpr, keys: list[AtomKey], ranges: list[Range]) -> _Corners | None:
        """`node` at every corner of the box of its atoms' finite ranges, and whether each
        value is attained (at closed ends, or unchanged a little inside an open one);
        None if a value is not finite."""
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
        attained = np.all(closed, axis=1) | np.isclose(nudged_values, values, rtol=0, atol=0)
        return _Corners(choice, values, attained)

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
