"""Running generated code: a generated module's text executed into a module object."""

from __future__ import annotations

import functools
import hashlib
import linecache
import types
from typing import Any

from lossdsl.codegen.names import function_names


class BackendError(RuntimeError):
    """Keras runs on a backend other than TensorFlow, which generated losses need."""


def require_tensorflow_backend() -> None:
    """Raise BackendError unless Keras runs on TensorFlow."""
    import keras  # here, not at the top: `import lossdsl` imports neither Keras nor TensorFlow

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


def untraced_copy(function: Any, *, jit_compile: bool) -> Any:
    """A new `tf.function` of a generated `tf.function`'s Python code, sharing no traces.

    Decorated as the writer decorates it (`autograph=False`, XLA when compiled for it), so
    it computes what the original does; traces made through the copy (the verifier's, in
    float64) stay out of the function users call.
    """
    import tensorflow as tf

    return tf.function(function.python_function, jit_compile=jit_compile, autograph=False)


def untraced_values(function: Any, *, jit_compile: bool) -> Any:
    """`untraced_copy` of a generated `_<name>_with_mask`, returning its values only.

    Those are what `<name>` returns (0 outside the mask), computed by the function the
    Keras class calls; traces made through the copy stay out of that function.
    """
    import tensorflow as tf

    with_mask = function.python_function

    @functools.wraps(with_mask)
    def values(*args: Any, **kwargs: Any) -> Any:
        return with_mask(*args, **kwargs)[0]

    return tf.function(values, jit_compile=jit_compile, autograph=False)
