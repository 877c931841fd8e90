"""The sign check (W601): a loss that rises as y_pred moves toward y_true, found by sampling."""

from __future__ import annotations

import itertools

import numpy as np

from lossdsl.analysis.evaluate import WITNESS_CLASSES, Evaluator
from lossdsl.analysis.intervals import Array
from lossdsl.codes import LOSS_RISES_TOWARD_TRUTH
from lossdsl.diagnostics import Diagnostic, warning
from lossdsl.symbolic import numeric
from lossdsl.typed import CheckedSpec, ParamInfo, TCall, TInput, walk

TRUE_KINDS = frozenset({"onehot", "label", "binary"})
PRED_KINDS = frozenset({"prob", "logits"})
"""The kind pairs the check covers (LANGUAGE.md 6.6); every other spec is left alone."""

BATCH = 2
"""Samples in one sampled point (a batch, so that losses over the batch see both classes)."""

PROBABILITIES = (0.1, 0.3, 0.5, 0.7, 0.9)
LOGITS = (-3.0, -1.0, 0.0, 1.0, 3.0)
"""The grid of y_pred's elements, away from clip's ends and from float64's tails."""

DRAWS = 24
"""Seeded draws of y_pred from the grid for each value of y_true."""

STEP = 1e-4
"""The step along the direction toward y_true (a central difference, in float64)."""

FLAT = 1e-9
"""A change within this fraction of the loss's size (at least 1) counts as no change: such
a point is not one where the loss rises, so a loss flat anywhere sampled is not warned."""


def is_ordinal(checked: CheckedSpec) -> bool:
    """Whether y_true reaches the loss through `cumsum` and y_pred does not: then y_pred's
    class axis holds ordinal thresholds, each with the binary target [rank > k] (CORAL's
    levels `1 - cumsum(onehot(y))`), not scores of classes (LANGUAGE_NOTES.md, Sign check)."""
    if checked.y_true.kind not in ("label", "onehot"):
        return False
    cumsums = [t for t in walk([checked.result]) if isinstance(t, TCall) and t.builtin == "cumsum"]

    def reaches(name: str) -> bool:
        return any(isinstance(t, TInput) and t.info.name == name for t in walk(cumsums))

    return reaches(checked.y_true.name) and not reaches(checked.y_pred.name)


def _levels(y_true: Array, kind: str) -> Array:
    """The ordinal target of each threshold k: [rank > k], the rank being the label or the
    class of the one-hot row."""
    ranks = y_true if kind == "label" else np.argmax(y_true, axis=3)[..., None]
    return (ranks > np.arange(WITNESS_CLASSES)).astype(float)


def _rows_of(y_true: Array, kind: str) -> Array:
    """The target of each element: y_true's one-hot rows ([..., C]) or binary values."""
    if kind == "label":
        return (np.arange(WITNESS_CLASSES) == y_true).astype(float)
    return y_true


def _truths(kind: str) -> Array:
    """Every hard y_true of one sampled point: [count, BATCH, 1, width]; a binary one
    holds a 1 somewhere (overlap losses such as Dice are constant on a batch without)."""
    if kind == "binary":
        elements = BATCH * WITNESS_CLASSES
        batches = itertools.product((0.0, 1.0), repeat=elements)
        values = np.array([batch for batch in batches if any(batch)])
        return values.reshape(-1, BATCH, 1, WITNESS_CLASSES)
    ids = np.array(list(itertools.product(range(WITNESS_CLASSES), repeat=BATCH)), dtype=float)
    ids = ids.reshape(-1, BATCH, 1, 1)
    return ids if kind == "label" else _rows_of(ids, "label")


def _predictions(pred_kind: str, rows: bool, count: int) -> Array:
    """`count` y_pred values from the grid (seeded): [count, BATCH, 1, C]; a `prob` y_pred
    against a class target is drawn as rows that sum to 1 (softmax outputs)."""
    generator = np.random.default_rng(0)
    grid = np.array(PROBABILITIES if pred_kind == "prob" else LOGITS)
    if pred_kind == "prob" and rows:
        first = generator.choice(grid, size=(count, BATCH, 1, 1))
        others = (1.0 - first) / (WITNESS_CLASSES - 1)
        return np.concatenate([first] + [others] * (WITNESS_CLASSES - 1), axis=3)
    return generator.choice(grid, size=(count, BATCH, 1, WITNESS_CLASSES))


def _param_value(param: ParamInfo) -> Array:
    """A param at its default; a vector param's first C entries (C = 2 here)."""
    default = np.atleast_1d(np.asarray(param.default, dtype=float))
    if len(default) >= WITNESS_CLASSES:
        default = default[:WITNESS_CLASSES]
    return default.reshape(1, 1, 1, -1)


def _direction(targets: Array, y_pred: Array, binary: bool, pred_kind: str) -> Array:
    """Where y_pred moves toward its targets: a probability toward its target, a logit
    toward the sign of a binary target (a binary y_true, an ordinal level), else the true
    class's logit up."""
    if pred_kind == "prob":
        return targets - y_pred
    if binary:
        return 2.0 * targets - 1.0
    return targets


def sign_diagnostics(checked: CheckedSpec) -> list[Diagnostic]:
    """W601 when the loss rises toward y_true at every sampled point."""
    true_kind, pred_kind = checked.y_true.kind, checked.y_pred.kind
    if true_kind not in TRUE_KINDS or pred_kind not in PRED_KINDS:
        return []
    ordinal = is_ordinal(checked)
    binary = ordinal or true_kind == "binary"
    truths = _truths(true_kind)
    y_true = np.repeat(truths, DRAWS, axis=0)
    targets = _levels(y_true, true_kind) if ordinal else _rows_of(y_true, true_kind)
    y_pred = np.tile(_predictions(pred_kind, not binary, DRAWS), (len(truths), 1, 1, 1))
    direction = _direction(targets, y_pred, binary, pred_kind)
    params = {param.name: _param_value(param) for param in checked.params}

    def total(prediction: Array) -> Array:
        bindings = {checked.y_true.name: y_true, checked.y_pred.name: prediction, **params}
        evaluator = Evaluator(numeric.FLOAT, bindings)
        values = evaluator.value(checked.result)
        if checked.mask is not None:
            values = values * evaluator.value(checked.mask)
        values = np.broadcast_to(values, (len(y_pred), *values.shape[1:]))
        return np.asarray(np.sum(values, axis=(1, 2, 3)), dtype=float)

    with np.errstate(all="ignore"):
        before, after = total(y_pred - STEP * direction), total(y_pred + STEP * direction)
        change = after - before
        flat = FLAT * np.maximum(1.0, np.maximum(abs(before), abs(after)))
    if not np.all(np.isfinite(change) & (change > flat)):
        return []
    return [
        warning(
            LOSS_RISES_TOWARD_TRUTH,
            f"the loss rises as {_movement(checked, ordinal)}, at every sampled point",
            checked.loss_span,
            "rises toward the true class",
            "a missing minus? cross-entropy is -sum(y * log(p)); training minimizes the loss, "
            "so this one would push predictions away from the labels",
        )
    ]


def _movement(checked: CheckedSpec, ordinal: bool) -> str:
    """The direction of the move, as the message names it."""
    y_true, y_pred = checked.y_true, checked.y_pred
    if ordinal:
        rank = y_true.name if y_true.kind == "label" else f"class({y_true.name})"
        if y_pred.kind == "prob":
            return f"`{y_pred.name}` moves toward the ordinal levels [{rank} > k]"
        return f"the thresholds in `{y_pred.name}` below the rank `{rank}` rise and the others fall"
    if y_pred.kind == "prob":
        target = f"onehot({y_true.name})" if y_true.kind == "label" else y_true.name
        return f"`{y_pred.name}` moves toward `{target}`"
    if y_true.kind == "binary":
        return f"`{y_pred.name}` moves toward the sign of `2 * {y_true.name} - 1`"
    return f"the true class's logit in `{y_pred.name}` rises"
