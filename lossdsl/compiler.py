"""The pipeline: parse, check, analyse domains, lower, rewrite, print, write, verify."""

from __future__ import annotations

from pathlib import Path

from lossdsl.checker import check
from lossdsl.diagnostics import LossSpecError, render_all
from lossdsl.parser import parse, read_source
from lossdsl.source import SourceFile
from lossdsl.typed import CheckedSpec


def check_source(source: SourceFile) -> CheckedSpec:
    """Parse and check a spec; raises LossSpecError with every problem found."""
    spec = parse(source)
    return check(spec)


def diagnose_file(path: Path, relative_to: Path | None = None) -> tuple[str, bool]:
    """All diagnostics of a spec file rendered as text, and whether any is an error.

    The file is named relative to `relative_to` (for golden files that do not depend on
    where the checkout lives).
    """
    name = str(path.relative_to(relative_to)) if relative_to else str(path)
    try:
        source = read_source(path.read_bytes(), name)
        checked = check_source(source)
    except LossSpecError as failure:
        return str(failure), any(d.is_error for d in failure.diagnostics)
    return render_all(checked.warnings, source), False
