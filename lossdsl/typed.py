"""The checked tree: names resolved, lets inlined, calls bound to built-ins, roles known.

The checker produces a `CheckedSpec`; lowering to SymPy and the domain checks read it.
Every node keeps the span of the source it came from, so later stages can point at the
offending sub-expression. A `let` used twice is the same node object twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import cast

from lossdsl import nodes
from lossdsl.diagnostics import Diagnostic
from lossdsl.kinds import KINDS, Argument, InputKind
from lossdsl.source import SourceFile, Span
from lossdsl.unparse import unparse_expr


class Role(Enum):
    """A named group of tensor axes, in axis order: [batch, partner, partner2, spatial...,
    class]. The partner roles (LANGUAGE.md 6.5) exist only in specs that pair samples."""

    BATCH = "batch"
    PARTNER = "partner"
    PARTNER2 = "partner2"
    SPATIAL = "spatial"
    CLASS = "class"


Roles = frozenset[Role]
NO_ROLES: Roles = frozenset()
ALL_ROLES: Roles = frozenset({Role.BATCH, Role.SPATIAL, Role.CLASS})
"""The roles of an input: y_pred's full shape."""
PER_ELEMENT: Roles = frozenset({Role.BATCH, Role.SPATIAL})
PER_SAMPLE: Roles = frozenset({Role.BATCH})
CLASS_ONLY: Roles = frozenset({Role.CLASS})
PARTNER_ROLES: Roles = frozenset({Role.PARTNER, Role.PARTNER2})
"""The roles `other(x)` and `other(x, 2)` add: the other samples of pairs and triplets."""
PARTNER_OF: dict[int, Role] = {1: Role.PARTNER, 2: Role.PARTNER2}
"""The role `other(x, n)` adds, by n."""

ROLE_ORDER: tuple[Role, ...] = (
    Role.BATCH,
    Role.PARTNER,
    Role.PARTNER2,
    Role.SPATIAL,
    Role.CLASS,
)


def describe_roles(roles: Roles) -> str:
    """Roles as users read them: `[batch, spatial, class]`, or `scalar`."""
    if not roles:
        return "scalar"
    return "[" + ", ".join(r.value for r in ROLE_ORDER if r in roles) + "]"


def last_role(roles: Roles) -> Roles:
    """The role a default reduction removes: class, else spatial, else partner2, else
    partner, else batch."""
    for role in reversed(ROLE_ORDER):
        if role in roles:
            return frozenset({role})
    return NO_ROLES


AXIS_REDUCES: dict[str, Callable[[Roles], Roles]] = {
    "-1": last_role,
    "0": lambda roles: roles & PER_SAMPLE,
    "sample": lambda roles: roles - PER_SAMPLE,
    "all": lambda roles: roles,
    "partner": lambda roles: roles & {Role.PARTNER},
    "partner2": lambda roles: roles & {Role.PARTNER2},
}
"""The roles a reduction removes from its argument's roles, by `axis` as written."""


def class_id_roles(argument: Roles) -> Roles:
    """`class(y)`: one class id per element, y's roles without class."""
    return argument - {Role.CLASS}


def one_hot_roles(label: Roles) -> Roles:
    """`onehot(y)`: the label's roles plus class."""
    return label | {Role.CLASS}


def gather_roles(row: Roles, index: Roles) -> Roles:
    """`x[idx]`: x's roles without class, joined with the class id's (the checker's
    gathers, and the gathers that rewrites and fusions make: `TakeClass`, the sparse
    softmax cross-entropy)."""
    return (row - {Role.CLASS}) | index


@dataclass(frozen=True)
class InputInfo:
    """A declared (or default) input: which Keras argument it binds and its kind."""

    name: str
    kind: InputKind
    argument: Argument
    span: Span | None  # None for the default inputs of a spec without `input` lines
    paired: bool = False  # in a spec that pairs samples, which has no spatial role

    @property
    def roles(self) -> Roles:
        roles = PER_ELEMENT if KINDS[self.kind].class_ids else ALL_ROLES
        return roles - {Role.SPATIAL} if self.paired else roles


@dataclass(frozen=True)
class ParamDomain:
    """The set of values a param may take: an interval, with its source spelling."""

    low: float  # -math.inf when unbounded
    high: float  # math.inf when unbounded
    low_closed: bool
    high_closed: bool
    text: str  # as written (`nonneg`, `(0, 1]`), or `real` when omitted

    def contains(self, value: float) -> bool:
        if math.isnan(value):
            return False
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below

    def describe(self) -> str:
        """The domain as an interval, e.g. `[0, inf)`."""
        left = "[" if self.low_closed else "("
        right = "]" if self.high_closed else ")"
        return f"{left}{_bound(self.low)}, {_bound(self.high)}{right}"


def _bound(value: float) -> str:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:g}"


NAMED_DOMAINS: dict[str, ParamDomain] = {
    "real": ParamDomain(-math.inf, math.inf, False, False, "real"),
    "nonneg": ParamDomain(0.0, math.inf, True, False, "nonneg"),
    "positive": ParamDomain(0.0, math.inf, False, False, "positive"),
    "unit": ParamDomain(0.0, 1.0, True, True, "unit"),
}


@dataclass(frozen=True)
class ParamInfo:
    """A declared param: its domain and default (a float, or one float per class)."""

    name: str
    domain: ParamDomain
    default: float | tuple[float, ...]
    span: Span

    @property
    def is_vector(self) -> bool:
        return isinstance(self.default, tuple)

    @property
    def roles(self) -> Roles:
        return CLASS_ONLY if self.is_vector else NO_ROLES


# ---------------------------------------------------------------- typed expressions
# Every node carries `span` (where it was written), `roles` (which axes its value has)
# and `integer` (class ids and labels are integers; everything else is real).


@dataclass(frozen=True, eq=False)
class TConst:
    """A number (literals and `eps`)."""

    value: float
    span: Span
    roles: Roles = NO_ROLES
    integer: bool = False


@dataclass(frozen=True, eq=False)
class TNumClasses:
    """`num_classes`: C, known when the loss runs."""

    span: Span
    roles: Roles = NO_ROLES
    integer: bool = False


@dataclass(frozen=True, eq=False)
class TSampleIndex:
    """`sample_index`: each sample's position in the batch (an integer, role batch)."""

    span: Span
    roles: Roles = PER_SAMPLE
    integer: bool = True


@dataclass(frozen=True, eq=False)
class TInput:
    """A reference to y_true or y_pred."""

    info: InputInfo
    span: Span
    roles: Roles = ALL_ROLES
    integer: bool = False


@dataclass(frozen=True, eq=False)
class TParam:
    """A reference to a param (a scalar, or a per-class vector with the class role)."""

    info: ParamInfo
    span: Span
    roles: Roles = NO_ROLES
    integer: bool = False


@dataclass(frozen=True, eq=False)
class TAdd:
    """A flat sum; `negated[i]` marks subtracted operands."""

    operands: tuple[TExpr, ...]
    negated: tuple[bool, ...]
    span: Span
    roles: Roles = NO_ROLES
    integer: bool = False


@dataclass(frozen=True, eq=False)
class TMul:
    """A flat product; `inverted[i]` marks divisors."""

    operands: tuple[TExpr, ...]
    inverted: tuple[bool, ...]
    span: Span
    roles: Roles = NO_ROLES
    integer: bool = False


@dataclass(frozen=True, eq=False)
class TNeg:
    """Unary minus."""

    operand: TExpr
    span: Span
    roles: Roles = NO_ROLES
    integer: bool = False


@dataclass(frozen=True, eq=False)
class TPow:
    """`base ^ exponent`; `square(x)` is also lowered here by the checker."""

    base: TExpr
    exponent: TExpr
    span: Span
    roles: Roles = NO_ROLES
    integer: bool = False


@dataclass(frozen=True, eq=False)
class TCompare:
    """A comparison (only as `where`'s condition and in `mask`)."""

    op: str
    left: TExpr
    right: TExpr
    span: Span
    roles: Roles = NO_ROLES
    integer: bool = False


@dataclass(frozen=True, eq=False)
class TLogic:
    """`and`/`or` of several conditions or `not` of one (only where a comparison may be)."""

    op: str
    operands: tuple[TExpr, ...]
    span: Span
    roles: Roles = NO_ROLES
    integer: bool = False


@dataclass(frozen=True, eq=False)
class TCall:
    """A call of a built-in from `lossdsl.builtins.BUILTINS`, arguments normalised.

    Defaults are filled in (`clip(x)` has its `eps`, `1 - eps` bounds as TConst), keyword
    arguments are gone, and for a reduction `reduced` holds the roles it removes.
    """

    builtin: str
    args: tuple[TExpr, ...]
    span: Span
    roles: Roles = NO_ROLES
    integer: bool = False
    reduced: Roles = field(default=NO_ROLES)


@dataclass(frozen=True, eq=False)
class TGather:
    """`vector[index]`: the entry of a per-class vector at each element's class id."""

    vector: TExpr
    index: TExpr
    span: Span
    roles: Roles = NO_ROLES
    integer: bool = False


@dataclass(frozen=True, eq=False)
class TSelect:
    """A channel selection (LANGUAGE.md 6.2): `x[k]` (`single`: entry `start` of the class
    axis, the class role removed) or `x[a:b]` (entries a to b - 1, the class role kept).

    Bounds are integers as written (negative counts from the end) or None where left out.
    """

    operand: TExpr
    start: int | None
    stop: int | None
    single: bool
    span: Span
    roles: Roles = NO_ROLES
    integer: bool = False

    @property
    def written(self) -> str:
        """The selection as the spec writes it: `[1]`, `[0:2]`, `[-1:]`."""
        if self.single:
            return f"[{self.start}]"
        start = "" if self.start is None else str(self.start)
        return f"[{start}:{'' if self.stop is None else self.stop}]"


TExpr = (
    TConst
    | TNumClasses
    | TSampleIndex
    | TInput
    | TParam
    | TAdd
    | TMul
    | TNeg
    | TPow
    | TCompare
    | TLogic
    | TCall
    | TGather
    | TSelect
)
TCondition = TCompare | TLogic
"""What `where`'s first argument and `mask` hold."""


def children(expr: TExpr) -> tuple[TExpr, ...]:
    """The direct sub-expressions of a node, in source order."""
    match expr:
        case TAdd(operands=operands) | TMul(operands=operands) | TLogic(operands=operands):
            return operands
        case TNeg(operand=operand):
            return (operand,)
        case TPow(base=base, exponent=exponent):
            return (base, exponent)
        case TCompare(left=left, right=right):
            return (left, right)
        case TCall(args=args):
            return args
        case TGather(vector=vector, index=index):
            return (vector, index)
        case TSelect(operand=operand):
            return (operand,)
    return ()


def walk(roots: Sequence[TExpr]) -> Iterator[TExpr]:
    """Every node under the roots once (a let's shared node is visited once), parents first.

    Iterative, so deep trees cannot exhaust Python's recursion limit.
    """
    seen: set[int] = set()
    stack = list(reversed(roots))
    while stack:
        expr = stack.pop()
        if id(expr) in seen:
            continue
        seen.add(id(expr))
        yield expr
        stack.extend(reversed(children(expr)))


@dataclass(frozen=True)
class TreeSize:
    """An expression's size with every let written out where it is used.

    `depth` counts the operations on the longest path from the root to a leaf (a number,
    input or param is 0 deep); `nodes` counts every node, a let's value once per use.
    """

    depth: int
    nodes: int


def tree_size(root: TExpr, known: dict[TExpr, TreeSize]) -> TreeSize:
    """The size of `root`'s tree, computed without recursion.

    `known` memoises the sizes of nodes already measured (nodes hash by identity), so
    a let's value, shared by its uses, is measured once, and measuring each statement
    of a spec in turn costs time in its own nodes only.
    """
    stack: list[tuple[TExpr, bool]] = [(root, False)]
    while stack:
        expr, ready = stack.pop()
        if expr in known:
            continue
        operands = children(expr)
        if ready or not operands:
            sizes = [known[operand] for operand in operands]
            known[expr] = TreeSize(
                depth=1 + max(size.depth for size in sizes) if sizes else 0,
                nodes=1 + sum(size.nodes for size in sizes),
            )
        else:
            stack.append((expr, True))
            stack.extend((operand, False) for operand in operands)
    return known[root]


@dataclass(frozen=True)
class CheckedSpec:
    """A spec that passed the checks: everything later stages need, and its warnings.

    `loss` is the loss as written; `result` is what the Keras `call` returns: the
    argument of the lifted outermost mean when `lifted` (LANGUAGE.md section 2), the
    loss itself otherwise. `batch_coupled` is true when a reduction over the batch
    happens inside `result`. `desugarings` names the checker's desugarings that fired
    (`lossdsl.desugar`), in the order they are listed there. `paired` is true for a spec
    that pairs samples (LANGUAGE.md 6.5: its inputs have no spatial role), and `partners`
    counts the partner axes its tensors have: 2 with `other(x, 2)`, 1 with `other(x)`.
    """

    source: SourceFile
    loss_name: str
    loss_span: Span
    docstring: str
    y_true: InputInfo
    y_pred: InputInfo
    params: tuple[ParamInfo, ...]
    loss: TExpr
    result: TExpr
    lifted: bool
    batch_coupled: bool
    mask: TCondition | None
    warnings: tuple[Diagnostic, ...]
    desugarings: tuple[str, ...] = ()
    paired: bool = False
    partners: int = 0


def partners_used(roots: Sequence[TExpr]) -> int:
    """The number of partner axes the values under `roots` need: the largest n of the
    `other(x, n)` among them, 0 without one."""
    return max(
        (
            int(cast(TConst, node.args[1]).value)
            for node in walk(roots)
            if isinstance(node, TCall) and node.builtin == "other"
        ),
        default=0,
    )


def as_syntax(expr: TExpr) -> nodes.Expr:
    """The typed tree as syntax nodes, for display: lets written out, defaults and axes
    explicit (`mean(x)` shows as `mean(x, axis=-1)`), constants as their numbers."""
    span = expr.span
    match expr:
        case TConst(value=value):
            text = repr(value).removesuffix(".0")
            number = nodes.Number(abs(value), text.lstrip("-"), span)
            return nodes.Neg(number, span) if value < 0 else number
        case TNumClasses():
            return nodes.Name("num_classes", span)
        case TSampleIndex():
            return nodes.Name("sample_index", span)
        case TInput(info=info) | TParam(info=info):
            return nodes.Name(info.name, span)
        case TAdd(operands=operands, negated=negated):
            return nodes.Add(tuple(as_syntax(o) for o in operands), negated, span)
        case TMul(operands=operands, inverted=inverted):
            return nodes.Mul(tuple(as_syntax(o) for o in operands), inverted, span)
        case TNeg(operand=operand):
            return nodes.Neg(as_syntax(operand), span)
        case TPow(base=base, exponent=exponent):
            return nodes.Pow(as_syntax(base), as_syntax(exponent), span)
        case TCompare(op=op, left=left, right=right):
            return nodes.Compare(cast(nodes.CompareOp, op), as_syntax(left), as_syntax(right), span)
        case TLogic(op=op, operands=operands):
            logic_op = cast(nodes.LogicOp, op)
            return nodes.Logic(logic_op, tuple(as_syntax(o) for o in operands), span)
        case TGather(vector=vector, index=index):
            return nodes.Index(as_syntax(vector), as_syntax(index), span)
        case TSelect(operand=operand, start=start, stop=stop, single=single):
            if single:
                entry = _bound_syntax(start, span)
                assert entry is not None, "a single selection has its index"
                return nodes.Index(as_syntax(operand), entry, span)
            bounds = nodes.Slice(_bound_syntax(start, span), _bound_syntax(stop, span), None, span)
            return nodes.Index(as_syntax(operand), bounds, span)
        case TCall(builtin=builtin, args=args, reduced=reduced):
            keywords: tuple[nodes.Keyword, ...] = ()
            if reduced:
                axis = next(w for w, rule in AXIS_REDUCES.items() if rule(args[0].roles) == reduced)
                word = nodes.Name(axis, span) if axis.isalpha() else None
                written = word or as_syntax(TConst(float(axis), span))
                keywords = (nodes.Keyword("axis", written, span, span),)
            return nodes.Call(builtin, tuple(as_syntax(a) for a in args), keywords, span, span)


def _bound_syntax(bound: int | None, span: Span) -> nodes.Number | nodes.Neg | None:
    """A selection's integer bound as a literal (`-1` a negated number)."""
    if bound is None:
        return None
    number = nodes.Number(float(abs(bound)), str(abs(bound)), span)
    return nodes.Neg(number, span) if bound < 0 else number


def typed_text(expr: TExpr) -> str:
    """The typed tree as spec text (`as_syntax`, unparsed)."""
    return unparse_expr(as_syntax(expr))
