"""The TensorFlow printer: a `SymbolicLoss` to the statements of a per-sample function.

Conventions of the printed code (the writer's prelude binds the names it uses):

- Every tensor stays at y_pred's rank ("keepdims form", docs/ARCHITECTURE.md): values
  with fewer roles broadcast. Reductions use `keepdims=True` over class (axis -1),
  spatial (`spatial_axes`, a local bound once when used) and batch (axis 0). A
  reduction over a role its operand lacks counts the broadcast copies (a sum over the
  classes of a per-sample value is C times it), as the SymPy meaning says.
- A spec that pairs samples has no spatial axes: its inputs become [B, 1, C] or
  [B, 1, 1, C] (`_paired`), axis 1 partner and axis 2 partner2, both of size 1 until
  `_other(x, n)` moves x's samples there; `sample_index` is a local.
- Numbers are Python literals (floats, or ints where an integer is compared with a
  label), so they adopt y_pred's dtype; constant sub-expressions such as log(2) are
  folded. A TensorFlow function applied to a value without roles gets it in y_pred's
  dtype, since ops on Python floats would give float32: `tf.constant(number, p.dtype)`,
  a scalar param through `tf.convert_to_tensor(..., dtype_hint=p.dtype)` and `tf.cast`
  (tf.cast alone converts a Python float to float32 first: 0.1 inexact, 1e300 an error).
- A channel selection is a slice of the last axis, `p[..., 1:2]` for `p[1]` (keepdims
  form) and `p[..., 0:2]` for `p[0:2]`; the writer's prelude checks that the inputs have
  the channels the spec selects (`channels.requirements`).
- `num_classes` is a local, `tf.cast(tf.shape(p)[-1], p.dtype)`. Labels are int32 in
  `[B, S..., 1]`; a label outside [0, C) selects nothing: `OneHot` gives zeros,
  `Gather` and `TakeClass` give 0 (a class gather is `tf.gather(..., batch_dims=rank - 1)`,
  whose gradient XLA compiles).
- Sums, means and logsumexps of float16 and bfloat16 values are accumulated in float32
  (the local `sum_dtype`) and cast back, as Keras's `ops.mean` does.
- Before printing, the target fusions (`codegen.fusions.FUSIONS`, named rules recorded
  in `FunctionBody.fusions`, applied to the result and to the mask alike, so that both
  share temporaries) replace cross-entropies TensorFlow has a fused op for, the inner
  products and squared distances of pairs of samples (`_pair_dot` and
  `_pair_squared_distance`, one matrix product each),
  softplus pairs (binary cross-entropy on logits), the log of a clip and the Huber loss
  with a helper of the module's own, guard untaken branches that can be non-finite, and
  move factors out of sums. A clip between numbers is the helper `_clip`, whose
  gradient takes one select. A module compiled with XLA writes some nodes with helpers
  instead of TensorFlow's ops (`codegen.fusions.XLA_SPELLINGS`, recorded too).
- A sum or product of more than `MAX_CHAIN` operands is computed in groups, each a
  temporary, so that no statement is long or deep.
- Shared sub-expressions are computed once: `sympy.cse` temporaries `t0, t1, ...`
  (reserved by `codegen.names`), numbered in the order the statements run.
- The result is squeezed to Keras's shape: [batch, spatial] -> `[B, S...]`,
  [batch] -> `[B]`, scalar -> `[]`; the mask likewise.
- The text is laid out as black and ruff format it (`codegen.layout`): spaced operators,
  lines of at most 88 columns, long calls split inside their parentheses, long sums and
  products shortened by more temporaries (a reduction's result gets its own).

Writing the module around the statements is `codegen.writer`'s job.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace as replace_field

import sympy
from sympy.codegen.cfunctions import log1p
from sympy.logic.boolalg import Boolean
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.pycode import PythonCodePrinter

from lossdsl.builtins import RoleRule, Trigamma, row_of
from lossdsl.codegen.body import REDUCTION, FunctionBody
from lossdsl.codegen.fusions import (
    COMPILED_LAST_FUSIONS,
    FUSIONS,
    LAST_FUSIONS,
    OWN_BACKWARD_FUSIONS,
    Fusion,
    FusionContext,
    clips_outside_logs,
    fuse,
    fuse_last,
    xla_spelling,
)
from lossdsl.codegen.helpers import (
    CHANNELS_JOINED,
    CLIP,
    CLIPPED_LOG,
    CUSTOM_GRADIENT,
    DIFFERENTIATED_TWICE,
    HELD,
    HELPER_NAMES,
    HUBER,
    INTO_CHANNELS,
    OTHER,
    OTHER_COTANGENTS,
    OTHER_GRADIENTS,
    OVER_SPATIAL,
    PAIR_DOT,
    PAIR_SQUARED_DISTANCE,
    SAVE,
    SAVED,
    SOFTPLUS_PAIR,
    SOFTPLUS_PAIR_SAME_SHAPE,
    target_helpers,
)
from lossdsl.codegen.layout import BACKWARD, FORWARD, OUTER, lay_out
from lossdsl.codegen.names import python_names
from lossdsl.codegen.numbers import (
    divides_by_a_value,
    float_representable,
    literal_value,
    number_text,
    representable_factors,
)
from lossdsl.codegen.targets import DEFAULT_TARGET, TENSORFLOW, TORCH, Target, target_named
from lossdsl.codegen.text import names_in
from lossdsl.symbolic import functions as fn
from lossdsl.symbolic.backward import UPSTREAM, backward, common_factors_outside
from lossdsl.symbolic.loss import AppliedRewrite, SymbolicLoss
from lossdsl.typed import (
    ALL_ROLES,
    NO_ROLES,
    PARTNER_OF,
    PER_ELEMENT,
    PER_SAMPLE,
    ROLE_ORDER,
    Role,
    Roles,
)


def elementwise_op(function: type, target: Target = TENSORFLOW) -> str | None:
    """The one call, with the same arguments, that a built-in's row names for `target`."""
    row = row_of(function)
    if row is None or row.role_rule is RoleRule.REDUCTION or row.calls is None:
        return None
    return str(getattr(row.calls, target.name))


def reduction_op(function: type, target: Target = TENSORFLOW) -> str:
    """The reduction a reduction built-in's row names for `target`."""
    row = row_of(function)
    assert row is not None and row.calls is not None, f"no reduction {function.__name__}"
    return str(getattr(row.calls, target.name))


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
SAMPLE_INDEX_LOCAL = "sample_index"
UPSTREAM_LOCAL = "upstream"
NON_ARRAY_LOCALS = frozenset({SPATIAL_AXES_LOCAL, SUM_DTYPE_LOCAL})
"""The locals that hold no array (axes, a dtype): a JAX custom VJP may close over them."""

# Arguments printed more than once, so they must be names (hoisted into temporaries).
_REPEATED_ARGUMENTS: dict[type, int] = {
    fn.LogCosh: 0,
    fn.Gather: 1,
    fn.TakeClass: 1,
    fn.SparseSoftmaxCrossEntropy: 1,
}


def print_body(
    symbolic: SymbolicLoss,
    *,
    jit_compile: bool = False,
    target: str = DEFAULT_TARGET,
    own_backward: bool = True,
    mean: bool = False,
) -> FunctionBody:
    """The statements computing `symbolic.result` (and its mask) on backend `target`;
    with `mean`, of a spec without a mask, the result's mean over all its elements
    (`functions.mean_of_everything`), a scalar whose custom gradient takes a scalar
    upstream gradient.

    The target fusions run first (`codegen.fusions.fuse`). With `jit_compile` (a module
    compiled with XLA), the nodes an XLA spelling matches (`codegen.fusions.XLA_SPELLINGS`)
    are printed as calls of the module's helpers, which XLA on the CPU computes faster;
    they are TensorFlow's, so other targets ignore `jit_compile`. The body records every
    fusion and spelling that fired.

    With `own_backward`, on a target that writes custom gradients, the result's gradient
    with respect to y_pred is the loss's own (`symbolic.backward`), fused by the same
    rules and sharing the forward pass's temporaries (`FunctionBody.backward`); where a
    node has no rule, or is a fused node whose helper's gradient the target keeps
    (`Target.helper_gradients`), the framework's autodiff stays.
    """
    backend = target_named(target)
    jit_compile = jit_compile and backend is TENSORFLOW
    checked = symbolic.checked
    identifiers = python_names(checked)
    names = {symbol: identifiers[spec_name] for spec_name, symbol in symbolic.symbols.items()}
    y_true = symbolic.symbols[checked.y_true.name]
    labels = frozenset({y_true} if checked.y_true.kind == "label" else ())
    onehot = frozenset({y_true} if checked.y_true.kind == "onehot" else ())
    y_pred = symbolic.symbols[checked.y_pred.name]
    assert not mean or symbolic.mask is None, "a masked result's mean is Keras's to take"
    result_roles = NO_ROLES if mean else checked.result.roles
    unfused = [symbolic.result] + ([symbolic.mask] if symbolic.mask is not None else [])
    context = FusionContext(
        rows_summing_to_one=onehot,
        roles={**symbolic.roles, UPSTREAM: result_roles},
        y_pred=y_pred,
        clips_outside_logs=clips_outside_logs(unfused),
        labels=labels,
    )
    gradient = None
    own_fusions = tuple(f for f in OWN_BACKWARD_FUSIONS if f.form in (None, *backend.forms))
    if not jit_compile:  # the general form, where it measured faster than a fused kernel
        own_fusions = tuple(f for f in own_fusions if f.name not in backend.kernels_slower)

    def fused_result(
        rules: tuple[Fusion, ...] = FUSIONS,
    ) -> tuple[sympy.Basic, tuple[AppliedRewrite, ...]]:
        """The result fused by `rules`, and with `mean` then its mean: the fusions see the
        per-sample values they match."""
        fused, fusions = fuse(symbolic.result, context, rules)
        return (fn.mean_of_everything(fused, context.roles) if mean else fused), fusions

    if own_backward and backend.custom_gradient:
        fused, fusions = fused_result(own_fusions)
        helpers_differentiate = any(
            type(node).__name__ in backend.helper_gradients for node in fn.nodes_of([fused])
        )
        if not helpers_differentiate:
            gradient = backward(fused, y_pred, context.roles, onehot)
        if symbolic.mask is not None and gradient is not None and gradient != 0:
            # 0 outside the mask exactly: the upstream gradient is 0 there, and 0 times
            # what the loss's formula gives at a padded element (an overflow) is NaN
            gradient = fn.Where(symbolic.mask, gradient, sympy.S.Zero)
    if gradient is None or gradient == 0:  # the framework's autodiff
        gradient = None
        fused, fusions = fused_result()
    fusion_rules = FUSIONS if gradient is None else own_fusions
    outputs = [fused]
    if symbolic.mask is not None:  # fused alike, so that it shares the result's temporaries
        fused_mask, mask_fusions = fuse(symbolic.mask, context, fusion_rules)
        outputs.append(fused_mask)
        fusions += tuple(step for step in mask_fusions if step not in fusions)
    derivative = gradient
    if gradient is not None:
        gradient, gradient_fusions = fuse(gradient, context, own_fusions)
        gradient = common_factors_outside(gradient, context.roles_of)
        fusions += tuple(step for step in gradient_fusions if step not in fusions)
        derivative = gradient
    # the last fusions see the whole body: the forms it computes anyway
    compiled = jit_compile or backend.always_compiled
    last = COMPILED_LAST_FUSIONS if compiled else LAST_FUSIONS
    printed, last_fusions = fuse_last(
        outputs + ([gradient] if gradient is not None else []),
        context,
        tuple(fusion for fusion in last if fusion.form in (None, *backend.forms)),
    )
    fusions += tuple(step for step in last_fusions if step not in fusions)
    # every product multiplies its small factors first; the forward and backward passes
    # group them alike, so that the nodes they share (a cross-entropy's logits) are one
    computed = frozenset(fn.nodes_of(printed))
    printed = [small_factors_first(expr, context, computed) for expr in printed]
    outputs = printed[: len(outputs)]
    if gradient is not None:
        gradient = printed[-1]
    shared = shared_subexpressions(
        printed, lambda node: decided_guard_parts(node, context, backend)
    )
    temporaries = {expr: f"t{i}" for i, expr in enumerate(shared)}
    names[UPSTREAM] = UPSTREAM_LOCAL
    printer = TensorFlowPrinter(
        names,
        context,
        identifiers[checked.y_pred.name],
        temporaries,
        jit_compile,
        layout_roles(checked.paired, checked.partners),
        backend,
    )
    region_of = regions(shared, outputs[0], outputs[1:], gradient is not None)
    definitions = []
    regions_defined = []
    if gradient is not None and result_roles:
        definitions.append(printer.upstream_in_keepdims_form(result_roles))
        regions_defined.append(BACKWARD)
    for expr in shared:
        value = printer.definition(expr)
        groups = printer.take_groups()
        definitions += [*groups, (temporaries[expr], value)]
        regions_defined += [region_of[expr]] * (len(groups) + 1)
    reduced = None
    if gradient is None and symbolic.mask is None:
        reduced = printer.class_reduced(outputs[0], result_roles)
    result = reduced if reduced is not None else printer.keras_shaped(outputs[0], result_roles)
    result_groups = printer.take_groups()
    mask = printer.keras_shaped(outputs[1], result_roles) if symbolic.mask is not None else None
    mask_groups = printer.take_groups()
    gradient_text = printer.gradient(gradient) if gradient is not None else None
    gradient_groups = printer.take_groups()
    definitions += result_groups + mask_groups + gradient_groups
    regions_defined += [FORWARD if gradient is not None else OUTER] * len(result_groups)
    regions_defined += [OUTER] * len(mask_groups) + [BACKWARD] * len(gradient_groups)
    local_definitions = printer.locals_used()
    body = lay_out(
        local_definitions + definitions,
        result,
        mask,
        regions=[OUTER] * len(local_definitions) + regions_defined,
        gradient=gradient_text,
        depths=backend.backward_depths,
    )
    if body.backward is not None and backend is TENSORFLOW:
        captured = read_from_outside(body)
        params = [(identifiers[param.name], param.is_vector) for param in checked.params]
        constants = tuple(name for name, vector in params if vector or name in captured)
        body = replace_field(body, backward=replace_field(body.backward, constants=constants))
        printer.helpers_used.update(
            {HELD} if constants else set(),
            {CUSTOM_GRADIENT} if len(constants) < len(params) else set(),
        )
    if gradient is not None and backend is not TENSORFLOW:
        printer.helpers_used.update(
            {SAVE, SAVED, OTHER_GRADIENTS, DIFFERENTIATED_TWICE}
            if backend is TORCH
            else {OTHER_COTANGENTS}
        )
    helpers = target_helpers(backend.name)
    used = printer.helpers_used.union(
        *(helpers.dependencies(helper, jit_compile) for helper in printer.helpers_used)
    )
    if body.backward is not None:
        body = replace_field(body, backward=replace_field(body.backward, derivative=derivative))
    return replace_field(
        body,
        reduced=reduced is not None,
        helpers=tuple(helper for helper in helpers.sources if helper in used),
        fusions=fusions,
        spellings=tuple(dict.fromkeys(printer.spellings_used)),
    )


def read_from_outside(body: FunctionBody) -> set[str]:
    """The names the statements before a custom gradient read to compute what it reads:
    a param among them reaches it as a computed tensor, which the custom gradient
    cannot differentiate with respect to that param."""
    backward = body.backward
    assert backward is not None
    inside = [*backward.forward, *backward.statements, body.result, backward.gradient]
    needed = set().union(*map(names_in, inside))
    read = set()
    for statement in reversed(body.statements):
        target, value = statement.split(" = ", 1)
        if target in needed:
            read |= names_in(value)
            needed |= names_in(value)
    return read


def small_factors_first(
    expr: sympy.Basic, context: FusionContext, computed: frozenset[sympy.Basic]
) -> sympy.Basic:
    """Every product (and sum) of whole-shaped operands and several smaller ones
    (numbers, params, per-sample values such as the upstream gradient) with the smaller
    ones multiplied (added) first (`Parenthesized`): one pass over the whole shape per
    whole-shaped operand, however many small ones there are. A sign and one small
    factor are no group where the product without the sign is among the nodes the body
    computes (`computed`): the sum holding `-a * x` subtracts the `a * x` it reads
    (LINEX's expm1(a * e) - a * e), where `(-a) * x` was a pass of its own."""

    def group(node: sympy.Basic, args: list[sympy.Basic]) -> sympy.Basic:
        rebuilt = fn.with_args(node, args)
        if not isinstance(rebuilt, (sympy.Mul, sympy.Add)):
            return rebuilt
        roles = context.roles_of(rebuilt)
        small = [f for f in rebuilt.args if context.roles_of(f) != roles]
        if (
            len(small) < 2
            or len(small) == len(rebuilt.args)
            or all(f.is_number for f in small)
            or (len(small) == 2 and sympy.S.NegativeOne in small and -rebuilt in computed)
        ):
            return rebuilt
        whole = [f for f in rebuilt.args if f not in small]
        return rebuilt.func(fn.Parenthesized(rebuilt.func(*small)), *whole)

    return fn.fold(expr, group)


def regions(
    shared: list[sympy.Basic], result: sympy.Basic, masks: list[sympy.Basic], backward: bool
) -> dict[sympy.Basic, int]:
    """Where each shared sub-expression is computed (`codegen.layout`'s regions): before
    the custom gradient what the mask needs, in its forward function what the result
    needs, the rest in the backward function; all before the result without a backward
    pass."""
    if not backward:
        return dict.fromkeys(shared, OUTER)
    outer, forward = fn.nodes_of(masks, _reads), fn.nodes_of([result], _reads)
    return {
        expr: OUTER if expr in outer else FORWARD if expr in forward else BACKWARD
        for expr in shared
    }


def layout_roles(paired: bool, partners: int) -> Roles:
    """The roles of the axes every printed tensor has: [batch, spatial..., class], or in a
    spec that pairs samples [batch, partner (, partner2), class]."""
    if not paired:
        return ALL_ROLES
    return frozenset({Role.BATCH, Role.CLASS, *(PARTNER_OF[n] for n in range(1, partners + 1))})


def shared_subexpressions(
    outputs: list[sympy.Basic],
    printed_apart: Callable[[sympy.Basic], tuple[sympy.Basic, ...] | None] = lambda _: None,
) -> list[sympy.Basic]:
    """The sub-expressions to compute once, each after the ones it uses.

    Those occurring more than once (a repeated occurrence is not searched again), and the
    arguments the printer writes more than once (`_REPEATED_ARGUMENTS`). Numbers, names
    and negated names are left inline; a group (`Parenthesized`) is what it groups, and
    a node the printer writes from some of its parts alone (`printed_apart`, a guard
    whose comparison of params it decides in Python) is those parts.
    """
    counts: Counter[sympy.Basic] = Counter()
    order: list[sympy.Basic] = []

    def visit(node: sympy.Basic, forced: bool = False) -> None:
        if _inline(node):
            return
        if _is_negation(node):  # a sum subtracts x, where a temporary -x is a pass
            visit(node.args[1], forced)
            return
        if isinstance(node, fn.Parenthesized):  # a grouping, computed as what it groups
            visit(node.args[0], forced)
            return
        if (parts := printed_apart(node)) is not None:
            for part in parts:
                visit(part)
            return
        counts[node] += 2 if forced else 1
        if counts[node] > (2 if forced else 1):
            return
        position = _REPEATED_ARGUMENTS.get(type(node))
        for i, arg in enumerate(_reads(node)):
            visit(arg, forced=i == position)
        order.append(node)

    for output in outputs:
        visit(output)
    return [node for node in order if counts[node] > 1]


def params_comparison(
    condition: sympy.Basic, on_params: Callable[[sympy.Basic], bool]
) -> sympy.core.relational.Relational | None:
    """The comparison of scalar params alone (`on_params`) in `condition`, an or of it
    and conditions on arrays (a power's guard, `gamma - 1 >= 0 or base > 0`); None for
    other conditions."""
    if not isinstance(condition, sympy.Or):
        return None
    decided = [arg for arg in condition.args if on_params(arg)]
    if len(decided) != 1 or not isinstance(decided[0], sympy.core.relational.Relational):
        return None
    return decided[0]


def decided_guard_parts(
    node: sympy.Basic, context: FusionContext, backend: Target
) -> tuple[sympy.Basic, ...] | None:
    """What the printer reads of `node` where it is a guard whose comparison of params it
    decides in Python (the target's "params_or" form, `Printer.params_decided`): the
    comparison's operands and the other conditions; None for other nodes."""
    if "params_or" not in backend.forms:
        return None
    decided = params_comparison(
        node, lambda expr: on_params_alone(expr, context.roles, context.labels)
    )
    if decided is None:
        return None
    return (*decided.args, *(arg for arg in node.args if arg is not decided))


def on_params_alone(
    expr: sympy.Basic, roles: Mapping[sympy.Symbol, Roles], integers: frozenset[sympy.Symbol]
) -> bool:
    """Whether `expr` is computed from numbers and scalar params alone: no symbol with
    roles (`roles`), no integer input (`integers`), no class count."""
    return not expr.has(fn.NUM_CLASSES) and not any(
        fn.roles_of(symbol, roles) or symbol in integers for symbol in expr.free_symbols
    )


def _reads(node: sympy.Basic) -> tuple[sympy.Basic, ...]:
    """What printing `node` reads: its operands as the printer reads them (`_operands`),
    and for a root's reciprocal, printed as a division by it, the root (1 / sqrt(x)
    reads sqrt(x)). The shared sub-expressions are ordered by it, and each is computed
    in the region whose outputs read it (`regions`)."""
    root = _root_of_reciprocal(node)
    return _operands(node) + (() if root is None else (root,))


def _operands(node: sympy.Basic) -> tuple[sympy.Basic, ...]:
    """`node`'s operands as the printer reads them: a product with a number it writes
    apart (a fraction, or one beyond float64) is that number times the product of the
    rest, which may be a temporary (`0.5 * t3`), so it is computed first."""
    if isinstance(node, sympy.Mul):
        coefficient, rest = node.as_coeff_Mul()
        apart = not coefficient.is_Integer or not float_representable(coefficient)
        if coefficient.is_Rational and (apart or coefficient == -1) and isinstance(rest, sympy.Mul):
            return coefficient, rest
    return node.args


def _is_reciprocal(node: sympy.Basic) -> bool:
    """Whether `node` is a power with a negative exponent, which SymPy prints as a division."""
    return isinstance(node, sympy.Pow) and bool(node.exp.is_negative)


def _root_of_reciprocal(node: sympy.Basic) -> sympy.Basic | None:
    """x^(1/2) for x^(-1/2) (any root of a reciprocal, x^(-k/n) for x^(k/n)), which the
    printer writes as a division by it."""
    exponent = node.exp if isinstance(node, sympy.Pow) else None
    if exponent is not None and exponent.is_Rational and not exponent.is_Integer and exponent < 0:
        return sympy.Pow(node.base, -exponent)
    return None


def _inline(node: sympy.Basic) -> bool:
    """Whether `node` is printed where it is used, never as a temporary (a group of
    small factors that is one of those, -alpha, too)."""
    if node.is_Atom or (isinstance(node, sympy.Expr) and node.is_number) or fn.is_count(node):
        return True
    if isinstance(node, fn.Parenthesized):
        return _inline(node.args[0])
    return _is_negation(node) and node.args[1].is_Atom


def _is_negation(node: sympy.Basic) -> bool:
    """Whether `node` is -x: printed where it is used, so that 1 - q and y - q read q,
    not a temporary -q (one pass fewer; NFL's focal factor and its MAE)."""
    return isinstance(node, sympy.Mul) and len(node.args) == 2 and node.args[0] == -1


def _is_integer_valued(expr: sympy.Basic, integers: frozenset[sympy.Symbol]) -> bool:
    """Whether `expr` prints as an int32 tensor (a label, a class id, a sample's position,
    or one of those at the pair's other sample)."""
    if isinstance(expr, fn.Other):
        return _is_integer_valued(expr.args[0], integers)
    return expr in integers or expr == fn.SAMPLE_INDEX or isinstance(expr, fn.ClassId)


def _joined(operands: list[tuple[str, str]], space: str) -> str:
    """Operands joined by their operators (`+`/`-` or `*`); each operand is its operator
    and its text, the first one's operator dropped (`-` kept as a sign)."""
    (sign, first), *rest = operands
    head = f"-{first}" if sign == "-" else first
    return head + "".join(f"{space}{operator}{space}{text}" for operator, text in rest)


class TensorFlowPrinter(PythonCodePrinter):
    """SymPy -> expressions of a backend (`target`) in keepdims form (conventions: module
    docstring). TensorFlow's spelling is the default; the target spells the rest."""

    printmethod = "_tensorflow"

    def __init__(
        self,
        names: Mapping[sympy.Symbol, str],
        context: FusionContext,
        y_pred: str,
        temporaries: Mapping[sympy.Basic, str],
        jit_compile: bool = False,
        axis_roles: Roles = ALL_ROLES,
        target: Target = TENSORFLOW,
    ) -> None:
        super().__init__({"fully_qualified_modules": False, "standard": "python3"})
        self.jit_compile = jit_compile
        self.names = names
        self.context = context
        self.symbol_roles = context.roles
        self.integers = context.labels
        self.y_pred = y_pred
        self.temporaries = temporaries
        self.used_locals: set[str] = set()
        self.helpers_used: set[str] = set()
        self.spellings_used: list[str] = []
        self.groups: list[tuple[str, str]] = []
        self.groups_made = 0
        self.axis_roles = axis_roles  # the roles of the axes of every printed tensor
        self.target = target

    def form(self, operation: str, *operands: str) -> str:
        """The target's code of `operation` on printed operands; a helper that its
        template calls is recorded as used."""
        template = self.target.forms[operation]
        self.helpers_used.update(name for name in HELPER_NAMES if f"{name}(" in template)
        return self.target.form(operation, *operands, y_pred=self.y_pred)

    def parenthesize(self, item: sympy.Basic, level: int, strict: bool = False) -> str:
        if item in self.temporaries:
            return self.temporaries[item]
        printed, item_level = self._print(item), self.precedence_of(item)
        below = item_level < level or (not strict and item_level == level)
        return f"({printed})" if below else printed

    def precedence_of(self, item: sympy.Basic) -> int:
        """SymPy's precedence of `item` as this printer writes it, where that is not a
        call: a sum over a role its operand lacks is a product `C * x`; a logsumexp or a
        log of a sum over one a sum `x + log(C)` (its negation was `2.0 - 2.0 +
        tf.math.log(num_classes)`, found by fuzzing); logcosh is always the sum `x +
        softplus(-2x) - log(2)` (times a count it was `c + t3 - 0.69 * count`, found by
        fuzzing); a softmax over no classes is `1.0 / C`, a log_softmax `-log(C)`."""
        over_a_missing_role = (
            isinstance(item, fn.Reduction)
            and not fn.is_count(item)
            and bool(item.removed_roles - self.roles(item.args[0]))
        )
        if over_a_missing_role and isinstance(item, fn.ReduceSum):
            return PRECEDENCE["Mul"]
        if over_a_missing_role and isinstance(item, fn.LogSumExp | fn.LogOfSum):
            return PRECEDENCE["Add"]
        if isinstance(item, fn.LogCosh):
            return PRECEDENCE["Add"]
        no_classes = isinstance(item, fn.Softmax | fn.LogSoftmax) and (
            Role.CLASS not in self.roles(item.args[0])
        )
        if no_classes:
            return PRECEDENCE["Mul" if isinstance(item, fn.Softmax) else "Add"]
        return precedence(item)

    def definition(self, expr: sympy.Basic) -> str:
        """The right-hand side of a temporary: `expr` itself, its parts by their names."""
        return self._builtin_call(expr) or str(super()._print(expr))

    # ------------------------------------------------------------ helpers

    def roles(self, expr: sympy.Basic) -> Roles:
        return self.context.roles_of(expr)

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
            NUM_CLASSES_LOCAL: (
                self.form("size", self.y_pred, "-1")
                if self.target.num_classes_number
                else self.size(-1)
            ),
            SPATIAL_AXES_LOCAL: self.form("spatial_axes"),
            SUM_DTYPE_LOCAL: (f"{self.form('float32')} if {self.form('half')} else {self.dtype}"),
            SAMPLE_INDEX_LOCAL: self.form("sample_index"),
        }
        return [(name, value) for name, value in definitions.items() if name in self.used_locals]

    def use(self, local: str) -> str:
        self.used_locals.add(local)
        return local

    def spelled(self, expr: sympy.Basic) -> str | None:
        """The helper an XLA module writes `expr` with (recorded as used), or None."""
        spelling = xla_spelling(expr, self.context) if self.jit_compile else None
        if spelling is None:
            return None
        self.spellings_used.append(spelling.name)
        self.helpers_used.add(spelling.helper)
        return spelling.helper

    def cast(self, printed: str, dtype: str | None = None) -> str:
        return self.form("cast", printed, dtype or self.dtype)

    def size(self, axis: int) -> str:
        """The size of y_pred's axis `axis` as y_pred's dtype."""
        return self.cast(self.form("size", self.y_pred, str(axis)))

    def tensor(self, expr: sympy.Basic) -> str:
        """`expr` as an op's argument: a role-less value is cast to y_pred's dtype."""
        printed = self._print(expr)
        if self.roles(expr) or fn.is_count(expr):
            return printed
        if expr is fn.NUM_CLASSES and not self.target.num_classes_number:
            return printed
        # tf.cast would make a Python float float32 first: 0.1 inexact, 1e300 an error
        if literal_value(expr) is not None:
            return self.form("constant", printed)
        if self.on_params_alone(expr):  # a Python float, or a tensor
            return self.form("scalar", printed)
        return self.cast(printed)

    def argument(self, expr: sympy.Basic) -> str:
        """A call's argument after its first: a tensor where the target needs one."""
        return self.tensor(expr) if self.target.tensor_arguments else self._print(expr)

    def index(self, expr: sympy.Basic) -> str:
        """An int32 class id: a label or class id as it is."""
        if expr == fn.SAMPLE_INDEX:
            return self.use(SAMPLE_INDEX_LOCAL)
        if expr == fn.NUM_CLASSES:
            return self.form("size", self.y_pred, "-1")
        if isinstance(expr, sympy.Symbol):
            return self.names[expr]
        return self._print(expr)

    def count(self, roles: Roles) -> str:
        """The number of elements a reduction over `roles` combines, as y_pred's dtype."""
        batch = self.size(0)
        sizes = {
            Role.BATCH: batch,
            Role.PARTNER: batch,
            Role.PARTNER2: batch,
            Role.SPATIAL: self.cast(self.form("spatial_size")),
            Role.CLASS: (
                self.cast(NUM_CLASSES_LOCAL)
                if self.target.num_classes_number
                else NUM_CLASSES_LOCAL
            ),
        }
        if Role.CLASS in roles:
            self.use(NUM_CLASSES_LOCAL)
        return " * ".join(sizes[role] for role in ROLE_ORDER if role in roles)

    def integer_count(self, roles: Roles) -> str:
        """`count(roles)` as the product of the integer sizes."""
        if roles == self.axis_roles == ALL_ROLES:
            return self.form("size_of_all", self.y_pred)
        sizes = {
            Role.BATCH: self.form("size", self.y_pred, "0"),
            Role.SPATIAL: self.form("spatial_size"),
            Role.CLASS: self.form("size", self.y_pred, "-1"),
        }
        return " * ".join(sizes[role] for role in ROLE_ORDER if role in roles)

    def inverse_count(self, roles: Roles) -> str:
        """1 / `count(roles)`, from the integer sizes in the accumulation dtype (float32
        for half precision, whose largest number is 65504) and cast back. 1 / C is a
        Python float where `num_classes` is a Python int (`Target.num_classes_number`):
        exact, and no op; a count with the batch's size stays a tensor, since an empty
        batch makes it 0."""
        product = self.integer_count(roles)
        if self.target.num_classes_number and roles == {Role.CLASS}:
            return f"(1.0 / {product})"  # parenthesized: a factor of products
        return self.cast(f"1.0 / {self.cast(product, self.use(SUM_DTYPE_LOCAL))}")

    def log_count(self, roles: Roles) -> str:
        """log(`count(roles)`), as `inverse_count` takes the count: a mean of exponentials
        over 65,536 elements or more, log(mean(exp(x))) = logsumexp(x) - log(count), was
        -inf in float16."""
        product = self.cast(self.integer_count(roles), self.use(SUM_DTYPE_LOCAL))
        return self.cast(f"{self.call(sympy.log)}({product})")

    def axes(self, roles: Roles) -> str:
        """The `axis=` of a reduction over `roles` (keepdims form)."""
        if roles == self.axis_roles:
            return self.form("all_axes")
        if Role.SPATIAL in roles:
            self.use(SPATIAL_AXES_LOCAL)
        parts = {
            Role.BATCH: "0",
            Role.PARTNER: "1",
            Role.PARTNER2: "2",
            Role.SPATIAL: f"*{SPATIAL_AXES_LOCAL}",
            Role.CLASS: "-1",
        }
        chosen = [parts[role] for role in ROLE_ORDER if role in roles]
        if chosen == [f"*{SPATIAL_AXES_LOCAL}"]:
            return SPATIAL_AXES_LOCAL
        return chosen[0] if len(chosen) == 1 else self.target.axes(chosen)

    def keras_shaped(self, expr: sympy.Basic, target: Roles) -> str:
        """`expr` squeezed to Keras's shape for a value with roles `target`."""
        printed = self._print(expr)
        if isinstance(expr, Boolean):
            if self.roles(expr) != target:
                printed = self.form("like_one_class", printed)
        elif self.roles(expr) != target:
            printed = self.broadcast_like(expr, f"{self.y_pred}[..., :1]")
        if (
            target == PER_ELEMENT
            and isinstance(expr, fn.SoftmaxCrossEntropy)
            and not self.jit_compile
        ):
            return self.softmax_cross_entropy(expr)  # no axis added and squeezed again
        if target == PER_ELEMENT:
            return self.form("squeeze", printed)
        if target == PER_SAMPLE:
            if self.roles(expr) != target:
                axes = f"{self.target.axis}={self.form('later_axes')}"
                return f"{reduction_op(fn.ReduceMax, self.target)}({printed}, {axes})"
            return self.form("flatten", printed)
        if target == NO_ROLES:
            return self.form(
                "scalar_of" if self.in_result_dtype(expr) else "scalar_result", printed
            )
        raise ValueError(
            f"a result must not keep the class role: {sorted(r.value for r in target)}"
        )

    def class_reduced(self, expr: sympy.Basic, target: Roles) -> str | None:
        """A result that is the mean or sum over the classes of whole-shaped terms, with
        the PyTorch function's `reduction` applied in the same reduction (the target's
        "class_reduced" form), or None: a target without the form, or another result."""
        if (
            "class_reduced" not in self.target.forms
            or not isinstance(expr, fn.ReduceSum | fn.ReduceMean)
            or expr in self.temporaries
            or expr.removed_roles != frozenset({Role.CLASS})
            or self.roles(expr.args[0]) != target | {Role.CLASS}
            or target != PER_ELEMENT
        ):
            return None
        terms = self.cast(self._print(expr.args[0]), self.use(SUM_DTYPE_LOCAL))
        over_classes = '"mean"' if isinstance(expr, fn.ReduceMean) else '"sum"'
        return self.form("class_reduced", terms, over_classes, REDUCTION)

    def upstream_in_keepdims_form(self, result_roles: Roles) -> tuple[str, str]:
        """The backward function's first statement: the upstream gradient, in Keras's
        shape of the result, brought to keepdims form (`keras_shaped` undone; a scalar
        result's broadcasts as it is)."""
        forms = {PER_ELEMENT: "expand", PER_SAMPLE: "unflatten"}
        return UPSTREAM_LOCAL, self.form(forms[result_roles], UPSTREAM_LOCAL)

    def gradient(self, expr: sympy.Basic) -> str:
        """The gradient with respect to y_pred, in y_pred's shape: where it lacks a role,
        or its class axis is y_true's, which may have size 1 (LANGUAGE.md 6.2: the
        derivative of mean(y * p) is y / C), broadcast to y_pred's."""
        whole = self.roles(expr) == self.axis_roles
        if whole and fn.has_the_class_axis_of(expr, self.context.y_pred, self.roles):
            return self._print(expr)
        return self.broadcast_like(expr, self.y_pred)

    def in_result_dtype(self, expr: sympy.Basic) -> bool:
        """Whether `expr` prints as an array of y_pred's dtype: a reduction of an array,
        which is cast back to it, or a sum or product with one (numbers and params take
        its dtype); a number or a param alone is cast."""
        if isinstance(expr, ACCUMULATING_REDUCTIONS):
            return bool(expr.removed_roles & self.roles(expr.args[0]))
        if isinstance(expr, sympy.Add | sympy.Mul):
            return any(self.in_result_dtype(arg) for arg in expr.args)
        return False

    def broadcast_like(self, expr: sympy.Basic, like: str) -> str:
        """`expr` broadcast to the shape of the printed `like`, a value of y_pred's dtype:
        one broadcast, which writes nothing where the shapes already agree (a gradient
        of y_true's class axis), where adding zeros like it wrote two arrays."""
        return self.form("broadcast_like", self.tensor(expr), like)

    # ------------------------------------------------------------ atoms

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        if expr == fn.NUM_CLASSES:
            return self.use(NUM_CLASSES_LOCAL)
        if expr == fn.SAMPLE_INDEX:
            return self.cast(self.use(SAMPLE_INDEX_LOCAL))
        name = self.names[expr]
        return self.cast(name) if expr in self.integers else name

    def _print_Integer(self, expr: sympy.Integer) -> str:
        return number_text(float(expr))

    def _print_Rational(self, expr: sympy.Rational) -> str:
        return number_text(float(expr))

    def _print_Float(self, expr: sympy.Float) -> str:
        return number_text(float(expr))

    def _print_NumberSymbol(self, expr: sympy.Expr) -> str:
        return number_text(float(expr))

    def _print(self, expr: sympy.Basic, **kwargs: object) -> str:
        if expr in self.temporaries:
            return self.temporaries[expr]
        if (literal := literal_value(expr)) is not None and not expr.is_Rational:
            return number_text(literal)
        return self._builtin_call(expr) or str(super()._print(expr, **kwargs))

    def _builtin_call(self, expr: sympy.Basic) -> str | None:
        """A built-in's function as its row's TensorFlow call (SymPy's Python printer has
        its own `_print_exp`, `_print_erf`...), unless this printer has a method for it."""
        method = f"_print_{type(expr).__name__}"
        if method not in vars(TensorFlowPrinter) and elementwise_op(type(expr), self.target):
            return self._print_Function(expr)
        return None

    def _print_Infinity(self, expr: sympy.Expr) -> str:
        return number_text(math.inf)

    def _print_NegativeInfinity(self, expr: sympy.Expr) -> str:
        return number_text(-math.inf)

    # ------------------------------------------------------------ arithmetic

    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:
        base, exponent = expr.args
        root = _root_of_reciprocal(expr)
        if root is not None and root in self.temporaries:
            return f"1.0 / {self.temporaries[root]}"
        # Without roles too: a power or reciprocal of Python floats (params) would raise
        # OverflowError or ZeroDivisionError where a tensor gives inf.
        forms = {
            sympy.Integer(2): lambda x: self.form("square", x),
            sympy.Rational(1, 2): lambda x: self.form("sqrt", x),
            sympy.Rational(-1, 2): lambda x: self.form("rsqrt", x),
            sympy.Integer(-1): lambda x: f"1.0 / {x}",
            sympy.Integer(-2): lambda x: f"1.0 / {self.form('square', x)}",
        }
        if exponent in forms:
            python_size = base is fn.NUM_CLASSES and self.target.num_classes_number
            argument = (
                self.tensor(base)
                if exponent != -1 or not (self.roles(base) or python_size)
                else self.parenthesize(base, PRECEDENCE["Mul"] + 1)
            )
            return forms[exponent](argument)
        if base.is_positive and self.roles(exponent) and not self.roles(base):
            # a positive scalar to an array's power: one exp, where pow's general kernel
            # is several times slower (adaptive wing's (theta / epsilon)^(alpha - y))
            scaled = self.parenthesize(exponent, PRECEDENCE["Mul"])
            logarithm = f"{self.call(sympy.log)}({self.tensor(base)})"
            return f"{self.call(sympy.exp)}({scaled} * {logarithm})"
        return self.form("pow", self.tensor(base), self._print(exponent))

    def _print_Add(self, expr: sympy.Add, order: str | None = None) -> str:
        if "affine" in self.target.forms and (parts := self.affine_parts(expr)) is not None:
            array, scale, shift = parts
            return self.form("affine", self._print(array), self._print(scale), self._print(shift))
        # SymPy's printing order sorts slowly; a long sum keeps SymPy's canonical order.
        terms = self._as_ordered_terms(expr, order) if len(expr.args) <= MAX_CHAIN else expr.args
        signed = []
        for term in terms:
            negated, term = self.negation_apart(term)
            text = self._print(term)
            sign = "-" if text.startswith("-") != negated else "+"
            text = text.removeprefix("-")
            if self.precedence_of(term) < PRECEDENCE["Add"]:
                text = f"({text})"
            signed.append((sign, text))
        first_added = next((i for i, (sign, _) in enumerate(signed) if sign == "+"), 0)
        signed.insert(0, signed.pop(first_added))  # `1 - x`, not `-x + 1`: no negation pass
        return self.chain(signed, " ")

    def negation_apart(self, term: sympy.Basic) -> tuple[bool, sympy.Basic]:
        """Whether a term of a sum is a product whose group of small factors
        (`small_factors_first`) is negated, and the term with that group's negation: the
        sum subtracts `beta * t0`, where it would add `-beta * t0`."""
        if not isinstance(term, sympy.Mul) or term in self.temporaries:
            return False, term
        for factor in term.args:
            if not isinstance(factor, fn.Parenthesized) or factor.args[0] in self.temporaries:
                continue  # a temporary is read as it is
            if factor.args[0].could_extract_minus_sign():
                group = fn.Parenthesized(-factor.args[0])
                return True, sympy.Mul(*(group if f is factor else f for f in term.args))
        return False, term

    def affine_parts(self, expr: sympy.Add) -> tuple[sympy.Basic, sympy.Basic, sympy.Basic] | None:
        """(x, scale, shift) of a sum x * scale + shift of one array x, a scale computed
        from scalar params (not a number alone) and a shift from numbers, scalar params
        and `num_classes`, as label smoothing's y (1 - s) + s / C; else None. At a
        param's neutral value (s = 0) the product and the sum are copies of x."""
        arrays = [term for term in expr.args if self.roles(term)]
        if len(arrays) != 1:
            return None
        # a temporary is read as it is, not taken apart
        factors = (arrays[0],) if arrays[0] in self.temporaries else sympy.Mul.make_args(arrays[0])
        scale = sympy.Mul(*(f for f in factors if not self.roles(f)))
        shift = sympy.Add(*(term for term in expr.args if not self.roles(term)))
        scalars = scale.free_symbols | shift.free_symbols
        if scale.is_number or any(self.roles(symbol) for symbol in scalars):
            return None
        return sympy.Mul(*(f for f in factors if self.roles(f))), scale, shift

    def _print_Mul(self, expr: sympy.Mul) -> str:
        if len(expr.args) > MAX_CHAIN:
            factors = expr.args
            groups = [
                sympy.Mul(*factors[start : start + MAX_CHAIN], evaluate=False)
                for start in range(0, len(factors), MAX_CHAIN)
            ]
            return self.chain([("*", self.group(self._print(group))) for group in groups], "")
        if (scattered := self.one_hot_times(expr)) is not None:
            return scattered
        coefficient, rest = expr.as_coeff_Mul()
        if coefficient.is_Rational and rest != 1 and not float_representable(coefficient):
            # a folded constant beyond float64 (1e200 * p * 1e200): one factor at a time,
            # so that every product lies between `rest` and the result and none overflows
            first, *scales = representable_factors(coefficient)
            text = f"{number_text(first)}*{self.parenthesize(rest, PRECEDENCE['Mul'], strict=True)}"
            for scale in scales:
                text = f"{number_text(scale)}*({text})"
            return text
        if coefficient != 1 and rest in self.temporaries and rest in _operands(expr):
            # a number times a temporary, which `_reads` orders before this product
            sign = "-" if coefficient < 0 else ""
            times = "" if abs(coefficient) == 1 else f"{number_text(abs(float(coefficient)))}*"
            return f"{sign}{times}{self.temporaries[rest]}"
        if not self.roles(expr) and any(divides_by_a_value(f) for f in expr.args):
            # `_print_Pow`'s tensor reciprocal: Python's `a / k` raises where k is 0
            factors = "*".join(
                self.parenthesize(f, PRECEDENCE["Mul"], strict=True)
                for f in sympy.Mul.make_args(rest)
            )
            if abs(coefficient) == 1:
                return f"-{factors}" if coefficient < 0 else factors
            sign = "-" if coefficient < 0 else ""
            return f"{sign}{number_text(abs(float(coefficient)))}*{factors}"
        if any(_is_reciprocal(f) and f in self.temporaries for f in expr.args):
            return self.product_reading_reciprocals(expr)
        if not coefficient.is_Rational or coefficient.is_Integer or rest == 1:
            return str(super()._print_Mul(expr))
        sign = "-" if coefficient < 0 else ""
        factor = self.parenthesize(rest, PRECEDENCE["Mul"], strict=True)
        return f"{sign}{number_text(abs(float(coefficient)))}*{factor}"

    def graph_form(self, operation: str) -> bool:
        """Whether the target has its own form of `operation` for a module not compiled
        with XLA: one that measured faster in TensorFlow's graph executor, where XLA
        fuses the general form itself."""
        return operation in self.target.forms and not self.jit_compile

    def one_hot_times(self, expr: sympy.Mul) -> str | None:
        """one_hot(y) * v, v without the class axis and of y's roles at most (a label
        gather's gradient), as the target's "one_hot_times" form if it has one: in a
        TensorFlow graph without XLA, v scattered to each row's label, one pass over the
        classes for two. None for other products."""
        if not self.graph_form("one_hot_times"):
            return None
        one_hot = [factor for factor in expr.args if isinstance(factor, fn.OneHot)]
        if (
            len(one_hot) != 1
            or one_hot[0] in self.temporaries  # computed anyway: a product reads it
            or self.roles(one_hot[0]) != self.axis_roles
        ):
            return None
        values = expr / one_hot[0]
        if not self.roles(values) or not self.roles(values) <= self.roles(one_hot[0].args[0]):
            return None  # -one_hot(y) is subtracted where it is read
        label = self.index(one_hot[0].args[0])
        return self.form("one_hot_times", label, self.tensor(values))

    def product_reading_reciprocals(self, expr: sympy.Mul) -> str:
        """`expr` as numerator / denominator, where SymPy's printer would divide by the
        base of a reciprocal that is a temporary (`x^(-1/2)`) instead of reading it: such
        a reciprocal is a factor of the numerator, printed as its temporary's name."""
        sign, numerator, denominator = "", [], []
        for factor in expr.args:
            if factor.is_Number:  # as_coeff_Mul's: the one number of a product
                sign = "-" if factor < 0 else ""
                if abs(factor) != 1:
                    numerator.append(number_text(abs(float(factor))))
            elif _is_reciprocal(factor) and factor not in self.temporaries:
                base = sympy.Pow(factor.base, -factor.exp)
                denominator.append(self.parenthesize(base, PRECEDENCE["Mul"], strict=True))
            else:
                numerator.append(self.parenthesize(factor, PRECEDENCE["Mul"], strict=True))
        text = sign + "*".join(numerator)
        if len(denominator) > 1:
            return f"{text}/({'*'.join(denominator)})"
        return f"{text}/{denominator[0]}" if denominator else text

    # ------------------------------------------------------------ functions

    def call(self, function: type) -> str:
        """The target's call of the built-in that makes the SymPy class `function`; a
        helper it names (JAX's `_abs`) is recorded as used."""
        op = elementwise_op(function, self.target)
        if op is None:
            raise TypeError(f"no {self.target.title} form for {function.__name__}")
        if op in HELPER_NAMES:
            self.helpers_used.add(op)
        return op

    def _print_Function(self, expr: sympy.Function) -> str:
        op = self.call(type(expr))
        first, *rest = expr.args
        if not rest:
            return f"{op}({self.unary_argument(first)})"
        return f"{op}({', '.join([self.tensor(first), *(self.argument(a) for a in rest)])})"

    def unary_argument(self, expr: sympy.Basic) -> str:
        """A one-argument function's argument, where a negated array is the target's
        "negated_argument" form if it has one: in a TensorFlow graph `-x` then the
        function is a chain of unary ops that Grappler runs as one
        `_UnaryOpsComposition`, which took 90 us more than the two ops at 8,192 elements
        (a [4096, 2] NLL's exp(-log_scale)) and about as long from 40,960."""
        if (
            self.graph_form("negated_argument")
            and isinstance(expr, sympy.Mul)
            and expr.args[0] == -1
            and self.roles(expr)
        ):
            return self.form("negated_argument", self.parenthesize(-expr, PRECEDENCE["Mul"]))
        return self.tensor(expr)

    def _print_log(self, expr: sympy.log) -> str:
        """The log of a count is `log_count`'s: a count overflows a half precision."""
        (x,) = expr.args
        if isinstance(x, fn.ReduceSum) and fn.is_count(x):
            return self.log_count(x.removed_roles)
        return self._print_Function(expr)

    def _print_Trigamma(self, expr: Trigamma) -> str:
        """digamma's derivative, which no built-in's row spells: the target's form."""
        return self.form("trigamma", self.tensor(expr.args[0]))

    def _print_log1p(self, expr: log1p) -> str:
        """An XLA module's log1p of an array is `_log1p`, which XLA on the CPU runs faster."""
        if (helper := self.spelled(expr)) is not None:
            return f"{helper}({self.tensor(expr.args[0])})"
        return self._print_Function(expr)

    def _print_Clip(self, expr: fn.Clip) -> str:
        x, low, high = expr.args
        if low.is_number and high.is_number:
            self.helpers_used.add(CLIP)
            return f"{CLIP}({self.tensor(x)}, {self._print(low)}, {self._print(high)})"
        above = f"{self.call(fn.Maximum)}({self.tensor(x)}, {self.argument(low)})"
        return f"{self.call(fn.Minimum)}({above}, {self.argument(high)})"

    def _print_ClippedLog(self, expr: fn.ClippedLog) -> str:
        x, low, high = expr.args
        self.helpers_used.add(CLIPPED_LOG)
        return f"{CLIPPED_LOG}({self.tensor(x)}, {self._print(low)}, {self._print(high)})"

    def _print_Huber(self, expr: fn.Huber) -> str:
        residual, delta = expr.args
        sides = self.difference_sides(residual)
        if sides is not None and "huber_of_difference" in self.target.forms:
            prediction, target = (self.tensor(side) for side in sides)
            return self.form("huber_of_difference", prediction, target, self._print(delta))
        self.helpers_used.add(HUBER)
        return f"{HUBER}({self.tensor(residual)}, {self._print(delta)})"

    def difference_sides(self, expr: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr] | None:
        """(a, b) for `expr` = a - b of two arrays of `expr`'s shape, else None."""
        terms = sympy.Add.make_args(expr)
        if len(terms) != 2:
            return None
        negated = [term for term in terms if term.could_extract_minus_sign()]
        if len(negated) != 1:
            return None
        a, b = (terms[0] if terms[1] is negated[0] else terms[1]), -negated[0]
        roles = self.roles(expr)
        return (a, b) if self.roles(a) == roles == self.roles(b) else None

    def _print_Where(self, expr: fn.Where) -> str:
        condition, a, b = expr.args
        if (a, b) == (1, 0):
            return self.cast(self._print(condition))
        if (a, b) == (0, 1):
            return self.cast(self.form("not", self._print(condition)))
        if "where_zero" in self.target.forms and b == 0:
            taken = self.roles(a) == self.roles(expr)  # a itself where the condition is True
            printed = self.params_decided(condition) if taken else None
            return self.form("where_zero", printed or self._print(condition), self.tensor(a))
        if "where_zero" in self.target.forms and a == 0:
            return self.form("where_zero", self.form("not", self._print(condition)), self.tensor(b))
        return self.form("where", self._print(condition), self.tensor(a), self.tensor(b))

    def params_decided(self, condition: sympy.Basic) -> str | None:
        """`condition`, an or of one comparison of scalar params alone and conditions on
        arrays, with the comparison in Python's operators: a Python bool where the params
        are numbers, which the target's "params_or" form takes when the code is traced (a
        power's guard, `gamma - 1 >= 0 or base > 0`); None for other conditions and
        targets without the form."""
        if "params_or" not in self.target.forms:
            return None
        decided = params_comparison(condition, self.on_params_alone)
        if decided is None:
            return None
        left, right = decided.args
        comparison = f"{self._print(left)} {decided.rel_op} {self._print(right)}"
        rest = condition.func(*(arg for arg in condition.args if arg is not decided))
        return self.form("params_or", comparison, self._print(rest))

    def on_params_alone(self, expr: sympy.Basic) -> bool:
        """Whether `expr` is computed from numbers and scalar params alone."""
        return on_params_alone(expr, self.symbol_roles, self.integers)

    def _print_WherePositive(self, expr: fn.WherePositive) -> str:
        x, value = expr.args
        return self.form("where_positive", self.tensor(x), self.tensor(value))

    def _print_SigmoidGradient(self, expr: fn.SigmoidGradient) -> str:
        y, dy = expr.args
        return self.form("sigmoid_grad", self.tensor(y), self.tensor(dy))

    def _print_TanhGradient(self, expr: fn.TanhGradient) -> str:
        y, dy = expr.args
        return self.form("tanh_grad", self.tensor(y), self.tensor(dy))

    def where_zero(self, condition: str, value: str) -> str:
        """The printed `value` where the printed `condition` holds, else 0: the target's
        "where_zero" form where it has one (TensorFlow's CPU select is slow), else its
        select."""
        if "where_zero" in self.target.forms:
            return self.form("where_zero", condition, value)
        return self.form("where", condition, value, "0.0")

    def _print_LogCosh(self, expr: fn.LogCosh) -> str:
        x = expr.args[0]
        doubled = f"-2.0*{self.parenthesize(x, PRECEDENCE['Mul'])}"
        if not self.roles(x):
            doubled = self.cast(doubled)
        softplus = self.call(fn.Softplus)
        return f"{self._print(x)} + {softplus}({doubled}) - {number_text(math.log(2.0))}"

    def _print_Softmax(self, expr: fn.Softmax) -> str:
        if Role.CLASS not in self.roles(expr.args[0]):
            return f"1.0 / {self.use(NUM_CLASSES_LOCAL)}"
        return self.form("softmax", self._print(expr.args[0]))

    def _print_LogSoftmax(self, expr: fn.LogSoftmax) -> str:
        if Role.CLASS not in self.roles(expr.args[0]):
            return f"-{self.call(sympy.log)}({self.tensor(fn.NUM_CLASSES)})"
        return self.form("log_softmax", self._print(expr.args[0]))

    def _print_CumSum(self, expr: fn.CumSum) -> str:
        """The running sum over the classes; of a value without the class role (what
        simplification left of `cumsum(where(abs(p - p) < k, a, b))`), c + 1 times it at
        class c."""
        operand = expr.args[0]
        if Role.CLASS not in self.roles(operand):
            counts = self.form("class_counts")
            return f"{self.parenthesize(operand, PRECEDENCE['Mul'])} * {counts}"
        return self.form("cumsum", self._print(operand))

    def _print_ClassId(self, expr: fn.ClassId) -> str:
        y = expr.args[0]
        if y in self.integers:
            return self.index(y)
        if (helper := self.spelled(expr)) is not None:
            return f"{helper}({self._print(y)})"
        return self.form("class_of", self._print(y))

    def _print_OneHot(self, expr: fn.OneHot) -> str:
        return self.form("one_hot", self.index(expr.args[0]))

    def _print_ClassesFrom(self, expr: fn.ClassesFrom) -> str:
        return self.form("classes_from", self.index(expr.args[0]))

    def _in_range(self, label: str, size: str) -> str:
        return f"({label} >= 0) & ({label} < {size})"

    def _print_Gather(self, expr: fn.Gather) -> str:
        """The vector's entry at the index; 0 for an index outside it, which the class of a
        non-label input (an argmax over the C classes a per-class vector has) never is."""
        vector, index = self._print(expr.args[0]), self.index(expr.args[1])
        if isinstance(expr.args[1], fn.ClassId) and expr.args[1].args[0] not in self.integers:
            return self.form("entries", vector, index)
        size = self.form("vector_size", vector)
        safe = self.form("clip_index", index, size)
        taken = self.form("entries", vector, safe)
        return self.where_zero(self._in_range(index, size), taken)

    def _print_TakeClass(self, expr: fn.TakeClass) -> str:
        x, label_expr = expr.args
        label, size = self.index(label_expr), self.form("size", self.y_pred, "-1")
        roles = self.roles(x)
        if roles == frozenset({Role.CLASS}):
            return self._print_Gather(fn.Gather(x, label_expr))
        if Role.CLASS not in roles:
            return self.where_zero(self._in_range(label, size), self.tensor(x))
        values = self._print(x)
        if roles != ALL_ROLES:  # a gather's batch dimensions do not broadcast
            values = self.broadcast_like(x, self.y_pred)
        taken = self.form("take_class", values, self.form("clip_index", label, size))
        return self.where_zero(self._in_range(label, size), taken)

    def _print_Channel(self, expr: fn.Channel) -> str:
        """`x[..., k:k + 1]`: entry k kept as an axis of size 1 (keepdims form)."""
        x, index = expr.args
        stop = "" if index == -1 else str(index + 1)
        return f"{self.parenthesize(x, PRECEDENCE['Func'], True)}[..., {index}:{stop}]"

    def _print_Channels(self, expr: fn.Channels) -> str:
        x, start, stop = expr.args
        bounds = f"{start}:{'' if stop is sympy.oo else stop}"
        return f"{self.parenthesize(x, PRECEDENCE['Func'], True)}[..., {bounds}]"

    def _print_ChannelSplit(self, expr: fn.ChannelSplit) -> str:
        sizes = ", ".join(map(str, [*expr.sizes, -1]))
        return self.form("split_channels", self._print(expr.args[0]), f"[{sizes}]")

    def _print_ChannelFromSplit(self, expr: fn.ChannelFromSplit) -> str:
        split, index = expr.args
        return f"{self.parenthesize(split, PRECEDENCE['Func'], True)}[{index}]"

    _print_ChannelsFromSplit = _print_ChannelFromSplit

    def _print_ClassCount(self, expr: fn.ClassCount) -> str:
        return self.cast(self.form("size", self._print(expr.args[0]), "-1"))

    def _print_InverseCount(self, expr: fn.InverseCount) -> str:
        return self.inverse_count(expr.removed_roles)

    def _print_Parenthesized(self, expr: fn.Parenthesized) -> str:
        inner = expr.args[0]
        return self._print(inner) if inner in self.temporaries else f"({self._print(inner)})"

    def _print_ChannelsJoined(self, expr: fn.ChannelsJoined) -> str:
        self.helpers_used.add(CHANNELS_JOINED)
        size = self.form("size", self._print(expr.args[0]), "-1")
        pieces = [f"({self._print(v)}, {start}, {stop})" for v, start, stop in expr.pieces]
        return f"{CHANNELS_JOINED}({', '.join([size, *pieces])})"

    def _print_IntoChannels(self, expr: fn.IntoChannels) -> str:
        """`_into_channels`: the values padded to `like`'s channels; values without the
        slice's class axis (without the class role, or with y_true's) first broadcast to
        a slice of several channels, and values without another of its roles (a scalar
        mean's adjoint) to the slice."""
        values, like, start, stop = expr.args
        if start == 0 and stop == sympy.oo:  # every channel: a broadcast (backward.in_the_shape_of)
            return self.broadcast_like(values, self._print(like))
        printed = self._print(values)
        single = (stop != sympy.oo and stop - start == 1) or (start == -1 and stop == sympy.oo)
        sized = fn.has_the_class_axis_of(values, fn.Channels(like, start, stop), self.roles)
        whole = self.roles(like) - {Role.CLASS} <= self.roles(values)
        if not (sized or single) or not whole:
            printed = self.broadcast_like(values, self._print(fn.Channels(like, start, stop)))
        self.helpers_used.add(INTO_CHANNELS)
        size = self.form("size", self._print(like), "-1")
        end = "None" if stop == sympy.oo else str(stop)
        return f"{INTO_CHANNELS}({printed}, {size}, {start}, {end})"

    def _print_SoftmaxCrossEntropy(self, expr: fn.SoftmaxCrossEntropy) -> str:
        if (helper := self.spelled(expr)) is not None:
            y, z = (self._print(arg) for arg in expr.args)
            return f"{helper}({y}, {z})"
        y, z = (self._print(arg) for arg in expr.args)
        return self.form("softmax_cross_entropy_kept", y, z)

    def softmax_cross_entropy(self, expr: fn.SoftmaxCrossEntropy) -> str:
        """The fused op's call, its result without the class axis."""
        y, z = (self._print(arg) for arg in expr.args)
        return self.form("softmax_cross_entropy", y, z)

    def _print_SparseSoftmaxCrossEntropy(self, expr: fn.SparseSoftmaxCrossEntropy) -> str:
        z, label_expr = expr.args
        label, size = self.index(label_expr), self.form("size", self.y_pred, "-1")
        safe = self.form("clip_index", label, size)
        loss = self.form("sparse_softmax_cross_entropy", safe, self._print(z))
        return self.where_zero(self._in_range(label, size), loss)

    def _print_Other(self, expr: fn.Other) -> str:
        self.helpers_used.add(OTHER)
        value = expr.args[0]
        integer = _is_integer_valued(value, self.integers)
        printed = self.index(value) if integer else self._print(value)
        return f"{OTHER}({printed}, {int(expr.args[1])})"

    def _print_PairDot(self, expr: fn.PairDot) -> str:
        self.helpers_used.add(PAIR_DOT)
        a, b, partner = expr.args
        return f"{PAIR_DOT}({self._print(a)}, {self._print(b)}, {int(partner)})"

    def _print_PairSquaredDistance(self, expr: fn.PairSquaredDistance) -> str:
        """The helper's call; b is None for a's rows to each other (`a == b`)."""
        self.helpers_used.add(PAIR_SQUARED_DISTANCE)
        a, b, partner = expr.args
        other = "None" if b == a else self._print(b)
        return f"{PAIR_SQUARED_DISTANCE}({self._print(a)}, {other}, {int(partner)})"

    def _print_SoftplusPair(self, expr: fn.SoftplusPair) -> str:
        """The helper's call; arguments with every role have y_pred's shape and dtype. A
        pair with a + b = 1 is binary cross-entropy against the target a, on a target
        with a form for it."""
        a, b, x = expr.args
        weights = (a + b).replace(fn.Parenthesized, lambda grouped: grouped)
        if "sigmoid_cross_entropy" in self.target.forms and sympy.expand(weights) == 1:
            return self.form("sigmoid_cross_entropy", self._print(a), self.tensor(x))
        same_shape = all(self.roles(arg) == ALL_ROLES for arg in expr.args)
        helper = SOFTPLUS_PAIR_SAME_SHAPE if same_shape else SOFTPLUS_PAIR
        self.helpers_used.add(helper)
        return f"{helper}({self._print(a)}, {self._print(b)}, {self.tensor(x)})"

    def _print_Reduction(self, expr: fn.Reduction) -> str:
        if fn.is_count(expr):
            return self.count(expr.removed_roles)
        body = expr.args[0]
        body_roles = self.roles(body)
        present, missing = expr.removed_roles & body_roles, expr.removed_roles - body_roles
        if present:
            value = self._print(body)
        else:  # the operand of `C * x` or `x + log(C)` below (`precedence_of`)
            infix = PRECEDENCE["Mul"] if isinstance(expr, fn.ReduceSum) else PRECEDENCE["Add"]
            value = self.parenthesize(body, infix, strict=True)
        if present and isinstance(expr, ACCUMULATING_REDUCTIONS):
            value = self.cast(value, self.use(SUM_DTYPE_LOCAL))
        if (class_helper := self.spelled(expr)) is not None:
            blocks = "" if self.no_per_class_vector(body) else ", blocks=False"
            value = f"{class_helper}({value}{blocks})"
        elif present:
            value = self.reduced(reduction_op(type(expr), self.target), value, present)
        if present and isinstance(expr, ACCUMULATING_REDUCTIONS):
            value = self.cast(value)
        if missing and isinstance(expr, fn.ReduceSum):
            return f"{self.count(missing)} * {value}"
        if missing and isinstance(expr, fn.LogSumExp):
            return f"{value} + {self.log_count(missing)}"
        return value

    def no_per_class_vector(self, expr: sympy.Basic) -> bool:
        """Whether no factor of `expr` is a per-class vector (a `w[c]` param broadcast over
        the batch), which `_sum_over_classes` does not split into blocks."""
        factors = sympy.Mul.make_args(expr)
        return all(self.roles(factor) != {Role.CLASS} for factor in factors)

    def reduced(self, op: str, value: str, roles: Roles) -> str:
        """`op` over the axes of `roles`, kept. Over the spatial axes alone, on a target
        where a reduction over no axes reduces them all, `_over_spatial` does nothing when
        y_pred has none."""
        keywords = f"{self.target.keepdims}=True"
        if op in HELPER_NAMES:
            self.helpers_used.add(op)
        if roles == {Role.SPATIAL} and self.target.empty_axes_reduce_all:
            self.helpers_used.add(OVER_SPATIAL)
            return f"{OVER_SPATIAL}({op}, {value})"
        return f"{op}({value}, {self.target.axis}={self.axes(roles)}, {keywords})"

    _print_ReduceSum = _print_Reduction
    _print_ReduceMean = _print_Reduction
    _print_ReduceMax = _print_Reduction
    _print_ReduceMin = _print_Reduction
    _print_LogSumExp = _print_Reduction

    def _print_LogSumExpShift(self, expr: fn.LogSumExpShift) -> str:
        """The target's form, over the removed roles (which the fusion that makes it
        requires its operand to have)."""
        x = expr.args[0]
        return self.form("log_sum_exp_shift", self._print(x), self.axes(expr.removed_roles))

    def _print_LogOfSum(self, expr: fn.LogOfSum) -> str:
        """The log of the sum, both in float32 for half precision, then cast back; a
        role the operand lacks is a count times its sum."""
        body = expr.args[0]
        present = expr.removed_roles & self.roles(body)
        missing = expr.removed_roles - present
        value = self.cast(self._print(body), self.use(SUM_DTYPE_LOCAL))
        if present:
            value = self.reduced(reduction_op(fn.ReduceSum, self.target), value, present)
        value = self.cast(f"{self.call(sympy.log)}({value})")
        return f"{value} + {self.log_count(missing)}" if missing else value

    # ------------------------------------------------------------ conditions

    def _print_Relational(self, expr: sympy.core.relational.Relational) -> str:
        if (taken := self.any_taken(expr)) is not None:
            return taken
        left, right = expr.args
        tensors = [_is_integer_valued(side, self.integers) for side in (left, right)]
        integer_valued = [
            tensor or side.is_Integer or side == fn.NUM_CLASSES
            for tensor, side in zip(tensors, (left, right), strict=True)
        ]
        if all(integer_valued) and any(tensors):  # a label against 0 or the class count
            sides = [self.index(s) if not s.is_Integer else str(int(s)) for s in (left, right)]
        elif self.roles(left):  # TensorFlow converts the right side to the left's dtype
            sides = [self._print(left), self._print(right)]
        elif self.roles(right):  # but would make a number on the left float32
            sides = [self.tensor(left), self._print(right)]
        else:  # numbers, scalar params, num_classes
            sides = [self.tensor(left), self.tensor(right)]
        return self.form(expr.rel_op, sides[0], sides[1])

    def any_taken(self, expr: sympy.core.relational.Relational) -> str | None:
        """`sum(where(c, 1, 0)) > 0`, a count compared with 0 (as a spec writes it, and as
        `max(x, where=c)` desugars), as whether any c holds: one boolean reduction, not a
        cast and a sum (half the time at [256, 256, 256] in TensorFlow). None for other
        comparisons, and for a count that is a temporary, which is computed anyway."""
        count, zero = expr.args
        if not isinstance(expr, sympy.StrictGreaterThan) or zero != 0 or count in self.temporaries:
            return None
        if not isinstance(count, fn.ReduceSum) or not isinstance(count.args[0], fn.Where):
            return None
        condition, taken, other = count.args[0].args
        present = count.removed_roles & self.roles(condition)
        if (taken, other) != (1, 0) or not present:
            return None
        return self.reduced(self.target.forms["any"], self._print(condition), present)

    def _print_And(self, expr: sympy.And) -> str:
        return self._logical("and", expr.args)

    def _print_Or(self, expr: sympy.Or) -> str:
        return self._logical("or", expr.args)

    def _logical(self, operation: str, args: tuple[sympy.Basic, ...]) -> str:
        ordered = sorted(args, key=sympy.default_sort_key)
        printed = self._print(ordered[0])
        for arg in ordered[1:]:
            printed = self.form(operation, printed, self._print(arg))
        return printed

    def _print_Not(self, expr: sympy.Not) -> str:
        return self.form("not", self._print(expr.args[0]))

    def _print_BooleanTrue(self, expr: sympy.Basic) -> str:
        return "True"

    def _print_BooleanFalse(self, expr: sympy.Basic) -> str:
        return "False"

    def _print_Piecewise(self, expr: sympy.Basic) -> str:
        raise TypeError("Piecewise has no form here; lower `where` to Where")
