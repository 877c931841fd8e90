"""The exact reference: value and gradient of the expanded loss at 50 digits with mpmath."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import mpmath
import numpy as np
import sympy
from sympy.core.relational import Relational

from lossdsl.builtins import Sign, row_of
from lossdsl.symbolic import functions, numeric
from lossdsl.symbolic.loss import SymbolicLoss
from lossdsl.verification.expander import COMPARISONS, Expander, Select, select
from lossdsl.verification.layouts import Draw, redraw_elements

KINK_DISTANCE = 1e-4
"""Points closer than this (relative to the terms involved) to a kink are moved away."""

NUDGE_ROUNDS = 4
"""How many times the y_pred elements near a kink are redrawn before they are skipped."""

DIGITS = 50
"""Decimal digits of the mpmath evaluation of the reference."""

PRECISION = mpmath.libmp.dps_to_prec(DIGITS)
"""The same in bits: mpmath's working precision inside `mpmath.workdps(DIGITS)`."""

_UNKNOWN = object()
"""A value not computed yet (computed values include False)."""

FLOAT64_MAX = mpmath.mpf(np.finfo(np.float64).max)
"""Exact values beyond this are inf in float64: the reference is not compared there."""

FLOAT64_EPSILON = mpmath.mpf(np.finfo(np.float64).eps)
"""float64's resolution relative to a value's magnitude."""

FLOAT64_TINY = mpmath.mpf(np.finfo(np.float64).tiny)
"""Nonzero exact values below this are subnormal in float64, which TensorFlow's CPU
kernels flush to 0: the reference is not compared there either."""


ARITHMETIC: dict[type[sympy.Basic], Callable[..., Any]] = {
    sympy.Add: lambda *terms: mpmath.fsum(terms),
    sympy.Mul: lambda *factors: mpmath.fprod(factors),
    sympy.Pow: mpmath.power,
}
"""Arithmetic in an expanded reference; its functions are `symbolic.numeric`'s."""

SPECIAL_NUMBERS: dict[sympy.Basic, Any] = {
    sympy.oo: mpmath.inf,
    -sympy.oo: -mpmath.inf,
    sympy.zoo: mpmath.nan,
    sympy.nan: mpmath.nan,
}
"""SymPy's infinities and undefined values (`log(0)` is `zoo`): NaN unless signed."""


_APPLIED: dict[tuple[type, int], tuple[tuple[sympy.Dummy, ...], sympy.Expr]] = {}
_DERIVATIVES: dict[type, sympy.Expr] = {}


def _applied(function: type, arity: int) -> tuple[tuple[sympy.Dummy, ...], sympy.Expr]:
    """`function` applied to `arity` placeholder arguments (made once per function)."""
    if (function, arity) not in _APPLIED:
        arguments = tuple(sympy.Dummy(f"x{index}", real=True) for index in range(arity))
        _APPLIED[function, arity] = (arguments, function(*arguments))
    return _APPLIED[function, arity]


def exact_value(function: type, values: Sequence[Any]) -> Any:
    """`function` of mpmath values, through the one numeric interpreter."""
    arguments, applied = _applied(function, len(values))
    return numeric.evaluate(applied, dict(zip(arguments, values, strict=True)), numeric.EXACT)


def local_derivative(function: type, value: Any) -> Any:
    """SymPy's derivative of a one-argument function at an mpmath value."""
    (argument,), applied = _applied(function, 1)
    if function not in _DERIVATIVES:
        _DERIVATIVES[function] = applied.diff(argument)
    return numeric.evaluate(_DERIVATIVES[function], {argument: value}, numeric.EXACT)


@dataclass
class ReferenceGraph:
    """Expanded references evaluated at one point with mpmath, and differentiated.

    The expanded expressions share sub-expressions (a softmax's denominator, a let used
    twice), so they are walked as a graph: values are memoised per node, only the taken
    branch of a `Select` is evaluated, and the gradient is accumulated backwards through
    the taken branches with SymPy's derivative of each function (`local_derivative`).
    Evaluation runs at DIGITS digits; a division by zero or a complex result is NaN.
    """

    point: Mapping[sympy.Basic, float]
    flush_underflow: bool = False
    """Whether a nonzero value below float64's normal numbers is taken as 0, as TensorFlow's
    CPU kernels and float64 itself end up computing it (`underflow_followed`)."""
    singular: set[sympy.Basic] = field(default_factory=set)
    """Nodes reached by `gradient` with an infinite or undefined partial derivative."""
    overflowed: set[sympy.Basic] = field(default_factory=set)
    """Nodes too large for mpmath itself, taken as +inf (and as beyond float64)."""
    _values: dict[sympy.Basic, Any] = field(default_factory=dict)
    _magnitudes: dict[sympy.Basic, Any] = field(default_factory=dict)
    _children: dict[sympy.Basic, tuple[sympy.Basic, ...]] = field(default_factory=dict)

    def floats(self, exprs: Sequence[sympy.Basic]) -> list[float]:
        """The values of `exprs` rounded to float64."""
        with mpmath.workdps(DIGITS):
            return [_to_float(self.value(expr)) for expr in exprs]

    def value(self, expr: sympy.Basic) -> Any:
        """The exact (DIGITS-digit) value of `expr`: an mpf, or a bool for a condition."""
        known = self._values.get(expr, _UNKNOWN)
        if known is not _UNKNOWN:
            return known
        if mpmath.mp.prec != PRECISION:  # once per walk, not per node: no frame added below
            with mpmath.workdps(DIGITS):
                return self.value(expr)
        try:
            value = self._value(expr)
        except ZeroDivisionError:
            value = mpmath.nan
        except OverflowError:  # beyond mpmath's exponents (exp(exp(exp(50))))
            self.overflowed.add(expr)
            value = mpmath.inf
        if self.flush_underflow and isinstance(value, mpmath.mpf) and abs(value) < FLOAT64_TINY:
            value = mpmath.mpf(0)
        self._values[expr] = value
        return value

    def _value(self, expr: sympy.Basic) -> Any:
        arithmetic = ARITHMETIC.get(type(expr))
        if arithmetic is not None:  # most nodes: no need to try the cases below
            return arithmetic(*[self.value(arg) for arg in expr.args])
        match expr:
            case sympy.Symbol():
                return mpmath.mpf(self.point[expr])
            case sympy.Float():
                return mpmath.mpf(expr._mpf_)
            case sympy.Integer():
                return mpmath.mpf(int(expr))
            case sympy.Rational():
                return mpmath.mpf(expr.p) / expr.q
            case Select():
                return self.value(self._taken(expr))
            case Relational():
                lhs, rhs = (self.value(arg) for arg in expr.args)
                return bool(COMPARISONS[type(expr)](lhs, rhs))
            case sympy.And():
                return all([bool(self.value(arg)) for arg in expr.args])
            case sympy.Or():
                return any([bool(self.value(arg)) for arg in expr.args])
            case sympy.Not():
                return not self.value(expr.args[0])
            case _ if expr in SPECIAL_NUMBERS:
                return SPECIAL_NUMBERS[expr]
            case _ if not expr.args and expr.is_number:
                return mpmath.mpf(sympy.Float(expr, DIGITS)._mpf_)
            case _:
                return exact_value(expr.func, [self.value(arg) for arg in expr.args])

    def magnitude(self, expr: sympy.Basic) -> Any:
        """The size of the values floating point computes `expr` from, which its rounding
        errors are relative to: a sum's terms' magnitudes added, a product's factors'
        multiplied, a select's taken branch's, a clip's argument's where it passes it;
        a whole power x^k (k >= 1) carries x's error times its derivative, k x^(k - 1);
        any other node its own size (a function is computed to its own relative
        precision). log_softmax(z) at the largest logit z_c = 0.21 is z_c - logsumexp(z),
        about -1e-22 beside a logit of -50, from two terms of 0.21: its magnitude is 0.43,
        and its square's 2 * 1e-22 * 0.43, not 1e-44."""
        known = self._magnitudes.get(expr)
        if known is None:
            match expr:
                case sympy.Add():
                    known = mpmath.fsum(self.magnitude(term) for term in expr.args)
                case sympy.Mul():
                    known = mpmath.fprod(self.magnitude(factor) for factor in expr.args)
                case Select():
                    known = self.magnitude(self._taken(expr))
                case sympy.Pow() if expr.exp.is_Integer and expr.exp >= 1:
                    power = int(expr.exp)
                    carried = power * abs(self.value(expr.base)) ** (power - 1)
                    known = max(abs(self.value(expr)), carried * self.magnitude(expr.base))
                case functions.Clip() if self._passes(expr):
                    known = self.magnitude(expr.args[0])
                case _:
                    known = abs(self.value(expr))
            self._magnitudes[expr] = known
        return known

    def _passes(self, clip: sympy.Basic) -> bool:
        """Whether a clip's argument lies within its bounds, so that it is the value."""
        x, low, high = (self.value(arg) for arg in clip.args)
        return bool(low <= x <= high)

    def _taken(self, where: sympy.Basic) -> sympy.Basic:
        condition, a, b = where.args
        return a if self.value(condition) else b

    def children(self, expr: sympy.Basic) -> tuple[sympy.Basic, ...]:
        """The sub-expressions a value depends on through its taken branches."""
        known = self._children.get(expr)
        if known is None:
            match expr:
                case Select():
                    known = (expr.args[0], self._taken(expr))
                case sympy.Pow() if expr.exp.is_number:
                    known = (expr.base,)
                case _:
                    known = expr.args
            self._children[expr] = known
        return known

    def order(self, roots: Sequence[sympy.Basic]) -> list[sympy.Basic]:
        """Every node the roots' values depend on, each after all it depends on."""
        ordered: list[sympy.Basic] = []
        seen: set[sympy.Basic] = set()
        for root in roots:
            stack: list[tuple[sympy.Basic, bool]] = [(root, False)]
            while stack:
                node, expanded = stack.pop()
                if expanded:
                    ordered.append(node)
                elif node not in seen:
                    seen.add(node)
                    stack.append((node, True))
                    stack.extend((child, False) for child in reversed(self.children(node)))
        return ordered

    def gradient(
        self, seeds: Mapping[sympy.Basic, float], order: Sequence[sympy.Basic] | None = None
    ) -> dict[sympy.Basic, Any]:
        """d(sum of seed * root)/d(node) for every node the roots depend on (`order`: the
        roots' `order`, if known)."""
        (adjoints,) = self.gradients([seeds], order)
        return adjoints

    def gradients(
        self,
        seed_sets: Sequence[Mapping[sympy.Basic, float]],
        order: Sequence[sympy.Basic] | None = None,
    ) -> list[dict[sympy.Basic, Any]]:
        """`gradient` of each set of seeds, in one sweep: each node's partials once."""
        with mpmath.workdps(DIGITS):
            if order is None:
                order = self.order(list(dict.fromkeys(r for seeds in seed_sets for r in seeds)))
            adjoint_sets: list[dict[sympy.Basic, Any]] = [
                {root: mpmath.mpf(seed) for root, seed in seeds.items()} for seeds in seed_sets
            ]
            for node in reversed(order):
                reached = [(adjoints, adjoints.get(node)) for adjoints in adjoint_sets]
                reached = [
                    (adjoints, adjoint) for adjoints, adjoint in reached if adjoint is not None
                ]
                if not reached:
                    continue
                if type(node) is sympy.Add:  # every partial is 1: nothing to compute
                    for adjoints, adjoint in reached:
                        if adjoint != 0:
                            for child in node.args:
                                adjoints[child] = adjoints.get(child, 0) + adjoint
                    continue
                try:
                    partials = list(self._partials(node))
                except (ZeroDivisionError, OverflowError):
                    partials = [(child, mpmath.nan) for child in self.children(node)]
                if any(not mpmath.isfinite(partial) for _, partial in partials):
                    self.singular.add(node)
                for adjoints, adjoint in reached:
                    if adjoint != 0:
                        for child, partial in partials:
                            adjoints[child] = adjoints.get(child, 0) + adjoint * partial
            return adjoint_sets

    def _beside_a_pole(self, node: sympy.Basic) -> bool:
        """Whether `node` is a function with poles at 0, -1, -2, ... (lgamma, digamma) whose
        argument is nearer one than float64 resolves at the argument's magnitude: a float64
        program may compute the pole itself there (lgamma(k + r) at k = -50 and r = 1e-22,
        -50 exactly in float64), where the exact value and derivative are finite."""
        if not _has_poles(node):
            return False
        (argument,) = node.args
        value = self.value(argument)
        nearest = mpmath.nint(value)
        return nearest <= 0 and abs(value - nearest) <= FLOAT64_EPSILON * self.magnitude(argument)

    def overflowing(
        self, roots: Sequence[sympy.Basic], order: Sequence[sympy.Basic] | None = None
    ) -> set[sympy.Basic]:
        """The roots computed from a value (through taken branches, not conditions) that is
        finite but beyond float64's range, or nonzero and below its normal numbers, or
        beside a pole float64 cannot tell it from (`_beside_a_pole`), so that no float64
        program can follow them (`order`: the roots' `order`, if known)."""
        over: dict[sympy.Basic, bool] = {}
        with mpmath.workdps(DIGITS):
            for node in self.order(roots) if order is None else order:
                value = self.value(node)
                outside = (
                    node in self.overflowed
                    or (isinstance(value, mpmath.mpf) and _beyond_float64(value))
                    or self._beside_a_pole(node)
                )
                over[node] = outside or any(over[child] for child in self._operands(node))
        return {root for root in roots if over[root]}

    def _operands(self, expr: sympy.Basic) -> tuple[sympy.Basic, ...]:
        """The children whose values `expr`'s value is computed from (no conditions)."""
        match expr:
            case Select():
                return (self._taken(expr),)
            case Relational() | sympy.And() | sympy.Or() | sympy.Not():
                return ()
            case _:
                return self.children(expr)

    def _partials(self, expr: sympy.Basic) -> Iterator[tuple[sympy.Basic, Any]]:
        """Each argument of `expr` with the derivative of `expr` with respect to it."""
        match expr:
            case sympy.Add():
                yield from ((arg, 1) for arg in expr.args)
            case sympy.Mul() if len(expr.args) == 2:  # the product of the other factor: itself
                first, second = expr.args
                yield first, +self.value(second)
                yield second, +self.value(first)
            case sympy.Mul():
                factors = [self.value(arg) for arg in expr.args]
                for position, arg in enumerate(expr.args):
                    yield arg, mpmath.fprod(factors[:position] + factors[position + 1 :])
            case sympy.Pow():
                base, exponent = (self.value(arg) for arg in expr.args)
                yield expr.base, exponent * mpmath.power(base, exponent - 1)
                if not expr.exp.is_number:
                    yield expr.exp, self.value(expr) * mpmath.log(base)
            case Select():
                yield self._taken(expr), 1
            case sympy.Function() if len(expr.args) == 1:
                yield expr.args[0], local_derivative(expr.func, self.value(expr.args[0]))
            case Relational() | sympy.And() | sympy.Or() | sympy.Not():
                return
            case _ if expr.args:
                raise TypeError(f"no derivative rule for {expr.func} in a reference")


def _beyond_float64(value: mpmath.mpf) -> bool:
    """Whether `value` is finite and nonzero, and beyond float64's range or below its normal
    numbers."""
    _, mantissa, exponent, bits = value._mpf_
    if not mantissa:  # 0, an infinity or NaN
        return False
    if -1021 <= exponent + bits <= 1023:  # 2^-1022 <= |value| < 2^1023: surely inside
        return False
    return not FLOAT64_TINY <= abs(value) <= FLOAT64_MAX


def _to_float(value: Any) -> float:
    if isinstance(value, mpmath.mpc):
        return float(value.real) if value.imag == 0 else math.nan
    return float(value)


@dataclass(frozen=True)
class Kink:
    """A taken branch whose condition nearly flips: lhs - rhs is 0 up to KINK_DISTANCE; or
    a sign, which jumps at 0, of an argument that is 0 up to KINK_DISTANCE."""

    condition: sympy.Basic  # a comparison, or comparisons joined by `and`, `or`, `not`; a sign
    symbols: frozenset[sympy.Basic]  # the y_pred element symbols the condition reads


def underflow_followed(
    graph: ReferenceGraph,
    roots: set[sympy.Basic],
    seeds: Mapping[sympy.Basic, float],
    adjoints: Mapping[sympy.Basic, Any],
    elements: Iterable[sympy.Basic],
) -> set[sympy.Basic]:
    """The roots among `roots` (computed from a value beyond float64's range or below its
    normal numbers) computed from no value beyond float64's range, and whose value and
    elements' gradients are the same, in float64, when every value below float64's normal
    numbers is flushed to 0: a float64 program follows such an underflow. exp(-exp(50))
    is 0 in float64, and log1p(-exp(-exp(50))) with it: a row of a complementary log-log
    loss holding a logit of 50 is compared, not left out."""
    flushed = ReferenceGraph(graph.point, flush_underflow=True)
    order = flushed.order(list(seeds))
    flushed_adjoints = flushed.gradient(seeds, order)
    roots = roots - flushed.overflowing(list(roots), order)  # beyond float64's range
    symbols_of: dict[sympy.Basic, frozenset[sympy.Basic]] = {}
    read = {root: free_symbols(root, symbols_of) & set(elements) for root in roots}
    with mpmath.workdps(DIGITS):
        return {
            root
            for root in roots
            if _same_float(graph.value(root), flushed.value(root))
            and all(
                _same_float(adjoints.get(symbol, 0), flushed_adjoints.get(symbol, 0))
                for symbol in read[root]
            )
        }


def _same_float(exact: Any, flushed: Any) -> bool:
    """Whether two values round to float64 numbers that agree to 1e-12, both finite."""
    a, b = _to_float(exact), _to_float(flushed)
    return math.isfinite(a) and math.isclose(a, b, rel_tol=1e-12, abs_tol=float(FLOAT64_TINY))


def free_symbols(
    expr: sympy.Basic, memo: dict[sympy.Basic, frozenset[sympy.Basic]]
) -> frozenset[sympy.Basic]:
    """`expr.free_symbols`, memoised in `memo` over shared sub-expressions.

    SymPy's own property walks every path, which takes exponential time on the selects
    the expansion builds (a tournament repeats each contender in its condition and branch).
    """

    def symbols(node: sympy.Basic, below: list[frozenset[sympy.Basic]]) -> frozenset[sympy.Basic]:
        return frozenset({node}) if isinstance(node, sympy.Symbol) else frozenset().union(*below)

    return functions.fold(expr, symbols, memo)


def _has_poles(node: sympy.Basic) -> bool:
    """Whether `node` is made by a built-in with poles (`Domain.poles`): a special function,
    looked up when used, as every stage reads `BUILTINS`."""
    if not isinstance(node, functions.Special):
        return False
    row = row_of(type(node))
    return row is not None and row.domain is not None and row.domain.poles


def near_kinks(
    graph: ReferenceGraph, order: Sequence[sympy.Basic], elements: Mapping[sympy.Basic, Any]
) -> list[Kink]:
    """The conditions of taken branches, and the signs, that nearly flip at the point:
    those that depend on y_pred, which a redraw moves, and those that do not but whose
    sides differ by rounding alone (log(exp(1)) < 1: not 0 at 50 digits, 0 in float32),
    whose side no exact value decides. sign(log_softmax(z)[y]) at logits (0.7, -50, -50)
    is sign(-2.6e-22) exactly, and sign(0) in float64."""
    kinks = []
    symbols_of: dict[sympy.Basic, frozenset[sympy.Basic]] = {}
    with mpmath.workdps(DIGITS):
        for node in order:
            if isinstance(node, Sign):
                condition = node
                gaps = [_gap(graph, sympy.Eq(node.args[0], 0, evaluate=False))]
            elif isinstance(node, Select):
                condition = node.args[0]
                gaps = [_gap(graph, comparison) for comparison in comparisons(condition)]
            else:
                continue
            if not any(gap is not None for gap in gaps):
                continue  # first, since it is the cheaper test and seldom passes
            symbols = free_symbols(condition, symbols_of) & elements.keys()
            if symbols or any(gap for gap in gaps):
                kinks.append(Kink(condition, symbols))
    return kinks


def comparisons(condition: sympy.Basic) -> Iterator[Relational]:
    """The comparisons a condition joins with `and`, `or`, `not`."""
    if isinstance(condition, Relational):
        yield condition
    elif isinstance(condition, sympy.And | sympy.Or | sympy.Not):
        for arg in condition.args:
            yield from comparisons(arg)


def _gap(graph: ReferenceGraph, comparison: Relational) -> Any:
    """lhs - rhs at the point where it is 0 up to KINK_DISTANCE relative to the sides'
    magnitudes (`ReferenceGraph.magnitude`: a side computed with cancellation, as
    log_softmax at its largest logit, is as uncertain as the values it cancels), or below
    float64's normal numbers (erfc(54) != 0: about 1e-1250 against 0, equal in float64),
    else None."""
    lhs, rhs = comparison.args
    gap = mpmath.fsum([graph.value(lhs), -graph.value(rhs)])
    scale = mpmath.fsum([graph.magnitude(lhs), graph.magnitude(rhs)])
    return gap if abs(gap) <= max(KINK_DISTANCE * scale, FLOAT64_TINY) else None


@dataclass(frozen=True)
class Reference:
    """SymPy's exact value and gradient at one draw, and what could not be compared."""

    draw: Draw
    values: np.ndarray  # float64, the result's Keras shape (NaN where undefined)
    gradient: np.ndarray  # float64, y_pred's shape
    skipped_outputs: frozenset[tuple[int, ...]]
    skipped_gradient: frozenset[tuple[int, ...]]
    mean_gradient: np.ndarray | None = None  # of the values' mean, where asked for

    def of_the_mean(self, function: str) -> Reference:
        """The reference of the values' mean, as the module's `function` computes it: a
        scalar (undefined where any value is, or is left out), its gradient, a cotangent
        of 1."""
        assert self.mean_gradient is not None, "reference(..., mean=True) computes it"
        undefined = bool(self.skipped_outputs) or bool(np.isnan(self.values).any())
        description = f"{self.draw.description}, as their mean (`{function}`)"
        return Reference(
            replace(self.draw, cotangent=np.ones(()), description=description),
            np.array(math.nan if undefined else np.mean(self.values)),
            self.mean_gradient,
            frozenset(),
            self.skipped_gradient,
        )


def reference(
    symbolic: SymbolicLoss,
    draw: Draw,
    params: Mapping[str, float | tuple[float, ...]],
    rng: np.random.Generator,
    mean: bool = False,
) -> Reference:
    """SymPy's value and gradient of the result at `draw`, moved away from kinks first.

    The gradient is that of sum(cotangent * result) with respect to every y_pred element
    (with `mean`, also that of the result's mean, `Reference.mean_gradient`);
    masked elements are 0 in the value. Near a kink the y_pred elements involved are drawn
    again (up to NUDGE_ROUNDS times), so the returned `draw` may differ from the one given;
    what stays near a kink is left out of the comparison: an output's value, and the
    gradients of the y_pred elements it reads. So is what no float64 program
    can compute as the spec writes it, which the domain checks warn about: a result
    computed from an exact value beyond float64's range or below its normal numbers, or
    beside a pole of lgamma or digamma nearer than float64 resolves its argument, with
    the y_pred elements it reads, and the elements read by a node whose partial derivative
    is infinite or undefined there (sqrt(relu(p)) at p < 0: 0 exactly, 0 * inf in floating
    point).
    """
    expander = Expander(symbolic, draw.layout, draw.y_true, params)
    output_roles = functions.roles_of(symbolic.result, symbolic.roles)
    outputs: dict[tuple[int, ...], sympy.Basic] = {}
    with sympy.evaluate(False):
        for position in draw.layout.positions(output_roles):
            value = expander.expand(symbolic.result, position)
            if symbolic.mask is not None:
                value = select(expander.expand(symbolic.mask, position), value, sympy.S.Zero)
            outputs[position.index()] = value
    elements = expander.element_indices()
    for rounds_left in range(NUDGE_ROUNDS, -1, -1):
        graph = ReferenceGraph(expander.point(draw.y_pred))
        order = graph.order(list(outputs.values()))
        kinks = near_kinks(graph, order, elements)
        near = sorted({elements[symbol] for kink in kinks for symbol in kink.symbols})
        if not near or rounds_left == 0:  # a tie of rounding alone no redraw moves
            break
        moved = redraw_elements(rng, symbolic.checked.y_pred.kind, draw.y_pred, near)
        draw = replace(draw, y_pred=moved)

    seeds: dict[sympy.Basic, float] = {}
    for output, value in outputs.items():
        seeds[value] = seeds.get(value, 0.0) + float(draw.cotangent[output])
    seed_sets = [seeds]
    if mean:
        shares: dict[sympy.Basic, float] = {}
        for value in outputs.values():
            shares[value] = shares.get(value, 0.0) + 1.0 / len(outputs)
        seed_sets.append(shares)
    adjoints, *mean_adjoints = graph.gradients(seed_sets, order)
    too_large = graph.overflowing(list(outputs.values()), order)
    if too_large:
        too_large -= underflow_followed(graph, too_large, seeds, adjoints, elements.keys())
    overflowing = {output for output, value in outputs.items() if value in too_large}
    unrepresentable = [outputs[output] for output in overflowing] + list(graph.singular)
    values = np.zeros(draw.cotangent.shape)
    for output, result in zip(outputs, graph.floats(list(outputs.values())), strict=True):
        values[output] = result

    def gradient_of(found: Mapping[sympy.Basic, Any]) -> np.ndarray:
        """The adjoints of y_pred's elements, in y_pred's shape."""
        gradient = np.zeros(draw.y_pred.shape)
        for index, symbol in expander.pred_symbols.items():
            gradient[index] = _to_float(found.get(symbol, 0))
        return gradient

    gradient = gradient_of(adjoints)
    mean_gradient = gradient_of(mean_adjoints[0]) if mean_adjoints else None
    kinked = {kink.condition for kink in kinks}
    near_kink: dict[sympy.Basic, bool] = {}
    for node in order if kinked else ():  # each node after its children
        near_kink[node] = (
            node in kinked
            or (isinstance(node, Select) and node.args[0] in kinked)
            or any(near_kink[child] for child in graph.children(node))
        )
    # an output near a kink is left out, and so are the gradients of the elements it reads:
    # a tie of data (cosh(eps^2) > y at y = 1, 1 exactly in float64) selects one branch
    # exactly and the other in floating point, whatever y_pred is
    near = [value for value in outputs.values() if near_kink.get(value, False)]
    symbols_of: dict[sympy.Basic, frozenset[sympy.Basic]] = {}
    return Reference(
        draw,
        values,
        gradient,
        frozenset(
            output
            for output, value in outputs.items()
            if output in overflowing or near_kink.get(value, False)
        ),
        frozenset(elements[symbol] for kink in kinks for symbol in kink.symbols)
        | frozenset(
            elements[symbol]
            for node in [*unrepresentable, *near]
            for symbol in free_symbols(node, symbols_of) & elements.keys()
        ),
        mean_gradient,
    )
