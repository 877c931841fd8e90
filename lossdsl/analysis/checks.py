"""`check_domains`, the analysis's entry: the E4xx/W4xx domain checks, E501/E502 and W601."""

from __future__ import annotations

import math
from collections.abc import Sequence

from lossdsl.analysis.intervals import Range
from lossdsl.analysis.overflow import OverflowCheck
from lossdsl.analysis.paths import GradientPaths, GuardedSearch
from lossdsl.analysis.ranges import RangeAnalysis, constant_value, is_integer_valued
from lossdsl.analysis.report import format_number, source_text
from lossdsl.analysis.sign import sign_diagnostics
from lossdsl.analysis.witness import (
    Witness,
    WitnessSearch,
    at_pole,
    below,
    equal,
    nan_power,
)
from lossdsl.builtins import BUILTINS, Domain
from lossdsl.codes import (
    DIVISION_BY_ZERO,
    DIVISION_BY_ZERO_EVERYWHERE,
    INFINITE_AT_ZERO_OR_POLE,
    LOG_OF_NEGATIVE,
    NEGATIVE_POWER_OF_ZERO,
    NEVER_FINITE,
    NO_GRADIENT_PATH,
    NO_PREDICTION,
    POWER_GRADIENT_AT_ZERO,
    POWER_OF_NEGATIVE,
    SQRT_GRADIENT_AT_ZERO,
    SQRT_OF_NEGATIVE,
    UNPROVEN_DOMAIN,
    UNSELECTED_NAN,
)
from lossdsl.diagnostics import Diagnostic, LossSpecError, error, warning
from lossdsl.typed import (
    CheckedSpec,
    TCall,
    TExpr,
    TMul,
    TParam,
    TPow,
    children,
    walk,
)


def _reaches_pole(values: Range) -> bool:
    """Whether an integer <= 0 lies in `values`."""
    top = 0.0 if values.high >= 0 else float(math.floor(values.high))
    return values.contains(top) or values.contains(top - 1)


class DomainChecker:
    """Collects the E4xx/W4xx diagnostics of one checked spec."""

    def __init__(self, checked: CheckedSpec, roots: Sequence[TExpr]) -> None:
        self.source = checked.source
        self.roots = roots
        self.ranges = RangeAnalysis()
        self.search = WitnessSearch()
        self.guarded = GuardedSearch(roots, self.search)
        self.gradients = GradientPaths(checked.result)
        self.diagnostics: list[Diagnostic] = []

    def text(self, node: TExpr) -> str:
        return source_text(self.source, node.span)

    def run(self) -> list[Diagnostic]:
        for node in walk(self.roots):
            match node:
                case TCall(builtin=builtin) if BUILTINS[builtin].domain is not None:
                    self._check_defined(node, BUILTINS[builtin].domain)
                case TPow():
                    self._check_power(node)
                case TMul(operands=operands, inverted=inverted):
                    for operand, divides in zip(operands, inverted, strict=True):
                        if divides:
                            self._check_divisor(node, operand)
        overflow = OverflowCheck(self.source, self.roots, self.ranges, self.guarded)
        for node in post_order(self.roots):  # children first: memoised, shallow recursion
            overflow.check(node)
        return self.diagnostics + overflow.diagnostics

    def _check_defined(self, call: TCall, domain: Domain | None) -> None:
        if domain is not None and domain.poles:
            self._check_poles(call, domain)
        elif domain is not None:
            self._check_domain(call, domain)

    def _check_domain(self, call: TCall, rule: Domain) -> None:
        argument = call.args[0]
        values = self.ranges.range_of(argument)
        edge = format_number(rule.edge)
        never_finite = rule.at_edge is not None and (
            values.high < rule.edge or (values.high == rule.edge and values.high_closed)
        )
        if never_finite:
            found, result = self.guarded.find(call, [argument], below(argument, rule.edge)), "NaN"
            if not found.selected:
                found = self.guarded.find(call, [argument], equal(argument, rule.edge))
                result = rule.at_edge or ""
            if found.selected and found.witness is not None:
                self.diagnostics.append(
                    error(
                        NEVER_FINITE,
                        f"`{self.text(call)}` is never finite: `{self.text(argument)}` is at "
                        f"most {edge} for every value ({result} at {found.witness.describe()})",
                        argument.span,
                        f"never above {edge}",
                        "check the sign of the argument",
                    )
                )
                return
        elif values.low < rule.edge:
            found = self.guarded.find(call, [argument], below(argument, rule.edge))
            if found.witness is None:
                self._unproven(call, argument, f"at least {edge}", values)
            elif found.selected:
                self.diagnostics.append(
                    error(
                        LOG_OF_NEGATIVE if rule.at_edge else SQRT_OF_NEGATIVE,
                        f"`{self.text(call)}` is NaN at {found.witness.describe()}",
                        argument.span,
                        f"below {edge} there",
                        rule.help,
                    )
                )
            elif rule.nan_gradient:
                self._unselected_nan(call, argument, found.witness)
            if found.witness is None or found.selected or rule.nan_gradient:
                return
        if values.contains(rule.edge):
            self._at_edge(call, argument, rule)

    def _at_edge(self, call: TCall, argument: TExpr, rule: Domain) -> None:
        shown = self.text(argument)
        witness = self.search.find([argument], equal(argument, rule.edge))
        at = witness.describe() if witness else f"`{shown}` = {format_number(rule.edge)}"
        if rule.at_edge is not None:
            fix = rule.help
            if rule.edge == 0 and self.ranges.range_of(argument).high <= 1:
                fix = (
                    f"use `{call.builtin}(clip({shown}))` (values in [eps, 1 - eps]), or take "
                    "logits as y_pred and use `log_softmax` or `softplus`"
                )
            elif rule.edge == 0:  # clip's 1 - eps would change values above it
                fix = f"use `{call.builtin}(maximum({shown}, eps))` (values of at least eps)"
            self.diagnostics.append(
                warning(
                    INFINITE_AT_ZERO_OR_POLE,
                    f"`{self.text(call)}` is {rule.at_edge} at {at}",
                    argument.span,
                    f"can be {format_number(rule.edge)}",
                    fix,
                )
            )
        elif self.gradients.differentiated(call, argument) and not self._zero_off_the_gradient(
            argument
        ):
            self.diagnostics.append(
                warning(
                    SQRT_GRADIENT_AT_ZERO,
                    f"`{self.text(call)}` has an infinite gradient at {at}",
                    argument.span,
                    "can be 0",
                    f"add a small constant inside: `sqrt({shown} + eps)`",
                )
            )

    def _zero_off_the_gradient(self, argument: TExpr) -> bool:
        """Whether `argument` is a product whose factors on the gradient's path are never
        0: sqrt(y * q) is sqrt(y) sqrt(q), whose gradient in q > 0 is finite where y is 0
        (the Bhattacharyya coefficient of a one-hot y and a softmax)."""
        return isinstance(argument, TMul) and not any(
            self.gradients.flows(factor) and self.ranges.range_of(factor).contains(0.0)
            for factor in argument.operands
        )

    def _check_poles(self, call: TCall, domain: Domain) -> None:
        """W401 where the argument can be at a pole 0, -1, -2, ... (E403 where it always is),
        W402 where the ranges allow one but no witness is found."""
        argument = call.args[0]
        values = self.ranges.range_of(argument)
        if not _reaches_pole(values):
            return
        shown = self.text(argument)
        if values.low == values.high:
            self.diagnostics.append(
                error(
                    NEVER_FINITE,
                    f"`{self.text(call)}` is never finite: `{shown}` is always "
                    f"{format_number(values.low)}, a pole",
                    argument.span,
                    "always a pole",
                    domain.help,
                )
            )
            return
        found = self.guarded.find(call, [argument], at_pole(argument))
        if found.witness is None:
            self.diagnostics.append(
                warning(
                    UNPROVEN_DOMAIN,
                    f"could not prove that `{shown}` avoids the poles 0, -1, -2, ... of "
                    f"`{self.text(call)}`",
                    argument.span,
                    "may be a pole",
                    f"interval arithmetic allows values in {values.describe()}, but no input "
                    "or param values were found where it is at a pole",
                    domain.help,
                )
            )
            return
        branch = "" if found.selected else ", in a `where` branch not selected there"
        self.diagnostics.append(
            warning(
                INFINITE_AT_ZERO_OR_POLE,
                f"`{self.text(call)}` is not finite at {found.witness.describe()}, a pole{branch}",
                argument.span,
                "can be a pole (0, -1, -2, ...)",
                domain.help,
            )
        )

    def _unproven(self, node: TExpr, argument: TExpr, requirement: str, values: Range) -> None:
        self.diagnostics.append(
            warning(
                UNPROVEN_DOMAIN,
                f"could not prove that `{self.text(argument)}` is {requirement} "
                f"in `{self.text(node)}`",
                argument.span,
                f"may be below {requirement.split()[-1]}",
                f"interval arithmetic allows values in {values.describe()}, but no input or "
                "param values were found where it is out of range",
                "if it can never be, write it so that this shows, e.g. with `clip`, `relu` "
                "or `abs`",
            )
        )

    def _unselected_nan(self, node: TExpr, argument: TExpr, witness: Witness) -> None:
        self.diagnostics.append(
            warning(
                UNSELECTED_NAN,
                f"`{self.text(node)}` is NaN at {witness.describe()}, in a `where` branch "
                "that is not selected there; TensorFlow still computes it, and its gradient "
                "there is NaN",
                argument.span,
                "out of range there",
                "guard the argument too, e.g. `sqrt(where(x > 0, x, 1))` inside "
                "`where(x > 0, ..., 0)`",
            )
        )

    def _check_power(self, power: TPow) -> None:
        base = self.ranges.range_of(power.base)
        exponent = self.ranges.range_of(power.exponent)
        if not is_integer_valued(power.exponent) and base.low < 0:
            found = self.guarded.find(power, [power], nan_power(power))
            if found.witness is None:
                self._unproven(power, power.base, "at least 0", base)
            elif found.selected:
                self.diagnostics.append(
                    error(
                        POWER_OF_NEGATIVE,
                        f"`{self.text(power)}` is NaN at {found.witness.describe()}: a "
                        "negative base to a non-integer power",
                        power.base.span,
                        "negative there",
                        "make the base non-negative (e.g. with `abs`, `relu` or `clip`), or "
                        "use an integer exponent",
                    )
                )
            else:
                self._unselected_nan(power, power.base, found.witness)
            return
        if not base.contains(0.0):
            return
        if exponent.low < 0:
            self._negative_power(power)
        elif (
            exponent.low < 1
            and exponent.high > 0
            and not is_integer_valued(power.exponent)
            and self.gradients.differentiated(power, power.base)
        ):
            self._power_gradient(power)

    def _negative_power(self, power: TPow) -> None:
        witness = self.search.find([power.base], equal(power.base, 0.0))
        at = f" (at {witness.describe()})" if witness else ""
        when = (
            ""
            if constant_value(power.exponent) is not None
            else f" when `{self.text(power.exponent)}` < 0"
        )
        self.diagnostics.append(
            warning(
                NEGATIVE_POWER_OF_ZERO,
                f"`{self.text(power)}` is infinite where `{self.text(power.base)}` is 0{at}{when}",
                power.base.span,
                "can be 0",
                _away_from_zero(self.ranges.range_of(power.base), "the base"),
            )
        )

    def _power_gradient(self, power: TPow) -> None:
        witness = self.search.find([power.base], equal(power.base, 0.0))
        at = witness.describe() if witness else f"`{self.text(power.base)}` = 0"
        when = (
            ""
            if constant_value(power.exponent) is not None
            else f" when `{self.text(power.exponent)}` is in (0, 1)"
        )
        help_lines = ["keep the base away from 0, e.g. with `clip`"]
        if isinstance(power.exponent, TParam) and not power.exponent.info.is_vector:
            info = power.exponent.info
            default = info.default if isinstance(info.default, float) else 1.0
            help_lines.insert(
                0,
                f"restrict `{info.name}` to values >= 1, e.g. "
                f"`param {info.name}: [1, inf) = {format_number(max(default, 1.0))}`",
            )
        self.diagnostics.append(
            warning(
                POWER_GRADIENT_AT_ZERO,
                f"`{self.text(power)}` has an infinite gradient at {at}{when}",
                power.base.span,
                "can be 0",
                *help_lines,
            )
        )

    def _check_divisor(self, product: TMul, divisor: TExpr) -> None:
        values = self.ranges.range_of(divisor)
        if not values.contains(0.0):
            return
        shown = f"division by `{self.text(divisor)}`"
        if divisor.span.line != product.span.line:
            shown += f" (in `{self.text(product)}`)"
        if values.low == values.high == 0 and () in self.guarded.guards[id(product)]:
            self.diagnostics.append(
                error(
                    DIVISION_BY_ZERO_EVERYWHERE,
                    f"{shown}, which is 0 everywhere",
                    divisor.span,
                    "always 0",
                    "the result is infinite or NaN for every input",
                )
            )
            return
        witness = self.search.find([divisor], equal(divisor, 0.0))
        at = f"is 0 at {witness.describe()}" if witness else "can be 0"
        self.diagnostics.append(
            warning(
                DIVISION_BY_ZERO,
                f"{shown}, which {at}",
                divisor.span,
                "can be 0",
                _away_from_zero(values, "it"),
            )
        )


def _away_from_zero(values: Range, what: str) -> str:
    """How to keep a value that can be 0 away from it: a small constant added moves a
    value that can be negative no further from 0 (a box's union of `target` corners)."""
    if values.low < 0:
        return (
            f"{what} can also be negative, so a small constant added does not keep it "
            "from 0: use `maximum(..., eps)` where it should be positive, or `clip`"
        )
    return f"keep {what} away from 0, e.g. add a small constant (`... + eps`) or use `clip`"


def post_order(roots: Sequence[TExpr]) -> list[TExpr]:
    """Every node under the roots once, each after all of its children (iteratively)."""
    order: list[TExpr] = []
    seen: set[int] = set()
    stack: list[tuple[TExpr, bool]] = [(root, False) for root in reversed(roots)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(children(node)))
    return order


def gradient_diagnostics(checked: CheckedSpec) -> list[Diagnostic]:
    """E5xx: the result must reach y_pred through something differentiable."""
    paths = GradientPaths(checked.result)
    if paths.flows(checked.result):
        return []
    name = checked.y_pred.name
    if not paths.blockers:
        return [
            error(
                NO_PREDICTION,
                f"the loss does not depend on y_pred `{name}`",
                checked.loss_span,
                f"no gradient path to `{name}`",
                f"use `{name}` (the second input, the model's prediction) in the loss: "
                "its gradient is what trains the model",
            )
        ]
    places = " or ".join(paths.blockers)
    return [
        error(
            NO_GRADIENT_PATH,
            f"the loss has no gradient path to y_pred `{name}`: it occurs only inside {places}",
            checked.loss_span,
            f"gradient with respect to `{name}` is always 0",
            f"use `{name}` outside `stop_gradient`, `class`, comparisons and gather indices "
            "so that a gradient can flow",
        )
    ]


def check_domains(checked: CheckedSpec) -> tuple[Diagnostic, ...]:
    """E4xx/W4xx/E5xx for a checked spec: raises LossSpecError on errors, else warnings."""
    roots = [checked.loss] + ([checked.mask] if checked.mask is not None else [])
    diagnostics = DomainChecker(checked, roots).run() + gradient_diagnostics(checked)
    if any(d.is_error for d in diagnostics):
        raise LossSpecError(diagnostics, checked.source)
    return tuple(diagnostics + sign_diagnostics(checked))
