"""Spec text to `nodes.Spec`: decoding, the Lark grammar, checks of the tree, the nodes.

The parser only knows the shape of the language; whether names exist, calls have the
right arguments and comparisons sit where they may is left to the checker.

How it works:

1. `lines.split_logical_lines` cuts the text into logical lines (a statement continues on
   the next lines while a bracket is open) and collects the leading comment block.
2. Each logical line is parsed on its own by the LALR grammar `grammar/loss.lark`, so a
   bad statement does not hide the errors of the statements after it.
3. Before the (recursive) transformer runs, an iterative pass checks the Lark tree:
   nesting depth, number and name spelling, interval bounds, argument order.
4. `_ToNodes` turns the tree into the frozen nodes of `lossdsl.nodes`.

Lark's failures become located E1xx diagnostics in `lossdsl.syntax_errors`.

Parser limits: at most `NESTING_LIMIT` (64) levels of nesting, where each bracket pair
(grouping, call, index), each unary sign and each `^` counts one level. Deeper specs get
E112 at the first construct past the limit. The limit keeps every later stage (which
walks the tree recursively) far from Python's recursion limit; flat sums and products
(`a + b + c + ...`) are single nodes, whatever their length. A spec holds at most
`SIZE_LIMIT` (100,000) characters (E117), which bounds the parse time to a few seconds.
"""

from __future__ import annotations

import codecs
import functools
import itertools
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedInput
from lark.tree import Meta

from lossdsl import nodes
from lossdsl.codes import (
    BARE_EXPRESSION,
    EMPTY_SPEC,
    INVALID_INTERVAL,
    INVALID_UTF8,
    MALFORMED_NUMBER,
    POSITIONAL_AFTER_KEYWORD,
    TOO_DEEP,
    TOO_LARGE,
)
from lossdsl.diagnostics import Diagnostic, LossSpecError, error
from lossdsl.lines import LogicalLine, split_logical_lines
from lossdsl.source import SourceFile, Span, normalise_identifier
from lossdsl.syntax_errors import invalid_name, syntax_errors, token_span

NESTING_LIMIT = 64
"""The deepest nesting of brackets, calls, indexing, unary signs and powers accepted."""

SIZE_LIMIT = 100_000
"""The most characters a spec may hold (the parser handles about 30,000 tokens a second)."""

# ---------------------------------------------------------------- diagnostic codes
# Documented in docs/LANGUAGE_NOTES.md ("Diagnostic codes: E1xx"); codes are stable.

MINIMAL_SPEC_HELP = "a minimal spec is one line such as `loss = mean(square(p - y))`"


@functools.cache
def _lark() -> Lark:
    """The LALR parser for one logical line, built once from the packaged grammar."""
    grammar = resources.files("lossdsl.grammar").joinpath("loss.lark").read_text("utf-8")
    return Lark(grammar, parser="lalr", propagate_positions=True, start="line")


# ---------------------------------------------------------------- reading bytes


def read_source(data: bytes, name: str) -> SourceFile:
    """Decode a spec file's bytes as UTF-8 (a leading BOM is dropped), newlines normalised.

    Invalid UTF-8 raises LossSpecError (E101) located at the first bad byte.
    """
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return SourceFile.from_text(data.decode("utf-8"), name)
    except UnicodeDecodeError as failure:
        source = SourceFile.from_text(data.decode("utf-8", errors="replace"), name)
        source_prefix = SourceFile.from_text(data[: failure.start].decode("utf-8")).text
        line = source_prefix.count("\n") + 1
        column = len(source_prefix) - (source_prefix.rfind("\n") + 1) + 1
        diagnostic = error(
            INVALID_UTF8,
            "spec is not valid UTF-8",
            Span.point(line, column),
            f"byte 0x{data[failure.start]:02x} cannot be decoded",
            "save the file with the UTF-8 encoding",
        )
        raise LossSpecError([diagnostic], source) from None


# ---------------------------------------------------------------- parsing


@dataclass(frozen=True)
class _BareExpression:
    """A logical line holding only an expression (the whole spec may be one)."""

    value: nodes.Expr


def parse(source: SourceFile) -> nodes.Spec:
    """Parse a spec; raises LossSpecError with every syntax error found (E1xx)."""
    if len(source.text) > SIZE_LIMIT:
        too_large = error(
            TOO_LARGE,
            f"the spec is too large ({len(source.text):,} characters)",
            None,
            "",
            f"a spec may hold at most {SIZE_LIMIT:,} characters; "
            "name repeated parts with `let` or use vector params",
        )
        raise LossSpecError([too_large], source)
    logical_lines, docstring = split_logical_lines(source)
    if not logical_lines:
        raise LossSpecError(
            [error(EMPTY_SPEC, "the spec is empty", None, "", MINIMAL_SPEC_HELP)], source
        )
    diagnostics: list[Diagnostic] = []
    statements: list[nodes.Statement] = []
    for logical_line in logical_lines:
        result = _parse_logical_line(logical_line)
        match result:
            case list():
                diagnostics.extend(result)
            case _BareExpression(value) if len(logical_lines) == 1:
                statements.append(nodes.LossDecl(None, value, value.span, None))
            case _BareExpression(value):
                diagnostics.append(_bare_expression_error(value, logical_line))
            case _:
                statements.append(result)
    if diagnostics:
        raise LossSpecError(diagnostics, source)
    return nodes.Spec(source, tuple(statements), docstring)


def _parse_logical_line(
    logical_line: LogicalLine,
) -> nodes.Statement | _BareExpression | list[Diagnostic]:
    try:
        tree = _lark().parse(logical_line.text)
    except UnexpectedInput as failure:
        return syntax_errors(failure, logical_line)
    problems = _TreeCheck(logical_line.first_line - 1).run(tree)
    if problems:
        return problems
    result: nodes.Statement | _BareExpression = _ToNodes(logical_line.first_line - 1).transform(
        tree
    )
    return result


def _bare_expression_error(value: nodes.Expr, logical_line: LogicalLine) -> Diagnostic:
    continuation_help = (
        (
            "to continue the line above, wrap its expression in `( )`: a statement continues "
            "on the next line only while a bracket is open",
        )
        if logical_line.text.lstrip().startswith(("+", "-"))
        else ()
    )
    indent = len(logical_line.text) - len(logical_line.text.lstrip(" \t"))
    return error(
        BARE_EXPRESSION,
        "an expression on its own is not a statement",
        Span.point(logical_line.first_line, indent + 1).join(value.span),
        "not a statement",
        "name it with `let NAME = ...`, or make it the loss with `loss = ...`",
        "(only a spec that is one bare expression means `loss = EXPR`)",
        *continuation_help,
    )


# ---------------------------------------------------------------- checks before transforming

# Which child of a nesting construct the depth error points at (its bracket, sign or `^`).
_NESTING_TOKEN = {
    "paren": 0,
    "call": 1,
    "index": 1,
    "neg": 0,
    "pos": 0,
    "power": 1,
    "condition_paren": 0,
    "logical_not": 0,
}
_VALID_NUMBER = re.compile(r"([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
# Help for malformed numbers: the first pattern that matches gives the help line.
_MALFORMED_NUMBER_HELP = (
    (re.compile(r"(\d+(\.\d*)?|\.\d+)[eE][+-]?"), "an exponent needs digits, as in `1e-7`"),
    (
        re.compile(r"(?P<number>\d+(\.\d*)?|\.\d+)(?P<name>[^\W\d_]\w*)"),
        "to multiply, write `{number} * {name}`",
    ),
)


class _TreeCheck:
    """Problems the grammar lets through, found without recursion (the tree may be deep)."""

    def __init__(self, line_offset: int) -> None:
        self.line_offset = line_offset
        self.problems: list[Diagnostic] = []

    def run(self, tree: Tree[Token]) -> list[Diagnostic]:
        too_deep = False
        stack: list[tuple[Tree[Token] | Token | None, int]] = [(tree, 0)]
        while stack:
            item, depth = stack.pop()
            if isinstance(item, Token):
                self._check_token(item)
                continue
            if item is None:
                continue
            if item.data in _NESTING_TOKEN:
                depth += 1
                if depth > NESTING_LIMIT:  # reported once; nothing below it is visited
                    if not too_deep:
                        self.problems.append(self._too_deep(item))
                    too_deep = True
                    continue
            if item.data == "interval":
                self._check_interval(item)
            elif item.data == "arguments":
                self._check_argument_order(item)
            stack.extend((child, depth) for child in reversed(item.children))
        return self.problems

    def _span(self, token: Token) -> Span:
        return token_span(token, self.line_offset)

    def _check_token(self, token: Token) -> None:
        if token.type == "NUMBER":
            self._check_number(token)
        elif token.type == "NAME":
            self._check_name(token)

    def _check_number(self, token: Token) -> None:
        text = str(token)
        if _VALID_NUMBER.fullmatch(text):
            if float(text) != float("inf"):
                return
            message, label = f"number `{text}` is too large", "too large"
            help_line = "the largest number is about `1.8e308`"
        else:
            message, label = f"malformed number `{text}`", "not a number"
            help_line = "numbers are written like `2`, `0.5` or `1e-7`"
            for pattern, template in _MALFORMED_NUMBER_HELP:
                if match := pattern.fullmatch(text):
                    help_line = template.format(**match.groupdict())
                    break
        self.problems.append(error(MALFORMED_NUMBER, message, self._span(token), label, help_line))

    def _check_name(self, token: Token) -> None:
        if not str(token).isidentifier():
            self.problems.append(invalid_name(token, self.line_offset))

    def _too_deep(self, tree: Tree[Token]) -> Diagnostic:
        token = tree.children[_NESTING_TOKEN[tree.data]]
        assert isinstance(token, Token)
        return error(
            TOO_DEEP,
            f"the expression is nested more than {NESTING_LIMIT} levels deep",
            self._span(token),
            f"nesting level {NESTING_LIMIT + 1}",
            f"at most {NESTING_LIMIT} levels of brackets, calls, signs and powers are allowed",
            "name inner parts with `let NAME = ...` statements",
        )

    def _check_interval(self, tree: Tree[Token]) -> None:
        opening, low, _, high, closing = tree.children
        assert isinstance(opening, Token) and isinstance(closing, Token)
        assert isinstance(low, Tree) and isinstance(high, Tree)
        for bound, bracket, side, wanted_sign, open_bracket in (
            (low, opening, "lower", "-", "("),
            (high, closing, "upper", "+", ")"),
        ):
            sign, value = bound.children
            assert isinstance(value, Token)
            if value.type != "INF":
                continue
            written_sign = str(sign.children[0]) if isinstance(sign, Tree) else "+"
            if written_sign != wanted_sign:
                self.problems.append(
                    error(
                        INVALID_INTERVAL,
                        f"the {side} bound of an interval cannot be `{written_sign}inf`",
                        self._span(value),
                        f"write `{'-inf' if side == 'lower' else 'inf'}` here",
                        "an interval goes from its lower to its upper bound, as in `(-inf, 0]`",
                    )
                )
            elif str(bracket) != open_bracket:
                self.problems.append(
                    error(
                        INVALID_INTERVAL,
                        "an interval cannot include an infinite bound",
                        self._span(bracket),
                        f"write `{open_bracket}` here",
                        "infinite ends of an interval are open, as in `[0, inf)` or `(-inf, 0]`",
                    )
                )

    def _check_argument_order(self, tree: Tree[Token]) -> None:
        arguments = [child for child in tree.children if isinstance(child, Tree)]
        for before, argument in itertools.pairwise(arguments):
            if before.data == "keyword" and argument.data != "keyword":
                self.problems.append(
                    error(
                        POSITIONAL_AFTER_KEYWORD,
                        "a positional argument follows a keyword argument",
                        _meta_span(argument.meta, self.line_offset),
                        "after a keyword argument",
                        "put positional arguments first, as in `sum(x, axis=0)`",
                    )
                )
                return


def _meta_span(meta: Meta, line_offset: int) -> Span:
    return Span(meta.line + line_offset, meta.column, meta.end_line + line_offset, meta.end_column)


# ---------------------------------------------------------------- Lark tree -> nodes

_Operand = nodes.Expr | Token


@v_args(meta=True, inline=True)
class _ToNodes(Transformer[Token, Any]):
    """The checked Lark tree of one logical line as `lossdsl.nodes` (spans 1-based)."""

    def __init__(self, line_offset: int) -> None:
        super().__init__()
        self.line_offset = line_offset

    def _span(self, meta: Meta) -> Span:
        return _meta_span(meta, self.line_offset)

    def _token_span(self, token: Token) -> Span:
        return token_span(token, self.line_offset)

    # statements

    def bare_expr(self, meta: Meta, value: nodes.Expr) -> _BareExpression:
        return _BareExpression(value)

    def input_stmt(
        self, meta: Meta, keyword: Token, name: Token, colon: Token, kind: Token
    ) -> nodes.InputDecl:
        return nodes.InputDecl(
            _identifier(name),
            _identifier(kind),
            self._span(meta),
            self._token_span(name),
            self._token_span(kind),
        )

    def param_stmt(
        self,
        meta: Meta,
        keyword: Token,
        name: Token,
        colon: Token | None,
        domain: nodes.Domain | None,
        equal: Token,
        default: nodes.ParamDefault,
    ) -> nodes.ParamDecl:
        return nodes.ParamDecl(
            _identifier(name), domain, default, self._span(meta), self._token_span(name)
        )

    def let_stmt(
        self, meta: Meta, keyword: Token, name: Token, equal: Token, value: nodes.Expr
    ) -> nodes.LetDecl:
        return nodes.LetDecl(_identifier(name), value, self._span(meta), self._token_span(name))

    def mask_stmt(self, meta: Meta, keyword: Token, condition: nodes.Expr) -> nodes.MaskDecl:
        return nodes.MaskDecl(condition, self._span(meta))

    def loss_stmt(
        self, meta: Meta, keyword: Token, name: Token | None, equal: Token, value: nodes.Expr
    ) -> nodes.LossDecl:
        if name is None:
            return nodes.LossDecl(None, value, self._span(meta), None)
        return nodes.LossDecl(_identifier(name), value, self._span(meta), self._token_span(name))

    # param literals

    def named_domain(self, meta: Meta, name: Token) -> nodes.NamedDomain:
        return nodes.NamedDomain(_identifier(name), self._span(meta))

    def interval(
        self,
        meta: Meta,
        opening: Token,
        low: float | None,
        comma: Token,
        high: float | None,
        closing: Token,
    ) -> nodes.Interval:
        return nodes.Interval(low, high, opening == "[", closing == "]", self._span(meta))

    def bound(self, meta: Meta, sign: Token | None, value: Token) -> float | None:
        if value.type == "INF":
            return None
        return -float(value) if sign == "-" else float(value)

    def sign(self, meta: Meta, token: Token) -> Token:
        return token

    def signed_number(self, meta: Meta, sign: Token | None, value: Token) -> nodes.Number:
        if sign == "-":
            return nodes.Number(-float(value), f"-{value}", self._span(meta))
        return nodes.Number(float(value), str(value), self._span(meta))

    def vector(self, meta: Meta, *children: nodes.Number | Token | None) -> nodes.VectorLiteral:
        values = tuple(child for child in children if isinstance(child, nodes.Number))
        return nodes.VectorLiteral(values, self._span(meta))

    # expressions

    def number(self, meta: Meta, token: Token) -> nodes.Number:
        return nodes.Number(float(token), str(token), self._span(meta))

    def name(self, meta: Meta, token: Token) -> nodes.Name:
        return nodes.Name(_identifier(token), self._span(meta))

    def sum(self, meta: Meta, first: nodes.Expr, *rest: _Operand) -> nodes.Add:
        operands, flags = _flat_operands(first, rest, "-")
        return nodes.Add(operands, flags, self._span(meta))

    def product(self, meta: Meta, first: nodes.Expr, *rest: _Operand) -> nodes.Mul:
        operands, flags = _flat_operands(first, rest, "/")
        return nodes.Mul(operands, flags, self._span(meta))

    def neg(self, meta: Meta, sign: Token, operand: nodes.Expr) -> nodes.Neg:
        return nodes.Neg(operand, self._span(meta))

    def pos(self, meta: Meta, sign: Token, operand: nodes.Expr) -> nodes.Expr:
        return operand

    def power(
        self, meta: Meta, base: nodes.Expr, operator: Token, exponent: nodes.Expr
    ) -> nodes.Pow:
        return nodes.Pow(base, exponent, self._span(meta))

    def index(
        self,
        meta: Meta,
        target: nodes.Expr,
        opening: Token,
        index: nodes.Expr | nodes.Slice | _AfterEllipsis,
        closing: Token,
    ) -> nodes.Index:
        if isinstance(index, _AfterEllipsis):
            return nodes.Index(target, index.index, self._span(meta), ellipsis=True)
        return nodes.Index(target, index, self._span(meta))

    def ellipsis_subscript(
        self, meta: Meta, ellipsis: Token, comma: Token, index: nodes.Expr | nodes.Slice
    ) -> _AfterEllipsis:
        return _AfterEllipsis(index)

    def slice(
        self,
        meta: Meta,
        start: nodes.Expr | None,
        colon: Token,
        stop: nodes.Expr | None,
        step_colon: Token | None,
        step: nodes.Expr | None,
    ) -> nodes.Slice:
        return nodes.Slice(start, stop, step, self._span(meta))

    def paren(self, meta: Meta, opening: Token, inner: nodes.Expr, closing: Token) -> nodes.Expr:
        return inner

    def call(
        self,
        meta: Meta,
        func: Token,
        opening: Token,
        arguments: list[nodes.Expr | nodes.Keyword] | None,
        closing: Token,
    ) -> nodes.Call:
        arguments = arguments or []
        return nodes.Call(
            _identifier(func),
            tuple(a for a in arguments if not isinstance(a, nodes.Keyword)),
            tuple(a for a in arguments if isinstance(a, nodes.Keyword)),
            self._span(meta),
            self._token_span(func),
        )

    def arguments(
        self, meta: Meta, *children: nodes.Expr | nodes.Keyword | Token | None
    ) -> list[nodes.Expr | nodes.Keyword]:
        return [child for child in children if child is not None and not isinstance(child, Token)]

    def keyword(self, meta: Meta, name: Token, equal: Token, value: nodes.Expr) -> nodes.Keyword:
        return nodes.Keyword(_identifier(name), value, self._span(meta), self._token_span(name))

    def comparison(
        self, meta: Meta, left: nodes.Expr, operator: Token, right: nodes.Expr
    ) -> nodes.Compare:
        op: nodes.CompareOp = operator.value
        return nodes.Compare(op, left, right, self._span(meta))

    def condition(self, meta: Meta, *children: nodes.Expr | Token) -> nodes.Logic:
        operands = tuple(child for child in children if not isinstance(child, Token))
        return nodes.Logic("or", operands, self._span(meta))

    def conjunction(self, meta: Meta, *children: nodes.Expr | Token) -> nodes.Logic:
        operands = tuple(child for child in children if not isinstance(child, Token))
        return nodes.Logic("and", operands, self._span(meta))

    def logical_not(self, meta: Meta, keyword: Token, operand: nodes.Expr) -> nodes.Logic:
        return nodes.Logic("not", (operand,), self._span(meta))

    def condition_paren(
        self, meta: Meta, opening: Token, inner: nodes.Expr, closing: Token
    ) -> nodes.Expr:
        return inner


@dataclass(frozen=True)
class _AfterEllipsis:
    """The index of `x[..., index]`, before `index` builds the node."""

    index: nodes.Expr | nodes.Slice


def _identifier(token: Token) -> str:
    """A name as the language sees it: NFKC-normalised, as Python does."""
    return normalise_identifier(str(token))


def _flat_operands(
    first: nodes.Expr, rest: tuple[_Operand, ...], inverse: str
) -> tuple[tuple[nodes.Expr, ...], tuple[bool, ...]]:
    """Operands and flags of `a op b op c ...`: (operator, operand) pairs after the first."""
    operands: list[nodes.Expr] = [first]
    flags = [False]
    for operator, operand in zip(rest[::2], rest[1::2], strict=True):
        assert not isinstance(operand, Token)
        operands.append(operand)
        flags.append(operator == inverse)
    return tuple(operands), tuple(flags)
