"""Channel selections (LANGUAGE.md 6.2): the size of a typed value's class axis, what a
selection `x[k]` or `x[a:b]` takes from it, and the class counts a spec needs of its inputs.

The checker reports what is known at compile time (a selection outside a vector param or a
slice of literal width, class axes of different literal sizes combined); the writer's
prelude checks the inputs' channels when the loss runs; the verifier draws inputs of the
class counts found here. Whether a value has the class role at all is `roles`'s business.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from lossdsl.analysis.report import source_text
from lossdsl.kinds import Argument
from lossdsl.source import SourceFile
from lossdsl.typed import (
    Role,
    TCall,
    TExpr,
    TInput,
    TParam,
    TSelect,
    children,
    walk,
)


@dataclass(frozen=True)
class Width:
    """The size of a class axis: an input's class count plus `offset` (`count` names the
    input's argument: `p[1:]` is y_pred's count - 1), or the number `offset` when `count`
    is None (a vector param, `p[0:2]`)."""

    count: Argument | None
    offset: int

    @property
    def literal(self) -> int | None:
        return self.offset if self.count is None else None


@dataclass(frozen=True)
class Selection:
    """What a selection takes from a class axis of a known `Width`.

    `width` is the result's (None for `x[k]`, which has no class axis left); `needed` is the
    smallest size of the selected axis for which the selection is inside it; `problem`
    says why it is invalid at compile time, or is None.
    """

    width: Width | None
    needed: int
    problem: str | None = None


def resolve(bound: int, size: int) -> int:
    """A bound as a position: a negative bound counts from the end, as in Python."""
    return bound if bound >= 0 else size + bound


def select(width: Width, start: int | None, stop: int | None, single: bool) -> Selection:
    """`x[start]` (`single`) or `x[start:stop]` of a class axis of `width`."""
    if single:
        assert start is not None
        needed = start + 1 if start >= 0 else -start
        return _within(width, needed, None, f"entry {start}")
    if start is not None and start < 0 and stop is not None and stop >= 0:
        return Selection(None, 0, "its start counts from the end and its stop from the start")
    low = start or 0
    if stop is not None and (low < 0) == (stop < 0) and stop <= low:
        return Selection(None, 0, "it selects no entry")
    if low >= 0 and stop is not None and stop >= 0:  # x[a:b]
        return _within(width, stop, Width(None, stop - low), f"entries {low} to {stop - 1}")
    if low < 0:  # x[-a:] and x[-a:-b]
        taken = (stop if stop is not None else 0) - low
        return _within(width, -low, Width(None, taken), f"the last {-low} entries")
    end = stop or 0  # x[a:] and x[a:-b]: the size less the entries left out
    kept = Width(width.count, width.offset + end - low)
    return _within(width, low - end + 1, kept, f"entries {low} to {end - 1}")


def _within(width: Width, needed: int, result: Width | None, what: str) -> Selection:
    """The selection, or its problem when the axis's literal size is below `needed`;
    `needed` becomes a need of the input whose count the size follows."""
    if width.literal is None:
        return Selection(result, needed - width.offset)
    if width.literal < needed:
        entries = "entry" if width.literal == 1 else "entries"
        problem = f"it takes {what}, but the class axis has {width.literal} {entries}"
        return Selection(None, needed, problem)
    return Selection(result, needed)


def combined(widths: Sequence[Width]) -> Width | None:
    """The class axis of an elementwise combination: axes of size 1 broadcast; None when two
    known sizes differ (a compile-time error). Sizes known only at run time are taken to
    agree (TensorFlow's broadcasting reports them), y_pred's count winning."""
    sizes = [width for width in widths if width.literal != 1] or list(widths[:1])
    literal = {width.literal for width in sizes if width.literal is not None}
    if len(literal) > 1:
        return None
    for width in sizes:
        if width == Width("y_pred", 0):
            return width
    return sizes[0]


class Widths:
    """The class-axis width of typed values with the class role, memoised by node.

    Every vector param has `vector_length` entries, the first vector param's (E315 reports
    the others), or the length of its own default without it; so has y_pred when the
    checker gives a `vector_length`, since a vector param has one entry per class.
    """

    def __init__(self, vector_length: int | None = None) -> None:
        self.vector_length = vector_length
        self._known: dict[int, Width] = {}

    def of(self, node: TExpr) -> Width:
        known = self._known.get(id(node))
        if known is None:
            known = self._compute(node)
            self._known[id(node)] = known
        return known

    def _compute(self, node: TExpr) -> Width:
        match node:
            case TInput(info=info) if info.argument == "y_pred" and self.vector_length:
                return Width(None, self.vector_length)
            case TInput(info=info):
                return Width(info.argument, 0)
            case TParam(info=info) if isinstance(info.default, tuple):
                return Width(None, self.vector_length or len(info.default))
            case TCall(builtin="onehot"):
                return Width(None, self.vector_length) if self.vector_length else Width("y_pred", 0)
            case TSelect(operand=operand, start=start, stop=stop, single=single):
                selection = select(self.of(operand), start, stop, single)
                return selection.width or Width("y_pred", 0)  # invalid: reported
        widths = [self.of(child) for child in children(node) if Role.CLASS in child.roles]
        return (combined(widths) if widths else None) or Width("y_pred", 0)


@dataclass(frozen=True)
class Requirement:
    """The fewest classes an input must have for a selection of it: `needed` entries on
    its last axis, for the selection written `written` (as the run-time error quotes it)."""

    argument: Argument
    needed: int
    written: str


def requirements(roots: Sequence[TExpr], source: SourceFile) -> dict[Argument, Requirement]:
    """Per input, the selection under `roots` that needs the most classes of it, quoted
    from `source`."""
    widths = Widths()
    found: dict[Argument, Requirement] = {}
    for node in _selections(roots):
        width = widths.of(node.operand)
        if width.count is None:
            continue
        selection = select(width, node.start, node.stop, node.single)
        best = found.get(width.count)
        if selection.problem is None and (best is None or selection.needed > best.needed):
            found[width.count] = Requirement(
                width.count, selection.needed, source_text(source, node.span)
            )
    return found


def _meeting_widths(roots: Sequence[TExpr]) -> Iterator[list[Width]]:
    """The widths of the class axes that meet in each elementwise combination (every
    node but a selection, which reads its operand's axis rather than combining it)."""
    widths = Widths()
    for node in walk(roots):
        if not isinstance(node, TSelect):
            yield [widths.of(child) for child in children(node) if Role.CLASS in child.roles]


def agreements(roots: Sequence[TExpr]) -> dict[Argument, int]:
    """Per input, the class count it must have where its class axis, of a size known only
    at run time, meets one of a literal size other than 1 in an elementwise combination:
    `p[0:2] - y` runs only where y has 2 classes (or 1, broadcast: the equal count is
    taken), `onehot(y) * softmax(z[..., 0:3])` only where z has 3. The first combination
    found wins; the verifier draws inputs so."""
    found: dict[Argument, int] = {}
    for sizes in _meeting_widths(roots):
        literal = {width.literal for width in sizes if width.literal not in (None, 1)}
        if len(literal) != 1:
            continue
        (size,) = literal
        for width in sizes:
            if width.count is not None:
                found.setdefault(width.count, size - width.offset)
    return found


def true_offset(roots: Sequence[TExpr]) -> int | None:
    """y_true's class count less y_pred's where class axes of both, of sizes known only at
    run time, meet in an elementwise combination: `-y[-1] * sum(y[0:-1] * log_softmax(z))`
    (a weight beside soft labels, LANGUAGE.md 6.2) runs as written where y has one class
    more than z. The first combination found wins; the verifier draws inputs so."""
    for sizes in _meeting_widths(roots):
        true = [width.offset for width in sizes if width.count == "y_true"]
        predicted = [width.offset for width in sizes if width.count == "y_pred"]
        if true and predicted and predicted[0] != true[0]:
            return predicted[0] - true[0]
    return None


def whole_uses(roots: Sequence[TExpr], argument: Argument) -> bool:
    """Whether the input bound to `argument` is read other than through selections."""

    def is_input(node: TExpr) -> bool:
        return isinstance(node, TInput) and node.info.argument == argument

    return any(is_input(root) for root in roots) or any(
        is_input(child)
        for node in walk(roots)
        if not isinstance(node, TSelect)
        for child in children(node)
    )


def _selections(roots: Sequence[TExpr]) -> Iterator[TSelect]:
    return (node for node in walk(roots) if isinstance(node, TSelect))
