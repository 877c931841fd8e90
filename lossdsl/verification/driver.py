"""`verify_module`: which layouts and draws a compile is verified at, within a budget."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np
import sympy

from lossdsl.channels import agreements, requirements, true_offset, whole_uses
from lossdsl.codegen.names import mean_function_name, python_names
from lossdsl.codegen.targets import DEFAULT_TARGET
from lossdsl.diagnostics import Diagnostic
from lossdsl.symbolic import functions
from lossdsl.symbolic.loss import SymbolicLoss
from lossdsl.verification.compare import compare, run_candidate
from lossdsl.verification.layouts import Layout, draw_inputs, verify_layouts
from lossdsl.verification.reference import reference

SEED = 20240601
"""The seed of the input draws: verification is deterministic."""


LABEL_SELECTORS: tuple[type[functions.LossFunction], ...] = (
    functions.OneHot,
    functions.Gather,
    functions.TakeClass,
)
"""Functions that select by class id: their specs also see labels outside [0, C)."""


def verify_module(
    symbolic: SymbolicLoss,
    per_sample_function: Callable[..., Any],
    target: str = DEFAULT_TARGET,
    mean_function: Callable[..., Any] | None = None,
) -> tuple[Diagnostic, ...]:
    """E9xx errors where the generated function disagrees with SymPy (empty when all agrees).

    `per_sample_function(y_true, y_pred, **params)` is the generated function as `target`
    runs it compiled (a `@tf.function`, a `jax.jit`; PyTorch's plain function); it is
    run in float64 with the params at their defaults on random inputs at each of the
    `verify_layouts` and on edge points at the smallest (compiled at the smallest layout;
    eagerly, through its Python function (`eager_function`), at the others, since each new
    rank would cost a trace), and its value and gradient (the target's own autodiff) are
    compared with the exact reference. So is a module's `mean_function` (`<name>_mean`),
    at the edges and at one random draw, the last with at most one spatial axis (the
    spatial layout's, where the plan keeps it: the image layout's axes are counted alike),
    with the mean of the reference's values and its gradient, always through its Python
    function: the same operations as its trace (which would cost as much time again as
    the rest of a small spec's verification), and the same printer, fusions and helpers as
    the per-sample function, whose trace is verified at every layout.
    At most one diagnostic per code is returned, for the first draw that shows it.
    """
    checked = symbolic.checked
    params = {param.name: param.default for param in checked.params}
    names = python_names(checked)
    arguments = {names[name]: value for name, value in params.items()}
    output_roles = functions.roles_of(symbolic.result, symbolic.roles)
    selects_by_label = any(
        expr is not None and expr.has(*LABEL_SELECTORS) for expr in (symbolic.result, symbolic.mask)
    )
    layouts, least_classes = verification_layouts(symbolic)
    plan = verification_plan(
        layouts,
        distinct_nodes(expr for expr in (symbolic.result, symbolic.mask) if expr is not None)
        * PAIR_COST**checked.partners,
        least_classes,
    )
    random = [i for i, (layout, edge, _) in enumerate(plan) if not edge and len(layout.spatial) < 2]
    mean_draws = {i for i, (_, edge, _) in enumerate(plan) if edge} | set(random[-1:])
    rng = np.random.default_rng(SEED)
    found: dict[str, Diagnostic] = {}
    for index, (layout, edge, traced) in enumerate(plan):
        draw = draw_inputs(
            rng, checked.y_true, checked.y_pred, layout, output_roles, edge, selects_by_label
        )
        mean_run = mean_function if index in mean_draws else None
        exact = reference(symbolic, draw, params, rng, mean=mean_run is not None)
        runs = [(per_sample_function, exact, traced)]
        if mean_run is not None:
            mean = exact.of_the_mean(mean_function_name(checked.loss_name))
            runs.append((mean_run, mean, False))
        for function, expected, run_traced in runs:
            candidate = run_candidate(
                function if run_traced else eager_function(function, target),
                expected.draw,
                arguments,
                expected.values.shape,
                target,
            )
            for diagnostic in compare(symbolic, expected, candidate):
                found.setdefault(diagnostic.code, diagnostic)
    return tuple(found[code] for code in sorted(found))


def eager_function(function: Callable[..., Any], target: str) -> Callable[..., Any]:
    """The Python code of a compiled generated function, which runs op by op: a
    `tf.function`'s `python_function`, a `jax.jit`'s `__wrapped__`; anything else itself."""
    if target == "tensorflow":
        return getattr(function, "python_function", function)
    if target == "jax":
        return getattr(function, "__wrapped__", function)
    return function


def verification_layouts(
    symbolic: SymbolicLoss,
) -> tuple[tuple[Layout, Layout, Layout], int | None]:
    """The layouts `symbolic` is verified at, and the fewest classes its largest results
    may be verified with: None where its class count is fixed, by a vector param's length
    or by a class axis of literal size that y_pred's must match (`ClassCounts.exact`)."""
    lengths = {len(p.default) for p in symbolic.checked.params if isinstance(p.default, tuple)}
    counts = class_counts(symbolic)
    fixed = min(lengths, default=counts.exact)
    layouts = verify_layouts(
        fixed, counts.fewest, counts.true_classes, symbolic.checked.paired, counts.true_offset
    )
    return layouts, None if fixed else max(LEAST_CLASSES, counts.fewest)


class ClassCounts(NamedTuple):
    """The class counts a spec's inputs are drawn with."""

    fewest: int
    """The fewest classes y_pred needs for the spec's selections of it."""
    true_classes: int | None
    """y_true's: the count a combination with a class axis of literal size needs
    (`channels.agreements`), else the fewest its selections need where they are its only
    use, else (None) y_pred's."""
    exact: int | None = None
    """y_pred's where a combination needs it to be that count."""
    true_offset: int = 0
    """Without `true_classes`, y_true's count less y_pred's, where class axes of both meet
    (`channels.true_offset`)."""


def class_counts(symbolic: SymbolicLoss) -> ClassCounts:
    """The class counts of `symbolic`'s inputs (`ClassCounts`)."""
    checked = symbolic.checked
    roots = [checked.result, *([checked.mask] if checked.mask is not None else [])]
    needs = {
        argument: need.needed for argument, need in requirements(roots, checked.source).items()
    }
    fewest, true_classes = needs.get("y_pred", 1), needs.get("y_true")
    if true_classes is not None and whole_uses(roots, "y_true"):
        fewest, true_classes = max(fewest, true_classes), None
    agreed = agreements(roots)
    if "y_true" not in agreed and (offset := true_offset(roots)) is not None:
        # y_true's selections need `true_classes`, y_pred's `fewest`, at C and C + offset
        fewest = max(fewest, (true_classes or 1) - offset)
        return ClassCounts(fewest, None, agreed.get("y_pred"), offset)
    return ClassCounts(fewest, agreed.get("y_true", true_classes), agreed.get("y_pred"))


PAIR_COST = 4
"""How many times the elements of a layout a partner role multiplies them by, about (the
batch sizes of a spec that pairs samples), in `verification_plan`'s estimate."""

VERIFICATION_BUDGET = 60_000
"""Node-positions (distinct nodes of the result times y_pred elements, summed over the
draws) the exact reference may expand: about 15 s of verification on one core."""

EAGER_ABOVE = 1_000
"""Distinct nodes past which every draw runs the function eagerly: tracing it and building
its gradient graph then costs more than the verification (a 2,000-term spec: about 60 s of
TensorFlow graph building and optimisation for two runs). The same Python code runs the
same operations either way; a traced call is still verified for every smaller result."""

Step = tuple[Layout, bool, bool]
"""One draw of the verification: its layout, whether at the edges, whether the function
runs traced (else eagerly: `eager_function`)."""


LEAST_CLASSES = 2
"""The fewest classes the largest results are verified with (where no vector param fixes
C): two, so that functions over the class axis still mix classes."""


def verification_plan(
    layouts: tuple[Layout, Layout, Layout],
    nodes: int,
    least_classes: int | None = None,
) -> tuple[Step, ...]:
    """The draws a result of `nodes` distinct nodes is verified at, within the budget.

    Every layout at random, and the smallest at its edges; for a result of thousands of
    nodes the image layout goes, then the spatial one, then the smallest shrinks to a batch
    of 2, then (where the spec leaves C free: `least_classes`) to that many classes: the
    cost of the exact reference grows with nodes times elements. The smallest layout runs
    the traced function, or past `EAGER_ABOVE` nodes the eager one.
    """
    small, spatial, image = layouts
    fewer = replace(small, batch=2)
    least = replace(fewer, classes=min(fewer.classes, least_classes or fewer.classes))
    first = nodes <= EAGER_ABOVE
    candidates = (
        ((small, False, first), (spatial, False, False), (image, False, False)),
        ((small, False, first), (spatial, False, False)),
        ((small, False, first),),
        ((fewer, False, first),),
        ((least, False, first),),
    )
    plans = [(*random, (random[0][0], True, first)) for random in candidates]
    for plan in plans:
        if nodes * sum(math.prod(layout.shape) for layout, _, _ in plan) <= VERIFICATION_BUDGET:
            return plan
    return plans[-1]


def distinct_nodes(roots: Iterable[sympy.Basic]) -> int:
    """How many distinct sub-expressions `roots` have (shared ones counted once)."""
    return len(functions.nodes_of(roots))
