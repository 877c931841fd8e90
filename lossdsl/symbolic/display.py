"""SymPy expressions of a loss written back in the spec's own vocabulary, for `explain`.

`SpecPrinter` turns the opaque functions of `symbolic.functions` into the built-ins a
user writes (`Clip(p, 1/10000000, 9999999/10000000)` -> `clip(p)`, `Sigmoid(z)` ->
`sigmoid(z)`, `TakeClass(x, y)` -> `x[y]`) and the functions that rewrites and fusions
make into the names their laws use (`SoftplusPair(a, b, x)` -> `softplus_pair(a, b, x)`),
shows `eps` and `1 - eps` by name and other fractions as decimals, names a reduction's
removed roles when they are not the default (`sum[spatial, class](x)`), and spaces binary
operators as the spec does (`a * b`, `(1 - q)^gamma`). The text is for reading: it is not
parsed again. LaTeX is `gradient.latex`'s.
"""

from __future__ import annotations

from collections.abc import Mapping

import sympy
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

from lossdsl.builtins import Trigamma, row_of
from lossdsl.symbolic import functions as fn
from lossdsl.symbolic.gradient import EPS, ROLE_COUNTS
from lossdsl.typed import ROLE_ORDER, Role, Roles

NAMED_NUMBERS: dict[sympy.Expr, str] = {EPS: "eps", 1 - EPS: "1 - eps", -EPS: "-eps"}

MADE_NAMES: dict[type[fn.LossFunction], str] = {
    fn.LogCosh: "logcosh",
    fn.SoftmaxCrossEntropy: "softmax_cross_entropy_with_logits",
    fn.PairDot: "pair_dot",
    fn.PairSquaredDistance: "pair_squared_distance",
    fn.SparseSoftmaxCrossEntropy: "sparse_softmax_cross_entropy_with_logits",
    fn.SoftplusPair: "softplus_pair",
    fn.ClippedLog: "clipped_log",
    fn.ClassesFrom: "classes_from",
    fn.Huber: "huber",
    fn.IntoChannels: "into_channels",
    fn.ClassCount: "class_count",
    Trigamma: "trigamma",
    fn.LogSumExpShift: "log_sum_exp_shift",
    fn.LogOfSum: "log_of_sum",
    fn.ChannelsJoined: "channels_joined",
    fn.Parenthesized: "",
    fn.WherePositive: "where_positive",
    fn.SigmoidGradient: "sigmoid_gradient",
    fn.TanhGradient: "tanh_gradient",
    fn.ChannelSplit: "split",
    fn.ChannelFromSplit: "piece",
    fn.ChannelsFromSplit: "piece",
}
"""Functions no user writes, made by a stable rewrite (`rewrites.py`), a target fusion
(`codegen.fusions`) or a derivative (digamma's, `Trigamma`), by the names their laws
use; every other function is written as the name of its row in `lossdsl.builtins`."""

NAMED_SYMBOLS: dict[sympy.Symbol, str] = {
    ROLE_COUNTS[Role.CLASS]: "num_classes",
    ROLE_COUNTS[Role.SPATIAL]: "num_positions",
    ROLE_COUNTS[Role.BATCH]: "batch_size",
}
"""The sizes a mean divides by: `num_classes` as in the spec, and the gradient's counts."""


class SpecPrinter(StrPrinter):
    """SymPy -> the spec's notation; `roles` gives each input's and param's roles."""

    def __init__(self, roles: Mapping[sympy.Symbol, Roles]) -> None:
        super().__init__({"order": "none"})
        self.symbol_roles = roles

    # ------------------------------------------------------------ numbers and names

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        return NAMED_SYMBOLS.get(expr, expr.name)

    def _print_Rational(self, expr: sympy.Rational) -> str:
        if expr in NAMED_NUMBERS:
            return NAMED_NUMBERS[expr]
        if expr.is_Integer:
            return str(expr)
        return repr(float(expr))

    _print_Half = _print_Rational

    def _print_Float(self, expr: sympy.Float) -> str:
        return repr(float(expr))

    # ------------------------------------------------------------ arithmetic

    def _print_Mul(self, expr: sympy.Mul) -> str:
        coefficient, rest = expr.as_coeff_Mul()
        sign = "-" if coefficient < 0 else ""
        coefficient = abs(coefficient)
        numerator: list[sympy.Expr] = [] if coefficient == 1 else [coefficient]
        denominator: list[sympy.Expr] = []
        for factor in rest.as_ordered_factors():
            if factor.is_Pow and factor.exp.is_Rational and factor.exp.is_negative:
                denominator.append(sympy.Pow(factor.base, -factor.exp))
            else:
                numerator.append(factor)
        factors = (self.parenthesize(f, PRECEDENCE["Mul"], strict=True) for f in numerator)
        text = " * ".join(factors) or "1"
        if denominator:
            below = " * ".join(
                self.parenthesize(f, PRECEDENCE["Mul"], strict=len(denominator) > 1)
                for f in denominator
            )
            text += f" / ({below})" if len(denominator) > 1 else f" / {below}"
        return sign + text

    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:
        base, exponent = expr.args
        if exponent == sympy.S.Half:
            return f"sqrt({self._print(base)})"
        if exponent.is_Rational and exponent.is_negative:
            return f"1 / {self.parenthesize(sympy.Pow(base, -exponent), PRECEDENCE['Mul'])}"
        left = self.parenthesize(base, PRECEDENCE["Pow"])
        return f"{left}^{self.parenthesize(exponent, PRECEDENCE['Pow'])}"

    def _print_Relational(self, expr: sympy.core.relational.Relational) -> str:
        left, right = (self.parenthesize(side, PRECEDENCE["Add"], True) for side in expr.args)
        return f"{left} {expr.rel_op} {right}"

    def _print_And(self, expr: sympy.And) -> str:
        return self._joined(" and ", expr.args, PRECEDENCE["And"])

    def _print_Or(self, expr: sympy.Or) -> str:
        return self._joined(" or ", expr.args, PRECEDENCE["Or"])

    def _joined(self, word: str, args: tuple[sympy.Basic, ...], level: int) -> str:
        ordered = sorted(args, key=sympy.default_sort_key)
        return word.join(self.parenthesize(arg, level) for arg in ordered)

    def _print_Not(self, expr: sympy.Not) -> str:
        return "not " + self.parenthesize(expr.args[0], PRECEDENCE["Relational"], strict=True)

    # ------------------------------------------------------------ the loss vocabulary

    def _print(self, expr: sympy.Basic, **kwargs: object) -> str:
        """A built-in's function is written as its row's name (StrPrinter has its own
        methods for some, `Abs`), unless this printer has a method for it."""
        method = f"_print_{type(expr).__name__}"
        if method not in vars(SpecPrinter) and row_of(type(expr)) is not None:
            return self._print_Function(expr)
        return str(super()._print(expr, **kwargs))

    def _print_Function(self, expr: sympy.Function) -> str:
        row = row_of(type(expr))
        name = row.name if row else MADE_NAMES.get(type(expr), type(expr).__name__)
        return f"{name}({', '.join(self._print(arg) for arg in expr.args)})"

    def _print_Clip(self, expr: fn.Clip) -> str:
        x, low, high = expr.args
        if (low, high) == (EPS, 1 - EPS):
            return f"clip({self._print(x)})"
        return self._print_Function(expr)

    def _print_SparseSoftmaxCrossEntropy(self, expr: fn.SparseSoftmaxCrossEntropy) -> str:
        """Labels first, as its law and TensorFlow's op write it."""
        logits, labels = (self._print(arg) for arg in expr.args)
        return f"{MADE_NAMES[type(expr)]}({labels}, {logits})"

    def _print_InverseCount(self, expr: fn.InverseCount) -> str:
        roles = ", ".join(role.value for role in ROLE_ORDER if role in expr.removed_roles)
        return f"1 / count[{roles}]"

    def _print_Gather(self, expr: fn.Gather) -> str:
        vector, index = expr.args
        return f"{self.parenthesize(vector, PRECEDENCE['Func'], True)}[{self._print(index)}]"

    def _print_TakeClass(self, expr: fn.TakeClass) -> str:
        x, label = expr.args
        return f"{self.parenthesize(x, PRECEDENCE['Func'], True)}[{self._print(label)}]"

    def _print_Channel(self, expr: fn.Channel) -> str:
        x, index = expr.args
        return f"{self.parenthesize(x, PRECEDENCE['Func'], True)}[{index}]"

    def _print_Channels(self, expr: fn.Channels) -> str:
        x, start, stop = expr.args
        bounds = f"{start if start else ''}:{'' if stop is sympy.oo else stop}"
        return f"{self.parenthesize(x, PRECEDENCE['Func'], True)}[{bounds}]"

    def _print_Reduction(self, expr: fn.Reduction) -> str:
        body = expr.args[0]
        if isinstance(expr, fn.ReduceSum) and body == 1:  # the backward pass's counts
            roles = ", ".join(role.value for role in ROLE_ORDER if role in expr.removed_roles)
            return f"count[{roles}]"
        row = row_of(type(expr))
        name = row.name if row is not None else MADE_NAMES[type(expr)]
        body_roles = fn.roles_of(body, self.symbol_roles)
        removed = expr.removed_roles
        default = [role for role in ROLE_ORDER if role in body_roles][-1:]
        if set(default) != removed:
            name += "[" + ", ".join(role.value for role in ROLE_ORDER if role in removed) + "]"
        return f"{name}({self._print(body)})"

    _print_ReduceSum = _print_Reduction
    _print_ReduceMean = _print_Reduction
    _print_ReduceMax = _print_Reduction
    _print_ReduceMin = _print_Reduction
    _print_LogSumExp = _print_Reduction


def spec_text(expr: sympy.Basic, roles: Mapping[sympy.Symbol, Roles]) -> str:
    """`expr` in the spec's notation."""
    return str(SpecPrinter(roles).doprint(expr))
