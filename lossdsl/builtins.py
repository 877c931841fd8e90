"""The one table of built-in functions and constants: everything each one means, one row each.

A row (`Builtin`) holds how a built-in is called (arity, keywords, defaults, role rule),
what it means (`meaning`: its SymPy form, from which the domain analysis and the
verifier evaluate it in float64 and mpmath, see `symbolic.numeric`), how its values
behave (`shape`, `domain`, `pole_free`, `differentiable`), how each backend spells it
(`calls`: a TensorFlow, a JAX and a PyTorch call, or None where the printers have a
method for its SymPy class), how `explain` shows it (`latex`; the spec text is its
name) and its docs. The checker, lowering, the domain analysis, the printers, the
verifier and `lossdsl explain` all read this table; adding a function means adding one
row here and its tests (docs/ARCHITECTURE.md, "Adding a built-in").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

import sympy
from sympy.codegen.cfunctions import expm1, log1p

from lossdsl.symbolic import functions as fn


class RoleRule(Enum):
    """How a built-in's result roles follow from its arguments' roles."""

    ELEMENTWISE = "elementwise"  # arguments' roles must nest; result has their union
    CLASS_AXIS = "class_axis"  # argument must have the class role; result keeps roles
    REDUCTION = "reduction"  # removes roles as chosen by `axis` (LANGUAGE.md section 2)
    CLASS_ID = "class_id"  # class(y): a y_true input's class id per element (integer)
    ONE_HOT = "one_hot"  # onehot(y): a `label` input as a one-hot over the class axis
    WHERE = "where"  # where(cond, a, b): cond is a comparison; all three nest
    OTHER = "other"  # other(x, n): x (with batch, no partner role) plus the n-th partner role


class Shape(Enum):
    """How a built-in's value range follows from its first argument's (`analysis.ranges`)."""

    INCREASING = "increasing"  # strictly: the ends map to the ends (past the poles, if any)
    DECREASING = "decreasing"  # strictly: the ends map to the swapped ends
    EVEN = "even"  # f(|x|), increasing in |x| (abs, cosh)
    ARGUMENT = "argument"  # within its argument's range (stop_gradient, mean, max, min)
    CUSTOM = "custom"  # a rule of its own in `analysis.ranges.CUSTOM_RANGES`


@dataclass(frozen=True)
class Domain:
    """Where a one-argument built-in is defined: NaN below `edge` and `at_edge` at it
    (log), or not finite at the poles 0, -1, -2, ... (lgamma, digamma)."""

    help: str
    edge: float = -math.inf
    at_edge: str | None = None  # "-inf" for log; None where the value is finite (sqrt)
    nan_gradient: bool = False  # whether the gradient is NaN too where the value is
    poles: bool = False  # not finite at any integer <= 0


Meaning = Callable[[tuple[sympy.Expr, ...], sympy.Integer], sympy.Expr]
"""A built-in's SymPy form, given its lowered arguments and the roles it removes."""


class Calls(NamedTuple):
    """A built-in's call in each backend's generated code (`codegen.targets.TARGETS`)."""

    tensorflow: str
    jax: str
    torch: str


@dataclass(frozen=True)
class Builtin:
    """One built-in function: how it is called, what it means, how it is checked and shown."""

    name: str
    min_args: int
    max_args: int
    role_rule: RoleRule
    doc: str
    meaning: Meaning
    function: type | None = None  # the SymPy class `meaning` makes (None: plain arithmetic)
    keywords: tuple[str, ...] = ()
    defaults: tuple[float, ...] = ()  # the omitted trailing arguments: clip(x)
    shape: Shape = Shape.CUSTOM
    domain: Domain | None = None
    pole_free: bool = False  # infinite only where an argument is, or where it overflows
    differentiable: bool = True  # whether a gradient flows through it to its arguments
    calls: Calls | None = None  # one call per backend with the same arguments
    latex: str | None = None  # its LaTeX operator (None: SymPy's own, or a printer method)


class Lgamma(fn.Special):
    """lgamma(x) = log|Gamma(x)|, as TensorFlow's and C's lgamma: +inf at 0, -1, -2, ..."""

    nargs = 1

    def definition(self) -> sympy.Expr:
        return sympy.log(sympy.Abs(sympy.gamma(self.args[0])))

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return Digamma(self.args[0])


class Digamma(fn.Special):
    """digamma(x) = d/dx lgamma(x), SymPy's polygamma(0, x): poles at 0, -1, -2, ..."""

    nargs = 1

    def definition(self) -> sympy.Expr:
        return sympy.polygamma(0, self.args[0])

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return Trigamma(self.args[0])


class Trigamma(fn.Special):
    """trigamma(x) = d/dx digamma(x), SymPy's polygamma(1, x): digamma's derivative in a
    loss's own backward pass (no built-in makes it); poles at 0, -1, -2, ..."""

    nargs = 1

    def definition(self) -> sympy.Expr:
        return sympy.polygamma(1, self.args[0])

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.polygamma(2, self.args[0])


class Sign(fn.Special):
    """sign(x) in {-1, 0, 1}; its derivative is 0 everywhere (TensorFlow's gradient)."""

    nargs = 1

    def definition(self) -> sympy.Expr:
        return sympy.sign(self.args[0])

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.S.Zero


def _unevaluated(function: type[sympy.Function]) -> Meaning:
    """SymPy's own function without its automatic evaluation (slow on long arguments)."""
    return lambda args, removed: function(*args, evaluate=False)


def _applied(function: Callable[..., sympy.Expr]) -> Meaning:
    return lambda args, removed: function(*args)


def _elementwise(
    name: str,
    doc: str,
    function: type[sympy.Function],
    calls: Calls | tuple[str, str, str] | None,
    latex: str | None = None,
    arity: int = 1,
    **facts: object,
) -> Builtin:
    """A function of `arity` arguments, each value mapped to one value."""
    sympy_own = not issubclass(function, fn.LossFunction)  # built unevaluated, see above
    return Builtin(
        name,
        arity,
        arity,
        RoleRule.ELEMENTWISE,
        doc,
        _unevaluated(function) if sympy_own else _applied(function),
        function,
        calls=None if calls is None else Calls(*calls),
        latex=latex,
        **facts,  # type: ignore[arg-type]
    )


def _reduction(
    name: str,
    doc: str,
    function: type[fn.Reduction],
    calls: tuple[str, str, str],
    latex: str,
) -> Builtin:
    return Builtin(
        name,
        1,
        1,
        RoleRule.REDUCTION,
        doc,
        lambda args, removed: function(args[0], removed) if removed else args[0],
        function,
        keywords=("axis", "where"),
        shape=Shape.CUSTOM if name in ("sum", "logsumexp") else Shape.ARGUMENT,
        pole_free=True,
        calls=Calls(*calls),
        latex=latex,
    )


EPSILON = 1e-7
"""`eps`: Keras's default fuzz factor."""

POLE_HELP = (
    "`{name}` is infinite at 0, -1, -2, ...: keep its argument positive for every value the "
    "kinds and domains allow, e.g. `{name}(x + eps)` with `x: nonneg`"
)

BUILTIN_LIST: tuple[Builtin, ...] = (
    _elementwise(
        "abs",
        "absolute value |x|",
        sympy.Abs,
        ("tf.math.abs", "_abs", "torch.abs"),
        shape=Shape.EVEN,
    ),
    _elementwise(
        "exp",
        "e^x",
        sympy.exp,
        ("tf.math.exp", "jnp.exp", "torch.exp"),
        shape=Shape.INCREASING,
        pole_free=True,
    ),
    _elementwise(
        "log",
        "natural logarithm; -inf at 0, NaN below",
        sympy.log,
        ("tf.math.log", "jnp.log", "torch.log"),
        shape=Shape.INCREASING,
        domain=Domain(
            "`log` is NaN below 0 and -inf at 0: make its argument positive for every value "
            "the kinds and domains allow",
            edge=0.0,
            at_edge="-inf",
        ),
    ),
    _elementwise(
        "log1p",
        "log(1 + x), accurate near x = 0",
        log1p,
        ("tf.math.log1p", "jnp.log1p", "torch.log1p"),
        r"\operatorname{log1p}",
        shape=Shape.INCREASING,
        domain=Domain(
            "`log1p` is NaN below -1 and -inf at -1: keep its argument above -1 for every "
            "value the kinds and domains allow",
            edge=-1.0,
            at_edge="-inf",
        ),
    ),
    _elementwise(
        "expm1",
        "exp(x) - 1, accurate near x = 0",
        expm1,
        ("tf.math.expm1", "jnp.expm1", "torch.expm1"),
        r"\operatorname{expm1}",
        shape=Shape.INCREASING,
        pole_free=True,
    ),
    Builtin(
        "sqrt",
        1,
        1,
        RoleRule.ELEMENTWISE,
        "square root; infinite gradient at 0",
        _applied(sympy.sqrt),
        shape=Shape.INCREASING,
        domain=Domain(
            "`sqrt` is NaN below 0: make its argument non-negative for every value the kinds "
            "and domains allow, e.g. `sqrt(square(x) + eps)`",
            edge=0.0,
            nan_gradient=True,
        ),
    ),
    Builtin(  # the checker spells it x^2 (`checker.REWRITTEN_CALLS`)
        "square", 1, 1, RoleRule.ELEMENTWISE, "x^2", _applied(lambda x: x**2), shape=Shape.EVEN
    ),
    _elementwise(
        "sigmoid",
        "1 / (1 + exp(-x))",
        fn.Sigmoid,
        ("tf.math.sigmoid", "jax.nn.sigmoid", "torch.sigmoid"),
        r"\sigma",
        shape=Shape.INCREASING,
    ),
    _elementwise(
        "softplus",
        "log(1 + exp(x)), computed without overflow",
        fn.Softplus,
        ("tf.math.softplus", "jax.nn.softplus", "torch.nn.functional.softplus"),
        r"\operatorname{softplus}",
        shape=Shape.INCREASING,
        pole_free=True,
    ),
    _elementwise(
        "tanh",
        "hyperbolic tangent",
        sympy.tanh,
        ("tf.math.tanh", "jnp.tanh", "torch.tanh"),
        shape=Shape.INCREASING,
    ),
    _elementwise(
        "relu",
        "max(x, 0)",
        fn.Relu,
        ("tf.nn.relu", "jax.nn.relu", "torch.relu"),
        r"\operatorname{relu}",
        pole_free=True,
    ),
    _elementwise(
        "cosh",
        "hyperbolic cosine",
        sympy.cosh,
        ("tf.math.cosh", "jnp.cosh", "torch.cosh"),
        shape=Shape.EVEN,
        pole_free=True,
    ),
    _elementwise(
        "erf",
        "the error function, in (-1, 1)",
        sympy.erf,
        ("tf.math.erf", "jax.scipy.special.erf", "torch.erf"),
        shape=Shape.INCREASING,
        pole_free=True,
    ),
    _elementwise(
        "erfc",
        "1 - erf(x), accurate where erf(x) is near 1; `log(erfc(x))` stays finite for large x",
        sympy.erfc,
        ("tf.math.erfc", "jax.scipy.special.erfc", "torch.erfc"),
        shape=Shape.DECREASING,
        pole_free=True,
    ),
    _elementwise(
        "lgamma",
        "log|Gamma(x)|; +inf at 0, -1, -2, ...",
        Lgamma,
        ("tf.math.lgamma", "jax.scipy.special.gammaln", "torch.lgamma"),
        r"\ln\Gamma",
        domain=Domain(POLE_HELP.format(name="lgamma"), poles=True),
    ),
    _elementwise(
        "digamma",
        "d/dx lgamma(x); infinite at 0, -1, -2, ...",
        Digamma,
        ("tf.math.digamma", "jax.scipy.special.digamma", "torch.digamma"),
        r"\psi",
        shape=Shape.INCREASING,  # past its last pole, 0
        domain=Domain(POLE_HELP.format(name="digamma"), poles=True),
    ),
    _elementwise(
        "sign",
        "-1, 0 or 1 as x is negative, 0 or positive; no gradient",
        Sign,
        ("tf.math.sign", "jnp.sign", "torch.sign"),
        r"\operatorname{sign}",
        pole_free=True,
        differentiable=False,
    ),
    _elementwise(
        "minimum",
        "the smaller of a and b, elementwise",
        fn.Minimum,
        ("tf.math.minimum", "_minimum", "_minimum"),
        r"\min",
        arity=2,
        pole_free=True,
    ),
    _elementwise(
        "maximum",
        "the larger of a and b, elementwise",
        fn.Maximum,
        ("tf.math.maximum", "_maximum", "_maximum"),
        r"\max",
        arity=2,
        pole_free=True,
    ),
    _elementwise(
        "stop_gradient",
        "x, with no gradient flowing through it",
        fn.StopGradient,
        ("tf.stop_gradient", "jax.lax.stop_gradient", "torch.Tensor.detach"),
        r"\operatorname{sg}",
        shape=Shape.ARGUMENT,
        pole_free=True,
        differentiable=False,
    ),
    Builtin(
        "where",
        3,
        3,
        RoleRule.WHERE,
        "a where cond holds, else b",
        _applied(fn.Where),
        fn.Where,
        pole_free=True,
    ),
    Builtin(
        "clip",
        1,
        3,
        RoleRule.ELEMENTWISE,
        "clip(x) clips to [eps, 1 - eps]; clip(x, lo, hi) to [lo, hi]",
        _applied(fn.Clip),
        fn.Clip,
        defaults=(EPSILON, 1.0 - EPSILON),
        pole_free=True,
        latex=r"\operatorname{clip}",
    ),
    Builtin(
        "softmax",
        1,
        1,
        RoleRule.CLASS_AXIS,
        "exp(z) / sum(exp(z)) over the class axis",
        _applied(fn.Softmax),
        fn.Softmax,
        latex=r"\operatorname{softmax}",
    ),
    Builtin(
        "log_softmax",
        1,
        1,
        RoleRule.CLASS_AXIS,
        "z - logsumexp(z) over the class axis",
        _applied(fn.LogSoftmax),
        fn.LogSoftmax,
        latex=r"\operatorname{log\_softmax}",
    ),
    Builtin(
        "cumsum",
        1,
        1,
        RoleRule.CLASS_AXIS,
        "the running sum over the class axis: at class c, the sum over the classes up to c",
        _applied(fn.CumSum),
        fn.CumSum,
        latex=r"\operatorname{cumsum}",
    ),
    Builtin(
        "other",
        1,
        2,
        RoleRule.OTHER,
        "x at the other sample of each pair (adds the partner role); other(x, 2): at the "
        "second partner of a triplet (adds partner2)",
        _applied(fn.Other),
        fn.Other,
        defaults=(1.0,),
        shape=Shape.ARGUMENT,
        pole_free=True,
        latex=r"\operatorname{other}",
    ),
    Builtin(
        "class",
        1,
        1,
        RoleRule.CLASS_ID,
        "the class id of y_true: a `label` as is, otherwise the argmax over the class axis",
        _applied(fn.ClassId),
        fn.ClassId,
        differentiable=False,
        latex=r"\operatorname{class}",
    ),
    Builtin(
        "onehot",
        1,
        1,
        RoleRule.ONE_HOT,
        "a `label` input as a one-hot row (C from y_pred)",
        _applied(fn.OneHot),
        fn.OneHot,
        differentiable=False,
        latex=r"\operatorname{onehot}",
    ),
    _reduction(
        "sum",
        "sum over the last role (or `axis=`)",
        fn.ReduceSum,
        ("tf.math.reduce_sum", "jnp.sum", "torch.sum"),
        r"\sum",
    ),
    _reduction(
        "mean",
        "mean over the last role (or `axis=`)",
        fn.ReduceMean,
        ("tf.math.reduce_mean", "jnp.mean", "_mean"),
        r"\operatorname{mean}",
    ),
    _reduction(
        "max",
        "maximum over the last role (or `axis=`); elementwise, the larger of two values is "
        "`maximum(a, b)`",
        fn.ReduceMax,
        ("tf.math.reduce_max", "jnp.max", "torch.amax"),
        r"\max",
    ),
    _reduction(
        "min",
        "minimum over the last role (or `axis=`); elementwise, the smaller of two values is "
        "`minimum(a, b)`",
        fn.ReduceMin,
        ("tf.math.reduce_min", "jnp.min", "torch.amin"),
        r"\min",
    ),
    _reduction(
        "logsumexp",
        "log(sum(exp(x))) over the last role, without overflow",
        fn.LogSumExp,
        ("tf.math.reduce_logsumexp", "jax.nn.logsumexp", "torch.logsumexp"),
        r"\operatorname{logsumexp}",
    ),
)

BUILTINS: dict[str, Builtin] = {builtin.name: builtin for builtin in BUILTIN_LIST}


def row_of(function: type) -> Builtin | None:
    """The row whose meaning makes the SymPy class `function`, if any (read when used, so
    that a row added to `BUILTINS` is seen by every stage)."""
    return next((row for row in BUILTINS.values() if row.function is function), None)


@dataclass(frozen=True)
class Constant:
    """One built-in constant: its value as a number and as SymPy, and its docs."""

    name: str
    doc: str
    value: float | None = None  # None: known only when the loss runs
    meaning: sympy.Expr | None = None


CONSTANT_LIST: tuple[Constant, ...] = (
    Constant("eps", "1e-7, Keras's default epsilon", EPSILON, sympy.Rational(repr(EPSILON))),
    Constant(
        "pi", "3.14159..., the ratio of a circle's circumference to its diameter", math.pi, sympy.pi
    ),
    Constant("num_classes", "C, the size of y_pred's last axis, known when the loss runs"),
    Constant(
        "sample_index",
        "each sample's position in the batch (role batch): `other(sample_index) != "
        "sample_index` leaves out a sample's pair with itself",
    ),
    Constant("inf", "infinity (only in param domains)"),
)

CONSTANTS: dict[str, str] = {constant.name: constant.doc for constant in CONSTANT_LIST}

CONSTANT_VALUES: dict[str, float] = {
    constant.name: constant.value for constant in CONSTANT_LIST if constant.value is not None
}
"""The constants a spec uses as numbers (`eps`, `pi`), by name."""

AXIS_WORDS: tuple[str, ...] = ("sample", "all", "partner", "partner2")
"""Words valid only as a reduction's `axis=` value."""

KERAS_ARGUMENTS: tuple[str, ...] = ("name", "reduction", "dtype")

CONDITION_WORDS: tuple[str, ...] = ("and", "or", "not")
"""The words that join comparisons into conditions (LANGUAGE.md 6.3)."""

RESERVED_NAMES: frozenset[str] = frozenset(
    (*BUILTINS, *CONSTANTS, *AXIS_WORDS, *KERAS_ARGUMENTS, *CONDITION_WORDS)
)
"""Names no input, param or let may take."""
