"""The role algebra of operands: roles that must nest (E301, with a gather hint), the
samples of pairs combined as an outer product (LANGUAGE.md 6.5), and class ids kept out of
arithmetic (E309)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from lossdsl.channels import Width, Widths, combined
from lossdsl.codes import (
    CLASS_IDS_IN_ARITHMETIC,
    CLASS_SIZES_DIFFER,
    ROLES_NOT_NESTED,
    SLICE_IS_ALL_CHANNELS,
)
from lossdsl.declarations import Declarations, Typed
from lossdsl.diagnostics import error, warning
from lossdsl.kinds import KINDS
from lossdsl.source import Span
from lossdsl.typed import (
    NO_ROLES,
    PARTNER_ROLES,
    Role,
    Roles,
    TCall,
    TExpr,
    TInput,
    TParam,
    TSampleIndex,
    TSelect,
    describe_roles,
    walk,
)


def combinable(first: Roles, second: Roles) -> bool:
    """Whether two values may meet elementwise: their roles nest, or they differ only in
    the partner roles, which combine freely as an outer product over the samples."""
    first, second = first - PARTNER_ROLES, second - PARTNER_ROLES
    return first <= second or second <= first


class RoleRules(Declarations):
    """How operands' roles combine; `SpecChecker` (checker.py) extends it."""

    def combine(
        self, operands: Sequence[tuple[Span, Typed]], allow_integers: bool = False
    ) -> tuple[tuple[TExpr, ...], Roles] | None:
        """Operands of an elementwise operation and the union of their (nested) roles."""
        checked = [(span, typed) for span, typed in operands if typed is not None]
        if len(checked) < len(operands):
            return None
        integers_ok = allow_integers or self.reject_integers(checked)
        roles = self.nest(checked)
        if roles is None or not integers_ok:
            return None
        if Role.CLASS in roles and not self.class_sizes_agree(checked):
            return None
        return tuple(typed for _, typed in checked), roles

    @functools.cached_property
    def widths(self) -> Widths:
        lengths = [len(p.default) for p in self.params.values() if isinstance(p.default, tuple)]
        return Widths(lengths[0] if lengths else None)

    def class_sizes_agree(self, operands: Sequence[tuple[Span, TExpr]]) -> bool:
        """Class axes meet only where their sizes agree or one has size 1 (E322 where both
        sizes are known now; TensorFlow's broadcasting reports the others)."""
        with_class = [
            (span, self.widths.of(typed)) for span, typed in operands if Role.CLASS in typed.roles
        ]
        if combined([width for _, width in with_class]) is not None:
            self.warn_of_a_slice_that_is_all_channels(operands)
            return True
        sized = [(span, width) for span, width in with_class if width.literal not in (None, 1)]
        (first_span, first), (second_span, second) = (
            sized[0],
            next(pair for pair in sized if pair[1].literal != sized[0][1].literal),
        )
        self.report(
            error(
                CLASS_SIZES_DIFFER,
                f"class axes of {first.literal} and {second.literal} entries cannot be combined",
                first_span.join(second_span),
                "different numbers of channels",
                "select as many channels on each side, as in "
                f"`{self.y_pred.name}[0:2] - {self.y_true.name}[0:2]`, or one channel, which "
                "broadcasts",
            )
        )
        return False

    def warn_of_a_slice_that_is_all_channels(self, operands: Sequence[tuple[Span, TExpr]]) -> None:
        """W303 where a value reading a slice of y_pred of literal width (`z[0:4]`) meets
        one with all of y_pred's classes (`onehot(y)`, y_pred itself): the two agree only
        where y_pred has exactly that many classes, so the slice is all of y_pred; a
        confidence head `z[-1]` beside it is then one of its classes."""
        sized = [
            (span, typed, self.widths.of(typed))
            for span, typed in operands
            if Role.CLASS in typed.roles
        ]
        whole = next(((s, t) for s, t, width in sized if width == Width("y_pred", 0)), None)
        if whole is None:
            return
        whole_span, whole_typed = whole
        for span, typed, width in sized:
            if width.literal in (None, 1):
                continue
            sliced = next((node for node in walk([typed]) if self.is_a_slice_of_y_pred(node)), None)
            if sliced is None:
                continue
            y_pred, whole_text = self.y_pred.name, self.source_text(whole_span)
            written = self.source_text(sliced.span)
            bounds = written[written.index("[") :] if "[" in written else f"[0:{width.literal}]"
            atomic = isinstance(whole_typed, TInput | TCall | TSelect)
            operand = whole_text if atomic else f"({whole_text})"
            self.report(
                warning(
                    SLICE_IS_ALL_CHANNELS,
                    f"`{whole_text}` has all of {y_pred}'s classes and `{self.source_text(span)}` "
                    f"{width.literal}: the loss runs only where {y_pred} has exactly "
                    f"{width.literal} classes, and `{written}` is then all of {y_pred}",
                    whole_span.join(span),
                    f"{y_pred}'s classes meet {width.literal} of its channels",
                    f"combine the same channels, as in `{operand}{bounds}`"
                    + (
                        f"; a label's entry is an index, as in `log_softmax({written})"
                        f"[{self.y_true.name}]`"
                        if KINDS[self.y_true.kind].class_ids
                        else ""
                    ),
                )
            )
            return

    def is_a_slice_of_y_pred(self, node: TExpr) -> bool:
        return (
            isinstance(node, TSelect)
            and not node.single
            and isinstance(node.operand, TInput)
            and node.operand.info.argument == "y_pred"
        )

    def reject_integers(self, operands: Sequence[tuple[Span, TExpr]]) -> bool:
        """Class ids in arithmetic are errors; True if there are none."""
        for span, typed in operands:
            if typed.integer:
                self.report_integer(span, typed)
        return not any(typed.integer for _, typed in operands)

    def report_integer(self, span: Span, typed: TExpr) -> None:
        if any(isinstance(node, TSampleIndex) for node in walk([typed])):
            self.report(
                error(
                    CLASS_IDS_IN_ARITHMETIC,
                    f"`{self.source_text(span)}` holds sample positions, which cannot be used "
                    "in arithmetic",
                    span,
                    "sample positions",
                    "compare them, as in `where(other(sample_index) != sample_index, a, b)`",
                )
            )
            return
        y = self.y_true.name
        labels = KINDS[self.y_true.kind].class_ids
        one_hot = f"use `onehot({y})` for one-hot rows, or " if labels else ""
        self.report(
            error(
                CLASS_IDS_IN_ARITHMETIC,
                f"`{self.source_text(span)}` holds class ids, which cannot be used in arithmetic",
                span,
                "class ids",
                f"{one_hot}compare class ids, as in `where(class({y}) == 0, a, b)`",
            )
        )

    def nest(self, operands: Sequence[tuple[Span, TExpr]]) -> Roles | None:
        """The union of the operands' roles, or None (reported) if they do not nest."""
        roles = NO_ROLES
        for index, (span, typed) in enumerate(operands):
            if combinable(roles, typed.roles):
                roles = roles | typed.roles
                continue
            earlier = [t for _, t in operands[:index]]
            self.report(
                error(
                    ROLES_NOT_NESTED,
                    f"a {describe_roles(roles)} value and a {describe_roles(typed.roles)} "
                    "value cannot be combined",
                    operands[0][0].join(span),
                    "neither one's roles contain the other's",
                    self.nesting_help(roles, typed.roles, [*earlier, typed]),
                )
            )
            return None
        return roles

    def nesting_help(self, left: Roles, right: Roles, operands: list[TExpr]) -> str:
        per_class = [r for r in (left, right) if Role.CLASS in r and Role.BATCH not in r]
        per_sample = [r for r in (left, right) if Role.BATCH in r and Role.CLASS not in r]
        over_the_batch = [r for r in (left, right) if Role.SPATIAL in r and Role.BATCH not in r]
        if over_the_batch and per_sample and not per_class:
            return (
                "a reduction with `axis=0` keeps the spatial role (the axes between batch "
                "and class, none on [batch, C] inputs): reduce that operand with "
                "`axis=all` for one value, or combine the operands before the per-sample "
                "reduction, as in `mean(a + b)`"
            )
        if not (per_class and per_sample):
            return "reduce one operand (sum, mean, ...) until its roles are part of the other's"
        vectors = [t.info.name for t in walk(operands) if isinstance(t, TParam) and t.roles]
        vector = vectors[0] if vectors else "w"
        return (
            f"to weigh each sample by its class, gather the vector's entry: "
            f"`{vector}[class({self.y_true.name})]`"
        )
