"""Comments that acknowledge warnings a spec means: `# lossdsl: allow W301 W302`.

Like `# noqa`, a pragma names the warning codes a spec knows it triggers and accepts (a
library spec that reproduces a Keras built-in, hazard included). Where it applies:

- in the leading comment block, or as a comment on the `loss` line or on a comment line
  right above it: to the whole spec;
- as a comment on any other line, or on a comment line right above it: to the warnings
  located on that line.

Only warnings (W codes) can be allowed: errors always stop the compile, so other codes in
a pragma are ignored. The codes follow `allow`, separated by spaces or commas; the first
other word ends them, so a reason may follow (`# lossdsl: allow W403: as Keras`). The
pipeline (`lossdsl.compiler`) drops allowed warnings from what it reports; the checks
themselves are unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from lossdsl.codes import CODES
from lossdsl.diagnostics import Diagnostic, Severity
from lossdsl.source import SourceFile

PRAGMA = re.compile(r"#\s*lossdsl\s*:\s*allow\b(?P<codes>(?:[\s,]+[A-Za-z]\d{3}\b)*)")
CODE = re.compile(r"[A-Z]\d{3}")
WARNING_CODES = frozenset(code for code, row in CODES.items() if row.severity is Severity.WARNING)
"""The codes a pragma can allow (`lossdsl.codes`): others in a pragma are ignored."""
LOSS_STATEMENT = re.compile(r"\s*loss\b")


@dataclass(frozen=True)
class Allowed:
    """The warning codes a spec allows: everywhere, and on single lines."""

    everywhere: frozenset[str]
    by_line: dict[int, frozenset[str]]

    def covers(self, diagnostic: Diagnostic) -> bool:
        if diagnostic.is_error:
            return False
        if diagnostic.code in self.everywhere:
            return True
        line = diagnostic.span.line if diagnostic.span is not None else None
        return line is not None and diagnostic.code in self.by_line.get(line, frozenset())


def allowed_warnings(source: SourceFile) -> Allowed:
    """The pragmas of a spec (see the module docstring)."""
    everywhere: set[str] = set()
    by_line: dict[int, frozenset[str]] = {}
    in_header = True
    pending: frozenset[str] = frozenset()  # from comment lines above the next statement
    for number, line in enumerate(source.lines, start=1):
        stripped = line.strip()
        codes = _pragma_codes(line)
        if stripped.startswith("#"):
            if in_header:
                everywhere |= codes
            else:
                pending |= codes
            continue
        if not stripped:
            continue
        in_header = False
        codes |= pending
        pending = frozenset()
        if LOSS_STATEMENT.match(line):
            everywhere |= codes
        elif codes:
            by_line[number] = codes
    return Allowed(frozenset(everywhere), by_line)


def _pragma_codes(line: str) -> frozenset[str]:
    start = line.find("#")
    match = PRAGMA.search(line, start) if start >= 0 else None
    if match is None:
        return frozenset()
    return frozenset(CODE.findall(match.group("codes").upper())) & WARNING_CODES


def without_allowed(
    diagnostics: Iterable[Diagnostic], source: SourceFile
) -> tuple[Diagnostic, ...]:
    """The diagnostics less the warnings the spec's pragmas allow."""
    allowed = allowed_warnings(source)
    return tuple(d for d in diagnostics if not allowed.covers(d))
