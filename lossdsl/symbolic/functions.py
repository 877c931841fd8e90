"""The SymPy vocabulary of losses: opaque functions that simplification cannot expand.

SymPy's own `exp`, `log`, `sqrt`, `Abs`, `tanh`, `cosh`, `Pow` and `log1p`/`expm1` (from
`sympy.codegen.cfunctions`) are used as they are. Everything a plain SymPy expression
would write in an overflowing or branchy way is an opaque `sympy.Function` below, so
that `simplify` treats it as a black box. Every class has `definition()`, its meaning in
terms of standard SymPy (elementwise classes) or of the *primitives* (the class-axis and
reduction classes), which only a caller holding concrete index sets can evaluate; the
verifier does that. Lowering, rewriting and printing are left to the other modules.

Conventions shared by all the classes:

- A per-element symbol stands for one element of a tensor; its roles (batch, spatial,
  class) come from `SymbolicLoss.roles`. `roles_of` computes an expression's roles.
- A reduction's second argument `removed` is a SymPy Integer bitmask of the roles it
  removes: batch = 1, spatial = 2, class = 4, partner = 8, partner2 = 16
  (`encode_roles` / `decode_roles`).
- `Other(x, n)` is x at the other sample of each pair (n = 1) or triplet (n = 2), and
  `SAMPLE_INDEX` each sample's position in the batch (LANGUAGE.md 6.5).
- Class ids are integers per element. A class id outside [0, C) selects nothing:
  `OneHot` gives a row of zeros, `Gather` and `TakeClass` give 0.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

import sympy
from mpmath.libmp import prec_to_dps
from sympy.core.logic import fuzzy_and
from sympy.core.relational import Relational
from sympy.logic.boolalg import Boolean, BooleanAtom, BooleanFunction

from lossdsl.typed import (
    NO_ROLES,
    PARTNER_OF,
    PER_SAMPLE,
    Role,
    Roles,
    class_id_roles,
    gather_roles,
    one_hot_roles,
)

ROLE_BITS: dict[Role, int] = {
    Role.BATCH: 1,
    Role.SPATIAL: 2,
    Role.CLASS: 4,
    Role.PARTNER: 8,
    Role.PARTNER2: 16,
}
"""The bit of each role in a reduction's `removed` mask."""

CLASS_MASK = sympy.Integer(ROLE_BITS[Role.CLASS])
"""`removed` for a reduction over the class axis only."""

NUM_CLASSES = sympy.Symbol("C", integer=True, positive=True)
"""`num_classes`: the size of y_pred's last axis, known when the loss runs."""

SAMPLE_INDEX = sympy.Symbol("sample_index", integer=True, nonnegative=True)
"""`sample_index`: each sample's position in the batch (role batch)."""

BUILT_IN_SYMBOL_ROLES: dict[sympy.Symbol, Roles] = {NUM_CLASSES: NO_ROLES, SAMPLE_INDEX: PER_SAMPLE}
"""The roles of the symbols a spec does not declare."""


CONDITIONS = (Relational, BooleanFunction, BooleanAtom)
"""Conditions of selects, which have no derivative (a SymPy Symbol is a Boolean too)."""


def encode_roles(roles: Roles) -> sympy.Integer:
    """The bitmask of a set of roles (a reduction's `removed` argument)."""
    return sympy.Integer(sum(ROLE_BITS[role] for role in roles))


def decode_roles(mask: sympy.Expr | int) -> Roles:
    """The roles a bitmask names (inverse of `encode_roles`)."""
    bits = int(mask)
    return frozenset(role for role, bit in ROLE_BITS.items() if bits & bit)


def known(fact: str, args: Iterable[sympy.Basic]) -> bool | None:
    """Whether every arg has the assumption `fact` (`is_real`...); None where SymPy cannot tell.

    SymPy's assumptions can recurse without end on some products, depending on what its
    caches hold (in 1.14 `Mul._eval_is_integer` and `is_gt` ask each other about ever deeper
    `1 - 1/x`). A fact that cannot be decided is unknown, which is always a safe answer.
    """
    try:
        return fuzzy_and(getattr(arg, f"is_{fact}") for arg in args)
    except RecursionError:
        return None


class LossFunction(sympy.Function):
    """An opaque function of the loss vocabulary; `definition()` gives its meaning.

    Every one is a scalar, so commutative by declaration: SymPy would take it from its
    arguments, and a relational argument (a select's condition) has no answer, which made
    a product with a select in a sub-expression non-commutative, so not real, and its
    comparisons (the derivative of a min or max of it) an error.
    """

    is_commutative = True

    def definition(self) -> sympy.Expr:
        """The expression's meaning in standard SymPy or in the primitives."""
        raise NotImplementedError(type(self).__name__)


class Elementwise(LossFunction):
    """A function applied element by element; its result is real when its arguments are."""

    def _eval_is_real(self) -> bool | None:
        return known("real", self.args)

    def _eval_evalf(self, prec: int) -> sympy.Expr | None:
        if any(_without_value(arg) for arg in self.args):
            return None  # SymPy's "no numeric value", as for a free symbol
        return _definition_value(self, prec_to_dps(prec))


def _without_value(arg: sympy.Basic) -> bool:
    """Whether `arg` is a constant with no number to evaluate to: a reduction over an axis
    whose size only a tensor knows (`sum(log_softmax(0))`), which SymPy's Min and Max in a
    definition refuse (`equals`, inside `simplify`, evaluates at numbers)."""
    return isinstance(arg, sympy.Expr) and bool(arg.is_number) and arg.is_comparable is False


@functools.lru_cache(maxsize=4096)
def _definition_value(expr: Elementwise, digits: int) -> sympy.Expr:
    """`expr`'s definition evaluated to `digits` digits, once: SymPy compares the arguments
    of a Min or Max by evaluating them again and again, which for nested clips of
    constants (`clip(log(clip(c, a, b)), ...)`) took time exponential in the nesting. The
    definition is built unevaluated, so numbers are evaluated in floating point: SymPy
    evaluates polygamma(0, 10000002), `digamma(1 / eps + 2)`, as an exact harmonic number
    of ten million terms (minutes), and gamma of it as a factorial. Arguments that are
    constants are evaluated first: a Min or Max of unevaluated constants compares them
    exactly, and for max(digamma(exp(clip(pi, -5, 5)) + 1), lgamma(clip(softplus(0.5),
    0.1, 2) + eps)) SymPy's comparison recursed past Python's limit (fuzzing)."""
    numbers = [_number_or_itself(arg, digits) for arg in expr.args]
    with sympy.evaluate(False):
        definition = expr.func(*numbers).definition()
    with sympy.evaluate(True):  # also where the caller builds unevaluated (the verifier)
        return definition.evalf(digits)


def _number_or_itself(arg: sympy.Basic, digits: int) -> sympy.Basic:
    """A constant argument as a floating-point number, with ten guard digits beyond
    `digits` (SymPy asks for one or two when it compares); others as they are."""
    if isinstance(arg, sympy.Expr) and arg.is_number and not arg.is_Number:
        with sympy.evaluate(True):
            return arg.evalf(digits + 10)
    return arg


class Special(Elementwise):
    """A special function of one argument (log-gamma, sign): the verifier evaluates it whole,
    with mpmath through its definition and its derivative through `fdiff`, instead of
    expanding the definition (SymPy's own derivative of that is not TensorFlow's)."""


def _indicator(condition: Boolean) -> sympy.Expr:
    """1 where `condition` holds, else 0 (a derivative's selector at a kink)."""
    return Where(condition, sympy.S.One, sympy.S.Zero)


class Sigmoid(Elementwise):
    """sigma(x) = 1 / (1 + exp(-x)), in (0, 1) for real x."""

    nargs = 1

    def definition(self) -> sympy.Expr:
        return 1 / (1 + sympy.exp(-self.args[0]))

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return self * (1 - self)

    def _eval_is_positive(self) -> bool | None:
        return known("real", self.args[:1])


class Softplus(Elementwise):
    """softplus(x) = log(1 + exp(x)), positive for real x, printed without overflow."""

    nargs = 1

    def definition(self) -> sympy.Expr:
        return sympy.log(1 + sympy.exp(self.args[0]))

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return Sigmoid(self.args[0])

    def _eval_is_positive(self) -> bool | None:
        return known("real", self.args[:1])


class Relu(Elementwise):
    """relu(x) = max(x, 0); its derivative is 1 for x > 0, else 0 (TensorFlow's choice)."""

    nargs = 1

    def definition(self) -> sympy.Expr:
        return sympy.Max(self.args[0], 0)

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return _indicator(sympy.StrictGreaterThan(self.args[0], 0))

    def _eval_is_nonnegative(self) -> bool | None:
        return known("real", self.args[:1])


class LogCosh(Elementwise):
    """log(cosh(x)), printed as x + softplus(-2x) - log 2 so that it does not overflow."""

    nargs = 1

    def definition(self) -> sympy.Expr:
        return sympy.log(sympy.cosh(self.args[0]))

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.tanh(self.args[0])

    def _eval_is_nonnegative(self) -> bool | None:
        return known("real", self.args[:1])


class StopGradient(Elementwise):
    """x as a value, with derivative 0."""

    nargs = 1

    def definition(self) -> sympy.Expr:
        return self.args[0]

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.S.Zero

    @classmethod
    def eval(cls, x: sympy.Expr) -> sympy.Expr | None:
        return x if x.is_Number else None


class Clip(Elementwise):
    """clip(x, lo, hi) = min(max(x, lo), hi); d/dx is 1 on [lo, hi], else 0 (as TensorFlow).

    So clip is hi everywhere when lo > hi, as NumPy's, JAX's and PyTorch's clips and
    `keras.ops.clip` on those backends (TensorFlow's clip_by_value gives lo there). The
    derivatives are those of TensorFlow's minimum(maximum(x, lo), hi), ties going to the
    first argument, which for lo <= hi are [lo <= x <= hi], [x < lo] and [x > hi].
    """

    nargs = 3

    def definition(self) -> sympy.Expr:
        x, low, high = self.args
        return sympy.Min(sympy.Max(x, low), high)

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        x, low, high = self.args
        ordered = (high - low).is_nonnegative
        below_high = sympy.LessThan(x if ordered else Maximum(x, low), high)
        selectors: dict[int, Boolean] = {
            1: sympy.And(sympy.GreaterThan(x, low), below_high),
            2: sympy.StrictLessThan(x, low) if ordered else sympy.And(x < low, below_high),
            3: sympy.Not(below_high),
        }
        return _indicator(selectors[argindex])

    @classmethod
    def eval(cls, x: sympy.Expr, low: sympy.Expr, high: sympy.Expr) -> sympy.Expr | None:
        if x.is_Number and low.is_Number and high.is_Number:
            return sympy.Min(sympy.Max(x, low), high)
        return None


class Minimum(Elementwise):
    """min(a, b); the derivative goes to a where a <= b (TensorFlow's tie rule)."""

    nargs = 2

    def definition(self) -> sympy.Expr:
        return sympy.Min(*self.args)

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        a, b = self.args
        first = sympy.LessThan(a, b)
        return _indicator(first if argindex == 1 else sympy.Not(first))

    @classmethod
    def eval(cls, a: sympy.Expr, b: sympy.Expr) -> sympy.Expr | None:
        return sympy.Min(a, b) if a.is_Number and b.is_Number else None


class Maximum(Elementwise):
    """max(a, b); the derivative goes to a where a >= b (TensorFlow's tie rule)."""

    nargs = 2

    def definition(self) -> sympy.Expr:
        return sympy.Max(*self.args)

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        a, b = self.args
        first = sympy.GreaterThan(a, b)
        return _indicator(first if argindex == 1 else sympy.Not(first))

    @classmethod
    def eval(cls, a: sympy.Expr, b: sympy.Expr) -> sympy.Expr | None:
        return sympy.Max(a, b) if a.is_Number and b.is_Number else None


class Where(Elementwise):
    """where(cond, a, b): a where the relational `cond` holds, else b; cond has no derivative."""

    nargs = 3

    def definition(self) -> sympy.Expr:
        condition, a, b = self.args
        return sympy.Piecewise((a, condition), (b, True))

    def _eval_derivative(self, symbol: sympy.Symbol) -> sympy.Expr:
        condition, a, b = self.args
        return Where(condition, a.diff(symbol), b.diff(symbol))

    def _eval_is_real(self) -> bool | None:
        return known("real", self.args[1:])

    @classmethod
    def eval(cls, condition: Boolean, a: sympy.Expr, b: sympy.Expr) -> sympy.Expr | None:
        if condition is sympy.true or a == b:
            return a
        if condition is sympy.false:
            return b
        if isinstance(a, Where) and a.args[0] == condition:  # the inner select is taken
            return Where(condition, a.args[1], b)
        if isinstance(b, Where) and b.args[0] == condition:
            return Where(condition, a, b.args[2])
        return None


class WherePositive(Elementwise):
    """where(x > 0, value, 0) for a value of x's shape that cannot be infinite: a ReLU's
    gradient, which TensorFlow computes in one pass (`codegen.fusions.where_positive`)."""

    nargs = 2

    def definition(self) -> sympy.Expr:
        x, value = self.args
        return Where(sympy.StrictGreaterThan(x, 0), value, sympy.S.Zero).definition()

    def _eval_is_real(self) -> bool | None:
        return known("real", self.args[1:])


class SigmoidGradient(Elementwise):
    """dy * y * (1 - y) for a sigmoid's value y and a dy of its shape: the sigmoid's
    derivative times dy, which TensorFlow computes in one pass
    (`codegen.fusions.sigmoid_derivatives`)."""

    nargs = 2

    def definition(self) -> sympy.Expr:
        y, dy = self.args
        return dy * y * (1 - y)

    def _eval_is_real(self) -> bool | None:
        return known("real", self.args)


class TanhGradient(Elementwise):
    """dy * (1 - y^2) for a tanh's value y and a dy of its shape: the tanh's derivative
    times dy, which TensorFlow computes in one pass (`codegen.fusions.tanh_derivatives`)."""

    nargs = 2

    def definition(self) -> sympy.Expr:
        y, dy = self.args
        return dy * (1 - y**2)

    def _eval_is_real(self) -> bool | None:
        return known("real", self.args)


class Softmax(LossFunction):
    """softmax(z) at a class c: exp(z_c) / sum over the classes c' of exp(z_c'); all roles kept."""

    nargs = 1

    def definition(self) -> sympy.Expr:
        z = self.args[0]
        return sympy.exp(z) / ReduceSum(sympy.exp(z), CLASS_MASK)

    def _eval_is_real(self) -> bool | None:
        return known("real", self.args[:1])

    def _eval_is_positive(self) -> bool | None:
        return known("real", self.args[:1])


class LogSoftmax(LossFunction):
    """log_softmax(z) at a class c: z_c - logsumexp over the classes of z; all roles kept."""

    nargs = 1

    def definition(self) -> sympy.Expr:
        z = self.args[0]
        return z - LogSumExp(z, CLASS_MASK)

    def _eval_is_real(self) -> bool | None:
        return known("real", self.args[:1])

    def _eval_is_nonpositive(self) -> bool | None:
        return self._eval_is_real()  # the log of a softmax, which is at most 1


class CumSum(LossFunction):
    """cumsum(x) at a class c: the sum of x over the classes c' <= c; all roles kept.

    A primitive (its own definition): the verifier sums the classes up to each position.
    """

    nargs = 1

    def definition(self) -> sympy.Expr:
        return self

    def _eval_is_real(self) -> bool | None:
        return known("real", self.args[:1])


class Other(LossFunction):
    """other(x, n): at anchor i and partner j (n = 1) or second partner k (n = 2), x's value
    for sample j (or k). A primitive; roles: x's plus partner (or partner2)."""

    nargs = 2

    @property
    def partner_role(self) -> Role:
        return PARTNER_OF[int(self.args[1])]

    def definition(self) -> sympy.Expr:
        return self

    @classmethod
    def eval(cls, x: sympy.Expr, partner: sympy.Expr) -> sympy.Expr | None:
        return x if x.is_number else None  # the same for every sample (`other(y - y)`)

    def _eval_is_real(self) -> bool | None:
        return known("real", self.args[:1])

    def _eval_is_integer(self) -> bool | None:
        return known("integer", self.args[:1])

    def _eval_is_nonnegative(self) -> bool | None:
        return known("nonnegative", self.args[:1])

    def _eval_is_positive(self) -> bool | None:
        return known("positive", self.args[:1])


class ClassId(LossFunction):
    """class(y): per element, a `label`'s value as is, otherwise the argmax over the classes.

    A primitive (its own definition): the verifier evaluates it on concrete tensors.
    Roles: y's roles without class.
    """

    nargs = 1
    is_integer = True

    def definition(self) -> sympy.Expr:
        return self

    @classmethod
    def eval(cls, y: sympy.Expr) -> sympy.Expr | None:
        return y if y.is_integer else None


class OneHot(LossFunction):
    """onehot(y) at class c: 1 if the label y equals c, else 0 (so 0 for y outside [0, C)).

    A primitive. Roles: the label's roles plus class.
    """

    nargs = 1
    is_integer = True
    is_nonnegative = True

    def definition(self) -> sympy.Expr:
        return self


class ClassesFrom(LossFunction):
    """cumsum(onehot(y)) at class c: 1 if c >= the label y, for y in [0, C); 0 for a
    label outside (its one-hot row is zeros).

    Made by the printer only, one comparison with the class positions where a cumulative
    sum scans the classes (`codegen.fusions.FUSIONS`). Roles: the label's plus class.
    """

    nargs = 1
    is_integer = True
    is_nonnegative = True

    def definition(self) -> sympy.Expr:
        return CumSum(OneHot(self.args[0]))


class Gather(LossFunction):
    """w[index]: the entry of the per-class `vector` at each element's class id (0 outside).

    A primitive. Roles: the index's roles.
    """

    nargs = 2

    def definition(self) -> sympy.Expr:
        return self

    def _eval_is_real(self) -> bool | None:
        return known("real", self.args[:1])


class Channel(LossFunction):
    """x[k]: entry k of x's class axis (k < 0 counts from the end), per element.

    A channel selection (LANGUAGE.md 6.2), a primitive: the verifier picks the position in
    the class axis of x's size. Roles: x's without class.
    """

    nargs = 2

    def definition(self) -> sympy.Expr:
        return self

    @classmethod
    def eval(cls, x: sympy.Expr, index: sympy.Expr) -> sympy.Expr | None:
        return x if x.is_number else None  # a number has no class axis to select from

    def _eval_is_real(self) -> bool | None:
        return known("real", self.args[:1])


class Channels(LossFunction):
    """x[a:b]: entries a to b - 1 of x's class axis, the class role kept (bounds below 0
    count from the end; `stop` is `oo` where the spec leaves it out, `start` 0).

    A primitive, like `Channel`. Roles: x's.
    """

    nargs = 3

    def definition(self) -> sympy.Expr:
        return self

    @classmethod
    def eval(cls, x: sympy.Expr, start: sympy.Expr, stop: sympy.Expr) -> sympy.Expr | None:
        return x if x.is_number else None

    def _eval_is_real(self) -> bool | None:
        return known("real", self.args[:1])


class ChannelSplit(LossFunction):
    """x's class axis cut into consecutive pieces of `sizes` entries and the rest: not a
    value but the pieces a `ChannelFromSplit` or `ChannelsFromSplit` reads, made by a
    target fusion only (`codegen.fusions.channels_split`). Roles: x's."""

    def definition(self) -> sympy.Expr:
        return self

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(int(size) for size in self.args[1:])


class ChannelFromSplit(LossFunction):
    """The `Channel` that is piece `index` of a `ChannelSplit` (one entry). Roles: the
    split's without class, as `Channel`'s."""

    nargs = 2

    def definition(self) -> sympy.Expr:
        return self

    def _eval_is_real(self) -> bool | None:
        return known("real", self.args[0].args[:1])


class ChannelsFromSplit(ChannelFromSplit):
    """The `Channels` that is piece `index` of a `ChannelSplit`. Roles: the split's."""


class IntoChannels(LossFunction):
    """into_channels(v, like, a, b): v at entries a to b - 1 of the class axis of `like`'s
    size (bounds as `Channels`'), 0 at the others; what a channel selection passes back
    to the values it selected from (`symbolic.backward`). Made for the backward pass only.
    Roles: v's plus class.
    """

    nargs = 4

    def definition(self) -> sympy.Expr:
        return self

    def _eval_is_real(self) -> bool | None:
        return known("real", self.args[:1])


class ClassCount(LossFunction):
    """class_count(x): the size of the class axis of x's array, as a number: C, or 1 for
    a `target` y_true of one class (LANGUAGE.md 6.2). What a class sum of x's rows
    broadcast to another class axis counts (`class_sum`). Made for the backward pass
    only. No roles."""

    nargs = 1

    def definition(self) -> sympy.Expr:
        return self

    def _eval_is_positive(self) -> bool | None:
        return True


class ChannelsJoined(LossFunction):
    """channels_joined(like, v1, a1, b1, v2, a2, b2, ...): the sum of
    `IntoChannels(v_i, like, a_i, b_i)` for disjoint slices of numbers 0 <= a_i < b_i,
    values of one set of roles each with the class role or a single channel; what a
    selection of several channels passes back (`symbolic.backward`), printed as one
    concatenation. Roles: the values' plus class.
    """

    def definition(self) -> sympy.Expr:
        like, *flat = self.args
        pieces = zip(flat[0::3], flat[1::3], flat[2::3], strict=True)
        return sympy.Add(*(IntoChannels(v, like, a, b) for v, a, b in pieces))

    @property
    def pieces(self) -> list[tuple[sympy.Expr, int, int]]:
        """(values, start, stop) of each slice, by start."""
        flat = self.args[1:]
        found = zip(flat[0::3], flat[1::3], flat[2::3], strict=True)
        return sorted(((v, int(a), int(b)) for v, a, b in found), key=lambda piece: piece[1])

    def _eval_is_real(self) -> bool | None:
        return known("real", self.args[1::3])


class TakeClass(LossFunction):
    """x at the label's class, per element: sum over the classes of onehot(label) * x.

    The gather that replaces a one-hot product (0 for a label outside [0, C)). Roles: x's
    roles without class, united with the label's.
    """

    nargs = 2

    def definition(self) -> sympy.Expr:
        x, label = self.args
        return ReduceSum(OneHot(label) * x, CLASS_MASK)

    def _eval_is_real(self) -> bool | None:
        return known("real", self.args[:1])


class SoftmaxCrossEntropy(LossFunction):
    """-sum over the classes of y * log_softmax(z), per element without the class role.

    Made by the printer only, for TensorFlow's fused op (`codegen.fusions.FUSIONS`).
    Roles: z's (and y's) without class.
    """

    nargs = 2

    def definition(self) -> sympy.Expr:
        y, z = self.args
        return -ReduceSum(y * LogSoftmax(z), CLASS_MASK)


class SparseSoftmaxCrossEntropy(LossFunction):
    """-log_softmax(z) at the label's class, per element (0 for a label outside [0, C)).

    Made by the printer only, for TensorFlow's fused op (`codegen.fusions.FUSIONS`).
    Roles: z's without class, united with the label's.
    """

    nargs = 2

    def definition(self) -> sympy.Expr:
        z, label = self.args
        return -TakeClass(LogSoftmax(z), label)


class InverseCount(LossFunction):
    """1 / the number of elements a reduction over the roles in the bitmask `removed`
    combines: what a mean passes back per element (`symbolic.backward`). Printed from
    integer sizes in the accumulation dtype, so that a count beyond float16's range is
    no infinity."""

    nargs = 1

    @property
    def removed_roles(self) -> Roles:
        return decode_roles(self.args[0])

    def definition(self) -> sympy.Expr:
        return 1 / ReduceSum(sympy.S.One, self.args[0])

    def _eval_is_positive(self) -> bool | None:
        return True


class Parenthesized(LossFunction):
    """x itself, computed apart from the product it is a factor of: the printer groups a
    product's factors with fewer roles (numbers, params, the upstream gradient), so that
    they multiply each other before the whole-shaped ones (`codegen.printer`)."""

    nargs = 1

    def definition(self) -> sympy.Expr:
        return self.args[0]

    def _eval_is_real(self) -> bool | None:
        return known("real", self.args)


def label_is_class(label: sympy.Expr) -> sympy.Basic:
    """Whether a label is a class, in [0, C): where its one-hot row is not all zeros."""
    return sympy.And(label >= 0, label < NUM_CLASSES)


def label_in_range(label: sympy.Expr) -> sympy.Expr:
    """1 where a label is a class, in [0, C), else 0: sum(onehot(label)) over the classes
    (`ReduceSum.eval`), per label, not a pass over them."""
    return Where(label_is_class(label), sympy.S.One, sympy.S.Zero)


class PairDot(LossFunction):
    """sum over the classes of a * other(b, n): the inner products of each sample's row of
    a with every sample's row of b, [batch, partner n].

    Made by the printer only, for one matrix product (`codegen.fusions.FUSIONS`). Roles:
    a's and b's without class, plus the partner role of n.
    """

    nargs = 3

    @property
    def partner_role(self) -> Role:
        return PARTNER_OF[int(self.args[2])]

    def definition(self) -> sympy.Expr:
        a, b, partner = self.args
        return ReduceSum(a * Other(b, partner), CLASS_MASK)

    def _eval_is_real(self) -> bool | None:
        return known("real", self.args[:2])


class PairSquaredDistance(PairDot):
    """sum over the classes of (a - other(b, n))^2: the squared Euclidean distances of
    each sample's row of a to every sample's row of b, [batch, partner n].

    Made by the printer only, for one matrix product and two row norms
    (`codegen.fusions.FUSIONS`). Roles: PairDot's.
    """

    def definition(self) -> sympy.Expr:
        a, b, partner = self.args
        return ReduceSum((a - Other(b, partner)) ** 2, CLASS_MASK)

    def _eval_is_nonnegative(self) -> bool | None:
        return known("real", self.args[:2])


class SoftplusPair(Elementwise):
    """a * softplus(-x) + b * softplus(x): binary cross-entropy on logits and its kin.

    Made by the printer only, for the module's `softplus_pair` helper
    (`codegen.fusions.FUSIONS`). Roles: the union of its arguments'.
    """

    nargs = 3

    def definition(self) -> sympy.Expr:
        a, b, x = self.args
        return a * Softplus(-x) + b * Softplus(x)


class ClippedLog(Elementwise):
    """log(clip(x, lo, hi)) for numbers lo and hi: cross-entropy on probabilities.

    Made by the printer only, for the module's `_clipped_log` helper
    (`codegen.fusions.FUSIONS`). Roles: x's.
    """

    nargs = 3

    def definition(self) -> sympy.Expr:
        return sympy.log(Clip(*self.args))


class Huber(Elementwise):
    """huber(x, delta) = where(|x| <= delta, x^2 / 2, delta * (|x| - delta / 2)), delta > 0.

    Made by the printer only, for the module's `_huber` helper
    (`codegen.fusions.FUSIONS`). Roles: the union of its arguments'.
    """

    nargs = 2

    def definition(self) -> sympy.Expr:
        x, delta = self.args
        size = sympy.Abs(x)
        return Where(sympy.LessThan(size, delta), x**2 / 2, delta * (size - delta / 2))


class Reduction(LossFunction):
    """A reduction f(x, removed) over the roles in the bitmask `removed`, kept at rank.

    Roles: x's roles without the removed ones. The reduction runs over every axis of the
    removed roles (class: the last axis; spatial: the axes between batch and class;
    batch: the first axis).
    """

    nargs = 2

    @property
    def removed_roles(self) -> Roles:
        return decode_roles(self.args[1])

    def definition(self) -> sympy.Expr:
        return self

    def _eval_is_real(self) -> bool | None:
        return known("real", self.args[:1])


class ReduceSum(Reduction):
    """The sum over the removed roles (a primitive)."""

    @classmethod
    def eval(cls, x: sympy.Expr, removed: sympy.Expr) -> sympy.Expr | None:
        if isinstance(x, OneHot) and removed == CLASS_MASK:  # a select per label, not a
            return label_in_range(x.args[0])  # pass over the classes
        return sympy.S.Zero if x.is_zero else None  # what cancelled (`sum(y - y)`)

    def _eval_is_nonnegative(self) -> bool | None:
        return known("nonnegative", self.args[:1])

    def _eval_is_positive(self) -> bool | None:
        return known("positive", self.args[:1])


class ReduceMean(Reduction):
    """The mean over the removed roles (a primitive; class: divided by C)."""

    @classmethod
    def eval(cls, x: sympy.Expr, removed: sympy.Expr) -> sympy.Expr | None:
        return x if x.is_number else None  # the mean of one value repeated

    def _eval_is_nonnegative(self) -> bool | None:
        return known("nonnegative", self.args[:1])

    def _eval_is_positive(self) -> bool | None:
        return known("positive", self.args[:1])


class ReduceMax(Reduction):
    """The maximum over the removed roles (a primitive)."""

    @classmethod
    def eval(cls, x: sympy.Expr, removed: sympy.Expr) -> sympy.Expr | None:
        return x if x.is_number else None


class ReduceMin(Reduction):
    """The minimum over the removed roles (a primitive)."""

    @classmethod
    def eval(cls, x: sympy.Expr, removed: sympy.Expr) -> sympy.Expr | None:
        return x if x.is_number else None


class LogSumExp(Reduction):
    """log(sum(exp(x))) over the removed roles, computed without overflow."""

    def definition(self) -> sympy.Expr:
        x, removed = self.args
        return sympy.log(ReduceSum(sympy.exp(x), removed))


class LogSumExpShift(Reduction):
    """The shift m of log(sum(exp(x))) = m + log(sum(exp(x - m))) over the removed
    roles: the largest x, 0 where that is not finite (a row of -inf then gives -inf,
    not NaN). Made by a target fusion (`codegen.fusions.log_sum_exp_shared`); the value
    does not depend on it, so it is a constant of the gradient."""

    def definition(self) -> sympy.Expr:
        return ReduceMax(*self.args)


class LogOfSum(Reduction):
    """log(sum(x)) over the removed roles, the log taken before a half-precision sum is
    cast back (a shifted log-sum-exp's sum of 65,536 ones is inf in float16). Made by a
    target fusion (`codegen.fusions.log_sum_exp_shared`)."""

    def definition(self) -> sympy.Expr:
        x, removed = self.args
        return sympy.log(ReduceSum(x, removed))


PRIMITIVES: tuple[type[LossFunction], ...] = (
    Other,
    ClassId,
    OneHot,
    Gather,
    Channel,
    Channels,
    CumSum,
    ReduceSum,
    ReduceMean,
    ReduceMax,
    ReduceMin,
)
"""The classes whose definition is themselves: evaluated over concrete index sets."""


def expand_definitions(expr: sympy.Basic) -> sympy.Basic:
    """`expr` with every non-primitive loss function replaced by its definition."""
    if not expr.args:
        return expr
    expanded = expr.func(*(expand_definitions(arg) for arg in expr.args))
    if isinstance(expanded, LossFunction) and not isinstance(expanded, PRIMITIVES):
        return expand_definitions(expanded.definition())
    return expanded


def _without_class(roles: Roles) -> Roles:
    return roles - {Role.CLASS}


def _pair_roles(roles: list[Roles], expr: sympy.Basic) -> Roles:
    assert isinstance(expr, PairDot)
    return _without_class(roles[0] | roles[1]) | {expr.partner_role}


_ROLE_RULES: dict[type[LossFunction], Callable[[list[Roles], sympy.Basic], Roles]] = {
    Other: lambda roles, expr: roles[0] | {expr.partner_role},
    ClassId: lambda roles, expr: class_id_roles(roles[0]),
    OneHot: lambda roles, expr: one_hot_roles(roles[0]),
    ClassesFrom: lambda roles, expr: one_hot_roles(roles[0]),
    Gather: lambda roles, expr: gather_roles(roles[0], roles[1]),
    TakeClass: lambda roles, expr: gather_roles(roles[0], roles[1]),
    Channel: lambda roles, expr: _without_class(roles[0]),
    Channels: lambda roles, expr: roles[0],
    ChannelFromSplit: lambda roles, expr: _without_class(roles[0]),
    ChannelsFromSplit: lambda roles, expr: roles[0],
    CumSum: lambda roles, expr: roles[0] | {Role.CLASS},  # a running count of a constant too
    IntoChannels: lambda roles, expr: roles[0] | {Role.CLASS},
    ClassCount: lambda roles, expr: NO_ROLES,
    ChannelsJoined: lambda roles, expr: frozenset().union(*roles[1::3]) | {Role.CLASS},
    SoftmaxCrossEntropy: lambda roles, expr: _without_class(roles[0] | roles[1]),
    PairDot: _pair_roles,
    PairSquaredDistance: _pair_roles,
    SparseSoftmaxCrossEntropy: lambda roles, expr: gather_roles(roles[0], roles[1]),
}
"""The role rules of the functions whose roles are not their arguments' union; the
checker's class ids, one-hots and gathers use the same rules (`lossdsl.typed`)."""


def comparison(relation: type[Relational], left: sympy.Expr, right: sympy.Expr) -> Boolean:
    """`relation(left, right)` kept as written (`x == x` is False at NaN; a mask's
    `loss > 0`, whose sides SymPy cannot prove real where a branch is -inf, would be
    refused), but a truth value where both sides are numbers (`1 < 2`), as arithmetic of
    numbers folds: printed as written it would be a Python bool, which no framework's
    select takes as a tensor."""
    return relation(left, right, evaluate=bool(left.is_Number and right.is_Number))


def taken_out(term: sympy.Expr, factors: Iterable[sympy.Basic]) -> sympy.Expr:
    """`term` less `factors`, each one of its own factors: taken out, not divided by,
    since SymPy's division keeps the powers x^(a - 1) and x^(1 - a) apart (it merges
    exponents with the same terms only), which the next level would take out again,
    doubling the exponents for ever."""
    factors_left = list(sympy.Mul.make_args(term))
    for factor in factors:
        factors_left.remove(factor)
    return sympy.Mul(*factors_left)


def is_count(node: sympy.Basic) -> bool:
    """Whether `node` is the number of elements of some roles (`symbolic.backward.count`)
    or of an array's classes (`ClassCount`): a size, printed from integer sizes."""
    return (isinstance(node, ReduceSum) and node.args[0] == 1) or isinstance(node, ClassCount)


def with_args(node: sympy.Basic, args: Sequence[sympy.Basic]) -> sympy.Basic:
    """`node` with the arguments `args`: itself where they are its own; a comparison as
    `comparison` builds it, and |x| of an x SymPy cannot prove real as |x|."""
    if not args or tuple(args) == node.args:
        return node
    if isinstance(node, Relational):
        return comparison(node.func, *args)
    if isinstance(node, sympy.Abs) and args[0].is_extended_real is None:
        # a value of the language is real (or NaN); SymPy would take one it cannot
        # prove real for complex, and write sqrt(x * conjugate(x)), expanded
        return sympy.Abs(args[0], evaluate=False)
    return node.func(*args)


Folded = TypeVar("Folded")


def fold(
    expr: sympy.Basic,
    combine: Callable[[sympy.Basic, list[Folded]], Folded],
    memo: dict[sympy.Basic, Folded] | None = None,
) -> Folded:
    """`combine(node, values of its args)` at every distinct node of `expr`, children
    first and without recursion: the value at `expr`.

    Each shared sub-expression is combined once (and once across calls given the same
    `memo`): SymPy's own walks (`free_symbols`, `has`) follow every path, exponential in
    the nesting of guards and tournaments of selects, which repeat their operands.
    """
    done: dict[sympy.Basic, Folded] = {} if memo is None else memo
    stack = [expr]
    while stack:
        node = stack[-1]
        if node in done:
            stack.pop()
            continue
        pending = [arg for arg in node.args if arg not in done]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        done[node] = combine(node, [done[arg] for arg in node.args])
    return done[expr]


def nodes_of(
    roots: Iterable[sympy.Basic],
    children: Callable[[sympy.Basic], Iterable[sympy.Basic]] = lambda node: node.args,
) -> set[sympy.Basic]:
    """Every distinct sub-expression of `roots` (each visited once, without recursion),
    reached through `children` (a node's arguments, unless the caller reads nodes
    otherwise, as the printer does)."""
    seen: set[sympy.Basic] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(children(node))
    return seen


def roles_of(
    expr: sympy.Basic,
    symbol_roles: Mapping[sympy.Symbol, Roles],
    memo: dict[sympy.Basic, Roles] | None = None,
) -> Roles:
    """The roles of an expression's value, given each symbol's roles (others have none).

    Each distinct sub-expression is visited once (and once across calls given the same
    `memo`): guarded branches share large ones.
    """
    found: dict[sympy.Basic, Roles] = {} if memo is None else memo

    def visit(node: sympy.Basic) -> Roles:
        if node not in found:
            found[node] = _roles_from_args(node, symbol_roles, visit)
        return found[node]

    return visit(expr)


def _roles_from_args(
    expr: sympy.Basic,
    symbol_roles: Mapping[sympy.Symbol, Roles],
    roles: Callable[[sympy.Basic], Roles],
) -> Roles:
    if isinstance(expr, sympy.Symbol):
        return symbol_roles.get(expr, BUILT_IN_SYMBOL_ROLES.get(expr, NO_ROLES))
    if isinstance(expr, Reduction):
        return roles(expr.args[0]) - expr.removed_roles
    arg_roles = [roles(arg) for arg in expr.args]
    rule = _ROLE_RULES.get(type(expr))
    if rule is not None:
        return rule(arg_roles, expr)
    return frozenset().union(*arg_roles)


def mean_of_everything(
    expr: sympy.Basic, symbol_roles: Mapping[sympy.Symbol, Roles]
) -> sympy.Basic:
    """The mean of a result over all its elements (Keras's default reduction), a scalar.

    The mean goes into the terms of a sum and past factors with no role, and a mean or a
    sum of the result's own takes the result's roles into the ones it removes: the mean of
    row means is the mean of everything (every row has as many entries), the mean of row
    sums the sum of everything over the rows, one reduction, not two."""
    memo: dict[sympy.Basic, Roles] = {}

    def mean(node: sympy.Basic) -> sympy.Basic:
        roles = roles_of(node, symbol_roles, memo)
        if not roles:
            return node
        if isinstance(node, sympy.Add):
            return sympy.Add(*map(mean, node.args))
        if isinstance(node, sympy.Mul):
            constant = [f for f in node.args if not roles_of(f, symbol_roles, memo)]
            if constant:
                rest = sympy.Mul(*(f for f in node.args if f not in constant))
                return sympy.Mul(*constant, mean(rest))
        if isinstance(node, ReduceMean):
            return ReduceMean(node.args[0], encode_roles(node.removed_roles | roles))
        if isinstance(node, ReduceSum):  # the mean of row sums: their sum over the rows
            total = ReduceSum(node.args[0], encode_roles(node.removed_roles | roles))
            return total * InverseCount(encode_roles(roles))
        return ReduceMean(node, encode_roles(roles))

    return mean(expr)


def has_the_class_axis_of(
    expr: sympy.Basic,
    source: sympy.Basic,
    roles: Callable[[sympy.Basic], Roles],
    wide: frozenset[sympy.Symbol] = frozenset(),
    memo: dict[sympy.Basic, bool] | None = None,
) -> bool:
    """Whether `expr` has the class axis of `source` (y_pred, or a slice of it) at run
    time: it reads `source` through elementwise operations that keep the class role, or
    a value C wide by its making (a one-hot row, channels put back, an input of `wide`
    by its kind), which can meet a slice only where the slice is C wide too. y_true's
    class axis may have size 1 where y_pred's does not (LANGUAGE.md 6.2), and a value with
    only that axis has y_true's size. `memo` keeps the answers of one source's calls."""

    def combine(node: sympy.Basic, args: list[bool]) -> bool:
        if node == source:
            return True
        if Role.CLASS not in roles(node):
            return False
        if node in wide or isinstance(node, OneHot | ClassesFrom | IntoChannels | ChannelsJoined):
            return True
        return not isinstance(node, Channels) and any(args)

    return fold(expr, combine, memo)


def one_hot_row(factors: Sequence[sympy.Basic]) -> OneHot | None:
    """The label's one-hot row among a product's factors, where there is exactly one."""
    rows = [factor for factor in factors if isinstance(factor, OneHot)]
    return rows[0] if len(rows) == 1 else None


def picked_class(
    factors: tuple[sympy.Basic, ...], symbol_roles: Mapping[sympy.Symbol, Roles]
) -> sympy.Expr | None:
    """The sum over the classes of the product of `factors`, where one of them is a label's
    one-hot row and others have the class role: those others at the label's class (the
    gather `TakeClass`, 0 for a label outside [0, C), as the row is) times the rest.
    sum(a * onehot(y) * softmax(z)) is a * softmax(z)[y], the forward pass's own
    probability of the true class. None without exactly one one-hot row, or without a
    factor to gather (a sum of a * onehot(y) alone is whether y is a class)."""
    if (row := one_hot_row(factors)) is None:
        return None
    others = [factor for factor in factors if factor is not row]
    per_class = [factor for factor in others if Role.CLASS in roles_of(factor, symbol_roles)]
    if not per_class:
        return None
    rest = [factor for factor in others if factor not in per_class]
    return sympy.Mul(*rest) * TakeClass(sympy.Mul(*per_class), row.args[0])


def class_sum(
    expr: sympy.Expr,
    rows_summing_to_one: frozenset[sympy.Symbol],
    symbol_roles: Mapping[sympy.Symbol, Roles],
) -> sympy.Expr | None:
    """The sum of `expr` over the class axis, in closed form, where `expr` is affine in
    inputs whose rows sum to 1 and softmaxes: k * y sums to k and m to C * m, for k and m
    without the class role (label smoothing's y * (1 - s) + s / C sums to 1; a mean's
    1 / C, the backward pass's `InverseCount`, cancels the C; a logsumexp's derivative
    softmax(x) sums to 1), and a label's one-hot row times class-shaped factors sums to
    their gather (`picked_class`). None otherwise."""
    per_class = InverseCount(CLASS_MASK)
    total = sympy.Integer(0)
    # gathers stay out of the simplification, which puts the 1 of a select's condition
    # y == 1 into a gather's label y (a float label, which the printed gather refuses)
    gathered = sympy.Integer(0)
    for term in sympy.Add.make_args(sympy.expand(expr)):
        factors = sympy.Mul.make_args(term)
        if (picked := picked_class(factors, symbol_roles)) is not None:
            gathered += picked
            continue
        rows = [f for f in factors if _sums_to_one(f, rows_summing_to_one)]
        rest = sympy.Mul(*(f for f in factors if f not in rows))
        if len(rows) > 1 or Role.CLASS in roles_of(rest, symbol_roles):
            return None
        if rows and isinstance(rows[0], IntoChannels):  # broadcast to another class axis
            values, like = rows[0].args[:2]
            total += rest * ClassCount(like) / ClassCount(values)
        elif rows:
            total += rest
        elif per_class in factors:
            total += rest / per_class
        else:
            total += NUM_CLASSES * rest
    return _simplified(total) + gathered


def _sums_to_one(factor: sympy.Basic, rows_summing_to_one: frozenset[sympy.Symbol]) -> bool:
    """Whether `factor`'s rows sum to 1 over its class axis: an input of such rows, a
    softmax, or one of those broadcast to all of another class axis (a `target` y_true's
    softmax beside y_pred's classes, ListNet's), whose rows sum to that axis's size over
    its own (`ClassCount`)."""
    if isinstance(factor, IntoChannels) and factor.args[2:] == (0, sympy.oo):
        factor = factor.args[0]
    return factor in rows_summing_to_one or isinstance(factor, Softmax)


def _simplified(total: sympy.Expr) -> sympy.Expr:
    """SymPy's `simplify` of a closed-form class sum, which cancels what the terms share
    (label smoothing's (1 - s) + s), unless it holds conditions: simplifying the
    relationals of selects took minutes (a fuzzed spec: 351 s of a 359 s compile)."""
    if any(isinstance(node, CONDITIONS) for node in sympy.preorder_traversal(total)):
        return total
    return sympy.simplify(total)
