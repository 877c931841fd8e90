"""The one Keras class of loaded losses, `lossdsl>SpecLoss`, and its saved configs."""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import keras

from lossdsl.cache import ParamValue, check_param_names, json_value, load_spec, param_value
from lossdsl.codegen.writer import spec_file_name
from lossdsl.diagnostics import LossSpecError, LossSpecWarning, render, sort_diagnostics
from lossdsl.runtime import require_backend, resolve_target
from lossdsl.source import SourceFile, printable_name
from lossdsl.version import __version__

SAVED_KEYS = ("spec", "spec_file", "spec_hash", "compiler_version", "jit_compile")
"""The keys `SpecLoss.get_config` adds beside Keras's own and the params."""

KERAS_KEYS = ("name", "reduction", "dtype")
"""Keras's own keys in a loss's config, passed to `keras.losses.Loss.__init__`."""

SPEC_HASH_PATTERN = re.compile(r"[0-9a-f]{64}")

MAX_FILE_NAME = 4096
"""The longest saved `spec_file`: a file name of 255 bytes, each shown as an escape."""

MAX_SHOWN_VALUE = 80
"""How many characters of a malformed config value an error message shows."""


def spec_hash(text: str) -> str:
    """The sha256 of a spec's text, as saved in `SpecLoss.get_config()`."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
        target: The backend the generated code is written for: "tensorflow", "jax" or
            "torch"; None (the default) means the backend Keras runs. Not saved, so a
            model saved under one backend reloads under another. Another backend than
            Keras's raises `lossdsl.runtime.BackendError`.
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
        target: str | None = None,
    ) -> None:
        target = resolve_target(target)
        require_backend(target)
        spec_file = saved_file_name(spec_file)
        source = SourceFile.from_text(spec, spec_file or "<string>")
        loaded = load_spec(source, verify=verify, jit_compile=jit_compile, target=target)
        given = dict(params or {})
        check_param_names(loaded, given)
        name = name or loaded.loss_name
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.generated_loss = loaded.loss_class.from_config(
            {**given, "name": name, "reduction": reduction, "dtype": dtype}
        )
        generated_config = self.generated_loss.get_config()
        self.params: dict[str, ParamValue] = {
            param: param_value(generated_config[param]) for param in loaded.param_defaults
        }
        self.loss_name = loaded.loss_name
        self.spec = source.text
        self.spec_file = spec_file
        self.jit_compile = jit_compile
        self.target = target
        self.dtype_argument = dtype
        for diagnostic in sort_diagnostics(loaded.warnings):
            warnings.warn(render(diagnostic, source), LossSpecWarning, stacklevel=3)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return self.generated_loss.call(y_true, y_pred)

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        """The generated class's call, with this loss's name, reduction and dtype: it takes
        Keras's default reduction in one function where it can (docs/KERAS.md)."""
        return self.generated_loss(y_true, y_pred, sample_weight=sample_weight)

    def __repr__(self) -> str:
        """`<SpecLoss loss=focal, name=focal, gamma=2.0, reduction=sum_over_batch_size>`.

        As Keras shows a layer: the class, then `key=value` pairs; `loss` is the spec's
        loss name, then the Keras name, each param under its spec name, the reduction.
        """
        fields = [f"loss={self.loss_name}", f"name={self.name}"]
        fields += [f"{param}={json_value(value)}" for param, value in self.params.items()]
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
        config.update({param: json_value(value) for param, value in self.params.items()})
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
