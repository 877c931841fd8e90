"""Running compiled losses: loading generated modules, the registered `SpecLoss`, the cache.

`load_generated_module` turns a generated module's text (built by the writer from the
checked tree, never spec text) into a module object. `SpecLoss` is the one Keras class,
registered once as `lossdsl>SpecLoss`, that `lossdsl.load` returns: it carries its spec's
text and params, delegates `call` to the generated loss, and recompiles from its config
when a saved model is loaded. `load_spec` finds a spec's generated module in memory, in
the verification cache (`$LOSSDSL_CACHE_DIR`, else `~/.cache/lossdsl`) or by running the
compiler. This module imports Keras; `lossdsl/__init__.py` imports it only once Keras is.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import json
import linecache
import os
import re
import tempfile
import types
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from lossdsl import __version__
from lossdsl.codegen.names import function_names
from lossdsl.codegen.writer import spec_file_name
from lossdsl.diagnostics import (
    Diagnostic,
    LossSpecError,
    LossSpecWarning,
    Severity,
    render,
    sort_diagnostics,
)
from lossdsl.source import SourceFile, Span, printable_name

CACHE_FORMAT = 1
"""Bumped whenever the cache entries' layout changes; part of every key."""

CACHE_DIR_VARIABLE = "LOSSDSL_CACHE_DIR"

SAVED_KEYS = ("spec", "spec_file", "spec_hash", "compiler_version", "jit_compile")
"""The keys `SpecLoss.get_config` adds beside Keras's own and the params."""

KERAS_KEYS = ("name", "reduction", "dtype")
"""Keras's own keys in a loss's config, passed to `keras.losses.Loss.__init__`."""

SPEC_HASH_PATTERN = re.compile(r"[0-9a-f]{64}")

MAX_FILE_NAME = 4096
"""The longest saved `spec_file`: a file name of 255 bytes, each shown as an escape."""

MAX_SHOWN_VALUE = 80
"""How many characters of a malformed config value an error message shows."""

ParamValue = float | tuple[float, ...]


class BackendError(RuntimeError):
    """Keras runs on a backend other than TensorFlow, which generated losses need."""


def require_tensorflow_backend() -> None:
    """Raise BackendError unless Keras runs on TensorFlow."""
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise BackendError(
            f"lossdsl losses run on Keras's TensorFlow backend, but Keras uses {backend!r}. "
            "Set the environment variable KERAS_BACKEND=tensorflow before importing keras."
        )


def load_generated_module(source: str, module_name: str) -> types.ModuleType:
    """Run a generated module's text in a fresh module object and return it.

    The text is registered with `linecache`, so tracebacks and AutoGraph can read it.
    """
    require_tensorflow_backend()
    filename = f"<lossdsl generated module {module_name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(module_name)
    module.__file__ = filename
    code = compile(source, filename, "exec")  # generated from the checked tree, not spec text
    exec(code, module.__dict__)
    return module


def module_name_for(loss_name: str, python_source: str) -> str:
    """A name for a generated module, distinct for distinct module texts."""
    digest = hashlib.sha256(python_source.encode("utf-8")).hexdigest()[:16]
    return f"lossdsl_generated.{function_names(loss_name)[0]}_{digest}"


def spec_hash(text: str) -> str:
    """The sha256 of a spec's text, as saved in `SpecLoss.get_config()`."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------- loaded specs


@dataclass(frozen=True)
class LoadedSpec:
    """A compiled spec ready to instantiate: its generated module and what `load` needs."""

    loss_name: str
    python_source: str
    module: types.ModuleType
    param_defaults: dict[str, ParamValue]  # spec name -> default, in declaration order
    warnings: tuple[Diagnostic, ...]

    @property
    def loss_class(self) -> type[keras.losses.Loss]:
        return getattr(self.module, function_names(self.loss_name)[2])


_loaded: dict[str, LoadedSpec] = {}
"""Specs loaded in this process, by cache key: their tf.function traces are shared."""


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


def cache_key(source: SourceFile, *, verify: bool, jit_compile: bool) -> str:
    """The key of a compile: spec text, file name, the compiler (version and files), options."""
    identity = [
        CACHE_FORMAT,
        __version__,
        compiler_fingerprint(),
        spec_file_name(source.name),
        source.text,
        verify,
        jit_compile,
    ]
    return hashlib.sha256(json.dumps(identity).encode("utf-8")).hexdigest()


def load_spec(source: SourceFile, *, verify: bool = True, jit_compile: bool = False) -> LoadedSpec:
    """A spec's generated module: from this process, the cache, or a fresh compile.

    Raises LossSpecError when the spec has errors (never cached).
    """
    require_tensorflow_backend()
    key = cache_key(source, verify=verify, jit_compile=jit_compile)
    loaded = _loaded.get(key)
    if loaded is None:
        entry = read_cache_entry(key)
        if entry is None:
            entry = compile_entry(source, verify=verify, jit_compile=jit_compile)
            write_cache_entry(key, entry)
        loaded = LoadedSpec(
            loss_name=entry.loss_name,
            python_source=entry.python_source,
            module=load_generated_module(
                entry.python_source, module_name_for(entry.loss_name, entry.python_source)
            ),
            param_defaults=dict(entry.params),
            warnings=entry.warnings,
        )
        _loaded[key] = loaded
    return loaded


# ---------------------------------------------------------------------- the cache


@dataclass(frozen=True)
class CacheEntry:
    """What a verified compile leaves in the cache: enough to load without recompiling."""

    loss_name: str
    python_source: str
    params: tuple[tuple[str, ParamValue], ...]
    warnings: tuple[Diagnostic, ...]


def compile_entry(source: SourceFile, *, verify: bool, jit_compile: bool) -> CacheEntry:
    """Run the whole pipeline for a spec (parse, checks, SymPy, codegen, verification)."""
    from lossdsl.compiler import compile_source  # the pipeline imports SymPy; only when needed

    compiled = compile_source(source, verify=verify, jit_compile=jit_compile)
    return CacheEntry(
        loss_name=compiled.loss_name,
        python_source=compiled.python_source,
        params=tuple(compiled.params.items()),
        warnings=compiled.diagnostics,
    )


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
            params=tuple((_text(name), _param_value(value)) for name, value in data["params"]),
            warnings=tuple(_diagnostic(item) for item in data["warnings"]),
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
        "params": [[name, _json_value(value)] for name, value in entry.params],
        "warnings": [_diagnostic_data(diagnostic) for diagnostic in entry.warnings],
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


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("expected a number")
    return float(value)


def _param_value(value: object) -> ParamValue:
    if isinstance(value, list):
        return tuple(_number(entry) for entry in value)
    return _number(value)


def _json_value(value: ParamValue) -> float | list[float]:
    return list(value) if isinstance(value, tuple) else value


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


# ---------------------------------------------------------------------- SpecLoss


@keras.saving.register_keras_serializable(package="lossdsl", name="SpecLoss")
class SpecLoss(keras.losses.Loss):
    """A Keras loss compiled from a `.loss` spec; what `lossdsl.load` returns.

    It carries the spec's text, so `get_config()` (each param at the top level under its
    spec name, beside `name`, `reduction`, `dtype` and the spec) is enough to rebuild it:
    `from_config` recompiles the spec, from the verification cache when it can.

    Args:
        spec: The spec's source text.
        params: Param values by spec name; params not given keep their defaults.
        spec_file: The spec's file name (no directory), or None for source text.
        reduction: As for every Keras loss; defaults to "sum_over_batch_size".
        name: The loss's name; defaults to the spec's loss name.
        dtype: As for every Keras loss; defaults to `keras.backend.floatx()`.
        verify: Check the generated code against SymPy's exact gradients.
        jit_compile: Compile the generated functions with XLA.
    """

    def __init__(
        self,
        spec: str,
        params: Mapping[str, Any] | None = None,
        *,
        spec_file: str | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
        dtype: Any = None,
        verify: bool = True,
        jit_compile: bool = False,
    ) -> None:
        spec_file = saved_file_name(spec_file)
        source = SourceFile.from_text(spec, spec_file or "<string>")
        loaded = load_spec(source, verify=verify, jit_compile=jit_compile)
        given = dict(params or {})
        check_param_names(loaded, given)
        name = name or loaded.loss_name
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.generated_loss = loaded.loss_class.from_config(
            {**given, "name": name, "reduction": reduction, "dtype": dtype}
        )
        generated_config = self.generated_loss.get_config()
        self.params: dict[str, ParamValue] = {
            param: _param_value(generated_config[param]) for param in loaded.param_defaults
        }
        self.loss_name = loaded.loss_name
        self.spec = source.text
        self.spec_file = spec_file
        self.jit_compile = jit_compile
        self.dtype_argument = dtype
        for diagnostic in sort_diagnostics(loaded.warnings):
            warnings.warn(render(diagnostic, source), LossSpecWarning, stacklevel=3)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return self.generated_loss.call(y_true, y_pred)

    def __repr__(self) -> str:
        """`<SpecLoss loss=focal, name=focal, gamma=2.0, reduction=sum_over_batch_size>`.

        As Keras shows a layer: the class, then `key=value` pairs; `loss` is the spec's
        loss name, then the Keras name, each param under its spec name, the reduction.
        """
        fields = [f"loss={self.loss_name}", f"name={self.name}"]
        fields += [f"{param}={_json_value(value)}" for param, value in self.params.items()]
        fields.append(f"reduction={self.reduction}")
        return f"<{type(self).__name__} {', '.join(fields)}>"

    def get_config(self) -> dict[str, Any]:
        clashes = sorted(set(self.params) & set(SAVED_KEYS))
        if clashes:
            raise ValueError(
                f"Cannot save the loss `{self.name}`: its param `{clashes[0]}` has the name of "
                "a key lossdsl saves beside the params. Rename the param in the spec."
            )
        config: dict[str, Any] = super().get_config()
        dtype = self.dtype_argument
        config.update(
            {
                "dtype": dtype
                if dtype is None or isinstance(dtype, str)
                else keras.dtype_policies.serialize(dtype),
                "spec": self.spec,
                "spec_file": self.spec_file,
                "spec_hash": spec_hash(self.spec),
                "compiler_version": __version__,
                "jit_compile": self.jit_compile,
            }
        )
        config.update({param: _json_value(value) for param, value in self.params.items()})
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SpecLoss:
        """Recompile a saved spec; a spec this version cannot compile names the saving version.

        A malformed config raises a Keras-style ValueError naming the field. A spec that
        does not match its saved hash, or whose loss name is not the saved name, loads as
        written in the config, with a LossSpecWarning naming both values.
        """
        saved = read_saved_config(config)
        actual_hash = spec_hash(saved.spec)
        text_confirmed = saved.spec_hash == actual_hash
        if saved.spec_hash is not None and not text_confirmed:
            warnings.warn(
                f"The saved spec of the loss `{saved.shown_name}` was edited after saving: "
                f"the config's spec_hash is {saved.spec_hash}, but its spec text hashes to "
                f"{actual_hash}. lossdsl loads the spec as written in the config.",
                LossSpecWarning,
                stacklevel=2,
            )
        try:
            loss = cls(
                saved.spec,
                saved.params,
                spec_file=saved.spec_file,
                jit_compile=saved.jit_compile,
                **saved.keras_arguments,
            )
        except LossSpecError as failure:
            shown_name = saved.spec_file or "<saved spec>"
            version = saved.compiler_version or "an unknown version"
            renamed = SourceFile.from_text(
                saved.spec,
                f"{shown_name} (saved by lossdsl {version}; this is lossdsl {__version__})",
            )
            raise LossSpecError(failure.diagnostics, renamed) from None
        saved_name = saved.keras_arguments.get("name")
        # A name that differs from the spec's loss name was chosen with `name=` when the
        # saved text is confirmed by its hash; otherwise it is a sign of an edit.
        if saved_name is not None and saved_name != loss.loss_name and not text_confirmed:
            warnings.warn(
                f"The saved loss name `{saved_name}` is not the loss name of the saved spec, "
                f"`{loss.loss_name}`, and the spec's hash does not confirm the text. lossdsl "
                "loads the spec as written in the config, under the saved name.",
                LossSpecWarning,
                stacklevel=2,
            )
        return loss


# ---------------------------------------------------------------------- saved configs


@dataclass(frozen=True)
class SavedConfig:
    """A `SpecLoss` config, checked field by field: what `from_config` rebuilds a loss from."""

    spec: str
    spec_file: str | None
    spec_hash: str | None
    compiler_version: str | None
    jit_compile: bool
    keras_arguments: dict[str, Any]  # name, reduction, dtype: those the config holds
    params: dict[str, Any]  # every other key; `SpecLoss` checks names and values

    @property
    def shown_name(self) -> str:
        return str(self.keras_arguments.get("name") or self.spec_file or "<saved spec>")


def read_saved_config(config: object) -> SavedConfig:
    """Check a saved `SpecLoss` config; raise a Keras-style ValueError naming a bad field.

    Nothing in a config is evaluated: the spec text goes to the parser only, and the
    file name and version are data that diagnostics show.
    """
    if not isinstance(config, Mapping):
        raise ValueError(
            "Invalid config for a lossdsl loss (`lossdsl>SpecLoss`). Expected a dict. "
            f"Received: config={shown_value(config)}"
        )
    fields = dict(config)
    if "spec" not in fields:
        present = ", ".join(f"`{key}`" for key in fields) or "no keys"
        raise ValueError(
            "Invalid config for a lossdsl loss (`lossdsl>SpecLoss`): it has no `spec`. "
            f"Expected the spec's source text under `spec`. Received: {present}"
        )
    spec = fields.pop("spec")
    if not isinstance(spec, str) or not is_unicode(spec):
        raise invalid_field("spec", "the spec's source text (a string, valid Unicode)", spec)
    spec_file = fields.pop("spec_file", None)
    if spec_file is not None and not is_file_name(spec_file):
        raise invalid_field(
            "spec_file",
            "None or a file name without a directory, with every character printable",
            spec_file,
        )
    saved_hash = fields.pop("spec_hash", None)
    if saved_hash is not None and not (
        isinstance(saved_hash, str) and SPEC_HASH_PATTERN.fullmatch(saved_hash)
    ):
        raise invalid_field("spec_hash", "None or a sha256 (64 lowercase hex digits)", saved_hash)
    version = fields.pop("compiler_version", None)
    if version is not None and not (
        isinstance(version, str) and 0 < len(version) <= 100 and version.isprintable()
    ):
        raise invalid_field(
            "compiler_version", "None or a printable version of at most 100 characters", version
        )
    jit_compile = fields.pop("jit_compile", False)
    if not isinstance(jit_compile, bool):
        raise invalid_field("jit_compile", "true or false", jit_compile)
    keras_arguments = {key: fields.pop(key) for key in KERAS_KEYS if key in fields}
    name = keras_arguments.get("name")
    if name is not None and not isinstance(name, str):
        raise invalid_field("name", "None or a string", name)
    reduction = keras_arguments.get("reduction")
    if reduction is not None and not isinstance(reduction, str):
        raise invalid_field(
            "reduction",
            'one of "sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none" '
            "or None",
            reduction,
        )
    if "dtype" in keras_arguments:
        keras_arguments["dtype"] = saved_dtype(keras_arguments["dtype"])
    return SavedConfig(
        spec=spec,
        spec_file=spec_file,
        spec_hash=saved_hash,
        compiler_version=version,
        jit_compile=jit_compile,
        keras_arguments=keras_arguments,
        params=fields,
    )


def saved_dtype(dtype: object) -> Any:
    """A saved `dtype`: None, a dtype or policy name, or a serialized dtype policy."""
    expected = "None, a float dtype name or a serialized Keras dtype policy"
    if dtype is None:
        return None
    if not isinstance(dtype, str | Mapping):
        raise invalid_field("dtype", expected, dtype)
    try:
        policy = keras.dtype_policies.get(dtype if isinstance(dtype, str) else dict(dtype))
    except (TypeError, ValueError, KeyError, AttributeError):
        raise invalid_field("dtype", expected, dtype) from None
    if not isinstance(policy, keras.dtype_policies.DTypePolicy):
        raise invalid_field("dtype", expected, dtype)
    return dtype if isinstance(dtype, str) else policy


def invalid_field(field: str, expected: str, received: object) -> ValueError:
    """A Keras-style error for one field of a saved `SpecLoss` config."""
    return ValueError(
        f"Invalid value for `{field}` in the config of a lossdsl loss (`lossdsl>SpecLoss`). "
        f"Expected {expected}. Received: {field}={shown_value(received)}"
    )


def shown_value(value: object) -> str:
    """A value's repr, shortened to about MAX_SHOWN_VALUE characters."""
    text = repr(value)
    if len(text) <= MAX_SHOWN_VALUE:
        return text
    return f"{text[: MAX_SHOWN_VALUE - 20]}... ({len(text)} characters)"


def is_unicode(text: str) -> bool:
    """Whether a string holds no lone surrogates (so it encodes to UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def saved_file_name(spec_file: str | None) -> str | None:
    """The file name a `SpecLoss` keeps and saves: no directory, every character printable
    (escaped as diagnostics show it), None for source text (`<string>`)."""
    if spec_file is None or spec_file.startswith("<"):
        return None
    return printable_name(spec_file_name(spec_file))


def is_file_name(value: object) -> bool:
    """A file name as `get_config` saves it (`saved_file_name` leaves it as it is)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_FILE_NAME
        and value not in {".", ".."}
        and saved_file_name(value) == value
    )


# ---------------------------------------------------------------------- params


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
