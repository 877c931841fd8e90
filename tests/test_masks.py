"""A masked loss's module: its Keras call converts the inputs and computes the mask once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

import lossdsl
from lossdsl.codegen.helpers import HELPER_NAMES
from lossdsl.codegen.names import function_names
from lossdsl.codegen.writer import with_mask_function_name
from lossdsl.compiler import CompiledLoss, compile_source
from lossdsl.source import SourceFile

MASKED_CE = (Path(__file__).parent / "golden" / "masked_ce.loss").read_text(encoding="utf-8")

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


@pytest.mark.parametrize("jit_compile", [False, True], ids=["tf", "xla"])
def test_the_keras_call_computes_the_mask_once(jit_compile: bool) -> None:
    loss = compile_text(MASKED_CE, jit_compile=jit_compile).loss_class()
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
