"""The verifier's cost is bounded: memoised walks over shared nodes, layouts within a budget."""

from __future__ import annotations

import math

import sympy

from lossdsl.verification.driver import (
    EAGER_ABOVE,
    VERIFICATION_BUDGET,
    distinct_nodes,
    verification_plan,
)
from lossdsl.verification.expander import select
from lossdsl.verification.layouts import verify_layouts
from lossdsl.verification.reference import ReferenceGraph, free_symbols


def cost(plan: tuple, nodes: int) -> int:
    return nodes * sum(math.prod(layout.shape) for layout, _, _ in plan)


def test_a_small_result_is_verified_at_every_layout_and_at_the_edges() -> None:
    layouts = verify_layouts(None)
    plan = verification_plan(layouts, 40)
    assert [layout for layout, _, _ in plan] == [*layouts, layouts[0]]
    assert [edge for _, edge, _ in plan] == [False, False, False, True]
    assert [traced for _, _, traced in plan] == [True, False, False, True]


def test_larger_results_drop_the_largest_layouts_first_and_stay_within_the_budget() -> None:
    layouts = verify_layouts(None)
    seen = []
    for nodes in (40, 700, 1500, 2200, 5000):
        plan = verification_plan(layouts, nodes)
        seen.append(len(plan))
        assert plan[-1][1] and plan[0][0].batch <= layouts[0].batch  # the edges always run
        if len(plan) > 2 or plan[0][0] == layouts[0]:
            assert cost(plan, nodes) <= VERIFICATION_BUDGET
    assert seen == sorted(seen, reverse=True) and seen[0] == 4 and seen[-1] == 2
    smallest = verification_plan(layouts, 5000)
    assert smallest[0][0].batch == 2 and smallest[0][0].classes == layouts[0].classes


def test_the_largest_results_drop_to_the_least_classes_where_c_is_free() -> None:
    layouts = verify_layouts(None)
    fixed = verification_plan(layouts, 20_000)
    free = verification_plan(layouts, 20_000, least_classes=2)
    assert [layout.classes for layout, _, _ in fixed] == [layouts[0].classes] * 2
    assert [(layout.batch, layout.classes) for layout, _, _ in free] == [(2, 2), (2, 2)]
    assert verification_plan(layouts, 40, least_classes=2)[0][0] == layouts[0]


def test_a_result_past_eager_above_nodes_is_run_eagerly_at_every_draw() -> None:
    layouts = verify_layouts(None)
    assert {step[2] for step in verification_plan(layouts, EAGER_ABOVE)} == {True, False}
    assert {step[2] for step in verification_plan(layouts, EAGER_ABOVE + 1)} == {False}


def test_walks_over_shared_nodes_take_linear_time() -> None:
    # A chain where each level uses the one below twice: 2^60 paths, 61 distinct nodes.
    x, y = sympy.symbols("x y", real=True)
    expr: sympy.Basic = x + y
    for _ in range(60):
        expr = sympy.Function("f")(expr, expr + 1)
    assert distinct_nodes([expr]) < 200
    assert free_symbols(expr, {}) == frozenset({x, y})


def test_the_gradient_walks_the_order_it_is_given_and_each_node_once() -> None:
    # A chain of selects, each level reading the one below three times: 3^40 paths.
    p, q = sympy.symbols("p q", real=True)
    with sympy.evaluate(False):
        expr: sympy.Basic = p * q
        for level in range(40):
            expr = select(sympy.GreaterThan(expr, level, evaluate=False), expr + p, expr * q)
    graph = ReferenceGraph({p: 1.5, q: 0.75})
    order = graph.order([expr])
    assert len(order) < 300 and order[-1] == expr
    given = graph.gradient({expr: 1.0}, order)
    assert given == ReferenceGraph({p: 1.5, q: 0.75}).gradient({expr: 1.0})
    assert given[p] != 0 and given[q] != 0
