"""The search for input and param values where a condition holds (`WitnessSearch`, `Witness`)."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import mpmath
import numpy as np
import numpy.typing as npt

from lossdsl.analysis.evaluate import ROW_BUILTINS, WITNESS_CLASSES, Evaluator, selection_name
from lossdsl.analysis.intervals import Array
from lossdsl.analysis.report import format_number
from lossdsl.kinds import KINDS
from lossdsl.symbolic import numeric
from lossdsl.typed import (
    ParamDomain,
    Role,
    TCall,
    TExpr,
    TGather,
    TInput,
    TNumClasses,
    TParam,
    TPow,
    TSelect,
    children,
)

Leaf = TInput | TParam | TSelect | TNumClasses
"""A variable of a search: an input, a param, or a selection of one (`p[0]`, `w[1]`),
each channel taking its candidates apart from the others; or `num_classes`, whose one
candidate is the evaluator's C (`WITNESS_CLASSES`), so that a witness names it."""


def leaf_name(leaf: Leaf) -> str:
    if isinstance(leaf, TSelect):
        return str(selection_name(leaf))
    if isinstance(leaf, TNumClasses):
        return "num_classes"
    return leaf.info.name


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


def param_values(domain: ParamDomain) -> tuple[float, ...]:
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
        self._free: dict[int, tuple[Leaf, ...]] = {}
        self._rows_needed: dict[int, bool] = {}

    def find(self, scope: Sequence[TExpr], condition: Condition) -> Witness | None:
        """The simplest confirmed witness of `condition`, over the inputs and params that
        the nodes of `scope` read."""
        needs_rows = any(self._needs_rows(node) for node in scope)
        leaves: dict[str, Leaf] = {}
        for node in scope:
            for leaf in self._free_leaves(node):
                leaves.setdefault(leaf_name(leaf), leaf)
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

    def _variable(self, leaf: Leaf, needs_rows: bool) -> Variable:
        if isinstance(leaf, TNumClasses):
            return Variable(leaf_name(leaf), np.array([[float(WITNESS_CLASSES)]]))
        width = WITNESS_CLASSES if needs_rows and Role.CLASS in leaf.roles else 1
        name, read = leaf_name(leaf), leaf.operand if isinstance(leaf, TSelect) else leaf
        assert isinstance(read, TInput | TParam)
        if isinstance(read, TInput):
            values = tuple(v for v in KIND_VALUES[read.info.kind] if abs(v) <= self.input_limit)
            distribution = read.info.kind == "onehot" and read is leaf
            return Variable(name, _rows(values, width, distribution))
        return Variable(name, _rows(param_values(read.info.domain), width, False))

    def _free_leaves(self, node: TExpr) -> tuple[Leaf, ...]:
        """The inputs, params and selections of them that `node` reads, by name, in order
        of first occurrence."""
        known = self._free.get(id(node))
        if known is None:
            leaves: dict[str, Leaf] = {}
            if isinstance(node, TInput | TParam | TNumClasses) or (
                isinstance(node, TSelect) and selection_name(node) is not None
            ):
                leaves[leaf_name(node)] = node
                known = tuple(leaves.values())
                self._free[id(node)] = known
                return known
            for child in children(node):
                for leaf in self._free_leaves(child):
                    leaves.setdefault(leaf_name(leaf), leaf)
            known = tuple(leaves.values())
            self._free[id(node)] = known
        return known

    def _needs_rows(self, node: TExpr) -> bool:
        known = self._rows_needed.get(id(node))
        if known is None:
            selects_rows = isinstance(node, TSelect) and selection_name(node) is None
            mixes = (
                selects_rows
                or isinstance(node, TGather)
                or (
                    isinstance(node, TCall)
                    and (node.builtin in ROW_BUILTINS or Role.CLASS in node.reduced)
                )
            )
            known = mixes or any(self._needs_rows(child) for child in children(node))
            self._rows_needed[id(node)] = known
        return known


REMEMBERED_VARIABLES = 16
"""Searches over at most this many variables reuse their index tuples (`_candidate_indices`,
at most CANDIDATE_LIMIT x 16 integers each): a compile makes hundreds of searches, most
over the same few sizes."""


def _candidate_indices(sizes: Sequence[int]) -> npt.NDArray[np.intp]:
    """Index tuples into each variable's candidates: all, or the simplest plus random ones
    (read-only: the same sizes give the same array)."""
    if len(sizes) <= REMEMBERED_VARIABLES:
        return _remembered_indices(tuple(sizes))
    return _new_indices(sizes)


@functools.lru_cache(maxsize=64)
def _remembered_indices(sizes: tuple[int, ...]) -> npt.NDArray[np.intp]:
    indices = _new_indices(sizes)
    indices.setflags(write=False)
    return indices


def _new_indices(sizes: Sequence[int]) -> npt.NDArray[np.intp]:
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


def nan_power(power: TPow) -> Condition:
    def condition(value: Callable[[TExpr], Array]) -> Array:
        base, exponent = value(power.base), value(power.exponent)
        finite = np.isfinite(base) & np.isfinite(exponent)
        return finite & (base < 0) & np.isnan(value(power))

    return condition
