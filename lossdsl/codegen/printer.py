"""The TensorFlow printer: a `SymbolicLoss` to the statements of a per-sample function.

Conventions of the printed code (the writer's prelude binds the names it uses):

- Every tensor stays at y_pred's rank ("keepdims form", docs/ARCHITECTURE.md): values
  with fewer roles broadcast. Reductions use `keepdims=True` over class (axis -1),
  spatial (`spatial_axes`, a local bound once when used) and batch (axis 0). A
  reduction over a role its operand lacks counts the broadcast copies (a sum over the
  classes of a per-sample value is C times it), as the SymPy meaning says.
- Numbers are Python literals (floats, or ints where an integer is compared with a
  label), so they adopt y_pred's dtype; constant sub-expressions such as log(2) are
  folded. A TensorFlow function applied to a value without roles gets it in y_pred's
  dtype, since ops on Python floats would give float32: `tf.constant(number, p.dtype)`,
  a scalar param through `tf.convert_to_tensor(..., dtype_hint=p.dtype)` and `tf.cast`
  (tf.cast alone converts a Python float to float32 first: 0.1 inexact, 1e300 an error).
- `num_classes` is a local, `tf.cast(tf.shape(p)[-1], p.dtype)`. Labels are int32 in
  `[B, S..., 1]`; a label outside [0, C) selects nothing: `OneHot` gives zeros,
  `Gather` and `TakeClass` give 0 (a class gather is `tf.gather(..., batch_dims=rank - 1)`,
  whose gradient XLA compiles).
- Sums, means and logsumexps of float16 and bfloat16 values are accumulated in float32
  (the local `sum_dtype`) and cast back, as Keras's `ops.mean` does.
- Cross-entropies TensorFlow has a fused op for are printed with it, softplus pairs
  (binary cross-entropy on logits), the log of a clip and the Huber loss with a helper
  of the module's own (`FUSED_FORMS`). A clip between numbers is the helper `_clip`,
  whose gradient takes one select.
- A branch of a where, minimum, maximum or clip that can be non-finite reads y_pred
  through a select on the same condition, a stop_gradient copy where it is not taken
  (`untaken_branches_guarded`), so that its 0 * inf is no NaN in the gradient.
- A sum or product of more than `MAX_CHAIN` operands is computed in groups, each a
  temporary, so that no statement is long or deep.
- Shared sub-expressions are computed once: `sympy.cse` temporaries `t0, t1, ...`
  (reserved by `codegen.names`), numbered in the order the statements run.
- The result is squeezed to Keras's shape: [batch, spatial] -> `[B, S...]`,
  [batch] -> `[B]`, scalar -> `[]`; the mask likewise.
- The text is laid out as black and ruff format it (`lay_out`): spaced operators, lines
  of at most 88 columns, long calls split inside their parentheses, long sums and
  products shortened by more temporaries (a reduction's result gets its own).

Writing the module around the statements is `codegen.writer`'s job.
"""

from __future__ import annotations

import ast
import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import replace as replace_field

import sympy
from sympy.codegen.cfunctions import expm1, log1p
from sympy.logic.boolalg import Boolean
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.pycode import PythonCodePrinter

from lossdsl.codegen.body import FunctionBody
from lossdsl.codegen.helpers import (
    CLASS_OF,
    CLIP,
    CLIPPED_LOG,
    HELPERS,
    HUBER,
    LOG1P,
    MEAN_OVER_CLASSES,
    SOFTMAX_CROSS_ENTROPY,
    SOFTPLUS_PAIR,
    SOFTPLUS_PAIR_SAME_SHAPE,
    SUM_OVER_CLASSES,
    helper_dependencies,
)
from lossdsl.codegen.names import python_names
from lossdsl.symbolic import functions as fn
from lossdsl.symbolic.loss import SymbolicLoss
from lossdsl.typed import ALL_ROLES, NO_ROLES, PER_ELEMENT, PER_SAMPLE, ROLE_ORDER, Role, Roles

ELEMENTWISE_OPS: dict[type, str] = {
    sympy.exp: "tf.math.exp",
    sympy.log: "tf.math.log",
    log1p: "tf.math.log1p",
    expm1: "tf.math.expm1",
    sympy.Abs: "tf.math.abs",
    sympy.tanh: "tf.math.tanh",
    sympy.cosh: "tf.math.cosh",
    fn.Sigmoid: "tf.math.sigmoid",
    fn.Softplus: "tf.math.softplus",
    fn.Relu: "tf.nn.relu",
    fn.StopGradient: "tf.stop_gradient",
    fn.Minimum: "tf.math.minimum",
    fn.Maximum: "tf.math.maximum",
}
"""SymPy functions printed as one TensorFlow call with the same arguments."""

REDUCTION_OPS: dict[type, str] = {
    fn.ReduceSum: "tf.math.reduce_sum",
    fn.ReduceMean: "tf.math.reduce_mean",
    fn.ReduceMax: "tf.math.reduce_max",
    fn.ReduceMin: "tf.math.reduce_min",
    fn.LogSumExp: "tf.math.reduce_logsumexp",
}

CLASS_REDUCTION_HELPERS: dict[type, str] = {
    fn.ReduceSum: SUM_OVER_CLASSES,
    fn.ReduceMean: MEAN_OVER_CLASSES,
}
"""How a module compiled with XLA sums and averages over the classes alone."""

RELATION_OPS: dict[str, str] = {
    "<": "tf.math.less",
    "<=": "tf.math.less_equal",
    ">": "tf.math.greater",
    ">=": "tf.math.greater_equal",
    "==": "tf.math.equal",
    "!=": "tf.math.not_equal",
}

MAX_CHAIN = 8
"""The most operands of one printed `+` or `*` chain. A longer sum or product is
computed in groups of at most this many, each group a temporary (groups of groups, and
so on), so that every statement stays short and shallow however many terms a spec has
(Python parses `a + b + c` into a left-deep tree, which recursive passes cannot take
for thousands of terms)."""

ACCUMULATING_REDUCTIONS: tuple[type[fn.Reduction], ...] = (
    fn.ReduceSum,
    fn.ReduceMean,
    fn.LogSumExp,
)
"""Reductions that add up their operand: float16 and bfloat16 values are added in float32
(`SUM_DTYPE_LOCAL`) and the result cast back, as Keras's `ops.mean` does."""

NUM_CLASSES_LOCAL = "num_classes"
SPATIAL_AXES_LOCAL = "spatial_axes"
SUM_DTYPE_LOCAL = "sum_dtype"

# Arguments printed more than once, so they must be names (hoisted into temporaries).
_REPEATED_ARGUMENTS: dict[type, int] = {
    fn.LogCosh: 0,
    fn.Gather: 1,
    fn.TakeClass: 1,
    fn.SparseSoftmaxCrossEntropy: 1,
}


# ---------------------------------------------------------------- fused forms


@dataclass(frozen=True)
class FusionContext:
    """What the fused forms may assume: the inputs whose rows sum to 1 (`onehot`), the roles,
    which symbol is y_pred, and the clips the expression also uses other than in a log."""

    rows_summing_to_one: frozenset[sympy.Symbol]
    roles: Mapping[sympy.Symbol, Roles]
    y_pred: sympy.Symbol
    clips_outside_logs: frozenset[sympy.Basic] = frozenset()

    def has_all_roles(self, expr: sympy.Basic) -> bool:
        return fn.roles_of(expr, self.roles) == ALL_ROLES


def softmax_cross_entropy(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """sum_c(k * y * log_softmax(z)) = -k * softmax_cross_entropy_with_logits(y, z), y `onehot`.

    Equal in value for any y and any k without the class role. TensorFlow's gradient with
    respect to z, softmax(z) - y, is the exact one, softmax(z) * sum(y) - y, because the
    rows of a `onehot` input sum to 1 (the kind's contract, which the verifier draws).
    """
    if not isinstance(node, fn.ReduceSum) or Role.CLASS not in node.removed_roles:
        return None
    factors = list(sympy.Mul.make_args(node.args[0]))
    labels = [f for f in factors if f in context.rows_summing_to_one]
    logits = [f for f in factors if isinstance(f, fn.LogSoftmax) and context.has_all_roles(f)]
    if len(labels) != 1 or len(logits) != 1:
        return None
    factors.remove(labels[0])
    factors.remove(logits[0])
    if any(Role.CLASS in fn.roles_of(factor, context.roles) for factor in factors):
        return None
    fused = -sympy.Mul(*factors) * fn.SoftmaxCrossEntropy(labels[0], logits[0].args[0])
    outer = node.removed_roles - {Role.CLASS}
    return fn.ReduceSum(fused, fn.encode_roles(outer)) if outer else fused


def sparse_softmax_cross_entropy(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """log_softmax(z)[y] = -sparse_softmax_cross_entropy_with_logits(y, z) for a label y.

    Equal everywhere: both are 0 for a label outside [0, C) (the op is given the label
    clipped into range, and its result is replaced by 0 there).
    """
    if isinstance(node, fn.TakeClass) and isinstance(node.args[0], fn.LogSoftmax):
        logits = node.args[0].args[0]
        if context.has_all_roles(logits):
            return -fn.SparseSoftmaxCrossEntropy(logits, node.args[1])
    return None


def softplus_pair(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """a * softplus(-x) + b * softplus(x) (inside a longer sum too) = softplus_pair(a, b, x),
    for an x that depends on y_pred.

    Binary cross-entropy on logits, weighted or not, is such a pair. The module's
    `_softplus_pair` helper computes the value from one softplus and gives its gradient
    by hand (`codegen.helpers`): fewer passes than differentiating two softplus, and
    exact in both tails, where TensorFlow's fused sigmoid cross-entropy cancels.
    """
    if not isinstance(node, sympy.Add):
        return None
    coefficients: dict[sympy.Expr, list[sympy.Expr]] = {}
    for term in node.args:
        if (split := _softplus_factor(term)) is not None:
            coefficients.setdefault(split[1], []).append(split[0])
    for argument, negated_terms in coefficients.items():
        x = -argument
        if argument.could_extract_minus_sign() and x in coefficients and x.has(context.y_pred):
            a, b = sympy.Add(*negated_terms), sympy.Add(*coefficients[x])
            pair = [c * fn.Softplus(argument) for c in negated_terms]
            pair += [c * fn.Softplus(x) for c in coefficients[x]]
            rest = [term for term in node.args if term not in pair]
            return sympy.Add(*rest, fn.SoftplusPair(a, b, x))
    return None


def _softplus_factor(term: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr] | None:
    """(c, x) for a term c * softplus(x) with one softplus factor, else None."""
    factors = sympy.Mul.make_args(term)
    softplus = [factor for factor in factors if isinstance(factor, fn.Softplus)]
    if len(softplus) != 1:
        return None
    rest = [factor for factor in factors if factor is not softplus[0]]
    return sympy.Mul(*rest), softplus[0].args[0]


def clipped_log(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """log(clip(x, lo, hi)) = clipped_log(x, lo, hi), for numbers lo and hi and an x that
    depends on y_pred, where the expression uses that clip in logs only.

    The module's `_clipped_log` helper gives the gradient in one division and one select
    (`codegen.helpers`). A clip used elsewhere too (focal loss's (1 - q)^gamma * log(q))
    stays one `_clip`, computed once for both.
    """
    if not isinstance(node, sympy.log) or not isinstance(node.args[0], fn.Clip):
        return None
    clip = node.args[0]
    x, low, high = clip.args
    if not (low.is_number and high.is_number and x.has(context.y_pred)):
        return None
    if clip in context.clips_outside_logs:
        return None
    return fn.ClippedLog(x, low, high)


def huber(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """where(|e| <= d, e^2 / 2, d * |e| - d^2 / 2) (or with |e| < d) = huber(e, d), for an e
    that depends on y_pred and a d > 0 without roles (a number or a scalar param).

    The module's `_huber` helper gives the gradient, clip(e, -d, d), in one op. The two
    comparisons agree: both branches and their derivatives meet at |e| = d.
    """
    if not isinstance(node, fn.Where):
        return None
    condition, inside, outside = node.args
    if not isinstance(condition, sympy.LessThan | sympy.StrictLessThan):
        return None
    size, delta = condition.args
    if not isinstance(size, sympy.Abs) or not delta.is_positive:
        return None
    residual = size.args[0]
    if fn.roles_of(delta, context.roles) or not residual.has(context.y_pred):
        return None
    same_inside = sympy.expand(inside - residual**2 / 2) == 0
    same_outside = sympy.expand(outside - (delta * size - delta**2 / 2)) == 0
    return fn.Huber(residual, delta) if same_inside and same_outside else None


NON_FINITE_PRONE: tuple[type, ...] = (sympy.exp, sympy.log, log1p, expm1, sympy.cosh)
"""Functions whose value or derivative can be infinite at a finite argument."""


def _non_finite_prone(expr: sympy.Basic) -> bool:
    """Whether `expr` can be infinite or have an infinite derivative where its argument
    is finite: an exp, log or cosh, a division or a fractional power in it."""
    return any(
        isinstance(node, NON_FINITE_PRONE)
        or (isinstance(node, sympy.Pow) and not (node.exp.is_Integer and node.exp >= 0))
        for node in sympy.preorder_traversal(expr)
    )


def _coupled_roles(expr: sympy.Basic, y_pred: sympy.Symbol) -> Roles:
    """The roles along which some value in `expr` combines several elements of y_pred."""
    coupled: set[Role] = set()
    for node in sympy.preorder_traversal(expr):
        if not isinstance(node, fn.LossFunction) or not node.has(y_pred):
            continue
        if isinstance(node, fn.Reduction):
            coupled |= node.removed_roles
        elif not isinstance(node, fn.Elementwise):
            coupled.add(Role.CLASS)  # softmax, class ids, gathers: across the classes
    return frozenset(coupled)


def _guarded(
    branch: sympy.Basic, condition: sympy.Basic, taken: bool, context: FusionContext
) -> sympy.Basic:
    """`branch` reading y_pred only where it is `taken` under `condition` (elsewhere a
    stop_gradient copy), when it could be non-finite and that is sound, else as it is."""
    p = context.y_pred
    if not branch.has(p) or not _non_finite_prone(branch):
        return branch
    if _coupled_roles(branch, p) & fn.roles_of(condition, context.roles):
        return branch  # a value of the branch reads elements whose conditions differ
    frozen = fn.StopGradient(p)
    gate = fn.Where(condition, p, frozen) if taken else fn.Where(condition, frozen, p)
    return branch.xreplace({p: gate})


def untaken_branches_guarded(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """where(c, a, b) with y_pred read by a only where c holds and by b only where it does
    not (a stop_gradient copy elsewhere), and the same for minimum, maximum and clip.

    TensorFlow differentiates both branches of a select at every element and multiplies
    the untaken one's derivative by 0: where that branch is infinite (exp(1000 * p) at
    p = 0.9, log(x) at x = 0), 0 * inf is NaN, though the exact gradient is finite. With
    y_pred gated by a select, the NaN goes to the stop_gradient copy and is dropped (the
    "double where"). Only branches that can be non-finite (`_non_finite_prone`) are
    gated, and only where each of their values reads y_pred at elements that share one
    condition (no reduction or class-axis function over the condition's roles).
    """
    if isinstance(node, fn.Where):
        condition, a, b = node.args
    elif isinstance(node, fn.Minimum | fn.Maximum):
        a, b = node.args
        condition = (sympy.LessThan if isinstance(node, fn.Minimum) else sympy.GreaterThan)(
            a, b, evaluate=False
        )
    elif isinstance(node, fn.Clip):
        x, low, high = node.args
        if not x.has(context.y_pred):
            return None
        top = x if (high - low).is_nonnegative else fn.Maximum(x, low)  # as Clip.fdiff
        inside = sympy.And(
            sympy.GreaterThan(x, low, evaluate=False),
            sympy.LessThan(top, high, evaluate=False),
            evaluate=False,
        )
        guarded_x = _guarded(x, inside, True, context)
        return None if guarded_x == x else fn.Clip(guarded_x, low, high)
    else:
        return None
    guarded_a = _guarded(a, condition, True, context)
    guarded_b = _guarded(b, condition, False, context)
    if (guarded_a, guarded_b) == (a, b):
        return None
    return fn.Where(condition, guarded_a, guarded_b)


def clips_outside_logs(exprs: list[sympy.Basic]) -> frozenset[sympy.Basic]:
    """The clips that occur in `exprs` as an argument of anything but a log (`clipped_log`)."""
    found: set[sympy.Basic] = set()
    for expr in exprs:
        for node in sympy.preorder_traversal(expr):
            if not isinstance(node, sympy.log):
                found.update(arg for arg in node.args if isinstance(arg, fn.Clip))
    return frozenset(found)


def factors_outside_sums(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """sum(k * x) = k * sum(x), and the same for a mean, for the factors k that lack every
    role the reduction removes (numbers, scalar params, per-sample weights).

    `-sum(y * log(p))` then negates one value per sample, not every element, and its
    gradient multiplies one array fewer.
    """
    if not isinstance(node, fn.ReduceSum | fn.ReduceMean):
        return None
    body, removed = node.args
    factors = sympy.Mul.make_args(body)
    outside = [f for f in factors if not fn.roles_of(f, context.roles) & node.removed_roles]
    if not outside or len(outside) == len(factors):
        return None
    inside = sympy.Mul(*(f for f in factors if f not in outside))
    return sympy.Mul(*outside) * node.func(inside, removed)


FUSED_FORMS = (
    softmax_cross_entropy,
    sparse_softmax_cross_entropy,
    softplus_pair,
    clipped_log,
    huber,
    untaken_branches_guarded,
    factors_outside_sums,
)
"""Printing rules, innermost first: sub-expressions TensorFlow computes with one fused op
or one helper of ours (value and gradient together), and factors moved out of sums. They
are the printer's own, not rewrites: they depend on an input's kind or on which input is
y_pred, or only change the cost; the verifier checks the printed code against the
expression before them."""


def fuse(expr: sympy.Basic, context: FusionContext) -> sympy.Basic:
    """`expr` with every sub-expression a fused form matches replaced, innermost first."""
    done: dict[sympy.Basic, sympy.Basic] = {}

    def visit(node: sympy.Basic) -> sympy.Basic:
        if node not in done:
            args = tuple(visit(arg) for arg in node.args)
            current = node.func(*args) if args != node.args else node
            fused = (form(current, context) for form in FUSED_FORMS)
            done[node] = next((f for f in fused if f is not None), current)
        return done[node]

    return visit(expr)


def print_body(symbolic: SymbolicLoss, *, jit_compile: bool = False) -> FunctionBody:
    """The TensorFlow statements computing `symbolic.result` (and its mask).

    With `jit_compile` (a module compiled with XLA), sums and means over the classes alone
    are printed as `_sum_over_classes` and `_mean_over_classes`, `class(y)` of a one-hot
    y as `_class_of`, the fused softmax cross-entropy as `_softmax_cross_entropy`, and
    log1p of an array as `_log1p` (`codegen.helpers`): XLA on the CPU computes them faster.
    """
    checked = symbolic.checked
    identifiers = python_names(checked)
    names = {symbol: identifiers[spec_name] for spec_name, symbol in symbolic.symbols.items()}
    y_true = symbolic.symbols[checked.y_true.name]
    labels = frozenset({y_true} if checked.y_true.kind == "label" else ())
    onehot = frozenset({y_true} if checked.y_true.kind == "onehot" else ())
    y_pred = symbolic.symbols[checked.y_pred.name]
    unfused = [symbolic.result] + ([symbolic.mask] if symbolic.mask is not None else [])
    context = FusionContext(onehot, symbolic.roles, y_pred, clips_outside_logs(unfused))
    fused = fuse(symbolic.result, context)
    outputs = [fused, *unfused[1:]]
    shared = shared_subexpressions(outputs)
    temporaries = {expr: f"t{i}" for i, expr in enumerate(shared)}
    printer = TensorFlowPrinter(
        names, symbolic.roles, labels, identifiers[checked.y_pred.name], temporaries, jit_compile
    )
    definitions = []
    for expr in shared:
        value = printer.definition(expr)
        definitions += [*printer.take_groups(), (temporaries[expr], value)]
    target = checked.result.roles
    result = printer.keras_shaped(fused, target)
    mask = printer.keras_shaped(symbolic.mask, target) if symbolic.mask is not None else None
    definitions += printer.take_groups()
    body = lay_out(printer.locals_used() + definitions, result, mask)
    used = printer.helpers_used.union(
        *(helper_dependencies(helper, jit_compile) for helper in printer.helpers_used)
    )
    return replace_field(body, helpers=tuple(helper for helper in HELPERS if helper in used))


def shared_subexpressions(outputs: list[sympy.Basic]) -> list[sympy.Basic]:
    """The sub-expressions to compute once, each after the ones it uses.

    Those occurring more than once (a repeated occurrence is not searched again), and the
    arguments the printer writes more than once (`_REPEATED_ARGUMENTS`). Numbers, names
    and negated names are left inline.
    """
    counts: Counter[sympy.Basic] = Counter()
    order: list[sympy.Basic] = []

    def visit(node: sympy.Basic, forced: bool = False) -> None:
        if _inline(node):
            return
        counts[node] += 2 if forced else 1
        if counts[node] > (2 if forced else 1):
            return
        position = _REPEATED_ARGUMENTS.get(type(node))
        for i, arg in enumerate(node.args):
            visit(arg, forced=i == position)
        order.append(node)

    for output in outputs:
        visit(output)
    return [node for node in order if counts[node] > 1]


def _inline(node: sympy.Basic) -> bool:
    """Whether `node` is printed where it is used, never as a temporary."""
    if node.is_Atom or (isinstance(node, sympy.Expr) and node.is_number):
        return True
    return (
        isinstance(node, sympy.Mul)
        and len(node.args) == 2
        and node.args[0] == -1
        and (node.args[1].is_Atom)
    )


def _is_integer_valued(expr: sympy.Basic, integers: frozenset[sympy.Symbol]) -> bool:
    """Whether `expr` prints as an int32 tensor (a label or a class id)."""
    return expr in integers or isinstance(expr, fn.ClassId)


def _joined(operands: list[tuple[str, str]], space: str) -> str:
    """Operands joined by their operators (`+`/`-` or `*`); each operand is its operator
    and its text, the first one's operator dropped (`-` kept as a sign)."""
    (sign, first), *rest = operands
    head = f"-{first}" if sign == "-" else first
    return head + "".join(f"{space}{operator}{space}{text}" for operator, text in rest)


def _literal(expr: sympy.Basic) -> float | None:
    """The float a constant expression prints as, or None: not a number, or one that
    evalf cannot reduce (a reduction of a number counts copies only when the loss runs)."""
    if not isinstance(expr, sympy.Expr) or not expr.is_number:
        return None
    if any(
        isinstance(node, fn.LossFunction) and not isinstance(node, fn.Elementwise)
        for node in sympy.preorder_traversal(expr)
    ):
        return None
    value = expr if expr.is_Rational else expr.evalf(17)
    return float(value) if value.is_Number and value is not sympy.zoo else None


def _divides_by_a_value(factor: sympy.Basic) -> bool:
    """Whether a factor is a negative power of something that is not a number."""
    return (
        isinstance(factor, sympy.Pow)
        and factor.exp.is_negative is True
        and not factor.base.is_number
    )


FLOAT_STEP = sympy.Integer(10) ** 300
"""The factor a coefficient beyond float64's range is split by (`_representable_factors`)."""


def _float_representable(number: sympy.Rational) -> bool:
    """Whether a nonzero number is a normal float64 (0 is too)."""
    size = abs(number)
    return number == 0 or sympy.Float(sys.float_info.min) <= size <= sympy.Float(sys.float_info.max)


def _representable_factors(number: sympy.Rational) -> list[float]:
    """`number` as floats whose product it is: its sign and what is left, then 1e300s
    (or 1e-300s), so that applying them one by one never leaves float64's range first."""
    size = abs(number)
    scales: list[float] = []
    while size > FLOAT_STEP:
        size = size / FLOAT_STEP
        scales.append(1e300)
    while size < 1 / FLOAT_STEP:
        size = size * FLOAT_STEP
        scales.append(1e-300)
    return [float(sympy.sign(number) * size), *scales]


def _number(value: float) -> str:
    return repr(value) if math.isfinite(value) else f'float("{value}")'


class TensorFlowPrinter(PythonCodePrinter):
    """SymPy -> TensorFlow 2 expressions in keepdims form (conventions: module docstring)."""

    printmethod = "_tensorflow"

    def __init__(
        self,
        names: Mapping[sympy.Symbol, str],
        roles: Mapping[sympy.Symbol, Roles],
        integers: frozenset[sympy.Symbol],
        y_pred: str,
        temporaries: Mapping[sympy.Basic, str],
        jit_compile: bool = False,
    ) -> None:
        super().__init__({"fully_qualified_modules": False, "standard": "python3"})
        self.jit_compile = jit_compile
        self.names = names
        self.symbol_roles = roles
        self.integers = integers
        self.y_pred = y_pred
        self.temporaries = temporaries
        self.used_locals: set[str] = set()
        self.helpers_used: set[str] = set()
        self.groups: list[tuple[str, str]] = []
        self.groups_made = 0
        self._roles: dict[sympy.Basic, Roles] = {}

    def parenthesize(self, item: sympy.Basic, level: int, strict: bool = False) -> str:
        if item in self.temporaries:
            return self.temporaries[item]
        return str(super().parenthesize(item, level, strict))

    def definition(self, expr: sympy.Basic) -> str:
        """The right-hand side of a temporary: `expr` itself, its parts by their names."""
        return str(super()._print(expr))

    # ------------------------------------------------------------ helpers

    def roles(self, expr: sympy.Basic) -> Roles:
        if expr not in self._roles:
            self._roles[expr] = fn.roles_of(expr, self.symbol_roles)
        return self._roles[expr]

    @property
    def dtype(self) -> str:
        return f"{self.y_pred}.dtype"

    def chain(self, operands: list[tuple[str, str]], space: str) -> str:
        """Operands joined by their operators (`_joined`), in groups past `MAX_CHAIN`."""
        while len(operands) > MAX_CHAIN:
            operator = "+" if space else "*"
            operands = [
                (operator, self.group(_joined(operands[start : start + MAX_CHAIN], space)))
                for start in range(0, len(operands), MAX_CHAIN)
            ]
        return _joined(operands, space)

    def group(self, value: str) -> str:
        """A new temporary for `value`, part of a long sum or product (`take_groups`)."""
        name = f"t{len(self.temporaries) + self.groups_made}"
        self.groups_made += 1
        self.groups.append((name, value))
        return name

    def take_groups(self) -> list[tuple[str, str]]:
        """The group temporaries made since the last call: defined before their user."""
        groups, self.groups = self.groups, []
        return groups

    def locals_used(self) -> list[tuple[str, str]]:
        """The locals the printed code used and their definitions, in a fixed order."""
        definitions = {
            NUM_CLASSES_LOCAL: f"tf.cast(tf.shape({self.y_pred})[-1], {self.dtype})",
            SPATIAL_AXES_LOCAL: f"list(range(1, len({self.y_pred}.shape) - 1))",
            SUM_DTYPE_LOCAL: (
                f"tf.float32 if {self.dtype} in (tf.float16, tf.bfloat16) else {self.dtype}"
            ),
        }
        return [(name, value) for name, value in definitions.items() if name in self.used_locals]

    def use(self, local: str) -> str:
        self.used_locals.add(local)
        return local

    def tensor(self, expr: sympy.Basic) -> str:
        """`expr` as a TensorFlow op's argument: a role-less value is cast to y_pred's dtype."""
        printed = self._print(expr)
        if self.roles(expr) or expr is fn.NUM_CLASSES:
            return printed
        # tf.cast would make a Python float float32 first: 0.1 inexact, 1e300 an error
        if _literal(expr) is not None:
            return f"tf.constant({printed}, {self.dtype})"
        if not expr.has(fn.NUM_CLASSES) and not any(
            self.roles(symbol) or symbol in self.integers for symbol in expr.free_symbols
        ):  # computed from scalar params alone: a Python float, or a tensor
            printed = f"tf.convert_to_tensor({printed}, dtype_hint={self.dtype})"
        return f"tf.cast({printed}, {self.dtype})"

    def index(self, expr: sympy.Basic) -> str:
        """An int32 class id: a label or class id as it is."""
        if isinstance(expr, sympy.Symbol):
            return self.names[expr]
        return self._print(expr)

    def count(self, roles: Roles) -> str:
        """The number of elements a reduction over `roles` combines, as y_pred's dtype."""
        sizes = {
            Role.BATCH: f"tf.cast(tf.shape({self.y_pred})[0], {self.dtype})",
            Role.SPATIAL: f"tf.cast(tf.reduce_prod(tf.shape({self.y_pred})[1:-1]), {self.dtype})",
            Role.CLASS: NUM_CLASSES_LOCAL,
        }
        if Role.CLASS in roles:
            self.use(NUM_CLASSES_LOCAL)
        return " * ".join(sizes[role] for role in ROLE_ORDER if role in roles)

    def axes(self, roles: Roles) -> str:
        """The `axis=` of a reduction over `roles` (keepdims form)."""
        if roles == frozenset(Role):
            return "None"
        if Role.SPATIAL in roles:
            self.use(SPATIAL_AXES_LOCAL)
        parts = {Role.BATCH: "0", Role.SPATIAL: f"*{SPATIAL_AXES_LOCAL}", Role.CLASS: "-1"}
        chosen = [parts[role] for role in ROLE_ORDER if role in roles]
        if chosen == [f"*{SPATIAL_AXES_LOCAL}"]:
            return SPATIAL_AXES_LOCAL
        return chosen[0] if len(chosen) == 1 else "[" + ", ".join(chosen) + "]"

    def keras_shaped(self, expr: sympy.Basic, target: Roles) -> str:
        """`expr` squeezed to Keras's shape for a value with roles `target`."""
        printed = self._print(expr)
        if isinstance(expr, Boolean):
            if self.roles(expr) != target:
                printed = f"tf.broadcast_to({printed}, tf.shape({self.y_pred}[..., :1]))"
        elif self.roles(expr) != target:
            broadcast = f"tf.zeros_like({self.y_pred}[..., :1])"
            if expr not in self.temporaries and precedence(expr) <= PRECEDENCE["Add"]:
                printed = f"({printed})"
            printed = f"{printed} + {broadcast}"
        if (
            target == PER_ELEMENT
            and isinstance(expr, fn.SoftmaxCrossEntropy)
            and not self.jit_compile
        ):
            return self.softmax_cross_entropy(expr)  # no axis added and squeezed again
        if target == PER_ELEMENT:
            return f"tf.squeeze({printed}, axis=-1)"
        if target == PER_SAMPLE:
            axes = f"list(range(1, len({self.y_pred}.shape)))"
            if self.roles(expr) != target:
                return f"tf.math.reduce_max({printed}, axis={axes})"
            return f"tf.reshape({printed}, [-1])"
        if target == NO_ROLES:
            return f"tf.reshape(tf.cast({printed}, {self.dtype}), [])"
        raise ValueError(
            f"a result must not keep the class role: {sorted(r.value for r in target)}"
        )

    # ------------------------------------------------------------ atoms

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        if expr == fn.NUM_CLASSES:
            return self.use(NUM_CLASSES_LOCAL)
        name = self.names[expr]
        return f"tf.cast({name}, {self.dtype})" if expr in self.integers else name

    def _print_Integer(self, expr: sympy.Integer) -> str:
        return _number(float(expr))

    def _print_Rational(self, expr: sympy.Rational) -> str:
        return _number(float(expr))

    def _print_Float(self, expr: sympy.Float) -> str:
        return _number(float(expr))

    def _print_NumberSymbol(self, expr: sympy.Expr) -> str:
        return _number(float(expr))

    def _print(self, expr: sympy.Basic, **kwargs: object) -> str:
        if expr in self.temporaries:
            return self.temporaries[expr]
        if (literal := _literal(expr)) is not None and not expr.is_Rational:
            return _number(literal)
        return str(super()._print(expr, **kwargs))

    def _print_Infinity(self, expr: sympy.Expr) -> str:
        return _number(math.inf)

    def _print_NegativeInfinity(self, expr: sympy.Expr) -> str:
        return _number(-math.inf)

    # ------------------------------------------------------------ arithmetic

    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:
        base, exponent = expr.args
        # Without roles too: a power or reciprocal of Python floats (params) would raise
        # OverflowError or ZeroDivisionError where a tensor gives inf.
        forms = {
            sympy.Integer(2): "tf.math.square({})",
            sympy.Rational(1, 2): "tf.math.sqrt({})",
            sympy.Rational(-1, 2): "tf.math.rsqrt({})",
            sympy.Integer(-1): "1.0 / {}",
            sympy.Integer(-2): "1.0 / tf.math.square({})",
        }
        if exponent in forms:
            argument = (
                self.tensor(base)
                if exponent != -1 or not self.roles(base)
                else self.parenthesize(base, PRECEDENCE["Mul"] + 1)
            )
            return forms[exponent].format(argument)
        return f"tf.math.pow({self.tensor(base)}, {self._print(exponent)})"

    def _print_Add(self, expr: sympy.Add, order: str | None = None) -> str:
        # SymPy's printing order sorts slowly; a long sum keeps SymPy's canonical order.
        terms = self._as_ordered_terms(expr, order) if len(expr.args) <= MAX_CHAIN else expr.args
        signed = []
        for term in terms:
            text = self._print(term)
            sign = "-" if text.startswith("-") else "+"
            text = text.removeprefix("-")
            if precedence(term) < PRECEDENCE["Add"]:
                text = f"({text})"
            signed.append((sign, text))
        return self.chain(signed, " ")

    def _print_Mul(self, expr: sympy.Mul) -> str:
        if len(expr.args) > MAX_CHAIN:
            factors = expr.args
            groups = [
                sympy.Mul(*factors[start : start + MAX_CHAIN], evaluate=False)
                for start in range(0, len(factors), MAX_CHAIN)
            ]
            return self.chain([("*", self.group(self._print(group))) for group in groups], "")
        coefficient, rest = expr.as_coeff_Mul()
        if coefficient.is_Rational and rest != 1 and not _float_representable(coefficient):
            # a folded constant beyond float64 (1e200 * p * 1e200): one factor at a time,
            # so that every product lies between `rest` and the result and none overflows
            first, *scales = _representable_factors(coefficient)
            text = f"{_number(first)}*{self.parenthesize(rest, PRECEDENCE['Mul'], strict=True)}"
            for scale in scales:
                text = f"{_number(scale)}*({text})"
            return text
        if not self.roles(expr) and any(_divides_by_a_value(f) for f in expr.args):
            # `_print_Pow`'s tensor reciprocal: Python's `a / k` raises where k is 0
            factors = "*".join(
                self.parenthesize(f, PRECEDENCE["Mul"], strict=True)
                for f in sympy.Mul.make_args(rest)
            )
            if abs(coefficient) == 1:
                return f"-{factors}" if coefficient < 0 else factors
            sign = "-" if coefficient < 0 else ""
            return f"{sign}{_number(abs(float(coefficient)))}*{factors}"
        if not coefficient.is_Rational or coefficient.is_Integer or rest == 1:
            return str(super()._print_Mul(expr))
        sign = "-" if coefficient < 0 else ""
        factor = self.parenthesize(rest, PRECEDENCE["Mul"], strict=True)
        return f"{sign}{_number(abs(float(coefficient)))}*{factor}"

    # ------------------------------------------------------------ functions

    def _print_Function(self, expr: sympy.Function) -> str:
        op = ELEMENTWISE_OPS.get(type(expr))
        if op is None:
            raise TypeError(f"no TensorFlow form for {type(expr).__name__}")
        first, *rest = expr.args
        return f"{op}({', '.join([self.tensor(first), *(self._print(a) for a in rest)])})"

    def _print_log1p(self, expr: log1p) -> str:
        """An XLA module's log1p of an array is `_log1p`, which XLA on the CPU runs faster."""
        x = expr.args[0]
        if self.jit_compile and self.roles(x):
            self.helpers_used.add(LOG1P)
            return f"{LOG1P}({self.tensor(x)})"
        return self._print_Function(expr)

    def _print_Clip(self, expr: fn.Clip) -> str:
        x, low, high = expr.args
        if low.is_number and high.is_number:
            self.helpers_used.add(CLIP)
            return f"{CLIP}({self.tensor(x)}, {self._print(low)}, {self._print(high)})"
        above = f"tf.math.maximum({self.tensor(x)}, {self._print(low)})"
        return f"tf.math.minimum({above}, {self._print(high)})"

    def _print_ClippedLog(self, expr: fn.ClippedLog) -> str:
        x, low, high = expr.args
        self.helpers_used.add(CLIPPED_LOG)
        return f"{CLIPPED_LOG}({self.tensor(x)}, {self._print(low)}, {self._print(high)})"

    def _print_Huber(self, expr: fn.Huber) -> str:
        residual, delta = expr.args
        self.helpers_used.add(HUBER)
        return f"{HUBER}({self.tensor(residual)}, {self._print(delta)})"

    def _print_Where(self, expr: fn.Where) -> str:
        condition, a, b = expr.args
        if (a, b) == (1, 0):
            return f"tf.cast({self._print(condition)}, {self.dtype})"
        if (a, b) == (0, 1):
            return f"tf.cast(tf.math.logical_not({self._print(condition)}), {self.dtype})"
        return f"tf.where({self._print(condition)}, {self.tensor(a)}, {self.tensor(b)})"

    def _print_LogCosh(self, expr: fn.LogCosh) -> str:
        x = expr.args[0]
        doubled = f"-2.0*{self.parenthesize(x, PRECEDENCE['Mul'])}"
        if not self.roles(x):
            doubled = f"tf.cast({doubled}, {self.dtype})"
        return f"{self._print(x)} + tf.math.softplus({doubled}) - {_number(math.log(2.0))}"

    def _print_Softmax(self, expr: fn.Softmax) -> str:
        if Role.CLASS not in self.roles(expr.args[0]):
            return f"1.0 / {self.use(NUM_CLASSES_LOCAL)}"
        return f"tf.nn.softmax({self._print(expr.args[0])}, axis=-1)"

    def _print_LogSoftmax(self, expr: fn.LogSoftmax) -> str:
        if Role.CLASS not in self.roles(expr.args[0]):
            return f"-tf.math.log({self.use(NUM_CLASSES_LOCAL)})"
        return f"tf.nn.log_softmax({self._print(expr.args[0])}, axis=-1)"

    def _print_ClassId(self, expr: fn.ClassId) -> str:
        y = expr.args[0]
        if y in self.integers:
            return self.index(y)
        if self.jit_compile:
            self.helpers_used.add(CLASS_OF)
            return f"{CLASS_OF}({self._print(y)})"
        return (
            f"tf.expand_dims(tf.math.argmax({self._print(y)}, axis=-1, output_type=tf.int32), -1)"
        )

    def _print_OneHot(self, expr: fn.OneHot) -> str:
        label = self.index(expr.args[0])
        return f"tf.one_hot({label}[..., 0], tf.shape({self.y_pred})[-1], dtype={self.dtype})"

    def _in_range(self, label: str, size: str) -> str:
        return f"({label} >= 0) & ({label} < {size})"

    def _print_Gather(self, expr: fn.Gather) -> str:
        """The vector's entry at the index; 0 for an index outside it, which the class of a
        non-label input (an argmax over the C classes a per-class vector has) never is."""
        vector, index = self._print(expr.args[0]), self.index(expr.args[1])
        if isinstance(expr.args[1], fn.ClassId) and expr.args[1].args[0] not in self.integers:
            return f"tf.gather({vector}, {index})"
        size = f"tf.size({vector})"
        safe = f"tf.clip_by_value({index}, 0, {size} - 1)"
        return f"tf.where({self._in_range(index, size)}, tf.gather({vector}, {safe}), 0.0)"

    def _print_TakeClass(self, expr: fn.TakeClass) -> str:
        x, label_expr = expr.args
        label, size = self.index(label_expr), f"tf.shape({self.y_pred})[-1]"
        roles = self.roles(x)
        if roles == frozenset({Role.CLASS}):
            return self._print_Gather(fn.Gather(x, label_expr))
        if Role.CLASS not in roles:
            return f"tf.where({self._in_range(label, size)}, {self.tensor(x)}, 0.0)"
        values = self._print(x)
        if roles != ALL_ROLES:  # a gather's batch dimensions do not broadcast
            values = f"{self.parenthesize(x, PRECEDENCE['Add'])} + tf.zeros_like({self.y_pred})"
        safe = f"tf.clip_by_value({label}, 0, {size} - 1)"
        rank = f"len({self.y_pred}.shape)"
        taken = f"tf.gather({values}, {safe}, axis=-1, batch_dims={rank} - 1)"
        return f"tf.where({self._in_range(label, size)}, {taken}, 0.0)"

    def _print_SoftmaxCrossEntropy(self, expr: fn.SoftmaxCrossEntropy) -> str:
        if self.jit_compile:
            self.helpers_used.add(SOFTMAX_CROSS_ENTROPY)
            y, z = (self._print(arg) for arg in expr.args)
            return f"{SOFTMAX_CROSS_ENTROPY}({y}, {z})"
        return f"tf.expand_dims({self.softmax_cross_entropy(expr)}, -1)"

    def softmax_cross_entropy(self, expr: fn.SoftmaxCrossEntropy) -> str:
        """The fused op's call, its result without the class axis."""
        y, z = (self._print(arg) for arg in expr.args)
        return f"tf.nn.softmax_cross_entropy_with_logits(labels={y}, logits={z})"

    def _print_SparseSoftmaxCrossEntropy(self, expr: fn.SparseSoftmaxCrossEntropy) -> str:
        z, label_expr = expr.args
        label, size = self.index(label_expr), f"tf.shape({self.y_pred})[-1]"
        safe = f"tf.clip_by_value({label}, 0, {size} - 1)[..., 0]"
        op = "tf.nn.sparse_softmax_cross_entropy_with_logits"
        loss = f"{op}(labels={safe}, logits={self._print(z)})"
        return f"tf.where({self._in_range(label, size)}, tf.expand_dims({loss}, -1), 0.0)"

    def _print_SoftplusPair(self, expr: fn.SoftplusPair) -> str:
        """The helper's call; arguments with every role have y_pred's shape and dtype."""
        a, b, x = expr.args
        same_shape = all(self.roles(arg) == ALL_ROLES for arg in expr.args)
        helper = SOFTPLUS_PAIR_SAME_SHAPE if same_shape else SOFTPLUS_PAIR
        self.helpers_used.add(helper)
        return f"{helper}({self._print(a)}, {self._print(b)}, {self.tensor(x)})"

    def _print_Reduction(self, expr: fn.Reduction) -> str:
        body = expr.args[0]
        body_roles = self.roles(body)
        present, missing = expr.removed_roles & body_roles, expr.removed_roles - body_roles
        value = self._print(body)
        if present and isinstance(expr, ACCUMULATING_REDUCTIONS):
            value = f"tf.cast({value}, {self.use(SUM_DTYPE_LOCAL)})"
        class_helper = CLASS_REDUCTION_HELPERS.get(type(expr))
        if self.jit_compile and present == {Role.CLASS} and class_helper is not None:
            self.helpers_used.add(class_helper)
            value = f"{class_helper}({value})"
        elif present:
            value = (
                f"{REDUCTION_OPS[type(expr)]}({value}, axis={self.axes(present)}, keepdims=True)"
            )
        if present and isinstance(expr, ACCUMULATING_REDUCTIONS):
            value = f"tf.cast({value}, {self.dtype})"
        if missing and isinstance(expr, fn.ReduceSum):
            return f"{self.count(missing)} * {value}"
        if missing and isinstance(expr, fn.LogSumExp):
            return f"{value} + tf.math.log({self.count(missing)})"
        return value

    _print_ReduceSum = _print_Reduction
    _print_ReduceMean = _print_Reduction
    _print_ReduceMax = _print_Reduction
    _print_ReduceMin = _print_Reduction
    _print_LogSumExp = _print_Reduction

    # ------------------------------------------------------------ conditions

    def _print_Relational(self, expr: sympy.core.relational.Relational) -> str:
        left, right = expr.args
        integer_valued = [
            _is_integer_valued(side, self.integers) or side.is_Integer for side in (left, right)
        ]
        if all(integer_valued):
            sides = [self.index(s) if not s.is_Integer else str(int(s)) for s in (left, right)]
        elif self.roles(left):  # TensorFlow converts the right side to the left's dtype
            sides = [self._print(left), self._print(right)]
        elif self.roles(right):  # but would make a number on the left float32
            sides = [self.tensor(left), self._print(right)]
        else:  # numbers, scalar params, num_classes
            sides = [self.tensor(left), self.tensor(right)]
        return f"{RELATION_OPS[expr.rel_op]}({sides[0]}, {sides[1]})"

    def _print_And(self, expr: sympy.And) -> str:
        return self._logical("tf.math.logical_and", expr.args)

    def _print_Or(self, expr: sympy.Or) -> str:
        return self._logical("tf.math.logical_or", expr.args)

    def _logical(self, op: str, args: tuple[sympy.Basic, ...]) -> str:
        ordered = sorted(args, key=sympy.default_sort_key)
        printed = self._print(ordered[0])
        for arg in ordered[1:]:
            printed = f"{op}({printed}, {self._print(arg)})"
        return printed

    def _print_Not(self, expr: sympy.Not) -> str:
        return f"tf.math.logical_not({self._print(expr.args[0])})"

    def _print_BooleanTrue(self, expr: sympy.Basic) -> str:
        return "True"

    def _print_BooleanFalse(self, expr: sympy.Basic) -> str:
        return "False"

    def _print_Piecewise(self, expr: sympy.Basic) -> str:
        raise TypeError("Piecewise has no TensorFlow form here; lower `where` to Where")


for _function in ELEMENTWISE_OPS:  # SymPy's Python printer has its own _print_exp, _print_log...
    if f"_print_{_function.__name__}" not in vars(TensorFlowPrinter):
        setattr(
            TensorFlowPrinter, f"_print_{_function.__name__}", TensorFlowPrinter._print_Function
        )


# ---------------------------------------------------------------- layout

LINE_LENGTH = 88
"""The generated module's line length, black's and ruff's default."""

INDENT = "    "
"""One level of indentation; the statements sit one level deep, in the function body."""

OUTPUT_WIDTH = LINE_LENGTH - 16
"""The most columns `result` and `mask` take: the writer puts each on one line, after at
most 16 columns of its own (`    return `, `    losses = `, `    valid = `)."""

TEMPORARY_NAME = re.compile(r"t\d+")
"""The printer's temporaries (`codegen.names` keeps spec names out of this pattern)."""


def lay_out(definitions: list[tuple[str, str]], result: str, mask: str | None) -> FunctionBody:
    """The printed assignments, result and mask, formatted as black and ruff format them.

    Every line fits in `LINE_LENGTH` columns at the function body's indentation. A
    statement too long for one line is a call split inside its parentheses (its
    arguments on one line if they fit, else one per line with a trailing comma, calls
    among them split the same way); any other part that does not fit (a long sum or
    product, an argument that is no call) gets its largest operand hoisted into a new
    temporary just before the statement. `result` and `mask` stay on one line of at most
    `OUTPUT_WIDTH` columns, their largest calls hoisted. A hoisted temporary used once
    is put back where the line it is used in fits with it. Temporaries are numbered in
    the order they are defined. The text is generated code, never spec text.
    """
    outputs = [result] if mask is None else [result, mask]
    layout = _BodyLayout(
        [_Assignment(target, _parse(value)) for target, value in definitions],
        [_parse(output) for output in outputs],
    )
    layout.hoist_until_fitting()
    layout.inline_single_uses()
    return layout.formatted()


def _parse(expression: str) -> ast.expr:
    return ast.parse(expression, mode="eval").body


@dataclass(frozen=True)
class _Assignment:
    """`target = value`; `hoisted` when the layout made it up to shorten a line."""

    target: str
    value: ast.expr
    hoisted: bool = False


class _Hoist(Exception):
    """A sub-expression that must become a temporary for its statement to fit."""

    def __init__(self, node: ast.expr) -> None:
        super().__init__()
        self.node = node


class _BodyLayout:
    """The assignments and outputs being laid out; hoisting adds assignments.

    Each pass goes once through the statements in order, looking at one statement at a
    time, so that laying out a long spec takes time linear in its statements. While
    hoisting, a temporary has a provisional name (`$0`, `$1`, ...: no identifier, so it
    clashes with no other name) until its own statement is laid out and it gets the next
    number; a statement only uses temporaries defined before it, so its text is final
    when it is laid out. `readers` holds the `Name` nodes reading each temporary, renamed
    in place.
    """

    def __init__(self, assignments: list[_Assignment], outputs: list[ast.expr]) -> None:
        self.assignments = assignments
        self.outputs = outputs
        self.readers: dict[str, list[ast.Name]] = {}

    def formatted(self) -> FunctionBody:
        statements = []
        for assignment in self.assignments:
            statement = "\n".join(statement_lines(assignment.target, assignment.value))
            _check_round_trip(statement, assignment.value)
            statements.append(statement)
        result, *mask = (_flat(output) for output in self.outputs)
        return FunctionBody(tuple(statements), result, mask[0] if mask else None)

    def hoist_until_fitting(self) -> None:
        """Hoist parts of the statements too long for their lines, the first ones first."""
        provisional = {
            a.target: f"${i}"
            for i, a in enumerate(a for a in self.assignments if TEMPORARY_NAME.fullmatch(a.target))
        }
        for tree in [*(a.value for a in self.assignments), *self.outputs]:
            for node in ast.walk(tree):
                if isinstance(node, ast.Name) and node.id in provisional:
                    node.id = provisional[node.id]
                    self.readers.setdefault(node.id, []).append(node)
        self.assignments = [
            replace_field(a, target=provisional.get(a.target, a.target)) for a in self.assignments
        ]
        numbered = 0
        index = 0
        while True:
            if index == len(self.assignments):
                parts = (_output_part(output) for output in self.outputs)
                if (part := next((p for p in parts if p is not None), None)) is None:
                    return
                self.hoist(index, part)
            assignment = self.assignments[index]
            target = assignment.target
            if target.startswith("$"):
                target = f"t{numbered}"
            try:
                statement_lines(target, assignment.value)
            except _Hoist as hoist:
                self.hoist(index, hoist.node)
                continue
            if target != assignment.target:
                numbered += 1
                for reader in self.readers.pop(assignment.target, []):
                    reader.id = target
                self.assignments[index] = replace_field(assignment, target=target)
            index += 1

    def hoist(self, index: int, node: ast.expr) -> None:
        """Compute `node` in a new temporary just before assignment `index` (or the outputs)."""
        name = f"${len(self.assignments)}"  # provisional names so far are all below this
        reader = ast.Name(name, ast.Load())
        self.readers[name] = [reader]
        replace = _Replace(node, reader)
        if index < len(self.assignments):
            user = self.assignments[index]
            self.assignments[index] = replace_field(user, value=replace.expression(user.value))
        else:
            self.outputs = [replace.expression(output) for output in self.outputs]
        self.assignments.insert(index, _Assignment(name, node, hoisted=True))

    def inline_single_uses(self) -> None:
        """Put each hoisted temporary used once back where it is used, if that still fits.

        The first ones first, each judged with the temporaries' names before any is put
        back: putting one back only shortens the names after it, so what fits keeps
        fitting when the temporaries left are numbered again at the end.
        """
        trees: dict[str | None, ast.expr] = {a.target: a.value for a in self.assignments}
        uses: Counter[str] = Counter()
        user: dict[str, str | None] = {}  # the statement reading a name (None: the outputs)
        for reader, tree in [*trees.items(), *((None, output) for output in self.outputs)]:
            for name in _names(tree):
                uses[name] += 1
                user[name] = reader
        kept = []
        for assignment in self.assignments:
            target = assignment.target
            if (
                assignment.hoisted
                and uses[target] == 1
                and self.inlined(target, user[target], trees)
            ):
                for name in _names(trees[target]):
                    user[name] = user[target]
            else:
                kept.append(assignment)
        temporaries = [a.target for a in kept if TEMPORARY_NAME.fullmatch(a.target)]
        numbers = {name: f"t{number}" for number, name in enumerate(temporaries)}
        renumber = _Rename(lambda name: numbers.get(name, name))
        self.assignments = [
            _Assignment(numbers.get(a.target, a.target), renumber.expression(trees[a.target]))
            for a in kept
        ]
        self.outputs = [renumber.expression(output) for output in self.outputs]

    def inlined(self, target: str, reader: str | None, trees: dict[str | None, ast.expr]) -> bool:
        """Whether `target` could be and was put back into its one use (in `trees`)."""
        value = trees[target]
        put_back = _Substitute(target, value)  # in place; `taken_out` undoes it
        taken_out = _Replace(value, ast.Name(target, ast.Load()))
        if reader is not None:
            trees[reader] = put_back.expression(trees[reader])
            try:
                statement_lines(reader, trees[reader])
            except _Hoist:
                trees[reader] = taken_out.expression(trees[reader])
                return False
            return True
        self.outputs = [put_back.expression(output) for output in self.outputs]
        if any(_output_part(output) is not None for output in self.outputs):
            self.outputs = [taken_out.expression(output) for output in self.outputs]
            return False
        return True


def _names(tree: ast.AST) -> list[str]:
    """The variables `tree` reads, once per read."""
    return [node.id for node in ast.walk(tree) if isinstance(node, ast.Name)]


def _check_round_trip(statement: str, value: ast.expr) -> None:
    """The formatted statement must be the printed one: the same syntax tree."""
    (parsed,) = ast.parse(statement).body
    if not isinstance(parsed, ast.Assign) or ast.dump(parsed.value) != ast.dump(value):
        raise AssertionError(f"formatting changed the generated statement: {statement}")


class _Transformer(ast.NodeTransformer):
    def expression(self, tree: ast.expr) -> ast.expr:
        """`tree` transformed (in place where it is not replaced as a whole)."""
        transformed = self.visit(tree)
        assert isinstance(transformed, ast.expr)
        return transformed


class _Replace(_Transformer):
    """Replaces one node (by identity) in a tree."""

    def __init__(self, old: ast.expr, new: ast.expr) -> None:
        self.old, self.new = old, new

    def visit(self, node: ast.AST) -> ast.AST:
        return self.new if node is self.old else super().visit(node)


class _Rename(_Transformer):
    """Renames variables: `new_name` gives each name's new one."""

    def __init__(self, new_name: Callable[[str], str]) -> None:
        self.new_name = new_name

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.Name(self.new_name(node.id), node.ctx)


class _Substitute(_Transformer):
    """Replaces the variable `name` by an expression."""

    def __init__(self, name: str, value: ast.expr) -> None:
        self.name, self.value = name, value

    def visit_Name(self, node: ast.Name) -> ast.expr:
        return self.value if node.id == self.name else node


def statement_lines(target: str, value: ast.expr) -> list[str]:
    """`target = value` as black lays it out in a function body (raises `_Hoist`)."""
    prefix = f"{target} = "
    if isinstance(value, ast.Call):
        return _call_lines(prefix, value, "", depth=1)
    return [_fitting(prefix + _flat(value), value, depth=1)]


def _fits(line: str, depth: int) -> bool:
    return len(INDENT) * depth + len(line) <= LINE_LENGTH


def _fitting(line: str, node: ast.expr, depth: int) -> str:
    """`line` if it fits; otherwise `node`'s largest operand must be hoisted."""
    if not _fits(line, depth) and (operand := _largest_operand(node)) is not None:
        raise _Hoist(operand)
    return line


def _call_lines(prefix: str, call: ast.Call, suffix: str, depth: int) -> list[str]:
    """`prefix call suffix`, split inside the call's parentheses when too long."""
    line = prefix + _flat(call) + suffix
    if _fits(line, depth):
        return [line]
    head = f"{prefix}{_flat(call.func, _ATOM)}("
    arguments = _arguments(call)
    joined = INDENT + ", ".join(keyword + _flat(value) for keyword, value in arguments)
    if _fits(joined, depth):
        return [head, joined, ")" + suffix]
    comma = "," if len(arguments) > 1 else ""
    lines = [head]
    for keyword, value in arguments:
        if isinstance(value, ast.Call):
            lines += [INDENT + part for part in _call_lines(keyword, value, comma, depth + 1)]
        else:
            lines.append(INDENT + _fitting(keyword + _flat(value) + comma, value, depth + 1))
    lines.append(")" + suffix)
    return lines


def _arguments(call: ast.Call) -> list[tuple[str, ast.expr]]:
    """A call's arguments in order, each with what is written before it (`axis=`)."""
    positional: list[tuple[str, ast.expr]] = [("", argument) for argument in call.args]
    return positional + [
        (f"{keyword.arg}=" if keyword.arg else "**", keyword.value) for keyword in call.keywords
    ]


# What to hoist: an operand of the expression that does not fit, looking through signs.


def _largest_operand(node: ast.expr) -> ast.expr | None:
    """The longest operand of `node` worth a temporary (a sum's terms, a call's arguments).

    A chain of names only (`t0 + t1 + ... + t9`) has its first half hoisted.
    """
    operands = _operands(node)
    worth = [c for c in map(_unsigned, operands) if not _is_atomic(c)]
    if worth:
        return max(worth, key=lambda candidate: len(_flat(candidate)))
    chain = node
    for _ in range(len(operands) // 2 if len(operands) > 2 else 0):
        assert isinstance(chain, ast.BinOp)  # a chain of more than two operands
        chain = chain.left  # its first operands: a sub-expression of their own
    return None if chain is node else chain


def _output_part(output: ast.expr) -> ast.expr | None:
    """What to hoist from a result or mask too long for its line.

    The shortest inner call whose temporary makes the line fit, else the longest one.
    """
    excess = len(_flat(output)) - OUTPUT_WIDTH
    if excess <= 0:
        return None
    calls = [node for node in ast.walk(output) if isinstance(node, ast.Call) and node is not output]
    if not calls:
        return _largest_operand(output)
    lengths = {id(call): len(_flat(call)) for call in calls}
    enough = [call for call in calls if lengths[id(call)] - len("t00") >= excess]
    if enough:
        return min(enough, key=lambda call: lengths[id(call)])
    return max(calls, key=lambda call: lengths[id(call)])


def _operands(node: ast.expr) -> list[ast.expr]:
    match node:
        case ast.BinOp(left=ast.BinOp() as left, op=op, right=right) if _chained(left.op, op):
            return [*_operands(left), right]
        case ast.BinOp(left=left, right=right):
            return [left, right]
        case ast.UnaryOp(operand=operand) | ast.Attribute(value=operand):
            return [operand]
        case ast.Starred(value=operand) | ast.Subscript(value=operand):
            return [operand]
        case ast.Compare(left=left, comparators=comparators):
            return [left, *comparators]
        case ast.BoolOp(values=values) | ast.List(elts=values) | ast.Tuple(elts=values):
            return list(values)
        case ast.IfExp(test=test, body=body, orelse=orelse):
            return [body, test, orelse]
        case ast.Call():
            return [value for _, value in _arguments(node)]
    return []


def _chained(inner: ast.operator, outer: ast.operator) -> bool:
    """Whether `(a inner b) outer c` is one chain `a inner b outer c` of equal precedence."""
    level = _BINARY_OPERATORS[type(outer)][1]
    return _BINARY_OPERATORS[type(inner)][1] == level and level != _POWER


def _unsigned(node: ast.expr) -> ast.expr:
    while isinstance(node, ast.UnaryOp):
        node = node.operand
    return node


def _is_atomic(node: ast.expr) -> bool:
    """A name, a number or an attribute of a name (`p.dtype`): never a temporary."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name | ast.Constant)


# One-line Python text with black's spacing and the fewest parentheses.

_TEST, _OR, _AND, _NOT, _COMPARE, _BIT_OR = 0, 1, 2, 3, 4, 5
_UNARY, _POWER, _ATOM = 11, 12, 13

_BINARY_OPERATORS: dict[type[ast.operator], tuple[str, int]] = {
    ast.BitOr: ("|", _BIT_OR),
    ast.BitXor: ("^", 6),
    ast.BitAnd: ("&", 7),
    ast.LShift: ("<<", 8),
    ast.RShift: (">>", 8),
    ast.Add: ("+", 9),
    ast.Sub: ("-", 9),
    ast.Mult: ("*", 10),
    ast.Div: ("/", 10),
    ast.FloorDiv: ("//", 10),
    ast.Mod: ("%", 10),
    ast.MatMult: ("@", 10),
    ast.Pow: ("**", _POWER),
}
"""Each binary operator's symbol and precedence (higher binds tighter)."""

_UNARY_OPERATORS: dict[type[ast.unaryop], str] = {
    ast.USub: "-",
    ast.UAdd: "+",
    ast.Invert: "~",
}

_COMPARISONS: dict[type[ast.cmpop], str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}


def _flat(node: ast.AST, context: int = _TEST) -> str:
    """`node` on one line, parenthesized where `context` binds tighter than it."""
    text, precedence = _unparse(node)
    return f"({text})" if precedence < context else text


def _unparse(node: ast.AST) -> tuple[str, int]:
    """`node`'s text and precedence."""
    match node:
        case ast.Name(id=name):
            return name, _ATOM
        case ast.Constant(value=value):
            return _constant(value), _ATOM
        case ast.Attribute(value=value, attr=attribute):
            return f"{_flat(value, _ATOM)}.{attribute}", _ATOM
        case ast.Call(func=function):
            arguments = ", ".join(keyword + _flat(value) for keyword, value in _arguments(node))
            return f"{_flat(function, _ATOM)}({arguments})", _ATOM
        case ast.Subscript(value=value, slice=index):
            return f"{_flat(value, _ATOM)}[{_subscript(index)}]", _ATOM
        case ast.List(elts=elements):
            return "[" + ", ".join(_flat(element) for element in elements) + "]", _ATOM
        case ast.Tuple(elts=elements):
            inside = ", ".join(_flat(element) for element in elements)
            return f"({inside},)" if len(elements) == 1 else f"({inside})", _ATOM
        case ast.Starred(value=value):
            return "*" + _flat(value, _BIT_OR), _ATOM
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            return "not " + _flat(operand, _NOT), _NOT
        case ast.UnaryOp(op=op, operand=operand):
            inner = _flat(operand, _UNARY)
            if isinstance(operand, ast.BinOp) and isinstance(operand.op, ast.Pow):
                inner = f"({inner})"  # -(x**2), as ruff writes it
            return _UNARY_OPERATORS[type(op)] + inner, _UNARY
        case ast.BinOp(left=left, op=ast.Pow(), right=right):
            simple = _simple_power_operand(left, False) and _simple_power_operand(right, True)
            spaced = not simple
            power = " ** " if spaced else "**"
            return f"{_flat(left, _POWER + 1)}{power}{_flat(right, _UNARY)}", _POWER
        case ast.BinOp(left=left, op=op, right=right):
            symbol, precedence = _BINARY_OPERATORS[type(op)]
            return f"{_flat(left, precedence)} {symbol} {_flat(right, precedence + 1)}", precedence
        case ast.Compare(left=left, ops=operators, comparators=comparators):
            parts = [_flat(left, _COMPARE + 1)]
            for comparison, comparator in zip(operators, comparators, strict=True):
                parts += [_COMPARISONS[type(comparison)], _flat(comparator, _COMPARE + 1)]
            return " ".join(parts), _COMPARE
        case ast.BoolOp(op=op, values=values):
            word, precedence = (" and ", _AND) if isinstance(op, ast.And) else (" or ", _OR)
            return word.join(_flat(value, precedence + 1) for value in values), precedence
        case ast.IfExp(test=test, body=body, orelse=orelse):
            return f"{_flat(body, _OR)} if {_flat(test, _OR)} else {_flat(orelse)}", _TEST
    raise TypeError(f"no layout for generated {type(node).__name__}")


def _constant(value: object) -> str:
    if value is Ellipsis:
        return "..."
    if isinstance(value, str) and '"' not in value and "'" not in value:
        return '"' + repr(value)[1:-1] + '"'
    if isinstance(value, float):
        return repr(value).replace("e+", "e")  # 1e20, as black writes 1e+20
    return repr(value)


def _subscript(index: ast.AST) -> str:
    if isinstance(index, ast.Tuple):
        return ", ".join(_slice(element) for element in index.elts)
    return _slice(index)


def _slice(node: ast.AST) -> str:
    """A subscript item; a slice with a non-trivial bound gets spaces (`x[1 : n - 1]`)."""
    if not isinstance(node, ast.Slice):
        return _flat(node)
    bounds = [node.lower, node.upper] + ([node.step] if node.step is not None else [])
    simple = all(bound is None or _is_simple(bound) for bound in bounds)
    separator = ":" if simple else " : "
    return separator.join("" if bound is None else _flat(bound) for bound in bounds)


def _is_simple(node: ast.expr) -> bool:
    return isinstance(_unsigned(node), ast.Name | ast.Constant)


def _simple_power_operand(node: ast.expr, signed: bool) -> bool:
    """Black's simple `**` operand (no spaces around the operator): a name, a number, a
    dotted name, or (as the exponent, where it needs no parentheses) one of them negated."""
    if signed and isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int | float) and not isinstance(node.value, bool)
    return _is_atomic(node)
