"""Statement-level checks: one `loss`, at most one `mask` (E210, E211), and the depth and
size of a statement with its lets written out (E112, E117)."""

from __future__ import annotations

from dataclasses import dataclass

from lossdsl import nodes
from lossdsl.codes import SECOND_LOSS, SECOND_MASK, TOO_DEEP, TOO_LARGE
from lossdsl.declarations import Typed
from lossdsl.diagnostics import Report, error
from lossdsl.parser import NESTING_LIMIT
from lossdsl.source import Span
from lossdsl.typed import TExpr, TreeSize, tree_size

INLINED_DEPTH_LIMIT = NESTING_LIMIT
"""The deepest a `let`, `loss` or `mask` may nest, in operations, with its lets written
out: the typed tree that every later stage walks, several of them recursively (lowering,
the domain checks, verification's expansion of the exact loss, where one operation can
be four SymPy levels deep). The parser's 64 levels bound the text only; a chain of lets
builds any depth from shallow lines. At 64, chains of signs, `sigmoid`, sums and
products, `log` and `mean` were measured to pass every stage with verification; from
about 90 (chains of `sigmoid`) verification exhausted Python's recursion limit."""

INLINED_SIZE_LIMIT = 20_000
"""The most nodes a `let`, `loss` or `mask` may have with its lets written out at each
use: lets that use the previous one twice double it at each line. Lowering, the domain
checks and verification take time in this size; at the limit a spec checks in seconds."""


@dataclass(frozen=True)
class Counted:
    """A statement that may appear a limited number of times (`loss`, `mask`), checked."""

    statement: nodes.LossDecl | nodes.MaskDecl
    value: Typed


def within_limits(
    report: Report, sizes: dict[TExpr, TreeSize], what: str, span: Span, typed: Typed
) -> Typed:
    """`typed`, or None (reported) if it is too deep or too large with its lets written out.

    A let over the limits is reported once and its uses are then silent, so no tree
    deeper than a statement over `INLINED_DEPTH_LIMIT` is ever built.
    """
    if typed is None:
        return None
    size = tree_size(typed, sizes)
    written_out = "with its lets written out where they are used"
    if size.depth > INLINED_DEPTH_LIMIT:
        report(
            error(
                TOO_DEEP,
                f"{what} is nested {size.depth} operations deep {written_out}, "
                f"more than {INLINED_DEPTH_LIMIT}",
                span,
                f"{size.depth} operations deep",
                "a let is written out at each use, so a chain of lets each applying a "
                "function to the one before nests like one expression; "
                f"at most {INLINED_DEPTH_LIMIT} nested operations are allowed",
            )
        )
        return None
    if size.nodes > INLINED_SIZE_LIMIT:
        report(
            error(
                TOO_LARGE,
                f"{what} has {size.nodes:,} operations and values {written_out}, "
                f"more than {INLINED_SIZE_LIMIT:,}",
                span,
                "too large",
                "a let is written out at each use, so lets that each use the one before "
                f"twice double in size at each line; at most {INLINED_SIZE_LIMIT:,} are "
                "allowed",
            )
        )
        return None
    return typed


def check_counts(report: Report, counted: list[Counted], keyword: str) -> None:
    """A second (third...) `loss` or `mask` is an error naming the first's line."""
    if len(counted) < 2:
        return
    first_line = counted[0].statement.span.line
    limit = "exactly one `loss`" if keyword == "loss" else "at most one `mask`"
    fix = (
        "add the terms in one loss: `loss = mean(a) + mean(b)`"
        if keyword == "loss"
        else "keep one condition"
    )
    for extra in counted[1:]:
        span = extra.statement.span
        report(
            error(
                SECOND_LOSS if keyword == "loss" else SECOND_MASK,
                f"a second `{keyword}`; the first is on line {first_line}",
                Span.point(span.line, span.column, len(keyword)),
                f"second `{keyword}`",
                f"a spec has {limit}; {fix}",
            )
        )
