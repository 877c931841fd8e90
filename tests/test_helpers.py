"""The module-level helpers generated modules define: values and hand-written gradients."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import tensorflow as tf
from tolerances import ulps

from lossdsl.codegen import tensorflow_helpers, xla_helpers
from lossdsl.codegen.helpers import (
    CLASS_OF,
    CLIP,
    CLIPPED_LOG,
    HELPER_NAMES,
    HELPERS,
    HUBER,
    LOG1P,
    MEAN_OVER_CLASSES,
    POWER,
    SOFTMAX_CROSS_ENTROPY,
    SOFTPLUS_PAIR,
    SUM_OVER_CLASSES,
    WHERE_ZERO,
    target_helpers,
)

TENSORFLOW_HELPERS = target_helpers("tensorflow")
XLA_FORMS = TENSORFLOW_HELPERS.xla_forms
helper_source = TENSORFLOW_HELPERS.source


def helper_namespace(xla_forms: bool = False) -> dict[str, object]:
    """Every helper, in the forms a module compiled with XLA (`xla_forms`) or without defines."""
    namespace: dict[str, object] = {"tf": tf}
    for name in HELPERS:
        source = helper_source(name, xla_forms)
        exec(compile(source, "<generated helper>", "exec"), namespace)  # generated code
    return namespace


def test_xla_forms_replace_helpers_of_the_same_name() -> None:
    assert set(XLA_FORMS) <= set(HELPERS)
    for name, source in XLA_FORMS.items():
        assert source != HELPERS[name]
        assert f"def {name}(" in source
        assert helper_source(name, True) == source
        assert helper_source(name, False) == HELPERS[name]


def test_the_embedded_sources_are_the_package_functions() -> None:
    for name, source in HELPERS.items():
        assert inspect.getsource(getattr(tensorflow_helpers, name)).rstrip("\n") == source
    for name, source in XLA_FORMS.items():
        assert inspect.getsource(getattr(xla_helpers, name)).rstrip("\n") == source


def test_the_package_helpers_are_called_directly() -> None:
    x = tf.constant([-30.0, -2.0, 0.5, 3.0, 40.0], tf.float64)
    expected_pair = softplus(-x.numpy()) + 2.0 * softplus(x.numpy())
    pair = tensorflow_helpers._softplus_pair(1.0, 2.0, x)
    np.testing.assert_allclose(pair.numpy(), expected_pair, rtol=ulps("float64"))
    ones = tf.ones_like(x)
    xla_pair = xla_helpers._softplus_pair_same_shape(ones, 2.0 * ones, x)
    np.testing.assert_allclose(xla_pair.numpy(), expected_pair, rtol=ulps("float64"))
    assert tensorflow_helpers._clip(x, 0.0, 1.0).numpy().tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    huber = tensorflow_helpers._huber(x, 1.0).numpy()
    assert huber.tolist() == [29.5, 1.5, 0.125, 2.5, 39.5]
    assert tensorflow_helpers._class_block(10, 9) == 10
    assert tensorflow_helpers._class_block(4, 9) is None


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def test_the_helpers_define_exactly_their_reserved_names() -> None:
    namespace = helper_namespace()
    defined = {name for name in namespace if name.startswith("_")} - {"__builtins__"}
    assert defined == set(HELPERS) and defined <= HELPER_NAMES


def tensorflow_clip(x: tf.Tensor, low: float, high: float) -> tf.Tensor:
    return tf.clip_by_value(x, low, high)


def tensorflow_clipped_log(x: tf.Tensor, low: float, high: float) -> tf.Tensor:
    return tf.math.log(tf.clip_by_value(x, low, high))


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize(
    ("helper", "tensorflow_form"),
    [(CLIP, tensorflow_clip), (CLIPPED_LOG, tensorflow_clipped_log)],
)
def test_clip_helpers_match_tensorflow_forms_at_the_bounds_too(
    helper: str, tensorflow_form: object, dtype: str, jit_compile: bool
) -> None:
    written_out = helper_namespace()[helper]
    low, high = 1e-3, 0.75
    points = [-1.0, 0.0, 1e-4, low, 0.01, 0.5, high, 0.9, 1.0, 3.0, float("nan")]
    x = tf.constant(points, dtype)
    upstream = tf.constant(np.linspace(0.5, 2.0, len(points)), dtype)

    @tf.function(jit_compile=jit_compile)
    def value_and_gradient(function: object) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = function(x, low, high)  # type: ignore[operator]
        return value, tape.gradient(value, x, output_gradients=upstream)

    value, gradient = value_and_gradient(written_out)
    expected_value, expected_gradient = value_and_gradient(tensorflow_form)
    np.testing.assert_array_equal(value, expected_value)
    # upstream / x against upstream * (1 / x): an ulp or two apart
    np.testing.assert_allclose(gradient, expected_gradient, rtol=ulps(dtype))
    inside = [low <= point <= high for point in points]
    assert np.all((np.asarray(gradient) != 0) == inside)  # NaN included: gradient 0


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("helper", [CLIP, CLIPPED_LOG])
def test_clip_helpers_with_low_above_high_are_constant(helper: str, jit_compile: bool) -> None:
    written_out = helper_namespace()[helper]
    x = tf.constant([-1.0, 1e-3, 0.5, 0.75, 2.0, float("nan")], tf.float64)

    @tf.function(jit_compile=jit_compile)
    def value_and_gradient() -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = written_out(x, 0.75, 1e-3)  # type: ignore[operator]
        return value, tape.gradient(value, x)

    value, gradient = value_and_gradient()
    high = np.log(1e-3) if helper == CLIPPED_LOG else 1e-3
    np.testing.assert_array_equal(value, [high] * 5 + [float("nan")])  # NaN stays NaN
    np.testing.assert_array_equal(gradient, np.zeros(6))


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_where_zero_is_tf_where_bit_for_bit(dtype: str, jit_compile: bool) -> None:
    where_zero = helper_namespace()[WHERE_ZERO]
    special = [0.0, -0.0, 1.5, -2.0, float("inf"), -float("inf"), float("nan")]
    x = tf.constant([special, special[::-1]], dtype)
    condition = tf.constant([[True, False, True, False, False, True, False]] * 2)
    row = tf.constant([[float("nan")], [-0.0]], dtype)  # one value per row, broadcast
    upstream = tf.constant([[1.0, float("inf"), -0.0, 2.0, float("nan"), 3.0, 1.0]] * 2, dtype)

    @tf.function(jit_compile=jit_compile)
    def both(select: object, value: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(value)
            result = select(condition, value)  # type: ignore[operator]
        return result, tape.gradient(result, value, output_gradients=upstream)

    def tensorflow_where(condition: tf.Tensor, value: tf.Tensor) -> tf.Tensor:
        return tf.where(condition, value, tf.constant(0.0, value.dtype))

    for value in (x, row):
        pairs = zip(both(where_zero, value), both(tensorflow_where, value), strict=True)
        for got, expected in pairs:
            bits = f"uint{8 * got.dtype.size}"
            np.testing.assert_array_equal(
                tf.bitcast(got, bits).numpy(), tf.bitcast(expected, bits).numpy()
            )


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4)])
def test_one_hot_times_is_one_hot_times_values_bit_for_bit(
    dtype: str, shape: tuple[int, ...]
) -> None:
    """A label gather's gradient one_hot(y) * v scattered: the same array, 0 in the rows
    whose label is outside [0, C) (-1, C, C + 3), with a spatial axis too, and v of one
    value per sample broadcast to the rows."""
    one_hot_times = helper_namespace()["_one_hot_times"]
    rows, classes = int(np.prod(shape[:-1])), shape[-1]
    labels = tf.constant(np.resize([0, 3, -1, 4, 2, 7, 1], rows).reshape(*shape[:-1], 1), tf.int32)
    like = tf.zeros(shape, dtype)
    for values in (
        tf.constant(np.linspace(-2.0, 3.0, rows).reshape(*shape[:-1], 1), dtype),
        tf.constant(np.full((shape[0], *[1] * (len(shape) - 1)), 0.5), dtype),
    ):
        expected = tf.one_hot(labels[..., 0], classes, dtype=dtype) * values
        for fewest in (1, 1024):  # scattered, and one_hot's product below 1,024 classes
            got = tf.function(one_hot_times)(labels, values, like, fewest)  # type: ignore[operator]
            np.testing.assert_array_equal(got.numpy(), expected.numpy())


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_huber_matches_differentiating_the_select_at_the_kinks_too(
    dtype: str, jit_compile: bool
) -> None:
    written_out = helper_namespace()[HUBER]
    delta = 1.5
    x = tf.constant([-40.0, -1.5, -1.0, -0.25, 0.0, 0.5, 1.4, 1.5, 1.6, 7.0], dtype)

    def select(x: tf.Tensor, delta: float) -> tf.Tensor:
        size = tf.math.abs(x)
        return tf.where(size <= delta, 0.5 * tf.math.square(x), delta * (size - 0.5 * delta))

    @tf.function(jit_compile=jit_compile)
    def value_and_gradient(function: object) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = function(x, delta)  # type: ignore[operator]
        return value, tape.gradient(value, x, output_gradients=2.0 * tf.ones_like(x))

    value, gradient = value_and_gradient(written_out)
    expected_value, expected_gradient = value_and_gradient(select)
    np.testing.assert_array_equal(value, expected_value)
    np.testing.assert_array_equal(gradient, expected_gradient)
    np.testing.assert_array_equal(gradient, 2.0 * np.clip(np.asarray(x), -delta, delta))


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_log1p_matches_tensorflow_at_the_edges_too(dtype: str) -> None:
    """Under XLA, where XLA modules call it (TensorFlow's graph optimizer, without XLA,
    folds (1 + x) - 1 into x, which the form must not do)."""
    written_out = helper_namespace()[LOG1P]
    points = [-2.0, -1.0, -0.75, -1e-3, -1e-9, 0.0, 1e-30, 1e-9, 3e-4, 0.5, 1.0, 7.0, 1e6]
    x = tf.constant([*points, float("inf"), float("-inf"), float("nan")], dtype)
    upstream = tf.constant(np.linspace(0.5, 2.0, len(points) + 3), dtype)

    @tf.function(jit_compile=True)
    def value_and_gradient(function: object) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = function(x)  # type: ignore[operator]
        return value, tape.gradient(value, x, output_gradients=upstream)

    value, gradient = value_and_gradient(written_out)
    expected_value, expected_gradient = value_and_gradient(tf.math.log1p)
    np.testing.assert_allclose(value, expected_value, rtol=ulps(dtype))
    np.testing.assert_allclose(gradient, expected_gradient, rtol=ulps(dtype))
    rounded = np.asarray(x, np.float64)[: len(points)]
    exact = np.log1p(rounded, where=rounded > -1, out=np.full_like(rounded, np.nan))
    accurate = np.isfinite(exact) & (np.abs(rounded) > np.finfo(dtype).tiny)
    got = np.asarray(value, np.float64)[: len(points)]
    relative = np.abs(got[accurate] - exact[accurate]) / np.abs(exact[accurate])
    assert relative.max() < 4 * np.finfo(dtype).eps


POWER_POINTS = [-2.0, -1.0, -0.0, 0.0, 1e-30, 1e-3, 0.5, 1.0, 3.0, 1e3]
"""Bases of `_power`: negative ones (NaN), zeros of both signs, and the rest."""


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "exponent", [0.75, -1.5, 2.5, 1 / 3, -0.2, 1, 1.0, -2, -3.0, 4, 5.0, 11, 16, -16]
)
def test_power_matches_tensorflows_pow_and_its_gradient(dtype: str, exponent: float) -> None:
    """exp(exponent * log(x)), with the gradient written out, or products of x, at the
    edges too: NaN below 0 (or a signed product), 0 or inf at 0, where autodiff of
    exp(exponent * log(x)) gives NaN."""
    power = helper_namespace()[POWER]
    x = tf.constant([*POWER_POINTS, float("inf"), float("nan")], dtype)
    upstream = tf.constant(np.linspace(0.5, 2.0, len(POWER_POINTS) + 2), dtype)

    @tf.function
    def value_and_gradient(function: object) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = function(x, exponent)  # type: ignore[operator]
        return value, tape.gradient(value, x, output_gradients=upstream)

    # exp(t) of a t = exponent * log(x) rounded to an ulp is |t| ulps off; pow is exact
    logs = np.abs(np.log([point for point in POWER_POINTS if point > 0]))
    tolerance = ulps(dtype, 4 + max(abs(exponent), abs(exponent - 1)) * logs.max())
    for got, expected in zip(
        value_and_gradient(power), value_and_gradient(tf.math.pow), strict=True
    ):
        np.testing.assert_allclose(got, expected, rtol=tolerance)


def test_power_by_0_is_1_everywhere_with_a_0_gradient() -> None:
    """pow's value at every x, NaN and inf too; its gradient is 0, where TensorFlow's
    pow gives NaN at x = 0 (0 times 0 ** -1)."""
    power = helper_namespace()[POWER]
    x = tf.constant([*POWER_POINTS, float("inf"), float("nan")], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = power(x, 0.0)  # type: ignore[operator]
    gradient = tape.gradient(value, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    np.testing.assert_array_equal(value, tf.math.pow(x, 0.0))
    np.testing.assert_array_equal(gradient, np.zeros(len(POWER_POINTS) + 2))


TRIGAMMA_POINTS = [-7.9, -2.3, -1.5, -0.5, 1e-8, 1e-3, 0.49, 0.5, 0.51, 1.0, 2.0, 5.5, 10.0, 1e6]
"""Arguments of `_trigamma`: each side of the reflection at 1/2, negative non-whole
numbers, tiny and large ones."""


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_trigamma_matches_polygamma_and_is_inf_at_the_poles(dtype: str) -> None:
    """Within 2e-12 of the exact value in float64 (the asymptotic series' next term) and
    8 ulps in float32 from -7 up (below, the reflection's sine of a rounded argument is
    2e-6 off at -7.9, where TensorFlow's float32 polygamma gives -7260 for 103.24); inf
    at 0, -1, -3."""
    import mpmath

    trigamma = helper_namespace()["_trigamma"]
    points = [p for p in TRIGAMMA_POINTS if dtype == "float64" or p > -7]
    got = trigamma(tf.constant(points, dtype)).numpy()  # type: ignore[operator]
    exact = [float(mpmath.polygamma(1, mpmath.mpf(p))) for p in points]
    tolerance = 2e-12 if dtype == "float64" else ulps(dtype, 8)
    np.testing.assert_allclose(got, exact, rtol=tolerance)
    poles = trigamma(tf.constant([0.0, -1.0, -3.0], dtype)).numpy()  # type: ignore[operator]
    assert np.all(np.isposinf(poles))
    graph = tf.function(trigamma).get_concrete_function(tf.TensorSpec([None], tf.float32)).graph
    assert not {"Polygamma", "Zeta"} & {operation.type for operation in graph.get_operations()}


@pytest.mark.parametrize(
    ("exponent", "pow_kernels"),
    [
        (0.75, 0),
        (-1.5, 0),
        (0, 0),
        (1.0, 0),
        (4, 0),
        (16.0, 0),
        (2.0, 1),
        (0.5, 1),
        (-1, 1),
        (-2.0, 0),
        (-4, 0),
        (17, 1),
        (-17, 1),
        ("tensor", 1),
    ],
)
def test_power_avoids_the_pow_kernel_where_it_is_slow(
    exponent: float | str, pow_kernels: int
) -> None:
    """TensorFlow's Pow kernel is several times slower than exp and log except where
    Grappler or XLA rewrite it (benchmarks/README.md); a tensor exponent (a learned
    param) keeps it, and with it its gradient."""
    power = helper_namespace()[POWER]
    given = tf.constant(0.75) if exponent == "tensor" else exponent
    graph = (
        tf.function(lambda x: power(x, given))  # type: ignore[operator]
        .get_concrete_function(tf.TensorSpec([None], tf.float32))
        .graph
    )
    kernels = [operation.type for operation in graph.get_operations()]
    assert kernels.count("Pow") == pow_kernels


@pytest.mark.parametrize("xla_forms", [False, True])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_softplus_pair_value_and_gradients_with_broadcasting(
    jit_compile: bool, xla_forms: bool
) -> None:
    pair = helper_namespace(xla_forms)[SOFTPLUS_PAIR]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 5)) * 20
    x[0, :3] = [0.0, 30.0, -30.0]
    a = np.abs(rng.normal(size=(4, 1)))
    b = 1.5

    @tf.function(jit_compile=jit_compile)
    def value_and_gradients(a_t: tf.Tensor, b_t: tf.Tensor, x_t: tf.Tensor) -> tuple:
        with tf.GradientTape() as tape:
            tape.watch([a_t, b_t, x_t])
            value = pair(a_t, b_t, x_t)  # type: ignore[operator]
        return (value, *tape.gradient(value, [a_t, b_t, x_t]))

    value, grad_a, grad_b, grad_x = value_and_gradients(
        tf.constant(a), tf.constant(b, tf.float64), tf.constant(x)
    )
    np.testing.assert_allclose(value, a * softplus(-x) + b * softplus(x), rtol=1e-14)
    np.testing.assert_allclose(grad_a, softplus(-x).sum(-1, keepdims=True), rtol=1e-13)
    np.testing.assert_allclose(grad_b, softplus(x).sum(), rtol=1e-13)
    np.testing.assert_allclose(grad_x, b * sigmoid(x) - a * sigmoid(-x), rtol=1e-13)


@pytest.mark.parametrize("copies", [1, 40_000])  # the XLA form stores exp(-|x|) over 1 MiB
@pytest.mark.parametrize("xla_forms", [False, True])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_softplus_pair_gradient_is_exact_in_both_float32_tails(
    jit_compile: bool, xla_forms: bool, copies: int
) -> None:
    """Where TensorFlow's fused sigmoid cross-entropy returns 0 (cancellation) or loses digits."""
    pair = helper_namespace(xla_forms)[SOFTPLUS_PAIR]
    points = [-30.0, -17.0, -1e-3, 0.0, 1e-6, 0.5, 17.0, 30.0, 1e4, -1e4]
    x = np.tile(np.array(points, np.float32), copies)

    @tf.function(jit_compile=jit_compile)
    def value_and_gradient(a: float, b: float, x_t: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(x_t)
            value = pair(a, b, x_t)  # type: ignore[operator]
        return value, tape.gradient(value, x_t)

    for a, b in [(0.0, 1.0), (2.0, 0.0), (2.0, 1.0)]:
        value, gradient = value_and_gradient(a, b, tf.constant(x))
        value, gradient = value.numpy(), gradient.numpy()
        exact = x.astype(np.float64)
        expected = b * sigmoid(exact) - a * sigmoid(-exact)
        nonzero = expected != 0
        relative = np.abs(gradient - expected)[nonzero] / np.abs(expected[nonzero])
        assert relative.max() < 1e-6, (a, b, gradient, expected)
        np.testing.assert_allclose(value, a * softplus(-exact) + b * softplus(exact), rtol=1e-6)


@pytest.mark.parametrize("xla_forms", [False, True])
def test_softplus_pair_stays_finite_in_float16(xla_forms: bool) -> None:
    pair = helper_namespace(xla_forms)[SOFTPLUS_PAIR]
    x = tf.constant([-1e4, -30.0, 0.0, 30.0, 1e4], tf.float16)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = pair(2.0, 1.0, x)  # type: ignore[operator]
    assert value.dtype == tf.float16
    assert np.isfinite(value.numpy()).all()
    assert np.isfinite(tape.gradient(value, x).numpy()).all()


@pytest.mark.parametrize("shape", [(3, 5), (2, 4, 3, 6), (7, 1), (6, 10), (2, 3, 300)])
def test_sums_and_means_over_classes_under_xla(shape: tuple[int, ...]) -> None:
    namespace = helper_namespace()
    x = np.random.default_rng(1).normal(size=shape)
    for name, reduce in [(SUM_OVER_CLASSES, np.sum), (MEAN_OVER_CLASSES, np.mean)]:
        helper = namespace[name]

        @tf.function(jit_compile=True)
        def value_and_gradient(x_t: tf.Tensor, helper: object = helper) -> tuple:
            with tf.GradientTape() as tape:
                tape.watch(x_t)
                value = helper(x_t)  # type: ignore[operator]
                weighted = tf.reduce_sum(
                    value
                    * tf.range(1.0, value.shape[0] + 1, dtype=x_t.dtype)[
                        (...,) + (None,) * (len(shape) - 1)
                    ]
                )
            return value, tape.gradient(weighted, x_t)

        value, gradient = value_and_gradient(tf.constant(x))
        np.testing.assert_allclose(value, reduce(x, axis=-1, keepdims=True), rtol=1e-12)
        scale = 1.0 if reduce is np.sum else 1.0 / shape[-1]
        rows = np.arange(1.0, shape[0] + 1).reshape((-1,) + (1,) * (len(shape) - 1))
        np.testing.assert_allclose(gradient, np.broadcast_to(rows * scale, shape), rtol=1e-12)


@pytest.mark.parametrize("classes", [7, 300, 2048, 32000, 4099])
def test_blocked_class_sums_are_as_accurate_as_the_reduction(classes: int) -> None:
    """Over many classes one matrix-vector product adds up float32 values too sequentially."""
    namespace = helper_namespace()
    rng = np.random.default_rng(2)
    sizes = rng.choice([1e4, 1e2], (4, classes))
    sizes[rng.random((4, classes)) < 0.25] = 0.5
    x = sizes.astype(np.float32)  # one product over 32000 such entries is off by 4e-5
    exact = x.astype(np.float64).sum(-1, keepdims=True)
    total = tf.function(namespace[SUM_OVER_CLASSES], jit_compile=True)(tf.constant(x))  # type: ignore[arg-type]
    assert np.max(np.abs(total.numpy() - exact) / exact) < 1e-6


def test_class_block_divides_large_class_counts() -> None:
    block = helper_namespace()["_class_block"]
    assert block(None, 9) is None and block(8, 9) is None and block(9, 9) == 9  # type: ignore[operator]
    assert block(255, 256) is None and block(256, 256) == 256  # type: ignore[operator]
    assert block(2048, 9) == 2048  # type: ignore[operator]
    assert block(32000, 9) == 2000 and block(4099, 9) is None  # type: ignore[operator]
    # without blocks, only a count that one product covers
    assert block(2048, 9, False) == 2048 and block(32000, 9, False) is None  # type: ignore[operator]


@pytest.mark.parametrize("dtype", [tf.float32, tf.float16])
@pytest.mark.parametrize("classes", [10, 3000])
def test_class_of_is_argmax_with_first_index_on_ties(dtype: tf.DType, classes: int) -> None:
    class_of = tf.function(helper_namespace()[CLASS_OF], jit_compile=True)  # type: ignore[arg-type]
    rng = np.random.default_rng(3)
    y = rng.random((6, classes))
    y[0, :] = 0.0
    y[1, [5, classes - 1]] = 2.0
    y[2, [classes - 1]] = 2.0
    got = class_of(tf.constant(y, dtype)).numpy()
    expected = tf.math.argmax(tf.constant(y, dtype), axis=-1, output_type=tf.int32).numpy()
    np.testing.assert_array_equal(got[:, 0], expected)
    assert got.shape == (6, 1) and got[0, 0] == 0 and got[1, 0] == 5 and got[2, 0] == classes - 1


@pytest.mark.parametrize("dtype", [tf.float32, tf.float16])
def test_softmax_cross_entropy_matches_the_fused_op(dtype: tf.DType) -> None:
    helper = helper_namespace()[SOFTMAX_CROSS_ENTROPY]
    rng = np.random.default_rng(4)
    logits = tf.constant(rng.normal(0, 3, (5, 3000)) + np.where(rng.random((5, 1)) < 0.5, 1e3, 0))
    labels = tf.constant(rng.dirichlet(np.ones(3000), 5))  # soft labels, rows summing to 1

    @tf.function(jit_compile=True)
    def value_and_gradient(y: tf.Tensor, z: tf.Tensor) -> tuple:
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = helper(y, z)  # type: ignore[operator]
        return value, tape.gradient(value, z)

    value, gradient = value_and_gradient(tf.cast(labels, dtype), tf.cast(logits, dtype))
    assert value.shape == (5, 1) and value.dtype == dtype
    expected = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    tolerance = 1e-6 if dtype == tf.float32 else 1e-2
    np.testing.assert_allclose(value.numpy()[:, 0], expected.numpy(), rtol=tolerance)
    exact_gradient = tf.nn.softmax(logits) - labels
    np.testing.assert_allclose(gradient.numpy(), exact_gradient.numpy(), atol=tolerance)


def traced_op_types(function: object, shape: tuple[int, ...]) -> set[str]:
    traced = tf.function(function).get_concrete_function(tf.TensorSpec(shape, tf.float32))  # type: ignore[call-overload]
    return {op.type for op in traced.graph.get_operations()}


def test_with_a_gpu_visible_the_helpers_keep_tensorflows_own_ops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The CPU forms were measured on the CPU; XLA for a GPU fuses reductions itself."""
    namespace = helper_namespace()
    shape = (4, 3000)
    on_cpu = traced_op_types(namespace[SUM_OVER_CLASSES], shape)
    assert "MatMul" in on_cpu and "ArgMax" not in traced_op_types(namespace[CLASS_OF], shape)
    real = tf.config.list_logical_devices
    monkeypatch.setattr(
        tf.config,
        "list_logical_devices",
        lambda kind=None: ["a GPU"] if kind == "GPU" else real(kind),
    )
    assert "MatMul" not in traced_op_types(namespace[SUM_OVER_CLASSES], shape)
    assert "ArgMax" in traced_op_types(namespace[CLASS_OF], shape)
    cross_entropy = tf.function(namespace[SOFTMAX_CROSS_ENTROPY])
    logits = tf.constant(np.random.default_rng(5).normal(size=shape), tf.float32)
    labels = tf.nn.softmax(logits * 2)
    traced = cross_entropy.get_concrete_function(labels, logits).graph.get_operations()
    assert "SoftmaxCrossEntropyWithLogits" in {op.type for op in traced}
    np.testing.assert_allclose(
        cross_entropy(labels, logits).numpy()[:, 0],
        tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits).numpy(),
        rtol=1e-6,
    )
