"""Compiled lossdsl losses on JAX, PyTorch and TensorFlow beside each framework's own losses.

For each backend, in its own process (`KERAS_BACKEND` set to it), the loss compiled for
that backend (`lossdsl.compiler.generate(..., target=backend)`) computes the batch's mean
loss and its gradient with respect to y_pred beside the framework's native loss (optax,
`torch.nn.functional`, `tf.nn`) and the Keras built-in on that Keras backend, interleaved
as in bench_losses.py, whose timing helpers, inputs and edge grid this script imports.
Every variant must agree with the compiled loss before it is timed. Finiteness is counted
on bench_losses.py's edge grid in float32, float16 and bfloat16.

Run `python benchmarks/bench_backends.py --help`; benchmarks/README.md explains the columns.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bench_losses import (
    add_run_arguments,
    checked_run_arguments,
    edge_binary,
    edge_logits,
    edge_regression,
    paired_ratio,
    parse_shapes,
    time_interleaved,
    typical_binary,
    typical_logits,
    typical_regression,
)

from lossdsl.codegen.names import function_names
from lossdsl.compiler import generate
from lossdsl.parser import read_source
from lossdsl.runtime import module_name_for

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "bench_backends.json"
BACKENDS = ("jax", "torch", "tensorflow")
FULL_SHAPES = ((4096, 10), (1024, 256), (256, 32000))
QUICK_SHAPES = ((64, 10), (16, 100))
ALPHA, GAMMA = 0.25, 2.0  # focal
DELTA = 1.0  # Huber
TOLERANCE = 1e-4  # agreement before timing: relative in the value, of the largest gradient entry
EDGE_DTYPES = ("float32", "float16", "bfloat16")
COMPILED = "lossdsl"  # the module's native API: the function (JAX, TF) or the nn.Module (torch)
COMPILED_KERAS = "lossdsl-keras"  # the module's keras.losses.Loss class
NATIVE = "native"
KERAS = "keras"
# Each backend's spelling of the two modes `--modes` names: without and with a compiler.
MODE_NAMES = {
    "jax": {"xla": "jit"},
    "torch": {"graph": "eager", "xla": "compile"},
    "tensorflow": {"graph": "graph", "xla": "xla"},
}

Array = np.ndarray
Inputs = tuple[Array, Array]
LossFunction = Callable[[Any, Any], Any]  # (y_true, y_pred) -> the scalar mean loss


# ---------------------------------------------------------------------- cases


def typical_labels(rng: np.random.Generator, batch: int, num_classes: int) -> Inputs:
    onehot, logits = typical_logits(rng, batch, num_classes)
    return onehot.argmax(axis=-1), logits


def typical_focal(rng: np.random.Generator, batch: int, num_classes: int) -> Inputs:
    """typical_binary's inputs with logits in [-15, 15].

    Keras's focal loss clips sigmoid(z) to [1e-7, 1 - 1e-7]; beyond |z| = 16.6, where the
    float32 sigmoid rounds to 1, that changes the gradient. N(0, 3^2) logits go there
    once in about 10^7 (at 256x32000 seed 0 did, and Keras's gradient was 0.44 of the
    largest entry off).
    """
    labels, logits = typical_binary(rng, batch, num_classes)
    return labels, np.clip(logits, -15.0, 15.0)


def edge_labels(num_classes: int) -> Inputs:
    onehot, logits = edge_logits(num_classes)
    return onehot.argmax(axis=-1), logits


@dataclass(frozen=True)
class Case:
    """One loss: the spec computing it, its params, its inputs and its Keras built-in."""

    name: str
    spec: Path
    typical_inputs: Callable[[np.random.Generator, int, int], Inputs]
    edge_inputs: Callable[[int], Inputs]
    keras_loss: str  # the name in keras.losses
    keras_arguments: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)
    integer_labels: bool = False


CASES: dict[str, Case] = {
    case.name: case
    for case in (
        Case(
            name="ce_logits",
            spec=ROOT / "benchmarks" / "specs" / "ce_logits.loss",
            typical_inputs=typical_logits,
            edge_inputs=edge_logits,
            keras_loss="CategoricalCrossentropy",
            keras_arguments={"from_logits": True},
        ),
        Case(
            name="ce_logits_smoothing",
            spec=ROOT / "examples" / "categorical_crossentropy_logits.loss",
            typical_inputs=typical_logits,
            edge_inputs=edge_logits,
            keras_loss="CategoricalCrossentropy",
            keras_arguments={"from_logits": True},
            params={"label_smoothing": 0.0},
        ),
        Case(
            name="sparse_ce_logits",
            spec=ROOT / "examples" / "sparse_categorical_crossentropy_logits.loss",
            typical_inputs=typical_labels,
            edge_inputs=edge_labels,
            keras_loss="SparseCategoricalCrossentropy",
            keras_arguments={"from_logits": True},
            integer_labels=True,
        ),
        Case(
            name="bce_logits",
            spec=ROOT / "examples" / "binary_crossentropy_logits.loss",
            typical_inputs=typical_binary,
            edge_inputs=edge_binary,
            keras_loss="BinaryCrossentropy",
            keras_arguments={"from_logits": True},
        ),
        Case(
            name="huber",
            spec=ROOT / "examples" / "huber.loss",
            typical_inputs=typical_regression,
            edge_inputs=edge_regression,
            keras_loss="Huber",
            keras_arguments={"delta": DELTA},
            params={"delta": DELTA},
        ),
        Case(
            name="focal_logits",
            spec=ROOT / "examples" / "binary_focal_logits.loss",
            typical_inputs=typical_focal,
            edge_inputs=edge_binary,
            keras_loss="BinaryFocalCrossentropy",
            keras_arguments={
                "apply_class_balancing": True,
                "alpha": ALPHA,
                "gamma": GAMMA,
                "from_logits": True,
            },
            params={"alpha": ALPHA, "gamma": GAMMA},
        ),
    )
}


def generated_module(case: Case, target: str, jit_compile: bool) -> tuple[types.ModuleType, str]:
    """The case's spec compiled for `target`, executed in a fresh module; and its loss name.

    As lossdsl.runtime.load_generated_module does for TensorFlow (which it alone accepts):
    the executed text is the compiler's output, not the spec's. The module is registered in
    `sys.modules` under a name without dots: torch.compile imports a function's module by
    name to read its globals.
    """
    source = read_source(case.spec.read_bytes(), case.spec.name)
    generated = generate(source, target=target, jit_compile=jit_compile)
    loss_name = generated.checked.loss_name
    name = module_name_for(loss_name, generated.python_source).replace(".", "_")
    module = sys.modules.setdefault(name, types.ModuleType(name))
    filename = f"<lossdsl generated {target} module for {case.spec.name}>"
    exec(compile(generated.python_source, filename, "exec"), module.__dict__)
    return module, loss_name


# ---------------------------------------------------------------------- frameworks


class Framework(ABC):
    """One backend's spelling of tensors, value-and-gradient steps and native losses."""

    name: str

    @abstractmethod
    def floats(self, values: Array, dtype: str) -> Any: ...

    @abstractmethod
    def integers(self, values: Array) -> Any: ...

    @abstractmethod
    def numpy(self, tensor: Any) -> Array: ...

    @abstractmethod
    def step(self, loss: LossFunction, mode: str) -> Callable[[Any, Any], tuple[Any, Any]]:
        """(y_true, y_pred) -> (mean loss, its gradient wrt y_pred), computed when it returns."""

    @abstractmethod
    def native(self, case: Case) -> tuple[str, LossFunction] | None:
        """The framework's own loss computing the case's mean, with its name; None if none."""

    @abstractmethod
    def compiled(self, module: types.ModuleType, loss_name: str, case: Case) -> LossFunction:
        """The generated module's native API, reduced to the batch's mean."""

    @abstractmethod
    def versions(self) -> dict[str, str]: ...

    def start_group(self) -> None:
        """Forget what earlier groups compiled (each group compiles its own variants)."""
        return None

    def inputs(self, case: Case, y_true: Array, y_pred: Array, dtype: str) -> tuple[Any, Any]:
        labels = self.integers(y_true) if case.integer_labels else self.floats(y_true, dtype)
        return labels, self.floats(y_pred, dtype)


class JaxFramework(Framework):
    name = "jax"

    def __init__(self) -> None:
        import jax
        import jax.numpy as jnp
        import optax

        self.jax, self.jnp, self.optax = jax, jnp, optax

    def floats(self, values: Array, dtype: str) -> Any:
        return self.jnp.asarray(values, dtype=dtype)

    def integers(self, values: Array) -> Any:
        return self.jnp.asarray(values, dtype=self.jnp.int32)

    def numpy(self, tensor: Any) -> Array:
        return np.asarray(self.jnp.asarray(tensor, self.jnp.float32), np.float64)

    def step(self, loss: LossFunction, mode: str) -> Callable[[Any, Any], tuple[Any, Any]]:
        jitted = self.jax.jit(self.jax.value_and_grad(lambda y_pred, y_true: loss(y_true, y_pred)))
        return lambda y_true, y_pred: self.jax.block_until_ready(jitted(y_pred, y_true))

    def native(self, case: Case) -> tuple[str, LossFunction] | None:
        optax, mean = self.optax, self.jnp.mean
        losses: dict[str, tuple[str, LossFunction]] = {
            "ce_logits": (
                "optax.softmax_cross_entropy",
                lambda y, z: mean(optax.softmax_cross_entropy(z, y)),
            ),
            "sparse_ce_logits": (
                "optax.softmax_cross_entropy_with_integer_labels",
                lambda y, z: mean(optax.softmax_cross_entropy_with_integer_labels(z, y)),
            ),
            "bce_logits": (
                "optax.sigmoid_binary_cross_entropy",
                lambda y, z: mean(optax.sigmoid_binary_cross_entropy(z, y)),
            ),
            "huber": ("optax.huber_loss", lambda y, p: mean(optax.huber_loss(p, y, delta=DELTA))),
            "focal_logits": (
                "optax.sigmoid_focal_loss",
                lambda y, z: mean(optax.sigmoid_focal_loss(z, y, alpha=ALPHA, gamma=GAMMA)),
            ),
        }
        losses["ce_logits_smoothing"] = losses["ce_logits"]
        return losses.get(case.name)

    def compiled(self, module: types.ModuleType, loss_name: str, case: Case) -> LossFunction:
        function = getattr(module, function_names(loss_name)[0])
        return lambda y_true, y_pred: self.jnp.mean(function(y_true, y_pred, **case.params))

    def versions(self) -> dict[str, str]:
        import jaxlib

        return {
            "jax": self.jax.__version__,
            "jaxlib": jaxlib.__version__,
            "optax": self.optax.__version__,
        }


class TorchFramework(Framework):
    name = "torch"

    def __init__(self) -> None:
        import torch
        import torch.nn.functional

        self.torch, self.functional = torch, torch.nn.functional

    def floats(self, values: Array, dtype: str) -> Any:
        return self.torch.tensor(values, dtype=getattr(self.torch, dtype))

    def integers(self, values: Array) -> Any:
        return self.torch.tensor(values, dtype=self.torch.int64)

    def numpy(self, tensor: Any) -> Array:
        return tensor.detach().to(self.torch.float64).numpy()

    def step(self, loss: LossFunction, mode: str) -> Callable[[Any, Any], tuple[Any, Any]]:
        torch = self.torch
        # The loss is compiled, not the step: torch.compile breaks the graph at
        # `requires_grad_` and `torch.autograd.grad`, and so compiled nothing of the
        # gradient when the whole step was compiled. Compiled this way, as a loss is in
        # a training step, AOTAutograd compiles its forward and backward passes.
        compiled = torch.compile(loss) if mode == "xla" else loss

        def value_and_gradient(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
            y_pred = y_pred.detach().requires_grad_(True)
            value = compiled(y_true, y_pred)
            (gradient,) = torch.autograd.grad(value, y_pred)
            return value.detach(), gradient

        return value_and_gradient

    def start_group(self) -> None:
        # dynamo keeps at most 8 compilations per code object, and the variants of every
        # case and shape share a few lambdas' code: without a reset, later groups ran eagerly
        self.torch._dynamo.reset()

    def focal(self, y: Any, z: Any) -> Any:
        """torchvision.ops.sigmoid_focal_loss's documented formula (torchvision is absent)."""
        p = self.torch.sigmoid(z)
        ce = self.functional.binary_cross_entropy_with_logits(z, y, reduction="none")
        p_t = p * y + (1 - p) * (1 - y)
        alpha_t = ALPHA * y + (1 - ALPHA) * (1 - y)
        return self.torch.mean(alpha_t * ce * (1 - p_t) ** GAMMA)

    def native(self, case: Case) -> tuple[str, LossFunction] | None:
        functional = self.functional
        losses: dict[str, tuple[str, LossFunction]] = {
            "ce_logits": ("F.cross_entropy", lambda y, z: functional.cross_entropy(z, y)),
            "sparse_ce_logits": ("F.cross_entropy", lambda y, z: functional.cross_entropy(z, y)),
            "bce_logits": (
                "F.binary_cross_entropy_with_logits",
                lambda y, z: functional.binary_cross_entropy_with_logits(z, y),
            ),
            "huber": ("F.huber_loss", lambda y, p: functional.huber_loss(p, y, delta=DELTA)),
            "focal_logits": ("torchvision sigmoid_focal_loss formula, by hand", self.focal),
        }
        losses["ce_logits_smoothing"] = losses["ce_logits"]
        return losses.get(case.name)

    def compiled(self, module: types.ModuleType, loss_name: str, case: Case) -> LossFunction:
        loss = getattr(module, function_names(loss_name)[2] + "Module")(**case.params)
        return lambda y_true, y_pred: loss(y_pred, y_true)  # forward(input, target)

    def versions(self) -> dict[str, str]:
        return {"torch": self.torch.__version__, "threads": str(self.torch.get_num_threads())}


class TensorFlowFramework(Framework):
    name = "tensorflow"

    def __init__(self) -> None:
        import bench_losses
        import tensorflow as tf

        self.tf, self.value_and_gradient = tf, bench_losses.value_and_gradient

    def floats(self, values: Array, dtype: str) -> Any:
        return self.tf.constant(values, dtype=dtype)

    def integers(self, values: Array) -> Any:
        return self.tf.constant(values, dtype=self.tf.int32)

    def numpy(self, tensor: Any) -> Array:
        return self.tf.cast(tensor, self.tf.float64).numpy()

    def step(self, loss: LossFunction, mode: str) -> Callable[[Any, Any], tuple[Any, Any]]:
        step = self.value_and_gradient(loss, jit_compile=mode == "xla")
        return lambda y_true, y_pred: step(y_true, y_pred)

    def native(self, case: Case) -> tuple[str, LossFunction] | None:
        nn, mean = self.tf.nn, self.tf.reduce_mean
        huber = self.tf.compat.v1.losses.huber_loss
        losses: dict[str, tuple[str, LossFunction]] = {
            "ce_logits": (
                "tf.nn.softmax_cross_entropy_with_logits",
                lambda y, z: mean(nn.softmax_cross_entropy_with_logits(labels=y, logits=z)),
            ),
            "sparse_ce_logits": (
                "tf.nn.sparse_softmax_cross_entropy_with_logits",
                lambda y, z: mean(nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=z)),
            ),
            "bce_logits": (
                "tf.nn.sigmoid_cross_entropy_with_logits",
                lambda y, z: mean(nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z)),
            ),
            "huber": (
                "tf.compat.v1.losses.huber_loss",
                lambda y, p: huber(y, p, delta=DELTA, reduction="weighted_mean"),
            ),
        }
        losses["ce_logits_smoothing"] = losses["ce_logits"]
        return losses.get(case.name)

    def compiled(self, module: types.ModuleType, loss_name: str, case: Case) -> LossFunction:
        function = getattr(module, function_names(loss_name)[0])
        return lambda y_true, y_pred: self.tf.reduce_mean(function(y_true, y_pred, **case.params))

    def versions(self) -> dict[str, str]:
        return {"tensorflow": self.tf.__version__}


def framework_named(name: str) -> Framework:
    frameworks: dict[str, Callable[[], Framework]] = {
        "jax": JaxFramework,
        "torch": TorchFramework,
        "tensorflow": TensorFlowFramework,
    }
    return frameworks[name]()


def variants(framework: Framework, case: Case, mode: str, dtype: str) -> dict[str, LossFunction]:
    """The compiled loss (native API and Keras class), the native loss and Keras's built-in."""
    import keras

    module, loss_name = generated_module(case, framework.name, jit_compile=mode == "xla")
    keras_class = getattr(module, function_names(loss_name)[2])
    built = {
        COMPILED: framework.compiled(module, loss_name, case),
        COMPILED_KERAS: keras_class(**case.params, dtype=dtype),
    }
    native = framework.native(case)
    if native is not None:
        built[NATIVE] = native[1]
    built[KERAS] = getattr(keras.losses, case.keras_loss)(**case.keras_arguments, dtype=dtype)
    return built


# ---------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Timing:
    """One variant of one case at one shape and mode: medians over interleaved rounds."""

    backend: str
    case: str
    shape: tuple[int, int]
    mode: str
    variant: str
    median_ms: float
    ratio_to_native: float | None  # median over rounds of (this variant / native), same round
    ratio_to_keras: float  # median over rounds of (this variant / Keras's built-in)


@dataclass(frozen=True)
class Summary:
    """The like-for-like ratios of one case, shape and mode: the targets' figures."""

    backend: str
    case: str
    shape: tuple[int, int]
    mode: str
    native: str | None  # the native loss's name
    compiled_ms: float
    native_ms: float | None
    compiled_to_native: float | None  # lossdsl (native API) / native loss
    keras_ms: float
    compiled_to_keras: float  # lossdsl-keras (the module's Keras class) / Keras's built-in
    value_error: dict[str, float]  # each variant's relative difference from lossdsl, timed mode
    gradient_error: dict[str, float]  # relative to the largest gradient entry


@dataclass(frozen=True)
class Finiteness:
    """Non-finite entries of value and gradient on the edge grid, or why it could not run."""

    backend: str
    case: str
    dtype: str
    mode: str
    variant: str
    non_finite: int
    entries: int
    error: str = ""


class Disagreement(Exception):
    """A variant does not compute the compiled loss's function at the benchmark's inputs."""


def differences(
    framework: Framework, steps: dict[str, Callable[..., Any]], arguments: tuple[Any, Any]
) -> tuple[dict[str, float], dict[str, float]]:
    """Each variant's value and gradient error against lossdsl's (relative; of the largest)."""
    outputs = {
        name: tuple(framework.numpy(x) for x in step(*arguments)) for name, step in steps.items()
    }
    value, gradient = outputs[COMPILED]
    scale = max(float(np.max(np.abs(gradient))), np.finfo(np.float32).tiny)
    value_errors, gradient_errors = {}, {}
    for name, (other_value, other_gradient) in outputs.items():
        value_errors[name] = float(abs(other_value - value) / max(abs(value), 1e-30))
        gradient_errors[name] = float(np.max(np.abs(other_gradient - gradient)) / scale)
    return value_errors, gradient_errors


def check_agreement(
    framework: Framework, case: Case, shape: tuple[int, int], arguments: Any, mode: str
) -> None:
    """Raise Disagreement unless every variant computes the compiled loss's function.

    Checked without a compiler where the backend runs without one (TensorFlow's graph
    mode, PyTorch's eager mode), as bench_library.py does: XLA's CPU reductions add
    float32 terms in another order: with XLA at 256x32000, TensorFlow's native binary
    cross-entropy (one `tf.reduce_mean` of 8,192,000 terms) and the compiled loss (a mean
    per sample, then over the batch) differed by 2.35e-4. JAX runs under jax.jit only.
    """
    check = "graph" if "graph" in MODE_NAMES[framework.name] else mode
    built = variants(framework, case, check, "float32")
    steps = {name: framework.step(loss, check) for name, loss in built.items()}
    value_errors, gradient_errors = differences(framework, steps, arguments)
    for name in steps:
        if value_errors[name] > TOLERANCE or gradient_errors[name] > TOLERANCE:
            raise Disagreement(
                f"{framework.name} {case.name} at {shape_name(shape)} "
                f"({mode_name(framework, check)}): {name} does not compute the compiled loss's "
                f"function: value off by {value_errors[name]:.2e} (relative), gradient by "
                f"{gradient_errors[name]:.2e} of its largest entry; both must be at most "
                f"{TOLERANCE:g}"
            )


def benchmark_group(
    framework: Framework, case: Case, shape: tuple[int, int], mode: str, repeats: int, warmup: int
) -> tuple[list[Timing], Summary]:
    batch, num_classes = shape
    y_true, y_pred = case.typical_inputs(np.random.default_rng(0), batch, num_classes)
    arguments = framework.inputs(case, y_true, y_pred, "float32")
    framework.start_group()
    built = variants(framework, case, mode, "float32")
    steps = {name: framework.step(loss, mode) for name, loss in built.items()}
    value_errors, gradient_errors = differences(framework, steps, arguments)
    check_agreement(framework, case, shape, arguments, mode)
    seconds = time_interleaved(steps, arguments, repeats, warmup)
    timings = [
        Timing(
            backend=framework.name,
            case=case.name,
            shape=shape,
            mode=mode_name(framework, mode),
            variant=name,
            median_ms=1e3 * statistics.median(times),
            ratio_to_native=paired_ratio(times, seconds[NATIVE]) if NATIVE in seconds else None,
            ratio_to_keras=paired_ratio(times, seconds[KERAS]),
        )
        for name, times in seconds.items()
    ]
    by_variant = {timing.variant: timing for timing in timings}
    native = framework.native(case)
    summary = Summary(
        backend=framework.name,
        case=case.name,
        shape=shape,
        mode=mode_name(framework, mode),
        native=native[0] if native else None,
        compiled_ms=by_variant[COMPILED].median_ms,
        native_ms=by_variant[NATIVE].median_ms if NATIVE in by_variant else None,
        compiled_to_native=by_variant[COMPILED].ratio_to_native,
        keras_ms=by_variant[KERAS].median_ms,
        compiled_to_keras=by_variant[COMPILED_KERAS].ratio_to_keras,
        value_error=value_errors,
        gradient_error=gradient_errors,
    )
    return timings, summary


def finiteness_rows(framework: Framework, case: Case, dtype: str, mode: str) -> list[Finiteness]:
    """Every variant's non-finite value and gradient entries on the edge grid (10 classes)."""
    y_true, y_pred = case.edge_inputs(10)
    rows = []
    for name, loss in variants(framework, case, mode, dtype).items():
        counts: dict[str, Any] = {"non_finite": 0, "entries": 0}
        try:
            outputs = framework.step(loss, mode)(*framework.inputs(case, y_true, y_pred, dtype))
            for output in (framework.numpy(x) for x in outputs):
                counts["non_finite"] += int((~np.isfinite(output)).sum())
                counts["entries"] += int(np.size(output))
        except Exception as error:  # an op the backend lacks in this dtype on this device
            counts["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
        rows.append(
            Finiteness(
                backend=framework.name,
                case=case.name,
                dtype=dtype,
                mode=mode_name(framework, mode),
                variant=name,
                **counts,
            )
        )
    return rows


# ---------------------------------------------------------------------- report


def mode_name(framework: Framework, mode: str) -> str:
    return MODE_NAMES[framework.name][mode]


def shape_name(shape: Sequence[int]) -> str:
    return f"{shape[0]}x{shape[1]}"


def ratio_text(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}"


def timing_table(timings: Sequence[Timing]) -> str:
    lines = [
        f"{'backend':<10} {'case':<20} {'shape':<9} {'mode':<7} {'variant':<13} "
        f"{'median ms':>10} {'/native':>7} {'/keras':>7}"
    ]
    for t in timings:
        lines.append(
            f"{t.backend:<10} {t.case:<20} {shape_name(t.shape):<9} {t.mode:<7} {t.variant:<13} "
            f"{t.median_ms:>10.3f} {ratio_text(t.ratio_to_native):>7} {t.ratio_to_keras:>7.2f}"
        )
    return "\n".join(lines)


def summary_table(summaries: Sequence[dict[str, Any]]) -> str:
    lines = [
        f"{'backend':<10} {'case':<20} {'shape':<9} {'mode':<7} {'lossdsl ms':>10} "
        f"{'native ms':>9} {'/native':>7} {'keras ms':>9} {'/keras':>7}  native loss"
    ]
    for s in summaries:
        native_ms = "-" if s["native_ms"] is None else f"{s['native_ms']:.3f}"
        lines.append(
            f"{s['backend']:<10} {s['case']:<20} {shape_name(s['shape']):<9} {s['mode']:<7} "
            f"{s['compiled_ms']:>10.3f} {native_ms:>9} {ratio_text(s['compiled_to_native']):>7} "
            f"{s['keras_ms']:>9.3f} {s['compiled_to_keras']:>7.2f}  {s['native'] or '-'}"
        )
    return "\n".join(lines)


def overall_table(summaries: Sequence[dict[str, Any]]) -> str:
    """Median and worst of both ratios per backend and mode."""
    lines = [
        f"{'backend':<10} {'mode':<7} {'groups':>6} {'/native median':>14} {'worst':>6} "
        f"{'/keras median':>13} {'worst':>6}"
    ]
    groups = sorted({(s["backend"], s["mode"]) for s in summaries}, key=str)
    for backend, mode in groups:
        rows = [s for s in summaries if (s["backend"], s["mode"]) == (backend, mode)]
        to_native = [s["compiled_to_native"] for s in rows if s["compiled_to_native"] is not None]
        to_keras = [s["compiled_to_keras"] for s in rows]
        native_median = statistics.median(to_native) if to_native else None
        lines.append(
            f"{backend:<10} {mode:<7} {len(rows):>6} {ratio_text(native_median):>14} "
            f"{ratio_text(max(to_native, default=None)):>6} "
            f"{statistics.median(to_keras):>13.2f} {max(to_keras):>6.2f}"
        )
    return "\n".join(lines)


def finiteness_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [f"{'backend':<10} {'dtype':<9} {'mode':<7} {'variant':<13} {'non-finite (cases)':>19}"]
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["backend"], row["dtype"], row["mode"], row["variant"]), []).append(
            row
        )
    for (backend, dtype, mode, variant), group in groups.items():
        failed = [f"{row['case']}: {row['error']}" for row in group if row["error"]]
        counted = [row for row in group if not row["error"]]
        bad = sum(row["non_finite"] for row in counted)
        total = sum(row["entries"] for row in counted)
        lines.append(
            f"{backend:<10} {dtype:<9} {mode:<7} {variant:<13} "
            f"{f'{bad}/{total} ({len(counted)})':>19}"
            + (f"   not run: {'; '.join(failed)}" if failed else "")
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------- command line


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time compiled lossdsl losses on JAX, PyTorch and TensorFlow against each "
        "framework's native loss and Keras's built-in on that backend (forward + backward, "
        "interleaved), one process per backend, and count non-finite results on an edge grid."
    )
    parser.add_argument(
        "--backends",
        type=lambda text: [name.strip() for name in text.split(",")],
        default=list(BACKENDS),
        help=f"comma-separated backends (default {','.join(BACKENDS)})",
    )
    parser.add_argument(
        "--shapes",
        type=parse_shapes,
        help="comma-separated BATCHxCLASSES (default 4096x10,1024x256,256x32000)",
    )
    add_run_arguments(parser, CASES, f"all: {','.join(CASES)}", "64x10,16x100", DEFAULT_OUT)
    parser.add_argument(
        "--edge",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also the edge-grid finiteness check (default on)",
    )
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    arguments = checked_run_arguments(parser, parser.parse_args(argv), CASES)
    unknown = [name for name in arguments.backends if name not in BACKENDS]
    if unknown:
        parser.error(f"unknown backend {unknown[0]!r}; known: {', '.join(BACKENDS)}")
    arguments.shapes = arguments.shapes or list(QUICK_SHAPES if arguments.quick else FULL_SHAPES)
    return arguments


def run_worker(arguments: argparse.Namespace) -> int:
    """One backend's whole run, in this process (its KERAS_BACKEND set by the caller)."""
    framework = framework_named(arguments.worker)
    modes = [mode for mode in arguments.modes if mode in MODE_NAMES[framework.name]]
    cases = [CASES[name] for name in arguments.cases]
    timings: list[Timing] = []
    summaries: list[Summary] = []
    finiteness: list[Finiteness] = []
    started = time.perf_counter()
    try:
        for shape in arguments.shapes:
            for case in cases:
                for mode in modes:
                    group_timings, summary = benchmark_group(
                        framework, case, shape, mode, arguments.repeats, arguments.warmup
                    )
                    timings += group_timings
                    summaries.append(summary)
                    print(timing_table(group_timings) + "\n", flush=True)
    except Disagreement as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if arguments.edge and modes:
        for case in cases:
            for dtype in EDGE_DTYPES:
                finiteness += finiteness_rows(framework, case, dtype, modes[0])
    report = {
        "backend": framework.name,
        "versions": framework.versions(),
        "modes": [mode_name(framework, mode) for mode in modes],
        "seconds": time.perf_counter() - started,
        "timings": [asdict(timing) for timing in timings],
        "summary": [asdict(summary) for summary in summaries],
        "finiteness": [asdict(row) for row in finiteness],
    }
    arguments.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


def worker_command(arguments: argparse.Namespace, backend: str, out: Path) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        backend,
        "--cases",
        ",".join(arguments.cases),
        "--shapes",
        ",".join(shape_name(shape) for shape in arguments.shapes),
        "--modes",
        ",".join(arguments.modes),
        "--repeats",
        str(arguments.repeats),
        "--warmup",
        str(arguments.warmup),
        "--edge" if arguments.edge else "--no-edge",
        "--out",
        str(out),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if arguments.worker:
        return run_worker(arguments)
    started = time.perf_counter()
    reports = []
    with tempfile.TemporaryDirectory() as directory:
        for backend in arguments.backends:
            out = Path(directory) / f"{backend}.json"
            environment = {
                # PyTorch's OpenMP threads spin while waiting: on a loaded machine a small
                # op then takes a time slice (16 ms instead of 0.08 ms at 64x10 on 2 cores)
                "OMP_WAIT_POLICY": "PASSIVE",
                **os.environ,
                "KERAS_BACKEND": backend,
                "PYTHONPATH": os.pathsep.join(
                    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
                ),
            }
            print(f"== {backend} (KERAS_BACKEND={backend}, its own process)", flush=True)
            command = worker_command(arguments, backend, out)
            status = subprocess.run(command, env=environment, check=False).returncode
            if status != 0:
                print(f"error: the {backend} run failed (exit status {status})", file=sys.stderr)
                return 1
            reports.append(json.loads(out.read_text(encoding="utf-8")))
    summaries = [row for report in reports for row in report["summary"]]
    finiteness = [row for report in reports for row in report["finiteness"]]
    timings = [row for report in reports for row in report["timings"]]
    print("Timings (median ms of the mean loss and its gradient; ratios are paired medians)")
    print(timing_table([Timing(**{**t, "shape": tuple(t["shape"])}) for t in timings]) + "\n")
    print("lossdsl / native loss (module's native API) and lossdsl-keras / Keras built-in")
    print(summary_table(summaries) + "\n")
    print("Per backend and mode: median and worst ratio")
    print(overall_table(summaries) + "\n")
    if finiteness:
        print("Non-finite values and gradients on bench_losses.py's edge grid")
        print(finiteness_table(finiteness) + "\n")
    elapsed = time.perf_counter() - started
    print(f"total {elapsed:.0f} s")
    report = {
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        },
        "settings": {
            "backends": arguments.backends,
            "shapes": arguments.shapes,
            "cases": arguments.cases,
            "modes": arguments.modes,
            "repeats": arguments.repeats,
            "warmup": arguments.warmup,
        },
        "seconds": elapsed,
        "backends": reports,
    }
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {arguments.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
