"""A masked loss's module: its Keras call converts the inputs and computes the mask once;
masks on per-sample and per-element results that are not a lifted mean (LANGUAGE.md 6.4)
through every stage, against Keras's `ignore_class`."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from backend_harness import PADDED_GRADIENT, PADDED_LABELS, PADDED_LOG, PADDED_P

import lossdsl
from lossdsl import cli
from lossdsl.codegen.helpers import HELPER_NAMES
from lossdsl.codegen.names import function_names
from lossdsl.codegen.writer import with_mask_function_name
from lossdsl.compiler import CompiledLoss, compile_source
from lossdsl.runtime import untraced_copy, untraced_values
from lossdsl.source import SourceFile
from lossdsl.verification.driver import verify_module

GOLDEN = Path(__file__).parent / "golden"
MASKED_CE = (GOLDEN / "masked_ce.loss").read_text(encoding="utf-8")
MASKED_CE_PER_SAMPLE = (GOLDEN / "masked_ce_per_sample.loss").read_text(encoding="utf-8")
"""The same loss as MASKED_CE, written per element: `call` returns the same values."""

MASKED_WEIGHTED_CE = """\
input y: label
input z: logits

param w = [1.0, 2.0, 3.0]
param scale: nonneg = 2.0

mask y != -1
loss masked_weighted_ce = mean(scale * w[y] * -sum(onehot(y) * log_softmax(z)))
"""

LABELS = np.array([[0, -1, 2], [-1, 1, 1]])
LOGITS = np.random.default_rng(0).normal(size=(2, 3, 3)).astype("float32")


def compile_text(text: str, *, jit_compile: bool = False) -> CompiledLoss:
    return compile_source(SourceFile.from_text(text), verify=False, jit_compile=jit_compile)


def traced_ops(function: Any) -> list[str]:
    """The op types of `function` traced on [batch, 3] labels and [batch, 3, 3] logits,
    with those of every function it calls."""
    graph = (
        tf.function(function)
        .get_concrete_function(
            tf.TensorSpec([None, 3], tf.int32), tf.TensorSpec([None, 3, 3], tf.float32)
        )
        .graph.as_graph_def()
    )
    called = [node for function in graph.library.function for node in function.node_def]
    return [node.op for node in [*graph.node, *called]]


@pytest.mark.parametrize("text", [MASKED_CE, MASKED_CE_PER_SAMPLE], ids=["lifted", "per_sample"])
@pytest.mark.parametrize("jit_compile", [False, True], ids=["tf", "xla"])
def test_the_keras_call_computes_the_mask_once(jit_compile: bool, text: str) -> None:
    loss = compile_text(text, jit_compile=jit_compile).loss_class()
    ops = traced_ops(loss.call)
    assert ops.count("NotEqual") == 1
    assert ops.count("PartitionedCall") + ops.count("StatefulPartitionedCall") == 1


def test_a_loaded_spec_loss_computes_the_mask_once() -> None:
    loss = lossdsl.load(MASKED_CE, verify=False)
    assert traced_ops(loss.call).count("NotEqual") == 1


@pytest.mark.parametrize("jit_compile", [False, True], ids=["tf", "xla"])
def test_the_public_functions_keep_their_values_and_mask(jit_compile: bool) -> None:
    compiled = compile_text(MASKED_WEIGHTED_CE, jit_compile=jit_compile)
    function, mask_function, _ = function_names(compiled.loss_name)
    values = getattr(compiled.module, function)(LABELS, LOGITS).numpy()
    mask = getattr(compiled.module, mask_function)(LABELS, LOGITS).numpy()
    with_mask = getattr(compiled.module, with_mask_function_name(compiled.loss_name))
    pair_values, pair_mask = with_mask(LABELS, LOGITS, [1.0, 2.0, 3.0], 2.0)

    np.testing.assert_array_equal(mask, LABELS != -1)
    log_softmax = LOGITS - np.log(np.exp(LOGITS).sum(-1, keepdims=True))
    picked = -np.take_along_axis(log_softmax, np.maximum(LABELS, 0)[..., None], -1)[..., 0]
    expected = np.where(mask, 2.0 * np.array([1.0, 2.0, 3.0])[np.maximum(LABELS, 0)] * picked, 0)
    np.testing.assert_allclose(values, expected, rtol=1e-5)
    np.testing.assert_array_equal(pair_values.numpy(), values)
    np.testing.assert_array_equal(pair_mask.numpy(), mask)
    halved = getattr(compiled.module, function)(LABELS, LOGITS, scale=1.0).numpy()
    np.testing.assert_allclose(halved, values / 2, rtol=1e-6)


def test_the_keras_loss_is_the_mean_over_the_mask() -> None:
    loss = compile_text(MASKED_WEIGHTED_CE).loss_class(scale=1.0)
    values = loss.call(LABELS, LOGITS)
    np.testing.assert_array_equal(values._keras_mask.numpy(), LABELS != -1)
    expected = values.numpy()[LABELS != -1].mean()
    np.testing.assert_allclose(float(loss(LABELS, LOGITS)), expected, rtol=1e-6)


def test_verification_traces_none_of_the_functions_users_call() -> None:
    compiled = compile_source(SourceFile.from_text(MASKED_CE), verify=True)
    function, mask_function, _ = function_names(compiled.loss_name)
    for name in (function, mask_function, with_mask_function_name(compiled.loss_name)):
        assert getattr(compiled.module, name).experimental_get_tracing_count() == 0, name


def test_the_private_function_is_named_apart_from_the_helpers() -> None:
    assert not any(name.endswith("_with_mask") for name in HELPER_NAMES)


# ---------------------------------------------------------------- masks on per-sample results

KERAS_IGNORE_LABELS = (np.array([[-1, 2]]), np.array([[[-1], [2]]]))
KERAS_IGNORE_LOGITS = np.array([[[0.854, 0.698, 0.598], [0.088, 0.86, 0.018]]])
"""keras/src/losses/losses_test.py, `SparseCategoricalCrossentropyTest.test_ignore_class`:
both label shapes give [[0.0, 1.480129]] with reduction=None."""

REDUCTIONS = ["sum_over_batch_size", "mean", "sum", "mean_with_sample_weight", None]


def ignore_class(reduction: str | None = "sum_over_batch_size") -> keras.losses.Loss:
    return keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=-1, reduction=reduction
    )


def segmentation_batch(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels [2, 3, 4] with void pixels (-1), logits [2, 3, 4, 3], per-pixel weights."""
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random((2, 3, 4)) < 0.3, -1, rng.integers(0, 3, (2, 3, 4)))
    logits = (3 * rng.normal(size=(2, 3, 4, 3))).astype("float32")
    return labels.astype("int32"), logits, rng.uniform(0.0, 2.0, (2, 3, 4)).astype("float32")


def test_a_per_sample_result_with_a_mask_is_not_lifted_and_returns_the_same_values() -> None:
    per_sample = compile_text(MASKED_CE_PER_SAMPLE)
    assert not per_sample.checked.lifted
    values = per_sample.loss_class(reduction=None).call(LABELS, LOGITS)
    lifted = compile_text(MASKED_CE).loss_class(reduction=None).call(LABELS, LOGITS)
    np.testing.assert_array_equal(values.numpy(), lifted.numpy())
    np.testing.assert_array_equal(values._keras_mask.numpy(), LABELS != -1)


@pytest.mark.parametrize("labels", KERAS_IGNORE_LABELS, ids=["rank_2", "rank_3"])
def test_keras_own_ignore_class_case(labels: np.ndarray) -> None:
    loss = compile_text(MASKED_CE_PER_SAMPLE).loss_class(reduction=None)
    np.testing.assert_allclose(loss(labels, KERAS_IGNORE_LOGITS), [[0.0, 1.480129]], rtol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighting", ["unweighted", "weighted", "zero weights"])
@pytest.mark.parametrize("spatial", [False, True], ids=["per_sample", "per_element"])
def test_every_reduction_counts_only_the_unmasked_elements_as_ignore_class_does(
    reduction: str | None, weighting: str, spatial: bool
) -> None:
    labels, logits, weights = segmentation_batch(seed=3)
    if not spatial:  # [6, 3] logits: one value per sample
        labels, logits, weights = labels.reshape(-1), logits.reshape(-1, 3), weights.reshape(-1)
    sample_weight = {"unweighted": None, "weighted": weights, "zero weights": 0 * weights}
    loss = lossdsl.load(MASKED_CE_PER_SAMPLE, verify=False, reduction=reduction)
    expected = ignore_class(reduction)(labels, logits, sample_weight=sample_weight[weighting])
    actual = loss(labels, logits, sample_weight=sample_weight[weighting])
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_a_batch_with_every_element_masked_gives_zero() -> None:
    labels = -np.ones((2, 3), dtype="int32")
    for reduction in REDUCTIONS:
        loss = lossdsl.load(MASKED_CE_PER_SAMPLE, verify=False, reduction=reduction)
        assert np.all(loss(labels, LOGITS).numpy() == 0.0), reduction


def test_the_gradient_is_the_ignore_class_gradient() -> None:
    labels, logits, weights = segmentation_batch(seed=4)
    loss = lossdsl.load(MASKED_CE_PER_SAMPLE, verify=False)
    gradients = []
    for each in (loss, ignore_class()):
        z = tf.constant(logits)
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = each(labels, z, sample_weight=weights)
        gradients.append(tape.gradient(value, z).numpy())
    assert np.all(gradients[0][labels == -1] == 0.0)
    np.testing.assert_allclose(gradients[0], gradients[1], rtol=1e-5, atol=1e-7)


def test_a_padded_element_whose_loss_overflows_gets_a_zero_gradient() -> None:
    """Not 0 * inf = NaN: the gradient outside the mask is 0, whatever the loss is there."""
    loss = compile_source(SourceFile.from_text(PADDED_LOG)).per_sample_function
    p = tf.constant(PADDED_P)
    with tf.GradientTape() as tape:
        tape.watch(p)
        values = loss(PADDED_LABELS, p)
    np.testing.assert_allclose(values.numpy(), [[np.log(4.0), 0.0]], rtol=1e-6)
    np.testing.assert_array_equal(tape.gradient(values, p).numpy(), PADDED_GRADIENT)


def test_the_verifier_covers_the_masked_per_sample_values() -> None:
    # The class 0 masked: the cross-entropy there is not 0 (as it is at the label -1).
    text = MASKED_CE_PER_SAMPLE.replace("mask y != -1", "mask y != 0")
    compiled = compile_text(text)
    with_mask = getattr(compiled.module, with_mask_function_name(compiled.loss_name))
    assert verify_module(compiled.symbolic, untraced_values(with_mask, jit_compile=False)) == ()
    unmasked = compile_text(text.replace("mask y != 0", ""))
    ignoring_the_mask = untraced_copy(unmasked.per_sample_function, jit_compile=False)
    codes = {d.code for d in verify_module(compiled.symbolic, ignoring_the_mask)}
    assert "E901" in codes


def test_the_standalone_module_carries_the_mask() -> None:
    path = GOLDEN / "masked_ce_per_sample.py"
    spec = importlib.util.spec_from_file_location("masked_ce_per_sample_standalone", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    labels, logits, weights = segmentation_batch(seed=5)
    for reduction in REDUCTIONS:
        loss = module.MaskedCePerSample(reduction=reduction)
        np.testing.assert_allclose(
            loss(labels, logits, sample_weight=weights),
            ignore_class(reduction)(labels, logits, sample_weight=weights),
            rtol=1e-5,
            atol=1e-6,
        )


def test_a_saved_model_keeps_the_masked_loss(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((4, 3)), keras.layers.Dense(3)])
    model.compile(
        optimizer="sgd", loss=lossdsl.load(MASKED_CE_PER_SAMPLE, verify=False, reduction="sum")
    )
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    assert restored.loss.get_config() == model.loss.get_config()
    labels, logits, weights = segmentation_batch(seed=6)
    np.testing.assert_allclose(
        restored.loss(labels[0], logits[0], sample_weight=weights[0]),
        ignore_class("sum")(labels[0], logits[0], sample_weight=weights[0]),
        rtol=1e-5,
    )


def test_explain_shows_the_mask(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "masked.loss"
    spec.write_text(MASKED_CE_PER_SAMPLE, encoding="utf-8")
    assert cli.main(["explain", str(spec)]) == 0
    simplified = capsys.readouterr().out.split("Simplified (one element):\n")[1].split("\n\n")[0]
    assert simplified.splitlines() == [
        "    loss masked_ce_per_sample = -log_softmax(z)[y]",
        "    mask y != -1  (call returns 0 outside it, and Keras's reduction counts only the "
        "elements inside)",
    ]
