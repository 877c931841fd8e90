"""The pipeline: parse, check, analyse domains, lower, rewrite, print, write, load, verify."""

from __future__ import annotations

import types
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sympy

from lossdsl.analysis.checks import check_domains
from lossdsl.checker import check
from lossdsl.codegen.names import mean_function_name
from lossdsl.codegen.printer import print_body
from lossdsl.codegen.targets import DEFAULT_TARGET
from lossdsl.codegen.writer import (
    function_names,
    with_mask_function_name,
    write_module,
    writes_a_mean,
)
from lossdsl.diagnostics import Diagnostic, LossSpecError, render_all, sort_diagnostics
from lossdsl.parser import parse, read_source
from lossdsl.pragmas import without_allowed
from lossdsl.runtime import (
    load_generated_module,
    module_name_for,
    require_backend,
    untraced_copy,
    untraced_values,
)
from lossdsl.source import SourceFile
from lossdsl.symbolic.gradient import cancellation_diagnostics, latex
from lossdsl.symbolic.loss import SymbolicLoss
from lossdsl.symbolic.lower import lower
from lossdsl.typed import CheckedSpec
from lossdsl.verification.driver import verify_module


@dataclass(frozen=True)
class CompiledLoss:
    """A compiled spec: the generated module, its Keras class, and what was found on the way.

    `params` maps each param's spec name to its default (a float, or a tuple of floats for
    a per-class vector). `diagnostics` holds the warnings. `sympy` and `latex` show the
    whole loss, simplified; `symbolic.result` is what the Keras `call` returns. `target`
    is the Keras backend the module was written for ("tensorflow", "jax" or "torch").
    """

    source: SourceFile
    checked: CheckedSpec
    symbolic: SymbolicLoss
    python_source: str
    module: types.ModuleType
    diagnostics: tuple[Diagnostic, ...]
    target: str = DEFAULT_TARGET

    @property
    def loss_name(self) -> str:
        return self.checked.loss_name

    @property
    def params(self) -> dict[str, float | tuple[float, ...]]:
        return {param.name: param.default for param in self.checked.params}

    @property
    def loss_class(self) -> type:
        """The generated `keras.losses.Loss` subclass; BackendError when Keras runs another
        backend than the module's target."""
        require_backend(self.target)
        return getattr(self.module, function_names(self.loss_name)[2])

    @property
    def per_sample_function(self) -> Any:
        """The generated function computing the loss before Keras's reduction (TensorFlow:
        a `@tf.function`; JAX and PyTorch: a plain function)."""
        return getattr(self.module, function_names(self.loss_name)[0])

    @property
    def sympy(self) -> sympy.Expr:
        return self.symbolic.loss

    @property
    def latex(self) -> str:
        return latex(self.symbolic.loss)


@dataclass(frozen=True)
class GeneratedSource:
    """A spec through every stage that needs no TensorFlow: checked, lowered, written."""

    source: SourceFile
    checked: CheckedSpec
    symbolic: SymbolicLoss
    python_source: str
    diagnostics: tuple[Diagnostic, ...]
    jit_compile: bool
    target: str = DEFAULT_TARGET


def compile_source(
    source: SourceFile,
    *,
    verify: bool = True,
    jit_compile: bool = False,
    target: str = DEFAULT_TARGET,
) -> CompiledLoss:
    """Run the whole pipeline on a spec; raises LossSpecError with every problem found.

    With `verify`, the generated code is checked against SymPy's exact value and gradient
    (E9xx on disagreement), run on `target`. The warnings of every stage are in
    `diagnostics`.
    """
    generated = generate(source, jit_compile=jit_compile, target=target)
    return load_generated(generated, verify=verify)


def generate(
    source: SourceFile, *, jit_compile: bool = False, target: str = DEFAULT_TARGET
) -> GeneratedSource:
    """Parse, check, analyse domains, lower, rewrite, print and write a spec's module for
    the Keras backend `target` ("tensorflow", "jax" or "torch").

    Raises LossSpecError with every problem found; imports neither Keras nor any backend.
    """
    checked = check_source(source)
    found = list(checked.warnings)
    found += domain_warnings(checked)
    symbolic = lower(checked)
    cancelled = cancellation_diagnostics(
        checked, symbolic.result, symbolic.symbols[checked.y_pred.name]
    )
    if cancelled:
        raise LossSpecError(unique(without_allowed([*found, *cancelled], source)), source)
    body = print_body(symbolic, jit_compile=jit_compile, target=target)
    mean_body = None
    if writes_a_mean(symbolic, target, jit_compile):
        mean_body = print_body(symbolic, jit_compile=jit_compile, target=target, mean=True)
    python_source = write_module(
        checked, symbolic, body, jit_compile=jit_compile, target=target, mean_body=mean_body
    )
    return GeneratedSource(
        source=source,
        checked=checked,
        symbolic=symbolic,
        python_source=python_source,
        diagnostics=unique(without_allowed([*found, *symbolic.warnings], source)),
        jit_compile=jit_compile,
        target=target,
    )


def load_generated(generated: GeneratedSource, *, verify: bool = True) -> CompiledLoss:
    """Execute the generated module once and, with `verify`, check it (E9xx raise).

    The verifier runs an untraced copy of the function the Keras class calls (the
    per-sample function, or for a spec with a mask the values of `_<name>_with_mask`), so
    its float64 traces are not in the functions the user gets, and the Keras class
    registered is the user's.
    Imports the target's framework (and Keras, which a TensorFlow module needs and the
    others use when it is installed), whatever backend Keras runs.
    """
    checked = generated.checked
    target = generated.target
    module = load_generated_module(
        generated.python_source, module_name_for(checked.loss_name, generated.python_source)
    )
    if verify:
        jit_compile = generated.jit_compile
        if generated.symbolic.mask is None:
            function = getattr(module, function_names(checked.loss_name)[0])
            checked_copy = untraced_copy(function, jit_compile=jit_compile, target=target)
        else:
            function = getattr(module, with_mask_function_name(checked.loss_name))
            checked_copy = untraced_values(function, jit_compile=jit_compile, target=target)
        # the module's <name>_mean where the writer wrote one (writes_a_mean), run through
        # its Python function, which keeps no traces
        mean = getattr(module, mean_function_name(checked.loss_name), None)
        errors = verify_module(generated.symbolic, checked_copy, target, mean)
        if errors:
            raise LossSpecError(generated.diagnostics + errors, generated.source)
    return CompiledLoss(
        source=generated.source,
        checked=checked,
        symbolic=generated.symbolic,
        python_source=generated.python_source,
        module=module,
        diagnostics=generated.diagnostics,
        target=target,
    )


def check_source(source: SourceFile) -> CheckedSpec:
    """Parse and check a spec; raises LossSpecError with every problem found."""
    spec = parse(source)
    return check(spec)


def domain_warnings(checked: CheckedSpec) -> tuple[Diagnostic, ...]:
    """The domain and differentiability warnings; errors raise together with the checker's."""
    try:
        return check_domains(checked)
    except LossSpecError as failure:
        raise LossSpecError(
            unique(without_allowed([*checked.warnings, *failure.diagnostics], checked.source)),
            checked.source,
        ) from None


def unique(diagnostics: Iterable[Diagnostic]) -> tuple[Diagnostic, ...]:
    """Diagnostics in source order, each once."""
    return tuple(sort_diagnostics(dict.fromkeys(diagnostics)))


def diagnose_file(path: Path, relative_to: Path | None = None) -> tuple[str, bool]:
    """All diagnostics of a spec file rendered as text, and whether any is an error.

    Runs parsing, the checks and the domain checks (no TensorFlow). The file is named
    relative to `relative_to` (for golden files that do not depend on where the checkout
    lives).
    """
    name = str(path.relative_to(relative_to)) if relative_to else str(path)
    try:
        source = read_source(path.read_bytes(), name)
        checked = check_source(source)
        found = unique(without_allowed([*checked.warnings, *domain_warnings(checked)], source))
    except LossSpecError as failure:
        return str(failure), any(d.is_error for d in failure.diagnostics)
    return render_all(found, source), False
