"""How diagnostics quote a spec: the text under a span, numbers as a spec writes them."""

from __future__ import annotations

import math

from lossdsl.source import SourceFile, Span


def format_number(value: float) -> str:
    """A number as short as Python writes it, without a trailing `.0` (`1`, `0.9999999`)."""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = repr(value + 0.0)
    return text.removesuffix(".0")


def source_text(source: SourceFile, span: Span) -> str:
    """The spec text a span covers, on one line."""
    if span.line == span.end_line:
        return source.line_text(span.line)[span.column - 1 : span.end_column - 1]
    parts = [source.line_text(span.line)[span.column - 1 :]]
    parts += [source.line_text(line) for line in range(span.line + 1, span.end_line)]
    parts.append(source.line_text(span.end_line)[: span.end_column - 1])
    return " ".join(part.strip() for part in parts)
