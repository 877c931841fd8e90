"""The JAX and PyTorch helpers: the TensorFlow helpers' values, gradients and errors."""

from __future__ import annotations

import ast
import importlib
import inspect
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from backend_modules import generated, loss_function

from lossdsl.builtins import BUILTINS
from lossdsl.codegen import tensorflow_helpers
from lossdsl.codegen.helpers import (
    COMMON_HELPERS_MODULE,
    HELPERS,
    module_functions,
    target_helpers,
)
from lossdsl.compiler import compile_source
from lossdsl.diagnostics import LossSpecWarning
from lossdsl.source import SourceFile

CODEGEN = Path(__file__).resolve().parents[1] / "lossdsl" / "codegen"
LINE_LENGTH = 88

REQUIRED = {
    "_softplus_pair",
    "_softplus_pair_same_shape",
    "_clip",
    "_clipped_log",
    "_huber",
    "_per_class",
    "_other",
    "_paired",
    "_check_channels",
    "_pair_dot",
    "_pair_rows",
    "_pair_result",
    "_pair_squared_distance",
    "_softmax_cross_entropy",
    "_sparse_softmax_cross_entropy",
    "_into_channels",
    "_channels_joined",
}
"""The helpers every backend defines: issue 16's list, TensorFlow's names."""

EDGES = [-1e4, -100.0, -20.0, -1.0, 0.0, 1e-30, 1.0, 20.0, 100.0, 1e4]
"""The edge grid of x."""

FLOAT64 = 1e-12
"""The relative tolerance against TensorFlow in float64: a few thousand ulps, for sigmoid,
log1p and logsumexp kernels that round differently and products summed in other orders."""

Call = Callable[..., Any]
"""A computation on one backend: (helper module, *arrays) -> an array."""


# ---------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    """A helper call with its inputs (float64 or integer arrays), the positions of the
    inputs it is differentiated with respect to, and, where the TensorFlow helper is not
    the reference, the TensorFlow computation that is."""

    name: str
    call: Call
    inputs: tuple[np.ndarray, ...]
    differentiate: tuple[int, ...]
    reference: Call | None = None


def probabilities_at(low: float, high: float) -> np.ndarray:
    """Probabilities, the clip bounds exactly, outside values and NaN, in float64."""
    inside = np.random.default_rng(1).uniform(0.0, 1.0, 8)
    grid = [0.0, 1e-30, low, high, 0.5, 1.0, -1.0, 2.0, float("nan"), *EDGES]
    return np.array([*grid, *inside])


def select_huber(_: object, x: tf.Tensor, delta: tf.Tensor) -> tf.Tensor:
    """The Huber loss as a select, differentiated by TensorFlow: the reference for a delta
    that is an array, whose gradient the TensorFlow helper does not write out."""
    size = tf.math.abs(x)
    return tf.where(size <= delta, 0.5 * tf.math.square(x), delta * (size - 0.5 * delta))


def tensorflow_dense(_: object, labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """TensorFlow's categorical cross-entropy on logits, the class axis kept: the labels'
    gradient is -log_softmax(logits), as F.cross_entropy's, where the TensorFlow XLA
    helper's is -logits (the same along rows that sum to 1)."""
    loss = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.expand_dims(loss, -1)


def tensorflow_sparse(_: object, labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """TensorFlow's sparse categorical cross-entropy on logits, the class axis kept."""
    classes = tf.cast(labels[..., 0], tf.int32)
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(classes, logits)
    return tf.expand_dims(loss, -1)


def direct_squared_distance(_: object, a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """sum over the classes of (a - other(b))^2 as written, a [B, B', C] difference."""
    return tf.reduce_sum(tf.square(a - tf.transpose(b, [1, 0, 2])), -1, keepdims=True)


def make_cases() -> list[Case]:
    rng = np.random.default_rng(0)
    x = np.stack([EDGES, rng.normal(0, 20, 10), rng.normal(0, 1, 10)])
    weights = rng.uniform(0.1, 3.0, (3, 1))
    same_shape = [rng.uniform(0.0, 3.0, x.shape), rng.uniform(0.0, 3.0, x.shape), x]
    residuals = np.concatenate([EDGES, [-1.5, 1.5, -1.0, 1.0], rng.normal(0, 2, 8)])
    logits = rng.normal(0, 3, (5, 7))
    logits[0] = [1e4, -1e4, 0.0, 20.0, -20.0, 100.0, -100.0]
    logits[1] = [-1e4, 0.0, 1e-30, 1.0, -1.0, 1e4, 1e4]
    soft_labels = rng.dirichlet(np.ones(7), 5)
    soft_labels[2] = np.eye(7)[3]
    labels = np.array([[0.0], [6.0], [1.0], [5.0], [3.0]])  # as Keras converts y_true
    rows = rng.normal(0, 2, (4, 1, 6))
    other_rows = rng.normal(0, 2, (3, 1, 6))
    # far from 0 and close together, one row twice: the norms that cancel are large
    clustered_rows = 10.0 + rng.normal(0, 0.01, (5, 1, 6))
    clustered_rows[4] = clustered_rows[1]
    cases = [
        Case(
            "softplus_pair",
            lambda h, a, b, x: h._softplus_pair(a, b, x),
            (weights, np.array(1.5), x),
            (0, 1, 2),
        ),
        Case(
            "softplus_pair_same_shape",
            lambda h, a, b, x: h._softplus_pair_same_shape(a, b, x),
            tuple(same_shape),
            (0, 1, 2),
        ),
        Case(
            "huber_delta_array",
            lambda h, x, delta: h._huber(x, delta),
            (residuals, np.array(1.5)),
            (0, 1),
            reference=select_huber,
        ),
        Case(
            "softmax_cross_entropy",
            lambda h, labels, logits: h._softmax_cross_entropy(labels, logits),
            (soft_labels, logits),
            (0, 1),
            reference=tensorflow_dense,
        ),
        Case(
            "sparse_softmax_cross_entropy",
            lambda h, labels, logits: h._sparse_softmax_cross_entropy(labels, logits),
            (labels, logits),
            (1,),
            reference=tensorflow_sparse,
        ),
        Case(
            "pair_dot",
            lambda h, a, b: h._pair_dot(a, b, 1),
            (rows, other_rows),
            (0, 1),
        ),
        Case(
            "pair_dot_partner_2",
            lambda h, a, b: h._pair_dot(a[:, :, None], b[:, :, None], 2),
            (rows, other_rows),
            (0, 1),
        ),
        Case(
            "pair_squared_distance",
            lambda h, a, b: h._pair_squared_distance(a, b, 1),
            (rows, other_rows),
            (0, 1),
            reference=direct_squared_distance,
        ),
        Case(
            "pair_squared_distance_within",
            lambda h, a: h._pair_squared_distance(a, None, 1),
            (clustered_rows,),
            (0,),
            reference=lambda h, a: direct_squared_distance(h, a, a),
        ),
        Case("other", lambda h, x: h._other(x, 1), (rows,), (0,)),
        Case("other_partner_2", lambda h, x: h._other(x[:, :, None], 2), (rows,), (0,)),
        Case(
            "paired",
            lambda h, t, p: h._paired(t, p, 2, "nt_xent")[0] * h._paired(t, p, 1, "a")[1],
            (rows[:, 0], rows[:, 0] ** 2),
            (0, 1),
        ),
        Case(
            "check_channels",
            lambda h, x: h._check_channels(x, 6, "y_pred", "y_pred[5]"),
            (rows,),
            (0,),
        ),
        Case(
            "per_class",
            lambda h, values, y: h._per_class(values, y, "alpha") * y,
            (np.array([0.25, 0.5, 1.0, 2.0, 0.0, 3.0]), rows[:, 0]),
            (0, 1),
        ),
    ]
    for a, b in [(0.0, 1.0), (2.0, 0.0), (2.0, 1.0)]:
        cases.append(
            Case(
                f"softplus_pair_numbers_{a}_{b}",
                lambda h, x, a=a, b=b: h._softplus_pair(a, b, x),
                (x,),
                (0,),
            )
        )
    for low, high in [(1e-7, 1.0 - 1e-7), (0.25, 0.75), (0.75, 0.25)]:
        for name in ["clip", "clipped_log"]:
            cases.append(
                Case(
                    f"{name}_{low}_{high}",
                    lambda h, x, name=name, low=low, high=high: getattr(h, f"_{name}")(
                        x, low, high
                    ),
                    (probabilities_at(low, high),),
                    (0,),
                )
            )
    for delta in [1.0, 1.5]:
        cases.append(
            Case(
                f"huber_{delta}",
                lambda h, x, delta=delta: h._huber(x, delta),
                (residuals,),
                (0,),
            )
        )
    return cases + many_classes_cases()


def many_classes_cases() -> list[Case]:
    """The cross-entropies over 20 and 70 classes, where PyTorch's helpers take
    log_softmax's fused kernels (from 16 classes) and JAX's take jax.nn.logsumexp (from
    64): each form must agree with TensorFlow."""
    rng = np.random.default_rng(4)
    cases = []
    for classes in (20, 70):
        logits = rng.normal(0, 3, (4, classes))
        logits[0, :7] = [1e4, -1e4, 0.0, 20.0, -20.0, 100.0, -100.0]
        logits[1, :7] = [-1e4, 0.0, 1e-30, 1.0, -1.0, 1e4, 1e4]
        soft_labels = rng.dirichlet(np.ones(classes), 4)
        soft_labels[2] = np.eye(classes)[13]
        labels = np.array([[0.0], [classes - 1.0], [13.0], [5.0]])
        cases += [
            Case(
                f"softmax_cross_entropy_{classes}_classes",
                lambda h, labels, logits: h._softmax_cross_entropy(labels, logits),
                (soft_labels, logits),
                (0, 1),
                reference=tensorflow_dense,
            ),
            Case(
                f"sparse_softmax_cross_entropy_{classes}_classes",
                lambda h, labels, logits: h._sparse_softmax_cross_entropy(labels, logits),
                (labels, logits),
                (1,),
                reference=tensorflow_sparse,
            ),
        ]
    return cases


CASES = make_cases()


def upstream_for(value: np.ndarray) -> np.ndarray:
    """The gradient flowing into a value: varied, so that no term is tested only at 1."""
    return np.random.default_rng(2).uniform(0.5, 2.0, value.shape)


def tensorflow_value_and_gradients(
    case: Case, upstream: np.ndarray | None = None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The reference in float64: the TensorFlow helper (or the case's reference), with
    the gradients that `upstream` (default: `upstream_for` the value) pulls back."""
    tensors = [tf.constant(array) for array in case.inputs]
    reference = case.reference or case.call
    with tf.GradientTape() as tape:
        tape.watch([tensors[index] for index in case.differentiate])
        value = reference(tensorflow_helpers, *tensors)
    if upstream is None:
        upstream = upstream_for(value.numpy())
    gradients = tape.gradient(
        value,
        [tensors[index] for index in case.differentiate],
        output_gradients=tf.constant(upstream, value.dtype),
    )
    return value.numpy(), [gradient.numpy() for gradient in gradients]


# ---------------------------------------------------------------------- the backends


class Backend:
    """One backend's helper module and how to evaluate a case on it."""

    name: str
    helpers: ModuleType
    low_precision: tuple[str, ...]

    def value_and_gradients(
        self, case: Case, dtype: str, upstream: np.ndarray, helpers: object = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The case's value and the gradients `upstream` pulls back, float inputs cast
        to `dtype`, as float64 NumPy arrays; the value's dtype is checked to be `dtype`."""
        raise NotImplementedError


class JaxBackend(Backend):
    """Under `jax.jit`, in float64 with x64 enabled, as the verifier runs it."""

    name = "jax"
    low_precision = ("float32", "float16", "bfloat16")

    def __init__(self) -> None:
        self.jax = pytest.importorskip("jax")
        self.jnp = importlib.import_module("jax.numpy")
        self.helpers = importlib.import_module("lossdsl.codegen.jax_helpers")

    def pullback(self, case: Case, helpers: object) -> Callable[..., Any]:
        """inputs, upstream -> (value, gradients): a function for jit and vmap."""
        jax = self.jax

        def run(inputs: Sequence[Any], upstream: Any) -> tuple[Any, Any]:
            def function(*wrt: Any) -> Any:
                full = list(inputs)
                for index, array in zip(case.differentiate, wrt, strict=True):
                    full[index] = array
                return case.call(helpers, *full)

            wrt = [inputs[index] for index in case.differentiate]
            value, pull = jax.vjp(function, *wrt)
            return value, pull(upstream.astype(value.dtype))

        return run

    def arrays(self, case: Case, dtype: str) -> list[Any]:
        return [
            self.jnp.asarray(array, dtype if array.dtype.kind == "f" else array.dtype)
            for array in case.inputs
        ]

    def value_and_gradients(
        self, case: Case, dtype: str, upstream: np.ndarray, helpers: object = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        with self.jax.enable_x64(True):
            run = self.jax.jit(self.pullback(case, helpers or self.helpers))
            value, gradients = run(self.arrays(case, dtype), self.jnp.asarray(upstream))
            assert value.dtype == dtype
            return as_float64(value), [as_float64(gradient) for gradient in gradients]


class TorchBackend(Backend):
    """Eagerly on the CPU."""

    name = "torch"
    low_precision = ("float32", "float16", "bfloat16")

    def __init__(self) -> None:
        self.torch = pytest.importorskip("torch")
        self.helpers = importlib.import_module("lossdsl.codegen.torch_helpers")

    def tensors(self, case: Case, dtype: str) -> list[Any]:
        torch = self.torch
        tensors = [
            torch.tensor(array, dtype=getattr(torch, dtype) if array.dtype.kind == "f" else None)
            for array in case.inputs
        ]
        for index in case.differentiate:
            tensors[index].requires_grad_(True)
        return tensors

    def value_and_gradients(
        self, case: Case, dtype: str, upstream: np.ndarray, helpers: object = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        torch = self.torch
        tensors = self.tensors(case, dtype)
        value = case.call(helpers or self.helpers, *tensors)
        assert value.dtype == getattr(torch, dtype)
        gradients = torch.autograd.grad(
            value,
            [tensors[index] for index in case.differentiate],
            grad_outputs=torch.tensor(upstream, dtype=value.dtype),
        )
        return as_float64(value), [as_float64(gradient) for gradient in gradients]


def as_float64(array: Any) -> np.ndarray:
    """A JAX array or PyTorch tensor as a float64 NumPy array (bfloat16 included)."""
    if hasattr(array, "detach"):
        array = array.detach().double()
    return np.asarray(array).astype(np.float64)


@pytest.fixture(params=["jax", "torch"])
def backend(request: pytest.FixtureRequest) -> Backend:
    return JaxBackend() if request.param == "jax" else TorchBackend()


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float, what: str) -> None:
    """Equal within `rtol` relative to each entry (NaN where NaN is expected)."""
    assert actual.shape == expected.shape, what
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=0.0, err_msg=what)


# ---------------------------------------------------------------------- float64


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_values_and_gradients_equal_tensorflows_in_float64(backend: Backend, case: Case) -> None:
    expected_value, expected_gradients = tensorflow_value_and_gradients(case)
    upstream = upstream_for(expected_value)
    value, gradients = backend.value_and_gradients(case, "float64", upstream)
    assert_close(value, expected_value, FLOAT64, "value")
    for index, gradient, expected in zip(
        case.differentiate, gradients, expected_gradients, strict=True
    ):
        assert_close(gradient, expected, FLOAT64, f"gradient {index}")


def test_the_softplus_pair_gradient_is_relatively_exact_where_it_is_tiny(
    backend: Backend,
) -> None:
    """b * sigmoid(x) - a * sigmoid(-x) with a = 0 or b = 0: no cancellation, so every
    entry agrees to its own ulps, down to sigmoid(-100) = 4e-44."""
    x = np.array([-100.0, -30.0, -20.0, -1e-3, 0.0, 1e-30, 1.0, 20.0, 30.0, 100.0])
    for a, b in [(0.0, 1.0), (2.0, 0.0)]:
        case = Case("pair", lambda h, x, a=a, b=b: h._softplus_pair(a, b, x), (x,), (0,))
        upstream = np.ones_like(x)
        _, (gradient,) = backend.value_and_gradients(case, "float64", upstream)
        _, (expected,) = tensorflow_value_and_gradients(case, upstream)
        np.testing.assert_allclose(gradient, expected, rtol=FLOAT64)
        assert np.all((gradient != 0) == (expected != 0))


def test_clip_gradients_select_the_bounds_and_not_nan(backend: Backend) -> None:
    points = np.array([-1.0, 0.0, 0.25, 0.5, 0.75, 1.0, float("nan")])
    upstream = np.linspace(0.5, 2.0, len(points))
    for low, high in [(0.25, 0.75), (0.75, 0.25)]:
        case = Case("clip", lambda h, x, low=low, high=high: h._clip(x, low, high), (points,), (0,))
        value, (gradient,) = backend.value_and_gradients(case, "float64", upstream)
        np.testing.assert_array_equal(value, np.clip(points, low, high))
        inside = (points >= low) & (points <= high)
        np.testing.assert_array_equal(gradient, np.where(inside, upstream, 0.0))


TIES = (
    np.array([0.0, 1.0, -2.0, 3.0, 0.5, -0.0, 1e4]),
    np.array([0.0, 1.0, 1.0, -1.0, 0.5, 0.0, 1e4]),
)
"""Pairs that tie (and zeros, where abs has its kink) beside pairs that do not."""


@pytest.mark.parametrize(
    ("builtin", "arity"), [("abs", 1), ("maximum", 2), ("minimum", 2)], ids=str
)
def test_kinks_are_differentiated_as_tensorflow_differentiates_them(
    backend: Backend, builtin: str, arity: int
) -> None:
    """The call a generated module makes for the built-in (its row's, a helper or the
    framework's own function) has TensorFlow's value and gradient at ties and at 0: a
    module that its framework differentiates (no own backward pass) meets them wherever
    y_pred equals y_true, or a hinge sits at its margin."""
    call_text = getattr(BUILTINS[builtin].calls, backend.name)
    module, _, function_name = call_text.rpartition(".")
    owner = backend.helpers if not module else importlib.import_module(FRAMEWORKS[module])
    function = getattr(owner, function_name)
    tensorflow_function = getattr(tf.math, builtin)
    case = Case(
        builtin,
        lambda _, *args: function(*args),
        TIES[:arity],
        tuple(range(arity)),
        reference=lambda _, *args: tensorflow_function(*args),
    )
    expected_value, expected_gradients = tensorflow_value_and_gradients(case)
    value, gradients = backend.value_and_gradients(case, "float64", upstream_for(expected_value))
    np.testing.assert_array_equal(value, expected_value)
    for gradient, expected in zip(gradients, expected_gradients, strict=True):
        np.testing.assert_array_equal(gradient, expected)


def test_a_module_its_framework_differentiates_takes_tensorflows_kinks(backend: Backend) -> None:
    """`backend_specs/huber_beside_kinks.loss` at y_pred == y_true, where a Keras test of a
    zero loss puts it: JAX and PyTorch differentiate the module themselves (its Huber
    helper keeps its own gradient), through the calls above."""
    spec = "huber_beside_kinks"
    assert "_huber(" in generated(spec, backend.name, BACKEND_SPECS).python_source
    y_true = np.array([[0.0, 1.0, -2.0], [0.5, 3.0, -0.25]])
    y_pred = y_true + np.array([[0.0, 0.0, 0.0], [1.0, -0.5, 0.0]])  # ties, and a few not
    own = loss_function(spec, backend.name, BACKEND_SPECS)
    tensorflow_function = loss_function(spec, "tensorflow", BACKEND_SPECS)
    case = Case(
        spec,
        lambda _, y, p: own(y, p),
        (y_true, y_pred),
        (1,),
        reference=lambda _, y, p: tensorflow_function(y, p),
    )
    expected_value, (expected_gradient,) = tensorflow_value_and_gradients(case)
    value, (gradient,) = backend.value_and_gradients(case, "float64", upstream_for(expected_value))
    np.testing.assert_allclose(value, expected_value, rtol=FLOAT64)
    np.testing.assert_allclose(gradient, expected_gradient, rtol=FLOAT64)


BACKEND_SPECS = Path(__file__).resolve().parent / "backend_specs"


@pytest.mark.parametrize("target", ["tensorflow", "jax", "torch"])
def test_a_pair_losss_exp_left_out_by_where_has_a_finite_gradient(target: str) -> None:
    """`backend_specs/pairs_masked_exp.loss` compiles with verification on every target:
    at its edge points the exp overflows where the mask leaves it out, and autodiff took
    the mask's 0 times exp's inf (E902) until the exp's argument was gated."""
    pytest.importorskip({"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[target])
    path = BACKEND_SPECS / "pairs_masked_exp.loss"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LossSpecWarning)
        compiled = compile_source(SourceFile.from_text(path.read_text(), path.name), target=target)
    assert "untaken_branches_guarded" in compiled.python_source


FRAMEWORKS = {"jnp": "jax.numpy", "torch": "torch"}
"""The modules a built-in's call names, by the name a generated module imports them as."""


# ---------------------------------------------------------------------- low precision

LOW = 2.0**-10
"""A clip bound that float16 and bfloat16 hold exactly (1e-7 is below float16's normal
numbers, and its log's gradient 1e7 above float16's largest)."""


def low_precision_cases() -> list[Case]:
    """The cases, with clip bounds that low precision holds exactly."""
    cases = [case for case in CASES if not case.name.startswith("clip")]
    points = probabilities_at(LOW, 0.75)
    for name in ["clip", "clipped_log"]:
        cases.append(
            Case(
                name,
                lambda h, x, name=name: getattr(h, f"_{name}")(x, LOW, 0.75),
                (points[~np.isnan(points)],),
                (0,),
            )
        )
    return cases


LOW_PRECISION_CASES = low_precision_cases()


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize(
    "case", LOW_PRECISION_CASES, ids=[case.name for case in LOW_PRECISION_CASES]
)
def test_values_and_gradients_are_finite_in_low_precision(
    backend: Backend, case: Case, dtype: str
) -> None:
    expected, _ = tensorflow_value_and_gradients(case)
    value, gradients = backend.value_and_gradients(case, dtype, upstream_for(expected))
    assert np.isfinite(value).all()
    for gradient in gradients:
        assert np.isfinite(gradient).all()


@pytest.mark.parametrize("classes", [7, 20])
def test_half_precision_cross_entropy_is_computed_in_float32(
    backend: Backend, classes: int
) -> None:
    """Confident predictions: logsumexp(z) and the logit at the label are both about 8,
    float16 holds each to 0.004 and their difference, about 3e-3 (1e-2 over 20
    classes), not at all. PyTorch's helpers take other ops from 16 classes."""
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 1, (4, classes))
    logits[:, 0] = 8.0
    logits = logits.astype(np.float16).astype(np.float64)
    soft = np.eye(classes)[np.zeros(4, int)]
    hard = np.zeros((4, 1), np.int32)
    for case in [
        Case("soft", lambda h, y, z: h._softmax_cross_entropy(y, z), (soft, logits), (1,)),
        Case("hard", lambda h, y, z: h._sparse_softmax_cross_entropy(y, z), (hard, logits), (1,)),
    ]:
        exact, _ = backend.value_and_gradients(case, "float64", np.ones((4, 1)))
        value, _ = backend.value_and_gradients(case, "float16", np.ones((4, 1)))
        np.testing.assert_allclose(value, exact, rtol=float(np.finfo(np.float16).eps))


def test_a_vector_param_takes_y_preds_dtype(backend: Backend) -> None:
    case = Case(
        "per_class",
        lambda h, y: h._per_class((0.5, 1.0, 2.0), y, "alpha") * y,
        (np.ones((2, 3)),),
        (0,),
    )
    for dtype in ["float64", *backend.low_precision]:
        value, _ = backend.value_and_gradients(case, dtype, np.ones((2, 3)))
        np.testing.assert_array_equal(value, [[0.5, 1.0, 2.0]] * 2)


# ---------------------------------------------------------------------- errors


def error_cases() -> list[tuple[str, Call, tuple[np.ndarray, ...]]]:
    rows = np.zeros((4, 3))
    return [
        ("per_class", lambda h, v, y: h._per_class(v, y, "alpha"), (np.ones(2), rows)),
        ("paired", lambda h, t, p: h._paired(t, p, 2, "nt_xent"), (rows[..., None],) * 2),
        ("paired_rank_1", lambda h, t, p: h._paired(t, p, 1, "circle"), (rows[:, 0],) * 2),
        ("channels", lambda h, x: h._check_channels(x, 5, "y_true", "y_true[4]"), (rows,)),
    ]


ERROR_CASES = error_cases()


@pytest.mark.parametrize(("name", "call", "inputs"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_errors_have_tensorflows_text(
    backend: Backend, name: str, call: Call, inputs: tuple[np.ndarray, ...]
) -> None:
    case = Case(name, call, inputs, ())
    with pytest.raises(ValueError) as expected:
        call(tensorflow_helpers, *[tf.constant(array) for array in inputs])
    with pytest.raises(ValueError) as raised:
        backend.value_and_gradients(case, "float64", np.ones(1))
    assert str(raised.value) == str(expected.value)


# ---------------------------------------------------------------------- JAX transformations


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_jax_eager_jit_and_vmap_agree(case: Case) -> None:
    """vmap over a new leading axis gives each slice's result, as custom_vjp under vmap,
    closures over numbers and the checks at trace time must."""
    backend = JaxBackend()
    jax, jnp = backend.jax, backend.jnp
    expected, _ = tensorflow_value_and_gradients(case)
    upstream = upstream_for(expected)
    with jax.enable_x64(True):
        run = backend.pullback(case, backend.helpers)
        arrays, pulled = backend.arrays(case, "float64"), jnp.asarray(upstream)
        eager = run(arrays, pulled)
        jitted = jax.jit(run)(arrays, pulled)
        second = [jnp.flip(array, 0) if array.ndim else array for array in arrays]
        stacked = [jnp.stack(pair) for pair in zip(arrays, second, strict=True)]
        mapped_value, mapped_gradients = jax.vmap(run)(stacked, jnp.stack([pulled, 2 * pulled]))
        doubled = run(second, 2 * pulled)
    for index, expected_pair in enumerate([eager, doubled]):
        mapped = (mapped_value[index], [gradient[index] for gradient in mapped_gradients])
        assert_pairs_close(mapped, expected_pair)
    assert_pairs_close(jitted, eager)


def assert_pairs_close(actual: tuple[Any, Any], expected: tuple[Any, Any]) -> None:
    """Two (value, gradients) pairs equal within float64 rounding."""
    for got, want in zip([actual[0], *actual[1]], [expected[0], *expected[1]], strict=True):
        assert_close(as_float64(got), as_float64(want), FLOAT64, "jit or vmap")


def test_jax_clip_bounds_may_be_traced() -> None:
    """Numbers closed over by the custom_vjp: a bound that is a tracer works as well."""
    backend = JaxBackend()
    jax, helpers = backend.jax, backend.helpers
    x = backend.jnp.asarray([0.0, 0.25, 0.5, 1.0])

    @jax.jit
    def gradient(x: Any, low: Any) -> Any:
        return jax.grad(lambda x: helpers._clipped_log(x, low, 0.75).sum())(x)

    np.testing.assert_allclose(gradient(x, 0.25), [0.0, 4.0, 2.0, 0.0])


# ---------------------------------------------------------------------- PyTorch specifics


def test_torch_numbers_become_tensors_on_the_inputs_device_and_dtype() -> None:
    torch = TorchBackend().torch
    from lossdsl.codegen import torch_helpers

    x = torch.linspace(-3.0, 3.0, 7, dtype=torch.bfloat16, device="meta")
    assert torch_helpers._softplus_pair(2.0, 1.0, x).device.type == "meta"
    assert torch_helpers._huber(x, 1.5).dtype == torch.bfloat16
    values = torch_helpers._per_class((1.0, 2.0, 3.0), x.reshape(1, 7)[:, :3], "alpha")
    assert (values.dtype, values.device.type) == (torch.bfloat16, "meta")


def test_torch_functions_are_applied_without_binding_their_arguments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every module-level autograd.Function derives from `_AutogradFunction`, whose `apply`
    does not bind its arguments to `forward`'s signature, as `Function.apply` does on
    every call (20-30 µs); inside torch.func's transforms it is `Function.apply`."""
    torch = TorchBackend().torch
    from lossdsl.codegen import torch_helpers

    functions = [
        value
        for value in vars(torch_helpers).values()
        if isinstance(value, type) and issubclass(value, torch.autograd.Function)
    ]
    assert len(functions) == 5
    assert all(issubclass(function, torch_helpers._AutogradFunction) for function in functions)
    x = torch.tensor([-30.0, 0.5, 2.0], requires_grad=True)
    t = torch.tensor([1.0, 0.0, 1.0])

    def bind(*args: object, **kwargs: object) -> None:
        raise AssertionError("Signature bind called")

    with monkeypatch.context() as patched:
        patched.setattr(inspect.Signature, "bind", bind)
        (gradient,) = torch.autograd.grad(torch_helpers._sigmoid_cross_entropy(t, x).sum(), x)
        with pytest.raises(AssertionError, match="Signature bind"):
            torch.func.grad(lambda z: torch_helpers._sigmoid_cross_entropy(t, z).sum())(x)
    expected = torch.sigmoid(x.detach()) - t
    assert torch.equal(gradient, expected)
    through_func = torch.func.grad(lambda z: torch_helpers._sigmoid_cross_entropy(t, z).sum())
    assert torch.equal(through_func(x.detach()), expected)


@pytest.mark.parametrize("exponent", [0.75, -1.5, 1 / 3])
def test_torch_power_takes_exp_and_log_where_autograd_records_nothing(
    exponent: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside a loss's own forward pass (no autograd) a number that is not whole or +-0.5
    is exp(exponent * log(x)), torch.pow's values; where autograd records, torch.pow,
    whose gradient is finite at 0 for exponents above 1 (exp and log give NaN there)."""
    torch = pytest.importorskip("torch")
    from lossdsl.codegen import torch_helpers

    points = [-2.0, -0.0, 0.0, 1e-30, 1e-3, 0.5, 1.0, 3.0, 1e3, float("inf"), float("nan")]
    x = torch.tensor(points, dtype=torch.float64)
    expected = torch.pow(x, exponent)
    pow_calls = []
    original_pow = torch.pow
    monkeypatch.setattr(torch, "pow", lambda *a: pow_calls.append(a) or original_pow(*a))
    with torch.no_grad():
        value = torch_helpers._power(x, exponent)
    assert not pow_calls
    torch.testing.assert_close(value, expected, rtol=1e-13, atol=0, equal_nan=True)
    with torch.no_grad():
        torch_helpers._power(x.to(torch.float16), exponent)
        torch_helpers._power(x, 2.5 - 0.5)
    assert len(pow_calls) == 2

    recorded = x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(torch_helpers._power(recorded, exponent + 1).sum(), recorded)
    assert len(pow_calls) == 3
    assert gradient[2] == 0.0 or exponent + 1 < 1


def test_torch_power_of_a_whole_number_up_to_16_is_products() -> None:
    """x, or products of x or of 1 / x: torch.pow's values and, by autograd, its
    gradient, with no pow."""
    torch = pytest.importorskip("torch")
    from lossdsl.codegen import torch_helpers

    points = [-2.0, -0.0, 0.0, 1e-30, 1e-3, 0.5, 1.0, 3.0, 1e3, float("inf"), float("nan")]
    for exponent in (1, 1.0, -2, -3.0, 4, 5.0, 11, 16, -16):
        x = torch.tensor(points, dtype=torch.float64, requires_grad=True)
        value = torch_helpers._power(x, exponent)
        (gradient,) = torch.autograd.grad(value.sum(), x)
        assert "Pow" not in type(value.grad_fn).__name__
        y = x.detach().clone().requires_grad_(True)
        expected = torch.pow(y, exponent)
        (expected_gradient,) = torch.autograd.grad(expected.sum(), y)
        torch.testing.assert_close(value, expected, rtol=1e-14, atol=0, equal_nan=True)
        torch.testing.assert_close(gradient, expected_gradient, rtol=1e-14, atol=0, equal_nan=True)


def test_torch_learned_delta_keeps_its_gradient_when_cast() -> None:
    torch = TorchBackend().torch
    from lossdsl.codegen import torch_helpers

    delta = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    x = torch.tensor([-3.0, 0.5, 2.0], dtype=torch.float32)
    torch_helpers._huber(x, delta).sum().backward()
    assert delta.grad is not None and float(delta.grad) == pytest.approx(3.0)


def test_torch_sigmoid_cross_entropy_is_the_softplus_pair_with_weights_summing_to_one() -> None:
    """`_sigmoid_cross_entropy(t, x)` = TensorFlow's `_softplus_pair(t, 1 - t, x)` in
    float64 on the edge grid, value and gradients; the gradients to float64's resolution
    of 1: sigmoid(x) - t is 0 where the exact one is below it, and -x of t is exact where
    softplus(-x) - softplus(x) rounds to 0."""
    torch = TorchBackend().torch
    from lossdsl.codegen import torch_helpers

    rng = np.random.default_rng(3)
    x = np.tile(EDGES, 3)
    t = np.concatenate([np.zeros(10), np.ones(10), rng.uniform(0.0, 1.0, 10)])
    upstream = rng.uniform(0.5, 2.0, x.shape)
    case = Case("pair", lambda h, t, x: h._softplus_pair(t, 1.0 - t, x), (t, x), (0, 1))
    expected_value, (expected_t, expected_x) = tensorflow_value_and_gradients(case, upstream)
    t_tensor, x_tensor = (torch.tensor(a, requires_grad=True) for a in (t, x))
    value = torch_helpers._sigmoid_cross_entropy(t_tensor, x_tensor)
    got_t, got_x = torch.autograd.grad(value, [t_tensor, x_tensor], torch.tensor(upstream))
    assert_close(as_float64(value), expected_value, FLOAT64, "value")
    for got, expected in [(got_t, expected_t), (got_x, expected_x)]:
        np.testing.assert_allclose(as_float64(got), expected, rtol=FLOAT64, atol=1e-15)


def test_torch_sigmoid_cross_entropy_is_exact_in_both_tails_for_binary_targets() -> None:
    """softplus(-30) = softplus(30) - 30 = 9.36e-14 for t = 1 at x = 30 and t = 0 at
    x = -30 (and the same at 50), in float32: no sum of two large terms cancels; and
    |x| where the target is wrong."""
    torch = TorchBackend().torch
    from lossdsl.codegen import torch_helpers

    x = torch.tensor([30.0, -30.0, 50.0, -50.0, 1e4, -1e4])
    t = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    wrong = np.array([0.0, 0.0, 0.0, 0.0, 1e4, 1e4])
    expected = wrong + np.log1p(np.exp(-np.abs(as_float64(x))))
    got = as_float64(torch_helpers._sigmoid_cross_entropy(t, x))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("dim", "keepdim"), [(None, False), (-1, True), (-1, False), ((1, 2), True), ([0, 2], False)]
)
def test_torch_mean_is_torch_mean_with_a_gradient_that_is_a_view(dim: Any, keepdim: bool) -> None:
    """`_mean` = torch.mean, and its gradient is the upstream gradient expanded (a stride
    of 0 along each reduced axis): no pass writes it."""
    torch = TorchBackend().torch
    from lossdsl.codegen import torch_helpers

    x = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    value = torch_helpers._mean(x, dim=dim, keepdim=keepdim)
    expected = torch.mean(x) if dim is None else torch.mean(x, dim=dim, keepdim=keepdim)
    torch.testing.assert_close(value, expected)
    (gradient,) = torch.autograd.grad(value.sum(), x)
    (expected_gradient,) = torch.autograd.grad(expected.sum(), x)
    torch.testing.assert_close(gradient, expected_gradient)
    reduced = range(3) if dim is None else [dim] if isinstance(dim, int) else dim
    assert all(gradient.stride(axis) == 0 for axis in reduced)


@pytest.mark.parametrize(
    ("scale", "shift"),
    [(1.0, 0.0), (1, 0), (0.9, 0.0), (1.0, 0.05), (0.9, 0.05), ("tensor", 0.05), (0.9, "tensor")],
)
def test_torch_affine_is_x_times_scale_plus_shift_and_x_itself_at_neutral_numbers(
    scale: Any, shift: Any
) -> None:
    """`_affine(x, scale, shift)` = x * scale + shift, values and the gradients of x and of
    a learned scale or shift; for the numbers 1 and 0 it is a view of x (no pass over
    memory), which for a tensor 1 or 0 it is not: its value is not known without reading
    it."""
    torch = TorchBackend().torch
    from lossdsl.codegen import torch_helpers

    def value_and_gradients(affine: bool) -> list[Any]:
        x = torch.linspace(-2.0, 2.0, 12, dtype=torch.float64).reshape(3, 4).requires_grad_()
        learned = {
            name: torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
            for name, value in (("scale", scale), ("shift", shift))
            if value == "tensor"
        }
        a, b = learned.get("scale", scale), learned.get("shift", shift)
        value = torch_helpers._affine(x, a, b) if affine else x * a + b
        return [value, *torch.autograd.grad(value.sum(), [x, *learned.values()])]

    for got, expected in zip(value_and_gradients(True), value_and_gradients(False), strict=True):
        torch.testing.assert_close(got, expected)
    if "tensor" not in (scale, shift):
        x = torch.ones(2, 3)
        neutral = scale == 1 and shift == 0
        assert (torch_helpers._affine(x, scale, shift)._base is x) == neutral
        assert torch_helpers._affine(x, torch.tensor(1.0), shift)._base is None


@pytest.mark.parametrize("delta", [1.5, "tensor"])
def test_torch_huber_of_a_difference_is_the_huber_of_the_residual(delta: Any) -> None:
    """`_huber(x, delta, target=y)` = `_huber(x - y, delta)`: values and the gradients of
    x and y, for a number delta (F.huber_loss(x, y)) and a learned one (`_Huber`)."""
    torch = TorchBackend().torch
    from lossdsl.codegen import torch_helpers

    rng = np.random.default_rng(4)
    x_values, y_values = rng.normal(0, 2, (2, 6, 5))

    def value_and_gradients(of_difference: bool) -> list[Any]:
        x, y = (torch.tensor(a, requires_grad=True) for a in (x_values, y_values))
        d = torch.tensor(1.5, dtype=torch.float64) if delta == "tensor" else delta
        if of_difference:
            value = torch_helpers._huber(x, d, target=y)
        else:
            value = torch_helpers._huber(x - y, d)
        return [value, *torch.autograd.grad(value.sum(), [x, y])]

    for got, expected in zip(value_and_gradients(True), value_and_gradients(False), strict=True):
        torch.testing.assert_close(got, expected)


def test_torch_sigmoid_cross_entropy_compiles_whole_and_takes_torch_func_grad() -> None:
    torch = TorchBackend().torch
    from lossdsl.codegen import torch_helpers

    x = torch.tensor(np.tile(EDGES, 2))
    t = torch.tensor(np.repeat([0.0, 1.0], 10))
    eager = torch_helpers._sigmoid_cross_entropy(t, x)
    torch._dynamo.reset()
    compiled = torch.compile(
        torch_helpers._sigmoid_cross_entropy, backend="aot_eager", fullgraph=True
    )
    torch.testing.assert_close(compiled(t, x), eager)
    gradient = torch.func.grad(lambda x: torch_helpers._sigmoid_cross_entropy(t, x).sum())(x)
    torch.testing.assert_close(gradient, torch.sigmoid(x) - t)


TRANSFORMED = [
    "softplus_pair_same_shape",
    "huber_1.0",
    "huber_delta_array",
    "softmax_cross_entropy",
    "softmax_cross_entropy_20_classes",
    "sparse_softmax_cross_entropy_20_classes",
]
"""The cases of PyTorch's autograd.Functions and fused ops (and one of the few-class
cross-entropy form), for torch.compile and torch.func."""


@pytest.mark.parametrize("name", TRANSFORMED)
def test_torch_helpers_compile_whole_and_take_torch_func_transforms(name: str) -> None:
    """torch.compile(fullgraph=True) traces the helper in one graph, torch.func.grad
    pulls back what autograd does, and torch.func.vmap over a new leading axis gives
    each slice's value: each equal to the eager result within float64 rounding."""
    backend = TorchBackend()
    torch, helpers = backend.torch, backend.helpers
    case = next(case for case in CASES if case.name == name)
    upstream = upstream_for(tensorflow_value_and_gradients(case)[0])
    eager, eager_gradients = backend.value_and_gradients(case, "float64", upstream)
    torch._dynamo.reset()
    compiled = torch.compile(
        lambda *tensors: case.call(helpers, *tensors), backend="aot_eager", fullgraph=True
    )
    tensors = backend.tensors(case, "float64")
    value = compiled(*tensors)
    pulled = torch.tensor(upstream)
    wrt = [tensors[index] for index in case.differentiate]
    gradients = torch.autograd.grad(value, wrt, grad_outputs=pulled)
    assert_close(as_float64(value), eager, FLOAT64, "compiled value")
    for gradient, expected in zip(gradients, eager_gradients, strict=True):
        assert_close(as_float64(gradient), expected, FLOAT64, "compiled gradient")

    plain = [tensor.detach() for tensor in tensors]

    def pulled_sum(*arrays: Any) -> Any:
        full = list(plain)
        for index, array in zip(case.differentiate, arrays, strict=True):
            full[index] = array
        return (case.call(helpers, *full) * pulled).sum()

    argnums = tuple(range(len(case.differentiate)))
    transformed = torch.func.grad(pulled_sum, argnums)(*[plain[i] for i in case.differentiate])
    for gradient, expected in zip(transformed, eager_gradients, strict=True):
        assert_close(as_float64(gradient), expected, FLOAT64, "torch.func.grad")

    batched = [torch.stack([t, torch.flip(t, [0]) if t.ndim else t]) for t in plain]
    mapped = torch.func.vmap(lambda *t: case.call(helpers, *t))(*batched)
    for index in range(2):
        expected = case.call(helpers, *[t[index] for t in batched])
        assert_close(as_float64(mapped[index]), as_float64(expected), FLOAT64, "vmap")


# ---------------------------------------------------------------------- the sources


OWN_HELPERS = {
    "jax_helpers": {"_other_cotangents", "_abs", "_maximum", "_minimum", "_tie_to_first"},
    "torch_helpers": {
        "_maximum",
        "_minimum",
        "_tensors",
        "_over_spatial",
        "_SoftplusPair",
        "_sigmoid_cross_entropy",
        "_SigmoidCrossEntropy",
        "_mean",
        "_Huber",
        "_SoftmaxCrossEntropy",
        "_log_softmax_grad",
        "_save",
        "_saved",
        "_other_gradients",
        "_autograd_gradients",
        "_differentiated_twice",
        "_affine",
        "_check_reduction",
        "_reduced",
        "_class_reduced",
        "_AutogradFunction",
        "_power",
    },
}
"""Helpers one target alone needs: PyTorch reduces every axis for an empty `dim`, its
eager mean, binary cross-entropy and scaled and shifted labels take fewer passes as
their own helpers, its functions take `torch.nn`'s `reduction` (`_reduced`, and
`_class_reduced` in one reduction with the classes'), and torch.compile traces only a
module-level autograd.Function (whose residuals `_save` and `_saved` keep, and whose
base `_AutogradFunction` applies it fast); the own backward pass's gradients of the other
arguments come from each framework's autodiff (`_other_cotangents`,
`_other_gradients`), and so do PyTorch's second derivatives (`_autograd_gradients`,
`_differentiated_twice`), where JAX differentiates a custom VJP's backward function
itself. TensorFlow's and PyTorch's pow are slow at exponents that are not whole numbers
(`_power`); inside a JAX custom VJP a param exponent is a tracer, so its modules call
jnp.power. JAX's and PyTorch's autodiff split the gradient of a maximum or minimum in
halves at a tie, and JAX's of abs is 1 at 0, where TensorFlow's goes to the first
argument and is 0 (`_maximum`, `_minimum`, JAX's `_abs`)."""


@pytest.mark.parametrize(
    ("module", "framework"),
    [("jax_helpers", {"jax", "jnp"}), ("torch_helpers", {"torch"})],
)
def test_each_module_defines_the_tensorflow_names_with_its_framework_only(
    module: str, framework: set[str]
) -> None:
    functions = module_functions(f"lossdsl.codegen.{module}")
    assert set(functions) - OWN_HELPERS.get(module, set()) == REQUIRED
    assert set(functions) <= set(HELPERS) | {"_sparse_softmax_cross_entropy", *OWN_HELPERS[module]}
    source = (CODEGEN / f"{module}.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    imported = {
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported - set(module_functions(COMMON_HELPERS_MODULE)) == framework
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    frameworks = {"tf", "tensorflow", "np", "numpy", "keras", "jax", "jnp", "torch"}
    assert names & frameworks == framework
    assert "tf." not in source
    assert max(len(line) for line in source.splitlines()) <= LINE_LENGTH


def test_the_common_helpers_use_no_framework_and_every_target_has_them() -> None:
    """Written once (`codegen.common_helpers`), embedded by every target."""
    source = (CODEGEN / "common_helpers.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    assert not [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    common = module_functions(COMMON_HELPERS_MODULE)
    assert common
    for target in ("tensorflow", "jax", "torch"):
        sources = target_helpers(target).sources
        assert all(sources[name] == text for name, text in common.items())


def embedded(backend: Backend) -> SimpleNamespace:
    """The helpers as a generated module defines them: each function's source executed
    with only the framework's names, so that a helper that needs more fails."""
    scope: dict[str, object] = {}
    if backend.name == "jax":
        scope.update(jax=importlib.import_module("jax"), jnp=importlib.import_module("jax.numpy"))
    else:
        scope.update(torch=importlib.import_module("torch"))
    for source in module_functions(backend.helpers.__name__).values():
        exec(compile(source, "<generated helper>", "exec"), scope)  # package source
    return SimpleNamespace(**{name: scope[name] for name in REQUIRED})


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_embedded_sources_are_self_contained(backend: Backend, case: Case) -> None:
    expected, _ = tensorflow_value_and_gradients(case)
    upstream = upstream_for(expected)
    value, gradients = backend.value_and_gradients(case, "float64", upstream, embedded(backend))
    module_value, module_gradients = backend.value_and_gradients(case, "float64", upstream)
    np.testing.assert_array_equal(value, module_value)
    for gradient, module_gradient in zip(gradients, module_gradients, strict=True):
        np.testing.assert_array_equal(gradient, module_gradient)


def test_the_embedded_sources_are_the_module_functions(backend: Backend) -> None:
    functions = module_functions(backend.helpers.__name__)
    for name in REQUIRED:
        assert functions[name] == inspect.getsource(getattr(backend.helpers, name)).rstrip("\n")
