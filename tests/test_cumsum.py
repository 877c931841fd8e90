"""cumsum (LANGUAGE.md 6.1): the running sum over the class axis, through every stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from lossdsl import cli
from lossdsl.compiler import CompiledLoss, compile_source
from lossdsl.diagnostics import LossSpecError
from lossdsl.source import SourceFile

EMD = "input y: onehot\ninput p: prob\nloss = mean(sum(square(cumsum(p) - cumsum(y))))\n"
"""The squared earth mover's distance between two distributions over ordered classes."""

CORAL = (
    "input y: label\ninput z: real\nloss = mean(sum(softplus(z) - (1 - cumsum(onehot(y))) * z))\n"
)
"""CORAL: a binary cross-entropy on logits per ordinal level [y > k]."""

RTOL = {"float32": 1e-5, "float64": 1e-12}


def compiled(text: str) -> CompiledLoss:
    """Compiled and verified against the exact reference (value and gradient)."""
    return compile_source(SourceFile.from_text(text, "spec.loss"))


def value_and_gradient(
    loss: CompiledLoss, y: np.ndarray, pred: np.ndarray, dtype: str
) -> tuple[np.ndarray, np.ndarray]:
    prediction = tf.constant(pred, dtype)
    with tf.GradientTape() as tape:
        tape.watch(prediction)
        value = loss.loss_class(reduction=None, dtype=dtype)(tf.constant(y), prediction)
    return value.numpy(), tape.gradient(value, prediction).numpy()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_squared_earth_movers_distance_matches_numpy(dtype: str) -> None:
    loss = compiled(EMD)
    assert loss.diagnostics == ()
    assert "tf.math.cumsum(" in loss.python_source
    rng = np.random.default_rng(0)
    y = np.eye(5)[rng.integers(0, 5, size=4)].astype(dtype)
    p = rng.dirichlet(np.ones(5), size=4)
    value, gradient = value_and_gradient(loss, y, p, dtype)
    difference = np.cumsum(p, axis=-1) - np.cumsum(y, axis=-1)
    expected = np.sum(difference**2, axis=-1)
    # d/dp_c of sum_k d_k^2 is the sum over k >= c of 2 d_k: a reversed cumsum
    slope = np.flip(np.cumsum(np.flip(2 * difference, -1), axis=-1), -1)
    np.testing.assert_allclose(value, expected, rtol=RTOL[dtype])
    np.testing.assert_allclose(gradient, slope, rtol=RTOL[dtype], atol=RTOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_coral_ordinal_levels_match_numpy(dtype: str) -> None:
    loss = compiled(CORAL)
    assert loss.diagnostics == ()
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, size=(6, 1)).astype(np.int32)
    z = rng.normal(size=(6, 4)) * 2
    value, gradient = value_and_gradient(loss, y, z, dtype)
    levels = (y > np.arange(4)).astype(float)  # 1 - cumsum(onehot(y)) is [y > k]
    expected = np.sum(np.logaddexp(0, z) - levels * z, axis=-1)
    slope = 1 / (1 + np.exp(-z)) - levels
    np.testing.assert_allclose(value, expected, rtol=RTOL[dtype])
    np.testing.assert_allclose(gradient, slope, rtol=RTOL[dtype], atol=RTOL[dtype])


@pytest.mark.parametrize("target", ["tensorflow", "jax", "torch"])
def test_cumsum_of_a_value_simplification_frees_of_the_class_axis(target: str) -> None:
    """abs(p - p) < k is 0 < k after simplification: the cumsum's argument, a select of
    numbers, no longer has the class axis. At class c the running sum is c + 1 times it,
    in the exact reference (which raised "cumsum expanded without a class", fuzzing seed
    70,466) and in every target's code (a cumsum of a [batch, 1] value would be it)."""
    text = (
        "input y: target\ninput p: real\nparam k = 0.5\n"
        "loss = mean(sum(cumsum(where(abs(p - p) < k, 1.0, 2.0)) * p))\n"
    )
    compile_source(SourceFile.from_text(text, "spec.loss"), target=target)  # verified
    loss = compiled(text)
    pred = np.array([[1.0, 10.0, 100.0], [-1.0, 0.5, 2.0]])
    value, gradient = value_and_gradient(loss, np.zeros_like(pred), pred, "float64")
    counts = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(value, (pred * counts).sum(axis=-1), rtol=RTOL["float64"])
    np.testing.assert_allclose(gradient, np.broadcast_to(counts, pred.shape))


def test_cumsum_of_a_per_sample_value_is_a_role_error() -> None:
    text = "input y: onehot\ninput p: prob\nloss = mean(cumsum(sum(p * y, axis=sample)))\n"
    with pytest.raises(LossSpecError) as failure:
        compiled(text)
    (diagnostic,) = failure.value.diagnostics
    assert diagnostic.code == "E302"
    rendered = str(failure.value)
    assert rendered.splitlines()[:3] == [
        "spec.loss:3:20: error[E302]: `cumsum` needs a value with the class role, "
        "but its argument is [batch]",
        "  3 | loss = mean(cumsum(sum(p * y, axis=sample)))",
        "    |                    ^^^^^^^^^^^^^^^^^^^^^^^ no class axis",
    ]


def test_explain_mentions_cumsum(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "emd.loss"
    spec.write_text(EMD, encoding="utf-8")
    assert cli.main(["explain", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "cumsum(p)" in out
    assert r"\operatorname{cumsum}" in out
