"""A lowered loss expanded over a concrete layout: one exact SymPy expression per element."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import sympy
from sympy.core.relational import Relational
from sympy.logic.boolalg import BooleanAtom

from lossdsl.codegen.names import python_name
from lossdsl.kinds import KINDS
from lossdsl.symbolic import functions
from lossdsl.symbolic.loss import SymbolicLoss
from lossdsl.symbolic.lower import number
from lossdsl.typed import Role, Roles
from lossdsl.verification.layouts import Layout, Position


def _slice(start: sympy.Basic, stop: sympy.Basic) -> slice:
    """A `Channels` selection's bounds as a Python slice (`oo`: to the end)."""
    return slice(int(start), None if stop is sympy.oo else int(stop))


def _exact(value: float) -> sympy.Rational:
    """A float64 value as the exact rational it is."""
    return sympy.Rational(float(value))


COMPARISONS: dict[type[Relational], Callable[[Any, Any], bool]] = {
    sympy.GreaterThan: operator.ge,
    sympy.StrictGreaterThan: operator.gt,
    sympy.LessThan: operator.le,
    sympy.StrictLessThan: operator.lt,
    sympy.Equality: operator.eq,
    sympy.Unequality: operator.ne,
}


class Select(sympy.Expr):
    """`a` where the condition holds, else `b`: every branch of an expanded reference.

    Not SymPy's Piecewise, Max or Min, nor `functions.Where`: their constructors and
    assumption queries walk the whole expanded tensor and are far too slow. Nor a SymPy
    `Function`, whose constructor checks its arguments (and makes a set of their counts)
    at every call. Commutative by declaration, so that building products and powers of it
    asks nothing.
    """

    is_commutative = True

    def __new__(cls, condition: sympy.Basic, a: sympy.Basic, b: sympy.Basic) -> Select:
        return super().__new__(cls, condition, a, b)


ASSOCIATIVE: frozenset[type[sympy.Basic]] = frozenset({sympy.Add, sympy.Mul})
"""Sums and products, built from their expanded arguments as SymPy builds them with
evaluation off (`_from_args`), without the constructor's checks of every argument."""


def decide(relation: type[Relational], lhs: sympy.Expr, rhs: sympy.Expr) -> bool:
    """A comparison of two numbers; equal infinities compare as equal numbers do (SymPy
    leaves `-oo >= -oo` undecided)."""
    if lhs == rhs:
        return bool(COMPARISONS[relation](0, 0))
    return bool(COMPARISONS[relation](lhs, rhs))


def select(condition: sympy.Basic, a: sympy.Expr, b: sympy.Expr) -> sympy.Expr:
    """`a` where `condition` holds, else `b`: decided now on numbers, else a `Select`."""
    if isinstance(condition, BooleanAtom):
        return a if condition else b
    if not isinstance(condition, Relational):  # `and`, `or`, `not`, as `logic` left them
        return Select(condition, a, b)
    lhs, rhs = condition.args
    if lhs.is_Number and rhs.is_Number:
        return a if decide(type(condition), lhs, rhs) else b
    return Select(type(condition)(lhs, rhs, evaluate=False), a, b)


def logic(connective: type[sympy.Basic], args: Sequence[sympy.Basic]) -> sympy.Basic:
    """`and`, `or` or `not` of expanded conditions: decided now where the atoms decide it
    (`false and c` is false), else kept unevaluated without the atoms that do not matter."""
    if connective is sympy.Not:
        (operand,) = args
        if isinstance(operand, BooleanAtom):
            return sympy.false if operand else sympy.true
        return sympy.Not(operand, evaluate=False)
    absorbing = sympy.false if connective is sympy.And else sympy.true
    if absorbing in args:
        return absorbing
    kept = [arg for arg in args if not isinstance(arg, BooleanAtom)]
    if not kept:
        return sympy.true if connective is sympy.And else sympy.false
    return kept[0] if len(kept) == 1 else connective(*kept, evaluate=False)


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
    _classes: dict[sympy.Basic, int] = field(default_factory=dict)
    _definitions: dict[sympy.Basic, sympy.Basic] = field(default_factory=dict)
    _names: dict[sympy.Basic, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        for name, symbol in self.symbolic.symbols.items():  # the spec's name of each symbol
            self._names.setdefault(symbol, name)

    def roles(self, expr: sympy.Basic) -> Roles:
        known = self._roles.get(expr)
        return (
            functions.roles_of(expr, self.symbolic.roles, self._roles) if known is None else known
        )

    def classes(self, expr: sympy.Basic) -> int:
        """The size of the class axis of an expression with the class role: its inputs'
        (y_true's may differ from y_pred's), a slice's width, 1 broadcast to the others."""
        if expr not in self._classes:
            self._classes[expr] = self._count_classes(expr)
        return self._classes[expr]

    def _count_classes(self, expr: sympy.Basic) -> int:
        if expr == self.symbolic.symbols[self.symbolic.checked.y_true.name]:
            return self.layout.true_count
        if isinstance(expr, functions.Channels):
            operand, start, stop = expr.args
            return len(range(self.classes(operand))[_slice(start, stop)])
        sizes = [self.classes(arg) for arg in expr.args if Role.CLASS in self.roles(arg)]
        return max(sizes, default=self.layout.classes)

    def expand(self, expr: sympy.Basic, position: Position) -> sympy.Basic:
        """`expr` at `position`, in plain SymPy over the y_pred element symbols."""
        known = self._memo.get((expr, position))
        if known is None:
            own = position.restrict(self.roles(expr))
            if own.klass is not None and self.classes(expr) == 1:  # broadcast
                own = replace(own, klass=0)
            known = self._memo.get((expr, own))
            if known is None:  # memoised at its own coordinates, and at those asked for
                known = self._memo[expr, own] = self._expand(expr, own)
            self._memo[expr, position] = known
        return known

    def _expand(self, expr: sympy.Basic, position: Position) -> sympy.Basic:
        if type(expr) in ASSOCIATIVE:  # most nodes: no need to try the cases below
            return type(expr)._from_args([self.expand(arg, position) for arg in expr.args])
        match expr:
            case sympy.Symbol():
                return self._element(expr, position)
            case functions.StopGradient():
                return self._frozen_copy(self.expand(expr.args[0], position))
            case functions.Reduction() if type(expr) in REDUCERS:
                return self._reduce(expr, position)
            case functions.Other():
                return self.expand(expr.args[0], position.seen_from(expr.partner_role))
            case sympy.log() if self.expand(expr.args[0], position) == sympy.S.Zero:
                return -sympy.oo  # TensorFlow's log(0), where SymPy's is complex infinity
            case functions.CumSum():
                assert position.klass is not None, "cumsum expanded without a class"
                return sympy.Add(
                    *(
                        self.expand(expr.args[0], replace(position, klass=klass))
                        for klass in range(position.klass + 1)
                    )
                )
            case functions.Channel():
                operand, index = expr.args
                klass = range(self.classes(operand))[int(index)]
                return self.expand(operand, replace(position, klass=klass))
            case functions.Channels():
                operand, start, stop = expr.args
                assert position.klass is not None, "a slice expanded without a class"
                klass = range(self.classes(operand))[_slice(start, stop)][position.klass]
                return self.expand(operand, replace(position, klass=klass))
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
            case sympy.And() | sympy.Or() | sympy.Not():
                return logic(type(expr), [self.expand(arg, position) for arg in expr.args])
            case Relational():
                lhs, rhs = (self.expand(arg, position) for arg in expr.args)
                if lhs.is_Number and rhs.is_Number:
                    return sympy.true if decide(type(expr), lhs, rhs) else sympy.false
                return type(expr)(lhs, rhs, evaluate=False)
            case _ if expr.args:
                return expr.func(*(self.expand(arg, position) for arg in expr.args))
            case _:
                return expr

    def _element(self, symbol: sympy.Symbol, position: Position) -> sympy.Basic:
        if symbol == functions.NUM_CLASSES:
            return sympy.Integer(self.layout.classes)
        if symbol == functions.SAMPLE_INDEX:
            assert position.batch is not None, "sample_index expanded without a sample"
            return sympy.Integer(position.batch)
        checked = self.symbolic.checked
        name = self._names[symbol]
        index = position.index()
        if name == checked.y_pred.name:
            if index not in self.pred_symbols:
                self.pred_symbols[index] = sympy.Symbol(
                    "_".join((python_name(name), *map(str, index))), real=True
                )
            return self.pred_symbols[index]
        if name == checked.y_true.name:
            value = self.y_true.reshape(self.layout.true_shape[: len(index)] or ())[index]
            if KINDS[checked.y_true.kind].class_ids:
                return sympy.Integer(int(value))
            return _exact(value)
        # a param's value is the number its text spells, as a literal's is (`b = 1e-3`
        # and `1e-3` are one number, compared equal, as the generated code sees them)
        param = self.params[name]
        if isinstance(param, tuple):
            assert position.klass is not None, f"vector param {name} read without a class"
            return number(float(param[position.klass]))
        return number(float(param))

    def element_indices(self) -> dict[sympy.Basic, tuple[int, ...]]:
        """The y_pred index of every element symbol and frozen copy made so far."""
        indices = {symbol: index for index, symbol in self.pred_symbols.items()}
        indices.update((symbol, index) for index, symbol in self.frozen_symbols.items())
        return indices

    def point(self, y_pred: np.ndarray) -> dict[sympy.Basic, float]:
        """The values of the element symbols (and frozen copies) in `y_pred`."""
        return {symbol: float(y_pred[index]) for symbol, index in self.element_indices().items()}

    def _frozen_copy(self, value: sympy.Basic) -> sympy.Basic:
        """`value` with its y_pred symbols replaced by their frozen copies, each shared
        sub-expression rebuilt once (SymPy's `free_symbols` and `xreplace` follow every
        path: a stop_gradient of nested selects took minutes, found by fuzzing)."""
        indices = {symbol: index for index, symbol in self.pred_symbols.items()}

        def frozen(node: sympy.Basic, args: list[sympy.Basic]) -> sympy.Basic:
            return (
                self._frozen(indices[node]) if node in indices else functions.with_args(node, args)
            )

        return functions.fold(value, frozen)

    def _frozen(self, index: tuple[int, ...]) -> sympy.Symbol:
        if index not in self.frozen_symbols:
            self.frozen_symbols[index] = sympy.Symbol(
                self.pred_symbols[index].name + "_frozen", real=True
            )
        return self.frozen_symbols[index]

    def _reduce(self, reduction: functions.Reduction, position: Position) -> sympy.Basic:
        operand = reduction.args[0]
        classes = self.classes(operand) if Role.CLASS in self.roles(operand) else None
        terms = [
            self.expand(operand, position.merge(inner))
            for inner in self.layout.positions(reduction.removed_roles, classes)
        ]
        return REDUCERS[type(reduction)](terms)

    def _class_id(self, operand: sympy.Basic, position: Position) -> sympy.Integer:
        if Role.CLASS not in self.roles(operand):
            return sympy.Integer(self._integer(self.expand(operand, position)))
        row = [
            self.expand(operand, replace(position, klass=klass))
            for klass in range(self.classes(operand))
        ]
        return sympy.Integer(max(range(len(row)), key=lambda klass: (row[klass], -klass)))

    @staticmethod
    def _integer(value: sympy.Basic) -> int:
        if not value.is_Number:
            raise TypeError(f"a class id must be data, got {value}")
        return int(value)
