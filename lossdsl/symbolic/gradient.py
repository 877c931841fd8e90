"""The per-element gradient of a loss for `lossdsl explain`, and LaTeX with readable names.

`element_gradient(result, p)` is d result / d p at one element of y_pred: a reduction
contributes its body's derivative (a mean divided by its count: C, S spatial positions
or B samples; a max or min its selected elements'; a logsumexp its body's, weighed by
softmax), softmax and log_softmax summed over the class axis contribute their
Jacobian-vector forms, class ids and gathers (integer-indexed, constant almost
everywhere) contribute 0, and what has no per-element form stays a `sympy.Derivative`:
cumsum, and `other(x)`, another sample's value, whose part of the gradient is that
sample's.
The verifier checks the generated code's gradient on concrete tensors; this formula is
for reading.
"""

from __future__ import annotations

import sympy
from sympy.printing.latex import LatexPrinter

from lossdsl.builtins import EPSILON, row_of
from lossdsl.codes import PREDICTION_CANCELS
from lossdsl.diagnostics import Diagnostic, error
from lossdsl.symbolic import functions as fn
from lossdsl.typed import CheckedSpec, Role, Roles

EPS = sympy.Rational(repr(EPSILON))
"""`eps` as lowering writes it, an exact rational (LaTeX shows it as epsilon)."""

BATCH_SIZE = sympy.Symbol("B", integer=True, positive=True)

ROLE_COUNTS: dict[Role, sympy.Symbol] = {
    Role.BATCH: BATCH_SIZE,
    Role.PARTNER: BATCH_SIZE,
    Role.PARTNER2: BATCH_SIZE,
    Role.SPATIAL: sympy.Symbol("S", integer=True, positive=True),
    Role.CLASS: fn.NUM_CLASSES,
}
"""How many values a reduction over each role combines (a partner role: every sample)."""

_NONLOCAL = (
    fn.Other,
    fn.Reduction,
    fn.TakeClass,
    fn.Softmax,
    fn.LogSoftmax,
    fn.CumSum,
    fn.Gather,
    fn.ClassId,
    fn.Channel,
    fn.Channels,
)


def element_gradient(expr: sympy.Basic, y_pred: sympy.Symbol) -> sympy.Expr:
    """d expr / d y_pred at one element of y_pred."""
    return _Gradient(y_pred).of(expr)


def role_count(roles: Roles) -> sympy.Expr:
    """The number of values a reduction over `roles` combines."""
    return sympy.Mul(*(ROLE_COUNTS[role] for role in roles))


class _Gradient:
    def __init__(self, y_pred: sympy.Symbol) -> None:
        self.y_pred = y_pred

    def of(self, expr: sympy.Basic) -> sympy.Expr:
        if not expr.has(self.y_pred):
            return sympy.S.Zero
        match expr:
            case fn.TakeClass(args=(x, label)):
                return self.of(fn.ReduceSum(fn.OneHot(label) * x, fn.CLASS_MASK))
            case fn.Channel(args=(x, index)):  # x[k]: x's class k, k < 0 from the end
                klass = index if index >= 0 else fn.NUM_CLASSES + index
                return self.of(fn.ReduceSum(fn.OneHot(klass) * x, fn.CLASS_MASK))
            case fn.ReduceMean(args=(body, removed)):
                total = self.of(fn.ReduceSum(body, removed))
                return total / role_count(fn.decode_roles(removed))
            case fn.ReduceSum(args=(body, removed)):
                return self.summed(body, Role.CLASS in fn.decode_roles(removed))
            case fn.LogSumExp(args=(body, removed)):
                weight = _Held(sympy.exp(body - expr))
                return self.of(fn.ReduceSum(weight * body, removed)).replace(_Held, _unheld)
            case fn.ReduceMax(args=(body, removed)) | fn.ReduceMin(args=(body, removed)):
                selected = fn.Where(sympy.Eq(body, expr, evaluate=False), body, 0)
                return self.of(fn.ReduceSum(selected, removed))
            case fn.Gather() | fn.ClassId():
                return sympy.S.Zero
            case fn.Softmax() | fn.LogSoftmax() | fn.CumSum() | fn.Other() | fn.Channels():
                return sympy.Derivative(expr, self.y_pred, evaluate=False)
        return self.summed(expr, over_classes=False)

    def summed(self, body: sympy.Basic, over_classes: bool) -> sympy.Expr:
        """The derivative of `body` (summed over the classes when `over_classes`)."""
        inner = _maximal_nonlocal(body, self.y_pred)
        # real, as every value of a loss is: abs and sign differentiate as they do on reals
        dummies = {node: sympy.Dummy(f"u{i}", real=True) for i, node in enumerate(inner)}
        local = body.xreplace(dummies)
        total = local.diff(self.y_pred)
        for node, dummy in dummies.items():
            outer = local.diff(dummy)
            total += self.through(node, outer, over_classes)
        return total.xreplace({dummy: node for node, dummy in dummies.items()})

    def through(self, node: sympy.Basic, outer: sympy.Expr, over_classes: bool) -> sympy.Expr:
        """The chain rule through a non-elementwise `node` with outer derivative `outer`."""
        match node:
            case fn.Softmax(args=(z,)) if over_classes:
                spread = outer - _class_sum(outer * node)
                return node * spread * self.of(z)
            case fn.LogSoftmax(args=(z,)) if over_classes:
                spread = outer - fn.Softmax(z) * _class_sum(outer)
                return spread * self.of(z)
        return outer * self.of(node) if outer != 0 else sympy.S.Zero


def _class_sum(x: sympy.Expr) -> sympy.Expr:
    """The sum of `x` over the classes (C times a number)."""
    return x * fn.NUM_CLASSES if x.is_number else fn.ReduceSum(x, fn.CLASS_MASK)


class _Held(fn.StopGradient):
    """A factor held constant while differentiating (a logsumexp's softmax weight)."""


def _unheld(x: sympy.Expr) -> sympy.Expr:
    return x


def _maximal_nonlocal(expr: sympy.Basic, y_pred: sympy.Symbol) -> list[sympy.Basic]:
    """The outermost non-elementwise sub-expressions that depend on y_pred, in order."""
    if isinstance(expr, _NONLOCAL):
        return [expr] if expr.has(y_pred) else []
    found: list[sympy.Basic] = []
    for arg in expr.args:
        found.extend(node for node in _maximal_nonlocal(arg, y_pred) if node not in found)
    return found


def cancellation_diagnostics(
    checked: CheckedSpec, result: sympy.Expr, y_pred: sympy.Symbol
) -> tuple[Diagnostic, ...]:
    """E503 when y_pred cancels: the written loss reaches y_pred through something
    differentiable (the domain checks' E501/E502 pass), but the simplified `result` no
    longer contains it (`mean(p - p)`), so its gradient is identically 0."""
    if result.has(y_pred):
        return ()
    name = checked.y_pred.name
    return (
        error(
            PREDICTION_CANCELS,
            f"the loss does not depend on y_pred `{name}` once simplified: its terms in "
            f"`{name}` cancel",
            checked.loss_span,
            f"gradient with respect to `{name}` is always 0",
            f"check the signs of the terms in `{name}`: its gradient is what trains the model",
        ),
    )


# ---------------------------------------------------------------- LaTeX

ROLE_INDICES: dict[Role, str] = {
    Role.BATCH: "b",
    Role.PARTNER: "j",
    Role.PARTNER2: "k",
    Role.SPATIAL: "s",
    Role.CLASS: "c",
}

REWRITE_OPERATORS: dict[str, str] = {
    "LogCosh": r"\operatorname{logcosh}",
    "Trigamma": r"\psi_1",
}
"""LaTeX of the functions made by a rewrite or a derivative (digamma's, trigamma); every
other function's is its row's `latex`."""


class LossLatexPrinter(LatexPrinter):
    """LaTeX with the loss vocabulary's names: sigma, softplus, sums over c (class)..."""

    def _print_Rational(self, expr: sympy.Rational) -> str:
        named = {EPS: r"\epsilon", 1 - EPS: r"1 - \epsilon"}
        return named[expr] if expr in named else str(super()._print_Rational(expr))

    def _print_Clip(self, expr: sympy.Basic, exp: str | None = None) -> str:
        x, low, high = expr.args
        if (low, high) != (EPS, 1 - EPS):
            return self._print_Function(expr, exp)
        call = rf"\operatorname{{clip}}\left({self._print(x)}\right)"
        return rf"{call}^{{{exp}}}" if exp else call

    def _print_Function(self, expr: sympy.Basic, exp: str | None = None) -> str:
        row = row_of(type(expr))
        operator = row.latex if row else REWRITE_OPERATORS.get(type(expr).__name__)
        if operator is not None and isinstance(expr, fn.Reduction):
            return self._reduction(expr, operator, exp)
        if operator is not None:
            args = ", ".join(self._print(arg) for arg in expr.args)
            call = rf"{operator}\left({args}\right)"
            return rf"{call}^{{{exp}}}" if exp else call
        return super()._print_Function(expr, exp)

    def _reduction(self, expr: sympy.Basic, operator: str, exp: str | None) -> str:
        body, removed = expr.args
        indices = ",".join(
            ROLE_INDICES[r]
            for r in (Role.BATCH, Role.SPATIAL, Role.CLASS)
            if r in fn.decode_roles(removed)
        )
        call = rf"{operator}_{{{indices}}}\left({self._print(body)}\right)"
        return rf"\left({call}\right)^{{{exp}}}" if exp else call

    def _print_Where(self, expr: sympy.Basic, exp: str | None = None) -> str:
        condition, a, b = (self._print(arg) for arg in expr.args)
        cases = (
            rf"\begin{{cases}} {a} & \text{{if}}\: {condition} \\ "
            rf"{b} & \text{{otherwise}} \end{{cases}}"
        )
        return rf"\left({cases}\right)^{{{exp}}}" if exp else cases

    def _print_Gather(self, expr: sympy.Basic, exp: str | None = None) -> str:
        vector, index = (self._print(arg) for arg in expr.args)
        gathered = rf"{{{vector}}}_{{{index}}}"
        return rf"\left({gathered}\right)^{{{exp}}}" if exp else gathered

    def _print_Channel(self, expr: sympy.Basic, exp: str | None = None) -> str:
        x, index = expr.args
        selected = rf"{{{self._print(x)}}}_{{[{index}]}}"
        return rf"\left({selected}\right)^{{{exp}}}" if exp else selected

    def _print_Channels(self, expr: sympy.Basic, exp: str | None = None) -> str:
        x, start, stop = expr.args
        bounds = f"{start if start else ''}:{'' if stop is sympy.oo else stop}"
        selected = rf"{{{self._print(x)}}}_{{[{bounds}]}}"
        return rf"\left({selected}\right)^{{{exp}}}" if exp else selected

    def _print_TakeClass(self, expr: sympy.Basic, exp: str | None = None) -> str:
        x, label = (self._print(arg) for arg in expr.args)
        taken = rf"\left[{x}\right]_{{c = {label}}}"
        return rf"\left({taken}\right)^{{{exp}}}" if exp else taken


def latex(expr: sympy.Basic) -> str:
    """`expr` as LaTeX, the loss functions under their usual names."""
    return LossLatexPrinter().doprint(expr)
