"""The one table of input kinds: what each kind binds, holds, assumes and how it is drawn."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np

Argument = Literal["y_true", "y_pred"]

InputKind: TypeAlias = str
"""The name of a row of `KINDS` (`onehot`, `prob`, ...)."""

Draw: TypeAlias = Callable[[np.random.Generator, tuple[int, ...], bool], np.ndarray]
"""Verification's sampler: (rng, shape, edge) -> float64 values (`edge`: include edge points)."""

UNIT_VALUES = (0.0, 1.0, 0.5, 0.25, 0.75, 0.1, 0.9)
NONNEGATIVE_VALUES = (0.0, 1.0, 0.5, 2.0, 0.1, 10.0, 50.0)
REAL_VALUES = (0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 10.0, -10.0, 50.0, -50.0)

EDGE_PROBABILITIES = (1e-6, 1.0 - 1e-6)
EDGE_LOGITS = (-50.0, 50.0)
EDGE_NONNEGATIVE = (1e-6, 50.0)


def _softmax_rows(values: np.ndarray) -> np.ndarray:
    shifted = np.exp(values - values.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _one_hot_rows(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    classes = rng.integers(0, shape[-1], size=shape[:-1])
    return np.eye(shape[-1])[classes]


def _place_edges(
    rng: np.random.Generator, values: np.ndarray, edges: tuple[float, float]
) -> np.ndarray:
    """About half of the elements set to one of the two edge values."""
    chosen = rng.random(size=values.shape) < 0.5
    edge_values = np.where(rng.random(size=values.shape) < 0.5, edges[0], edges[1])
    return np.where(chosen, edge_values, values)


def _draw_onehot(rng: np.random.Generator, shape: tuple[int, ...], edge: bool) -> np.ndarray:
    soft = _softmax_rows(rng.normal(size=shape))
    exact = rng.random(size=(*shape[:-1], 1)) < 0.5
    return np.where(exact, _one_hot_rows(rng, shape), soft)


def _draw_binary(rng: np.random.Generator, shape: tuple[int, ...], edge: bool) -> np.ndarray:
    values = rng.random(size=shape)
    exact = rng.random(size=shape) < 0.3
    return np.where(exact, np.round(values), values)


def _draw_real(rng: np.random.Generator, shape: tuple[int, ...], edge: bool) -> np.ndarray:
    values = rng.normal(size=shape)
    if edge:
        values = _place_edges(rng, values, EDGE_LOGITS)
    return values


def _draw_prob(rng: np.random.Generator, shape: tuple[int, ...], edge: bool) -> np.ndarray:
    normals = rng.normal(size=shape)
    values = _softmax_rows(normals) if len(shape) % 2 else 1.0 / (1.0 + np.exp(-normals))
    if edge:
        values = _place_edges(rng, values, EDGE_PROBABILITIES)
    return values


def _draw_nonneg(rng: np.random.Generator, shape: tuple[int, ...], edge: bool) -> np.ndarray:
    values = np.abs(rng.normal(size=shape))
    if edge:
        values = _place_edges(rng, values, EDGE_NONNEGATIVE)
    return values


@dataclass(frozen=True)
class Kind:
    """One input kind (LANGUAGE.md, Kinds): every fact about it that a stage needs."""

    name: str
    arguments: tuple[Argument, ...]  # the Keras arguments it may bind
    low: float  # the range of one element, closed at finite ends
    high: float
    witnesses: tuple[float, ...]  # candidate element values for witnesses, simplest first
    assumptions: Mapping[str, bool]  # SymPy assumptions of its symbol
    draw: Draw | None  # verification's sampler; None for class ids (drawn per layout)
    doc: str  # what it holds, as LANGUAGE.md's table says
    class_ids: bool = False  # integer class ids: no class role, never in arithmetic
    rows_sum_to_one: bool = False  # a distribution over the class axis (witness rows too)


_REAL = {"real": True}
_NONNEGATIVE = {"real": True, "nonnegative": True}

KINDS: dict[InputKind, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "onehot",
            ("y_true",),
            0.0,
            1.0,
            UNIT_VALUES,
            _NONNEGATIVE,
            _draw_onehot,
            "in [0, 1], summing to 1 over the last axis (soft labels allowed)",
            rows_sum_to_one=True,
        ),
        Kind(
            "label",
            ("y_true",),
            0.0,  # class ids in [0, C), C unknown
            math.inf,
            (0.0, 1.0),
            {"integer": True},  # any integer: masks compare it with -1
            None,
            "integer class ids in [0, C)",
            class_ids=True,
        ),
        Kind("binary", ("y_true",), 0.0, 1.0, UNIT_VALUES, _NONNEGATIVE, _draw_binary, "in [0, 1]"),
        Kind(
            "target", ("y_true",), -math.inf, math.inf, REAL_VALUES, _REAL, _draw_real, "any real"
        ),
        Kind(
            "prob",
            ("y_pred",),
            0.0,
            1.0,
            UNIT_VALUES,
            _NONNEGATIVE,
            _draw_prob,
            "in [0, 1] (sigmoid or softmax output)",
        ),
        Kind(
            "logits",
            ("y_pred",),
            -math.inf,
            math.inf,
            REAL_VALUES,
            _REAL,
            _draw_real,
            "any real (before the activation)",
        ),
        Kind(
            "real",
            ("y_pred",),
            -math.inf,
            math.inf,
            REAL_VALUES,
            _REAL,
            _draw_real,
            "any real (regression output)",
        ),
        Kind(
            "nonneg",
            ("y_true", "y_pred"),
            0.0,
            math.inf,
            NONNEGATIVE_VALUES,
            _NONNEGATIVE,
            _draw_nonneg,
            "any real >= 0 (a rate or a count)",
        ),
    )
}
"""Every input kind, in LANGUAGE.md's order."""

DEFAULT_KINDS: dict[Argument, tuple[str, InputKind]] = {
    "y_true": ("y", "target"),
    "y_pred": ("p", "prob"),
}
"""`input y: target` and `input p: prob`, used where a spec declares no such input."""


def kinds_for(argument: Argument) -> list[str]:
    """The kinds an input bound to `argument` may have, in the table's order."""
    return [kind.name for kind in KINDS.values() if argument in kind.arguments]


def _kinds_help() -> str:
    only_true = [k.name for k in KINDS.values() if k.arguments == ("y_true",)]
    only_pred = [k.name for k in KINDS.values() if k.arguments == ("y_pred",)]
    either = [k.name for k in KINDS.values() if len(k.arguments) == 2]
    return (
        f"kinds are {', '.join(only_true)} (y_true); {', '.join(only_pred)} (y_pred); "
        f"{', '.join(either)} (either)"
    )


KINDS_HELP = _kinds_help()
"""The kinds by argument, for diagnostics: `kinds are onehot, ... (y_true); ...`."""


def draw_floats(
    kind: InputKind, rng: np.random.Generator, shape: tuple[int, ...], edge: bool
) -> np.ndarray:
    """Values of a float kind drawn for verification (class ids are drawn per layout)."""
    draw = KINDS[kind].draw
    if draw is None:
        raise ValueError(f"`{kind}` holds class ids, drawn from the layout's class count")
    return draw(rng, shape, edge)
