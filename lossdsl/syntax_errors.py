"""Lark's failures and bad tokens in a logical line as located E1xx diagnostics with help."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from lossdsl.codes import (
    ATTRIBUTE_ACCESS,
    INVALID_NAME,
    MISPLACED_COMPARISON,
    MISSING_KEYWORD,
    STRING_LITERAL,
    UNCLOSED_BRACKET,
    UNEXPECTED_CHARACTER,
    UNEXPECTED_END,
    UNEXPECTED_TOKEN,
    UNMATCHED_BRACKET,
)
from lossdsl.diagnostics import Diagnostic, error
from lossdsl.lines import LogicalLine
from lossdsl.source import Span, normalise_identifier

# What users type for each terminal of the grammar, in the order expectations are listed.
TERMINAL_TEXT = {
    "NAME": "a name",
    "NUMBER": "a number",
    "INF": "`inf`",
    "EQUAL": "`=`",
    "COLON": "`:`",
    "COMMA": "`,`",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "LSQB": "`[`",
    "RSQB": "`]`",
    "PLUS": "`+`",
    "MINUS": "`-`",
    "STAR": "`*`",
    "SLASH": "`/`",
    "POW_OP": "`^`",
    "COMPARE_OP": "a comparison such as `<` or `!=`",
    "INPUT": "`input`",
    "PARAM": "`param`",
    "LET": "`let`",
    "MASK": "`mask`",
    "LOSS": "`loss`",
    "AND": "`and`",
    "OR": "`or`",
    "NOT": "`not`",
    "$END": "the end of the line",
}
_EXPRESSION_START = frozenset({"NAME", "NUMBER", "LPAR", "MINUS", "PLUS"})
_OPERATORS = frozenset({"PLUS", "MINUS", "STAR", "SLASH", "POW_OP"})
_CLOSING = {"(": ")", "[": "]"}
_COMPARISON = re.compile(r"[<>]|==|!=")
_LOGIC_WORD = re.compile(r"\b(?:and|or|not)\b")
_LOGIC_TOKENS = frozenset({"AND", "OR", "NOT"})
CONDITION_HELP = (
    "`and`, `or` and `not` join comparisons, as in `where(p > 0.5 and y == 1, a, b)` or "
    "`mask not (y == -1 or y == -2)`"
)
_LONE_NAME = re.compile(r"\s*([^\W\d]\w*)\s*")
_FIRST_WORD = re.compile(r"\s*(\w+)")

# The form of each statement, shown as help under an error inside it.
STATEMENT_FORMS = {
    "input": "an input is declared `input NAME: KIND`, as in `input y: onehot`",
    "param": "a param is declared `param NAME [: DOMAIN] = DEFAULT`, the default being a "
    "number or a vector such as `[1.0, 2.5]`",
    "let": "a named expression is written `let NAME = EXPR`",
    "mask": "a mask is a condition, as in `mask y != -1` or `mask y != -1 and y != -2`",
    "loss": "the loss is written `loss [NAME] = EXPR`",
}

MATRIX_HELP = (
    "there are no matrix operations: compare every sample with every other through "
    "`other(x)` (LANGUAGE.md 6.5), as in `sum(x * other(x))` for the similarity matrix or "
    "`sum(square(x - other(x)))` for the squared distances"
)
"""The help for calls of `transpose`, `matmul` and their kin (the checker's E201)."""

# Characters that are not part of the language: (message, label, help).
STRAY_CHARACTERS = {
    "$": ("unexpected character `$`", "not part of the language",
          "names are made of letters, digits and `_`"),
    "@": ("`@` is not an operator", "not an operator",
          "multiply elementwise with `*`; for products of every sample with every other, "
          "there are no matrix operations: use `other(x)` (LANGUAGE.md 6.5), as in "
          "`sum(x * other(x))` for the similarity matrix"),
    ";": ("statements are not separated by `;`", "not needed here",
          "a statement ends at the end of its line: put the next one on a new line"),
    "{": ("braces are not part of the language", "not allowed",
          "group with `( )`; a vector default is written `[1.0, 2.0]`"),
    "}": ("braces are not part of the language", "not allowed",
          "group with `( )`; a vector default is written `[1.0, 2.0]`"),
    "\\": ("`\\` does not continue a line", "not allowed",
           "a statement continues on the next line while a bracket is open: wrap it in `( )`"),
    "!": ("`!` is not an operator", "not an operator", "`!=` means not equal"),
    "&": ("`&` is not an operator", "not an operator",
          "join comparisons with `and`, as in `where(p > 0.5 and y == 1, a, b)`"),
    "|": ("`|` is not an operator", "not an operator",
          "join comparisons with `or`, as in `mask y == 0 or y == 1`"),
    "~": ("`~` is not an operator", "not an operator",
          "negate a comparison with `not`, as in `mask not y == -1`"),
    "%": ("`%` is not an operator", "not an operator",
          "the operators are `+ - * / ^` and the comparisons `< <= > >= == !=`"),
}  # fmt: skip


def syntax_errors(failure: UnexpectedInput, logical_line: LogicalLine) -> list[Diagnostic]:
    """The diagnostics for one Lark error in a logical line (plus an unclosed bracket)."""
    match failure:
        case UnexpectedToken(token=token) if token.type != "$END":
            found = _unexpected_token(failure, token, logical_line)
        case UnexpectedCharacters():
            found = _unexpected_character(failure, logical_line)
        case _:  # the end of the line ($END) or UnexpectedEOF
            found = _unexpected_end(failure, logical_line)
    if logical_line.unclosed and found.code != UNCLOSED_BRACKET:
        return [found, _unclosed_bracket(logical_line)]
    return [found]


def _statement_form(logical_line: LogicalLine) -> tuple[str, ...]:
    first_word = _FIRST_WORD.match(logical_line.text)
    keyword = first_word.group(1) if first_word else ""
    return (STATEMENT_FORMS[keyword],) if keyword in STATEMENT_FORMS else ()


def _line_span(failure: UnexpectedInput, logical_line: LogicalLine, width: int = 1) -> Span:
    return Span.point(failure.line + logical_line.first_line - 1, failure.column, width)


def _unexpected_token(
    failure: UnexpectedInput, token: Token, logical_line: LogicalLine
) -> Diagnostic:
    span = token_span(token, logical_line.first_line - 1)
    expected = _describe_expected(_acceptable(failure))
    label = f"expected {expected}" if expected else "not expected here"
    if token.type == "NAME" and not str(token).isidentifier():
        return invalid_name(token, logical_line.first_line - 1)
    this_condition = _LOGIC_WORD.split(logical_line.text[: token.start_pos])[-1]
    if token.type == "COMPARE_OP" and _COMPARISON.search(this_condition):
        return error(
            MISPLACED_COMPARISON,
            f"a second comparison `{token}`: comparisons cannot be chained",
            span,
            "the comparison before this one is complete",
            "join two comparisons with `and`, as in `mask 0 <= y and y < 10`",
        )
    if token.type in _LOGIC_TOKENS:
        return error(
            UNEXPECTED_TOKEN,
            f"`{token}` is not allowed here",
            span,
            f"`{token}` joins conditions, not values",
            "conditions go only in `where(...)`'s first argument, a reduction's `where=` and "
            "`mask` (a `let` holds values), as in `where(p > 0.5 and y == 1, a, b)`",
        )
    if token.type == "COMPARE_OP":
        return error(
            MISPLACED_COMPARISON,
            f"a comparison `{token}` is not allowed here",
            span,
            "comparisons go only in `where(...)`, `where=` and `mask`",
            "use it as the first argument of `where(COND, a, b)`, as a reduction's "
            "`where=COND`, or in a `mask COND` statement (a `let` holds values)",
        )
    if token.type in ("RPAR", "RSQB") and span in logical_line.unmatched:
        return error(
            UNMATCHED_BRACKET,
            f"unmatched `{token}`",
            span,
            "no bracket is open here",
            "remove it, or add the opening bracket it closes",
        )
    lone_name = _LONE_NAME.fullmatch(logical_line.text[: token.start_pos])
    if token.type in ("EQUAL", "COLON") and lone_name:
        return error(
            MISSING_KEYWORD,
            "a statement must start with `input`, `param`, `let`, `mask` or `loss`",
            Span.point(logical_line.first_line, lone_name.start(1) + 1, len(lone_name.group(1))),
            "no keyword before this name",
            "write `let NAME = EXPR` for a named expression, `param NAME = 1.0` for a param, "
            "or `input NAME: KIND` for an input",
        )
    after_logic_word = _LOGIC_WORD.search(logical_line.text[: token.start_pos])
    condition_help = (
        (CONDITION_HELP,) if after_logic_word and "COMPARE_OP" in _acceptable(failure) else ()
    )
    return error(
        UNEXPECTED_TOKEN,
        f"unexpected {_describe_token(token)}",
        span,
        label,
        *(condition_help or _statement_form(logical_line)),
    )


def _unexpected_character(failure: UnexpectedCharacters, logical_line: LogicalLine) -> Diagnostic:
    text = logical_line.text
    position = failure.pos_in_stream
    assert position is not None
    character = text[position]
    span = _line_span(failure, logical_line)
    if character in "\"'":
        rest_of_line = text[position:].split("\n", 1)[0]
        end = rest_of_line.find(character, 1)
        width = end + 1 if end != -1 else len(rest_of_line)
        return error(
            STRING_LITERAL,
            "the language has no strings",
            _line_span(failure, logical_line, width),
            "a string",
            "names, numbers and `axis=` values are written without quotes, as in `axis=sample`",
        )
    if character == ".":
        return error(
            ATTRIBUTE_ACCESS,
            "there is no attribute access",
            span,
            "`.` is not an operator",
            _attribute_help(text, position),
        )
    if character in STRAY_CHARACTERS:
        message, label, help_line = STRAY_CHARACTERS[character]
        return error(UNEXPECTED_CHARACTER, message, span, label, help_line)
    if character.isprintable() and not character.isspace():
        return error(
            UNEXPECTED_CHARACTER,
            f"unexpected character `{character}`",
            span,
            "not part of the language",
            *_statement_form(logical_line),
        )
    return error(
        UNEXPECTED_CHARACTER,
        f"unexpected character {_code_point(character)}",
        span,
        "an invisible or unusual character",
        "retype this part of the line with ordinary spaces",
    )


def _attribute_help(text: str, position: int) -> str:
    before = re.search(r"[^\W\d]\w*$", text[:position])
    after = re.match(r"[^\W\d]\w*", text[position + 1 :])
    if before and after:
        return (
            f"call a function instead: write `{after.group()}({before.group()})`, "
            f"not `{before.group()}.{after.group()}`"
        )
    return "call a function instead, as in `sum(p)`"


def _code_point(character: str) -> str:
    name = unicodedata.name(character, "")
    return f"U+{ord(character):04X}" + (f" ({name})" if name else "")


def _unexpected_end(failure: UnexpectedInput, logical_line: LogicalLine) -> Diagnostic:
    if logical_line.unclosed:
        return _unclosed_bracket(logical_line)
    expected = _describe_expected(_acceptable(failure))
    return error(
        UNEXPECTED_END,
        "the statement ends too early",
        _end_span(logical_line),
        f"expected {expected}" if expected else "incomplete",
        *_statement_form(logical_line),
    )


def _unclosed_bracket(logical_line: LogicalLine) -> Diagnostic:
    opening = logical_line.unclosed[-1]
    bracket = logical_line.text.split("\n")[opening.line - logical_line.first_line][
        opening.column - 1
    ]
    return error(
        UNCLOSED_BRACKET,
        f"`{bracket}` is never closed",
        opening,
        "this bracket is not closed",
        f"add the matching `{_CLOSING[bracket]}`; a statement continues on the next lines "
        "only while a bracket is open",
    )


def _end_span(logical_line: LogicalLine) -> Span:
    """A point just after the last code (not comment) of a logical line."""
    lines = logical_line.text.split("\n")
    for index in range(len(lines) - 1, -1, -1):
        code = lines[index].split("#", 1)[0].rstrip()
        if code:
            return Span.point(logical_line.first_line + index, len(code) + 1)
    return Span.point(logical_line.first_line, 1)


def _acceptable(failure: UnexpectedInput) -> set[str]:
    """The terminals the parser could have taken where it failed."""
    interactive_parser = getattr(failure, "interactive_parser", None)
    if interactive_parser is not None:
        return set(interactive_parser.accepts())
    expected = getattr(failure, "expected", None) or set()
    return {"$END" if name == "<END-OF-FILE>" else name for name in expected}


def _describe_token(token: Token) -> str:
    match token.type:
        case "NAME":
            return f"name `{token}`"
        case "NUMBER":
            return f"number `{token}`"
        case "INPUT" | "PARAM" | "LET" | "MASK" | "LOSS" | "INF":
            return f"keyword `{token}`"
        case _:
            return f"`{token}`"


def _describe_expected(expected: Iterable[str]) -> str:
    """What the parser wanted, in users' words: `an expression`, `` `)` or `,` ``..."""
    remaining = set(expected)
    parts: list[str] = []
    if remaining >= _EXPRESSION_START:
        parts.append("an expression")
        remaining -= _EXPRESSION_START
    if "COMPARE_OP" in remaining:
        parts.append(TERMINAL_TEXT["COMPARE_OP"])
        remaining -= _OPERATORS | {"COMPARE_OP", "LSQB", "LPAR"}
    elif {"STAR", "SLASH"} <= remaining:
        parts.append("an operator")
        remaining -= _OPERATORS | {"LSQB", "LPAR"}
    if "NUMBER" in remaining:
        remaining -= {"MINUS", "PLUS"}
    parts.extend(TERMINAL_TEXT[name] for name in TERMINAL_TEXT if name in remaining)
    return _join_alternatives(parts)


def _join_alternatives(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def invalid_name(token: Token, line_offset: int) -> Diagnostic:
    """E111 for a NAME token that Python would not accept as an identifier (`x²`)."""
    text = str(token)
    bad = next((c for c in text if not ("a" + c).isidentifier()), text[0])
    power_help = (
        (f"for a power, write `^{normalise_identifier(bad)}`",)
        if normalise_identifier(bad).isdigit()
        else ()
    )
    return error(
        INVALID_NAME,
        f"`{text}` is not a valid name",
        token_span(token, line_offset),
        f"`{bad}` cannot be part of a name",
        "names follow Python's rules: letters, digits and `_`, not starting with a digit",
        *power_help,
    )


def token_span(token: Token, line_offset: int) -> Span:
    assert token.line is not None and token.column is not None
    assert token.end_line is not None and token.end_column is not None
    return Span(
        token.line + line_offset, token.column, token.end_line + line_offset, token.end_column
    )
