"""Declarations: reserved and duplicate names, inputs bound to y_true and y_pred by kind,
params with their domains, defaults and vector lengths (E204-E208, E212, E213, E315, E401).

`Declarations` holds the scope the checker's expressions are typed in; `SpecChecker`
(checker.py) extends it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import TypeAlias, cast

from lossdsl import nodes
from lossdsl.builtins import (
    AXIS_WORDS,
    BUILTINS,
    CONDITION_WORDS,
    CONSTANTS,
    KERAS_ARGUMENTS,
    RESERVED_NAMES,
)
from lossdsl.codes import (
    DEFAULT_OUTSIDE_DOMAIN,
    DUPLICATE_NAME,
    EMPTY_INTERVAL,
    KIND_IN_WRONG_POSITION,
    RESERVED_NAME,
    TOO_LARGE,
    TOO_MANY_INPUTS,
    UNKNOWN_DOMAIN,
    UNKNOWN_KIND,
    VECTOR_LENGTHS_DIFFER,
)
from lossdsl.desugar import DEFAULT_INPUT, default_input
from lossdsl.diagnostics import Diagnostic, error, similar_name_help
from lossdsl.kinds import DEFAULT_KINDS, KINDS, KINDS_HELP, Argument, InputKind, kinds_for
from lossdsl.source import Span
from lossdsl.typed import NAMED_DOMAINS, InputInfo, ParamDomain, ParamInfo, TExpr

VECTOR_LIMIT = 256
"""The most entries a vector param may have (one per class). Verification evaluates the
exact loss on every class, so its time grows with the length; at the limit a spec checks
and verifies in a few seconds."""

Typed: TypeAlias = TExpr | None
"""A checked expression, or None where an error was already reported inside it."""

Declaration: TypeAlias = nodes.InputDecl | nodes.ParamDecl | nodes.LetDecl

DOMAINS_HELP = "domains are real, nonneg, positive, unit, or an interval such as `(0, 1]`"

RESERVED_REASONS: dict[str, str] = {
    **dict.fromkeys(KERAS_ARGUMENTS, "an argument of every Keras loss"),
    **dict.fromkeys(CONDITION_WORDS, "a word that joins conditions"),
    **dict.fromkeys(AXIS_WORDS, "an axis word"),
    **dict.fromkeys(CONSTANTS, "a built-in constant"),
    **dict.fromkeys(BUILTINS, "a built-in function"),
}

NON_VALUES: dict[str, tuple[str, str, str]] = {
    "inf": (
        "`inf` is only valid in param domains",
        "not a value",
        "use a large number, or give a param a domain such as `[0, inf)`",
    ),
    **{
        word: (
            f"`{word}` is only valid as a reduction's `axis=`",
            "not a value",
            f"for example `mean(x, axis={word})`",
        )
        for word in AXIS_WORDS
    },
    **{
        word: (
            f"`{word}` is an argument of the compiled Keras loss, not a value",
            "not a value",
            f"pass `{word}=` when constructing the loss; a spec cannot read it",
        )
        for word in KERAS_ARGUMENTS
    },
    **{
        word: (
            f"`{word}` joins conditions and is not a value",
            "not a value",
            "join comparisons inside `where`'s first argument or `mask`, as in "
            "`where(p > 0.5 and y == 1, a, b)`",
        )
        for word in CONDITION_WORDS
    },
}
"""Reserved words that are not values: (message, label, help) when used as one."""


class Declarations:
    """The names a spec declares, checked, and the diagnostics found so far."""

    def __init__(self, spec: nodes.Spec) -> None:
        self.spec = spec
        self.diagnostics: list[Diagnostic] = []
        self.first_declarations: dict[str, Declaration] = {}
        self.invalid_names: set[str] = set()
        self.inputs: dict[str, InputInfo] = {}
        self.params: dict[str, ParamInfo] = {}
        self.let_indices: dict[str, int] = {}
        self.y_true = InputInfo(*DEFAULT_KINDS["y_true"], "y_true", None)
        self.y_pred = InputInfo(*DEFAULT_KINDS["y_pred"], "y_pred", None)
        self.fired: set[str] = set()  # names of the desugarings that fired

    def report(self, diagnostic: Diagnostic) -> None:
        self.diagnostics.append(diagnostic)

    def source_text(self, span: Span) -> str:
        """The spec text under a one-line span (the spelling users wrote)."""
        if span.line != span.end_line:
            return "this value"
        return self.spec.source.line_text(span.line)[span.column - 1 : span.end_column - 1]

    def declare_names(self, statements: Sequence[nodes.Statement]) -> None:
        """Reserved and duplicate names of inputs, params and lets; the first one wins."""
        for index, statement in enumerate(statements):
            if not isinstance(statement, nodes.InputDecl | nodes.ParamDecl | nodes.LetDecl):
                continue
            name = statement.name
            if name in RESERVED_NAMES:
                self.invalid_names.add(name)
                self.report(
                    error(
                        RESERVED_NAME,
                        f"`{name}` is a reserved name",
                        statement.name_span,
                        RESERVED_REASONS[name],
                        "built-in functions and constants, `sample`, `all`, `name`, "
                        "`reduction`, `dtype`, `and`, `or` and `not` cannot be declared; "
                        "choose another name",
                    )
                )
            elif name in self.first_declarations:
                first = self.first_declarations[name]
                self.report(
                    error(
                        DUPLICATE_NAME,
                        f"`{name}` is already declared on line {first.span.line}",
                        statement.name_span,
                        "declared again here",
                        "every input, param and let needs its own name; rename one of them",
                    )
                )
            else:
                self.first_declarations[name] = statement
                if isinstance(statement, nodes.LetDecl):
                    self.let_indices[name] = index

    def is_first(self, statement: Declaration) -> bool:
        return self.first_declarations.get(statement.name) is statement

    def declare_inputs(self, decls: list[nodes.InputDecl]) -> None:
        """Bind y_true and y_pred: declared inputs by position, the defaults otherwise.

        With one `input`, it is y_pred if its kind is only valid for y_pred (`prob`,
        `logits`, `real`), y_true otherwise; the other argument gets its default.
        """
        for extra in decls[2:]:
            self.invalid_names.add(extra.name)
            self.report(
                error(
                    TOO_MANY_INPUTS,
                    "a spec has at most two inputs",
                    extra.span,
                    "a third input",
                    "the first `input` binds y_true, the second y_pred; derive other "
                    "values from them with `let`",
                )
            )
        bound = decls[:2]
        valid = [decl for decl in bound if self.check_kind(decl)]
        if len(bound) == 2:
            arguments: tuple[Argument, ...] = ("y_true", "y_pred")
            swapped = all(
                decl.kind in KINDS and argument in KINDS[decl.kind].arguments
                for decl, argument in zip(bound, reversed(arguments), strict=True)
            )
            valid = [
                decl
                for decl, argument in zip(bound, arguments, strict=True)
                if decl in valid and self.check_position(decl, argument, swapped)
            ]
        elif len(bound) == 1:
            only = KINDS.get(bound[0].kind)
            arguments = ("y_pred",) if only and only.arguments == ("y_pred",) else ("y_true",)
        else:
            arguments = ()
        taken = set(self.first_declarations) | self.invalid_names
        for decl, argument in zip(bound, arguments, strict=True):
            default_kind = DEFAULT_KINDS[argument][1]
            kind = cast(InputKind, str(decl.kind)) if decl in valid else default_kind
            info = InputInfo(str(decl.name), kind, argument, decl.span)
            if decl not in valid:
                self.invalid_names.add(decl.name)
            elif self.is_first(decl):
                self.inputs[decl.name] = info
            self.set_argument(info)
        for argument in DEFAULT_KINDS:
            if argument in arguments:
                continue
            info = default_input(argument, taken)
            self.inputs[info.name] = info
            self.set_argument(info)
            self.fired.add(DEFAULT_INPUT.name)

    def pair_inputs(self) -> None:
        """Inputs of a spec that pairs samples, [batch, C] without the spatial role."""
        for name, info in self.inputs.items():
            self.inputs[name] = replace(info, paired=True)
        self.y_true = replace(self.y_true, paired=True)
        self.y_pred = replace(self.y_pred, paired=True)

    def set_argument(self, info: InputInfo) -> None:
        if info.argument == "y_true":
            self.y_true = info
        else:
            self.y_pred = info

    def check_kind(self, decl: nodes.InputDecl) -> bool:
        if decl.kind in KINDS:
            return True
        self.report(
            error(
                UNKNOWN_KIND,
                f"unknown input kind `{decl.kind}`",
                decl.kind_span,
                "not a kind",
                *similar_name_help(decl.kind, KINDS, "kind"),
                KINDS_HELP,
            )
        )
        return False

    def check_position(self, decl: nodes.InputDecl, argument: Argument, swapped: bool) -> bool:
        """Whether an input's kind suits the argument it binds (reported if not)."""
        if argument in KINDS[decl.kind].arguments:
            return True
        ordinal = "first" if argument == "y_true" else "second"
        fix = (
            "swap the two `input` lines"
            if swapped
            else f"{argument} kinds are " + ", ".join(kinds_for(argument))
        )
        self.report(
            error(
                KIND_IN_WRONG_POSITION,
                f"`{decl.kind}` is not a kind for {argument}, which the {ordinal} `input` binds",
                decl.kind_span,
                f"only for {KINDS[decl.kind].arguments[0]}",
                f"the first `input` binds y_true, the second y_pred; {fix}",
            )
        )
        return False

    def declare_params(self, decls: list[nodes.ParamDecl]) -> None:
        first_vector: nodes.ParamDecl | None = None
        for decl in decls:
            domain = self.param_domain(decl.domain)
            default = self.param_default(decl, domain)
            if isinstance(decl.default, nodes.VectorLiteral):
                self.check_vector_limit(decl.default)
                if first_vector is None:
                    first_vector = decl
                else:
                    self.check_vector_length(first_vector, decl)
            info = ParamInfo(str(decl.name), domain or NAMED_DOMAINS["real"], default, decl.span)
            if self.is_first(decl):
                self.params[decl.name] = info

    def param_domain(self, domain: nodes.Domain | None) -> ParamDomain | None:
        """The domain a param declares (`real` when omitted), or None if it is invalid."""
        match domain:
            case None:
                return NAMED_DOMAINS["real"]
            case nodes.NamedDomain(name=name, span=span):
                if name in NAMED_DOMAINS:
                    return NAMED_DOMAINS[name]
                self.report(
                    error(
                        UNKNOWN_DOMAIN,
                        f"unknown param domain `{name}`",
                        span,
                        "not a domain",
                        *similar_name_help(name, NAMED_DOMAINS, "domain"),
                        DOMAINS_HELP,
                    )
                )
                return None
            case nodes.Interval():
                return self.interval(domain)

    def interval(self, interval: nodes.Interval) -> ParamDomain | None:
        low = -math.inf if interval.low is None else interval.low
        high = math.inf if interval.high is None else interval.high
        text = self.source_text(interval.span)
        if not low < high:
            self.report(
                error(
                    EMPTY_INTERVAL,
                    f"the interval `{text}` has its low bound not below its high bound",
                    interval.span,
                    "empty or a single point",
                    "write the smaller bound first, as in `(0, 1]`",
                )
            )
            return None
        return ParamDomain(low, high, interval.low_closed, interval.high_closed, text)

    def param_default(
        self, decl: nodes.ParamDecl, domain: ParamDomain | None
    ) -> float | tuple[float, ...]:
        numbers = (
            decl.default.values
            if isinstance(decl.default, nodes.VectorLiteral)
            else (decl.default,)
        )
        if domain is not None:
            for number in numbers:
                if not domain.contains(number.value):
                    self.report_default_outside(decl.name, number, domain)
        if isinstance(decl.default, nodes.VectorLiteral):
            return tuple(number.value for number in numbers)
        return decl.default.value

    def report_default_outside(self, name: str, number: nodes.Number, domain: ParamDomain) -> None:
        interval = domain.describe()
        shown = f"`{domain.text}`" if domain.text == interval else f"`{domain.text}` {interval}"
        self.report(
            error(
                DEFAULT_OUTSIDE_DOMAIN,
                f"the default {number.text} of `{name}` is outside its domain {shown}",
                number.span,
                f"not in {interval}",
                "choose a default inside the domain, or widen the domain",
            )
        )

    def check_vector_limit(self, vector: nodes.VectorLiteral) -> None:
        if len(vector.values) <= VECTOR_LIMIT:
            return
        self.report(
            error(
                TOO_LARGE,
                f"a vector param has {len(vector.values):,} entries, more than {VECTOR_LIMIT:,}",
                vector.span,
                f"{len(vector.values):,} entries",
                f"a vector param holds one entry per class, at most {VECTOR_LIMIT:,}; for more "
                "classes, pass the weights as a sample_weight when training",
            )
        )

    def check_vector_length(self, first: nodes.ParamDecl, decl: nodes.ParamDecl) -> None:
        first_length = len(cast(nodes.VectorLiteral, first.default).values)
        length = len(cast(nodes.VectorLiteral, decl.default).values)
        if length == first_length:
            return
        self.report(
            error(
                VECTOR_LENGTHS_DIFFER,
                f"vector param `{decl.name}` has {length} entries, but `{first.name}` "
                f"(line {first.span.line}) has {first_length}",
                decl.default.span,
                f"{length} entries",
                "a vector param has one entry per class; give every vector param the same length",
            )
        )
