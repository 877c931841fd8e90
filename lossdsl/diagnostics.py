"""Diagnostics as frozen data, the error that carries them, and the one renderer."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from lossdsl.source import SourceFile, Span


class Severity(Enum):
    """How bad a diagnostic is: errors stop the compile, warnings do not."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a spec: what, where, and how to fix it.

    `code` is stable (E1xx syntax, E2xx names/arity/declarations, E3xx roles and axes,
    E4xx domains, E5xx differentiability, E9xx verification; W3xx/W4xx warnings).
    `label` is the short text printed under the caret run; `help` lines follow `= help:`.
    """

    severity: Severity
    code: str
    message: str
    span: Span | None
    label: str = ""
    help: tuple[str, ...] = ()

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


Report = Callable[[Diagnostic], None]
"""Where a stage sends each diagnostic it finds (the checker's list)."""


def error(
    code: str, message: str, span: Span | None, label: str = "", *help_lines: str
) -> Diagnostic:
    """An error diagnostic."""
    return Diagnostic(Severity.ERROR, code, message, span, label, tuple(help_lines))


def warning(
    code: str, message: str, span: Span | None, label: str = "", *help_lines: str
) -> Diagnostic:
    """A warning diagnostic."""
    return Diagnostic(Severity.WARNING, code, message, span, label, tuple(help_lines))


def similar_name_help(name: str, candidates: Iterable[str], what: str = "name") -> tuple[str, ...]:
    """A help line naming the closest candidate, if any is close (difflib)."""
    matches = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    if not matches:
        return ()
    return (f"a {what} with a similar name exists: `{matches[0]}`",)


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Diagnostics in source order (those without a span last), stable otherwise."""

    def key(diagnostic: Diagnostic) -> tuple[int, int, int]:
        if diagnostic.span is None:
            return (1, 0, 0)
        return (0, diagnostic.span.line, diagnostic.span.column)

    return sorted(diagnostics, key=key)


def render(diagnostic: Diagnostic, source: SourceFile) -> str:
    """One diagnostic as text: clang's first line, rustc's body.

    ```
    focal.loss:9:19: error[E201]: unknown function `lg`
      9 | loss focal = mean(lg(p))
        |                   ^^ not a built-in
      = help: a built-in with a similar name exists: `log`
    ```
    """
    severity = diagnostic.severity.value
    span = diagnostic.span
    if span is None:
        lines = [f"{source.name}: {severity}[{diagnostic.code}]: {diagnostic.message}"]
        lines.extend(f"  = help: {text}" for text in diagnostic.help)
        return "\n".join(lines)
    header = f"{source.name}:{span.line}:{span.column}: {severity}[{diagnostic.code}]: "
    lines = [header + diagnostic.message]
    line_text = source.line_text(span.line).expandtabs(1)
    gutter = str(span.line)
    pad = " " * len(gutter)
    lines.append(f"  {gutter} | {line_text}".rstrip())
    if span.end_line == span.line:
        width = max(1, span.end_column - span.column)
    else:
        width = max(1, len(line_text) - span.column + 1)
    caret_line = " " * (span.column - 1) + "^" * width
    if diagnostic.label:
        caret_line += " " + diagnostic.label
    lines.append(f"  {pad} | {caret_line}")
    lines.extend(f"  {pad} = help: {text}" for text in diagnostic.help)
    return "\n".join(lines)


def render_all(diagnostics: Sequence[Diagnostic], source: SourceFile) -> str:
    """Every diagnostic of a file, in source order, separated by blank lines."""
    return "\n\n".join(render(d, source) for d in sort_diagnostics(diagnostics))


class LossSpecError(Exception):
    """A spec has errors; carries every diagnostic found, `str()` is the rendered text."""

    def __init__(self, diagnostics: Sequence[Diagnostic], source: SourceFile) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = tuple(sort_diagnostics(diagnostics))
        self.source = source
        super().__init__(render_all(self.diagnostics, source))

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.is_error)


class LossSpecWarning(UserWarning):
    """A spec compiled but has a problem worth knowing (W3xx roles/batch, W4xx domains)."""


def raise_if_errors(diagnostics: Sequence[Diagnostic], source: SourceFile) -> None:
    """Raise LossSpecError with all diagnostics if any of them is an error."""
    if any(d.is_error for d in diagnostics):
        raise LossSpecError(diagnostics, source)
