"""Source text and positions: a spec's file name, its lines, and 1-based spans into them."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, order=True)
class Span:
    """A region of a source file: 1-based line and column, end column exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int

    @staticmethod
    def point(line: int, column: int, width: int = 1) -> Span:
        """A span of `width` characters starting at line:column."""
        return Span(line, column, line, column + width)

    def join(self, other: Span) -> Span:
        """The smallest span covering both."""
        start = min((self.line, self.column), (other.line, other.column))
        end = max((self.end_line, self.end_column), (other.end_line, other.end_column))
        return Span(start[0], start[1], end[0], end[1])


@dataclass(frozen=True)
class SourceFile:
    """A spec's text (newlines normalised to LF) and the name diagnostics show for it.

    The name is kept printable (`printable_name`): a file name with a newline, a control
    character or bytes that are not UTF-8 is shown escaped wherever it appears.
    """

    name: str
    text: str
    lines: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", printable_name(self.name))
        object.__setattr__(self, "lines", tuple(self.text.split("\n")))

    @staticmethod
    def from_text(text: str, name: str = "<string>") -> SourceFile:
        """Source text given directly, with CRLF and CR line ends made LF."""
        return SourceFile(name, normalise_newlines(text))

    @property
    def stem(self) -> str:
        """The file name without directory and extension, made an identifier.

        `loss` for a source string; characters that cannot stand in a Python identifier
        become `_` (`focal-loss.loss` -> `focal_loss`), so the stem can name the loss.
        """
        if self.name.startswith("<"):
            return "loss"
        stem = normalise_identifier(Path(self.name).stem)
        stem = "".join(c if (c + "x").isidentifier() or c.isdigit() else "_" for c in stem)
        if not stem.isidentifier():
            stem = "loss_" + stem
        return stem

    def line_text(self, line: int) -> str:
        """The text of a 1-based line, or '' past the end."""
        if 1 <= line <= len(self.lines):
            return self.lines[line - 1]
        return ""

    def end_span(self) -> Span:
        """A one-character span just past the last non-empty line, for 'unexpected end'."""
        for index in range(len(self.lines), 0, -1):
            text = self.lines[index - 1]
            if text.strip():
                return Span.point(index, len(text) + 1)
        return Span.point(1, 1)


def printable_name(name: str) -> str:
    """A file name with every character that is not printable escaped, as `repr` does.

    A byte that was not UTF-8 (a lone surrogate from `os.fsdecode`'s surrogateescape)
    is shown as the byte, `\\xff`; a newline as `\\n`. Printable names, backslashes
    included, are unchanged, so the function is idempotent: a name saved in a config and
    read back shows the same.
    """
    return "".join(char if char.isprintable() else escaped_char(char) for char in name)


def escaped_char(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for the byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    return repr(char)[1:-1]


def normalise_newlines(text: str) -> str:
    """CRLF and lone CR become LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def normalise_identifier(name: str) -> str:
    """An identifier as Python sees it: NFKC-normalised."""
    return unicodedata.normalize("NFKC", name)
