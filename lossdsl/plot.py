"""A loss and its gradient across the prediction's range, drawn with matplotlib (an extra)."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lossdsl.compiler import CompiledLoss
from lossdsl.verification.driver import ClassCounts, class_counts

POINTS = 201
REGRESSION_TARGETS = (0.5, 1.0, 2.0)
ONE_CHANNEL = ClassCounts(fewest=1, true_classes=None)
"""The class counts of a spec that selects no channels."""


@dataclass(frozen=True)
class Curve:
    """One target value: its legend label, y_true, and how the points become y_pred.

    `build` maps the sweep's points x ([N], a float32 tensor) to y_pred ([N, C]); the
    gradient plotted is d loss / d x along that path.
    """

    label: str
    y_true: np.ndarray
    build: Callable[[Any], Any]


@dataclass(frozen=True)
class Sweep:
    """The horizontal axis (what x is, its points) and the curves drawn over it."""

    x_label: str
    x: np.ndarray
    curves: tuple[Curve, ...]


def load_pyplot() -> Any:
    """matplotlib's pyplot, drawing off-screen (Agg); ImportError without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def image_formats() -> set[str]:
    """The image formats matplotlib writes, by file suffix; ImportError without matplotlib."""
    import matplotlib.backend_bases

    return set(matplotlib.backend_bases.FigureCanvasBase.get_supported_filetypes())


def render(compiled: Sequence[CompiledLoss], image_format: str) -> bytes:
    """The figure `draw` makes of the specs, as the bytes of an image in `image_format`."""
    import tensorflow as tf

    pyplot = load_pyplot()
    tf_logger, level = tf.get_logger(), tf.get_logger().level
    tf_logger.setLevel(logging.ERROR)  # each curve's batch size retraces: expected here
    try:
        figure = draw(pyplot, compiled)
    finally:
        tf_logger.setLevel(level)
    image = io.BytesIO()
    try:
        figure.savefig(image, format=image_format, dpi=110)
    finally:
        pyplot.close(figure)
    return image.getvalue()


def draw(pyplot: Any, compiled: Sequence[CompiledLoss]) -> Any:
    """A figure with the loss above its gradient, one column per spec, rows sharing y."""
    figure, axes = pyplot.subplots(
        2, len(compiled), figsize=(5.2 * len(compiled), 6.4), sharey="row", squeeze=False
    )
    for column, spec in enumerate(compiled):
        sweep = sweep_for(spec, class_counts(spec.symbolic))
        loss = spec.loss_class(reduction=None)
        loss_axes, gradient_axes = axes[0][column], axes[1][column]
        for label, values, gradients in distinct_curves(loss, sweep):
            loss_axes.plot(sweep.x, values, label=label)
            gradient_axes.plot(sweep.x, gradients, label=label)
        checked = spec.checked
        loss_axes.set_title(
            f"{checked.loss_name}  (y_true: {checked.y_true.kind}, y_pred: {checked.y_pred.kind})",
            fontsize=10,
        )
        loss_axes.set_ylabel("loss")
        gradient_axes.set_ylabel("d loss / d x  (symmetric log scale)")
        gradient_axes.set_xlabel(f"x = {sweep.x_label}")
        gradient_axes.set_yscale("symlog", linthresh=1.0)
        for panel in (loss_axes, gradient_axes):
            panel.grid(alpha=0.3)
            panel.axhline(0.0, color="0.6", linewidth=0.6)
            panel.tick_params(labelleft=True)
        loss_axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def distinct_curves(loss: Any, sweep: Sweep) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Each curve's label, loss values and gradients; curves equal to an earlier one merge.

    Labels read `name = value`; merged curves list their values (`y = 0, 1`).
    """
    drawn: list[tuple[str, np.ndarray, np.ndarray]] = []
    for curve in sweep.curves:
        values, gradients = evaluate(loss, sweep.x, curve)
        for index, (label, seen_values, seen_gradients) in enumerate(drawn):
            if _same_curve(values, seen_values) and _same_curve(gradients, seen_gradients):
                value = curve.label.partition(" = ")[2]
                drawn[index] = (f"{label}, {value}", seen_values, seen_gradients)
                break
        else:
            drawn.append((curve.label, values, gradients))
    return drawn


def _same_curve(first: np.ndarray, second: np.ndarray) -> bool:
    """Equal up to float32 rounding (relative to the curve's scale)."""
    scale = float(np.nanmax(np.abs(second), initial=1.0))
    return bool(np.allclose(first, second, rtol=1e-3, atol=1e-5 * scale, equal_nan=True))


def evaluate(loss: Any, x: np.ndarray, curve: Curve) -> tuple[np.ndarray, np.ndarray]:
    """The loss at every point of x and its derivative along the curve's path.

    The points go through the loss as one batch when it gives one value per sample (or
    per element), and one at a time when it couples the batch into one scalar.
    """
    import tensorflow as tf

    def run(points: np.ndarray, y_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x_tensor = tf.constant(points, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(x_tensor)
            values = loss(tf.constant(y_true), curve.build(x_tensor))
            per_point = tf.reshape(values, [len(points), -1])
            total = tf.reduce_sum(per_point)
        gradient = tape.gradient(total, x_tensor)
        return tf.reduce_sum(per_point, axis=1).numpy(), gradient.numpy()

    probe = loss(tf.constant(curve.y_true[:2]), curve.build(tf.constant(x[:2], tf.float32)))
    if len(probe.shape) > 0:
        return run(x, curve.y_true)
    pairs = [run(x[i : i + 1], curve.y_true[i : i + 1]) for i in range(len(x))]
    return np.concatenate([v for v, _ in pairs]), np.concatenate([g for _, g in pairs])


def sweep_for(spec: Any, counts: ClassCounts = ONE_CHANNEL) -> Sweep:
    """The sweep that suits the spec's input kinds (see `add_plot_parser`'s description),
    with the class counts the spec's channel selections need (`class_counts`)."""
    checked = spec.checked
    truth, prediction = checked.y_true.kind, checked.y_pred.kind
    match truth, prediction:
        case "binary", ("prob" | "logits" | "real"):
            return with_channels(binary_sweep(prediction), counts)
        case (("onehot" | "label"), ("prob" | "logits" | "real")):
            classes = _vector_length(spec) or counts.exact
            return categorical_sweep(truth, prediction, classes, counts.fewest, counts.true_offset)
        case _:
            return with_channels(regression_sweep(prediction), counts)


def with_channels(sweep: Sweep, counts: ClassCounts) -> Sweep:
    """A one-column sweep widened to the channels the spec selects: x moves y_pred's
    first channel, its others stay 0, and y_true's first channel holds the target with 1
    in its others (a weight or an event indicator on). A Gaussian NLL on (mean,
    log-variance) draws the squared error's parabola at a variance of 1."""
    predicted = counts.exact or counts.fewest
    true = counts.true_classes or predicted + counts.true_offset
    if predicted == 1 and true == 1:
        return sweep

    def widened(curve: Curve) -> Curve:
        def build(points: Any) -> Any:
            import tensorflow as tf

            column = curve.build(points)
            return tf.pad(column, [[0, 0], [0, predicted - 1]])

        ones = np.ones((len(curve.y_true), true - 1), np.float32)
        return Curve(curve.label, np.concatenate([curve.y_true, ones], axis=1), build)

    x_label = f"{sweep.x_label}, channel 0 (y_pred's others 0, y_true's 1)"
    return Sweep(x_label, sweep.x, tuple(map(widened, sweep.curves)))


def _vector_length(spec: Any) -> int | None:
    lengths = [len(value) for value in spec.params.values() if isinstance(value, list | tuple)]
    return lengths[0] if lengths else None


BINARY_RANGES: dict[str, tuple[str, float, float]] = {
    "prob": ("y_pred (probability)", 1e-3, 1 - 1e-3),
    "logits": ("y_pred (logit)", -8.0, 8.0),
    "real": ("y_pred (score)", -3.0, 3.0),
}


def binary_sweep(prediction: str) -> Sweep:
    """y = 0 and y = 1 over the prediction's range, one output column."""
    x_label, low, high = BINARY_RANGES[prediction]
    curves = tuple(
        Curve(f"y = {target}", np.full((POINTS, 1), target, np.float32), _as_column)
        for target in (0, 1)
    )
    return Sweep(x_label, np.linspace(low, high, POINTS, dtype=np.float32), curves)


def _as_column(points: Any) -> Any:
    return points[:, None]


def categorical_sweep(
    truth: str,
    prediction: str,
    vector_length: int | None,
    fewest: int = 1,
    true_offset: int = 0,
) -> Sweep:
    """The true class's probability (or score), the other classes sharing the rest.

    With C fixed (by per-class params' length, or a slice y_pred's classes must match)
    one curve per true class; otherwise one curve per number of classes, 2 to 5, from the
    `fewest` the spec's selections need (equal curves are merged when drawn). One-hot
    rows of a y_true with `true_offset` more classes than y_pred (a weight beside soft
    labels) end in that many 1s.
    """
    counts = [classes for classes in (2, 3, 5) if classes >= fewest] or [fewest]
    pairs = (
        [(c, vector_length) for c in range(vector_length)]
        if vector_length
        else [(0, classes) for classes in counts]
    )
    curves = tuple(
        Curve(
            f"true class = {true_class}" if vector_length else f"classes = {classes}",
            _categorical_truth(truth, true_class, classes, true_offset),
            _categorical_path(prediction, true_class, classes),
        )
        for true_class, classes in pairs
    )
    if prediction == "real":
        return Sweep(
            "the true class's score (others 0)",
            np.linspace(-3.0, 3.0, POINTS, dtype=np.float32),
            curves,
        )
    via = " (logits = its log)" if prediction == "logits" else ""
    x_label = f"the true class's probability{via}"
    return Sweep(x_label, np.linspace(1e-3, 1 - 1e-3, POINTS, dtype=np.float32), curves)


def _categorical_truth(
    truth: str, true_class: int, classes: int, true_offset: int = 0
) -> np.ndarray:
    ids = np.full(POINTS, true_class, np.int32)
    if truth == "label":
        return ids
    rows = np.eye(classes, dtype=np.float32)[ids][:, : classes + min(true_offset, 0)]
    return np.pad(rows, [(0, 0), (0, max(true_offset, 0))], constant_values=1.0)


def _categorical_path(prediction: str, true_class: int, classes: int) -> Callable[[Any], Any]:
    def build(points: Any) -> Any:
        import tensorflow as tf

        is_true = tf.one_hot(true_class, classes)
        column = points[:, None]
        if prediction == "real":
            return is_true * column
        probabilities = is_true * column + (1.0 - is_true) * (1.0 - column) / (classes - 1)
        return tf.math.log(probabilities) if prediction == "logits" else probabilities

    return build


def regression_sweep(prediction: str) -> Sweep:
    """The residual y_pred - y_true, one curve per target value (one output column)."""

    def curve(target: float) -> Curve:
        def build(points: Any) -> Any:
            return points[:, None] + target

        return Curve(f"y = {target:g}", np.full((POINTS, 1), target, np.float32), build)

    targets = REGRESSION_TARGETS
    low = -min(targets) if prediction == "nonneg" else -3.0
    residuals = np.linspace(low, 3.0, POINTS, dtype=np.float32)
    return Sweep("y_pred - y_true", residuals, tuple(curve(t) for t in targets))
