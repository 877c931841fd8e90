"""The checker: types a parsed spec's expressions (names, calls, arity, gathers,
conditions) into the typed tree (`typed.CheckedSpec`), recording the desugarings that fire.

It builds on `declarations` (names, inputs, params), `roles` (how operands' roles
combine), `statements` (counts and size limits) and `result` (what the Keras call
returns, the mask); the value domains of expressions (E4xx beyond param defaults, E5xx)
are left to the analysis (lossdsl/analysis/).

Every problem of a file is reported: an expression with an error types as `None`, which
suppresses follow-on errors in the expressions around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from lossdsl import channels, nodes
from lossdsl.builtins import (
    AXIS_WORDS,
    BUILTINS,
    CONSTANT_VALUES,
    CONSTANTS,
    Builtin,
    RoleRule,
)
from lossdsl.codes import (
    CLASS_OF_NON_Y_TRUE,
    COMPARISON_OUTSIDE_CONDITION,
    FUNCTION_AS_VALUE,
    GATHER_FROM_NON_VECTOR,
    GATHER_INDEX_NOT_CLASS_ID,
    INVALID_AXIS,
    INVALID_PARTNER,
    NO_CLASS_ROLE,
    NO_LOSS,
    NOT_A_CONDITION,
    NOT_A_FUNCTION,
    NOT_A_VALUE,
    NOTHING_TO_REDUCE,
    ONEHOT_OF_NON_LABEL,
    OTHER_OF_PARTNER,
    OTHER_WITHOUT_BATCH,
    REPEATED_KEYWORD,
    ROLES_NOT_NESTED,
    SELECTION_NOT_LITERAL,
    SELECTION_OUTSIDE,
    UNKNOWN_FUNCTION,
    UNKNOWN_KEYWORD,
    UNKNOWN_NAME,
    USED_BEFORE_DEFINITION,
    WRONG_ARITY,
)
from lossdsl.declarations import NON_VALUES, Typed
from lossdsl.desugar import (
    DEFAULT_ARGUMENTS,
    DEFAULT_AXIS,
    DESUGARINGS,
    INLINE_LET,
    LIFT_OUTER_MEAN,
    NAMED_CONSTANT,
    REDUCTION_WHERE,
    SQUARE_AS_POWER,
    reduce_where,
    square_as_power,
)
from lossdsl.diagnostics import (
    LossSpecError,
    error,
    similar_name_help,
    sort_diagnostics,
)
from lossdsl.kinds import KINDS
from lossdsl.result import check_result
from lossdsl.roles import RoleRules
from lossdsl.source import Span
from lossdsl.statements import Counted, check_counts, within_limits
from lossdsl.syntax_errors import MATRIX_HELP
from lossdsl.typed import (
    AXIS_REDUCES,
    PARTNER_OF,
    PARTNER_ROLES,
    CheckedSpec,
    Role,
    Roles,
    TAdd,
    TCall,
    TCompare,
    TCondition,
    TConst,
    TExpr,
    TGather,
    TInput,
    TLogic,
    TMul,
    TNeg,
    TNumClasses,
    TParam,
    TPow,
    TreeSize,
    TSampleIndex,
    TSelect,
    class_id_roles,
    describe_roles,
    gather_roles,
    one_hot_roles,
    partners_used,
)

_REDUCTIONS_HELP = "the reductions are `sum`, `mean`, `max`, `min` and `logsumexp`, with `axis=`"
OTHER_SPELLINGS: dict[str, str] = {
    **dict.fromkeys(("transpose", "matmul", "dot", "einsum", "outer", "tensordot"), MATRIX_HELP),
    **dict.fromkeys(("pow", "power"), "a power is written `x ^ y` (or `x ** y`)"),
    "ln": "the natural logarithm is `log(x)`",
    "log2": "a logarithm to another base is a quotient: `log(x) / log(2)`",
    "log10": "a logarithm to another base is a quotient: `log(x) / log(10)`",
    **dict.fromkeys(("clamp", "clip_by_value"), "clipping is `clip(x, lo, hi)`"),
    **dict.fromkeys(
        ("reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_logsumexp"),
        _REDUCTIONS_HELP,
    ),
}
"""The help for calls of functions that other libraries name and the language spells
otherwise (the checker's E201): matrix algebra points to `other(x)`, `pow` to `^`."""

AXIS_HELP = (
    "`axis` is -1 (the last role, the default), 0 (batch), sample (every role but batch), "
    "all, partner or partner2"
)


def check(spec: nodes.Spec) -> CheckedSpec:
    """Check a parsed spec; raises LossSpecError carrying every diagnostic if any is an error."""
    return SpecChecker(spec).run()


class SpecChecker(RoleRules):
    """One pass over one spec, collecting diagnostics as it goes."""

    def __init__(self, spec: nodes.Spec) -> None:
        super().__init__(spec)
        self.visible_lets: dict[str, Typed] = {}
        self.statement_index = 0
        self.tree_sizes: dict[TExpr, TreeSize] = {}

    # ------------------------------------------------------------ the whole spec

    def run(self) -> CheckedSpec:
        statements = self.spec.statements
        self.declare_names(statements)
        self.declare_inputs([s for s in statements if isinstance(s, nodes.InputDecl)])
        if pairs_samples(statements):
            self.pair_inputs()
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
        check_counts(self.report, losses, "loss")
        check_counts(self.report, masks, "mask")
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
        mask = cast(TCondition | None, masks[0].value) if masks else None
        mask_decl = cast(nodes.MaskDecl, masks[0].statement) if masks else None
        outcome = (
            None if loss is None else check_result(self.report, loss_decl, loss, mask_decl, mask)
        )
        if any(d.is_error for d in self.diagnostics) or loss is None or outcome is None:
            raise LossSpecError(self.diagnostics, self.spec.source)
        result, lifted, batch_coupled = outcome
        if lifted:
            self.fired.add(LIFT_OUTER_MEAN.name)
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
            desugarings=tuple(name for name in DESUGARINGS if name in self.fired),
            paired=self.y_pred.paired,
            partners=partners_used([loss, result, *([mask] if mask is not None else [])]),
        )

    def within_limits(self, what: str, span: Span, typed: Typed) -> Typed:
        return within_limits(self.report, self.tree_sizes, what, span, typed)

    # ------------------------------------------------------------ expressions

    def expr(self, node: nodes.Expr) -> Typed:
        match node:
            case nodes.Number(value=value, span=span):
                return TConst(value, span)
            case nodes.Name(id=name):
                named = self.name(node)
                if isinstance(named, TConst) and name in CONSTANTS:
                    self.fired.add(NAMED_CONSTANT.name)
                return named
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
            case nodes.Index(index=index, ellipsis=ellipsis):
                if ellipsis or isinstance(index, nodes.Slice) or _written_number(index):
                    return self.select(node)
                return self.gather(node, index)
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
            case nodes.Logic(op=op, span=span):
                self.logic(node)
                self.report(
                    error(
                        COMPARISON_OUTSIDE_CONDITION,
                        f"`{op}` is only valid in `where`'s first argument or in `mask`",
                        span,
                        "a condition",
                        "to use it as a value, write `where(a > b and c > d, 1, 0)`",
                    )
                )
                return None

    def operands(self, operands: Sequence[nodes.Expr]) -> list[tuple[Span, Typed]]:
        return [(operand.span, self.expr(operand)) for operand in operands]

    def name(self, node: nodes.Name) -> Typed:
        name, span = node.id, node.span
        if name in self.invalid_names:
            return None
        if name in self.visible_lets:
            self.fired.add(INLINE_LET.name)
            return self.visible_lets[name]
        if name in self.inputs:
            info = self.inputs[name]
            return TInput(info, span, info.roles, integer=KINDS[info.kind].class_ids)
        if name in self.params:
            param = self.params[name]
            return TParam(param, span, param.roles)
        if name in CONSTANT_VALUES:
            return TConst(CONSTANT_VALUES[name], span)
        if name == "num_classes":
            return TNumClasses(span)
        if name == "sample_index":
            return TSampleIndex(span)
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
        selection = self.selection(node)
        operands: list[tuple[Span, Typed]] = [
            (
                arg.span,
                self.condition(arg, "where")
                if builtin.role_rule is RoleRule.WHERE and position == 0
                else self.expr(arg),
            )
            for position, arg in enumerate(node.args)
        ]
        if not all(well_formed) or axis is None or selection is None:
            return None
        if len(operands) < builtin.max_args:
            operands.extend((node.span, TConst(value, node.span)) for value in builtin.defaults)
        match builtin.role_rule:
            case RoleRule.ELEMENTWISE:
                return self.elementwise(builtin, node, operands)
            case RoleRule.WHERE:
                return self.where(node, operands)
            case RoleRule.CLASS_AXIS:
                return self.class_axis(builtin, node, operands)
            case RoleRule.REDUCTION:
                return self.reduction(builtin, node, operands, axis, selection)
            case RoleRule.OTHER:
                return self.other(node, operands)
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
                    (OTHER_SPELLINGS[name],)
                    if name in OTHER_SPELLINGS
                    else similar_name_help(name, BUILTINS, "built-in")
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
            self.fired.add(DEFAULT_AXIS.name)
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

    def selection(self, node: nodes.Call) -> tuple[TCondition | None] | None:
        """A reduction's `where=` condition, `(None,)` without one, or None if invalid."""
        keywords = [keyword for keyword in node.keywords if keyword.name == "where"]
        if not keywords:
            return (None,)
        condition = self.condition(keywords[0].value, f"{node.func}(..., where=...)")
        return None if condition is None else (condition,)

    def elementwise(
        self, builtin: Builtin, node: nodes.Call, operands: list[tuple[Span, Typed]]
    ) -> Typed:
        combined = self.combine(operands)
        if combined is None:
            return None
        args, roles = combined
        if len(node.args) < len(args):
            self.fired.add(DEFAULT_ARGUMENTS.name)
        call = TCall(builtin.name, args, node.span, roles)
        if builtin.name == "square":
            self.fired.add(SQUARE_AS_POWER.name)
            return square_as_power(call)
        return call

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
        selection: tuple[TCondition | None],
    ) -> Typed:
        combined = self.combine(operands)
        if combined is None:
            return None
        (arg,), roles = combined
        (condition,) = selection
        if condition is not None:
            joined = self.nest([(operands[0][0], arg), (condition.span, condition)])
            if joined is None:
                return None
            roles = joined
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
        if condition is not None:
            self.fired.add(REDUCTION_WHERE.name)
            return reduce_where(builtin.name, arg, condition, reduced, node.span)
        return TCall(builtin.name, (arg,), node.span, roles - reduced, reduced=reduced)

    def other(self, node: nodes.Call, operands: list[tuple[Span, Typed]]) -> Typed:
        """`other(x, n)`: x at the other sample of each pair (n = 1) or triplet (n = 2)."""
        (span, arg), (_, which) = operands
        partner = which.value if isinstance(which, TConst) else None
        if partner not in (1.0, 2.0):
            written = node.args[1] if len(node.args) > 1 else node
            self.report(
                error(
                    INVALID_PARTNER,
                    f"`other`'s second argument must be 1 or 2, not "
                    f"`{self.source_text(written.span)}`",
                    written.span,
                    "not 1 or 2",
                    "`other(x)` is x at the pair's other sample, `other(x, 2)` at a "
                    "triplet's second partner",
                )
            )
            return None
        if arg is None:
            return None
        role = PARTNER_OF[int(cast(float, partner))]
        if len(node.args) == 1:
            self.fired.add(DEFAULT_ARGUMENTS.name)
        if arg.roles & PARTNER_ROLES:
            twice = Role.PARTNER in arg.roles and role is Role.PARTNER
            self.report(
                error(
                    OTHER_OF_PARTNER,
                    f"`other` of a value that already has the "
                    f"{'partner' if Role.PARTNER in arg.roles else 'partner2'} role",
                    node.span,
                    "a partner of a partner",
                    "for a third sample (triplets: anchor, positive, negative), write "
                    "`other(x, 2)` of the per-sample value x"
                    if twice
                    else "apply `other` to per-sample values, then combine the results",
                )
            )
            return None
        if Role.BATCH not in arg.roles:
            self.report(
                error(
                    OTHER_WITHOUT_BATCH,
                    f"`other` needs a value with the batch role, but its argument is "
                    f"{roles_phrase(arg.roles)}",
                    span,
                    "not per sample",
                    "`other(x)` is x at the other sample of each pair: apply it to an input "
                    "or a per-sample value, as in `other(e)` or `other(y) == y`",
                )
            )
            return None
        args = (arg, TConst(float(cast(float, partner)), node.span))
        return TCall("other", args, node.span, arg.roles | {role}, integer=arg.integer)

    def class_id(self, node: nodes.Call, arg: Typed) -> Typed:
        if arg is None:
            return None
        if isinstance(arg, TInput) and arg.info.argument == "y_true":
            return TCall("class", (arg,), node.span, class_id_roles(arg.roles), integer=True)
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
        if isinstance(arg, TInput) and KINDS[arg.info.kind].class_ids:
            return TCall("onehot", (arg,), node.span, one_hot_roles(arg.roles))
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

    def gather(self, node: nodes.Index, index_node: nodes.Expr) -> Typed:
        """`x[idx]`: x's entry at each element's class id.

        x is a per-class vector (`w[class(y)]`) or any value with the class role
        (`log_softmax(z)[y]`, LANGUAGE_NOTES.md "Indexing"); the result has the roles of
        x without class, joined with the index's.
        """
        vector = self.expr(node.target)
        index = self.expr(index_node)
        if vector is None or index is None:
            return None
        well_formed = True
        y = self.y_true.name
        if Role.CLASS not in vector.roles or vector.integer:
            well_formed = False
            picked = f"onehot({y})" if KINDS[self.y_true.kind].class_ids else y
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
            target = self.source_text(node.target.span) if well_formed else "w"
            self.report(
                error(
                    GATHER_INDEX_NOT_CLASS_ID,
                    f"an index must be a channel number or a class id, such as `class({y})`",
                    node.index.span,
                    "neither an integer literal nor a class id",
                    f"select a channel with an integer literal, as in `{target}[0]` or "
                    f"`{target}[0:2]`, or pick each sample's class with `{target}[class({y})]`",
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
        return TGather(vector, index, node.span, gather_roles(vector.roles, index.roles))

    def select(self, node: nodes.Index) -> Typed:
        """A channel selection `x[k]`, `x[a:b]`, `x[..., k]` (LANGUAGE.md 6.2): x must have
        the class role; `x[k]` loses it, a slice keeps it."""
        operand = self.expr(node.target)
        bounds = self.selection_bounds(node)
        if operand is None or bounds is None:
            return None
        start, stop, single = bounds
        if Role.CLASS not in operand.roles or operand.integer:
            self.report(
                error(
                    GATHER_FROM_NON_VECTOR,
                    "only a value with the class role has channels to select, but this value "
                    f"is {roles_phrase(operand.roles)}",
                    node.target.span,
                    "no class axis to select from",
                    self.no_channels_help(operand),
                )
            )
            return None
        width = self.widths.of(operand)
        selection = channels.select(width, start, stop, single)
        if selection.problem is not None:
            target = self.source_text(node.target.span)
            size = width.literal
            self.report(
                error(
                    SELECTION_OUTSIDE,
                    f"`{self.source_text(node.span)}` is not a valid selection: "
                    f"{selection.problem}",
                    node.index.span,
                    "outside the class axis" if selection.needed else "selects nothing",
                    f"`{target}` has {size} entries: select `{target}[0]` to "
                    f"`{target}[{size - 1}]`, or `{target}[-1]` for the last"
                    if size is not None and selection.needed
                    else "a slice `a:b` takes the entries a to b - 1, counted from the start "
                    "(or from the end, both below 0): `p[0:2]`, `p[-2:]`",
                )
            )
            return None
        roles = operand.roles - {Role.CLASS} if single else operand.roles
        return TSelect(operand, start, stop, single, node.span, roles)

    def selection_bounds(self, node: nodes.Index) -> tuple[int | None, int | None, bool] | None:
        """`(start, stop, single)` of a selection; None (reported) unless every bound is an
        integer literal and a slice has no step."""
        index = node.index
        if isinstance(index, nodes.Slice) and index.step is not None:
            self.report(
                error(
                    SELECTION_NOT_LITERAL,
                    "a channel slice takes no step",
                    index.step.span,
                    "a step",
                    "select neighbouring channels `p[0:2]`, or each one on its own: `p[0]`, `p[2]`",
                )
            )
            return None
        written = (index.start, index.stop) if isinstance(index, nodes.Slice) else (index,)
        bounds = [None if bound is None else _integer_literal(bound) for bound in written]
        for bound, value in zip(written, bounds, strict=True):
            if bound is not None and value is None:
                self.expr(bound)
                self.report(
                    error(
                        SELECTION_NOT_LITERAL,
                        "a channel is selected by an integer literal",
                        bound.span,
                        "not an integer literal",
                        "write the channel's position, as in `p[0]`, `p[-1]` or `p[0:2]`; "
                        f"to pick each sample's class, write `p[class({self.y_true.name})]`",
                    )
                )
                return None
        if isinstance(index, nodes.Slice):
            return bounds[0], bounds[1], False
        return bounds[0], None, True

    def no_channels_help(self, operand: TExpr) -> str:
        if isinstance(operand, TInput) and operand.integer:
            name = operand.info.name
            return (
                f"`{name}` is a `label` input, one class id per element: compare it, as in "
                f"`where({name} == 0, a, b)`, or select from `onehot({name})[0]`"
            )
        return (
            "select channels before a reduction or a selection removes the class axis: "
            f"`{self.y_pred.name}[0]` of an input, a vector param or `softmax(z)`, as in "
            f"`sum({self.y_pred.name}[0:2])` rather than `sum({self.y_pred.name})[0]`"
        )

    def compare(self, node: nodes.Compare) -> TCompare | None:
        combined = self.combine(self.operands((node.left, node.right)), allow_integers=True)
        if combined is None:
            return None
        (left, right), roles = combined
        return TCompare(node.op, left, right, node.span, roles)

    def logic(self, node: nodes.Logic) -> TLogic | None:
        """`and`, `or`, `not` of conditions; the grammar gives them only conditions."""
        typed = [(operand.span, self.condition(operand, node.op)) for operand in node.operands]
        combined = self.combine(typed, allow_integers=True)
        if combined is None:
            return None
        operands, roles = combined
        return TLogic(node.op, operands, node.span, roles)

    def condition(self, node: nodes.Expr, where: str) -> TCondition | None:
        """The condition of `where`, `mask`, `and`, `or` or `not`: a comparison, or
        comparisons combined by `and`, `or`, `not`."""
        if isinstance(node, nodes.Compare):
            return self.compare(node)
        if isinstance(node, nodes.Logic):
            return self.logic(node)
        self.expr(node)
        examples = {"mask": "`mask y != -1`", "where": "`where(y > 0.5, a, b)`"}
        example = examples.get(where, "`max(d, where=other(y) == y)`")
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


# ---------------------------------------------------------------- helpers on trees


def pairs_samples(statements: Sequence[nodes.Statement]) -> bool:
    """Whether a spec pairs samples (LANGUAGE.md 6.5): it uses `other` or `sample_index`."""
    roots = [
        statement.condition if isinstance(statement, nodes.MaskDecl) else statement.value
        for statement in statements
        if isinstance(statement, (nodes.LetDecl, nodes.MaskDecl, nodes.LossDecl))
    ]
    return any(
        (isinstance(node, nodes.Call) and node.func == "other")
        or (isinstance(node, nodes.Name) and node.id == "sample_index")
        for root in roots
        for node in nodes.subexpressions(root)
    )


def axis_word(node: nodes.Expr) -> str | None:
    """`-1`, `0` or a word of `AXIS_WORDS` as written in `axis=`, else None."""
    match node:
        case nodes.Name(id=word) if word in AXIS_WORDS:
            return word
        case nodes.Number(value=value) if value in (0.0, -1.0):
            return str(int(value))
        case nodes.Neg(operand=nodes.Number(value=1.0)):
            return "-1"
    return None


def _written_number(node: nodes.Expr) -> bool:
    """Whether an index is written as a number (`0`, `-1`, `0.5`): a channel, not a gather."""
    match node:
        case nodes.Number() | nodes.Neg(operand=nodes.Number()):
            return True
    return False


def _integer_literal(node: nodes.Expr) -> int | None:
    """An index or bound written as an integer (`2`, `-1`), else None."""
    match node:
        case nodes.Number(text=text) if text.isdigit():
            return int(text)
        case nodes.Neg(operand=nodes.Number(text=text)) if text.isdigit():
            return -int(text)
    return None


def roles_phrase(roles: Roles) -> str:
    """`a scalar`, or the roles as `[batch, spatial]`."""
    return describe_roles(roles) if roles else "a scalar"
