"""The typed tree evaluated on candidate values in float64 or mpmath (`Evaluator`)."""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable

import numpy as np
import sympy

from lossdsl.analysis.intervals import Array
from lossdsl.builtins import BUILTIN_LIST, BUILTINS, Builtin, RoleRule
from lossdsl.symbolic import numeric
from lossdsl.typed import (
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
)

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
            case TSampleIndex():
                return self.number(0.0)  # the batch of one sample, below
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
            case TLogic(op="not", operands=(operand,)):
                return np.logical_not(self.value(operand))
            case TLogic(op=op, operands=operands):
                combine = np.logical_and if op == "and" else np.logical_or
                return functools.reduce(combine, map(self.value, operands))
            case TGather(vector=vector, index=index):
                ids = self.value(index).astype(float).astype(int)
                rows = np.broadcast_to(self.value(vector), (*ids.shape[:-1], WITNESS_CLASSES))
                return np.take_along_axis(rows, ids, axis=-1)
            case TSelect() if selection_name(node) in self.bindings:
                return self.bindings[str(selection_name(node))]
            case TSelect(operand=operand, start=start, stop=stop, single=single):
                return _selected(self.value(operand), start, stop, single)
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


def selection_name(node: TSelect) -> str | None:
    """`p[0]`: how a witness names a selection of an input or param, which the searches
    take as a variable of its own; None for a selection of another value."""
    if isinstance(node.operand, TInput | TParam):
        return node.operand.info.name + node.written
    return None


def is_channel_leaf(node: TExpr) -> bool:
    """Whether `node` is a selection of an input or param, a variable of the searches."""
    return isinstance(node, TSelect) and selection_name(node) is not None


def _selected(values: Array, start: int | None, stop: int | None, single: bool) -> Array:
    """A selection of a computed value's rows (of `WITNESS_CLASSES` entries, or 1 per
    element, which every selection broadcasts); a position past the row wraps around."""
    width = values.shape[3]
    if width == 1:
        return values
    if single:
        assert start is not None
        return values[..., [start % width]]
    positions = np.arange(width)[start:stop]
    return values[..., positions] if len(positions) else values


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
    """The axes a reduction removes; over a partner role it takes the one pair there is."""
    return tuple(sorted(ROLE_AXES[role] for role in call.reduced if role in ROLE_AXES))


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
    "cumsum": lambda ev, call: np.cumsum(ev.argument(call), axis=3),
    "other": lambda ev, call: ev.argument(call),  # each sample paired with itself
    "class": _class_id,
    "onehot": _onehot,
    "sum": lambda ev, call: _reduce_sum(ev, ev.argument(call), _axes(call)),
    "mean": _mean,
    "max": lambda ev, call: np.max(ev.argument(call), axis=_axes(call), keepdims=True),
    "min": lambda ev, call: np.min(ev.argument(call), axis=_axes(call), keepdims=True),
    "logsumexp": lambda ev, call: _logsumexp(ev, ev.argument(call), _axes(call)),
}
"""How the built-ins over the class axis and the reductions are evaluated on [candidates,
batch, spatial, class] arrays; every other built-in is evaluated through its SymPy meaning.

The arrays have no partner axes: a spec that pairs samples is evaluated as for a batch of
one sample, a real input, so that a value found there (a witness) is one the loss
reaches: `other(x)` is x, `sample_index` is 0 and a reduction over a partner role takes
the one pair. Values only larger batches reach are left to the ranges."""


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
