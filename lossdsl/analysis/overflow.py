"""E407 and W408: values beyond the float range of float64 and of float32."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mpmath
import numpy as np

from lossdsl.analysis.evaluate import Evaluator, is_channel_leaf
from lossdsl.analysis.intervals import Array
from lossdsl.analysis.paths import GuardedSearch
from lossdsl.analysis.ranges import RangeAnalysis, constant_value
from lossdsl.analysis.report import format_number, source_text
from lossdsl.analysis.witness import Condition, WitnessSearch, param_values
from lossdsl.builtins import BUILTINS
from lossdsl.codes import (
    CONSTANT_OVERFLOW,
    FLOAT32_OVERFLOW,
)
from lossdsl.diagnostics import Diagnostic, error, warning
from lossdsl.source import SourceFile
from lossdsl.symbolic import numeric
from lossdsl.typed import (
    TAdd,
    TCall,
    TCompare,
    TExpr,
    TInput,
    TLogic,
    TMul,
    TNeg,
    TNumClasses,
    TParam,
    TPow,
    TSampleIndex,
    children,
    walk,
)

FLOAT64_MAX = float(np.finfo(np.float64).max)
FLOAT32_MAX = float(np.finfo(np.float32).max)
"""The largest finite values of the dtype the checks reason in and the one the loss runs in
(float32: Keras's `floatx()`, also under the mixed-precision policies)."""

EXACT_MAGNITUDE_LIMIT = 2**20
"""Constants above 2^(2^20) in magnitude are not computed further (`2^2^1e5` would take
memory without end); they are reported as too large."""

SMALLEST_EXACT_MAGNITUDE = 2**16
"""Constants below 2^-(2^16) in magnitude (0 aside) are reported as too small (E407): SymPy
folds constants exactly, and one with a denominator of millions of bits took minutes in
each later step (`0.5^(1 / eps)`, 2^-10000000); every float holds them as 0."""

SMALLEST_FACTOR = mpmath.mpf(2) ** -1074 / FLOAT64_MAX
"""A constant factor smaller than this in magnitude makes its product 0 in float64
whatever the other factors hold: the smallest subnormal over the largest value."""

OVERFLOW_INPUT_LIMIT = 2.0
"""The overflow search takes inputs of at most this size: inputs of unbounded kinds make
`exp`, `cosh` or a power overflow when large enough whatever the spec (the model's range,
as with Keras's built-ins); params take every value their domains allow."""


class OverflowCheck:
    """E407 and W408: values beyond the float range of float64 and of float32.

    A constant (a sub-expression without input, param or `num_classes`) is evaluated
    exactly with mpmath and judged as the generated code holds it: SymPy folds each
    largest constant sub-expression into one number, and combines the constant factors of
    a product (terms of a sum) into one, so those are what is judged. Beyond float64's
    largest value it is E407 (the code would compute with inf for every input); beyond
    float32's W408 (inf for a loss computing in float32). Sub-expressions of scalar params
    and constants ("fixed": the same for every input) are judged likewise with the params
    at their defaults. A param whose default or domain allows a value beyond float32's
    range is W408. Any other sub-expression whose range reaches
    beyond float32's largest value is searched for a witness where it exceeds it while its
    arguments do not (where the overflow happens), with inputs of moderate size
    (`OVERFLOW_INPUT_LIMIT`): W408 names that witness. Float16 is not checked: under
    Keras's mixed-precision policies a loss computes in float32 (docs/LANGUAGE_NOTES.md).
    """

    def __init__(
        self,
        source: SourceFile,
        roots: Sequence[TExpr],
        ranges: RangeAnalysis,
        guarded: GuardedSearch,
    ) -> None:
        self.source = source
        self.roots = roots
        self.ranges = ranges
        self.guarded = guarded
        self.diagnostics: list[Diagnostic] = []
        self._under_log = _under_log(roots)
        self._search = WitnessSearch(input_limit=OVERFLOW_INPUT_LIMIT)
        self._searched_ranges = RangeAnalysis(input_limit=OVERFLOW_INPUT_LIMIT)
        self._constant: dict[int, bool] = {}
        self._fixed: dict[int, bool] = {}
        self._exact: dict[int, mpmath.mpf | None] = {}
        self._huge: set[int] = set()
        self._judged: set[int] = set()
        self._params_seen: set[str] = set()

    def check(self, node: TExpr) -> None:
        if isinstance(node, TCompare | TLogic | TInput) or is_channel_leaf(node):
            return
        if isinstance(node, TParam):
            self._check_param(node)
            return
        fixed = self.is_fixed(node)
        if fixed:
            self.exact(node)  # in post order, so its arguments' values are known
        if fixed and any(node is root for root in self.roots):
            self._judge(node, [node], [False], factor=False)
        if fixed and not self.is_constant(node):
            self._check_range(node)  # params take every value of their domains
        if fixed:
            return
        operands = children(node)
        combined = [self.is_fixed(operand) for operand in operands]
        if isinstance(node, TAdd | TMul) and sum(combined) >= 2:
            inverse = node.inverted if isinstance(node, TMul) else node.negated
            parts = [(op, inv) for op, inv, c in zip(operands, inverse, combined, strict=True) if c]
            factor = isinstance(node, TMul)
            self._judge(node, [op for op, _ in parts], [inv for _, inv in parts], factor)
        else:
            inverted = node.inverted if isinstance(node, TMul) else [False] * len(operands)
            for operand, is_constant, divides in zip(operands, combined, inverted, strict=True):
                if is_constant:
                    factor = isinstance(node, TMul) and not divides
                    self._judge(operand, [operand], [False], factor)
        self._check_range(node)

    def is_constant(self, node: TExpr) -> bool:
        """Whether `node` reads no input, param, `num_classes` or `sample_index`."""
        known = self._constant.get(id(node))
        if known is None:
            known = not isinstance(node, TInput | TParam | TNumClasses | TSampleIndex) and all(
                self.is_constant(child) for child in children(node)
            )
            self._constant[id(node)] = known
        return known

    def is_fixed(self, node: TExpr) -> bool:
        """Whether `node` reads no input, `num_classes` or `sample_index` (scalar params
        allowed): the same
        for every input once the params are given."""
        known = self._fixed.get(id(node))
        if known is None:
            if isinstance(node, TParam):
                known = not node.info.is_vector
            else:
                known = not isinstance(node, TInput | TNumClasses | TSampleIndex) and all(
                    self.is_fixed(child) for child in children(node)
                )
            self._fixed[id(node)] = known
        return known

    def exact(self, node: TExpr) -> mpmath.mpf | None:
        """A fixed node's exact value, params at their defaults; None where it is not
        finite (a pole, NaN: other checks report those) or too large to compute (then the
        node is in `_huge`)."""
        if id(node) in self._exact:
            return self._exact[id(node)]
        if isinstance(node, TParam) and isinstance(node.info.default, float):
            self._exact[id(node)] = mpmath.mpf(node.info.default)
            return self._exact[id(node)]
        arguments = [(child, self.exact(child)) for child in children(node)]
        value: mpmath.mpf | None = None
        if any(id(child) in self._huge for child, _ in arguments):
            self._huge.add(id(node))
        elif all(known is not None for _, known in arguments):
            evaluator = Evaluator(numeric.EXACT, {})
            for child, known in arguments:
                evaluator.assume(child, known)
            try:
                with mpmath.workdps(40):
                    value = mpmath.mpf(np.asarray(evaluator.value(node)).flat[0])
            except (ZeroDivisionError, ValueError, OverflowError, TypeError):
                value = None
            if value is not None and not mpmath.isfinite(value):
                value = None
            elif value is not None and mpmath.mag(value) > EXACT_MAGNITUDE_LIMIT:
                self._huge.add(id(node))
                value = None
        self._exact[id(node)] = value
        return value

    def _judge(
        self, node: TExpr, constants: Sequence[TExpr], inverse: Sequence[bool], factor: bool
    ) -> None:
        """Report the value of `constants` combined into one number (a product's factors
        when `node` is a product, else a sum's terms) as `node`'s generated code holds it;
        a `factor` multiplies values that read inputs."""
        if id(node) in self._judged or isinstance(node, TParam):
            return  # a param on its own: `_check_param` covers its default and domain
        self._judged.add(id(node))
        values = [self.exact(constant) for constant in constants]
        what = "its constant parts" if len(constants) > 1 else ""
        if not all(self.is_constant(constant) for constant in constants):
            what = " ".join([what, "with the params at their defaults"]).strip()
        if any(id(constant) in self._huge for constant in constants):
            self._report_float64(node, "too large to compute", what)
            return
        known = [value for value in values if value is not None]
        if len(known) < len(values):
            return
        with mpmath.workdps(40):
            if isinstance(node, TMul) and len(constants) > 1:
                combined = mpmath.mpf(1)
                for value, divides in zip(known, inverse, strict=True):
                    if divides and value == 0:
                        return  # a division by 0 (E406/W403)
                    combined = combined / value if divides else combined * value
            else:
                combined = mpmath.fsum(
                    -value if minus else value for value, minus in zip(known, inverse, strict=True)
                )
        if not _within(combined, FLOAT64_MAX):
            self._report_float64(node, _scientific(combined), what)
        elif factor and combined != 0 and abs(combined) < SMALLEST_FACTOR:
            self._report_tiny(node, _tiny(combined), what, factor=True)
        elif combined != 0 and mpmath.mag(combined) < -SMALLEST_EXACT_MAGNITUDE:
            self._report_tiny(node, _tiny(combined), what, factor=False)
        elif not _within(combined, FLOAT32_MAX):
            shown = f" ({what})" if what else ""
            self._report_float32(node, f"{shown} is {_scientific(combined)}")

    def _check_param(self, param: TParam) -> None:
        info = param.info
        if info.name in self._params_seen:
            return
        self._params_seen.add(info.name)
        defaults = info.default if isinstance(info.default, tuple) else (info.default,)
        values = [*defaults, *param_values(info.domain)]
        beyond = [v for v in values if not _within(v, FLOAT32_MAX)]
        if beyond:
            self._report_float32(
                param,
                f" can be {format_number(beyond[0])} (its default or domain allows it)",
                f"restrict `{info.name}`'s domain to values within +-3.4e38",
            )

    def _check_range(self, node: TExpr) -> None:
        if id(node) in self._under_log:
            return
        # over the inputs the search takes: most nodes of unbounded inputs stay within
        values = self._searched_ranges.range_of(node)
        if _within(values.low, FLOAT32_MAX) and _within(values.high, FLOAT32_MAX):
            return
        found = self.guarded.find(node, [node], self._exceeds(node), self._search)
        if found.witness is not None:
            self._report_float32(node, f" exceeds it at {found.witness.describe()}")

    def _exceeds(self, node: TExpr) -> Condition:
        """Where `node` is beyond float32's range and its arguments are not; an infinite
        value counts only where `node` has no pole (else it is a division by 0, a log of
        0..., which other checks report)."""
        pole_free = _pole_free(node, self.ranges)
        arguments = children(node)

        def condition(value: Callable[[TExpr], Array]) -> Array:
            magnitude = np.abs(value(node).astype(float))
            found = (magnitude > FLOAT32_MAX) & ~np.isnan(magnitude)
            if not pole_free:
                found = found & np.isfinite(magnitude)
            for argument in arguments:
                small = np.abs(value(argument).astype(float)) <= FLOAT32_MAX
                reduced = tuple(
                    axis
                    for axis in range(1, small.ndim)
                    if found.shape[axis] == 1 and small.shape[axis] > 1
                )  # every element a reduction combines
                found = found & np.all(small, axis=reduced, keepdims=True)
            return found

        return condition

    def _subject(self, node: TExpr, what: str) -> str:
        """A judged constant as a diagnostic names it: its text, and what was combined."""
        return f"`{source_text(self.source, node.span)}`" + (f" ({what})" if what else "")

    def _report_float64(self, node: TExpr, value: str, what: str = "") -> None:
        subject = self._subject(node, what)
        self.diagnostics.append(
            error(
                CONSTANT_OVERFLOW,
                f"{subject} is {value}, beyond the largest float64 value (1.8e308): a float "
                "holds it as inf, so the loss differs from the spec for every input",
                node.span,
                "too large for any float",
                "use a smaller constant, or write the formula so that the large factors "
                "cancel before they are computed",
            )
        )

    def _report_tiny(self, node: TExpr, value: str, what: str, factor: bool) -> None:
        """E407 for a constant too small for floats: a factor whose product is 0 in
        float64 whatever it multiplies, or one too small to compute exactly anywhere."""
        subject = self._subject(node, what)
        if factor:
            message = (
                f"{subject} is {value}, so small that its product with any float64 value "
                "is 0: the loss differs from the spec for every input"
            )
            label = "too small for any float"
            hint = (
                "use a larger constant, or write the formula so that the small factors "
                "cancel before they are computed"
            )
        else:
            message = (
                f"{subject} is {value}, too small to compute exactly (below 2^-65536), "
                "and every float holds it as 0"
            )
            label = "too small to compute"
            hint = "write 0, or a constant within float64's range (at least 4.9e-324)"
        self.diagnostics.append(error(CONSTANT_OVERFLOW, message, node.span, label, hint))

    def _report_float32(self, node: TExpr, what: str, *help_lines: str) -> None:
        self.diagnostics.append(
            warning(
                FLOAT32_OVERFLOW,
                f"`{source_text(self.source, node.span)}`{what}, beyond the largest float32 value "
                "(3.4e38): a loss computing in float32 (Keras's default) gets inf there",
                node.span,
                "too large for float32",
                *help_lines,
                "keep it below 3.4e38 for every value the kinds and domains allow (e.g. with "
                '`clip` or `minimum`), or construct the loss with `dtype="float64"`',
            )
        )


def _under_log(roots: Sequence[TExpr]) -> set[int]:
    """Nodes whose value only a `log` takes, directly, as a term of a sum or as a factor
    (or a factor's term) of a product: the stable rewrites compute `log(cosh(x))`,
    `log(sum(exp(x)))`, `log(exp(x))` and the log of a product of positive factors
    (InfoNCE's `log(sum(exp(s), where=...) / sum(exp(s)))`) without forming the value, so
    its overflow is not the loss's."""
    found: set[int] = set()
    for node in walk(roots):
        if isinstance(node, TCall) and node.builtin in ("log", "log1p"):
            (argument,) = node.args
            factors = argument.operands if isinstance(argument, TMul) else (argument,)
            for factor in (argument, *factors):
                found.add(id(factor))
                if isinstance(factor, TAdd) or (
                    isinstance(factor, TCall) and factor.builtin in ("sum", "logsumexp")
                ):
                    found.update(id(term) for term in map(_unmasked, children(factor)))
    return found


def _unmasked(term: TExpr) -> TExpr:
    """The value a masked term `where(mask, x, 0)` (a sum's `where=`) takes where it counts."""
    if isinstance(term, TCall) and term.builtin == "where" and constant_value(term.args[2]) == 0:
        return term.args[1]
    return term


def _within(value: float | mpmath.mpf, limit: float) -> bool:
    return bool(abs(value) <= limit)


def _scientific(value: mpmath.mpf) -> str:
    return str(mpmath.nstr(value, 2, min_fixed=0, max_fixed=0)).replace("e+", "e")


def _tiny(value: mpmath.mpf) -> str:
    """A value below float64's range as the diagnostic shows it: in scientific notation,
    or below 2^-(2^32) as that bound (`exp(-1e300)`'s exponent alone has 300 digits)."""
    if mpmath.mag(value) < -(2**32):
        return f"below 2^-{2**32}"
    return _scientific(value)


def _pole_free(node: TExpr, ranges: RangeAnalysis) -> bool:
    """Whether `node` is infinite only where an argument is or where it overflows."""
    match node:
        case TAdd() | TNeg():
            return True
        case TMul(inverted=inverted):
            return not any(inverted)
        case TPow(exponent=exponent):
            return ranges.range_of(exponent).low >= 0
        case TCall(builtin=builtin):
            return BUILTINS[builtin].pole_free
    return False
