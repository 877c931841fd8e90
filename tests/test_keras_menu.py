"""The Keras test menu for generated losses: every spec behaves as a Keras loss should.

For each spec (a few inline ones with NumPy references, and every `examples/*.loss`):
unweighted value, per-sample `sample_weight`, zero weights, `reduction=None` shapes,
every reduction, and the config round trip through Keras serialization. Verification is
off here (it has its own tests); inputs are small and drawn from each input's kind. The
masked specs also run the menu against the Keras loss they reproduce, with labels that
the mask leaves out.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from lossdsl.api import resolve_spec
from lossdsl.spec_loss import SpecLoss

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.loss"))
BATCH = 4
DEFAULT_CLASSES = 3
EPS = 1e-7

Reference = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _clip(p: np.ndarray) -> np.ndarray:
    return np.clip(p, EPS, 1 - EPS)


INLINE_SPECS: dict[str, tuple[str, Reference]] = {
    "mse": (
        "input y: target\ninput p: real\nloss mse = mean(square(p - y))",
        lambda y, p: np.mean(np.square(p - y), axis=-1),
    ),
    "focal": (
        "input y: onehot\ninput p: prob\nparam gamma: nonneg = 2.0\nparam alpha: unit = 0.25\n"
        "let q = clip(p)\nloss focal = mean(sum(alpha * (1 - q)^gamma * -y * log(q)))",
        lambda y, p: np.sum(0.25 * (1 - _clip(p)) ** 2 * -y * np.log(_clip(p)), axis=-1),
    ),
    "weighted_ce": (
        "input y: onehot\ninput p: prob\nparam w: nonneg = [1.0, 2.5, 4.0]\n"
        "loss weighted_ce = mean(w[class(y)] * -sum(y * log(clip(p))))",
        lambda y, p: (
            np.array([1.0, 2.5, 4.0])[np.argmax(y, -1)] * -np.sum(y * np.log(_clip(p)), axis=-1)
        ),
    ),
}

SPECS: dict[str, str] = {name: text for name, (text, _) in INLINE_SPECS.items()}
SPECS.update({path.stem: str(path) for path in EXAMPLES})


@dataclass(frozen=True)
class Case:
    """A loaded spec and a batch drawn from its input kinds."""

    loss: SpecLoss
    y_true: np.ndarray
    y_pred: np.ndarray


def draw(kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Values a spec's input of this kind may hold, as float32 (labels as float ids)."""
    classes = shape[-1]
    match kind:
        case "onehot":
            return np.eye(classes, dtype="float32")[rng.integers(0, classes, shape[:-1])]
        case "label":
            return rng.integers(0, classes, shape[:-1]).astype("float32")
        case "binary":
            return rng.integers(0, 2, shape).astype("float32")
        case "prob":
            logits = rng.normal(size=shape)
            return (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype("float32")
        case "nonneg":
            return rng.uniform(0.1, 2.0, shape).astype("float32")
    return rng.normal(size=shape).astype("float32")


@functools.cache
def make_case(spec_id: str, spatial: int = 0) -> Case:
    loss = SpecLoss(
        resolve_spec(SPECS[spec_id]).text, verify=False, reduction="sum_over_batch_size"
    )
    vectors = [value for value in loss.params.values() if isinstance(value, tuple)]
    classes = len(vectors[0]) if vectors else max(DEFAULT_CLASSES, channels_needed(loss))
    kinds = loss_kinds(loss)
    shape = (BATCH, *([spatial] if spatial else []), classes)
    rng = np.random.default_rng(len(spec_id) + spatial)
    return Case(loss, draw(kinds[0], shape, rng), draw(kinds[1], shape, rng))


def loss_kinds(loss: SpecLoss) -> tuple[str, str]:
    from lossdsl.compiler import check_source
    from lossdsl.source import SourceFile

    checked = check_source(SourceFile.from_text(loss.spec))
    return checked.y_true.kind, checked.y_pred.kind


def per_element(loss: SpecLoss) -> bool:
    """Whether a spec's values keep the spatial axes (LANGUAGE.md: per element)."""
    from lossdsl.compiler import check_source
    from lossdsl.source import SourceFile
    from lossdsl.typed import Role

    return Role.SPATIAL in check_source(SourceFile.from_text(loss.spec)).result.roles


def channels_needed(loss: SpecLoss) -> int:
    """The most channels a spec's selections take of an input (LANGUAGE.md 6.2)."""
    from lossdsl.channels import requirements
    from lossdsl.compiler import check_source
    from lossdsl.source import SourceFile

    checked = check_source(SourceFile.from_text(loss.spec))
    needs = requirements([checked.result], checked.source).values()
    return max((need.needed for need in needs), default=1)


def with_reduction(case: Case, reduction: str | None) -> SpecLoss:
    config = case.loss.get_config()
    config["reduction"] = reduction
    return SpecLoss.from_config(config)


def per_sample(case: Case) -> np.ndarray:
    return np.asarray(with_reduction(case, None)(case.y_true, case.y_pred))


pytestmark = pytest.mark.filterwarnings("ignore::lossdsl.LossSpecWarning")
SPEC_IDS = list(SPECS)


@pytest.mark.parametrize("spec_id", list(INLINE_SPECS))
def test_unweighted_value_matches_the_numpy_reference(spec_id: str) -> None:
    case = make_case(spec_id)
    expected = INLINE_SPECS[spec_id][1](case.y_true.astype("float64"), case.y_pred)
    np.testing.assert_allclose(per_sample(case), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        float(case.loss(case.y_true, case.y_pred)), expected.mean(), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("spec_id", SPEC_IDS)
def test_reductions_agree_with_the_unreduced_values(spec_id: str) -> None:
    case = make_case(spec_id)
    values = per_sample(case)
    assert values.shape[:1] == (BATCH,) or values.shape == ()
    assert np.all(np.isfinite(values))
    # what `call` returns carries a masked spec's mask (nt_xent's anchors with a positive)
    called = case.loss.call(case.y_true, case.y_pred)
    mask = np.asarray(getattr(called, "_keras_mask", np.ones(values.shape, bool)))
    weights = np.linspace(0.5, 2.0, BATCH).astype("float32")
    mask = np.broadcast_to(mask, (values * weights).shape)
    weighted = values * weights * mask  # a scalar (batch-coupled) loss is scaled by each weight
    expected = {
        "sum_over_batch_size": weighted.sum() / max(mask.sum(), 1),
        "mean": weighted.sum() / max(mask.sum(), 1),
        "sum": weighted.sum(),
        "mean_with_sample_weight": weighted.sum() / ((weights * mask).sum() or 1.0),
    }  # Keras divides without NaN: 0 where every value is masked
    for reduction, value in expected.items():
        loss = with_reduction(case, reduction)
        actual = float(loss(case.y_true, case.y_pred, sample_weight=weights))
        np.testing.assert_allclose(actual, value, rtol=1e-5, atol=1e-6, err_msg=reduction)


@pytest.mark.parametrize("spec_id", SPEC_IDS)
def test_sample_weights_weigh_each_sample_and_zero_weights_give_zero(spec_id: str) -> None:
    case = make_case(spec_id)
    values = per_sample(case)
    if not values.shape:
        pytest.skip("a scalar (batch-coupled) loss is scaled, not weighed per sample")
    only_first = np.array([1.0] + [0.0] * (BATCH - 1), dtype="float32")
    weighted = float(with_reduction(case, "sum")(case.y_true, case.y_pred, only_first))
    np.testing.assert_allclose(weighted, values[0].sum(), rtol=1e-5, atol=1e-6)
    zero = np.zeros(BATCH, dtype="float32")
    assert float(case.loss(case.y_true, case.y_pred, sample_weight=zero)) == 0.0


def value_and_gradient(loss: Callable[..., Any], case: Case) -> tuple[np.ndarray, np.ndarray]:
    y_pred = tf.constant(case.y_pred)
    with tf.GradientTape() as tape:
        tape.watch(y_pred)
        value = loss(case.y_true, y_pred)
    return np.asarray(value), np.asarray(tape.gradient(value, y_pred))


@pytest.mark.parametrize("spatial", [0, 2], ids=["per_sample", "spatial"])
@pytest.mark.parametrize("spec_id", SPEC_IDS)
def test_the_default_reduction_is_keras_s_in_value_and_gradient(spec_id: str, spatial: int) -> None:
    # without sample weights or a mask, a loss takes the mean of every value in one function
    # (`<name>_mean`, docs/KERAS.md "The default reduction"), not Keras's reduction of `call`
    if spatial and not per_element(make_case(spec_id).loss):
        pytest.skip("a per-sample loss has no spatial axes to keep")
    case = make_case(spec_id, spatial)
    value, gradient = value_and_gradient(case.loss, case)
    keras_value, keras_gradient = value_and_gradient(
        functools.partial(keras.losses.Loss.__call__, case.loss), case
    )
    assert value.shape == ()
    np.testing.assert_allclose(value, keras_value, rtol=1e-5, atol=1e-6)
    scale = float(np.max(np.abs(keras_gradient), initial=0.0))
    np.testing.assert_allclose(gradient, keras_gradient, rtol=1e-4, atol=1e-6 * scale)


class TwoReplicas:
    num_replicas_in_sync = 2


MEAN_FUNCTION_TAKEN = {
    "default": True,
    "reduction mean": True,
    "sample_weight": False,
    "a Keras mask": False,
    "reduction sum": False,
    "reduction None": False,
    "mean_with_sample_weight": False,
    "two replicas": False,
}


@pytest.mark.parametrize("call", list(MEAN_FUNCTION_TAKEN))
def test_the_mean_function_serves_the_default_reduction_alone(
    call: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = make_case("focal")
    reduction = {"reduction mean": "mean", "reduction sum": "sum", "reduction None": None}
    reduction["mean_with_sample_weight"] = "mean_with_sample_weight"
    loss = with_reduction(case, reduction.get(call, "sum_over_batch_size"))
    module = sys.modules[type(loss.generated_loss).__module__]
    calls = []
    mean_function = module.focal_mean
    monkeypatch.setattr(
        module, "focal_mean", lambda *args: calls.append(args) or mean_function(*args)
    )
    y_pred = tf.constant(case.y_pred)
    sample_weight = np.ones(BATCH, "float32") if call == "sample_weight" else None
    if call == "a Keras mask":
        y_pred._keras_mask = tf.constant([True] * BATCH)
    if call == "two replicas":
        monkeypatch.setattr(tf.distribute, "get_strategy", TwoReplicas)
    value = loss(case.y_true, y_pred, sample_weight=sample_weight)
    assert bool(calls) == MEAN_FUNCTION_TAKEN[call]
    expected = keras.losses.Loss.__call__(loss, case.y_true, y_pred, sample_weight=sample_weight)
    np.testing.assert_allclose(value, expected, rtol=1e-6)


@pytest.mark.parametrize("spec_id", ["mse", "focal", "weighted_ce"])
def test_reduction_none_keeps_the_spatial_axes_of_per_element_losses(spec_id: str) -> None:
    case = make_case(spec_id, spatial=2)
    assert per_sample(case).shape == (BATCH, 2)


@pytest.mark.parametrize("spec_id", SPEC_IDS)
def test_config_round_trips_through_keras_serialization(spec_id: str) -> None:
    case = make_case(spec_id)
    serialized = keras.saving.serialize_keras_object(case.loss)
    assert serialized["registered_name"] == "lossdsl>SpecLoss"
    restored = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(restored, SpecLoss)
    assert restored.get_config() == case.loss.get_config()
    np.testing.assert_allclose(
        float(restored(case.y_true, case.y_pred)), float(case.loss(case.y_true, case.y_pred))
    )


MASKED_EQUIVALENTS: dict[str, Callable[[str | None], keras.losses.Loss]] = {
    name: lambda reduction: keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=-1, reduction=reduction
    )
    for name in (
        "sparse_categorical_crossentropy_ignore",  # the lifted mean
        "sparse_ce_ignore_per_sample",  # LANGUAGE.md 6.4
    )
}
"""The masked examples and the Keras loss each reproduces."""

REDUCTIONS = ["sum_over_batch_size", "mean", "sum", "mean_with_sample_weight", None]


def with_ignored(case: Case) -> np.ndarray:
    """The case's labels with every third element set to the ignored class -1."""
    labels = case.y_true.copy()
    labels.reshape(-1)[::3] = -1
    return labels


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighting", ["unweighted", "weighted", "zero weights"])
@pytest.mark.parametrize("spatial", [0, 2], ids=["per_sample", "per_element"])
@pytest.mark.parametrize("spec_id", list(MASKED_EQUIVALENTS))
def test_masked_specs_match_the_keras_loss(
    spec_id: str, spatial: int, weighting: str, reduction: str | None
) -> None:
    case = make_case(spec_id, spatial)
    labels = with_ignored(case)
    weights = np.linspace(0.5, 2.0, labels.size).astype("float32").reshape(labels.shape)
    sample_weight = {"unweighted": None, "weighted": weights, "zero weights": 0 * weights}
    builtin = MASKED_EQUIVALENTS[spec_id](reduction)
    expected = builtin(labels, case.y_pred, sample_weight=sample_weight[weighting])
    actual = with_reduction(case, reduction)(
        labels, case.y_pred, sample_weight=sample_weight[weighting]
    )
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec_id", list(MASKED_EQUIVALENTS))
def test_masked_config_round_trip_keeps_the_mask(spec_id: str) -> None:
    case = make_case(spec_id)
    labels = with_ignored(case)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(case.loss))
    values = restored.call(labels, case.y_pred)
    np.testing.assert_array_equal(values._keras_mask.numpy(), labels != -1)
    expected = MASKED_EQUIVALENTS[spec_id]("sum_over_batch_size")(labels, case.y_pred)
    np.testing.assert_allclose(restored(labels, case.y_pred), expected, rtol=1e-5)
