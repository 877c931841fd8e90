"""The public Python API: `compile`, `compile_file` and `load` (LANGUAGE.md section 4)."""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Any

from lossdsl.cache import check_param_names, load_spec
from lossdsl.codegen.names import function_names
from lossdsl.compiler import CompiledLoss, compile_source
from lossdsl.diagnostics import LossSpecWarning, render, sort_diagnostics
from lossdsl.parser import read_source
from lossdsl.runtime import resolve_target
from lossdsl.source import SourceFile

SPEC_SUFFIX = ".loss"

FRAMEWORKS = ("keras", "jax", "torch")
"""What `load(framework=...)` can return: a Keras loss, a JAX function, a `torch.nn.Module`."""

KERAS_DEFAULT_REDUCTION = "sum_over_batch_size"

TORCH_REDUCTIONS = {KERAS_DEFAULT_REDUCTION: "mean", None: "none"}
"""Keras's names of the reductions a `torch.nn` loss spells otherwise."""


def compile(
    source_text: str,
    *,
    verify: bool = True,
    jit_compile: bool = False,
    target: str | None = None,
) -> CompiledLoss:
    """Compile spec source text (a whole spec, or a bare loss expression).

    `target` is the backend the module is written for ("tensorflow", "jax", "torch"); None
    means the backend Keras runs. Raises LossSpecError with every problem found; warnings
    go through `warnings.warn` as `LossSpecWarning` and are kept in
    `CompiledLoss.diagnostics`.
    """
    return _compile(SourceFile.from_text(source_text), verify, jit_compile, target)


def compile_file(
    path: str | os.PathLike[str],
    *,
    verify: bool = True,
    jit_compile: bool = False,
    target: str | None = None,
) -> CompiledLoss:
    """Compile a `.loss` file; its stem names the loss unless the spec names it."""
    return _compile(read_spec_file(Path(path)), verify, jit_compile, target)


def load(
    spec: str | os.PathLike[str],
    /,
    *,
    reduction: str | None = KERAS_DEFAULT_REDUCTION,
    name: str | None = None,
    dtype: Any = None,
    verify: bool = True,
    jit_compile: bool = False,
    framework: str = "keras",
    **params: Any,
) -> Any:
    """A loss compiled from a spec, with params overridden.

    `spec` is a `pathlib.Path`, a string naming a `.loss` file, or source text. Unknown
    param names and values outside a param's domain raise a Keras-style ValueError.
    Compiled and verified specs are cached, so loading one again is quick.

    `framework="keras"` (the default) gives a Keras loss (`lossdsl.SpecLoss`) for the
    backend Keras runs. `framework="torch"` gives the module's `torch.nn.Module` (its
    `reduction` is "mean", "sum" or "none"; Keras's "sum_over_batch_size" and None mean
    "mean" and "none"), `framework="jax"` its plain JAX function of `(y_true, y_pred)`
    with the params bound, returning per-example losses as optax's losses do; neither
    imports Keras's backend nor takes `name` or `dtype`.
    """
    source = resolve_spec(spec)
    if framework != "keras":
        return load_native(
            source,
            framework,
            reduction=reduction,
            keras_arguments={"name": name, "dtype": dtype},
            verify=verify,
            jit_compile=jit_compile,
            params=params,
        )
    from lossdsl.spec_loss import SpecLoss  # imports Keras, so not at `import lossdsl`

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


def load_native(
    source: SourceFile,
    framework: str,
    *,
    reduction: str | None,
    keras_arguments: dict[str, Any],
    verify: bool,
    jit_compile: bool,
    params: dict[str, Any],
) -> Any:
    """`load` for a framework's own API: the torch module's instance or the JAX function."""
    if framework not in FRAMEWORKS:
        known = ", ".join(repr(name) for name in FRAMEWORKS)
        raise ValueError(f"Invalid framework {framework!r}. Expected one of {known}.")
    given = [key for key, value in keras_arguments.items() if value is not None]
    if given:
        raise ValueError(
            f"`{given[0]}` is an argument of Keras losses; framework={framework!r} takes none."
        )
    if framework == "jax" and reduction not in (KERAS_DEFAULT_REDUCTION, None, "none"):
        raise ValueError(
            f"Invalid reduction {reduction!r} for framework='jax': its function returns "
            "per-example losses (as optax's losses do); reduce them with jnp.mean or jnp.sum."
        )
    loaded = load_spec(source, target=framework, verify=verify, jit_compile=jit_compile)
    check_param_names(loaded, params)
    for diagnostic in sort_diagnostics(loaded.warnings):
        warnings.warn(render(diagnostic, source), LossSpecWarning, stacklevel=3)
    names = loaded.python_names
    function, _, class_name = function_names(loaded.loss_name)
    if framework == "torch":
        module_class = getattr(loaded.module, f"{class_name}Module")
        arguments = {names[param]: value for param, value in params.items()}
        return module_class(**arguments, reduction=TORCH_REDUCTIONS.get(reduction, reduction))
    values = {**loaded.param_defaults, **params}
    return functools.partial(
        getattr(loaded.module, function), **{names[param]: value for param, value in values.items()}
    )


def _compile(
    source: SourceFile, verify: bool, jit_compile: bool, target: str | None
) -> CompiledLoss:
    compiled = compile_source(
        source, verify=verify, jit_compile=jit_compile, target=resolve_target(target)
    )
    for diagnostic in compiled.diagnostics:
        warnings.warn(render(diagnostic, source), LossSpecWarning, stacklevel=3)
    return compiled
