"""The public Python API: `compile`, `compile_file` and `load` (LANGUAGE.md section 4)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from lossdsl.compiler import CompiledLoss, compile_source
from lossdsl.diagnostics import LossSpecWarning, render
from lossdsl.parser import read_source
from lossdsl.source import SourceFile

SPEC_SUFFIX = ".loss"


def compile(source_text: str, *, verify: bool = True, jit_compile: bool = False) -> CompiledLoss:
    """Compile spec source text (a whole spec, or a bare loss expression).

    Raises LossSpecError with every problem found; warnings go through `warnings.warn`
    as `LossSpecWarning` and are kept in `CompiledLoss.diagnostics`.
    """
    return _compile(SourceFile.from_text(source_text), verify, jit_compile)


def compile_file(
    path: str | os.PathLike[str], *, verify: bool = True, jit_compile: bool = False
) -> CompiledLoss:
    """Compile a `.loss` file; its stem names the loss unless the spec names it."""
    return _compile(read_spec_file(Path(path)), verify, jit_compile)


def load(
    spec: str | os.PathLike[str],
    /,
    *,
    reduction: str | None = "sum_over_batch_size",
    name: str | None = None,
    dtype: Any = None,
    verify: bool = True,
    jit_compile: bool = False,
    **params: Any,
) -> Any:
    """A Keras loss (`lossdsl.SpecLoss`) compiled from a spec, with params overridden.

    `spec` is a `pathlib.Path`, a string naming a `.loss` file, or source text. Unknown
    param names and values outside a param's domain raise a Keras-style ValueError.
    Compiled and verified specs are cached, so loading one again is quick.
    """
    from lossdsl.spec_loss import SpecLoss  # imports Keras, so not at `import lossdsl`

    source = resolve_spec(spec)
    return SpecLoss(
        source.text,
        params,
        spec_file=None if source.name.startswith("<") else source.name,
        reduction=reduction,
        name=name,
        dtype=dtype,
        verify=verify,
        jit_compile=jit_compile,
    )


def resolve_spec(spec: str | os.PathLike[str]) -> SourceFile:
    """The source a `load` argument means: a file when it names one, else source text.

    A string ending in `.loss` on a single line is always a path, so a mistyped file name
    is reported as a missing file rather than parsed as a spec.
    """
    if isinstance(spec, os.PathLike):
        return read_spec_file(Path(spec))
    looks_like_path = "\n" not in spec and spec.strip().endswith(SPEC_SUFFIX)
    if looks_like_path or ("\n" not in spec and names_a_file(spec)):
        return read_spec_file(Path(spec))
    return SourceFile.from_text(spec)


def names_a_file(text: str) -> bool:
    """Whether `text` is the path of an existing file; a text the OS cannot take as a
    path (too long, a NUL) is not one."""
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


def read_spec_file(path: Path) -> SourceFile:
    """A spec file's source (OSError when unreadable, LossSpecError when not UTF-8)."""
    return read_source(path.read_bytes(), str(path))


def _compile(source: SourceFile, verify: bool, jit_compile: bool) -> CompiledLoss:
    compiled = compile_source(source, verify=verify, jit_compile=jit_compile)
    for diagnostic in compiled.diagnostics:
        warnings.warn(render(diagnostic, source), LossSpecWarning, stacklevel=3)
    return compiled
