"""The checker: resolves a parsed spec's names, arity, declarations, kinds, param domains
and roles into the typed tree (`typed.CheckedSpec`), lifting the outer mean; the value
domains of expressions (E4xx beyond param defaults, E5xx) are left to symbolic/domains.py.

Every problem of a file is reported: an expression with an error types as `None`, which
suppresses follow-on errors in the expressions around it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias, cast

from lossdsl import nodes
from lossdsl.builtins import (
    AXIS_WORDS,
    BUILTINS,
    CONSTANTS,
    EPSILON,
    KERAS_ARGUMENTS,
    RESERVED_NAMES,
    Builtin,
    RoleRule,
)
from lossdsl.codes import (
    BATCH_COUPLED,
    CLASS_IDS_IN_ARITHMETIC,
    CLASS_OF_NON_Y_TRUE,
    COMPARISON_OUTSIDE_CONDITION,
    DEFAULT_OUTSIDE_DOMAIN,
    DUPLICATE_NAME,
    EMPTY_INTERVAL,
    FUNCTION_AS_VALUE,
    GATHER_FROM_NON_VECTOR,
    GATHER_INDEX_NOT_CLASS_ID,
    INVALID_AXIS,
    KIND_IN_WRONG_POSITION,
    MASK_HAS_CLASS_ROLE,
    MASK_ROLES_NOT_IN_RESULT,
    MASK_WITHOUT_LIFTED_MEAN,
    NO_CLASS_ROLE,
    NO_LOSS,
    NOT_A_CONDITION,
    NOT_A_FUNCTION,
    NOT_A_VALUE,
    NOTHING_TO_REDUCE,
    ONEHOT_OF_NON_LABEL,
    REPEATED_KEYWORD,
    RESERVED_NAME,
    RESULT_HAS_CLASS_ROLE,
    RESULT_SPATIAL_WITHOUT_BATCH,
    ROLES_NOT_NESTED,
    SCALAR_NOT_LIFTED,
    SECOND_LOSS,
    SECOND_MASK,
    TOO_DEEP,
    TOO_LARGE,
    TOO_MANY_INPUTS,
    UNKNOWN_DOMAIN,
    UNKNOWN_FUNCTION,
    UNKNOWN_KEYWORD,
    UNKNOWN_KIND,
    UNKNOWN_NAME,
    USED_BEFORE_DEFINITION,
    VECTOR_LENGTHS_DIFFER,
    WRONG_ARITY,
)
from lossdsl.diagnostics import (
    Diagnostic,
    LossSpecError,
    error,
    similar_name_help,
    sort_diagnostics,
    warning,
)
from lossdsl.kinds import DEFAULT_KINDS, KINDS, KINDS_HELP, kinds_for
from lossdsl.parser import NESTING_LIMIT
from lossdsl.source import Span
from lossdsl.typed import (
    ALL_ROLES,
    NAMED_DOMAINS,
    NO_ROLES,
    PER_ELEMENT,
    PER_SAMPLE,
    ROLE_ORDER,
    Argument,
    CheckedSpec,
    InputInfo,
    InputKind,
    ParamDomain,
    ParamInfo,
    Role,
    Roles,
    TAdd,
    TCall,
    TCompare,
    TConst,
    TExpr,
    TGather,
    TInput,
    TMul,
    TNeg,
    TNumClasses,
    TParam,
    TPow,
    TreeSize,
    describe_roles,
    tree_size,
    walk,
)

# Diagnostic codes (docs/LANGUAGE_NOTES.md, "Diagnostic codes: E2xx, E3xx").

INLINED_DEPTH_LIMIT = NESTING_LIMIT
"""The deepest a `let`, `loss` or `mask` may nest, in operations, with its lets written
out: the typed tree that every later stage walks, several of them recursively (lowering,
the domain checks, verification's expansion of the exact loss, where one operation can
be four SymPy levels deep). The parser's 64 levels bound the text only; a chain of lets
builds any depth from shallow lines. At 64, chains of signs, `sigmoid`, sums and
products, `log` and `mean` were measured to pass every stage with verification; from
about 90 (chains of `sigmoid`) verification exhausted Python's recursion limit."""

INLINED_SIZE_LIMIT = 5_000
"""The most nodes a `let`, `loss` or `mask` may have with its lets written out at each
use: lets that use the previous one twice double it at each line. Lowering, the domain
checks and verification take time in this size; at the limit a spec checks in seconds."""

VECTOR_LIMIT = 256
"""The most entries a vector param may have (one per class). Verification evaluates the
exact loss on every class, so its time grows with the length; at the limit a spec checks
and verifies in a few seconds."""

Typed: TypeAlias = TExpr | None
"""A checked expression, or None where an error was already reported inside it."""

Declaration: TypeAlias = nodes.InputDecl | nodes.ParamDecl | nodes.LetDecl

DOMAINS_HELP = "domains are real, nonneg, positive, unit, or an interval such as `(0, 1]`"
AXIS_HELP = (
    "`axis` is -1 (the last role, the default), 0 (batch), sample (every role but batch) or all"
)

RESERVED_REASONS: dict[str, str] = {
    **dict.fromkeys(KERAS_ARGUMENTS, "an argument of every Keras loss"),
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
}
"""Reserved words that are not values: (message, label, help) when used as one."""

DEFAULT_ARGUMENTS: dict[str, Callable[[Span], tuple[TExpr, ...]]] = {
    "clip": lambda span: (TConst(EPSILON, span), TConst(1.0 - EPSILON, span)),
}
"""Optional trailing arguments of a built-in, all given or all omitted: `clip(x)`."""

REWRITTEN_CALLS: dict[str, Callable[[TCall], TExpr]] = {
    "square": lambda call: TPow(call.args[0], TConst(2.0, call.span), call.span, call.roles),
}
"""Built-in calls the typed tree spells with other nodes."""


def _last_role(roles: Roles) -> Roles:
    """The role a default reduction removes: class, else spatial, else batch."""
    for role in reversed(ROLE_ORDER):
        if role in roles:
            return frozenset({role})
    return NO_ROLES


AXIS_REDUCES: dict[str, Callable[[Roles], Roles]] = {
    "-1": _last_role,
    "0": lambda roles: roles & PER_SAMPLE,
    "sample": lambda roles: roles - PER_SAMPLE,
    "all": lambda roles: roles,
}
"""The roles a reduction removes from its argument's roles, by `axis`."""


@dataclass(frozen=True)
class Counted:
    """A statement that may appear a limited number of times (`loss`, `mask`), checked."""

    statement: nodes.LossDecl | nodes.MaskDecl
    value: Typed


def check(spec: nodes.Spec) -> CheckedSpec:
    """Check a parsed spec; raises LossSpecError carrying every diagnostic if any is an error."""
    return SpecChecker(spec).run()


class SpecChecker:
    """One pass over one spec, collecting diagnostics as it goes."""

    def __init__(self, spec: nodes.Spec) -> None:
        self.spec = spec
        self.diagnostics: list[Diagnostic] = []
        self.first_declarations: dict[str, Declaration] = {}
        self.invalid_names: set[str] = set()
        self.inputs: dict[str, InputInfo] = {}
        self.params: dict[str, ParamInfo] = {}
        self.let_indices: dict[str, int] = {}
        self.visible_lets: dict[str, Typed] = {}
        self.statement_index = 0
        self.tree_sizes: dict[TExpr, TreeSize] = {}
        self.y_true = InputInfo(*DEFAULT_KINDS["y_true"], "y_true", None)
        self.y_pred = InputInfo(*DEFAULT_KINDS["y_pred"], "y_pred", None)

    # ------------------------------------------------------------ the whole spec

    def run(self) -> CheckedSpec:
        statements = self.spec.statements
        self.declare_names(statements)
        self.declare_inputs([s for s in statements if isinstance(s, nodes.InputDecl)])
        self.declare_params([s for s in statements if isinstance(s, nodes.ParamDecl)])
        losses: list[Counted] = []
        masks: list[Counted] = []
        for index, statement in enumerate(statements):
            self.statement_index = index
            match statement:
                case nodes.LetDecl(name=name, value=value):
                    typed = self.within_limits(f"`{name}`", value.span, self.expr(value))
                    if self.let_indices.get(name) == index:
                        self.visible_lets[name] = typed
                case nodes.MaskDecl(condition=condition):
                    mask = self.within_limits(
                        "the mask", condition.span, self.condition(condition, "mask")
                    )
                    masks.append(Counted(statement, mask))
                case nodes.LossDecl(value=value):
                    losses.append(
                        Counted(
                            statement, self.within_limits("the loss", value.span, self.expr(value))
                        )
                    )
        self.check_counts(losses, "loss")
        self.check_counts(masks, "mask")
        if not losses:
            self.report(
                error(
                    NO_LOSS,
                    "the spec has no `loss`",
                    self.spec.source.end_span(),
                    "expected a `loss` line",
                    "add one, for example `loss = mean(square(p - y))`",
                )
            )
            raise LossSpecError(self.diagnostics, self.spec.source)
        loss_decl = cast(nodes.LossDecl, losses[0].statement)
        loss = losses[0].value
        mask = cast(TCompare | None, masks[0].value) if masks else None
        outcome = self.check_result(loss_decl, loss, masks[0] if masks else None, mask)
        if any(d.is_error for d in self.diagnostics) or loss is None or outcome is None:
            raise LossSpecError(self.diagnostics, self.spec.source)
        result, lifted, batch_coupled = outcome
        return CheckedSpec(
            source=self.spec.source,
            loss_name=str(loss_decl.name or self.spec.source.stem),
            loss_span=loss_decl.span,
            docstring=self.spec.docstring,
            y_true=self.y_true,
            y_pred=self.y_pred,
            params=tuple(self.params.values()),
            loss=loss,
            result=result,
            lifted=lifted,
            batch_coupled=batch_coupled,
            mask=mask,
            warnings=tuple(sort_diagnostics(self.diagnostics)),
        )

    def report(self, diagnostic: Diagnostic) -> None:
        self.diagnostics.append(diagnostic)

    def within_limits(self, what: str, span: Span, typed: Typed) -> Typed:
        """`typed`, or None (reported) if it is too deep or too large with its lets written out.

        A let over the limits is reported once and its uses are then silent, so no tree
        deeper than a statement over `INLINED_DEPTH_LIMIT` is ever built.
        """
        if typed is None:
            return None
        size = tree_size(typed, self.tree_sizes)
        written_out = "with its lets written out where they are used"
        if size.depth > INLINED_DEPTH_LIMIT:
            self.report(
                error(
                    TOO_DEEP,
                    f"{what} is nested {size.depth} operations deep {written_out}, "
                    f"more than {INLINED_DEPTH_LIMIT}",
                    span,
                    f"{size.depth} operations deep",
                    "a let is written out at each use, so a chain of lets each applying a "
                    "function to the one before nests like one expression; "
                    f"at most {INLINED_DEPTH_LIMIT} nested operations are allowed",
                )
            )
            return None
        if size.nodes > INLINED_SIZE_LIMIT:
            self.report(
                error(
                    TOO_LARGE,
                    f"{what} has {size.nodes:,} operations and values {written_out}, "
                    f"more than {INLINED_SIZE_LIMIT:,}",
                    span,
                    "too large",
                    "a let is written out at each use, so lets that each use the one before "
                    f"twice double in size at each line; at most {INLINED_SIZE_LIMIT:,} are "
                    "allowed",
                )
            )
            return None
        return typed

    def check_counts(self, counted: list[Counted], keyword: str) -> None:
        """A second (third...) `loss` or `mask` is an error naming the first's line."""
        if len(counted) < 2:
            return
        first_line = counted[0].statement.span.line
        limit = "exactly one `loss`" if keyword == "loss" else "at most one `mask`"
        fix = (
            "add the terms in one loss: `loss = mean(a) + mean(b)`"
            if keyword == "loss"
            else "keep one condition"
        )
        for extra in counted[1:]:
            span = extra.statement.span
            self.report(
                error(
                    SECOND_LOSS if keyword == "loss" else SECOND_MASK,
                    f"a second `{keyword}`; the first is on line {first_line}",
                    Span.point(span.line, span.column, len(keyword)),
                    f"second `{keyword}`",
                    f"a spec has {limit}; {fix}",
                )
            )

    # ------------------------------------------------------------ declarations

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
                        "`reduction` and `dtype` cannot be declared; choose another name",
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
        for argument, (name, kind) in DEFAULT_KINDS.items():
            if argument in arguments:
                continue
            while name in taken:
                name += "_"
            info = InputInfo(name, kind, argument, None)
            self.inputs[name] = info
            self.set_argument(info)

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

    # ------------------------------------------------------------ expressions

    def expr(self, node: nodes.Expr) -> Typed:
        match node:
            case nodes.Number(value=value, span=span):
                return TConst(value, span)
            case nodes.Name():
                return self.name(node)
            case nodes.Add(operands=operands, negated=negated, span=span):
                combined = self.combine(self.operands(operands))
                if combined is None:
                    return None
                typed, roles = combined
                return TAdd(typed, negated, span, roles)
            case nodes.Mul(operands=operands, inverted=inverted, span=span):
                combined = self.combine(self.operands(operands))
                if combined is None:
                    return None
                typed, roles = combined
                return TMul(typed, inverted, span, roles)
            case nodes.Neg(operand=operand, span=span):
                combined = self.combine(self.operands((operand,)))
                if combined is None:
                    return None
                (typed_operand,), roles = combined
                return TNeg(typed_operand, span, roles)
            case nodes.Pow(base=base, exponent=exponent, span=span):
                combined = self.combine(self.operands((base, exponent)))
                if combined is None:
                    return None
                (typed_base, typed_exponent), roles = combined
                return TPow(typed_base, typed_exponent, span, roles)
            case nodes.Call():
                return self.call(node)
            case nodes.Index():
                return self.gather(node)
            case nodes.Compare(span=span):
                self.compare(node)
                self.report(
                    error(
                        COMPARISON_OUTSIDE_CONDITION,
                        "a comparison is only valid as `where`'s first argument or in `mask`",
                        span,
                        "a comparison",
                        "to use it as a value, write `where(a > b, 1, 0)`",
                    )
                )
                return None

    def operands(self, operands: Sequence[nodes.Expr]) -> list[tuple[Span, Typed]]:
        return [(operand.span, self.expr(operand)) for operand in operands]

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
        return tuple(typed for _, typed in checked), roles

    def reject_integers(self, operands: Sequence[tuple[Span, TExpr]]) -> bool:
        """Class ids in arithmetic are errors; True if there are none."""
        for span, typed in operands:
            if typed.integer:
                self.report_integer(span)
        return not any(typed.integer for _, typed in operands)

    def report_integer(self, span: Span) -> None:
        y = self.y_true.name
        one_hot = f"use `onehot({y})` for one-hot rows, or " if self.y_true.kind == "label" else ""
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
            if typed.roles <= roles:
                continue
            if roles <= typed.roles:
                roles = typed.roles
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
        if not (per_class and per_sample):
            return "reduce one operand (sum, mean, ...) until its roles are part of the other's"
        vectors = [t.info.name for t in walk(operands) if isinstance(t, TParam) and t.roles]
        vector = vectors[0] if vectors else "w"
        return (
            f"to weigh each sample by its class, gather the vector's entry: "
            f"`{vector}[class({self.y_true.name})]`"
        )

    def name(self, node: nodes.Name) -> Typed:
        name, span = node.id, node.span
        if name in self.invalid_names:
            return None
        if name in self.visible_lets:
            return self.visible_lets[name]
        if name in self.inputs:
            info = self.inputs[name]
            return TInput(info, span, info.roles, integer=info.kind == "label")
        if name in self.params:
            param = self.params[name]
            return TParam(param, span, param.roles)
        if name == "eps":
            return TConst(EPSILON, span)
        if name == "num_classes":
            return TNumClasses(span)
        if name in NON_VALUES:
            message, label, help_line = NON_VALUES[name]
            self.report(error(NOT_A_VALUE, message, span, label, help_line))
        elif name in BUILTINS:
            self.report(
                error(
                    FUNCTION_AS_VALUE,
                    f"`{name}` is a built-in function, not a value",
                    span,
                    "not called",
                    f"call it: `{name}(...)`",
                )
            )
        elif name in self.let_indices:
            self.report_let_below(name, span)
        else:
            self.report(
                error(
                    UNKNOWN_NAME,
                    f"unknown name `{name}`",
                    span,
                    "not defined",
                    *(
                        similar_name_help(name, self.visible_names(), "value")
                        or (f"declare it with `let {name} = ...` or `param {name} = ...`",)
                    ),
                )
            )
        return None

    def report_let_below(self, name: str, span: Span) -> None:
        index = self.let_indices[name]
        line = self.spec.statements[index].span.line
        if index == self.statement_index:
            message, help_line = (
                f"`{name}` is used in its own definition",
                f"a let can use only names defined above line {line}",
            )
        else:
            message, help_line = (
                f"`{name}` is defined on line {line}, below its use",
                f"move `let {name} = ...` above this line",
            )
        self.report(
            error(USED_BEFORE_DEFINITION, message, span, "used before its definition", help_line)
        )

    def visible_names(self) -> list[str]:
        return [*self.inputs, *self.params, *self.visible_lets, "eps", "num_classes"]

    # ------------------------------------------------------------ calls

    def call(self, node: nodes.Call) -> Typed:
        builtin = BUILTINS.get(node.func)
        if builtin is None:
            self.report_not_builtin(node)
            for arg in node.args:
                self.expr(arg)
            return None
        well_formed = [
            self.check_arity(builtin, node),
            self.check_keywords(builtin, node),
        ]
        axis = self.axis(node) if builtin.role_rule is RoleRule.REDUCTION else "-1"
        operands: list[tuple[Span, Typed]] = [
            (
                arg.span,
                self.condition(arg, "where")
                if builtin.role_rule is RoleRule.WHERE and position == 0
                else self.expr(arg),
            )
            for position, arg in enumerate(node.args)
        ]
        if not all(well_formed) or axis is None:
            return None
        if len(operands) < builtin.max_args:
            defaults = DEFAULT_ARGUMENTS[builtin.name](node.span)
            operands.extend((node.span, default) for default in defaults)
        match builtin.role_rule:
            case RoleRule.ELEMENTWISE:
                return self.elementwise(builtin, node, operands)
            case RoleRule.WHERE:
                return self.where(node, operands)
            case RoleRule.CLASS_AXIS:
                return self.class_axis(builtin, node, operands)
            case RoleRule.REDUCTION:
                return self.reduction(builtin, node, operands, axis)
            case RoleRule.CLASS_ID:
                return self.class_id(node, operands[0][1])
            case RoleRule.ONE_HOT:
                return self.one_hot(node, operands[0][1])

    def report_not_builtin(self, node: nodes.Call) -> None:
        name = node.func
        if name in self.invalid_names:
            return
        what = {
            **dict.fromkeys(CONSTANTS, "a built-in constant"),
            **dict.fromkeys(self.visible_lets, "a let"),
            **dict.fromkeys(self.inputs, "an input"),
            **dict.fromkeys(self.params, "a param"),
        }
        if name in what:
            is_vector = name in self.params and self.params[name].is_vector
            self.report(
                error(
                    NOT_A_FUNCTION,
                    f"`{name}` is not a function",
                    node.func_span,
                    what[name],
                    f"to pick each sample's entry of `{name}`, index it: "
                    f"`{name}[class({self.y_true.name})]`"
                    if is_vector
                    else "only built-in functions can be called",
                )
            )
            return
        self.report(
            error(
                UNKNOWN_FUNCTION,
                f"unknown function `{name}`",
                node.func_span,
                "not a built-in",
                *(
                    similar_name_help(name, BUILTINS, "built-in")
                    or ("built-in functions: " + ", ".join(BUILTINS),)
                ),
            )
        )

    def check_arity(self, builtin: Builtin, node: nodes.Call) -> bool:
        """Optional arguments come all together: a built-in takes min_args or max_args."""
        given = len(node.args)
        accepted = sorted({builtin.min_args, builtin.max_args})
        if given in accepted:
            return True
        counts = " or ".join(str(count) for count in accepted)
        noun = "argument" if accepted[-1] == 1 else "arguments"
        if given > accepted[-1]:
            extras = node.args[accepted[-1] :]
            span = extras[0].span.join(extras[-1].span)
            label = "unexpected argument" if len(extras) == 1 else "unexpected arguments"
        else:
            span, label = node.span, f"takes {counts} {noun}"
        self.report(
            error(
                WRONG_ARITY,
                f"`{builtin.name}` takes {counts} {noun}, but {given} "
                f"{'was' if given == 1 else 'were'} given",
                span,
                label,
                f"`{builtin.name}`: {builtin.doc}",
            )
        )
        return False

    def check_keywords(self, builtin: Builtin, node: nodes.Call) -> bool:
        seen: set[str] = set()
        well_formed = True
        for keyword in node.keywords:
            if keyword.name not in builtin.keywords:
                well_formed = False
                accepted = ", ".join(f"`{name}=`" for name in builtin.keywords)
                self.report(
                    error(
                        UNKNOWN_KEYWORD,
                        f"`{builtin.name}` has no keyword argument `{keyword.name}`",
                        keyword.name_span,
                        "unknown keyword",
                        *similar_name_help(keyword.name, builtin.keywords, "keyword"),
                        f"`{builtin.name}` takes {accepted}"
                        if accepted
                        else f"`{builtin.name}` takes no keyword arguments",
                    )
                )
            elif keyword.name in seen:
                well_formed = False
                self.report(
                    error(
                        REPEATED_KEYWORD,
                        f"keyword argument `{keyword.name}` is given twice",
                        keyword.name_span,
                        "repeated",
                        "give each keyword argument once",
                    )
                )
            seen.add(keyword.name)
        return well_formed

    def axis(self, node: nodes.Call) -> str | None:
        """The `axis=` of a reduction as one of AXIS_REDUCES's keys, or None if invalid."""
        axis_keywords = [keyword for keyword in node.keywords if keyword.name == "axis"]
        if not axis_keywords:
            return "-1"
        value = axis_keywords[0].value
        word = axis_word(value)
        if word is None:
            self.report(
                error(
                    INVALID_AXIS,
                    f"invalid axis `{self.source_text(value.span)}`",
                    value.span,
                    "not an axis",
                    AXIS_HELP,
                )
            )
        return word

    def elementwise(
        self, builtin: Builtin, node: nodes.Call, operands: list[tuple[Span, Typed]]
    ) -> Typed:
        combined = self.combine(operands)
        if combined is None:
            return None
        args, roles = combined
        call = TCall(builtin.name, args, node.span, roles)
        rewrite = REWRITTEN_CALLS.get(builtin.name)
        return rewrite(call) if rewrite else call

    def where(self, node: nodes.Call, operands: list[tuple[Span, Typed]]) -> Typed:
        branches = operands[1:]
        branches_ok = all(typed is not None for _, typed in branches) and self.reject_integers(
            [(span, typed) for span, typed in branches if typed is not None]
        )
        combined = self.combine(operands, allow_integers=True)
        if combined is None or not branches_ok:
            return None
        args, roles = combined
        return TCall("where", args, node.span, roles)

    def class_axis(
        self, builtin: Builtin, node: nodes.Call, operands: list[tuple[Span, Typed]]
    ) -> Typed:
        combined = self.combine(operands)
        if combined is None:
            return None
        (arg,), roles = combined
        if Role.CLASS not in roles:
            self.report(
                error(
                    NO_CLASS_ROLE,
                    f"`{builtin.name}` needs a value with the class role, but its argument "
                    f"is {roles_phrase(roles)}",
                    operands[0][0],
                    "no class axis",
                    f"`{builtin.name}` works over the class axis; apply it before the class "
                    "role is reduced, as in `softmax(z)` of a `logits` input",
                )
            )
            return None
        return TCall(builtin.name, (arg,), node.span, roles)

    def reduction(
        self,
        builtin: Builtin,
        node: nodes.Call,
        operands: list[tuple[Span, Typed]],
        axis: str,
    ) -> Typed:
        combined = self.combine(operands)
        if combined is None:
            return None
        (arg,), roles = combined
        reduced = AXIS_REDUCES[axis](roles)
        if not reduced:
            called = builtin.name if axis == "-1" else f"{builtin.name}(..., axis={axis})"
            self.report(
                error(
                    NOTHING_TO_REDUCE,
                    f"`{called}` has nothing to reduce: its argument is {roles_phrase(roles)}",
                    node.span,
                    "nothing to reduce",
                    "remove this reduction"
                    if not roles
                    else f"axis={axis} removes roles its argument does not have; {AXIS_HELP}",
                )
            )
            return None
        return TCall(builtin.name, (arg,), node.span, roles - reduced, reduced=reduced)

    def class_id(self, node: nodes.Call, arg: Typed) -> Typed:
        if arg is None:
            return None
        if isinstance(arg, TInput) and arg.info.argument == "y_true":
            return TCall("class", (arg,), node.span, PER_ELEMENT, integer=True)
        y = self.y_true.name
        self.report(
            error(
                CLASS_OF_NON_Y_TRUE,
                f"`class` takes the y_true input `{y}`",
                node.args[0].span,
                "y_pred" if isinstance(arg, TInput) else "not the y_true input",
                f"write `class({y})`; for the predicted class, compare `{self.y_pred.name}` "
                "values instead",
            )
        )
        return None

    def one_hot(self, node: nodes.Call, arg: Typed) -> Typed:
        if arg is None:
            return None
        if isinstance(arg, TInput) and arg.info.kind == "label":
            return TCall("onehot", (arg,), node.span, ALL_ROLES)
        if isinstance(arg, TInput) and arg.info.kind == "onehot":
            label = f"`{arg.info.name}` is already one-hot"
            help_line = f"use `{arg.info.name}` directly"
        else:
            label = "not a `label` input"
            help_line = (
                f"`onehot` turns class ids into one-hot rows; declare y_true as "
                f"`input {self.y_true.name}: label`"
            )
        self.report(
            error(
                ONEHOT_OF_NON_LABEL,
                "`onehot` takes a `label` input",
                node.args[0].span,
                label,
                help_line,
            )
        )
        return None

    # ------------------------------------------------------------ gathers and conditions

    def gather(self, node: nodes.Index) -> Typed:
        """`x[idx]`: x's entry at each element's class id.

        x is a per-class vector (`w[class(y)]`) or any value with the class role
        (`log_softmax(z)[y]`, LANGUAGE_NOTES.md "Indexing"); the result has the roles of
        x without class, joined with the index's.
        """
        vector = self.expr(node.target)
        index = self.expr(node.index)
        if vector is None or index is None:
            return None
        well_formed = True
        y = self.y_true.name
        if Role.CLASS not in vector.roles or vector.integer:
            well_formed = False
            picked = f"onehot({y})" if self.y_true.kind == "label" else y
            self.report(
                error(
                    GATHER_FROM_NON_VECTOR,
                    "only a value with the class role can be indexed, but this value is "
                    f"{roles_phrase(vector.roles)}",
                    node.target.span,
                    "no class axis to pick from",
                    f"to pick `{self.y_pred.name}` at the true class, use "
                    f"`{self.y_pred.name}[class({y})]` or `sum({picked} * {self.y_pred.name})`"
                    if isinstance(vector, TInput)
                    else f"index a vector param or a per-class value, as in `w[class({y})]`",
                )
            )
        if not index.integer:
            self.report(
                error(
                    GATHER_INDEX_NOT_CLASS_ID,
                    f"a gather index must be a class id, such as `class({y})`",
                    node.index.span,
                    "not a class id",
                    f"write `{self.source_text(node.target.span)}[class({y})]`"
                    if well_formed
                    else f"index a vector param with a class id, as in `w[class({y})]`",
                )
            )
            well_formed = False
        if not well_formed:
            return None
        picked_roles = vector.roles - {Role.CLASS}
        if not (picked_roles <= index.roles or index.roles <= picked_roles):
            self.report(
                error(
                    ROLES_NOT_NESTED,
                    f"a {describe_roles(picked_roles)} row cannot be indexed by a "
                    f"{describe_roles(index.roles)} class id",
                    node.span,
                    "neither one's roles contain the other's",
                    f"index with a class id of the same roles, such as `class({y})`",
                )
            )
            return None
        return TGather(vector, index, node.span, picked_roles | index.roles)

    def compare(self, node: nodes.Compare) -> TCompare | None:
        combined = self.combine(self.operands((node.left, node.right)), allow_integers=True)
        if combined is None:
            return None
        (left, right), roles = combined
        return TCompare(node.op, left, right, node.span, roles)

    def condition(self, node: nodes.Expr, where: str) -> TCompare | None:
        """The condition of `where` or `mask`, which must be a comparison."""
        if isinstance(node, nodes.Compare):
            return self.compare(node)
        self.expr(node)
        example = "`mask y != -1`" if where == "mask" else "`where(y > 0.5, a, b)`"
        self.report(
            error(
                NOT_A_CONDITION,
                f"the condition of `{where}` must be a comparison",
                node.span,
                "not a comparison",
                f"compare with < <= > >= == !=, as in {example}",
            )
        )
        return None

    # ------------------------------------------------------------ the result

    def check_result(
        self,
        loss_decl: nodes.LossDecl,
        loss: Typed,
        mask_decl: Counted | None,
        mask: TCompare | None,
    ) -> tuple[TExpr, bool, bool] | None:
        """What the Keras `call` returns, whether the outer mean was lifted, batch coupling."""
        if loss is None:
            return None
        lifted_result = lift(loss)
        result = lifted_result or loss
        lifted = lifted_result is not None
        where = loss_decl.value.span
        if Role.CLASS in result.roles:
            self.report(
                error(
                    RESULT_HAS_CLASS_ROLE,
                    "the loss still has the class role",
                    where,
                    f"roles {describe_roles(result.roles)}",
                    "reduce it with sum(...) or mean(...)",
                )
            )
            return None
        if Role.SPATIAL in result.roles and Role.BATCH not in result.roles:
            self.report(
                error(
                    RESULT_SPATIAL_WITHOUT_BATCH,
                    "the loss has the spatial role without the batch role",
                    where,
                    f"roles {describe_roles(result.roles)}",
                    "Keras needs per-sample values or a scalar; reduce the spatial role too",
                )
            )
            return None
        coupling = [t for t in walk([result]) if isinstance(t, TCall) and Role.BATCH in t.reduced]
        if coupling:
            self.report(
                warning(
                    BATCH_COUPLED,
                    "each sample's loss depends on the whole batch",
                    coupling[0].span,
                    "reduces over the batch",
                    "sample_weight still weighs each sample's value; to keep samples "
                    "independent, reduce without axis=0 or axis=all and let an outer "
                    "`mean(...)` be Keras's reduction",
                )
            )
        if not lifted and not result.roles:
            self.report(
                warning(
                    SCALAR_NOT_LIFTED,
                    "the loss is a scalar that cannot be lifted; sample_weight then scales it "
                    "as Keras scales a scalar loss",
                    where,
                    "a scalar",
                    "write the loss as `mean(x)` of a per-sample or per-element x, or a sum "
                    "of such means times constants",
                )
            )
        if mask_decl is not None and mask is not None:
            self.check_mask(mask_decl, mask, result, lifted)
        return result, lifted, bool(coupling)

    def check_mask(self, mask_decl: Counted, mask: TCompare, result: TExpr, lifted: bool) -> None:
        span = cast(nodes.MaskDecl, mask_decl.statement).condition.span
        if Role.CLASS in mask.roles:
            self.report(
                error(
                    MASK_HAS_CLASS_ROLE,
                    "the mask has the class role",
                    span,
                    f"roles {describe_roles(mask.roles)}",
                    "a mask selects elements, not classes: compare a `label` or a "
                    "per-element value, as in `mask y != -1`",
                )
            )
        elif not lifted:
            self.report(
                error(
                    MASK_WITHOUT_LIFTED_MEAN,
                    "a `mask` needs a loss of the form `mean(...)`",
                    span,
                    "the loss is not a lifted mean",
                    "Keras counts the unmasked elements in its mean; write the loss as "
                    "`mean(x)` of a per-element x (or a sum of such means times constants)",
                )
            )
        elif not mask.roles <= result.roles:
            self.report(
                error(
                    MASK_ROLES_NOT_IN_RESULT,
                    f"the mask has roles {describe_roles(mask.roles)}, but the loss returns "
                    f"{describe_roles(result.roles)}",
                    span,
                    "more roles than the loss",
                    "the mask must select among the values the loss returns; keep the "
                    "loss per-element (drop an inner mean) or mask per sample",
                )
            )

    def source_text(self, span: Span) -> str:
        """The spec text under a one-line span (the spelling users wrote)."""
        if span.line != span.end_line:
            return "this value"
        return self.spec.source.line_text(span.line)[span.column - 1 : span.end_column - 1]


# ---------------------------------------------------------------- helpers on trees


def axis_word(node: nodes.Expr) -> str | None:
    """`-1`, `0`, `sample` or `all` as written in `axis=`, else None."""
    match node:
        case nodes.Name(id=word) if word in AXIS_WORDS:
            return word
        case nodes.Number(value=value) if value in (0.0, -1.0):
            return str(int(value))
        case nodes.Neg(operand=nodes.Number(value=1.0)):
            return "-1"
    return None


def roles_phrase(roles: Roles) -> str:
    """`a scalar`, or the roles as `[batch, spatial]`."""
    return describe_roles(roles) if roles else "a scalar"


def is_constant(expr: TExpr) -> bool:
    """A value with no roles computed from numbers and scalar params only."""
    return not expr.roles and not any(isinstance(t, TInput) for t in walk([expr]))


def lift(loss: TExpr) -> TExpr | None:
    """The value Keras's mean reduction should average, or None if `loss` is not liftable.

    Liftable: `mean(x)` removing x's last role or all of it, where x has batch and no
    class role; and sums, negations and constant multiples of liftable terms.
    """
    match loss:
        case TCall(builtin="mean", args=(arg,), reduced=reduced) if (
            Role.BATCH in arg.roles
            and Role.CLASS not in arg.roles
            and reduced in (_last_role(arg.roles), arg.roles)
        ):
            return arg
        case TAdd(operands=operands, negated=negated, span=span):
            terms = [lift(operand) for operand in operands]
            lifted_terms = [term for term in terms if term is not None]
            if len(lifted_terms) < len(terms):
                return None
            roles = frozenset().union(*(term.roles for term in lifted_terms))
            return TAdd(tuple(lifted_terms), negated, span, roles)
        case TNeg(operand=operand, span=span):
            inner = lift(operand)
            return None if inner is None else TNeg(inner, span, inner.roles)
        case TMul(operands=operands, inverted=inverted, span=span):
            variable = [i for i, operand in enumerate(operands) if not is_constant(operand)]
            if len(variable) != 1 or inverted[variable[0]]:
                return None
            inner = lift(operands[variable[0]])
            if inner is None:
                return None
            factors = tuple(inner if i == variable[0] else f for i, f in enumerate(operands))
            return TMul(factors, inverted, span, inner.roles)
    return None
