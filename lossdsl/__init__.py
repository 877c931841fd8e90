"""lossdsl: a compiler from `.loss` specs to verified, numerically stable Keras losses."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings
from collections.abc import Sequence
from typing import Any

from lossdsl.api import compile, compile_file, load
from lossdsl.class_weights import class_weights
from lossdsl.compiler import CompiledLoss
from lossdsl.diagnostics import LossSpecError, LossSpecWarning
from lossdsl.runtime import BackendError
from lossdsl.version import __version__

__all__ = [
    "BackendError",
    "CompiledLoss",
    "LossSpecError",
    "LossSpecWarning",
    "SpecLoss",
    "__version__",
    "class_weights",
    "compile",
    "compile_file",
    "load",
]


def __getattr__(name: str) -> Any:
    """`lossdsl.SpecLoss`, imported (with Keras) on first use."""
    if name == "SpecLoss":
        from lossdsl.spec_loss import SpecLoss

        return SpecLoss
    raise AttributeError(f"module 'lossdsl' has no attribute {name!r}")


def _register_spec_loss() -> None:
    """Import `lossdsl.spec_loss`, whose import registers `lossdsl>SpecLoss` with Keras."""
    try:
        import lossdsl.spec_loss  # noqa: F401
    except Exception as failure:  # a broken registration must not break importing Keras
        warnings.warn(
            f"lossdsl could not register its Keras loss class: {failure}",
            RuntimeWarning,
            stacklevel=2,
        )


class _RegisteringLoader(importlib.abc.Loader):
    """Keras's own loader, registering `lossdsl>SpecLoss` once Keras has been imported."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        _register_spec_loss()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


class _KerasImportHook(importlib.abc.MetaPathFinder):
    """Waits for the first `import keras` and wraps its loader (then removes itself)."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("keras")
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


# `import lossdsl` imports neither TensorFlow nor Keras, so logical devices can still be
# configured after it. `lossdsl>SpecLoss` is registered as soon as Keras is imported (now,
# if it already is), so `keras.models.load_model` finds it without `custom_objects`.
if "keras" in sys.modules:
    _register_spec_loss()
elif not any(isinstance(finder, _KerasImportHook) for finder in sys.meta_path):
    sys.meta_path.insert(0, _KerasImportHook())
