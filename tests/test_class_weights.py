"""Tests for lossdsl.class_weights: the three schemes, label formats, and the errors."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from lossdsl.class_weights import class_counts, class_weights

MODULE_PATH = importlib.util.find_spec("lossdsl.class_weights").origin  # type: ignore[union-attr]

LABELS = [0, 0, 0, 0, 0, 0, 1, 1, 1, 2]


def test_inverse_is_sklearn_balanced() -> None:
    weights = class_weights(LABELS)
    assert weights == pytest.approx([10 / (3 * 6), 10 / (3 * 3), 10 / (3 * 1)])
    # The frequency-weighted mean weight is 1, as with scikit-learn's "balanced".
    assert np.dot(weights, [6, 3, 1]) / 10 == pytest.approx(1.0)


def test_inverse_sqrt_is_the_square_root_of_inverse() -> None:
    assert class_weights(LABELS, "inverse_sqrt") == pytest.approx(
        np.sqrt(class_weights(LABELS, "inverse"))
    )


@pytest.mark.parametrize("beta", [0.9, 0.99, 0.999, 0.9999])
def test_effective_number_of_samples(beta: float) -> None:
    counts = np.array([6.0, 3.0, 1.0])
    raw = (1 - beta) / (1 - beta**counts)
    expected = raw / raw.sum() * 3
    weights = class_weights(LABELS, "effective", beta=beta)
    assert weights == pytest.approx(expected, rel=1e-9)
    assert sum(weights) == pytest.approx(3.0)
    assert weights[2] > weights[1] > weights[0]


def test_effective_limits() -> None:
    # beta = 0 weighs every class equally; beta -> 1 tends to inverse frequency.
    assert class_weights(LABELS, "effective", beta=0.0) == pytest.approx([1.0, 1.0, 1.0])
    near_one = np.array(class_weights(LABELS, "effective", beta=1 - 1e-9))
    inverse = np.array(class_weights(LABELS, "inverse"))
    assert near_one == pytest.approx(inverse / inverse.sum() * 3, rel=1e-6)


def test_label_formats_agree() -> None:
    ids = np.array(LABELS)
    expected = class_weights(ids)
    assert class_weights(ids.reshape(-1, 1)) == pytest.approx(expected)
    assert class_weights(ids.astype("float32")) == pytest.approx(expected)
    assert class_weights(np.eye(3)[ids]) == pytest.approx(expected)
    assert class_weights(np.eye(3)[ids].tolist()) == pytest.approx(expected)


def test_tensor_like_labels() -> None:
    class FakeTensor:
        def numpy(self) -> np.ndarray:
            return np.array(LABELS)

    assert class_weights(FakeTensor()) == pytest.approx(class_weights(LABELS))


def test_soft_one_hot_rows_count_fractionally() -> None:
    rows = np.array([[0.5, 0.5], [1.0, 0.0]])
    assert class_counts(rows).tolist() == [1.5, 0.5]


def test_returns_plain_floats() -> None:
    weights = class_weights(LABELS, num_classes=3)
    assert isinstance(weights, list)
    assert all(type(w) is float for w in weights)


def test_empty_classes_are_named() -> None:
    with pytest.raises(ValueError, match=r"Classes 1, 3 have no samples") as info:
        class_weights([0, 2, 2], num_classes=4)
    assert "num_classes" in str(info.value)
    with pytest.raises(ValueError, match=r"Class 1 has no samples"):
        class_weights([0, 2])


def test_unknown_scheme_suggests_a_close_one() -> None:
    with pytest.raises(ValueError, match=r"Did you mean 'effective'\?"):
        class_weights(LABELS, "efective")
    with pytest.raises(ValueError, match=r"Expected one of"):
        class_weights(LABELS, "median")


@pytest.mark.parametrize("beta", [1.0, -0.1, 2.0, float("nan")])
def test_bad_beta(beta: float) -> None:
    with pytest.raises(ValueError, match=r"argument `beta`"):
        class_weights(LABELS, "effective", beta=beta)


@pytest.mark.parametrize(
    ("labels", "num_classes", "message"),
    [
        ([0, 1, 5], 3, r"holds 5, outside the class ids \[0, 3\)"),
        ([0, -1, 1], None, r"holds -1, outside .* Drop ignored labels"),
        ([0.5, 1.0], None, r"integer class ids or one-hot rows"),
        ([], None, r"`labels` is empty"),
        (np.eye(3), 4, r"one-hot rows of 3 classes but num_classes=4"),
        ([0, 1], 0, r"argument `num_classes`"),
        ([0, 1], 2.0, r"argument `num_classes`"),
        (["a", "b"], None, r"must hold numbers"),
    ],
)
def test_bad_labels(labels: object, num_classes: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        class_weights(labels, num_classes=num_classes)  # type: ignore[arg-type]


def test_is_pure_numpy() -> None:
    # Load the module file on its own (not through lossdsl/__init__.py).
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('cw', {MODULE_PATH!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(sorted({'tensorflow', 'keras'} & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
