"""The TensorFlow printer: a `SymbolicLoss` to the statements of a per-sample function.

Conventions of the printed code (the writer's prelude binds the names it uses):

- Every tensor stays at y_pred's rank ("keepdims form", docs/ARCHITECTURE.md): values
  with fewer roles broadcast. Reductions use `keepdims=True` over class (axis -1),
  spatial (`spatial_axes`, a local bound once when used) and batch (axis 0). A
  reduction over a role its operand lacks counts the broadcast copies (a sum over the
  classes of a per-sample value is C times it), as the SymPy meaning says.
- Numbers are Python literals (floats, or ints where an integer is compared with a
  label), so they adopt y_pred's dtype; constant sub-expressions such as log(2) are
  folded. A TensorFlow function applied to a value without roles (a scalar param) gets
  it through `tf.cast(..., p.dtype)`, since ops on Python floats would give float32.
- `num_classes` is a local, `tf.cast(tf.shape(p)[-1], p.dtype)`. Labels are int32 in
  `[B, S..., 1]`; a label outside [0, C) selects nothing: `OneHot` gives zeros,
  `Gather` and `TakeClass` give 0.
- Shared sub-expressions are computed once: `sympy.cse` temporaries `t0, t1, ...`
  (reserved by `codegen.names`), numbered in the order the statements run.
- The result is squeezed to Keras's shape: [batch, spatial] -> `[B, S...]`,
  [batch] -> `[B]`, scalar -> `[]`; the mask likewise.

Writing the module around the statements is `codegen.writer`'s job.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping

import sympy
from sympy.codegen.cfunctions import expm1, log1p
from sympy.logic.boolalg import Boolean
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.pycode import PythonCodePrinter

from lossdsl.codegen.body import FunctionBody
from lossdsl.codegen.names import python_name
from lossdsl.symbolic import functions as fn
from lossdsl.symbolic.loss import SymbolicLoss
from lossdsl.typed import NO_ROLES, PER_ELEMENT, PER_SAMPLE, ROLE_ORDER, Role, Roles

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

RELATION_OPS: dict[str, str] = {
    "<": "tf.math.less",
    "<=": "tf.math.less_equal",
    ">": "tf.math.greater",
    ">=": "tf.math.greater_equal",
    "==": "tf.math.equal",
    "!=": "tf.math.not_equal",
}

NUM_CLASSES_LOCAL = "num_classes"
SPATIAL_AXES_LOCAL = "spatial_axes"

# Arguments printed more than once, so they must be names (hoisted into temporaries).
_REPEATED_ARGUMENTS: dict[type, int] = {fn.LogCosh: 0, fn.Gather: 1, fn.TakeClass: 1}


def print_body(symbolic: SymbolicLoss) -> FunctionBody:
    """The TensorFlow statements computing `symbolic.result` (and its mask)."""
    checked = symbolic.checked
    names = {symbol: python_name(spec_name) for spec_name, symbol in symbolic.symbols.items()}
    labels = frozenset(
        symbolic.symbols[info.name] for info in (checked.y_true,) if info.kind == "label"
    )
    outputs = [symbolic.result] + ([symbolic.mask] if symbolic.mask is not None else [])
    shared = shared_subexpressions(outputs)
    temporaries = {expr: f"t{i}" for i, expr in enumerate(shared)}
    printer = TensorFlowPrinter(
        names, symbolic.roles, labels, python_name(checked.y_pred.name), temporaries
    )
    statements = [f"{temporaries[expr]} = {printer.definition(expr)}" for expr in shared]
    target = checked.result.roles
    result = printer.keras_shaped(symbolic.result, target)
    mask = printer.keras_shaped(symbolic.mask, target) if symbolic.mask is not None else None
    return FunctionBody(tuple(printer.locals_used() + statements), result, mask)


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
    ) -> None:
        super().__init__({"fully_qualified_modules": False, "standard": "python3"})
        self.names = names
        self.symbol_roles = roles
        self.integers = integers
        self.y_pred = y_pred
        self.temporaries = temporaries
        self.used_locals: set[str] = set()
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

    def locals_used(self) -> list[str]:
        """The statements binding the locals the printed code used, in a fixed order."""
        definitions = {
            NUM_CLASSES_LOCAL: f"tf.cast(tf.shape({self.y_pred})[-1], {self.dtype})",
            SPATIAL_AXES_LOCAL: f"list(range(1, len({self.y_pred}.shape) - 1))",
        }
        return [
            f"{name} = {value}" for name, value in definitions.items() if name in self.used_locals
        ]

    def use(self, local: str) -> str:
        self.used_locals.add(local)
        return local

    def tensor(self, expr: sympy.Basic) -> str:
        """`expr` as a TensorFlow op's argument: a role-less value is cast to y_pred's dtype."""
        printed = self._print(expr)
        if self.roles(expr) or expr is fn.NUM_CLASSES:
            return printed
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
            printed = f"{self.parenthesize(expr, PRECEDENCE['Add'])} + {broadcast}"
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
        if isinstance(expr, sympy.Expr) and expr.is_number and not expr.is_Rational:
            return _number(float(expr.evalf(17)))
        return str(super()._print(expr, **kwargs))

    def _print_Infinity(self, expr: sympy.Expr) -> str:
        return _number(math.inf)

    def _print_NegativeInfinity(self, expr: sympy.Expr) -> str:
        return _number(-math.inf)

    # ------------------------------------------------------------ arithmetic

    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:
        base, exponent = expr.args
        if not self.roles(base) and not self.roles(exponent):
            return (
                f"{self.parenthesize(base, PRECEDENCE['Pow'])} ** "
                f"{self.parenthesize(exponent, PRECEDENCE['Pow'])}"
            )
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
                if exponent != -1
                else self.parenthesize(base, PRECEDENCE["Mul"] + 1)
            )
            return forms[exponent].format(argument)
        return f"tf.math.pow({self.tensor(base)}, {self._print(exponent)})"

    def _print_Mul(self, expr: sympy.Mul) -> str:
        coefficient, rest = expr.as_coeff_Mul()
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

    def _print_Clip(self, expr: fn.Clip) -> str:
        x, low, high = expr.args
        if low.is_number and high.is_number:
            return f"tf.clip_by_value({self.tensor(x)}, {self._print(low)}, {self._print(high)})"
        above = f"tf.math.maximum({self.tensor(x)}, {self._print(low)})"
        return f"tf.math.minimum({above}, {self._print(high)})"

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
        return (
            f"tf.expand_dims(tf.math.argmax({self._print(y)}, axis=-1, output_type=tf.int32), -1)"
        )

    def _print_OneHot(self, expr: fn.OneHot) -> str:
        label = self.index(expr.args[0])
        return f"tf.one_hot({label}[..., 0], tf.shape({self.y_pred})[-1], dtype={self.dtype})"

    def _in_range(self, label: str, size: str) -> str:
        return f"({label} >= 0) & ({label} < {size})"

    def _print_Gather(self, expr: fn.Gather) -> str:
        vector, index = self._print(expr.args[0]), self.index(expr.args[1])
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
        safe = f"tf.clip_by_value({label}, 0, {size} - 1)"
        taken = f"tf.experimental.numpy.take_along_axis({self._print(x)}, {safe}, axis=-1)"
        return f"tf.where({self._in_range(label, size)}, {taken}, 0.0)"

    def _print_Reduction(self, expr: fn.Reduction) -> str:
        body = expr.args[0]
        body_roles = self.roles(body)
        present, missing = expr.removed_roles & body_roles, expr.removed_roles - body_roles
        value = self._print(body)
        if present:
            value = (
                f"{REDUCTION_OPS[type(expr)]}({value}, axis={self.axes(present)}, keepdims=True)"
            )
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
        else:
            sides = [self._print(left), self._print(right)]
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
    setattr(TensorFlowPrinter, f"_print_{_function.__name__}", TensorFlowPrinter._print_Function)
