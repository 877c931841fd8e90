"""Spec text to logical lines: a statement continues while a bracket is open; the leading
comment block is the spec's docstring."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lossdsl.source import SourceFile, Span


@dataclass(frozen=True)
class LogicalLine:
    """One statement's text: whole physical lines `first_line`.. joined by newlines.

    `unclosed` holds the brackets still open at its end (outermost first) and
    `unmatched` the closing brackets that had no opening one.
    """

    first_line: int
    text: str
    unclosed: tuple[Span, ...]
    unmatched: tuple[Span, ...]


_BRACKET = re.compile(r"[()\[\]]")
# A line that starts (unindented) like a statement ends a logical line left open by an
# unclosed bracket, so that one missing `)` does not swallow the rest of the file.
_STATEMENT_START = re.compile(r"(?:input|param|let|mask|loss)(?:\s+[^\W\d]|\s*=(?!=))")


def split_logical_lines(source: SourceFile) -> tuple[list[LogicalLine], str]:
    """The spec's logical lines and its docstring (the comment block before them)."""
    logical_lines: list[LogicalLine] = []
    doc_lines: list[str] = []
    start = 0  # 1-based first line of the logical line being read; 0 when none
    open_brackets: list[Span] = []
    unmatched: list[Span] = []

    def finish(last_line: int) -> None:
        text = "\n".join(source.lines[start - 1 : last_line])
        logical_lines.append(LogicalLine(start, text, tuple(open_brackets), tuple(unmatched)))
        open_brackets.clear()
        unmatched.clear()

    for number, line_text in enumerate(source.lines, start=1):
        code = line_text.split("#", 1)[0]
        if start and open_brackets and _STATEMENT_START.match(line_text):
            finish(number - 1)
            start = 0
        if not start:
            if not code.strip():
                if not logical_lines:
                    doc_lines.append(_comment_text(line_text))
                continue
            start = number
        for match in _BRACKET.finditer(code):
            position = Span.point(number, match.start() + 1)
            if match.group() in "([":
                open_brackets.append(position)
            elif open_brackets:
                open_brackets.pop()
            else:
                unmatched.append(position)
        if not open_brackets:
            finish(number)
            start = 0
    if start:
        finish(len(source.lines))
    return logical_lines, "\n".join(doc_lines).strip("\n")


def _comment_text(line_text: str) -> str:
    """A docstring line from a comment line: `#` and one following space removed."""
    text = line_text.strip()
    if text.startswith("#"):
        text = text[1:]
        if text.startswith(" "):
            text = text[1:]
    return text.rstrip()
