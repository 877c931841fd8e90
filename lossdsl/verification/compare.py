"""The generated function run in float64 (`run_candidate`), compared with the reference: E9xx."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lossdsl.codegen.targets import DEFAULT_TARGET
from lossdsl.codes import GENERATED_FUNCTION_FAILED, GRADIENT_DISAGREES, VALUE_DISAGREES
from lossdsl.diagnostics import Diagnostic, error
from lossdsl.kinds import KINDS
from lossdsl.symbolic.loss import SymbolicLoss
from lossdsl.verification.layouts import Draw
from lossdsl.verification.reference import Reference

RTOL = 1e-6
"""Relative tolerance between the float64 candidate and the exact reference."""

ATOL = 1e-9
"""Absolute tolerance, scaled by the largest finite reference magnitude of the tensor."""

BUG_HELP = "this is a bug in lossdsl, please report it with the spec"


@dataclass(frozen=True)
class Candidate:
    """The generated function's float64 value and gradient at one draw, or why it failed."""

    values: np.ndarray | None
    gradient: np.ndarray | None
    failure: str | None


def run_candidate(
    per_sample_function: Callable[..., Any],
    draw: Draw,
    arguments: Mapping[str, float | tuple[float, ...]],
    output_shape: tuple[int, ...],
    target: str = DEFAULT_TARGET,
) -> Candidate:
    """The generated function's value and gradient of sum(cotangent * result) in float64.

    `arguments` are the params' values by their Python names (`codegen.names.python_names`).
    The gradient is the target's own: `tf.GradientTape`, `jax.vjp` (64-bit types enabled
    for this call only) or PyTorch's autograd.
    """
    runner = {"tensorflow": _run_tensorflow, "jax": _run_jax, "torch": _run_torch}[target]
    try:
        values, gradient = runner(per_sample_function, draw, arguments, output_shape)
    except WrongShape as wrong:
        return Candidate(
            None,
            None,
            f"it returned shape {_shape_text(wrong.shape)}, expected {_shape_text(output_shape)}",
        )
    except Exception as failure:  # the generated code's own error is the diagnostic
        message = str(failure).strip().splitlines()
        return Candidate(
            None, None, f"it raised {type(failure).__name__}: {message[0] if message else ''}"
        )
    gradient_values = np.zeros(draw.y_pred.shape) if gradient is None else np.asarray(gradient)
    return Candidate(np.asarray(values, dtype=np.float64), gradient_values, None)


class WrongShape(Exception):
    """The generated function returned another shape than the expected one."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__(shape)
        self.shape = shape


def _checked_shape(result: Any, output_shape: tuple[int, ...]) -> None:
    shape = tuple(result.shape)
    if shape != output_shape:
        raise WrongShape(shape)


Arguments = Mapping[str, float | tuple[float, ...]]

Run = tuple[Any, Any]
"""A candidate's values and gradient with respect to y_pred (None: y_pred does not reach
the result), as arrays NumPy reads."""


def _run_tensorflow(
    function: Callable[..., Any], draw: Draw, arguments: Arguments, output_shape: tuple[int, ...]
) -> Run:
    import tensorflow as tf

    true_dtype = tf.int32 if draw.y_true.dtype.kind == "i" else tf.float64
    y_true = tf.constant(draw.y_true, dtype=true_dtype)
    y_pred = tf.constant(draw.y_pred, dtype=tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(y_pred)
        result = function(y_true, y_pred, **arguments)
        _checked_shape(result, output_shape)
        objective = tf.reduce_sum(tf.constant(draw.cotangent, tf.float64) * result)
    gradient = tape.gradient(objective, y_pred)
    return result.numpy(), None if gradient is None else gradient.numpy()


def _run_jax(
    function: Callable[..., Any], draw: Draw, arguments: Arguments, output_shape: tuple[int, ...]
) -> Run:
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):  # for this call only: the users' x64 flag is left alone
        true_dtype = jnp.int32 if draw.y_true.dtype.kind == "i" else jnp.float64
        y_true = jnp.asarray(draw.y_true, dtype=true_dtype)
        y_pred = jnp.asarray(draw.y_pred, dtype=jnp.float64)
        arrays = {
            name: jnp.asarray(value, jnp.float64) if isinstance(value, tuple) else value
            for name, value in arguments.items()
        }
        result, pullback = jax.vjp(lambda pred: function(y_true, pred, **arrays), y_pred)
        _checked_shape(result, output_shape)
        (gradient,) = pullback(jnp.asarray(draw.cotangent, dtype=result.dtype))
        return np.asarray(result), np.asarray(gradient)


def _run_torch(
    function: Callable[..., Any], draw: Draw, arguments: Arguments, output_shape: tuple[int, ...]
) -> Run:
    import torch

    true_dtype = torch.int64 if draw.y_true.dtype.kind == "i" else torch.float64
    y_true = torch.tensor(draw.y_true, dtype=true_dtype)
    y_pred = torch.tensor(draw.y_pred, dtype=torch.float64, requires_grad=True)
    tensors = {
        name: torch.tensor(value, dtype=torch.float64) if isinstance(value, tuple) else value
        for name, value in arguments.items()
    }
    result = function(y_true, y_pred, **tensors)
    _checked_shape(result, output_shape)
    if not result.requires_grad:
        return result.numpy(), None
    objective = (torch.tensor(draw.cotangent, dtype=torch.float64) * result).sum()
    (gradient,) = torch.autograd.grad(objective, y_pred, allow_unused=True)
    return result.detach().numpy(), None if gradient is None else gradient.numpy()


@dataclass(frozen=True)
class Mismatch:
    """The worst disagreeing element of a tensor: its index and both values."""

    index: tuple[int, ...]
    expected: float
    actual: float


def worst_mismatch(
    expected: np.ndarray, actual: np.ndarray, skipped: frozenset[tuple[int, ...]]
) -> Mismatch | None:
    """The element that disagrees most, or None when every compared element agrees.

    A finite reference needs a finite candidate within RTOL, ATOL (ATOL scaled by the
    largest finite reference magnitude); an infinite reference the same infinity; an
    undefined (NaN) reference is not compared.
    """
    finite = np.isfinite(expected)
    scale = max(1.0, float(np.max(np.abs(expected[finite]), initial=0.0)))
    worst: tuple[float, Mismatch] | None = None
    for index in np.ndindex(expected.shape):
        if index in skipped or math.isnan(expected[index]):
            continue
        want, got = float(expected[index]), float(actual[index])
        if math.isinf(want):
            badness = 0.0 if want == got else math.inf
        elif not math.isfinite(got):
            badness = math.inf
        else:
            badness = abs(got - want) / (ATOL * scale + RTOL * abs(want))
        if badness > 1.0 and (worst is None or badness > worst[0]):
            worst = (badness, Mismatch(index, want, got))
    return None if worst is None else worst[1]


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(size) for size in shape) + "]"


def _values_text(values: np.ndarray) -> str:
    """Up to 8 values, exactly as float64 holds them."""
    flat = np.ravel(values)
    shown = ", ".join(f"{value:.17g}" for value in flat[:8].tolist())
    return "[" + shown + (", ...]" if flat.size > 8 else "]")


def _inputs_text(symbolic: SymbolicLoss, draw: Draw, prefix: tuple[int, ...]) -> str:
    """The y_true and y_pred values under the leading coordinates `prefix`."""
    checked = symbolic.checked
    labels_shape = draw.layout.shape[:-1]
    true_values = (
        draw.y_true.reshape(labels_shape) if KINDS[checked.y_true.kind].class_ids else draw.y_true
    )
    where = f"at {_shape_text(prefix)}" if prefix else "in the batch"
    return (
        f"inputs {where}: {checked.y_true.name} = {_values_text(true_values[prefix])}, "
        f"{checked.y_pred.name} = {_values_text(draw.y_pred[prefix])}"
    )


def compare(symbolic: SymbolicLoss, exact: Reference, candidate: Candidate) -> Iterator[Diagnostic]:
    """E9xx: the candidate failed, or its worst value or gradient element disagrees with the
    exact reference (one diagnostic each)."""
    draw = exact.draw
    span = symbolic.checked.loss_span
    if candidate.failure is not None or candidate.values is None or candidate.gradient is None:
        yield error(
            GENERATED_FUNCTION_FAILED,
            f"the generated loss function failed on {draw.description}: {candidate.failure}",
            span,
            "generated from this loss",
            BUG_HELP,
        )
        return
    value = worst_mismatch(exact.values, candidate.values, exact.skipped_outputs)
    if value is not None:
        yield error(
            VALUE_DISAGREES,
            f"the generated code's loss value disagrees with SymPy's on {draw.description}",
            span,
            "verification failed for this loss",
            f"at result element {_shape_text(value.index)}: SymPy gives {value.expected:.17g}, "
            f"the generated code {value.actual:.17g}",
            _inputs_text(symbolic, draw, value.index[: draw.y_pred.ndim - 1]),
            BUG_HELP,
        )
    gradient = worst_mismatch(exact.gradient, candidate.gradient, exact.skipped_gradient)
    if gradient is not None:
        name = symbolic.checked.y_pred.name
        yield error(
            GRADIENT_DISAGREES,
            f"the generated code's gradient disagrees with SymPy's on {draw.description}",
            span,
            "verification failed for this loss",
            f"d(sum(cotangent * loss))/d{name}{_shape_text(gradient.index)}: SymPy gives "
            f"{gradient.expected:.17g}, the generated code {gradient.actual:.17g}",
            _inputs_text(symbolic, draw, gradient.index[:-1]),
            BUG_HELP,
        )
