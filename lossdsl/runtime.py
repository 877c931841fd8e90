"""Running generated code: a generated module's text executed into a module object."""

from __future__ import annotations

import functools
import hashlib
import linecache
import sys
import types
from typing import Any

from lossdsl.codegen.names import function_names
from lossdsl.codegen.targets import DEFAULT_TARGET, target_named


class BackendError(RuntimeError):
    """Keras runs on another backend than the one a generated module was written for."""


def keras_backend() -> str:
    """The backend Keras runs on (imports Keras, and with it that backend)."""
    import keras  # here, not at the top: `import lossdsl` imports no Keras nor any backend

    return str(keras.backend.backend())


def resolve_target(target: str | None) -> str:
    """`target`, checked (a ValueError names the targets there are); None means the backend
    Keras runs (only then is Keras read)."""
    return target_named(keras_backend() if target is None else target).name


def require_backend(target: str) -> None:
    """Raise BackendError unless Keras runs on `target`, the backend a module was written for."""
    backend = keras_backend()
    if backend != target:
        raise BackendError(
            f"This lossdsl loss was generated for Keras's {target!r} backend, but Keras uses "
            f"{backend!r}. Load the spec again in this process (lossdsl.load follows the "
            f"backend Keras runs), or set KERAS_BACKEND={target} before importing keras."
        )


def load_generated_module(source: str, module_name: str) -> types.ModuleType:
    """Run a generated module's text in a fresh module object and return it.

    The text is registered with `linecache`, so tracebacks and AutoGraph can read it, and
    the module in `sys.modules` under its name (in the package `lossdsl_generated`), as
    an imported module is: `torch.compile` imports the module of every function it
    traces. Whatever Keras's backend, the module loads: its Keras class checks the
    backend when constructed.
    """
    filename = f"<lossdsl generated module {module_name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    package, _, _ = module_name.rpartition(".")
    if package and package not in sys.modules:
        sys.modules[package] = types.ModuleType(package, "lossdsl's generated modules")
        sys.modules[package].__path__ = []
    module = types.ModuleType(module_name)
    module.__file__ = filename
    sys.modules[module_name] = module
    code = compile(source, filename, "exec")  # generated from the checked tree, not spec text
    exec(code, module.__dict__)
    return module


def module_name_for(loss_name: str, python_source: str) -> str:
    """A name for a generated module, distinct for distinct module texts."""
    digest = hashlib.sha256(python_source.encode("utf-8")).hexdigest()[:16]
    return f"lossdsl_generated.{function_names(loss_name)[0]}_{digest}"


def untraced_copy(function: Any, *, jit_compile: bool, target: str = DEFAULT_TARGET) -> Any:
    """A generated per-sample function as the target runs it compiled, sharing no traces.

    TensorFlow: a new `tf.function` of the generated `tf.function`'s Python code, decorated
    as the writer decorates it (`autograph=False`, XLA when compiled for it), so it computes
    what the original does; traces made through the copy (the verifier's, in float64) stay
    out of the function users call. JAX: `jax.jit` of the generated Python function (its
    `__wrapped__` is that function). PyTorch: the function itself, which keeps no traces.
    """
    if target == "tensorflow":
        import tensorflow as tf

        return tf.function(function.python_function, jit_compile=jit_compile, autograph=False)
    if target == "jax":
        import jax

        return jax.jit(function)
    return function


def untraced_values(function: Any, *, jit_compile: bool, target: str = DEFAULT_TARGET) -> Any:
    """`untraced_copy` of a generated `_<name>_with_mask`, returning its values only.

    Those are what `<name>` returns (0 outside the mask), computed by the function the
    Keras class calls; traces made through the copy stay out of that function.
    """
    with_mask = function.python_function if target == "tensorflow" else function

    @functools.wraps(with_mask)
    def values(*args: Any, **kwargs: Any) -> Any:
        return with_mask(*args, **kwargs)[0]

    if target == "tensorflow":
        import tensorflow as tf

        return tf.function(values, jit_compile=jit_compile, autograph=False)
    return untraced_copy(values, jit_compile=jit_compile, target=target)
