"""The syntax tree of a spec: frozen dataclasses, each with the span it was parsed from.

The parser builds these; the checker reads them. No node knows about roles, SymPy or
TensorFlow. Sums and products of many operands are single n-ary nodes, so a long flat
expression does not make a deep tree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from lossdsl.source import SourceFile, Span

CompareOp = Literal["<", "<=", ">", ">=", "==", "!="]
LogicOp = Literal["and", "or", "not"]


# ---------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Number:
    """A numeric literal, as written (`text`) and as a float (`value`)."""

    value: float
    text: str
    span: Span


@dataclass(frozen=True)
class Name:
    """A reference to an input, param, let, or built-in constant (`eps`, `num_classes`)."""

    id: str
    span: Span


@dataclass(frozen=True)
class Add:
    """`a + b - c ...`: operands with `negated[i]` true where operand i is subtracted.

    `negated[0]` is always False (a leading minus is a `Neg`).
    """

    operands: tuple[Expr, ...]
    negated: tuple[bool, ...]
    span: Span


@dataclass(frozen=True)
class Mul:
    """`a * b / c ...`: operands with `inverted[i]` true where operand i divides."""

    operands: tuple[Expr, ...]
    inverted: tuple[bool, ...]
    span: Span


@dataclass(frozen=True)
class Neg:
    """Unary minus (`-x`); unary plus is dropped by the parser."""

    operand: Expr
    span: Span


@dataclass(frozen=True)
class Pow:
    """`base ^ exponent` (or `**`), right-associative, tighter than unary minus."""

    base: Expr
    exponent: Expr
    span: Span


@dataclass(frozen=True)
class Keyword:
    """A keyword argument `name=value` of a call."""

    name: str
    value: Expr
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Call:
    """`func(args..., key=value...)`; `func_span` covers the function's name only."""

    func: str
    args: tuple[Expr, ...]
    keywords: tuple[Keyword, ...]
    span: Span
    func_span: Span


@dataclass(frozen=True)
class Slice:
    """`start:stop` (or `start:stop:step`) inside brackets; a bound left out is None."""

    start: Expr | None
    stop: Expr | None
    step: Expr | None
    span: Span


@dataclass(frozen=True)
class Index:
    """`target[index]`: a gather (`w[class(y)]`) or a channel selection (`p[0]`, `p[0:2]`);
    `ellipsis` when written `target[..., index]`."""

    target: Expr
    index: Expr | Slice
    span: Span
    ellipsis: bool = False


@dataclass(frozen=True)
class Compare:
    """`left OP right`; valid only as `where`'s first argument and in `mask`."""

    op: CompareOp
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True)
class Logic:
    """`a and b and ...`, `a or b or ...` (flat) or `not a` (one operand): a condition
    built from comparisons, valid only where a comparison is."""

    op: LogicOp
    operands: tuple[Expr, ...]
    span: Span


Expr = Number | Name | Add | Mul | Neg | Pow | Call | Index | Compare | Logic


def subexpressions(expr: Expr) -> Iterator[Expr]:
    """`expr` and every expression inside it (keyword values included), parents first."""
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        match node:
            case Add(operands=operands) | Mul(operands=operands) | Logic(operands=operands):
                stack.extend(operands)
            case Neg(operand=operand):
                stack.append(operand)
            case Pow(base=first, exponent=second) | Compare(left=first, right=second):
                stack.extend((first, second))
            case Index(target=target, index=Slice() as bounds):
                parts = (target, bounds.start, bounds.stop, bounds.step)
                stack.extend(part for part in parts if part is not None)
            case Index(target=target, index=index) if not isinstance(index, Slice):
                stack.extend((target, index))
            case Call(args=args, keywords=keywords):
                stack.extend((*args, *(keyword.value for keyword in keywords)))


# ---------------------------------------------------------------- declarations


@dataclass(frozen=True)
class NamedDomain:
    """A param domain by name: `real`, `nonneg`, `positive`, `unit` (or a misspelling)."""

    name: str
    span: Span


@dataclass(frozen=True)
class Interval:
    """A param domain written as an interval; `None` bounds are -inf / inf."""

    low: float | None
    high: float | None
    low_closed: bool
    high_closed: bool
    span: Span


Domain = NamedDomain | Interval


@dataclass(frozen=True)
class VectorLiteral:
    """`[1.0, 2.5, 4.0]`: a per-class param default."""

    values: tuple[Number, ...]
    span: Span


ParamDefault = Number | VectorLiteral


@dataclass(frozen=True)
class InputDecl:
    """`input NAME: KIND`; the first binds y_true, the second y_pred."""

    name: str
    kind: str
    span: Span
    name_span: Span
    kind_span: Span


@dataclass(frozen=True)
class ParamDecl:
    """`param NAME [: DOMAIN] = DEFAULT`; a constructor argument of the compiled loss."""

    name: str
    domain: Domain | None
    default: ParamDefault
    span: Span
    name_span: Span


@dataclass(frozen=True)
class LetDecl:
    """`let NAME = EXPR`: a named sub-expression usable below it."""

    name: str
    value: Expr
    span: Span
    name_span: Span


@dataclass(frozen=True)
class MaskDecl:
    """`mask COND`: elements where COND is false contribute nothing and are not counted."""

    condition: Expr
    span: Span


@dataclass(frozen=True)
class LossDecl:
    """`loss [NAME] = EXPR`; `name` is None when omitted (the file's stem is used)."""

    name: str | None
    value: Expr
    span: Span
    name_span: Span | None


Statement = InputDecl | ParamDecl | LetDecl | MaskDecl | LossDecl


@dataclass(frozen=True)
class Spec:
    """A parsed spec: its statements in order and the leading comment block."""

    source: SourceFile
    statements: tuple[Statement, ...]
    docstring: str
