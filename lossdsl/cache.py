"""The verification cache: a spec's generated module from this process, disk, or a compile."""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import json
import os
import tempfile
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lossdsl.codegen.names import function_names, python_names
from lossdsl.codegen.writer import spec_file_name
from lossdsl.compiler import compile_source
from lossdsl.diagnostics import Diagnostic, Severity
from lossdsl.runtime import load_generated_module, module_name_for, require_backend
from lossdsl.source import SourceFile, Span
from lossdsl.version import __version__

if TYPE_CHECKING:  # at run time, importing Keras imports `lossdsl.spec_loss`, which needs this
    import keras

CACHE_FORMAT = 2
"""Bumped whenever the cache entries' layout changes; part of every key."""

CACHE_DIR_VARIABLE = "LOSSDSL_CACHE_DIR"

ParamValue = float | tuple[float, ...]


@dataclass(frozen=True)
class CacheEntry:
    """What a verified compile leaves in the cache: enough to load without recompiling.

    `params` holds each param's spec name and default, `python_names` its Python name (the
    native APIs' keyword), `target` the Keras backend the module was written for.
    """

    loss_name: str
    python_source: str
    params: tuple[tuple[str, ParamValue], ...]
    warnings: tuple[Diagnostic, ...]
    target: str
    python_names: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class LoadedSpec:
    """A compiled spec ready to instantiate: its cache entry and its generated module."""

    entry: CacheEntry
    module: types.ModuleType

    @property
    def loss_name(self) -> str:
        return self.entry.loss_name

    @property
    def param_defaults(self) -> dict[str, ParamValue]:
        """Spec name -> default, in declaration order."""
        return dict(self.entry.params)

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        return self.entry.warnings

    @property
    def target(self) -> str:
        return self.entry.target

    @property
    def python_names(self) -> dict[str, str]:
        """Param spec name -> its Python name, in declaration order."""
        return dict(self.entry.python_names)

    @property
    def loss_class(self) -> type[keras.losses.Loss]:
        """The generated Keras class; BackendError when Keras runs another backend than
        the module's target."""
        require_backend(self.target)
        return getattr(self.module, function_names(self.loss_name)[2])


_loaded: dict[str, LoadedSpec] = {}
"""Specs loaded in this process, by cache key: their tf.function traces are shared."""


def load_spec(
    source: SourceFile, *, target: str, verify: bool = True, jit_compile: bool = False
) -> LoadedSpec:
    """A spec's generated module for `target`: from this process, the cache, or a compile.

    The cache is `$LOSSDSL_CACHE_DIR`, else `~/.cache/lossdsl`. The module's text is
    executed once whichever way it came: a fresh compile hands over the module it verified.
    Raises LossSpecError when the spec has errors (never cached).
    """
    key = cache_key(source, verify=verify, jit_compile=jit_compile, target=target)
    loaded = _loaded.get(key)
    if loaded is None:
        entry = read_cache_entry(key)
        if entry is None:
            loaded = compile_spec(source, verify=verify, jit_compile=jit_compile, target=target)
            write_cache_entry(key, loaded.entry)
        else:
            module_name = module_name_for(entry.loss_name, entry.python_source)
            loaded = LoadedSpec(entry, load_generated_module(entry.python_source, module_name))
        _loaded[key] = loaded
    return loaded


def compile_spec(source: SourceFile, *, verify: bool, jit_compile: bool, target: str) -> LoadedSpec:
    """Run the whole pipeline for a spec; the module it loaded (and verified) is kept."""
    compiled = compile_source(source, verify=verify, jit_compile=jit_compile, target=target)
    names = python_names(compiled.checked)
    entry = CacheEntry(
        loss_name=compiled.loss_name,
        python_source=compiled.python_source,
        params=tuple(compiled.params.items()),
        warnings=compiled.diagnostics,
        target=target,
        python_names=tuple((name, names[name]) for name in compiled.params),
    )
    return LoadedSpec(entry, compiled.module)


def check_param_names(loaded: LoadedSpec, given: Mapping[str, Any]) -> None:
    """Raise a Keras-style ValueError for a param the spec does not declare.

    Values are the generated class's to check (kind and domain), in one place for
    `lossdsl.load`, saved configs and standalone modules alike.
    """
    for param in given:
        if param not in loaded.param_defaults:
            known = ", ".join(f"`{name}`" for name in loaded.param_defaults) or "none"
            close = difflib.get_close_matches(str(param), list(loaded.param_defaults), n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise ValueError(
                f"Invalid keyword argument `{param}` for the loss `{loaded.loss_name}`: it has "
                f"no such param. Expected params: {known}.{hint}"
            )


@functools.cache
def compiler_fingerprint() -> str:
    """A hash of the compiler's own files, so a changed compiler never reuses old output.

    The version alone is not enough: a development checkout or a patched install keeps
    its version while the generated code changes.
    """
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted([*package.rglob("*.py"), *package.rglob("*.lark")]):
        digest.update(path.relative_to(package).as_posix().encode("utf-8"))
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_key(source: SourceFile, *, verify: bool, jit_compile: bool, target: str) -> str:
    """The key of a compile: spec text, file name, the compiler (version and files), options
    and the target."""
    identity = [
        CACHE_FORMAT,
        __version__,
        compiler_fingerprint(),
        spec_file_name(source.name),
        source.text,
        verify,
        jit_compile,
        target,
    ]
    return hashlib.sha256(json.dumps(identity).encode("utf-8")).hexdigest()


def cache_directory() -> Path:
    """`$LOSSDSL_CACHE_DIR` when set, else `~/.cache/lossdsl`."""
    configured = os.environ.get(CACHE_DIR_VARIABLE)
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "lossdsl"


def read_cache_entry(key: str) -> CacheEntry | None:
    """The cached entry for `key`, or None when absent, unreadable or malformed."""
    try:
        data = json.loads((cache_directory() / f"{key}.json").read_text(encoding="utf-8"))
        if data["key"] != key or data["format"] != CACHE_FORMAT:
            return None
        return CacheEntry(
            loss_name=_text(data["loss_name"]),
            python_source=_text(data["python_source"]),
            params=tuple((_text(name), param_value(value)) for name, value in data["params"]),
            warnings=tuple(_diagnostic(item) for item in data["warnings"]),
            target=_text(data["target"]),
            python_names=tuple((_text(name), _text(python)) for name, python in data["names"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_cache_entry(key: str, entry: CacheEntry) -> None:
    """Store an entry atomically (temporary file + rename); any OS error is ignored."""
    data = {
        "format": CACHE_FORMAT,
        "key": key,
        "compiler_version": __version__,
        "loss_name": entry.loss_name,
        "python_source": entry.python_source,
        "params": [[name, json_value(value)] for name, value in entry.params],
        "warnings": [_diagnostic_data(diagnostic) for diagnostic in entry.warnings],
        "target": entry.target,
        "names": [list(pair) for pair in entry.python_names],
    }
    directory = cache_directory()
    with contextlib.suppress(OSError):
        directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(data, stream)
            os.replace(temporary, directory / f"{key}.json")
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise


def param_value(value: object) -> ParamValue:
    """A param's value read from JSON or a config: a float, or a tuple of floats."""
    if isinstance(value, list):
        return tuple(_number(entry) for entry in value)
    return _number(value)


def json_value(value: ParamValue) -> float | list[float]:
    """A param's value as JSON and Keras configs hold it (a vector as a list)."""
    return list(value) if isinstance(value, tuple) else value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("expected a number")
    return float(value)


def _diagnostic_data(diagnostic: Diagnostic) -> dict[str, Any]:
    span = diagnostic.span
    return {
        "severity": diagnostic.severity.value,
        "code": diagnostic.code,
        "message": diagnostic.message,
        "span": None if span is None else [span.line, span.column, span.end_line, span.end_column],
        "label": diagnostic.label,
        "help": list(diagnostic.help),
    }


def _diagnostic(data: Mapping[str, Any]) -> Diagnostic:
    span = data["span"]
    return Diagnostic(
        severity=Severity(data["severity"]),
        code=_text(data["code"]),
        message=_text(data["message"]),
        span=None if span is None else Span(*(int(_number(part)) for part in span)),
        label=_text(data["label"]),
        help=tuple(_text(line) for line in data["help"]),
    )
