"""The checker: names, declarations, roles, normalisation and lifting of the typed tree."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lossdsl import builtins, nodes
from lossdsl.checker import check
from lossdsl.declarations import RESERVED_REASONS, VECTOR_LIMIT
from lossdsl.diagnostics import LossSpecError, render
from lossdsl.parser import parse
from lossdsl.source import SourceFile, Span
from lossdsl.statements import INLINED_DEPTH_LIMIT, INLINED_SIZE_LIMIT
from lossdsl.typed import (
    ALL_ROLES,
    CLASS_ONLY,
    NO_ROLES,
    PER_ELEMENT,
    PER_SAMPLE,
    CheckedSpec,
    Role,
    TAdd,
    TCall,
    TCompare,
    TConst,
    TExpr,
    TGather,
    TInput,
    TMul,
    TNeg,
    TNumClasses,
    TParam,
    TPow,
    TreeSize,
    tree_size,
    walk,
)

FOCAL = """\
# Categorical focal loss (Lin et al., 2017).
# The leading comment block becomes the loss's docstring.

input y: onehot          # y_true, shape [batch, ..., C]
input p: prob            # y_pred, shape [batch, ..., C]

param gamma: nonneg = 2.0
param alpha: unit = 0.25

let q = clip(p)
let ce = -y * log(q)
loss focal = mean(sum(alpha * (1 - q)^gamma * ce))
"""

ONEHOT = "input y: onehot\ninput p: prob\n"
LABEL = "input y: label\ninput p: prob\n"
WEIGHTS = "param w: nonneg = [1.0, 2.0, 0.5]\n"


def checked(text: str, name: str = "spec.loss") -> CheckedSpec:
    return check(parse(SourceFile.from_text(text, name)))


def failure(text: str) -> LossSpecError:
    with pytest.raises(LossSpecError) as raised:
        checked(text)
    return raised.value


def codes(text: str) -> list[str]:
    return [d.code for d in failure(text).diagnostics]


def only_argument(expr: TExpr) -> TExpr:
    assert isinstance(expr, TCall) and len(expr.args) == 1
    return expr.args[0]


# ---------------------------------------------------------------- without the parser


def _span(column: int, width: int = 1) -> Span:
    return Span.point(1, column, width)


def _name(identifier: str, column: int) -> nodes.Name:
    return nodes.Name(identifier, _span(column, len(identifier)))


def _call(func: str, column: int, *args: nodes.Expr) -> nodes.Call:
    end = args[-1].span.end_column + 1 if args else column + len(func) + 2
    return nodes.Call(func, args, (), Span(1, column, 1, end), _span(column, len(func)))


def test_check_reads_hand_built_trees() -> None:
    # loss = mean(sum(p))
    source = SourceFile.from_text("loss = mean(sum(p))")
    value = _call("mean", 8, _call("sum", 13, _name("p", 17)))
    spec = nodes.Spec(source, (nodes.LossDecl(None, value, Span(1, 1, 1, 20), None),), "")
    result = check(spec)
    assert result.loss_name == "loss"
    assert result.lifted and result.result.roles == PER_ELEMENT


def test_unknown_function_matches_the_language_reference_without_the_parser() -> None:
    source = SourceFile.from_text("loss focal = mean(lg(p))", "focal.loss")
    value = _call("mean", 14, _call("lg", 19, _name("p", 22)))
    statement = nodes.LossDecl("focal", value, Span(1, 1, 1, 25), _span(6, 5))
    with pytest.raises(LossSpecError) as raised:
        check(nodes.Spec(source, (statement,), ""))
    assert str(raised.value) == (
        "focal.loss:1:19: error[E201]: unknown function `lg`\n"
        "  1 | loss focal = mean(lg(p))\n"
        "    |                   ^^ not a built-in\n"
        "    = help: a built-in with a similar name exists: `log`"
    )


# ---------------------------------------------------------------- declarations


def test_focal_loss_checks_and_lifts() -> None:
    result = checked(FOCAL, "examples/focal.loss")
    assert result.loss_name == "focal"
    assert result.docstring.startswith("Categorical focal loss")
    assert (result.y_true.name, result.y_true.kind, result.y_true.argument) == (
        "y",
        "onehot",
        "y_true",
    )
    assert (result.y_pred.name, result.y_pred.kind) == ("p", "prob")
    assert [(p.name, p.default, p.domain.text) for p in result.params] == [
        ("gamma", 2.0, "nonneg"),
        ("alpha", 0.25, "unit"),
    ]
    assert result.lifted and not result.batch_coupled and result.warnings == ()
    assert isinstance(result.result, TCall) and result.result.builtin == "sum"
    assert result.result is only_argument(result.loss)
    assert result.result.roles == PER_ELEMENT
    assert result.mask is None


def test_default_inputs_without_input_lines() -> None:
    result = checked("loss = mean(square(p - y))", "<string>")
    assert (result.y_true.name, result.y_true.kind, result.y_true.span) == ("y", "target", None)
    assert (result.y_pred.name, result.y_pred.kind, result.y_pred.span) == ("p", "prob", None)
    assert result.loss_name == "loss"


def test_loss_name_defaults_to_the_file_stem() -> None:
    assert checked("loss = mean(sum(p))", "dir/my_loss.loss").loss_name == "my_loss"
    assert checked("loss custom = mean(sum(p))", "dir/my_loss.loss").loss_name == "custom"


def test_one_input_of_a_y_true_kind_is_y_true() -> None:
    result = checked("input t: label\nloss = mean(-log(clip(sum(onehot(t) * p))))")
    assert (result.y_true.name, result.y_true.kind) == ("t", "label")
    assert (result.y_pred.name, result.y_pred.kind, result.y_pred.span) == ("p", "prob", None)


def test_one_input_of_a_y_pred_kind_is_y_pred() -> None:
    result = checked("input z: logits\nloss = mean(sum(square(z - y)))")
    assert (result.y_pred.name, result.y_pred.kind, result.y_pred.argument) == (
        "z",
        "logits",
        "y_pred",
    )
    assert (result.y_true.name, result.y_true.kind) == ("y", "target")


def test_a_default_input_does_not_take_a_declared_name() -> None:
    result = checked("input p: onehot\nloss = mean(sum(square(p_ - p)))")
    assert result.y_true.name == "p"
    assert (result.y_pred.name, result.y_pred.argument) == ("p_", "y_pred")


def test_vector_and_interval_params() -> None:
    result = checked(
        ONEHOT + WEIGHTS + "param lam: (0, 10] = 10\nloss = mean(sum(lam * w * square(p - y)))"
    )
    w, lam = result.params
    assert w.default == (1.0, 2.0, 0.5) and w.is_vector and w.roles == CLASS_ONLY
    assert (lam.domain.low, lam.domain.high, lam.domain.low_closed, lam.domain.high_closed) == (
        0.0,
        10.0,
        False,
        True,
    )
    assert lam.domain.text == "(0, 10]"


def test_params_and_inputs_are_visible_above_their_lines() -> None:
    result = checked("loss = mean(sum(gamma * p))\nparam gamma = 2")
    assert [p.name for p in result.params] == ["gamma"]


def test_every_reserved_name_has_a_reason() -> None:
    assert set(RESERVED_REASONS) == builtins.RESERVED_NAMES


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("param sum = 1\nloss = mean(sum(p))", ["E205"]),
        ("let reduction = p\nloss = mean(sum(reduction))", ["E205"]),
        ("input class: label\nloss = mean(sum(p))", ["E205"]),
        ("param a = 1\nlet a = 2\nloss = mean(sum(a * p))", ["E204"]),
        ("input y: onehot\ninput p: prob\ninput z: real\nloss = mean(sum(z * p))", ["E208"]),
        ("input y: onehott\nloss = mean(sum(y * p))", ["E206"]),
        ("input p: prob\ninput y: onehot\nloss = mean(sum(y * p))", ["E207", "E207"]),
        ("input y: label\ninput p: label\nloss = mean(sum(p))", ["E207"]),
        ("param a: unt = 1\nloss = mean(sum(a * p))", ["E212"]),
        ("param a: (1, 0) = 0.5\nloss = mean(sum(a * p))", ["E213"]),
        ("param a: [1, 1] = 1\nloss = mean(sum(a * p))", ["E213"]),
        ("param a: unit = 2\nloss = mean(sum(a * p))", ["E401"]),
        ("param w: unit = [0.5, -1, 2]\nloss = mean(sum(w * p))", ["E401", "E401"]),
        ("param a = [1, 2]\nparam b = [1, 2, 3]\nloss = mean(sum(a * b * p))", ["E315"]),
        ("param a = 1", ["E209"]),
        ("loss = mean(sum(p))\nloss = mean(sum(y))", ["E210"]),
        ("mask sum(y) > 0\nmask sum(y) < 1\nloss = mean(sum(y - p))", ["E211"]),
    ],
)
def test_declaration_errors(text: str, expected: list[str]) -> None:
    assert codes(text) == expected


def test_interval_text_and_default_outside_it() -> None:
    error = failure("param a: (0, 1) = 1\nloss = mean(sum(a * p))").diagnostics[0]
    assert error.message == "the default 1 of `a` is outside its domain `(0, 1)`"
    assert error.span == Span(1, 19, 1, 20)


def test_second_loss_names_the_first_line() -> None:
    error = failure("loss = mean(sum(p))\n\nloss = mean(sum(y))").diagnostics[0]
    assert error.message == "a second `loss`; the first is on line 1"
    assert error.span == Span(3, 1, 3, 5)


def test_no_loss_points_past_the_last_line() -> None:
    error = failure("input y: onehot\n\n").diagnostics[0]
    assert error.span == Span(1, 16, 1, 17)


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("loss = mean(sum(q))", ["E202"]),
        ("loss = mean(sum(p * q))\nlet q = p", ["E203"]),
        ("let q = q + 1\nloss = mean(sum(q))", ["E203"]),
        ("loss = mean(lg(p))", ["E201"]),
        ("loss = mean(sum(log))", ["E218"]),
        (WEIGHTS + LABEL + "loss = mean(w(class(y)) * sum(p))", ["E217"]),
        ("loss = mean(sum(inf * p))", ["E219"]),
        ("loss = mean(sum(sample * p))", ["E219"]),
        ("loss = mean(sum(dtype * p))", ["E219"]),
        ("loss = mean(log(p > 0))", ["E220"]),
        ("loss = mean(sum(where(p, p, y)))", ["E221"]),
        ("loss = mean(sum(clip(p, 0)))", ["E214"]),
        ("loss = mean(sum(log(p, y)))", ["E214"]),
        ("loss = mean(sum(where(p > 0, p)))", ["E214"]),
        ("loss = mean(sum(p, axs=0))", ["E215"]),
        ("loss = mean(sum(log(p, axis=0)))", ["E215"]),
        ("loss = mean(sum(p, axis=0, axis=-1))", ["E216"]),
    ],
)
def test_name_and_call_errors(text: str, expected: list[str]) -> None:
    assert codes(text) == expected


def test_use_before_definition_names_the_line() -> None:
    error = failure("loss = mean(sum(p * q))\nlet q = p").diagnostics[0]
    assert error.message == "`q` is defined on line 2, below its use"


def test_unknown_name_suggests_a_visible_name() -> None:
    error = failure("param gamma = 2\nloss = mean(sum(gama * p))").diagnostics[0]
    assert error.help == ("a value with a similar name exists: `gamma`",)


def test_every_problem_is_reported_and_unknown_names_stay_quiet() -> None:
    text = WEIGHTS + "param a: unit = 3\nloss = mean(sum(w * lg(q) * zz))\nloss = mean(sum(p))"
    # `w * <error>` reports nothing more: the unknown names type as errors.
    assert codes(text) == ["E401", "E201", "E202", "E202", "E210"]


def test_arity_message_counts_arguments() -> None:
    error = failure("loss = mean(sum(clip(p, 0)))").diagnostics[0]
    assert error.message == "`clip` takes 1 or 3 arguments, but 2 were given"
    error = failure("loss = mean(sum(exp(p, y, y)))").diagnostics[0]
    assert error.message == "`exp` takes 1 argument, but 3 were given"
    assert error.label == "unexpected arguments"


# ---------------------------------------------------------------- roles


def test_inputs_params_and_numbers_have_their_roles() -> None:
    result = checked(LABEL + WEIGHTS + "param g = 2\nloss = mean(w[y] * g * sum(p) + 1)")
    product, number = only_argument(result.loss).operands
    gather, scalar, per_element = product.operands
    assert isinstance(gather, TGather) and gather.roles == PER_ELEMENT
    assert isinstance(gather.vector, TParam) and gather.vector.roles == CLASS_ONLY
    assert isinstance(gather.index, TInput) and gather.index.integer
    assert gather.index.roles == PER_ELEMENT
    assert isinstance(scalar, TParam) and scalar.roles == NO_ROLES
    assert per_element.roles == PER_ELEMENT
    assert isinstance(number, TConst) and number.roles == NO_ROLES


@pytest.mark.parametrize(
    ("loss", "roles", "reduced"),
    [
        # On [batch, H, W, C]: sum over C leaves one value per pixel [batch, H, W].
        ("sum(p)", PER_ELEMENT, {Role.CLASS}),
        ("sum(p, axis=-1)", PER_ELEMENT, {Role.CLASS}),
        # The pixel values are then averaged over H and W: one value per sample.
        ("mean(sum(p))", PER_SAMPLE, {Role.SPATIAL}),
        # axis=0 sums over the batch only: [H, W, C].
        ("sum(sum(sum(p, axis=0)))", NO_ROLES, {Role.SPATIAL}),
        ("sum(p, axis=sample)", PER_SAMPLE, {Role.SPATIAL, Role.CLASS}),
        ("sum(sum(p), axis=all)", NO_ROLES, {Role.BATCH, Role.SPATIAL}),
    ],
)
def test_reductions_remove_roles(loss: str, roles: frozenset[Role], reduced: set[Role]) -> None:
    result = checked(f"loss = log(1 + {loss})")
    (_, reduction) = only_argument(result.loss).operands
    assert isinstance(reduction, TCall)
    assert reduction.roles == roles and reduction.reduced == reduced


def test_elementwise_operands_broadcast_along_missing_roles() -> None:
    result = checked(ONEHOT + WEIGHTS + "loss = mean(sum(p / sum(p) + w * square(p - y)))")
    total = only_argument(only_argument(result.loss))
    assert isinstance(total, TAdd) and total.roles == ALL_ROLES
    normalised, weighted = total.operands
    assert isinstance(normalised, TMul) and normalised.roles == ALL_ROLES
    assert normalised.operands[1].roles == PER_ELEMENT
    assert isinstance(weighted, TMul) and weighted.roles == ALL_ROLES


def test_class_axis_functions_keep_roles() -> None:
    result = checked("input z: logits\nloss = mean(sum(y * log_softmax(z)) + sum(softmax(z)))")
    cross_entropy, total = only_argument(result.loss).operands
    assert only_argument(cross_entropy).operands[1].roles == ALL_ROLES
    assert only_argument(total).roles == ALL_ROLES


def test_class_and_onehot() -> None:
    result = checked(
        LABEL + "loss = mean(where(class(y) == 0, 2, 1) * sum(onehot(y) * -log(clip(p))))"
    )
    weight, cross_entropy = only_argument(result.loss).operands
    assert isinstance(weight, TCall) and weight.builtin == "where"
    condition = weight.args[0]
    assert isinstance(condition, TCompare) and condition.roles == PER_ELEMENT
    class_id = condition.left
    assert isinstance(class_id, TCall) and class_id.builtin == "class"
    assert class_id.integer and class_id.roles == PER_ELEMENT
    one_hot = only_argument(cross_entropy).operands[0]
    assert isinstance(one_hot, TCall) and one_hot.builtin == "onehot"
    assert one_hot.roles == ALL_ROLES and not one_hot.integer


def test_class_of_a_onehot_input_is_the_argmax_id() -> None:
    result = checked(ONEHOT + WEIGHTS + "loss = mean(w[class(y)] * sum(-y * log(clip(p))))")
    gather = only_argument(result.loss).operands[0]
    assert isinstance(gather, TGather) and gather.roles == PER_ELEMENT


def test_a_per_class_value_indexed_by_a_class_id_is_per_element() -> None:
    result = checked(LABEL + "loss = mean(-log(clip(p[y])))")
    (gather,) = [node for node in walk([result.loss]) if isinstance(node, TGather)]
    assert gather.roles == PER_ELEMENT
    assert result.result.roles == PER_ELEMENT


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ONEHOT + WEIGHTS + "loss = mean(w * sum(-y * log(clip(p))))", ["E301"]),
        ("loss = mean(sum(p, axis=0) + mean(sum(p)))", ["E301"]),
        ("loss = mean(softmax(sum(p)))", ["E302"]),
        ("loss = mean(sum(mean(mean(mean(p)))))", ["E303"]),
        ("loss = mean(sum(sum(p, axis=0), axis=0))", ["E303"]),
        ("loss = mean(sum(p, axis=1))", ["E304"]),
        ("loss = mean(sum(p, axis=-2))", ["E304"]),
        ("loss = mean(sum(p, axis=batch))", ["E304"]),
        ("loss = mean(where(class(p) == 0, 1, 0))", ["E305"]),
        ("loss = mean(where(class(2 * y) == 0, 1, 0))", ["E305"]),
        (ONEHOT + "loss = mean(sum(onehot(y) * p))", ["E306"]),
        ("loss = mean(sum(p)[class(y)])", ["E307"]),
        (WEIGHTS + "loss = mean(sum(w[p]) * y)", ["E308"]),
        (LABEL + "loss = mean(sum(y * log(clip(p))))", ["E309"]),
        (LABEL + "loss = mean(sum(p) * class(y))", ["E309"]),
        ("loss = sum(p, axis=0)", ["E310"]),
        ("loss = log(p)", ["E310"]),
        ("loss = sum(sum(p), axis=0)", ["E311"]),
        ("mask p > 0.5\nloss = mean(sum(p))", ["E312"]),
        ("mask sum(y) > 0.5\nloss = log(mean(sum(p), axis=all))", ["E313", "W302", "W301"]),
        ("mask sum(y) > 0.5\nloss = log(mean(sum(p)))", ["E314"]),
        ("mask sum(y) > 0.5\nloss = mean(mean(sum(p)))", ["E314"]),
    ],
)
def test_role_errors(text: str, expected: list[str]) -> None:
    assert codes(text) == expected


def test_vector_times_per_sample_hint_names_the_vector_and_y_true() -> None:
    text = "input t: onehot\nparam cw = [1, 2]\nloss = mean(cw * sum(-t * log(clip(p))))"
    error = failure(text).diagnostics[0]
    assert error.message == "a [class] value and a [batch, spatial] value cannot be combined"
    assert error.help == (
        "to weigh each sample by its class, gather the vector's entry: `cw[class(t)]`",
    )


def test_gather_of_an_expression_with_only_the_class_role() -> None:
    result = checked(LABEL + WEIGHTS + "loss = mean((w / sum(w))[class(y)] * sum(p))")
    gather = only_argument(result.loss).operands[0]
    assert isinstance(gather, TGather) and isinstance(gather.vector, TMul)


# ---------------------------------------------------------------- normalisation


def test_lets_are_inlined_as_one_object() -> None:
    result = checked(
        ONEHOT + "let q = clip(p)\nloss = mean(sum(-y * log(q) - (1 - y) * log(1 - q)))"
    )
    total = only_argument(only_argument(result.loss))
    assert isinstance(total, TAdd)
    first_log = total.operands[0].operands[1]
    second_log = total.operands[1].operands[1]
    q_first = only_argument(first_log)
    q_second = second_log.args[0].operands[1]
    assert q_first is q_second and q_first.span.line == 3


def test_clip_gets_its_default_bounds() -> None:
    result = checked("loss = mean(sum(clip(p)))")
    clip = only_argument(only_argument(result.loss))
    assert isinstance(clip, TCall) and clip.builtin == "clip"
    low, high = clip.args[1:]
    assert isinstance(low, TConst) and low.value == builtins.EPSILON
    assert isinstance(high, TConst) and high.value == 1 - builtins.EPSILON
    assert low.span == high.span == clip.span


def test_square_becomes_a_power_and_eps_a_constant() -> None:
    result = checked("loss = mean(sum(square(p - y) + eps * num_classes))")
    square, product = only_argument(only_argument(result.loss)).operands
    assert isinstance(square, TPow) and square.roles == ALL_ROLES
    assert isinstance(square.exponent, TConst) and square.exponent.value == 2
    eps, num_classes = product.operands
    assert isinstance(eps, TConst) and eps.value == builtins.EPSILON
    assert isinstance(num_classes, TNumClasses)


def test_every_node_has_roles_and_an_integer_flag() -> None:
    result = checked(LABEL + WEIGHTS + "loss = mean(w[class(y)] * sum(onehot(y) * -log(clip(p))))")
    stack: list[TExpr] = [result.loss]
    integers = []
    while stack:
        node = stack.pop()
        assert isinstance(node.roles, frozenset)
        if node.integer:
            integers.append(node)
        match node:
            case TCall(args=args):
                stack.extend(args)
            case TMul(operands=operands) | TAdd(operands=operands):
                stack.extend(operands)
            case TNeg(operand=operand):
                stack.append(operand)
            case TGather(vector=vector, index=index):
                stack.extend((vector, index))
    assert len(integers) == 3  # class(y), its y, and onehot's y


# ---------------------------------------------------------------- the result


@pytest.mark.parametrize(
    ("loss", "result_roles"),
    [
        ("mean(sum(p))", PER_ELEMENT),  # per pixel on [batch, H, W, C]
        ("mean(sum(p), axis=all)", PER_ELEMENT),
        ("mean(sum(p), axis=-1)", PER_ELEMENT),
        ("mean(mean(sum(p)))", PER_SAMPLE),  # each sample's pixel mean
        ("mean(mean(sum(p)), axis=0)", PER_SAMPLE),  # removes the same role as the default
    ],
)
def test_an_outer_mean_is_lifted(loss: str, result_roles: frozenset[Role]) -> None:
    result = checked(f"loss = {loss}")
    assert result.lifted and not result.batch_coupled and result.warnings == ()
    assert result.result is only_argument(result.loss)
    assert result.result.roles == result_roles


def test_a_sum_of_means_times_constants_is_lifted() -> None:
    result = checked(
        "param lam = 0.1\n"
        "loss = mean(sum(p)) + 0.1 * mean(mean(sum(y))) - mean(sum(p * y)) / 2 * lam"
    )
    lifted = result.result
    assert result.lifted and isinstance(lifted, TAdd)
    assert lifted.negated == (False, False, True)
    assert lifted.roles == PER_ELEMENT
    first, scaled, divided = lifted.operands
    assert first is only_argument(result.loss.operands[0])
    assert isinstance(scaled, TMul) and isinstance(scaled.operands[0], TConst)
    assert scaled.roles == PER_SAMPLE
    assert isinstance(divided, TMul) and divided.inverted == (False, True, False)
    assert isinstance(divided.operands[2], TParam)


def test_a_negated_mean_is_lifted() -> None:
    result = checked("loss = -mean(sum(y * log(clip(p))))")
    assert result.lifted and isinstance(result.result, TNeg)


@pytest.mark.parametrize(
    ("loss", "roles", "warnings"),
    [
        ("log(mean(sum(p)))", PER_SAMPLE, []),  # per-sample, returned as it is
        ("mean(sum(p)) * mean(sum(y))", PER_SAMPLE, []),
        ("mean(mean(sum(p))) * mean(mean(sum(y)))", NO_ROLES, ["W301", "W302"]),
        ("mean(mean(sum(p))) + 1", NO_ROLES, ["W301", "W302"]),
        ("1 / mean(mean(sum(p)))", NO_ROLES, ["W301", "W302"]),
        ("sum(sum(p))", PER_SAMPLE, []),
    ],
)
def test_results_that_are_not_lifted(
    loss: str, roles: frozenset[Role], warnings: list[str]
) -> None:
    result = checked(f"loss = {loss}")
    assert not result.lifted and result.result is result.loss
    assert result.result.roles == roles
    assert sorted(w.code for w in result.warnings) == warnings
    assert result.batch_coupled == ("W301" in warnings)


def test_a_batch_reduction_inside_a_lifted_mean_couples_the_batch() -> None:
    result = checked("loss = mean(sum(square(p - mean(p, axis=0))))")
    assert result.lifted and result.batch_coupled
    (coupling,) = result.warnings
    assert coupling.code == "W301"
    assert coupling.message == "each sample's loss depends on the whole batch"
    assert coupling.span == Span(1, 28, 1, 43)


def test_a_mask_on_a_lifted_loss() -> None:
    result = checked(LABEL + "mask y != -1\nloss = mean(-log(clip(sum(onehot(y) * p))))")
    assert isinstance(result.mask, TCompare) and result.mask.roles == PER_ELEMENT
    assert isinstance(result.mask.left, TInput) and result.mask.left.integer
    assert result.lifted


@pytest.mark.parametrize(
    "loss", ["-sum(onehot(y) * log_softmax(p))", "2 * -log(clip(sum(onehot(y) * p)))"]
)
def test_a_mask_on_a_per_element_result_that_is_not_lifted(loss: str) -> None:
    result = checked(LABEL + f"mask y != -1\nloss = {loss}")
    assert not result.lifted
    assert result.mask is not None and result.mask.roles == PER_ELEMENT
    assert result.result.roles == PER_ELEMENT


def test_warnings_render_under_their_codes() -> None:
    result = checked("loss = sum(sum(sum(p)))", "<string>")
    assert [render(w, result.source) for w in result.warnings] == [
        "<string>:1:8: warning[W301]: each sample's loss depends on the whole batch\n"
        "  1 | loss = sum(sum(sum(p)))\n"
        "    |        ^^^^^^^^^^^^^^^^ reduces over the batch\n"
        "    = help: sample_weight still weighs each sample's value; to keep samples "
        "independent, reduce without axis=0 or axis=all and let an outer `mean(...)` be "
        "Keras's reduction",
        "<string>:1:8: warning[W302]: the loss is a scalar that cannot be lifted; "
        "sample_weight then scales it as Keras scales a scalar loss\n"
        "  1 | loss = sum(sum(sum(p)))\n"
        "    |        ^^^^^^^^^^^^^^^^ a scalar\n"
        "    = help: write the loss as `mean(x)` of a per-sample or per-element x, or a sum "
        "of such means times constants",
    ]


# ---------------------------------------------------------------- limits on the inlined tree


def located(error: LossSpecError) -> list[tuple[str, int, int]]:
    """Each diagnostic's code, line and column."""
    spans = [d.span for d in error.diagnostics]
    assert all(span is not None for span in spans)
    return [(d.code, d.span.line, d.span.column) for d in error.diagnostics if d.span is not None]


def let_chain(lets: int, step: str = "sigmoid({})") -> str:
    """A spec whose lets each wrap the one before: `let a1 = sigmoid(a0)` ..."""
    lines = ["input y: binary", "input p: prob", "let a0 = p"]
    lines += [f"let a{i} = " + step.format(f"a{i - 1}") for i in range(1, lets + 1)]
    return "\n".join([*lines, f"loss = mean(a{lets} * y)"]) + "\n"


def test_a_chain_of_lets_may_nest_as_deep_as_one_expression_may() -> None:
    # a_n is n operations deep; the loss `mean(a_n * y)` adds two.
    spec = checked(let_chain(INLINED_DEPTH_LIMIT - 2))
    assert tree_size(spec.loss, {}).depth == INLINED_DEPTH_LIMIT


def test_one_let_past_the_depth_limit_is_e112_at_that_let_and_its_uses_are_silent() -> None:
    error = failure(let_chain(INLINED_DEPTH_LIMIT + 1))
    assert located(error) == [
        ("E112", 3 + INLINED_DEPTH_LIMIT + 1, 1 + len(f"let a{INLINED_DEPTH_LIMIT + 1} = "))
    ]
    assert f"`a{INLINED_DEPTH_LIMIT + 1}` is nested" in error.diagnostics[0].message


def test_the_depth_limit_holds_for_the_loss_and_the_mask_too() -> None:
    deep = "sigmoid(" * 40 + "p" + ")" * 40
    text = f"input y: binary\ninput p: prob\nlet a = {deep}\n"
    loss = failure(text + f"loss = mean(sigmoid({deep.replace('p', 'a', 1)}) * y)\n")
    assert located(loss) == [("E112", 4, 8)]
    mask = failure(text + f"mask {deep.replace('p', 'a', 1)} > 0.5\nloss = mean(p * y)\n")
    assert located(mask) == [("E112", 4, 6)]


def test_a_long_chain_of_lets_ends_in_one_diagnostic_quickly() -> None:
    error = failure(let_chain(3000, "exp({}) * 0.5"))
    assert [d.code for d in error.diagnostics] == ["E112"]


def test_lets_that_double_the_written_out_tree_are_e117_past_the_size_limit() -> None:
    # a_n = (a_{n-1} + a_{n-1}) / 2 has 4 * 2^n - 3 nodes written out.
    lets = next(n for n in range(40) if 4 * 2**n - 3 > INLINED_SIZE_LIMIT)
    accepted = checked(let_chain(lets - 1, "({0} + {0}) / 2"))
    assert tree_size(accepted.loss, {}).nodes <= INLINED_SIZE_LIMIT
    error = failure(let_chain(60, "({0} + {0}) / 2"))
    assert located(error) == [("E117", 3 + lets, 1 + len(f"let a{lets} = "))]


def test_tree_size_counts_shared_lets_per_use_without_recursion() -> None:
    span = Span(1, 1, 1, 2)
    leaf = TConst(1.0, span)
    shared = TAdd((leaf, leaf), (False, False), span)
    assert tree_size(TMul((shared, shared), (False, False), span), {}) == TreeSize(2, 7)
    deep: TExpr = leaf
    for _ in range(20_000):  # far past Python's recursion limit
        deep = TNeg(deep, span)
    assert tree_size(deep, {}) == TreeSize(20_000, 20_001)


def test_vector_params_hold_at_most_vector_limit_entries() -> None:
    def spec(length: int) -> str:
        entries = ", ".join(["1"] * length)
        return ONEHOT + f"param w = [{entries}]\nloss = mean(sum(-y * w * log(clip(p))))\n"

    assert checked(spec(VECTOR_LIMIT)).params[0].default == (1.0,) * VECTOR_LIMIT
    error = failure(spec(VECTOR_LIMIT + 1))
    assert located(error) == [("E117", 3, 11)]


LET_STEPS = (
    "sigmoid({0})",
    "-{0}",
    "({0} + p) * 0.5",
    "({0} + {1}) / 2",
    "{0} * {1}",
    "where(p > 0.5, {0}, {1})",
    "mean({0} * p) + p",
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(LET_STEPS), st.integers(0, 5)), max_size=150))
def test_any_chain_of_lets_is_checked_within_the_limits_or_rejected_with_located_errors(
    steps: list[tuple[str, int]],
) -> None:
    """Lets built from earlier ones: never an internal error, never a tree over the limits."""
    lines = ["input y: binary", "input p: prob", "let a0 = p"]
    for i, (step, back) in enumerate(steps, start=1):
        lines.append(f"let a{i} = " + step.format(f"a{i - 1}", f"a{max(0, i - 1 - back)}"))
    text = "\n".join([*lines, f"loss = mean(a{len(steps)} * y)"]) + "\n"
    try:
        spec = checked(text)
    except LossSpecError as error:
        assert {d.code for d in error.diagnostics} <= {"E112", "E117"}
        assert all(d.span is not None for d in error.diagnostics)
        return
    size = tree_size(spec.loss, {})
    assert size.depth <= INLINED_DEPTH_LIMIT and size.nodes <= INLINED_SIZE_LIMIT
