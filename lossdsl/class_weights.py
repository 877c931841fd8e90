"""Per-class weights from training labels, for a spec's vector params (`w[class(y)]`).

Pure NumPy: it counts the classes and applies a weighting scheme; turning the weights
into a loss is left to `lossdsl.load(spec, w=weights)`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import numpy as np

WeightScheme = Callable[[np.ndarray, float], np.ndarray]


def _inverse(counts: np.ndarray, beta: float) -> np.ndarray:
    """n / (C * n_c): the weighted class frequencies all become 1 / C ("balanced")."""
    return counts.sum() / (counts.size * counts)


def _inverse_sqrt(counts: np.ndarray, beta: float) -> np.ndarray:
    """sqrt(n / (C * n_c)): a milder inverse-frequency weighting."""
    return np.sqrt(_inverse(counts, beta))


def _effective(counts: np.ndarray, beta: float) -> np.ndarray:
    """(1 - beta) / (1 - beta^n_c), the inverse effective number, summing to C."""
    raw = (1.0 - beta) / -np.expm1(counts * np.log(beta)) if beta > 0 else np.ones_like(counts)
    return raw * (counts.size / raw.sum())


SCHEMES: dict[str, WeightScheme] = {
    "inverse": _inverse,
    "inverse_sqrt": _inverse_sqrt,
    "effective": _effective,
}
"""Scheme name -> weights from the per-class sample counts (float array, all > 0)."""


def class_weights(
    labels: Any,
    scheme: str = "inverse",
    num_classes: int | None = None,
    beta: float = 0.999,
) -> list[float]:
    """One weight per class, from the labels of a training set.

    `labels` holds integer class ids (any shape, e.g. [N] or [N, 1]) or one-hot rows
    (a last axis longer than 1; soft labels count fractionally), as a NumPy array, a
    list, or a tensor with `.numpy()`. `scheme` is one of:

    - ``"inverse"``: n / (C * n_c), as scikit-learn's "balanced" weights;
    - ``"inverse_sqrt"``: sqrt(n / (C * n_c));
    - ``"effective"``: (1 - beta) / (1 - beta^n_c) (Cui et al., 2019, the inverse
      effective number of samples), normalised so that the weights sum to C.

    `num_classes` defaults to the largest id + 1 (or the one-hot width). Returns a list
    of C floats, ready to pass as a vector param: ``lossdsl.load(spec, w=weights)``.
    Raises ValueError for an unknown scheme, a beta outside [0, 1), labels that are
    not class ids in [0, num_classes), and classes without any sample.
    """
    if scheme not in SCHEMES:
        close = difflib.get_close_matches(str(scheme), list(SCHEMES), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"Invalid value for argument `scheme`. Expected one of {sorted(SCHEMES)}."
            f"{hint} Received: scheme={scheme!r}"
        )
    if not 0.0 <= beta < 1.0:
        raise ValueError(
            "Invalid value for argument `beta`. Expected a number in [0, 1) "
            f"(0.9, 0.99, 0.999 are usual; 0 gives equal weights). Received: beta={beta!r}"
        )
    counts = class_counts(labels, num_classes)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        names = ", ".join(str(c) for c in empty)
        which = f"Class {names} has" if empty.size == 1 else f"Classes {names} have"
        raise ValueError(
            f"{which} no samples in `labels` ({counts.size} classes), so the {scheme!r} "
            "weight would be infinite. Count the labels of the whole training "
            "set (not one batch), pass the right `num_classes`, or leave the empty classes "
            "out of the model's outputs."
        )
    return [float(weight) for weight in SCHEMES[scheme](counts, beta)]


def class_counts(labels: Any, num_classes: int | None = None) -> np.ndarray:
    """The number of samples of each class (float; fractional for soft one-hot rows)."""
    array = np.asarray(labels.numpy() if hasattr(labels, "numpy") else labels)
    if array.size == 0:
        raise ValueError("`labels` is empty: pass the labels of the training set.")
    if num_classes is not None and (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, int | np.integer)
        or num_classes < 1
    ):
        raise ValueError(
            "Invalid value for argument `num_classes`. Expected a positive integer. "
            f"Received: num_classes={num_classes!r}"
        )
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(
            f"`labels` must hold numbers (class ids or one-hot rows). Received dtype {array.dtype}."
        )
    if array.ndim >= 2 and array.shape[-1] > 1:
        return _one_hot_counts(array, num_classes)
    return _id_counts(array.reshape(-1), num_classes)


def _one_hot_counts(rows: np.ndarray, num_classes: int | None) -> np.ndarray:
    width = rows.shape[-1]
    if num_classes is not None and num_classes != width:
        raise ValueError(
            f"`labels` are one-hot rows of {width} classes but num_classes={num_classes}. "
            "Pass integer class ids, or leave num_classes out."
        )
    if np.any(rows < 0) or not np.all(np.isfinite(rows)):
        raise ValueError(
            "`labels` look like one-hot rows (last axis longer than 1) but hold negative "
            "or non-finite values. Pass one-hot rows in [0, 1] or integer class ids."
        )
    return rows.reshape(-1, width).sum(axis=0).astype(np.float64)


def _id_counts(ids: np.ndarray, num_classes: int | None) -> np.ndarray:
    if not np.all(np.isfinite(ids)) or np.any(ids != np.round(ids)):
        bad = ids[~np.isfinite(ids) | (ids != np.round(ids))][:3]
        raise ValueError(
            f"`labels` must be integer class ids or one-hot rows; found {bad.tolist()}. "
            "One-hot rows need a last axis of one entry per class."
        )
    ids = ids.astype(np.int64)
    classes = int(num_classes) if num_classes is not None else int(ids.max()) + 1
    outside = np.unique(ids[(ids < 0) | (ids >= classes)])
    if outside.size:
        shown = ", ".join(str(i) for i in outside[:5])
        raise ValueError(
            f"`labels` holds {shown}, outside the class ids [0, {classes}). "
            "Drop ignored labels (such as -1) first, or pass a larger num_classes."
        )
    return np.bincount(ids, minlength=classes).astype(np.float64)
