"""The one table of built-in functions and constants: arity, keywords, role rule, docs.

Adding a function means adding one row here (plus its SymPy meaning in
`lossdsl.symbolic.functions` and its tests); the checker, lowering, printer and
`lossdsl explain` all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class RoleRule(Enum):
    """How a built-in's result roles follow from its arguments' roles."""

    ELEMENTWISE = "elementwise"  # arguments' roles must nest; result has their union
    CLASS_AXIS = "class_axis"  # argument must have the class role; result keeps roles
    REDUCTION = "reduction"  # removes roles as chosen by `axis` (LANGUAGE.md section 2)
    CLASS_ID = "class_id"  # class(y): a y_true input's class id per element (integer)
    ONE_HOT = "one_hot"  # onehot(y): a `label` input as a one-hot over the class axis
    WHERE = "where"  # where(cond, a, b): cond is a comparison; all three nest


@dataclass(frozen=True)
class Builtin:
    """One built-in function: how it is called and what it does to roles."""

    name: str
    min_args: int
    max_args: int
    role_rule: RoleRule
    doc: str
    keywords: tuple[str, ...] = ()


def _elementwise(name: str, doc: str, arity: int = 1) -> Builtin:
    return Builtin(name, arity, arity, RoleRule.ELEMENTWISE, doc)


def _reduction(name: str, doc: str) -> Builtin:
    return Builtin(name, 1, 1, RoleRule.REDUCTION, doc, keywords=("axis",))


BUILTIN_LIST: tuple[Builtin, ...] = (
    _elementwise("abs", "absolute value |x|"),
    _elementwise("exp", "e^x"),
    _elementwise("log", "natural logarithm; -inf at 0, NaN below"),
    _elementwise("log1p", "log(1 + x), accurate near x = 0"),
    _elementwise("expm1", "exp(x) - 1, accurate near x = 0"),
    _elementwise("sqrt", "square root; infinite gradient at 0"),
    _elementwise("square", "x^2"),
    _elementwise("sigmoid", "1 / (1 + exp(-x))"),
    _elementwise("softplus", "log(1 + exp(x)), computed without overflow"),
    _elementwise("tanh", "hyperbolic tangent"),
    _elementwise("relu", "max(x, 0)"),
    _elementwise("cosh", "hyperbolic cosine"),
    _elementwise("minimum", "the smaller of a and b, elementwise", arity=2),
    _elementwise("maximum", "the larger of a and b, elementwise", arity=2),
    _elementwise("stop_gradient", "x, with no gradient flowing through it"),
    Builtin("where", 3, 3, RoleRule.WHERE, "a where cond holds, else b"),
    Builtin(
        "clip",
        1,
        3,
        RoleRule.ELEMENTWISE,
        "clip(x) clips to [eps, 1 - eps]; clip(x, lo, hi) to [lo, hi]",
    ),
    Builtin("softmax", 1, 1, RoleRule.CLASS_AXIS, "exp(z) / sum(exp(z)) over the class axis"),
    Builtin("log_softmax", 1, 1, RoleRule.CLASS_AXIS, "z - logsumexp(z) over the class axis"),
    Builtin(
        "class",
        1,
        1,
        RoleRule.CLASS_ID,
        "the class id of y_true: a `label` as is, otherwise the argmax over the class axis",
    ),
    Builtin("onehot", 1, 1, RoleRule.ONE_HOT, "a `label` input as a one-hot row (C from y_pred)"),
    _reduction("sum", "sum over the last role (or `axis=`)"),
    _reduction("mean", "mean over the last role (or `axis=`)"),
    _reduction("max", "maximum over the last role (or `axis=`)"),
    _reduction("min", "minimum over the last role (or `axis=`)"),
    _reduction("logsumexp", "log(sum(exp(x))) over the last role, without overflow"),
)

BUILTINS: dict[str, Builtin] = {builtin.name: builtin for builtin in BUILTIN_LIST}

EPSILON = 1e-7
"""`eps`: Keras's default fuzz factor."""

CONSTANTS: dict[str, str] = {
    "eps": "1e-7, Keras's default epsilon",
    "num_classes": "C, the size of y_pred's last axis, known when the loss runs",
    "inf": "infinity (only in param domains)",
}

AXIS_WORDS: tuple[str, ...] = ("sample", "all")
"""Words valid only as a reduction's `axis=` value."""

KERAS_ARGUMENTS: tuple[str, ...] = ("name", "reduction", "dtype")

RESERVED_NAMES: frozenset[str] = frozenset((*BUILTINS, *CONSTANTS, *AXIS_WORDS, *KERAS_ARGUMENTS))
"""Names no input, param or let may take."""
