"""Verification of a compile: the generated TensorFlow function against SymPy's exact maths.

`verify_module` expands the lowered loss over small concrete shapes (one SymPy symbol per
y_pred element; y_true, labels and params as exact numbers), differentiates it with SymPy,
evaluates value and gradient at 50 digits with mpmath, and compares them with the generated
per-sample function run in float64 (its value, and its `tf.GradientTape` gradient with
respect to y_pred). Disagreements become E9xx diagnostics; raising them is left to the
compiler, and lowering, printing and loading the generated module to the stages before.

Not compared, besides points near a kink: what no float64 program can compute as the spec
writes it (a result computed from an exact value beyond float64's range or below its
normal numbers, and gradient elements behind an infinite partial derivative, such as
sqrt(relu(p)) at p < 0); the domain checks warn about those (W4xx/E407).
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import mpmath
import numpy as np
import sympy
from sympy.core.relational import Relational
from sympy.logic.boolalg import BooleanAtom

from lossdsl.codegen.names import python_name, python_names
from lossdsl.codes import GENERATED_FUNCTION_FAILED, GRADIENT_DISAGREES, VALUE_DISAGREES
from lossdsl.diagnostics import Diagnostic, error
from lossdsl.kinds import KINDS, draw_floats
from lossdsl.symbolic import functions, numeric
from lossdsl.symbolic.loss import SymbolicLoss
from lossdsl.typed import InputInfo, InputKind, Role, Roles

RTOL = 1e-6
"""Relative tolerance between the float64 candidate and the exact reference."""

ATOL = 1e-9
"""Absolute tolerance, scaled by the largest finite reference magnitude of the tensor."""

KINK_DISTANCE = 1e-4
"""Points closer than this (relative to the terms involved) to a kink are moved away."""

NUDGE_ROUNDS = 4
"""How many times the y_pred elements near a kink are redrawn before they are skipped."""

DIGITS = 50
"""Decimal digits of the mpmath evaluation of the reference."""

SEED = 20240601
"""The seed of the input draws: verification is deterministic."""

BUG_HELP = "this is a bug in lossdsl, please report it with the spec"

FLOAT64_MAX = mpmath.mpf(np.finfo(np.float64).max)
"""Exact values beyond this are inf in float64: the reference is not compared there."""

FLOAT64_TINY = mpmath.mpf(np.finfo(np.float64).tiny)
"""Nonzero exact values below this are subnormal in float64, which TensorFlow's CPU
kernels flush to 0: the reference is not compared there either."""


# ---------------------------------------------------------------- concrete shapes


@dataclass(frozen=True)
class Layout:
    """A concrete y_pred shape split by role: batch size, spatial sizes, number of classes."""

    batch: int
    spatial: tuple[int, ...]
    classes: int

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.batch, *self.spatial, self.classes)

    def output_shape(self, roles: Roles) -> tuple[int, ...]:
        """The shape of a value with `roles` in Keras's squeezed form."""
        sizes: list[int] = []
        if Role.BATCH in roles:
            sizes.append(self.batch)
        if Role.SPATIAL in roles:
            sizes.extend(self.spatial)
        if Role.CLASS in roles:
            sizes.append(self.classes)
        return tuple(sizes)

    def positions(self, roles: Roles) -> Iterator[Position]:
        """Every position of a value with `roles`, in row-major order."""
        batches: Sequence[int | None] = range(self.batch) if Role.BATCH in roles else (None,)
        spatials: Sequence[tuple[int, ...] | None] = (
            list(itertools.product(*(range(size) for size in self.spatial)))
            if Role.SPATIAL in roles
            else (None,)
        )
        classes: Sequence[int | None] = range(self.classes) if Role.CLASS in roles else (None,)
        for batch, spatial, klass in itertools.product(batches, spatials, classes):
            yield Position(batch, spatial, klass)


DEFAULT_CLASSES = (4, 3, 4)
"""The class counts of the three verification layouts when no vector param fixes C."""


def verify_layouts(classes: int | None) -> tuple[Layout, Layout, Layout]:
    """The shapes a compile is verified at: [3, C], [2, 5, C] and [2, 3, 2, C].

    C is the length of the spec's vector params, or 4, 3, 4 without them; the first
    batch size moves to 4 when C is 3, so that no two adjacent axes have equal sizes
    where it can be helped.
    """
    first, second, third = (classes,) * 3 if classes else DEFAULT_CLASSES
    return (
        Layout(4 if first == 3 else 3, (), first),
        Layout(2, (5,), second),
        Layout(2, (3, 2), third),
    )


@dataclass(frozen=True)
class Position:
    """A concrete position: a batch index, a spatial index tuple, a class index (or None)."""

    batch: int | None = None
    spatial: tuple[int, ...] | None = None
    klass: int | None = None

    def restrict(self, roles: Roles) -> Position:
        """Only the coordinates of `roles`."""
        return Position(
            self.batch if Role.BATCH in roles else None,
            self.spatial if Role.SPATIAL in roles else None,
            self.klass if Role.CLASS in roles else None,
        )

    def merge(self, inner: Position) -> Position:
        """This position with the coordinates `inner` sets."""
        return Position(
            self.batch if inner.batch is None else inner.batch,
            self.spatial if inner.spatial is None else inner.spatial,
            self.klass if inner.klass is None else inner.klass,
        )

    def index(self) -> tuple[int, ...]:
        """The tensor index of this position (its roles' coordinates, in axis order)."""
        batch = () if self.batch is None else (self.batch,)
        spatial = self.spatial or ()
        klass = () if self.klass is None else (self.klass,)
        return (*batch, *spatial, *klass)


# ---------------------------------------------------------------- input draws


@dataclass(frozen=True)
class Draw:
    """One set of concrete inputs: y_true, y_pred and the cotangent of the result."""

    layout: Layout
    y_true: np.ndarray  # int32 [B, S...] (or [B, S..., 1]) for a label, else float64
    y_pred: np.ndarray  # float64 [B, S..., C]
    cotangent: np.ndarray  # float64, the result's Keras shape
    description: str


def _draw_labels(
    rng: np.random.Generator, layout: Layout, out_of_range: bool, trailing_axis: bool
) -> np.ndarray:
    labels = rng.integers(0, layout.classes, size=layout.shape[:-1]).astype(np.int32)
    if out_of_range:
        labels.flat[0] = -1
        labels.flat[-1] = layout.classes
    return labels[..., np.newaxis] if trailing_axis else labels


def draw_inputs(
    rng: np.random.Generator,
    y_true: InputInfo,
    y_pred: InputInfo,
    layout: Layout,
    output_roles: Roles,
    edge: bool,
    out_of_range_labels: bool,
) -> Draw:
    """Inputs drawn from the kinds of y_true and y_pred at `layout` (`edge`: edge points)."""
    if KINDS[y_true.kind].class_ids:
        trailing_axis = len(layout.spatial) > 1
        true_values = _draw_labels(rng, layout, out_of_range_labels and edge, trailing_axis)
    else:
        true_values = draw_floats(y_true.kind, rng, layout.shape, edge)
    pred_values = draw_floats(y_pred.kind, rng, layout.shape, edge)
    cotangent = rng.normal(size=layout.output_shape(output_roles))
    shape_text = "[" + ", ".join(str(size) for size in layout.shape) + "]"
    description = f"y_pred of shape {shape_text}" + (" at edge points" if edge else "")
    return Draw(layout, true_values, pred_values, np.asarray(cotangent), description)


def redraw_elements(
    rng: np.random.Generator,
    kind: InputKind,
    values: np.ndarray,
    indices: Sequence[tuple[int, ...]],
) -> np.ndarray:
    """`values` with the elements at `indices` drawn afresh from `kind` (no edge points)."""
    fresh = draw_floats(kind, rng, values.shape, False)
    moved = values.copy()
    for index in indices:
        moved[index] = fresh[index]
    return moved


# ---------------------------------------------------------------- the exact reference


def _exact(value: float) -> sympy.Rational:
    """A float64 value as the exact rational it is."""
    return sympy.Rational(float(value))


class Select(sympy.Function):
    """`a` where the condition holds, else `b`: every branch of an expanded reference.

    Not SymPy's Piecewise, Max or Min, nor `functions.Where`: their constructors and
    assumption queries walk the whole expanded tensor and are far too slow. Commutative
    by declaration, so that building products and powers of it asks nothing.
    """

    nargs = 3
    is_commutative = True


def select(condition: sympy.Basic, a: sympy.Expr, b: sympy.Expr) -> sympy.Expr:
    """`a` where `condition` holds, else `b`: decided now on numbers, else a `Select`."""
    if isinstance(condition, BooleanAtom):
        return a if condition else b
    lhs, rhs = condition.args
    if lhs.is_Number and rhs.is_Number:
        return a if COMPARISONS[type(condition)](lhs, rhs) else b
    return Select(type(condition)(lhs, rhs, evaluate=False), a, b)


def extreme(terms: Sequence[sympy.Expr], comparison: type[Relational]) -> sympy.Expr:
    """The maximum (comparison `>=`) or minimum (`<=`) of `terms`, as a tournament of selects."""
    if len(terms) == 1:
        return terms[0]
    middle = len(terms) // 2
    first = extreme(terms[:middle], comparison)
    second = extreme(terms[middle:], comparison)
    return select(comparison(first, second, evaluate=False), first, second)


REDUCERS: dict[type[functions.Reduction], Callable[[list[sympy.Expr]], sympy.Expr]] = {
    functions.ReduceSum: lambda terms: sympy.Add(*terms),
    functions.ReduceMean: lambda terms: sympy.Add(*terms) / len(terms),
    functions.ReduceMax: lambda terms: extreme(terms, sympy.GreaterThan),
    functions.ReduceMin: lambda terms: extreme(terms, sympy.LessThan),
}
"""How each primitive reduction combines the terms over its removed positions."""

EXTREMES: dict[type[sympy.Basic], type[Relational]] = {
    sympy.Max: sympy.GreaterThan,
    sympy.Min: sympy.LessThan,
}
"""SymPy's Max and Min (in definitions such as Clip's and Relu's) as tournaments."""


@dataclass
class Expander:
    """Expands a per-element SymPy expression at concrete positions of one draw.

    y_pred elements become real symbols (`p_0_2_1`), inside `StopGradient` frozen copies of
    them (`p_0_2_1_frozen`, same value, no derivative); y_true elements, labels and params
    become exact numbers; loss functions are replaced by their definitions, reductions and
    the class axis by explicit sums, maxima and selections over the concrete positions.
    """

    symbolic: SymbolicLoss
    layout: Layout
    y_true: np.ndarray
    params: Mapping[str, float | tuple[float, ...]]
    pred_symbols: dict[tuple[int, ...], sympy.Symbol] = field(default_factory=dict)
    frozen_symbols: dict[tuple[int, ...], sympy.Symbol] = field(default_factory=dict)
    _memo: dict[tuple[sympy.Basic, Position], sympy.Basic] = field(default_factory=dict)
    _roles: dict[sympy.Basic, Roles] = field(default_factory=dict)
    _definitions: dict[sympy.Basic, sympy.Basic] = field(default_factory=dict)

    def roles(self, expr: sympy.Basic) -> Roles:
        if expr not in self._roles:
            self._roles[expr] = functions.roles_of(expr, self.symbolic.roles)
        return self._roles[expr]

    def expand(self, expr: sympy.Basic, position: Position) -> sympy.Basic:
        """`expr` at `position`, in plain SymPy over the y_pred element symbols."""
        key = (expr, position.restrict(self.roles(expr)))
        if key not in self._memo:
            self._memo[key] = self._expand(expr, key[1])
        return self._memo[key]

    def _expand(self, expr: sympy.Basic, position: Position) -> sympy.Basic:
        match expr:
            case sympy.Symbol():
                return self._element(expr, position)
            case functions.StopGradient():
                value = self.expand(expr.args[0], position)
                return value.xreplace(
                    {
                        symbol: self._frozen(index)
                        for index, symbol in self.pred_symbols.items()
                        if symbol in value.free_symbols
                    }
                )
            case functions.Reduction() if type(expr) in REDUCERS:
                return self._reduce(expr, position)
            case functions.ClassId():
                return self._class_id(expr.args[0], position)
            case functions.OneHot():
                label = self._integer(self.expand(expr.args[0], position))
                return sympy.S.One if label == position.klass else sympy.S.Zero
            case functions.Gather():
                vector, index = expr.args
                klass = self._integer(self.expand(index, position))
                if 0 <= klass < self.layout.classes:
                    return self.expand(vector, replace(position, klass=klass))
                return sympy.S.Zero
            case functions.Where():
                condition, a, b = (self.expand(arg, position) for arg in expr.args)
                return select(condition, a, b)
            case functions.Special():
                return expr.func(self.expand(expr.args[0], position))
            case functions.LossFunction():
                if expr not in self._definitions:
                    self._definitions[expr] = expr.definition()
                return self.expand(self._definitions[expr], position)
            case sympy.Max() | sympy.Min():
                terms = [self.expand(arg, position) for arg in expr.args]
                return extreme(terms, EXTREMES[type(expr)])
            case sympy.Abs():
                value = self.expand(expr.args[0], position)
                return select(sympy.GreaterThan(value, 0, evaluate=False), value, -value)
            case Relational():
                lhs, rhs = (self.expand(arg, position) for arg in expr.args)
                if lhs.is_Number and rhs.is_Number:
                    return sympy.true if COMPARISONS[type(expr)](lhs, rhs) else sympy.false
                return type(expr)(lhs, rhs, evaluate=False)
            case _ if expr.args:
                return expr.func(*(self.expand(arg, position) for arg in expr.args))
            case _:
                return expr

    def _element(self, symbol: sympy.Symbol, position: Position) -> sympy.Basic:
        if symbol == functions.NUM_CLASSES:
            return sympy.Integer(self.layout.classes)
        checked = self.symbolic.checked
        name = next(name for name, known in self.symbolic.symbols.items() if known == symbol)
        index = position.index()
        if name == checked.y_pred.name:
            if index not in self.pred_symbols:
                self.pred_symbols[index] = sympy.Symbol(
                    "_".join((python_name(name), *map(str, index))), real=True
                )
            return self.pred_symbols[index]
        if name == checked.y_true.name:
            value = self.y_true.reshape(self.layout.shape[: len(index)] or ())[index]
            if KINDS[checked.y_true.kind].class_ids:
                return sympy.Integer(int(value))
            return _exact(value)
        param = self.params[name]
        if isinstance(param, tuple):
            assert position.klass is not None, f"vector param {name} read without a class"
            return _exact(param[position.klass])
        return _exact(param)

    def element_indices(self) -> dict[sympy.Basic, tuple[int, ...]]:
        """The y_pred index of every element symbol and frozen copy made so far."""
        indices = {symbol: index for index, symbol in self.pred_symbols.items()}
        indices.update((symbol, index) for index, symbol in self.frozen_symbols.items())
        return indices

    def point(self, y_pred: np.ndarray) -> dict[sympy.Basic, float]:
        """The values of the element symbols (and frozen copies) in `y_pred`."""
        return {symbol: float(y_pred[index]) for symbol, index in self.element_indices().items()}

    def _frozen(self, index: tuple[int, ...]) -> sympy.Symbol:
        if index not in self.frozen_symbols:
            self.frozen_symbols[index] = sympy.Symbol(
                self.pred_symbols[index].name + "_frozen", real=True
            )
        return self.frozen_symbols[index]

    def _reduce(self, reduction: functions.Reduction, position: Position) -> sympy.Basic:
        operand = reduction.args[0]
        terms = [
            self.expand(operand, position.merge(inner))
            for inner in self.layout.positions(reduction.removed_roles)
        ]
        return REDUCERS[type(reduction)](terms)

    def _class_id(self, operand: sympy.Basic, position: Position) -> sympy.Integer:
        if Role.CLASS not in self.roles(operand):
            return sympy.Integer(self._integer(self.expand(operand, position)))
        row = [
            self.expand(operand, replace(position, klass=klass))
            for klass in range(self.layout.classes)
        ]
        return sympy.Integer(max(range(len(row)), key=lambda klass: (row[klass], -klass)))

    @staticmethod
    def _integer(value: sympy.Basic) -> int:
        if not value.is_Number:
            raise TypeError(f"a class id must be data, got {value}")
        return int(value)


ARITHMETIC: dict[type[sympy.Basic], Callable[..., Any]] = {
    sympy.Add: lambda *terms: mpmath.fsum(terms),
    sympy.Mul: lambda *factors: mpmath.fprod(factors),
    sympy.Pow: mpmath.power,
}
"""Arithmetic in an expanded reference; its functions are `symbolic.numeric`'s."""

COMPARISONS: dict[type[Relational], Callable[[Any, Any], bool]] = {
    sympy.GreaterThan: operator.ge,
    sympy.StrictGreaterThan: operator.gt,
    sympy.LessThan: operator.le,
    sympy.StrictLessThan: operator.lt,
    sympy.Equality: operator.eq,
    sympy.Unequality: operator.ne,
}

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
    singular: set[sympy.Basic] = field(default_factory=set)
    """Nodes reached by `gradient` with an infinite or undefined partial derivative."""
    overflowed: set[sympy.Basic] = field(default_factory=set)
    """Nodes too large for mpmath itself, taken as +inf (and as beyond float64)."""
    _values: dict[sympy.Basic, Any] = field(default_factory=dict)

    def floats(self, exprs: Sequence[sympy.Basic]) -> list[float]:
        """The values of `exprs` rounded to float64."""
        with mpmath.workdps(DIGITS):
            return [_to_float(self.value(expr)) for expr in exprs]

    def value(self, expr: sympy.Basic) -> Any:
        """The exact (DIGITS-digit) value of `expr`: an mpf, or a bool for a condition."""
        if expr not in self._values:
            with mpmath.workdps(DIGITS):
                try:
                    self._values[expr] = self._value(expr)
                except ZeroDivisionError:
                    self._values[expr] = mpmath.nan
                except OverflowError:  # beyond mpmath's exponents (exp(exp(exp(50))))
                    self.overflowed.add(expr)
                    self._values[expr] = mpmath.inf
        return self._values[expr]

    def _value(self, expr: sympy.Basic) -> Any:
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
            case _ if expr in SPECIAL_NUMBERS:
                return SPECIAL_NUMBERS[expr]
            case _ if expr.is_number and not expr.args:
                return mpmath.mpf(sympy.Float(expr, DIGITS)._mpf_)
            case _:
                values = [self.value(arg) for arg in expr.args]
                if expr.func in ARITHMETIC:
                    return ARITHMETIC[expr.func](*values)
                return exact_value(expr.func, values)

    def _taken(self, where: sympy.Basic) -> sympy.Basic:
        condition, a, b = where.args
        return a if self.value(condition) else b

    def children(self, expr: sympy.Basic) -> tuple[sympy.Basic, ...]:
        """The sub-expressions a value depends on through its taken branches."""
        match expr:
            case Select():
                return (expr.args[0], self._taken(expr))
            case sympy.Pow() if expr.exp.is_number:
                return (expr.base,)
            case _:
                return expr.args

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

    def gradient(self, seeds: Mapping[sympy.Basic, float]) -> dict[sympy.Basic, Any]:
        """d(sum of seed * root)/d(node) for every node the roots depend on."""
        with mpmath.workdps(DIGITS):
            order = self.order(list(seeds))
            adjoints: dict[sympy.Basic, Any] = {
                root: mpmath.mpf(seed) for root, seed in seeds.items()
            }
            for node in reversed(order):
                adjoint = adjoints.get(node)
                if adjoint is None:
                    continue
                try:
                    partials = list(self._partials(node))
                except (ZeroDivisionError, OverflowError):
                    partials = [(child, mpmath.nan) for child in self.children(node)]
                if any(not mpmath.isfinite(partial) for _, partial in partials):
                    self.singular.add(node)
                if adjoint == 0:
                    continue
                for child, partial in partials:
                    adjoints[child] = adjoints.get(child, 0) + adjoint * partial
            return adjoints

    def overflowing(
        self, roots: Sequence[sympy.Basic], order: Sequence[sympy.Basic] | None = None
    ) -> set[sympy.Basic]:
        """The roots computed from a value (through taken branches, not conditions) that is
        finite but beyond float64's range, or nonzero and below its normal numbers, so that
        no float64 program can follow them (`order`: the roots' `order`, if known)."""
        over: dict[sympy.Basic, bool] = {}
        with mpmath.workdps(DIGITS):
            for node in self.order(roots) if order is None else order:
                value = self.value(node)
                outside = node in self.overflowed or (
                    isinstance(value, mpmath.mpf)
                    and mpmath.isfinite(value)
                    and value != 0
                    and not FLOAT64_TINY <= abs(value) <= FLOAT64_MAX
                )
                over[node] = outside or any(over[child] for child in self._operands(node))
        return {root for root in roots if over[root]}

    def _operands(self, expr: sympy.Basic) -> tuple[sympy.Basic, ...]:
        """The children whose values `expr`'s value is computed from (no conditions)."""
        match expr:
            case Select():
                return (self._taken(expr),)
            case Relational():
                return ()
            case _:
                return self.children(expr)

    def _partials(self, expr: sympy.Basic) -> Iterator[tuple[sympy.Basic, Any]]:
        """Each argument of `expr` with the derivative of `expr` with respect to it."""
        match expr:
            case sympy.Add():
                yield from ((arg, 1) for arg in expr.args)
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
            case Relational():
                return
            case _ if expr.args:
                raise TypeError(f"no derivative rule for {expr.func} in a reference")


def _to_float(value: Any) -> float:
    if isinstance(value, mpmath.mpc):
        return float(value.real) if value.imag == 0 else math.nan
    return float(value)


@dataclass(frozen=True)
class Kink:
    """A taken branch whose condition nearly flips: lhs - rhs is 0 up to KINK_DISTANCE."""

    condition: Relational
    symbols: frozenset[sympy.Basic]  # the y_pred element symbols the condition reads


def free_symbols(
    expr: sympy.Basic, memo: dict[sympy.Basic, frozenset[sympy.Basic]]
) -> frozenset[sympy.Basic]:
    """`expr.free_symbols`, memoised in `memo` over shared sub-expressions.

    SymPy's own property walks every path, which takes exponential time on the selects
    the expansion builds (a tournament repeats each contender in its condition and branch).
    """
    stack = [expr]
    while stack:
        node = stack[-1]
        if node in memo:
            stack.pop()
            continue
        pending = [arg for arg in node.args if arg not in memo]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        memo[node] = (
            frozenset({node})
            if isinstance(node, sympy.Symbol)
            else frozenset().union(*(memo[arg] for arg in node.args))
        )
    return memo[expr]


def near_kinks(
    graph: ReferenceGraph, order: Sequence[sympy.Basic], elements: Mapping[sympy.Basic, Any]
) -> list[Kink]:
    """The conditions of taken branches that depend on y_pred and nearly flip at the point."""
    kinks = []
    symbols_of: dict[sympy.Basic, frozenset[sympy.Basic]] = {}
    with mpmath.workdps(DIGITS):
        for node in order:
            if not isinstance(node, Select):
                continue
            condition = node.args[0]
            symbols = free_symbols(condition, symbols_of) & elements.keys()
            if not symbols:
                continue
            lhs, rhs = condition.args
            terms = [graph.value(term) for term in sympy.Add.make_args(lhs)]
            terms += [-graph.value(term) for term in sympy.Add.make_args(rhs)]
            if abs(mpmath.fsum(terms)) <= KINK_DISTANCE * mpmath.fsum(map(abs, terms)):
                kinks.append(Kink(condition, symbols))
    return kinks


@dataclass(frozen=True)
class Reference:
    """SymPy's exact value and gradient at one draw, and what could not be compared."""

    draw: Draw
    values: np.ndarray  # float64, the result's Keras shape (NaN where undefined)
    gradient: np.ndarray  # float64, y_pred's shape
    skipped_outputs: frozenset[tuple[int, ...]]
    skipped_gradient: frozenset[tuple[int, ...]]


def reference(
    symbolic: SymbolicLoss,
    draw: Draw,
    params: Mapping[str, float | tuple[float, ...]],
    rng: np.random.Generator,
) -> Reference:
    """SymPy's value and gradient of the result at `draw`, moved away from kinks first.

    The gradient is that of sum(cotangent * result) with respect to every y_pred element;
    masked elements are 0 in the value. Near a kink the y_pred elements involved are drawn
    again (up to NUDGE_ROUNDS times), so the returned `draw` may differ from the one given;
    what stays near a kink is left out of the comparison. So is what no float64 program
    can compute as the spec writes it, which the domain checks warn about: a result
    computed from an exact value beyond float64's range or below its normal numbers, with
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
        if not kinks or rounds_left == 0:
            break
        near = sorted({elements[symbol] for kink in kinks for symbol in kink.symbols})
        moved = redraw_elements(rng, symbolic.checked.y_pred.kind, draw.y_pred, near)
        draw = replace(draw, y_pred=moved)

    seeds: dict[sympy.Basic, float] = {}
    for output, value in outputs.items():
        seeds[value] = seeds.get(value, 0.0) + float(draw.cotangent[output])
    adjoints = graph.gradient(seeds)
    too_large = graph.overflowing(list(outputs.values()), order)
    overflowing = {output for output, value in outputs.items() if value in too_large}
    unrepresentable = [outputs[output] for output in overflowing] + list(graph.singular)
    values = np.zeros(draw.cotangent.shape)
    for output, result in zip(outputs, graph.floats(list(outputs.values())), strict=True):
        values[output] = result
    gradient = np.zeros(draw.y_pred.shape)
    for index, symbol in expander.pred_symbols.items():
        gradient[index] = _to_float(adjoints.get(symbol, 0))
    kinked = {kink.condition for kink in kinks}
    near_kink: dict[sympy.Basic, bool] = {}
    for node in order:  # each node after its children
        near_kink[node] = (isinstance(node, Select) and node.args[0] in kinked) or any(
            near_kink[child] for child in graph.children(node)
        )
    symbols_of: dict[sympy.Basic, frozenset[sympy.Basic]] = {}
    return Reference(
        draw,
        values,
        gradient,
        frozenset(
            output for output, value in outputs.items() if output in overflowing or near_kink[value]
        ),
        frozenset(elements[symbol] for kink in kinks for symbol in kink.symbols)
        | frozenset(
            elements[symbol]
            for node in unrepresentable
            for symbol in free_symbols(node, symbols_of) & elements.keys()
        ),
    )


# ---------------------------------------------------------------- the candidate


@dataclass(frozen=True)
class Candidate:
    """The generated function's float64 value and gradient at one draw, or why it failed."""

    values: np.ndarray | None
    gradient: np.ndarray | None
    failure: str | None


def run_candidate(
    per_sample_function: Callable[..., Any],
    draw: Draw,
    arguments: Mapping[str, float | tuple[float, ...]],
    output_shape: tuple[int, ...],
) -> Candidate:
    """The generated function's value and gradient of sum(cotangent * result) in float64.

    `arguments` are the params' values by their Python names (`codegen.names.python_names`).
    """
    import tensorflow as tf

    true_dtype = tf.int32 if draw.y_true.dtype.kind == "i" else tf.float64
    y_true = tf.constant(draw.y_true, dtype=true_dtype)
    y_pred = tf.constant(draw.y_pred, dtype=tf.float64)
    arguments = {
        name: tf.constant(value, tf.float64) if isinstance(value, tuple) else value
        for name, value in arguments.items()
    }
    try:
        with tf.GradientTape() as tape:
            tape.watch(y_pred)
            result = per_sample_function(y_true, y_pred, **arguments)
            shape = tuple(result.shape)
            if shape != output_shape:
                return Candidate(
                    None,
                    None,
                    f"it returned shape {_shape_text(shape)}, expected {_shape_text(output_shape)}",
                )
            objective = tf.reduce_sum(tf.constant(draw.cotangent, tf.float64) * result)
        gradient = tape.gradient(objective, y_pred)
    except Exception as failure:  # the generated code's own error is the diagnostic
        message = str(failure).strip().splitlines()
        return Candidate(
            None, None, f"it raised {type(failure).__name__}: {message[0] if message else ''}"
        )
    gradient_values = (
        np.zeros(draw.y_pred.shape) if gradient is None else np.asarray(gradient.numpy())
    )
    return Candidate(np.asarray(result.numpy(), dtype=np.float64), gradient_values, None)


# ---------------------------------------------------------------- comparison


@dataclass(frozen=True)
class Mismatch:
    """The worst disagreeing element of a tensor: its index and both values."""

    index: tuple[int, ...]
    expected: float
    actual: float


def worst_mismatch(
    expected: np.ndarray, actual: np.ndarray, skipped: frozenset[tuple[int, ...]]
) -> Mismatch | None:
    """The element that disagrees most, or None when every compared element agrees.

    A finite reference needs a finite candidate within RTOL, ATOL (ATOL scaled by the
    largest finite reference magnitude); an infinite reference the same infinity; an
    undefined (NaN) reference is not compared.
    """
    finite = np.isfinite(expected)
    scale = max(1.0, float(np.max(np.abs(expected[finite]), initial=0.0)))
    worst: tuple[float, Mismatch] | None = None
    for index in np.ndindex(expected.shape):
        if index in skipped or math.isnan(expected[index]):
            continue
        want, got = float(expected[index]), float(actual[index])
        if math.isinf(want):
            badness = 0.0 if want == got else math.inf
        elif not math.isfinite(got):
            badness = math.inf
        else:
            badness = abs(got - want) / (ATOL * scale + RTOL * abs(want))
        if badness > 1.0 and (worst is None or badness > worst[0]):
            worst = (badness, Mismatch(index, want, got))
    return None if worst is None else worst[1]


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(size) for size in shape) + "]"


def _values_text(values: np.ndarray) -> str:
    """Up to 8 values, exactly as float64 holds them."""
    flat = np.ravel(values)
    shown = ", ".join(f"{value:.17g}" for value in flat[:8].tolist())
    return "[" + shown + (", ...]" if flat.size > 8 else "]")


def _inputs_text(symbolic: SymbolicLoss, draw: Draw, prefix: tuple[int, ...]) -> str:
    """The y_true and y_pred values under the leading coordinates `prefix`."""
    checked = symbolic.checked
    labels_shape = draw.layout.shape[:-1]
    true_values = (
        draw.y_true.reshape(labels_shape) if KINDS[checked.y_true.kind].class_ids else draw.y_true
    )
    where = f"at {_shape_text(prefix)}" if prefix else "in the batch"
    return (
        f"inputs {where}: {checked.y_true.name} = {_values_text(true_values[prefix])}, "
        f"{checked.y_pred.name} = {_values_text(draw.y_pred[prefix])}"
    )


# ---------------------------------------------------------------- the driver


LABEL_SELECTORS: tuple[type[functions.LossFunction], ...] = (
    functions.OneHot,
    functions.Gather,
    functions.TakeClass,
)
"""Functions that select by class id: their specs also see labels outside [0, C)."""


def verify_module(
    symbolic: SymbolicLoss, per_sample_function: Callable[..., Any]
) -> tuple[Diagnostic, ...]:
    """E9xx errors where the generated function disagrees with SymPy (empty when all agrees).

    `per_sample_function(y_true, y_pred, **params)` is the generated `@tf.function`; it is
    run in float64 with the params at their defaults on random inputs at each of the
    `verify_layouts` and on edge points at the smallest (traced at the smallest layout;
    eagerly, through its `python_function`, at the others, since each new rank would cost
    a trace), and its
    value and gradient are compared with the exact reference. At most one diagnostic per
    code is returned, for the first draw that shows it.
    """
    checked = symbolic.checked
    params = {param.name: param.default for param in checked.params}
    names = python_names(checked)
    arguments = {names[name]: value for name, value in params.items()}
    output_roles = functions.roles_of(symbolic.result, symbolic.roles)
    selects_by_label = any(
        expr is not None and expr.has(*LABEL_SELECTORS) for expr in (symbolic.result, symbolic.mask)
    )
    vector_lengths = {len(value) for value in params.values() if isinstance(value, tuple)}
    plan = verification_plan(
        verify_layouts(min(vector_lengths, default=None)),
        distinct_nodes(expr for expr in (symbolic.result, symbolic.mask) if expr is not None),
        per_sample_function,
        getattr(per_sample_function, "python_function", per_sample_function),
    )
    rng = np.random.default_rng(SEED)
    found: dict[str, Diagnostic] = {}
    for layout, edge, function in plan:
        draw = draw_inputs(
            rng, checked.y_true, checked.y_pred, layout, output_roles, edge, selects_by_label
        )
        exact = reference(symbolic, draw, params, rng)
        candidate = run_candidate(
            function, exact.draw, arguments, layout.output_shape(output_roles)
        )
        for diagnostic in _compare(symbolic, exact, candidate):
            found.setdefault(diagnostic.code, diagnostic)
    return tuple(found[code] for code in sorted(found))


VERIFICATION_BUDGET = 60_000
"""Node-positions (distinct nodes of the result times y_pred elements, summed over the
draws) the exact reference may expand: about 15 s of verification on one core."""

Step = tuple[Layout, bool, Callable[..., Any]]
"""One draw of the verification: its layout, whether at the edges, the function run."""


def verification_plan(
    layouts: tuple[Layout, Layout, Layout],
    nodes: int,
    traced: Callable[..., Any],
    eager: Callable[..., Any],
) -> tuple[Step, ...]:
    """The draws a result of `nodes` distinct nodes is verified at, within the budget.

    Every layout at random, and the smallest at its edges; for a result of thousands of
    nodes the image layout goes, then the spatial one, then the smallest shrinks to a batch
    of 2: the cost of the exact reference grows with nodes times elements.
    """
    small, spatial, image = layouts
    fewer = replace(small, batch=2)
    candidates = (
        ((small, False, traced), (spatial, False, eager), (image, False, eager)),
        ((small, False, traced), (spatial, False, eager)),
        ((small, False, traced),),
        ((fewer, False, traced),),
    )
    plans = [(*random, (random[0][0], True, traced)) for random in candidates]
    for plan in plans:
        if nodes * sum(math.prod(layout.shape) for layout, _, _ in plan) <= VERIFICATION_BUDGET:
            return plan
    return plans[-1]


def distinct_nodes(roots: Iterable[sympy.Basic]) -> int:
    """How many distinct sub-expressions `roots` have (shared ones counted once)."""
    seen: set[sympy.Basic] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(node.args)
    return len(seen)


def _compare(
    symbolic: SymbolicLoss, exact: Reference, candidate: Candidate
) -> Iterator[Diagnostic]:
    draw = exact.draw
    span = symbolic.checked.loss_span
    if candidate.failure is not None or candidate.values is None or candidate.gradient is None:
        yield error(
            GENERATED_FUNCTION_FAILED,
            f"the generated loss function failed on {draw.description}: {candidate.failure}",
            span,
            "generated from this loss",
            BUG_HELP,
        )
        return
    value = worst_mismatch(exact.values, candidate.values, exact.skipped_outputs)
    if value is not None:
        yield error(
            VALUE_DISAGREES,
            f"the generated code's loss value disagrees with SymPy's on {draw.description}",
            span,
            "verification failed for this loss",
            f"at result element {_shape_text(value.index)}: SymPy gives {value.expected:.17g}, "
            f"the generated code {value.actual:.17g}",
            _inputs_text(symbolic, draw, value.index[: draw.y_pred.ndim - 1]),
            BUG_HELP,
        )
    gradient = worst_mismatch(exact.gradient, candidate.gradient, exact.skipped_gradient)
    if gradient is not None:
        name = symbolic.checked.y_pred.name
        yield error(
            GRADIENT_DISAGREES,
            f"the generated code's gradient disagrees with SymPy's on {draw.description}",
            span,
            "verification failed for this loss",
            f"d(sum(cotangent * loss))/d{name}{_shape_text(gradient.index)}: SymPy gives "
            f"{gradient.expected:.17g}, the generated code {gradient.actual:.17g}",
            _inputs_text(symbolic, draw, gradient.index[:-1]),
            BUG_HELP,
        )
