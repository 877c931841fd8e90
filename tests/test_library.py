"""The example library against independent references: values and gradients.

Every spec in examples/ is compared with the Keras built-in it reproduces (same
params) or with a direct TensorFlow implementation from tests/references.py, on random
and edge inputs, with and without sample_weight, value and gradient with respect to
y_pred. Where lossdsl's stable forms are more accurate than Keras, the last tests show
both errors against a float64 NumPy reference.
"""

from __future__ import annotations

import functools
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import references as refs
import tensorflow as tf
from test_channel_library import REFERENCES as CHANNEL_REFERENCES
from test_metric_library import REFERENCES as METRIC_REFERENCES

import lossdsl
from lossdsl.class_weights import class_weights
from lossdsl.compiler import check_source, domain_warnings
from lossdsl.parser import read_source
from lossdsl.pragmas import without_allowed

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

B, C = 6, 3
"""Batch and class sizes of every test input (vector params have C entries)."""

LossFactory = Callable[..., keras.losses.Loss]


# ---------------------------------------------------------------- inputs


def _softmax64(logits: list[list[float]]) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def _f32(rows: list[list[float]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32)


EDGE_IDS = np.array([2, 0, 1, 1, 2, 0])
EDGE: dict[str, np.ndarray] = {
    # y_true
    "binary": _f32([[1, 1, 0], [0, 1, 1], [1, 0, 0], [0, 1, 1], [1, 0, 1], [0, 1, 0]]),
    "onehot": np.eye(C, dtype=np.float32)[EDGE_IDS],
    "soft": _softmax64([[5, 0, 0], [0, 1, 2], [0, 0, 0], [-3, 3, 0], [1, 1, -1], [0, 9, 9]]),
    "label": EDGE_IDS.astype(np.int32),
    "label_ignore": np.array([2, -1, 1, -1, 0, 0], dtype=np.int32),
    "target": _f32([[0, 1, -1], [2, -2, 0.5], [0, 0, 0], [1, 1, 1], [-5, 5, 3], [0.1, 0, -0.1]]),
    "pm1": _f32([[1, -1, 1], [-1, -1, 1], [1, 1, -1], [-1, 1, -1], [1, -1, -1], [-1, 1, 1]]),
    "counts": _f32([[0, 1, 5], [2, 0, 0], [10, 3, 1], [0, 0, 0], [1, 1, 1], [7, 0, 2]]),
    # y_pred
    "prob": _f32(
        [
            [0, 1e-9, 1e-6],
            [1e-4, 0.5, 1 - 1e-4],
            [1 - 1e-6, 1, 0.3],
            [1e-9, 1 - 1e-6, 1],
            [0, 0.5, 1],
            [1e-6, 1e-4, 0.7],
        ]
    ),
    "simplex": _softmax64(
        [[30, 0, -30], [0, 30, -30], [-30, 0, 30], [20, -20, 0], [0, 0, 0], [10, 10, -10]]
    ),
    "logits": _f32(
        [[-30, 0, 30], [30, -30, 0], [-10, 10, 2], [15, -15, 0.5], [0, 0, 0], [25, -25, 5]]
    ),
    # The same without exact zeros: there |x| has a kink, and its derivative a convention.
    "prob_off_zero": _f32(
        [
            [1e-12, 1e-9, 1e-6],
            [1e-4, 0.5, 1 - 1e-4],
            [1 - 1e-6, 1, 0.3],
            [1e-9, 1 - 1e-6, 1],
            [1e-12, 0.5, 1],
            [1e-6, 1e-4, 0.7],
        ]
    ),
    "logits_off_zero": _f32(
        [
            [-30, 1e-3, 30],
            [30, -30, -1e-3],
            [-10, 10, 2],
            [15, -15, 0.5],
            [2e-3, -2e-3, 1e-3],
            [25, -25, 5],
        ]
    ),
    "real": _f32(
        [
            [-1e3, 1e3, 0.5],
            [1e2, -1e2, 3],
            [0.25, 1e-3, -1e-3],
            [50, -50, 20],
            [-7, 7, 0.125],
            [1e3, -0.1, 0.1],
        ]
    ),
    "nonneg": _f32(
        [[0, 1e-9, 1e-3], [1e3, 5, 0.1], [2, 2, 2], [1e-6, 0.5, 3], [4, 0, 1], [9, 1, 0.01]]
    ),
}


def random_input(kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A random y_true or y_pred of a kind, with y_pred's shape `shape` ([batch, ..., C])."""
    ids = rng.integers(0, C, size=shape[:-1])
    draws: dict[str, Callable[[], np.ndarray]] = {
        "binary": lambda: rng.integers(0, 2, size=shape),
        "onehot": lambda: np.eye(C)[ids],
        "soft": lambda: _softmax64(rng.normal(size=shape).tolist()),
        "label": lambda: ids,
        "label_ignore": lambda: np.where(rng.random(shape[:-1]) < 0.3, -1, ids),
        "target": lambda: rng.normal(size=shape),
        "pm1": lambda: rng.choice([-1.0, 1.0], size=shape),
        "counts": lambda: rng.poisson(2.0, size=shape),
        "prob": lambda: rng.uniform(0.01, 0.99, size=shape),
        "simplex": lambda: _softmax64((2 * rng.normal(size=shape)).tolist()),
        "logits": lambda: 3 * rng.normal(size=shape),
        "real": lambda: rng.normal(size=shape),
        "nonneg": lambda: rng.uniform(0.05, 3.0, size=shape),
    }
    value = draws[kind]()
    return value.astype(np.int32 if kind.startswith("label") else np.float32)


# ---------------------------------------------------------------- the table


def keras_loss(cls: type[keras.losses.Loss], **fixed: Any) -> LossFactory:
    """A Keras built-in with fixed arguments; the spec's params are passed through."""
    return lambda reduction, **params: cls(reduction=reduction, **fixed, **params)


def direct(fn: refs.ReferenceFn) -> LossFactory:
    """A reference function of tests/references.py, wrapped as a Keras loss."""
    return lambda reduction, **params: refs.ReferenceLoss(fn, reduction, **params)


@dataclass(frozen=True)
class Case:
    """One spec, the reference it must agree with, and the inputs to try."""

    spec: str
    y: str
    p: str
    reference: LossFactory
    params: dict[str, Any] = field(default_factory=dict)
    edges: bool = True  # whether the reference is accurate enough at EDGE inputs
    rtol: float = 1e-5
    edge_p: str = ""  # another EDGE set for y_pred than EDGE[p]

    @property
    def id(self) -> str:
        shown = ",".join(f"{k}={v}" for k, v in self.params.items() if not isinstance(v, list))
        return f"{self.spec}[{shown}]" if shown else self.spec


K = keras.losses
W3 = [0.5, 2.0, 1.25]
# fmt: off
CASES: tuple[Case, ...] = (
    # Keras built-ins, same params.
    Case("mean_squared_error", "target", "real", keras_loss(K.MeanSquaredError)),
    Case("mean_absolute_error", "target", "real", keras_loss(K.MeanAbsoluteError)),
    Case("mean_absolute_percentage_error", "target", "real",
         keras_loss(K.MeanAbsolutePercentageError)),
    Case("mean_squared_logarithmic_error", "nonneg", "real",
         keras_loss(K.MeanSquaredLogarithmicError)),
    Case("hinge", "binary", "real", keras_loss(K.Hinge)),
    Case("hinge", "pm1", "real", keras_loss(K.Hinge)),
    Case("squared_hinge", "binary", "real", keras_loss(K.SquaredHinge)),
    Case("squared_hinge", "pm1", "real", keras_loss(K.SquaredHinge)),
    Case("categorical_hinge", "onehot", "real", keras_loss(K.CategoricalHinge)),
    Case("cosine_similarity", "target", "real", keras_loss(K.CosineSimilarity)),
    Case("huber", "target", "real", keras_loss(K.Huber)),
    Case("huber", "target", "real", keras_loss(K.Huber), {"delta": 0.5}),
    Case("log_cosh", "target", "real", keras_loss(K.LogCosh)),
    Case("kl_divergence", "soft", "simplex", keras_loss(K.KLDivergence)),
    Case("kl_divergence", "onehot", "simplex", keras_loss(K.KLDivergence)),
    Case("poisson", "counts", "nonneg", keras_loss(K.Poisson)),
    Case("binary_crossentropy", "binary", "prob", keras_loss(K.BinaryCrossentropy)),
    Case("binary_crossentropy", "binary", "prob", keras_loss(K.BinaryCrossentropy),
         {"label_smoothing": 0.2}),
    Case("binary_crossentropy_logits", "binary", "logits",
         keras_loss(K.BinaryCrossentropy, from_logits=True), {"label_smoothing": 0.1}),
    Case("categorical_crossentropy", "onehot", "simplex",
         keras_loss(K.CategoricalCrossentropy), {"label_smoothing": 0.1}),
    Case("categorical_crossentropy_logits", "onehot", "logits",
         keras_loss(K.CategoricalCrossentropy, from_logits=True), {"label_smoothing": 0.1}),
    Case("sparse_categorical_crossentropy", "label", "simplex",
         keras_loss(K.SparseCategoricalCrossentropy)),
    Case("sparse_categorical_crossentropy_logits", "label", "logits",
         keras_loss(K.SparseCategoricalCrossentropy, from_logits=True)),
    Case("sparse_categorical_crossentropy_ignore", "label_ignore", "logits",
         keras_loss(K.SparseCategoricalCrossentropy, from_logits=True, ignore_class=-1)),
    Case("sparse_ce_ignore_per_sample", "label_ignore", "logits",
         keras_loss(K.SparseCategoricalCrossentropy, from_logits=True, ignore_class=-1)),
    Case("binary_focal_crossentropy", "binary", "prob", keras_loss(K.BinaryFocalCrossentropy),
         {"gamma": 1.5, "label_smoothing": 0.1}),
    Case("binary_focal", "binary", "prob",
         keras_loss(K.BinaryFocalCrossentropy, apply_class_balancing=True),
         {"gamma": 2.0, "alpha": 0.4}),
    # Keras recovers the logits of its own sigmoid, so it is exact here too.
    Case("binary_focal_logits", "binary", "logits",
         keras_loss(K.BinaryFocalCrossentropy, apply_class_balancing=True, from_logits=True),
         {"gamma": 2.0, "alpha": 0.25}, rtol=1e-4),
    Case("categorical_focal_crossentropy", "onehot", "simplex",
         keras_loss(K.CategoricalFocalCrossentropy),
         {"alpha": 0.5, "gamma": 3.0, "label_smoothing": 0.05}),
    # Keras takes a softmax and clips it: equal away from the clip only (see below).
    Case("categorical_focal_logits", "onehot", "logits",
         keras_loss(K.CategoricalFocalCrossentropy, from_logits=True),
         {"alpha": 0.25, "gamma": 2.0}, edges=False, rtol=1e-4),
    Case("dice", "binary", "prob", keras_loss(K.Dice)),
    Case("tversky", "binary", "prob", keras_loss(K.Tversky), {"alpha": 0.3, "beta": 0.7}),
    Case("categorical_generalized_cross_entropy", "label", "simplex",
         keras_loss(K.CategoricalGeneralizedCrossEntropy), {"q": 0.7}),
    Case("label_smoothed_ce", "onehot", "logits",
         lambda reduction, smoothing: K.CategoricalCrossentropy(
             from_logits=True, label_smoothing=smoothing, reduction=reduction),
         {"smoothing": 0.2}),
    # Users' losses, against direct implementations.
    Case("weighted_ce", "onehot", "simplex", direct(refs.weighted_ce), {"w": W3}),
    Case("weighted_ce_classwise", "soft", "simplex", direct(refs.weighted_ce_classwise),
         {"w": W3}),
    Case("weighted_sparse_ce", "label", "simplex", direct(refs.weighted_sparse_ce), {"w": W3}),
    Case("weighted_bce", "binary", "prob", direct(refs.weighted_bce), {"pos_weight": 3.0}),
    # TensorFlow's formula uses abs and max: its gradient at z = 0 is a convention.
    Case("weighted_bce_logits", "binary", "logits", direct(refs.weighted_bce_logits),
         {"pos_weight": 3.0}, edge_p="logits_off_zero"),
    Case("weighted_mse", "target", "real", direct(refs.weighted_mse), {"w": W3}),
    Case("focal", "onehot", "simplex", direct(refs.focal), {"gamma": 2.0, "alpha": 0.25}),
    Case("focal", "soft", "simplex", direct(refs.focal), {"gamma": 0.5, "alpha": 1.0}),
    Case("ce_l1", "binary", "prob", direct(refs.ce_l1), {"l1": 0.05}, edge_p="prob_off_zero"),
    Case("ce_kl_prior", "onehot", "simplex", direct(refs.ce_kl_prior),
         {"prior": [0.6, 0.3, 0.1], "beta": 0.5}),
    # Research losses.
    Case("class_balanced", "label", "logits", direct(refs.class_balanced), {"w": W3}),
    Case("poly1", "onehot", "logits", direct(refs.poly1), {"epsilon": 2.0}),
    # The official code clamps p at 1e-8 (log p >= -18.4), where the spec stays exact.
    Case("asymmetric", "binary", "logits", direct(refs.asymmetric),
         {"gamma_pos": 1.0, "gamma_neg": 4.0, "margin": 0.05}, edges=False, rtol=1e-4),
    Case("ldam", "label", "logits", direct(refs.ldam), {"margins": [0.5, 0.3, 0.2], "s": 10.0},
         rtol=1e-4),
    Case("quantile", "target", "real", direct(refs.quantile), {"tau": 0.9}),
    Case("soft_jaccard", "binary", "prob", direct(refs.soft_jaccard), {"smooth": 1.0}),
    # Ordinal losses (more in tests/test_ordinal_library.py).
    Case("coral", "label", "logits", direct(refs.coral)),
    Case("squared_emd", "onehot", "simplex", direct(refs.squared_emd)),
)
# fmt: on
CASE_IDS = [case.id for case in CASES]


# ---------------------------------------------------------------- helpers


@functools.cache
def compiled(spec: str) -> Any:
    """Each spec compiled once per test session.

    Without the compiler's own verification, which is slow and is not what this module
    tests: here the independent references are the check.
    """
    return lossdsl.compile_file(EXAMPLES / f"{spec}.loss", verify=False)


def spec_loss(case: Case, reduction: str | None) -> keras.losses.Loss:
    return compiled(case.spec).loss_class(reduction=reduction, **case.params)


def value_and_gradient(
    loss: keras.losses.Loss, y: np.ndarray, p: np.ndarray, sample_weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The loss (summed when not reduced) and its gradient with respect to y_pred."""
    y_pred = tf.constant(p)
    with tf.GradientTape() as tape:
        tape.watch(y_pred)
        value = loss(tf.constant(y), y_pred, sample_weight=sample_weight)
        total = tf.reduce_sum(value)
    return value.numpy(), tape.gradient(total, y_pred).numpy()


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float, what: str) -> None:
    """Equal within float32 rounding: relative, plus an absolute floor scaled to the values."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert np.all(np.isfinite(actual) == np.isfinite(expected)), f"{what}: non-finite values"
    scale = max(1.0, float(np.max(np.abs(expected[np.isfinite(expected)]), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-6 * scale, err_msg=what)


def case_inputs(case: Case, which: str) -> tuple[np.ndarray, np.ndarray]:
    if which == "edge":
        return EDGE[case.y], EDGE[case.edge_p or case.p]
    # A seed of the case's own: Python's hash() of a string changes with each process.
    rng = np.random.default_rng(zlib.crc32(f"{case.id} {which}".encode()))
    shape = (2, 2, C) if which == "spatial" else (B, C)
    return random_input(case.y, shape, rng), random_input(case.p, shape, rng)


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("which", ["random", "spatial", "edge"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_reference(case: Case, which: str) -> None:
    if which == "edge" and not case.edges:
        pytest.skip("the reference is inexact at edge inputs; see the accuracy tests")
    y, p = case_inputs(case, which)
    reference = case.reference(None, **case.params)
    expected_value, expected_grad = value_and_gradient(reference, y, p)
    actual_value, actual_grad = value_and_gradient(spec_loss(case, None), y, p)
    assert_close(actual_value, expected_value, case.rtol, f"{case.id} {which} value")
    assert_close(actual_grad, expected_grad, 20 * case.rtol, f"{case.id} {which} gradient")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_reference_with_sample_weight(case: Case) -> None:
    y, p = case_inputs(case, "random")
    weights = np.random.default_rng(7).uniform(0.0, 2.0, size=B).astype(np.float32)
    weights[1] = 0.0
    reference = case.reference("sum_over_batch_size", **case.params)
    expected = value_and_gradient(reference, y, p, weights)
    actual = value_and_gradient(spec_loss(case, "sum_over_batch_size"), y, p, weights)
    assert_close(actual[0], expected[0], case.rtol, f"{case.id} weighted value")
    assert_close(actual[1], expected[1], 20 * case.rtol, f"{case.id} weighted gradient")


def test_every_example_is_tested() -> None:
    """Here, or with the channel and metric-learning references (test_channel_library.py,
    test_metric_library.py)."""
    tested = {case.spec for case in CASES} | set(CHANNEL_REFERENCES) | set(METRIC_REFERENCES)
    assert tested == {path.stem for path in EXAMPLES.glob("*.loss")}


LIBRARY_WARNINGS: dict[str, list[str]] = {
    # p_m^gamma_neg: with gamma_neg below 1, an infinite gradient where sigmoid(z) <= margin.
    "asymmetric": ["W405"],
    # p_true^q, q in (0, 1): an infinite gradient where the true class's p is 0.
    "categorical_generalized_cross_entropy": ["W405"],
}
"""The warnings the library gives on load: hazards of specs that mirror no Keras built-in.
Specs that mirror a Keras built-in acknowledge its hazards with `# lossdsl: allow`."""


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.loss")), ids=lambda path: path.stem)
def test_library_specs_warn_only_about_their_own_hazards(path: Path) -> None:
    source = read_source(path.read_bytes(), path.name)
    checked = check_source(source)
    found = without_allowed([*checked.warnings, *domain_warnings(checked)], source)
    assert [d.code for d in found] == LIBRARY_WARNINGS.get(path.stem, [])


@pytest.mark.parametrize("name", ["dice", "categorical_crossentropy", "binary_focal"])
def test_loading_a_spec_that_allows_its_warnings_warns_nothing(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", lossdsl.LossSpecWarning)
        lossdsl.load(EXAMPLES / f"{name}.loss")


def test_load_passes_params() -> None:
    y, p = case_inputs(CASES[0], "random")
    loss = lossdsl.load(EXAMPLES / "huber.loss", delta=0.5)
    expected = keras.losses.Huber(delta=0.5)(y, p)
    np.testing.assert_allclose(loss(y, p), expected, rtol=1e-6)


def test_class_balanced_with_effective_weights() -> None:
    labels = np.repeat([0, 1, 2], [50, 8, 2])
    weights = class_weights(labels, "effective", beta=0.99)
    rng = np.random.default_rng(3)
    y, z = random_input("label", (B, C), rng), random_input("logits", (B, C), rng)
    loss = lossdsl.load(EXAMPLES / "class_balanced.loss", w=weights)
    expected = refs.ReferenceLoss(refs.class_balanced, w=weights)(y, z)
    np.testing.assert_allclose(loss(y, z), expected, rtol=1e-5)


# ---------------------------------------------------------------- accuracy beyond Keras


def relative_error(actual: np.ndarray, exact: np.ndarray) -> float:
    """The largest error relative to the exact value, elementwise."""
    return float(np.max(np.abs(actual - exact) / np.abs(exact)))


def gradient_error(actual: np.ndarray, exact: np.ndarray) -> float:
    """The largest error relative to the largest exact gradient entry."""
    return float(np.max(np.abs(actual - exact)) / np.max(np.abs(exact)))


def test_categorical_focal_logits_stays_exact_where_keras_clips() -> None:
    # Confidently wrong predictions: Keras clips softmax(z) at 1e-7, so the loss stops
    # at alpha * -log(1e-7) = 4.03 and its gradient vanishes; the spec stays exact.
    y = np.eye(C, dtype=np.float32)[[2, 1, 0]]
    z = _f32([[30, 0, -30], [1e4, 0, 0], [-50, 25, 25]])
    exact_value, exact_grad = refs.np_categorical_focal_logits(y, z.astype(np.float64), 2.0, 0.25)
    ours = value_and_gradient(compiled("categorical_focal_logits").loss_class(reduction=None), y, z)
    keras_focal = keras.losses.CategoricalFocalCrossentropy(from_logits=True, reduction=None)
    theirs = value_and_gradient(keras_focal, y, z)
    assert relative_error(ours[0], exact_value) < 1e-6
    assert gradient_error(ours[1], exact_grad) < 1e-4
    assert relative_error(theirs[0], exact_value) > 0.7
    assert gradient_error(theirs[1], exact_grad) > 0.9


def test_log_sigmoid_spec_is_exact_where_hand_written_tf_is_not() -> None:
    # weighted_bce_logits.loss is written with log(sigmoid(z)); the compiler makes it
    # softplus. The same formula written by hand in TensorFlow gives inf and NaN.
    y = _f32([[1, 0, 1], [0, 1, 0]])
    z = _f32([[-20.72, 30, -120], [1e4, -1e4, 88]])
    exact = refs.np_bce_logits(y, z.astype(np.float64), 1.0)
    ours = compiled("weighted_bce_logits").loss_class(reduction=None)(y, z).numpy()
    sig = tf.sigmoid(z)
    by_hand = tf.reduce_mean(-(y * tf.math.log(sig) + (1 - y) * tf.math.log(1 - sig)), -1)
    assert relative_error(ours, exact) < 1e-6
    assert not np.any(np.isfinite(by_hand.numpy()))


def test_log1p_forms_are_exact_for_small_probabilities() -> None:
    # -log(1 - p) for an easy negative: Keras computes log(1 - p) in float32, which
    # rounds 1 - p; the compiler's log1p(-p) does not. The same holds for MSLE.
    y = np.zeros((4, 1), np.float32)
    p = _f32([[1e-6], [3e-6], [2e-5], [1e-4]])
    bce_exact = refs.np_bce(y.astype(np.float64), p.astype(np.float64))
    bce_ours = compiled("binary_crossentropy").loss_class(reduction=None)(y, p).numpy()
    bce_keras = keras.losses.BinaryCrossentropy(reduction=None)(y, p).numpy()
    assert relative_error(bce_ours, bce_exact) < 1e-5
    assert relative_error(bce_keras, bce_exact) > 1e-3
    msle_exact = refs.np_msle(y.astype(np.float64), p.astype(np.float64))
    msle_ours = compiled("mean_squared_logarithmic_error").loss_class(reduction=None)(y, p).numpy()
    msle_keras = keras.losses.MeanSquaredLogarithmicError(reduction=None)(y, p).numpy()
    assert relative_error(msle_ours, msle_exact) < 1e-4
    assert relative_error(msle_keras, msle_exact) > 1e-2
