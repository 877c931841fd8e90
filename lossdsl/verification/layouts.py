"""Concrete shapes of a verification (`Layout`, `Position`) and its input draws (`Draw`)."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from lossdsl.kinds import KINDS, draw_floats
from lossdsl.typed import InputInfo, InputKind, Role, Roles


@dataclass(frozen=True)
class Layout:
    """A concrete y_pred shape split by role: batch size, spatial sizes, number of classes;
    and y_true's number of classes (`true_classes`, y_pred's unless the spec selects
    y_true's own channels, LANGUAGE.md 6.2)."""

    batch: int
    spatial: tuple[int, ...]
    classes: int
    true_classes: int | None = None
    true_offset: int = 0
    """Without `true_classes`, y_true's classes less y_pred's (`channels.true_offset`)."""

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.batch, *self.spatial, self.classes)

    @property
    def true_count(self) -> int:
        """y_true's number of classes."""
        return self.true_classes or self.classes + self.true_offset

    @property
    def true_shape(self) -> tuple[int, ...]:
        """y_true's shape (for a `label`, with its class axis of 1 dropped by the draw)."""
        return (*self.shape[:-1], self.true_count)

    def output_shape(self, roles: Roles) -> tuple[int, ...]:
        """The shape of a value with `roles` in Keras's squeezed form."""
        sizes: list[int] = []
        if Role.BATCH in roles:
            sizes.append(self.batch)
        if Role.SPATIAL in roles:
            sizes.extend(self.spatial)
        if Role.CLASS in roles:
            sizes.append(self.classes)
        return tuple(sizes)

    def positions(self, roles: Roles, classes: int | None = None) -> Iterator[Position]:
        """Every position of a value with `roles` (and `classes` classes, else y_pred's),
        in row-major order."""
        batches: Sequence[int | None] = range(self.batch) if Role.BATCH in roles else (None,)
        spatials: Sequence[tuple[int, ...] | None] = (
            list(itertools.product(*(range(size) for size in self.spatial)))
            if Role.SPATIAL in roles
            else (None,)
        )
        count = self.classes if classes is None else classes
        klasses: Sequence[int | None] = range(count) if Role.CLASS in roles else (None,)
        partners: Sequence[int | None] = range(self.batch) if Role.PARTNER in roles else (None,)
        seconds: Sequence[int | None] = range(self.batch) if Role.PARTNER2 in roles else (None,)
        for batch, partner, second, spatial, klass in itertools.product(
            batches, partners, seconds, spatials, klasses
        ):
            yield Position(batch, spatial, klass, partner, second)


DEFAULT_CLASSES = (4, 3, 4)
"""The class counts of the three verification layouts when no vector param fixes C."""


def verify_layouts(
    classes: int | None,
    fewest: int = 1,
    true_classes: int | None = None,
    paired: bool = False,
    true_offset: int = 0,
) -> tuple[Layout, Layout, Layout]:
    """The shapes a compile is verified at: [3, C], [2, 5, C] and [2, 3, 2, C]; for a spec
    that pairs samples, which has no spatial axes, [3, C], [2, C] and [5, C].

    C is the length of the spec's vector params, or 4, 3, 4 without them, at least
    `fewest` (the channels the spec selects); the first batch size moves to 4 when C is 3,
    so that no two adjacent axes have equal sizes where it can be helped. y_true has
    `true_classes` classes where given, else C + `true_offset`.
    """
    counts = (classes,) * 3 if classes else DEFAULT_CLASSES
    first, second, third = (max(count, fewest) for count in counts)
    small = Layout(4 if first == 3 else 3, (), first, true_classes, true_offset)
    if paired:
        return (
            small,
            Layout(2, (), second, true_classes, true_offset),
            Layout(5, (), third, true_classes, true_offset),
        )
    return (
        small,
        Layout(2, (5,), second, true_classes, true_offset),
        Layout(2, (3, 2), third, true_classes, true_offset),
    )


@dataclass(frozen=True)
class Position:
    """A concrete position: a batch index, a spatial index tuple, a class index, and the
    samples of the partner roles (or None each)."""

    batch: int | None = None
    spatial: tuple[int, ...] | None = None
    klass: int | None = None
    partner: int | None = None
    partner2: int | None = None

    def restrict(self, roles: Roles) -> Position:
        """Only the coordinates of `roles`."""
        return _restricted(self, roles)

    def merge(self, inner: Position) -> Position:
        """This position with the coordinates `inner` sets."""
        return Position(
            self.batch if inner.batch is None else inner.batch,
            self.spatial if inner.spatial is None else inner.spatial,
            self.klass if inner.klass is None else inner.klass,
            self.partner if inner.partner is None else inner.partner,
            self.partner2 if inner.partner2 is None else inner.partner2,
        )

    def seen_from(self, partner: Role) -> Position:
        """The position of the pair's other sample (`other(x)`): the batch index that of
        `partner`, the partner coordinates dropped."""
        sample = self.partner if partner is Role.PARTNER else self.partner2
        return Position(sample, self.spatial, self.klass)

    def index(self) -> tuple[int, ...]:
        """The tensor index of this position (its roles' coordinates, in axis order)."""
        batch = () if self.batch is None else (self.batch,)
        spatial = self.spatial or ()
        klass = () if self.klass is None else (self.klass,)
        return (*batch, *spatial, *klass)


@functools.lru_cache(maxsize=4096)
def _restricted(position: Position, roles: Roles) -> Position:
    """`position.restrict(roles)`, remembered: the nodes of an expanded tree ask for the same
    few positions again and again."""
    return Position(
        position.batch if Role.BATCH in roles else None,
        position.spatial if Role.SPATIAL in roles else None,
        position.klass if Role.CLASS in roles else None,
        position.partner if Role.PARTNER in roles else None,
        position.partner2 if Role.PARTNER2 in roles else None,
    )


@dataclass(frozen=True)
class Draw:
    """One set of concrete inputs: y_true, y_pred and the cotangent of the result."""

    layout: Layout
    y_true: np.ndarray  # int32 [B, S...] (or [B, S..., 1]) for a label, else float64
    y_pred: np.ndarray  # float64 [B, S..., C]
    cotangent: np.ndarray  # float64, the result's Keras shape
    description: str


def _draw_labels(
    rng: np.random.Generator, layout: Layout, out_of_range: bool, trailing_axis: bool
) -> np.ndarray:
    labels = rng.integers(0, layout.classes, size=layout.shape[:-1]).astype(np.int32)
    if out_of_range:
        labels.flat[0] = -1
        labels.flat[-1] = layout.classes
    return labels[..., np.newaxis] if trailing_axis else labels


def draw_inputs(
    rng: np.random.Generator,
    y_true: InputInfo,
    y_pred: InputInfo,
    layout: Layout,
    output_roles: Roles,
    edge: bool,
    out_of_range_labels: bool,
) -> Draw:
    """Inputs drawn from the kinds of y_true and y_pred at `layout` (`edge`: edge points)."""
    if KINDS[y_true.kind].class_ids:
        trailing_axis = len(layout.spatial) > 1
        true_values = _draw_labels(rng, layout, out_of_range_labels and edge, trailing_axis)
    else:
        true_values = draw_floats(y_true.kind, rng, layout.true_shape, edge)
    pred_values = draw_floats(y_pred.kind, rng, layout.shape, edge)
    cotangent = rng.normal(size=layout.output_shape(output_roles))
    shape_text = "[" + ", ".join(str(size) for size in layout.shape) + "]"
    description = f"y_pred of shape {shape_text}" + (" at edge points" if edge else "")
    return Draw(layout, true_values, pred_values, np.asarray(cotangent), description)


def redraw_elements(
    rng: np.random.Generator,
    kind: InputKind,
    values: np.ndarray,
    indices: Sequence[tuple[int, ...]],
) -> np.ndarray:
    """`values` with the elements at `indices` drawn afresh from `kind` (no edge points)."""
    fresh = draw_floats(kind, rng, values.shape, False)
    moved = values.copy()
    for index in indices:
        moved[index] = fresh[index]
    return moved
