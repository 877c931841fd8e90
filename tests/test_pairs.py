"""Pairs of samples (LANGUAGE.md 6.5): `other`, `sample_index`, the partner roles and
`where=` on reductions, through every stage, against NumPy references."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from tolerances import ulps

import lossdsl
from lossdsl.checker import check
from lossdsl.compiler import CompiledLoss, compile_source
from lossdsl.diagnostics import LossSpecError
from lossdsl.parser import parse
from lossdsl.source import SourceFile
from lossdsl.typed import Role

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PAIRS = "input y: label\ninput e: real\n"

BATCH_HARD = PAIRS + (
    "param margin: positive = 1.0\n"
    "let d = sqrt(sum(square(e - other(e))) + eps)\n"
    "let hardest_positive = max(d, where=other(y) == y and other(sample_index) != sample_index)\n"
    "let hardest_negative = min(d, where=other(y) != y)\n"
    "loss triplet = mean(relu(hardest_positive - hardest_negative + margin))\n"
)
"""LANGUAGE.md 6.5's example, as written there."""

BATCH_ALL = PAIRS + (
    "param margin: positive = 0.5\n"
    "let positive_distance = sum(square(e - other(e)))\n"
    "let negative_distance = sum(square(e - other(e, 2)))\n"
    "let triplets = relu(positive_distance - negative_distance + margin)\n"
    "loss = mean(mean(triplets, axis=sample, where=other(y) == y and other(sample_index)"
    " != sample_index and other(y, 2) != y))\n"
)
"""Every (anchor, positive, negative) triplet: d_ap - d_an for partner j and partner2 k."""

CONTRASTIVE = PAIRS + (
    "param temperature: positive = 0.5\n"
    "let z = e / sqrt(sum(square(e)) + eps)\n"
    "let similarity = sum(z * other(z)) / temperature\n"
    "loss = mean(softplus(logsumexp(-similarity, where=other(y) == y and other(sample_index)"
    " != sample_index)"
    " + logsumexp(similarity, where=other(y) != y)))\n"
)
"""A soft-margin pair loss: logsumexp over empty selections must give 0 and finite gradients."""


def compiled(text: str, name: str = "pairs.loss") -> CompiledLoss:
    """Compiled and verified against the exact reference (value and gradient)."""
    return compile_source(SourceFile.from_text(text, name))


def value_and_gradient(
    loss: CompiledLoss, y: np.ndarray, e: np.ndarray, dtype: str
) -> tuple[np.ndarray, np.ndarray]:
    embeddings = tf.constant(e, dtype)
    with tf.GradientTape() as tape:
        tape.watch(embeddings)
        value = loss.loss_class(reduction=None, dtype=dtype)(tf.constant(y), embeddings)
    gradient = tape.gradient(value, embeddings)
    return value.numpy(), gradient.numpy()


def batch_hard(y: np.ndarray, e: np.ndarray, margin: float = 1.0) -> np.ndarray:
    distance = np.sqrt(((e[:, None] - e[None]) ** 2).sum(-1) + 1e-7)
    same = (y[:, None] == y[None]) & ~np.eye(len(y), dtype=bool)
    different = y[:, None] != y[None]
    positive = np.where(same.any(1), np.where(same, distance, -np.inf).max(1), 0.0)
    negative = np.where(different.any(1), np.where(different, distance, np.inf).min(1), 0.0)
    return np.maximum(positive - negative + margin, 0.0)


def batch_all(y: np.ndarray, e: np.ndarray, margin: float = 0.5) -> np.ndarray:
    distance = ((e[:, None] - e[None]) ** 2).sum(-1)
    losses = []
    for anchor in range(len(y)):
        terms = [
            max(distance[anchor, j] - distance[anchor, k] + margin, 0.0)
            for j in range(len(y))
            for k in range(len(y))
            if y[j] == y[anchor] and j != anchor and y[k] != y[anchor]
        ]
        losses.append(np.mean(terms) if terms else 0.0)
    return np.array(losses)


def soft_margin(y: np.ndarray, e: np.ndarray, temperature: float = 0.5) -> np.ndarray:
    z = e / np.sqrt((e**2).sum(-1, keepdims=True) + 1e-7)
    similarity = z @ z.T / temperature
    positives = (y[:, None] == y[None]) & ~np.eye(len(y), dtype=bool)
    negatives = y[:, None] != y[None]

    def logsumexp(values: np.ndarray, where: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(np.where(where, np.exp(values), 0.0).sum(1))

    total = logsumexp(-similarity, positives) + logsumexp(similarity, negatives)
    return np.logaddexp(0.0, total)


def central_difference(function, e: np.ndarray, step: float = 1e-6) -> np.ndarray:  # type: ignore[no-untyped-def]
    """d sum(function(e)) / d e in float64, element by element."""
    gradient = np.zeros_like(e)
    for index in np.ndindex(e.shape):
        up, down = e.copy(), e.copy()
        up[index] += step
        down[index] -= step
        gradient[index] = (function(up).sum() - function(down).sum()) / (2 * step)
    return gradient


LABEL_SETS = {
    "mixed": np.array([0, 1, 0, 2, 1, 2]),
    "all one label": np.zeros(6, dtype=np.int64),
    "all distinct": np.arange(6),
}


# ---------------------------------------------------------------- the checker


def checked_roles(text: str) -> frozenset[Role]:
    return check(parse(SourceFile.from_text(text, "pairs.loss"))).result.roles


def test_other_adds_the_partner_role_and_partners_combine_as_an_outer_product() -> None:
    spec = check(parse(SourceFile.from_text(BATCH_ALL, "pairs.loss")))
    assert spec.result.roles == {Role.BATCH}
    assert spec.paired and spec.partners == 2
    assert spec.y_pred.roles == {Role.BATCH, Role.CLASS}  # no spatial role in a paired spec
    assert spec.batch_coupled
    (warning,) = spec.warnings
    assert warning.code == "W301" and warning.label == "pairs samples within the batch"


def test_a_default_reduction_removes_partner_after_class() -> None:
    assert checked_roles(PAIRS + "loss = mean(max(sum(square(e - other(e)))))") == {Role.BATCH}


@pytest.mark.parametrize(
    ("loss", "code", "help_part"),
    [
        ("mean(sum(other(other(e))))", "E331", "other(x, 2)"),
        ("mean(sum(other(e, 3)))", "E332", "other(x, 2)"),
        ("mean(other(sum(e, axis=0)))", "E330", "other(e)"),
        ("sum(square(e - other(e)))", "E333", "axis=partner"),
        ("mean(max(sum(e * other(e)), where=other(y)))", "E221", "other(y) == y"),
        ("mean(sample_index + sum(e))", "E309", "other(sample_index) != sample_index"),
    ],
)
def test_pair_errors_are_located_with_a_hint(loss: str, code: str, help_part: str) -> None:
    with pytest.raises(LossSpecError) as raised:
        check(parse(SourceFile.from_text(PAIRS + f"loss = {loss}\n", "pairs.loss")))
    (diagnostic,) = [d for d in raised.value.diagnostics if d.is_error]
    assert diagnostic.code == code
    assert diagnostic.span is not None and diagnostic.span.line == 3
    assert any(help_part in line for line in diagnostic.help), diagnostic.help


# ---------------------------------------------------------------- values and gradients


@pytest.mark.parametrize("labels", list(LABEL_SETS), ids=list(LABEL_SETS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    ("spec", "reference"),
    [(BATCH_HARD, batch_hard), (BATCH_ALL, batch_all), (CONTRASTIVE, soft_margin)],
    ids=["batch_hard", "batch_all", "soft_margin"],
)
def test_pair_losses_match_numpy(spec: str, reference, labels: str, dtype: str) -> None:  # type: ignore[no-untyped-def]
    loss = compiled(spec)
    y = LABEL_SETS[labels]
    e = np.random.default_rng(1).normal(size=(6, 3))
    value, gradient = value_and_gradient(loss, y, e, dtype)
    tolerance = {"float32": 1e-4, "float64": 1e-7}[dtype]
    np.testing.assert_allclose(value, reference(y, e), rtol=ulps(dtype, 64), atol=ulps(dtype, 64))
    expected = central_difference(lambda values: reference(y, values), e)
    np.testing.assert_allclose(gradient, expected, rtol=tolerance, atol=tolerance)


def test_empty_selections_give_the_values_of_section_6_5() -> None:
    loss = compiled(
        PAIRS + "let s = sum(e * other(e))\n"
        "loss = mean(sum(s, where=other(y) != y) + mean(s, where=other(y) != y)"
        " + max(s, where=other(y) != y) + min(s, where=other(y) != y)"
        " + softplus(logsumexp(s, where=other(y) != y)))"
    )
    y = np.zeros(4, dtype=np.int64)  # one label: no pair has different labels
    e = np.random.default_rng(2).normal(size=(4, 3))
    value, gradient = value_and_gradient(loss, y, e, "float64")
    np.testing.assert_array_equal(value, np.zeros(4))
    np.testing.assert_array_equal(gradient, np.zeros_like(e))


def test_pairs_verify_and_print_the_partner_axes() -> None:
    loss = compiled(BATCH_ALL)
    assert loss.diagnostics[0].code == "W301"
    source = loss.python_source
    assert 'y, e = _paired(y, e, 2, "pairs")' in source
    assert "_other(" in source and "def _other(x, partner):" in source


def test_a_paired_loss_refuses_spatial_predictions_clearly() -> None:
    loss = compiled(BATCH_HARD)
    shape = r"pairs samples, so y_pred must have the shape \[batch, C\]"
    with pytest.raises(ValueError, match=shape):
        loss.loss_class()(np.zeros((2, 3, 1)), np.zeros((2, 3, 4)))


@pytest.mark.parametrize("name", ["triplet_batch_hard", "circle"])
def test_a_pair_loss_trains_in_mixed_precision_with_xla_and_reloads(
    name: str, tmp_path: Path
) -> None:
    path = EXAMPLES / f"{name}.loss"
    rng = np.random.default_rng(3)
    e = rng.normal(size=(8, 5)).astype("float32")
    e /= np.linalg.norm(e, axis=-1, keepdims=True) / 0.9
    y = rng.integers(0, 3, size=8)
    plain, xla = lossdsl.load(path), lossdsl.load(path, jit_compile=True)
    np.testing.assert_allclose(float(xla(y, e)), float(plain(y, e)), rtol=ulps("float32", 16))
    x = rng.normal(size=(32, 6)).astype("float32")
    labels = rng.integers(0, 4, size=32)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = keras.Sequential(
            [keras.Input((6,)), keras.layers.Dense(5), keras.layers.UnitNormalization()]
        )
        model.compile("adam", loss=lossdsl.load(path), jit_compile=True)
        history = model.fit(x, labels, batch_size=16, epochs=2, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.all(np.isfinite(history.history["loss"]))
    model.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    assert reloaded.evaluate(x, labels, batch_size=16, verbose=0) == pytest.approx(
        model.evaluate(x, labels, batch_size=16, verbose=0)
    )


def test_pairs_are_found_in_every_statement_and_selection() -> None:
    spec = check(
        parse(
            SourceFile.from_text(
                PAIRS + "let s = sum(e[0:2] * other(e)[0:2])\nloss = mean(max(s))\n", "x.loss"
            )
        )
    )
    assert spec.paired and spec.partners == 1
    assert spec.result.roles == {Role.BATCH}


def test_a_mask_shares_the_results_fused_temporaries() -> None:
    """circle's `mask per_anchor > 0` is fused like the result, so each logsumexp and the
    pair products are computed once for both."""
    source = compiled((EXAMPLES / "circle.loss").read_text(encoding="utf-8"), "circle.loss")
    body = source.python_source.split("def _circle_with_mask(")[1].split("\ndef ")[0]
    assert body.count("tf.math.reduce_logsumexp(") == 2
    assert body.count("_pair_dot(") == 1 and "_other(e" not in body


def test_a_distance_loss_takes_its_distances_from_one_matrix_product() -> None:
    """triplet_batch_hard's `sum(square(e - other(e)))` is `_pair_squared_distance`, not a
    [batch, batch, D] difference."""
    spec = (EXAMPLES / "triplet_batch_hard.loss").read_text(encoding="utf-8")
    body = compiled(spec, "triplet_batch_hard.loss").python_source.split("\ndef triplet")[1]
    assert body.count("_pair_squared_distance(e, None, 1)") == 1 and "_other(e" not in body


def test_pair_distances_keep_their_digits_far_from_the_origin() -> None:
    """|a|^2 + |b|^2 - 2 a.b of rows at 10 + 0.01 N(0, 1) cancels norms of about 3200 to
    distances of about 0.006: the helper moves the rows to their mean first. A row's
    distance to itself is exactly 0, a duplicate row's about 0."""
    from lossdsl.codegen import tensorflow_helpers

    rng = np.random.default_rng(3)
    rows = 10.0 + rng.normal(0.0, 0.01, (16, 1, 32))
    rows[5] = rows[2]
    rows = rows.astype(np.float32)
    wide = rows.astype(np.float64)
    exact = np.sum(np.square(wide - np.transpose(wide, [1, 0, 2])), axis=-1)
    squared = tensorflow_helpers._pair_squared_distance(tf.constant(rows), None, 1)
    squared = squared.numpy()[:, :, 0]
    apart = exact > 0
    assert np.max(np.abs(squared - exact)[apart] / exact[apart]) < ulps(np.float32, 100)
    assert np.all(np.diag(squared) == 0.0)
    assert squared[2, 5] < 1e-4 * np.min(exact[apart])
