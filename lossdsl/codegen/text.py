"""Python source text for generated modules: line length, wrapping, literals, names."""

from __future__ import annotations

import ast
import math
import textwrap
from collections.abc import Iterable, Sequence

LINE_LENGTH = 88
"""The generated module's line length, black's and ruff's default: where the writer breaks
signatures and calls, and the layout its statements."""

INDENT = "    "


def wrap(text: str, width: int, indent: str = "", hanging: str = "") -> list[str]:
    """A paragraph broken into lines of at most `width` characters (words kept whole)."""
    return textwrap.wrap(
        text,
        width,
        initial_indent=indent,
        subsequent_indent=hanging,
        break_long_words=False,
        break_on_hyphens=False,
    )


def function_summary(text: str) -> list[str]:
    """A function docstring's first paragraph in lines that fit after its indentation and
    opening quotes."""
    return wrap(text, LINE_LENGTH - len(INDENT) - len('"""'))


def doc_section(title: str, entries: Sequence[str], docstring_indent: int) -> list[str]:
    """A Google-style docstring section (`Args:`), each entry wrapped with a hanging indent."""
    width = LINE_LENGTH - docstring_indent
    lines = [f"{title}:"]
    for entry in entries:
        lines += wrap(entry, width, INDENT, INDENT * 2)
    return lines


def indent_block(text: str, indent: str) -> str:
    return "\n".join(indent + line if line else "" for line in text.split("\n"))


def indent_lines(lines: Iterable[str], indent: str) -> list[str]:
    """Every line of every (possibly multi-line) statement, indented."""
    return [indent + line if line else "" for text in lines for line in text.split("\n")]


def wrapped_call(
    head: str,
    arguments: Sequence[str],
    tail: str,
    indent: str,
    outer: int = 0,
    tuple_of: bool = False,
) -> list[str]:
    """`head(a, b, c)tail` on one line if it fits, else one argument per line (black style).

    `outer`: the columns the caller indents the lines by afterwards (a method's body).
    `tuple_of`: the parentheses make a tuple, so one argument takes a comma (`(a,)`).
    """
    inside = ", ".join(arguments) + ("," if tuple_of and len(arguments) == 1 else "")
    single = f"{head}({inside}){tail}"
    if outer + len(single) <= LINE_LENGTH:
        return [single]
    return [
        f"{head}(",
        *(f"{indent}{INDENT}{argument}," for argument in arguments),
        f"{indent}){tail}",
    ]


def escape_docstring(text: str) -> str:
    """Text as the inside of a `\"\"\"` literal: nothing in it can end the string."""
    pieces: list[str] = []
    quotes = 0
    for char in text:
        if char == '"':
            if quotes == 2:
                pieces.append('\\"')
                quotes = 0
            else:
                pieces.append('"')
                quotes += 1
            continue
        quotes = 0
        if char == "\\":
            pieces.append("\\\\")
        elif char in "\n\t" or char.isprintable():
            pieces.append(char)
        else:
            pieces.append(char_escape(char))
    escaped = "".join(pieces)
    if quotes:  # a quote just before the closing delimiter would end the string early
        escaped = escaped[:-quotes] + '\\"' * quotes
    return escaped


def char_escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def string_literal(text: str) -> str:
    """A double-quoted Python string literal for `text`."""
    escaped = "".join(
        "\\\\"
        if char == "\\"
        else '\\"'
        if char == '"'
        else char
        if char.isprintable()
        else char_escape(char)
        for char in text
    )
    return f'"{escaped}"'


def default_literal(default: float | tuple[float, ...]) -> str:
    if isinstance(default, tuple):
        inside = ", ".join(float_literal(value) for value in default)
        return f"({inside},)" if len(default) == 1 else f"({inside})"
    return float_literal(default)


def float_literal(value: float) -> str:
    return repr(float(value))


def bound_literal(value: float) -> str:
    if math.isinf(value):
        return 'float("inf")' if value > 0 else '-float("inf")'
    return float_literal(value)


def names_in(code: str) -> set[str]:
    """Every identifier a statement or expression uses or binds."""
    if not code:
        return set()
    return {node.id for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Name)}


def free_name(base: str, taken: set[str]) -> str:
    name = base
    while name in taken:
        name += "_"
    return name


def statements_needed(statements: Sequence[str], expression: str) -> list[str]:
    """The statements `expression` depends on, in order (the others are left out).

    A statement that is not a plain assignment is always kept.
    """
    needed = names_in(expression)
    kept: list[str] = []
    for statement in reversed(statements):
        tree = ast.parse(statement)
        targets = {
            node.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
        }
        is_assignment = all(isinstance(node, ast.Assign) for node in tree.body)
        if not is_assignment or targets & needed:
            kept.append(statement)
            needed |= names_in(statement)
    return kept[::-1]
