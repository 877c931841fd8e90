"""Target fusions: named rules that rewrite a loss into TensorFlow's fused ops and helpers.

Each rule is one function whose docstring states its law; like the stable rewrites
(`symbolic.rewrites`) it looks at one node and returns the replacement, or None. Unlike
them, a fusion may depend on an input's kind, on which input is y_pred, or only change
the cost, so it belongs to the target: `fuse` applies `FUSIONS` innermost first just
before printing, and records each one that fired. The verifier checks the printed code
against the expression before them. `XLA_SPELLINGS` are the same kind of rule for a
module compiled with XLA: nodes the printer writes as one of the module's helpers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace

import sympy
from sympy.codegen.cfunctions import expm1, log1p

from lossdsl.codegen.helpers import (
    CLASS_OF,
    LOG1P,
    MEAN_OVER_CLASSES,
    SOFTMAX_CROSS_ENTROPY,
    SUM_OVER_CLASSES,
)
from lossdsl.symbolic import functions as fn
from lossdsl.symbolic.loss import AppliedRewrite
from lossdsl.symbolic.rewrites import expm1_of_exp_minus_one
from lossdsl.typed import ALL_ROLES, Role, Roles

# ---------------------------------------------------------------- fusions


@dataclass(frozen=True)
class FusionContext:
    """What the target rules may assume: the inputs whose rows sum to 1 (`onehot`), the
    roles, which symbol is y_pred, the clips the expression also uses other than in a log,
    the inputs that are integer labels, and, for `LAST_FUSIONS`, every node of the body
    as the fusions before them left it (`body`, set by `fuse_last`)."""

    rows_summing_to_one: frozenset[sympy.Symbol]
    roles: Mapping[sympy.Symbol, Roles]
    y_pred: sympy.Symbol
    clips_outside_logs: frozenset[sympy.Basic] = frozenset()
    labels: frozenset[sympy.Symbol] = frozenset()
    body: frozenset[sympy.Basic] = frozenset()
    known_roles: dict[sympy.Basic, Roles] = field(default_factory=dict, compare=False, repr=False)
    """Each node's roles once computed (`roles_of`), shared by the contexts `replace`
    makes of this one, which keep its `roles`."""

    def roles_of(self, expr: sympy.Basic) -> Roles:
        """`functions.roles_of` under `roles`, each distinct node computed once."""
        return fn.roles_of(expr, self.roles, self.known_roles)

    def has_all_roles(self, expr: sympy.Basic) -> bool:
        return self.roles_of(expr) == ALL_ROLES

    def class_sum(self, expr: sympy.Expr) -> sympy.Expr | None:
        """`expr`'s sum over the class axis where it is affine in `onehot` inputs."""
        return fn.class_sum(expr, self.rows_summing_to_one, self.roles)


def softmax_cross_entropy(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """sum_c(k * t * log_softmax(z)) = -k * softmax_cross_entropy_with_logits(t, z), t's rows sum 1.

    t is a `onehot` y, or affine in one (`functions.class_sum`), as label smoothing's
    y * (1 - s) + s / C, and does not read y_pred; a factor summing to -1 is -t.

    Equal in value for any t and any k without the class role. TensorFlow's gradient with
    respect to z, softmax(z) - t, is the exact one, softmax(z) * sum(t) - t, because the
    rows of a `onehot` input sum to 1 (the kind's contract, which the verifier draws).
    """
    if not isinstance(node, fn.ReduceSum) or Role.CLASS not in node.removed_roles:
        return None
    factors = list(sympy.Mul.make_args(node.args[0]))
    logits = [f for f in factors if isinstance(f, fn.LogSoftmax) and context.has_all_roles(f)]
    if len(logits) != 1:
        return None
    factors.remove(logits[0])
    rows = [f for f in factors if Role.CLASS in context.roles_of(f)]
    if len(rows) != 1:
        return None
    factors.remove(rows[0])
    sign = context.class_sum(rows[0])
    if sign not in (1, -1):
        return None
    labels = sign * rows[0]
    if labels.has(context.y_pred):  # the fused node passes no gradient to its labels
        return None
    fused = -sign * sympy.Mul(*factors) * fn.SoftmaxCrossEntropy(labels, logits[0].args[0])
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
    by hand (`codegen.tensorflow_helpers`): fewer passes than differentiating two
    softplus, and exact in both tails, where TensorFlow's fused sigmoid cross-entropy
    cancels.
    """
    if not isinstance(node, sympy.Add):
        return None
    # the terms themselves, not their coefficients times softplus again: SymPy multiplies
    # -(1 - y) out to y - 1, and a term rebuilt so was not found among the sum's to go
    terms: dict[sympy.Expr, list[tuple[sympy.Expr, sympy.Expr]]] = {}
    for term in node.args:
        if (split := _softplus_factor(term)) is not None:
            coefficient, argument = split
            terms.setdefault(argument, []).append((coefficient, term))
    for argument, of_negated in terms.items():
        x = -argument
        if argument.could_extract_minus_sign() and x in terms and x.has(context.y_pred):
            a = sympy.Add(*(coefficient for coefficient, _ in of_negated))
            b = sympy.Add(*(coefficient for coefficient, _ in terms[x]))
            paired = [term for _, term in (*of_negated, *terms[x])]
            rest = [term for term in node.args if term not in paired]
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
    (`codegen.tensorflow_helpers`). A clip used elsewhere too (focal loss's
    (1 - q)^gamma * log(q)) stays one `_clip`, computed once for both.
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
    if context.roles_of(delta) or not residual.has(context.y_pred):
        return None
    same_inside = sympy.expand(inside - residual**2 / 2) == 0
    same_outside = sympy.expand(outside - (delta * size - delta**2 / 2)) == 0
    return fn.Huber(residual, delta) if same_inside and same_outside else None


NON_FINITE_PRONE: tuple[type, ...] = (sympy.exp, sympy.log, log1p, expm1, sympy.cosh)
"""Functions whose value or derivative can be infinite at a finite argument."""

OVERFLOWING: tuple[type, ...] = (sympy.exp, expm1, sympy.cosh)
"""Those of them that are infinite at large finite arguments: they overflow."""


def non_finite_prone(expr: sympy.Basic) -> bool:
    """Whether `expr` can be infinite or have an infinite derivative where its argument
    is finite: an exp, log or cosh, a division or a fractional power in it, but for a
    division by a count (the class count, the elements a mean takes), which is 1 or
    more, and an exp of a value at most 0 (a softmax as exp(log_softmax(z))), which is
    at most 1; or an infinity (the -inf a masked max starts from)."""
    return any(
        (
            isinstance(node, NON_FINITE_PRONE)
            and not (isinstance(node, sympy.exp) and node.args[0].is_nonpositive)
        )
        or (isinstance(node, sympy.Expr) and node.is_number and not node.is_finite)
        or (
            isinstance(node, sympy.Pow)
            and not (node.exp.is_Integer and node.exp >= 0)
            and not (node.base == fn.NUM_CLASSES or fn.is_count(node.base))
        )
        for node in sympy.preorder_traversal(expr)
    )


def _coupled_roles(expr: sympy.Basic, y_pred: sympy.Symbol) -> Roles:
    """The roles along which some value in `expr` combines several elements of y_pred."""
    coupled: set[Role] = set()
    for node in sympy.preorder_traversal(expr):
        if node.has(y_pred):
            coupled |= _roles_combined_by(node)
    return frozenset(coupled)


def _roles_combined_by(node: sympy.Basic) -> Roles:
    """The roles along which `node` itself combines several elements of its arguments."""
    if not isinstance(node, fn.LossFunction) or isinstance(node, fn.Elementwise):
        return frozenset()
    if isinstance(node, fn.Reduction):
        return node.removed_roles
    if isinstance(node, fn.Other | fn.PairDot):  # a pair reads its partner's elements
        return frozenset({Role.BATCH, Role.CLASS, node.partner_role})
    return frozenset({Role.CLASS})  # softmax, class ids, gathers: across the classes


GUARD_TREE_LIMIT = 20_000
"""The most nodes a guarded branch may have as a tree (a shared sub-expression counted at
each use). Each guard copies its condition, which holds the branch, into every read of
y_pred, so guards nested in guards grow the tree geometrically, and SymPy's tree walks
(`has`, the ordering of an `And`'s arguments) with it: past this size a branch is left
unguarded, as it was before the guard existed."""


def _tree_size(expr: sympy.Basic, symbol: sympy.Symbol) -> tuple[int, int]:
    """`expr`'s size as a tree and how often it reads `symbol`, each distinct node visited
    once."""

    def count(node: sympy.Basic, below: list[tuple[int, int]]) -> tuple[int, int]:
        return (
            1 + sum(size for size, _ in below),
            int(node == symbol) + sum(reads for _, reads in below),
        )

    return fn.fold(expr, count)


def _guarded(
    branch: sympy.Basic, condition: sympy.Basic, taken: bool, context: FusionContext
) -> sympy.Basic:
    """`branch` reading y_pred only where it is `taken` under `condition` (elsewhere a
    stop_gradient copy), when it could be non-finite and that is sound, else as it is."""
    p = context.y_pred
    if not branch.has(p) or not non_finite_prone(branch):
        return branch
    if _coupled_roles(branch, p) & context.roles_of(condition):
        # a value of the branch reads elements whose conditions differ: gate the
        # arguments of its exps instead, where each element has its own condition
        return _exponents_gated(branch, condition, taken, context)
    branch_size, reads = _tree_size(branch, p)
    if branch_size + reads * (_tree_size(condition, p)[0] + 3) > GUARD_TREE_LIMIT:
        return branch  # nested guards: each copies its condition into every read of p
    frozen = fn.StopGradient(p)
    gate = fn.Where(condition, p, frozen) if taken else fn.Where(condition, frozen, p)
    return branch.xreplace({p: gate})


def _exponents_gated(
    branch: sympy.Basic, condition: sympy.Basic, taken: bool, context: FusionContext
) -> sympy.Basic:
    """`branch` with the argument u of each exp (or expm1, cosh) that reads y_pred and has
    every role of `condition` read only where the branch is `taken` (elsewhere a
    stop_gradient copy); its value is unchanged. A pair loss's exp(s_an - s_ap) under
    `where=` reads its pair's similarities, which no gate on y_pred holds apart, but each
    element of u has its own pair's condition, and u overflows exp where it is left out.
    An exp below a node that combines elements along the condition's roles (a class sum)
    stays as it is: each of its elements reaches the branch's values at other elements,
    with their conditions, where a gate by its own would drop its gradient."""
    condition_roles = context.roles_of(condition)

    def gated(node: sympy.Basic) -> sympy.Basic:
        overflowing = isinstance(node, OVERFLOWING)  # (a tuple of types narrows to object)
        if overflowing:
            (u,) = node.args
            if not u.has(context.y_pred) or not condition_roles <= context.roles_of(u):
                return node
            frozen = fn.StopGradient(u)
            return node.func(
                fn.Where(condition, u, frozen) if taken else fn.Where(condition, frozen, u)
            )
        if not node.args or _roles_combined_by(node) & condition_roles:
            return node
        return fn.with_args(node, [gated(arg) for arg in node.args])

    return gated(branch)


def untaken_branches_guarded(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """where(c, a(p), b(p)) = where(c, a(where(c, p, sg(p))), b(where(c, sg(p), p))) for
    y_pred p and sg = stop_gradient, and the same for minimum, maximum and clip: a reads
    y_pred only where c holds, b only where it does not.

    TensorFlow differentiates both branches of a select at every element and multiplies
    the untaken one's derivative by 0: where that branch is infinite (exp(1000 * p) at
    p = 0.9, log(x) at x = 0), 0 * inf is NaN, though the exact gradient is finite. With
    y_pred gated by a select, the NaN goes to the stop_gradient copy and is dropped (the
    "double where"). Only branches that can be non-finite (`non_finite_prone`) are
    gated, and only where each of their values reads y_pred at elements that share one
    condition (no reduction or class-axis function over the condition's roles); where
    they do not (pairs of samples), the arguments of their exps are (`_exponents_gated`).
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


ROWS: Roles = frozenset({Role.BATCH, Role.CLASS})
"""The roles of a row of a spec that pairs samples: [batch, C]."""


def _other_row(expr: sympy.Basic, context: FusionContext) -> bool:
    """Whether `expr` is other(x, n) for a row x."""
    return isinstance(expr, fn.Other) and context.roles_of(expr.args[0]) == ROWS


def _summed_over_the_rest(fused: sympy.Expr, node: fn.ReduceSum) -> sympy.Expr:
    """A pair fusion of the class sum `node`, summed over the other roles `node` removes."""
    outer = node.removed_roles - {Role.CLASS}
    return fn.ReduceSum(fused, fn.encode_roles(outer)) if outer else fused


def pair_distances(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """sum_c(m * (a + k * other(b, n))^2) = m * pair_squared_distance(a, -k * b, n) for
    rows a and b with the roles batch and class, a number k and m without the class
    role: the squared distances of every pair of samples are |a|^2 + |b|^2 - 2 a.b, one
    matrix product [B, C] x [C, B] and two row norms, not a [B, B, C] difference, its
    square and its sum.

    Equal in exact arithmetic. In floating point two rows closer than their norms'
    rounding lose digits to the cancellation (TensorFlow Addons' pairwise_distance and
    torch.cdist compute it so too); the helper clamps the result at 0 and makes a row's
    distance to itself exactly 0.
    """
    if not isinstance(node, fn.ReduceSum) or Role.CLASS not in node.removed_roles:
        return None
    factors = sympy.Mul.make_args(node.args[0])
    squares = [f for f in factors if isinstance(f, sympy.Pow) and f.exp == 2]
    if len(squares) != 1 or not isinstance(squares[0].base, sympy.Add):
        return None
    body, scale = squares[0], sympy.Mul(*(f for f in factors if f is not squares[0]))
    if Role.CLASS in context.roles_of(scale):
        return None
    others = []
    for term in sympy.Add.make_args(body.base):
        k, rest = term.as_coeff_Mul()
        if _other_row(rest, context):
            others.append((term, k, rest))
    if len(others) != 1:
        return None
    term, k, other = others[0]
    a = body.base - term
    if context.roles_of(a) != ROWS:
        return None
    b, partner = other.args
    b = -k * b
    if a.could_extract_minus_sign():  # (other(e) - e)^2: the distance of e to e
        a, b = -a, -b
    return _summed_over_the_rest(scale * fn.PairSquaredDistance(a, b, partner), node)


def pair_products(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """sum_c(k * a * other(b, n)) = k * pair_dot(a, b, n) for rows a and b with the roles
    batch and class, every factor of a without a partner role (a per-sample scale, a
    param) and k a number or a factor with a partner role: the inner products of every
    pair of samples are one matrix product [B, C] x [C, B], not a [B, B, C] product and
    its sum. A per-sample scale scales a's rows, not the [B, B] products, whose gradient
    would then take a sum over the pairs.

    Equal in value (the same terms summed in another order); TensorFlow's gradient of the
    matrix product is the exact one.
    """
    if not isinstance(node, fn.ReduceSum) or Role.CLASS not in node.removed_roles:
        return None
    factors = list(sympy.Mul.make_args(node.args[0]))
    others = [f for f in factors if _other_row(f, context)]
    if len(others) != 1:
        return None
    rest = [f for f in factors if f is not others[0]]
    rows = [f for f in rest if context.roles_of(f) <= ROWS and not f.is_number]
    row = sympy.Mul(*rows)
    if context.roles_of(row) != ROWS:
        return None
    outside = sympy.Mul(*(f for f in rest if f not in rows))
    fused = outside * fn.PairDot(row, others[0].args[0], others[0].args[1])
    return _summed_over_the_rest(fused, node)


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
    role the reduction removes (numbers, scalar params, per-sample weights); the terms of
    what stays inside then go out too (`terms_outside_sums`).

    `-sum(y * log(p))` then negates one value per sample, not every element, and its
    gradient multiplies one array fewer. A sum of negated terms is one negated sum:
    sum(-a - b) = -sum(a + b).
    """
    if not isinstance(node, fn.ReduceSum | fn.ReduceMean):
        return None
    body, removed = node.args
    terms = sympy.Add.make_args(body)
    if len(terms) > 1 and all(term.could_extract_minus_sign() for term in terms):
        return -node.func(-body, removed)
    factors = sympy.Mul.make_args(body)
    outside = [f for f in factors if not context.roles_of(f) & node.removed_roles]
    if not outside or len(outside) == len(factors):
        return None
    inside = node.func(sympy.Mul(*(f for f in factors if f not in outside)), removed)
    return sympy.Mul(*outside) * (terms_outside_sums(inside, context) or inside)


def terms_outside_sums(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """sum(x + c) = sum(x) + n * c and mean(x + c) = mean(x) + c, n the count of the
    elements summed, for the terms c that lack every role the reduction removes (numbers,
    scalar params, per-sample values); the factors of what stays inside then go out too.

    `mean(r - log(r) - 1)` then subtracts 1 from the mean, not from every element: one
    pass fewer, and a constant of a likelihood (lgamma(r), log(2 pi) / 2) is added once.
    """
    if not isinstance(node, fn.ReduceSum | fn.ReduceMean):
        return None
    body, removed = node.args
    terms = sympy.Add.make_args(body)
    outside = [t for t in terms if not context.roles_of(t) & node.removed_roles]
    if not outside or len(outside) == len(terms):
        return None
    inside = node.func(sympy.Add(*(t for t in terms if t not in outside)), removed)
    constant = sympy.Add(*outside)
    if isinstance(node, fn.ReduceSum):
        constant *= fn.ReduceSum(sympy.S.One, removed)
    return (factors_outside_sums(inside, context) or inside) + constant


def factors_outside_selects(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """where(c, w * a, w * b) = w * where(c, a, b), a branch 0 counting as w * 0, for the
    factors w that cannot be non-finite (`non_finite_prone`), where the select then has
    fewer roles than w.

    A select whose condition and other factors are per-sample values (the guard of the
    generalized cross-entropy's p_y^(q - 1), taken per sample) then selects one value
    per sample, and the whole-shaped factor multiplies its result once: one pass over
    the classes where the select of the product took two. A factor that can be infinite
    stays inside, where the select gives 0 for it (0 * inf is NaN).
    """
    if not isinstance(node, fn.Where):
        return None
    condition, *branches = node.args
    products = [sympy.Mul.make_args(branch) for branch in branches if branch != 0]
    shared = set(products[0]).intersection(*products[1:]) if products else set()
    outside = sorted(
        (f for f in shared if not f.is_Number and not non_finite_prone(f)),
        key=sympy.default_sort_key,
    )
    if not outside:
        return None
    inside = [branch if branch == 0 else fn.taken_out(branch, outside) for branch in branches]
    select = fn.Where(condition, *inside)
    if context.roles_of(select) == context.roles_of(node):
        return None
    return sympy.Mul(*outside) * select


def log_sum_exp_shared(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """logsumexp(x) = m + log(sum(exp(x - m))) for the shift m = max(x) (0 where not
    finite), over roles x has.

    The forward pass computes the exponentials exp(x - m) itself, where
    tf.math.reduce_logsumexp kept them to itself, and the gradient, exp(x - m) /
    sum(exp(x - m)), reads them where exp(x - logsumexp(x)) was a second exp (tilted
    risk, TERM: 1.18, 1.15 -> 1.01, 0.88 of hand-written TensorFlow at [1024, 256]).
    Not where SymPy would not keep exp(x - m) an exp (an x with a log term, whose exp
    it multiplies out, as for `backward`'s logsumexp rule).
    """
    if not isinstance(node, fn.LogSumExp):
        return None
    x, removed = node.args
    if node.removed_roles - context.roles_of(x):
        return None
    shift = fn.LogSumExpShift(x, removed)
    exponentials = sympy.exp(x - shift)
    if not isinstance(exponentials, sympy.exp):
        return None
    return shift + fn.LogOfSum(exponentials, removed)


def functions_inside_takes(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """f(x)[i] = f(x[i]) for a function f of one element (a log, an exp, a clip, a power
    by a number) and a class id i in [0, C); 0 for any other i, as the one-hot row gives.

    Cross-entropy of a label on probabilities, `log(clip(p))[y]`, then takes one log
    per sample where it took one per class, and its gradient divides one value per
    sample. Only where the loss's own backward pass differentiates it: the select of
    f(0) for labels outside [0, C) (log(0) is -inf) is no autodiff's to take apart.
    """
    if not isinstance(node, fn.TakeClass):
        return None
    x, label = node.args

    def taken(x: sympy.Basic) -> sympy.Basic:
        """x at the label's class, taken below each function of one element of x."""
        elementwise = isinstance(x, fn.Elementwise | sympy.log | sympy.exp | sympy.Abs)
        if not (elementwise or isinstance(x, sympy.Pow)) or not x.args:
            return fn.TakeClass(x, label)
        first, *rest = x.args
        if Role.CLASS not in context.roles_of(first) or any(context.roles_of(arg) for arg in rest):
            return fn.TakeClass(x, label)
        return fn.with_args(x, [taken(first), *rest])

    inner = taken(x)
    if isinstance(inner, fn.TakeClass):
        return None
    return fn.Where(fn.label_is_class(label), inner, 0)


def classes_from(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """cumsum(onehot(i)) = classes_from(i): 1 at the classes c >= i for i in [0, C), 0
    everywhere for i outside.

    One comparison of the class positions with the label, where TensorFlow's cumulative
    sum scans the classes (CORAL's levels, 1 - cumsum(onehot(y))); both are constants of
    the gradient.
    """
    if isinstance(node, fn.CumSum) and isinstance(node.args[0], fn.OneHot):
        return fn.ClassesFrom(node.args[0].args[0])
    return None


def softmax_from_log_softmax(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """softmax(z) = exp(log_softmax(z)), where the body computes log_softmax(z) too.

    One elementwise exp of what the body has at hand, where a softmax is a second pass
    over the classes of z (a reduction, a subtraction, an exp, a sum and a quotient): a
    cross-entropy with a penalty on the softmax (confidence penalty, symmetric or poly
    cross-entropy) needs both. At [4096, 10] TensorFlow's CPU softmax took 230 us of a
    step's 540-630, an exp of the same array 60-190 (benchmarks/README.md, nineteenth
    session). It is as exact: both exponentiate a rounded difference of logits, z - max
    in the softmax, z - logsumexp(z) here, so both are off by eps times its size.
    """
    if not isinstance(node, fn.Softmax) or fn.LogSoftmax(*node.args) not in context.body:
        return None
    if Role.CLASS not in context.roles_of(node.args[0]):
        return None
    return sympy.exp(fn.LogSoftmax(*node.args))


def where_positive(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """where(x > 0, g, 0) = where_positive(x, g), for x and g of one shape and a g that
    cannot be infinite (`non_finite_prone`).

    The gradient of a ReLU (of maximum(0, x), whose tie goes to 0): TensorFlow's
    ReluGrad, one pass where the select takes three (the comparison, its cast and the
    product), and its product with 0 is the select's 0 for a finite g. Hand-written
    TensorFlow gets it from autodiff of tf.nn.relu: a multi-class margin loss went from
    1.02-1.18 of its time to 0.86-0.97. Not for an x >= 0 (maximum(x, 0)'s tie goes to x).
    """
    if not isinstance(node, fn.Where) or node.args[2] != 0:
        return None
    condition, value, _ = node.args
    if isinstance(condition, sympy.StrictGreaterThan) and condition.rhs == 0:
        x = condition.lhs
    elif isinstance(condition, sympy.StrictLessThan) and condition.lhs == 0:
        x = condition.rhs
    else:
        return None
    roles = context.roles_of(node)
    if context.roles_of(x) != roles or context.roles_of(value) != roles:
        return None
    if x.free_symbols & context.labels or non_finite_prone(value):
        return None
    return fn.WherePositive(x, value)


def sigmoid_derivatives(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """g * s * (1 - s) = sigmoid_gradient(s, g) for a sigmoid s = sigmoid(x) and a g of
    its shape; -sigmoid_gradient(s, g) for g * s * (s - 1).

    A sigmoid's derivative times what multiplies it: TensorFlow's SigmoidGrad, one pass
    where 1 - s and two products take three (0.56 of their time at [256, 32000], 0.87
    at [1024, 256]). Hand-written TensorFlow gets it from autodiff of tf.sigmoid; the
    compiler's own backward pass writes the derivative out, as the asymmetric loss's
    (1 - s) * ... * s shows.
    """
    return _times_a_derivative(
        node,
        context,
        fn.Sigmoid,
        lambda s: (((s, 1 - s), 1), ((s, s - 1), -1)),
        fn.SigmoidGradient,
    )


def tanh_derivatives(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """g * (1 - t^2) = tanh_gradient(t, g) for t = tanh(x) and a g of its shape;
    -tanh_gradient(t, g) for g * (t^2 - 1).

    TensorFlow's TanhGrad, one pass where the square, 1 minus it and the product take
    three: Focal-L1's 2 sigmoid(b |e|) - 1 is tanh(b |e| / 2) (a stable rewrite), whose
    derivative multiplies the rest of its gradient.
    """
    return _times_a_derivative(
        node,
        context,
        sympy.tanh,
        lambda t: (((1 - t**2,), 1), ((t**2 - 1,), -1)),
        fn.TanhGradient,
    )


def _times_a_derivative(
    node: sympy.Basic,
    context: FusionContext,
    function: type[sympy.Function],
    derivatives: Callable[[sympy.Basic], tuple[tuple[tuple[sympy.Expr, ...], int], ...]],
    gradient: type[sympy.Function],
) -> sympy.Basic | None:
    """sign * gradient(y, g) for a product of g and the factors `derivatives(y)` gives
    with that sign, y a `function` of the product's shape and g of that shape too (the
    fused gradient ops do not broadcast); else None."""
    if not isinstance(node, sympy.Mul):
        return None
    roles = context.roles_of(node)
    factors = sympy.Mul.make_args(node)
    parts = (part for factor in factors for part in _shallow_parts(factor))
    for y in dict.fromkeys(part for part in parts if isinstance(part, function)):
        if context.roles_of(y) != roles:
            continue
        for needed, sign in derivatives(y):
            rest = _without(factors, needed)
            if rest is not None and context.roles_of(g := sympy.Mul(*rest)) == roles:
                return sign * gradient(y, g)
    return None


def _shallow_parts(expr: sympy.Basic) -> Iterator[sympy.Basic]:
    """The factors of the terms of `expr`, and the bases of their powers: where a
    derivative's factors (s, 1 - s, 1 - t^2) have their function."""
    for term in sympy.Add.make_args(expr):
        for part in sympy.Mul.make_args(term):
            yield part
            if isinstance(part, sympy.Pow):
                yield part.base


def _without(
    factors: tuple[sympy.Basic, ...], needed: tuple[sympy.Expr, ...]
) -> list[sympy.Basic] | None:
    """`factors` less one of each of `needed`, a whole power x^n counting as x times
    x^(n - 1); None where one is missing."""
    rest = list(factors)
    for factor in needed:
        if factor in rest:
            rest.remove(factor)
            continue
        power = next(
            (
                f
                for f in rest
                if isinstance(f, sympy.Pow) and f.base == factor and f.exp.is_Integer and f.exp >= 2
            ),
            None,
        )
        if power is None:
            return None
        rest[rest.index(power)] = factor ** (power.exp - 1)
    return rest


def clip_masks_read_from_the_clip(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """lo <= x and x <= hi = (clip(x, lo, hi) == x) for lo <= hi, where the body computes
    clip(x, lo, hi): the clip's derivative, one comparison where two and their and
    take three passes (as the helpers' `_inside`). False at NaN either way.

    The own backward pass writes a clip's derivative as its mask: binary cross-entropy
    on probabilities, focal loss, KL divergence and the Combo loss select their gradient
    with it where the clipped value is not only under a log.
    """
    if not isinstance(node, sympy.And) or len(node.args) != 2:
        return None
    sides = {sympy.GreaterThan: "low", sympy.LessThan: "high"}  # x >= lo, x <= hi
    bounds: dict[str, sympy.Basic] = {}
    operands = set()
    for comparison in node.args:
        if (side := sides.get(type(comparison))) is None:
            return None
        value, bounds[side] = comparison.args
        operands.add(value)
    if len(bounds) != 2 or len(operands) != 1:
        return None
    (x,) = operands
    if not (bounds["high"] - bounds["low"]).is_nonnegative:
        return None
    clip = fn.Clip(x, bounds["low"], bounds["high"])
    return sympy.Eq(clip, x, evaluate=False) if clip in context.body else None


def channels_split(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """x[a:b] = piece k of split(x, [a_1, b_1 - a_1, ...]), where the body selects two or
    more disjoint channel ranges of x, at entries counted from the start.

    TensorFlow's CPU strided slice of a narrow last axis copies slowly: at [65536, 2] two
    slices took 2.4 times one split's time, and the margin ranking loss went from 1.05 to
    0.74 ms with one split (hand-written TensorFlow 0.87). Not in a module XLA compiles,
    where slices fuse into their readers.
    """
    if not isinstance(node, fn.Channel | fn.Channels):
        return None
    x = node.args[0]
    found = {_channel_range(other) for other in context.body if _selects_from(other, x)}
    ranges = sorted(bounds for bounds in found if bounds is not None)
    if len(ranges) < 2 or len(ranges) < len(found):
        return None
    if any(later[0] < earlier[1] for earlier, later in itertools.pairwise(ranges)):
        return None  # overlapping ranges (an open end, oo, overlaps any later one)
    # a piece starts at 0 and at every bound, the last piece running to the end
    starts = sorted({0, *(bound for bounds in ranges for bound in bounds if bound != sympy.oo)})
    split = fn.ChannelSplit(x, *(stop - start for start, stop in itertools.pairwise(starts)))
    bounds = _channel_range(node)
    assert bounds is not None
    piece = starts.index(bounds[0])
    if isinstance(node, fn.Channel):
        return fn.ChannelFromSplit(split, piece)
    return fn.ChannelsFromSplit(split, piece)


def _selects_from(node: sympy.Basic, x: sympy.Basic) -> bool:
    return isinstance(node, fn.Channel | fn.Channels) and node.args[0] == x


def _channel_range(node: sympy.Basic) -> tuple[int, sympy.Expr] | None:
    """The entries [start, stop) a channel selection takes, stop `oo` for the rest; None
    where a bound counts from the end."""
    if isinstance(node, fn.Channel):
        index = int(node.args[1])
        return None if index < 0 else (index, index + 1)
    start, stop = node.args[1:]
    if start < 0 or (stop is not sympy.oo and stop <= 0):
        return None
    return int(start), stop if stop is sympy.oo else int(stop)


def sum_of_a_partial_sum(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """sum(x, R) = sum(sum(x, S), R - S), where the body computes sum(x, S) for S within
    R; the same for means.

    The partial sum is a smaller array than x: the mean over everything of per-sample
    values with a linear term, 1 - p_t + (1 - p_t)^2 / 2 for Taylor cross-entropy, takes
    the term as one sum over every element of y * p, which reads every element again
    where the body has the row sums p_t. Of the partial sums over the operand's roles,
    the largest.
    """
    if not isinstance(node, fn.ReduceSum | fn.ReduceMean):
        return None
    x, removed = node.args[0], node.removed_roles
    present = context.roles_of(x)
    # each proper subset of the roles removed, those of the most present roles first
    subsets = sorted(
        (
            frozenset(roles)
            for size in range(1, len(removed))
            for roles in itertools.combinations(sorted(removed, key=str), size)
        ),
        key=lambda roles: -len(roles & present),
    )
    for roles in subsets:
        partial = node.func(x, fn.encode_roles(roles))
        if roles & present and partial in context.body:
            return node.func(partial, fn.encode_roles(removed - roles))
    return None


def log_of_a_computed_product(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """c * log(a) - c * log(b) = c * log(a / b) and c * log(a) + c * log(b) = c * log(a * b)
    for a number c, where the body computes a / b (a * b): one log where two were taken.

    `log_of_product` takes the log of a ratio apart, so that a rule for either factor's
    log applies and the ratio cannot overflow on its way to the log. Where the body
    computes the ratio anyway (the Itakura-Saito divergence, r - log(r) - 1 for
    r = (y + eps) / (p + eps)), its overflow reaches the loss either way, and the two
    logs and their difference, a log being the dearest elementwise op, are three passes
    where one log of it would do. Equal for positive a and b, 0 and infinities included.
    """
    if not isinstance(node, sympy.Add):
        return None
    logs = [
        (coefficient, rest.args[0], term)
        for term in node.args
        for coefficient, rest in [term.as_coeff_Mul()]
        if isinstance(rest, sympy.log) and coefficient.is_Rational
    ]
    for (c1, a, first), (c2, b, second) in itertools.combinations(logs, 2):
        if c1 == -c2:
            candidates = [(c1, a / b), (c2, b / a)]
        elif c1 == c2:
            candidates = [(c1, a * b)]
        else:
            continue
        for coefficient, product in candidates:
            if product in context.body:
                rest = [term for term in node.args if term not in (first, second)]
                merged = coefficient * sympy.log(product, evaluate=False)
                return sympy.Add(*rest, merged)
    return None


def expm1_from_the_body(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """exp(x) - 1 = expm1(x), in a longer sum too, where the body computes expm1(x): the
    stable rewrite `expm1_of_exp_minus_one` of a derivative, whose value it reads.

    LINEX's loss b (expm1(a e) - a e) has the gradient a b (exp(a e) - 1): read from the
    loss's expm1, one pass where the exp and the subtraction took two (an expm1 costs about
    what they do), and exact near e = 0, as the forward pass is.
    """
    rewritten = expm1_of_exp_minus_one(node)
    if rewritten is None:
        return None
    taken = [term for term in sympy.Add.make_args(rewritten) if isinstance(term, expm1)]
    return rewritten if any(term in context.body for term in taken) else None


def sum_of_known_sums(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """sum(a * x + b * w) = a * sum(x) + b * sum(w) for a and b without the roles the
    sum removes, where the body computes sum(x) and sum(w); the same for means.

    A softmax's gradient reads sum(g * q) for the gradient g with respect to q = softmax(z);
    a loss of per-sample sums of q (Dice, Tversky, Cauchy-Schwarz) has g = a * q - b * y,
    and sum(g * q) = a * sum(q^2) - b * sum(y * q), both sums of the forward pass: no pass
    over the classes where the product and its sum took two. Not where one of the sums is
    new: Tversky's false negatives sum(y * (1 - p)) as sum(y) - sum(y * p) would lose
    every digit they have where the prediction is nearly perfect, the loss's last steps.
    """
    if not isinstance(node, fn.ReduceSum | fn.ReduceMean):
        return None
    body, removed = node.args
    terms = _linear_terms(body, node.removed_roles, context.roles_of)
    if terms is None or list(terms) == [body] or set(terms) == {sympy.S.One}:
        return None
    known = []
    for monomial, coefficient in terms.items():
        reduced = node.func(monomial, removed)
        if monomial != 1 and reduced not in context.body:
            return None
        known.append(coefficient * reduced)
    return sympy.Add(*known)


def terms_by_array(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """a * x + b * (1 - x) = b + (a - b) * x for arrays x the body has (an input, a node it
    computes) and coefficients a and b with fewer roles, and where(c, a * x + b, 0) =
    where(c, a, 0) * x + where(c, b, 0) for a condition c with fewer roles and an x that
    cannot be non-finite: the sum collected by array, where that takes fewer passes over
    its shape.

    Tversky's gradient with respect to p is y * a + (1 - y) * b for per-sample a and b,
    under the select of its power's guard, per sample too: four passes and the select's,
    where the collected form takes two, a product and a sum, and selects per sample.
    """
    condition = None
    if isinstance(node, fn.Where) and node.args[2] == 0:
        condition, expr = node.args[:2]
    elif isinstance(node, sympy.Add):
        expr = node
    else:
        return None
    if not context.has_all_roles(node):
        return None  # the smaller arrays (per-sample values) are a few passes' worth

    roles_of = context.roles_of
    roles = roles_of(node)
    smaller = [
        roles_of(factor)
        for term in sympy.Add.make_args(expr)
        for factor in sympy.Mul.make_args(term)
        if roles_of(factor) != roles
    ]
    whole_roles = roles - frozenset().union(*smaller)
    if not whole_roles or (condition is not None and roles_of(condition) & whole_roles):
        return None
    terms = _linear_terms(expr, whole_roles, roles_of)
    if terms is None or not all(
        monomial == 1
        or (_computed(monomial, context) and not isinstance(monomial, sympy.Add | sympy.Mul))
        for monomial in terms
    ):
        return None
    if condition is not None and any(non_finite_prone(monomial) for monomial in terms):
        return None

    def small(coefficient: sympy.Expr) -> sympy.Expr:
        if condition is not None:
            return fn.Where(condition, coefficient, 0)
        return fn.Parenthesized(coefficient) if isinstance(coefficient, sympy.Add) else coefficient

    collected = sympy.Add(*(small(c) * m for m, c in terms.items() if c != 0))
    if collected == node:  # already collected: most sums of a long loss's terms
        return None
    old, new = (_tree_passes(x, roles, roles_of) for x in (node, collected))
    return collected if new < old else None


def _tree_passes(expr: sympy.Basic, roles: Roles, roles_of: Callable[[sympy.Basic], Roles]) -> int:
    """The passes over the shape `roles` that computing `expr` takes, each distinct node
    once: a sum's or product's as `_passes` counts them, one for any other node of that
    shape but the arrays it reads (a symbol)."""
    total = 0
    for node in set(sympy.preorder_traversal(expr)):
        if isinstance(node, sympy.Symbol) or roles_of(node) != roles:
            continue
        if isinstance(node, sympy.Add):  # its terms' products are nodes of their own
            total += _passes(sympy.Add, sympy.S.One, node.args, roles, roles_of, False)
        elif isinstance(node, sympy.Mul):
            coefficient, rest = node.as_coeff_Mul()
            factors = sympy.Mul.make_args(rest)
            total += _passes(sympy.Mul, abs(coefficient), factors, roles, roles_of)
        else:
            total += 1
    return total


def _computed(expr: sympy.Basic, context: FusionContext) -> bool:
    """Whether the body has `expr` as an array already, an input or a node it computes."""
    return isinstance(expr, sympy.Symbol) or expr in context.body


KNOWN_SUM_TERMS = 8
"""The most terms `sum_of_known_sums` takes a sum's operand apart into."""


def _linear_terms(
    expr: sympy.Basic, removed: Roles, roles_of: Callable[[sympy.Basic], Roles]
) -> dict[sympy.Basic, sympy.Expr] | None:
    """`expr` as the sum of coefficient * monomial: each monomial a product of factors
    with a role in `removed` (1 for a term with none), each coefficient of factors
    without; None past `KNOWN_SUM_TERMS` monomials."""
    if not roles_of(expr) & removed:
        return {sympy.S.One: expr}
    if isinstance(expr, sympy.Add):
        total: dict[sympy.Basic, sympy.Expr] = {}
        for term in expr.args:
            if (part := _linear_terms(term, removed, roles_of)) is None:
                return None
            for monomial, coefficient in part.items():
                total[monomial] = total.get(monomial, sympy.S.Zero) + coefficient
        return total if len(total) <= KNOWN_SUM_TERMS else None
    if isinstance(expr, sympy.Mul):
        product: dict[sympy.Basic, sympy.Expr] = {sympy.S.One: sympy.S.One}
        for factor in expr.args:
            if (part := _linear_terms(factor, removed, roles_of)) is None:
                return None
            expanded: dict[sympy.Basic, sympy.Expr] = {}
            for (m1, c1), (m2, c2) in itertools.product(product.items(), part.items()):
                expanded[m1 * m2] = expanded.get(m1 * m2, sympy.S.Zero) + c1 * c2
            if len(expanded) > KNOWN_SUM_TERMS:
                return None
            product = expanded
        return product
    return {expr: sympy.S.One}


PARTIAL_OPERANDS = 8
"""The most operands a product or sum may have for `product_of_a_partial_product` and
`terms_of_a_partial_sum` to look up its partial products or sums (each subset of them:
2^8 lookups at most)."""


def product_of_a_partial_product(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """x * y * z = (x * y) * z, where the body computes x * y, and the product takes
    fewer passes over its shape that way.

    A backward pass multiplies again what the forward pass has multiplied: the Student-t
    NLL's value reads e^2 * exp(-2 s) / nu, its gradient with respect to the log-scale
    (nu + 1) / (1 + that) * e^2 * exp(-2 s) / nu, two passes more over the batch where
    it can read the forward pass's product. Of the partial products that save the most
    passes (`_passes`), the largest; numbers stay outside.
    """
    if not isinstance(node, sympy.Mul):
        return None
    coefficient, rest = node.as_coeff_Mul()
    return _reading_a_partial(node, sympy.Mul, coefficient, sympy.Mul.make_args(rest), context)


def terms_of_a_partial_sum(node: sympy.Basic, context: FusionContext) -> sympy.Basic | None:
    """c * x + c * y + c * z = c * ((x + y) + z), for a number c, where the body computes
    x + y, and the sum takes fewer passes over its shape that way; c * x + c * y =
    c * (x + y) where no partial sum is computed.

    SymPy multiplies a number into the terms of a sum: the gradient of square(p - y) is
    2 * p - 2 * y, three passes where the forward pass has p - y and one product by 2
    would do (the Brier score's gradient, 2 * s - 2 * y - 2 * sum(s * (s - y)), reads
    the forward pass's s - y). Of the partial sums that save the most passes (`_passes`),
    the largest.
    """
    if not isinstance(node, sympy.Add):
        return None
    content = _rational_content(node.args)
    if content == 1 and len(node.args) > PARTIAL_OPERANDS:
        return None  # no partial sums looked up, no number to take out
    return _reading_a_partial(node, sympy.Add, content, _divided(node.args, content), context)


def _rational_content(terms: tuple[sympy.Basic, ...]) -> sympy.Rational:
    """The largest positive rational that divides the number of every term into a whole
    number (2 for 2 * p - 4 * y); 1 where a term's number is not rational."""
    coefficients = [term.as_coeff_Mul()[0] for term in terms]
    if not all(coefficient.is_Rational for coefficient in coefficients):
        return sympy.S.One
    numerators = [int(abs(coefficient.p)) for coefficient in coefficients]
    denominators = [int(coefficient.q) for coefficient in coefficients]
    return sympy.Rational(math.gcd(*numerators), math.lcm(*denominators))


def _divided(terms: tuple[sympy.Basic, ...], content: sympy.Expr) -> tuple[sympy.Basic, ...]:
    """`terms`, each divided by the number `content`."""
    if content == 1:
        return terms
    split = (term.as_coeff_Mul() for term in terms)
    return tuple(sympy.Mul(coefficient / content, rest) for coefficient, rest in split)


def _reading_a_partial(
    node: sympy.Basic,
    operation: type[sympy.Mul] | type[sympy.Add],
    scale: sympy.Expr,
    operands: tuple[sympy.Basic, ...],
    context: FusionContext,
) -> sympy.Basic | None:
    """`node`, which is `scale` times the `operation` of `operands`, with the largest
    proper subset of two or more operands whose operation the body computes (or the
    negation of it) read as that node (a group, `Parenthesized`), or with the scale
    multiplied once; of the forms that take the fewest passes over its shape, where that
    is fewer than `node` takes; else None."""
    roles = context.roles_of(node)

    def passes(scale: sympy.Expr, operands: tuple[sympy.Basic, ...]) -> int:
        return _passes(operation, scale, operands, roles, context.roles_of)

    def scaled(scale: sympy.Expr, operands: tuple[sympy.Basic, ...]) -> sympy.Basic:
        if operation is sympy.Mul:
            return sympy.Mul(scale, *operands)
        total = sympy.Add(*operands)
        return total if scale == 1 else scale * fn.Parenthesized(total)

    fewest = passes(sympy.S.One, node.args)
    best = None
    if operation is sympy.Add and passes(scale, operands) < fewest:
        fewest, best = passes(scale, operands), scaled(scale, operands)
    sizes = range(len(operands) - 1, 1, -1) if len(operands) <= PARTIAL_OPERANDS else ()
    for size in sizes:
        for chosen in itertools.combinations(operands, size):
            # a partial sum is read with its number taken out: 2 * p - 2 * y reads p - y
            content = _rational_content(chosen) if operation is sympy.Add else sympy.S.One
            partial = operation(*_divided(chosen, content))
            for sign in (1, -1):
                if sign * partial not in context.body:
                    continue
                others = tuple(x for x in operands if x not in chosen)
                read = fn.Parenthesized(sign * partial)
                if operation is sympy.Mul:
                    form = (scale * sign, (*others, read))
                else:
                    form = (scale, (*others, sign * content * read))
                if passes(*form) < fewest:
                    fewest, best = passes(*form), scaled(*form)
    return best


def _passes(
    operation: type[sympy.Mul] | type[sympy.Add],
    scale: sympy.Expr,
    operands: tuple[sympy.Basic, ...],
    roles: Roles,
    roles_of: Callable[[sympy.Basic], Roles],
    terms_products: bool = True,
) -> int:
    """The passes over the shape `roles` that `scale` times the `operation` of
    `operands` takes where the operands of fewer roles are combined first
    (`codegen.printer.small_factors_first`): one per whole-shaped operand after the
    first, one for the smaller ones together, one for a scale other than 1; a term of a
    sum also its own product's passes, a negation aside (a subtraction), unless
    `terms_products` is False."""
    whole = [x for x in operands if roles_of(x) == roles]
    small = len(whole) < len(operands)
    if operation is sympy.Mul:
        return max(len(whole) - 1, 0) + (small or scale != 1)
    total = max(len(whole) - 1, 0) + small + (scale != 1)
    if not terms_products:
        return total
    for term in whole:
        coefficient, rest = term.as_coeff_Mul()
        if isinstance(rest, sympy.Mul) or abs(coefficient) != 1:
            factors = sympy.Mul.make_args(rest)
            total += _passes(sympy.Mul, abs(coefficient), factors, roles, roles_of)
    return total


@dataclass(frozen=True)
class Fusion:
    """A named target fusion: `apply` gives a node's replacement or None. A fusion into a
    node only some targets write faster names their form (`Target.forms`): the others
    leave the node as it was."""

    name: str
    apply: Callable[[sympy.Basic, FusionContext], sympy.Basic | None]
    form: str | None = None

    @property
    def law(self) -> str:
        return (self.apply.__doc__ or "").strip()


FUSIONS: tuple[Fusion, ...] = tuple(
    Fusion(function.__name__, function)
    for function in (
        softmax_cross_entropy,
        sparse_softmax_cross_entropy,
        classes_from,
        softplus_pair,
        clipped_log,
        huber,
        pair_distances,
        pair_products,
        untaken_branches_guarded,
        factors_outside_sums,
        terms_outside_sums,
        factors_outside_selects,
    )
)
"""The fusions, tried in this order at each node, innermost nodes first: sub-expressions
TensorFlow computes with one fused op or one helper of ours (value and gradient
together), guards against 0 * inf in untaken branches, and factors and terms moved out of
sums."""

LAST_FUSIONS: tuple[Fusion, ...] = (
    *(
        Fusion(function.__name__, function)
        for function in (
            softmax_from_log_softmax,
            log_of_a_computed_product,
            expm1_from_the_body,
            sum_of_a_partial_sum,
            sum_of_known_sums,
            terms_by_array,
        )
    ),
    # before the partial products regroup the product it matches
    Fusion(sigmoid_derivatives.__name__, sigmoid_derivatives, form="sigmoid_grad"),
    Fusion(tanh_derivatives.__name__, tanh_derivatives, form="tanh_grad"),
    Fusion(clip_masks_read_from_the_clip.__name__, clip_masks_read_from_the_clip),
    Fusion(product_of_a_partial_product.__name__, product_of_a_partial_product),
    Fusion(terms_of_a_partial_sum.__name__, terms_of_a_partial_sum),
    Fusion(where_positive.__name__, where_positive, form="where_positive"),
    Fusion(channels_split.__name__, channels_split, form="split_channels"),
)
"""The fusions that choose a form by what else the body computes (`fuse_last`): after
every other, and after the backward pass is derived, so that the rules before them and
the backward pass see the nodes they match (a softmax's rows sum to 1); and the ReLU's
and the sigmoid's gradients, nodes no backward rule knows."""

COMPILED_LAST_FUSIONS: tuple[Fusion, ...] = tuple(
    fusion
    for fusion in LAST_FUSIONS
    if fusion.name not in (softmax_from_log_softmax.__name__, channels_split.__name__)
)
"""The last fusions of a module XLA compiles (TensorFlow's `jit_compile`, JAX's): XLA
fuses a softmax's passes with the log_softmax's itself, and the exp of the log_softmax,
which waits for it, measured slower there (confidence penalty with XLA: 0.84-0.85 of
hand-written TensorFlow at 1024x256 with both, 0.93-0.94 with the exp)."""


def fuse_last(
    exprs: list[sympy.Basic],
    context: FusionContext,
    fusions: tuple[Fusion, ...] = LAST_FUSIONS,
) -> tuple[list[sympy.Basic], tuple[AppliedRewrite, ...]]:
    """The printed body's expressions (the result, the mask, the gradient) with each of
    `fusions` (`LAST_FUSIONS`, or `COMPILED_LAST_FUSIONS`) applied in turn, each knowing
    every node of the body as the ones before it left it (`FusionContext.body`); and the
    fusions that fired, each step once however many of the expressions it rewrote."""
    applied: list[AppliedRewrite] = []
    for fusion in fusions:
        seen = replace(context, body=frozenset(fn.nodes_of(exprs)))
        fused = [fuse(expr, seen, (fusion,)) for expr in exprs]
        exprs = [expr for expr, _ in fused]
        applied += dict.fromkeys(
            step for _, steps in fused for step in steps if step not in applied
        )
    return exprs, tuple(applied)


OWN_BACKWARD_FUSIONS: tuple[Fusion, ...] = (
    *(fusion for fusion in FUSIONS if fusion.name != untaken_branches_guarded.__name__),
    Fusion(functions_inside_takes.__name__, functions_inside_takes),
    Fusion(log_sum_exp_shared.__name__, log_sum_exp_shared, form="log_sum_exp_shift"),
)
"""The fusions of a module with its own backward pass (`symbolic.backward`), applied to
the result and to its gradient: no autodiff runs through their selects, so the guards,
which only protect autodiff, are left out, a function of a taken class moves inside
the take, behind a select autodiff would differentiate both branches of, and a
logsumexp's exponentials are the forward pass's, for its gradient to read."""

FUSIONS_BY_NAME: dict[str, Fusion] = {
    fusion.name: fusion for fusion in FUSIONS + OWN_BACKWARD_FUSIONS + LAST_FUSIONS
}


def fuse(
    expr: sympy.Basic, context: FusionContext, fusions: tuple[Fusion, ...] = FUSIONS
) -> tuple[sympy.Basic, tuple[AppliedRewrite, ...]]:
    """`expr` with every sub-expression one of `fusions` matches replaced, innermost
    first, and the fusions that fired, each once per node it replaced.

    A replacement that reads other nodes of the body (`FusionContext.body`, a last
    fusion's) reads them as the fusions leave them: where they are rewritten too, the
    body computes the rewritten form alone, not both.
    """
    done: dict[sympy.Basic, sympy.Basic] = {}
    applied: list[AppliedRewrite] = []

    def visit(node: sympy.Basic) -> sympy.Basic:
        if node not in done:
            args = tuple(visit(arg) for arg in node.args)
            current = fn.with_args(node, args)
            for fusion in fusions:
                if (fused := fusion.apply(current, context)) is not None:
                    if context.body:
                        fused = fn.fold(fused, read_as_fused)
                    applied.append(AppliedRewrite(fusion.name, current, fused))
                    current = fused
                    break
            done[node] = current
        return done[node]

    def read_as_fused(node: sympy.Basic, args: list[sympy.Basic]) -> sympy.Basic:
        return visit(node) if node in context.body else fn.with_args(node, args)

    return visit(expr), tuple(applied)


# ---------------------------------------------------------------- XLA spellings


def _present_roles(node: fn.Reduction, context: FusionContext) -> Roles:
    """The roles a reduction removes that its operand has (the axes it reduces)."""
    return node.removed_roles & context.roles_of(node.args[0])


def xla_sum_over_classes(node: sympy.Basic, context: FusionContext) -> bool:
    """sum(x, class) = _sum_over_classes(x), a product with a vector of ones, where the
    classes are the only axis summed.

    XLA on the CPU splits a large reduction into slow reduce-windows; the helper runs one
    matrix-vector product over blocks of classes, as accurate as the reduction.
    """
    return isinstance(node, fn.ReduceSum) and _present_roles(node, context) == {Role.CLASS}


def xla_mean_over_classes(node: sympy.Basic, context: FusionContext) -> bool:
    """mean(x, class) = _mean_over_classes(x) = _sum_over_classes(x) / C, where the classes
    are the only axis averaged."""
    return isinstance(node, fn.ReduceMean) and _present_roles(node, context) == {Role.CLASS}


def xla_class_of(node: sympy.Basic, context: FusionContext) -> bool:
    """class(y) = _class_of(y), the first index of each row's largest entry, for a y that is
    not a label.

    Over 256 classes or more it comes from two float reductions, which XLA on the CPU
    computes faster than its argmax.
    """
    return isinstance(node, fn.ClassId) and node.args[0] not in context.labels


def xla_softmax_cross_entropy(node: sympy.Basic, context: FusionContext) -> bool:
    """softmax_cross_entropy_with_logits(y, z) = logsumexp(z) - sum(y * z) for rows of y
    summing to 1 = _softmax_cross_entropy(y, z).

    XLA on the CPU computes the two class sums in fewer passes than the fused op, with
    the same gradient, softmax(z) - y.
    """
    return isinstance(node, fn.SoftmaxCrossEntropy)


def xla_log1p(node: sympy.Basic, context: FusionContext) -> bool:
    """log1p(x) = log(w) * x / (w - 1) with w = 1 + x (x where w rounds to 1) = _log1p(x),
    for an array x.

    As exact as log1p (Goldberg, 1991), at about half the time of XLA's log1p on the CPU.
    """
    return isinstance(node, log1p) and bool(context.roles_of(node.args[0]))


@dataclass(frozen=True)
class Spelling:
    """A named XLA spelling: where `applies`, the printer writes the node as `helper`."""

    name: str
    helper: str
    applies: Callable[[sympy.Basic, FusionContext], bool]

    @property
    def law(self) -> str:
        return (self.applies.__doc__ or "").strip()


XLA_SPELLINGS: tuple[Spelling, ...] = (
    Spelling(xla_sum_over_classes.__name__, SUM_OVER_CLASSES, xla_sum_over_classes),
    Spelling(xla_mean_over_classes.__name__, MEAN_OVER_CLASSES, xla_mean_over_classes),
    Spelling(xla_class_of.__name__, CLASS_OF, xla_class_of),
    Spelling(xla_softmax_cross_entropy.__name__, SOFTMAX_CROSS_ENTROPY, xla_softmax_cross_entropy),
    Spelling(xla_log1p.__name__, LOG1P, xla_log1p),
)
"""How a module compiled with XLA (`jit_compile`) writes these nodes: with the module's
helpers (`codegen.tensorflow_helpers`), which XLA on the CPU computes faster than
TensorFlow's ops.
With a GPU or TPU the helpers fall back to TensorFlow's ops at run time."""

XLA_SPELLINGS_BY_NAME: dict[str, Spelling] = {spelling.name: spelling for spelling in XLA_SPELLINGS}


def xla_spelling(node: sympy.Basic, context: FusionContext) -> Spelling | None:
    """The XLA spelling that applies to `node`, or None."""
    return next((s for s in XLA_SPELLINGS if s.applies(node, context)), None)
