"""Gradient paths to y_pred, and witness searches where a node's `where` guards hold."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lossdsl.analysis.intervals import Array
from lossdsl.analysis.witness import Condition, Witness, WitnessSearch
from lossdsl.builtins import BUILTINS
from lossdsl.typed import (
    TCall,
    TCompare,
    TExpr,
    TGather,
    TInput,
    TLogic,
    children,
)


def _gradient_children(node: TExpr) -> tuple[tuple[TExpr, str | None], ...]:
    """Children with what blocks the gradient through them (None: it flows)."""
    match node:
        case TCall(builtin=name, args=args) if not BUILTINS[name].differentiable:
            return tuple((arg, f"`{name}(...)`") for arg in args)
        case TCall(builtin="where", args=(condition, *branches)):
            return ((condition, "a comparison"), *((b, None) for b in branches))
        case TCompare(left=left, right=right):
            return ((left, "a comparison"), (right, "a comparison"))
        case TLogic(operands=operands):
            return tuple((operand, "a comparison") for operand in operands)
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


def _when_guarded(condition: Condition, guards: tuple[Guard, ...]) -> Condition:
    """`condition` where every guard's comparison has the value that selects the branch."""

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


class GuardedSearch:
    """Witness searches that look first where a node's value is used: its guards hold."""

    def __init__(self, roots: Sequence[TExpr], search: WitnessSearch) -> None:
        self.guards = guard_paths(roots)
        self.search = search

    def find(
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
            witness = search.find([*scope, *conditions], _when_guarded(condition, guards))
            if witness is not None:
                return Found(witness, True)
        return Found(search.find(scope, condition), False)
