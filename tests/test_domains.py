"""Domain and differentiability checks: value ranges, witnesses, E4xx/W4xx/E5xx."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from lossdsl.analysis.checks import check_domains
from lossdsl.analysis.intervals import Range
from lossdsl.analysis.ranges import RangeAnalysis
from lossdsl.analysis.report import source_text
from lossdsl.analysis.witness import CANDIDATE_LIMIT, REMEMBERED_VARIABLES, _candidate_indices
from lossdsl.builtins import EPSILON
from lossdsl.compiler import check_source, compile_source
from lossdsl.diagnostics import Diagnostic, LossSpecError
from lossdsl.source import SourceFile
from lossdsl.symbolic import functions as fn
from lossdsl.symbolic.lower import lower
from lossdsl.typed import CheckedSpec, walk

FOCAL = """\
input y: onehot
input p: prob
param gamma: nonneg = 2.0
param alpha: unit = 0.25
let q = clip(p)
let ce = -y * log(q)
loss focal = mean(sum(alpha * (1 - q)^gamma * ce))
"""

FOCAL_PT = """\
input y: onehot
input p: prob
param gamma: nonneg = 2.0
let q = clip(p)
let pt = y*q + (1-y)*(1-q)
loss focal = mean(sum(-(1 - pt)^gamma * log(pt)))
"""


def checked(text: str) -> CheckedSpec:
    return check_source(SourceFile.from_text(text))


def diagnose(text: str) -> tuple[Diagnostic, ...]:
    """Every diagnostic of the domain checks, errors or warnings."""
    try:
        return check_domains(checked(text))
    except LossSpecError as failure:
        return failure.diagnostics


def codes(text: str) -> list[str]:
    return [d.code for d in diagnose(text)]


def only(text: str, code: str) -> Diagnostic:
    diagnostics = diagnose(text)
    assert [d.code for d in diagnostics] == [code], diagnostics
    return diagnostics[0]


def range_of(text: str, expression: str) -> Range:
    """The range of the first node of `text`'s loss whose source text is `expression`."""
    spec = checked(text)
    analysis = RangeAnalysis()
    for node in walk([spec.loss]):
        if source_text(spec.source, node.span) == expression:
            return analysis.range_of(node)
    raise AssertionError(f"no node `{expression}`")


# ---------------------------------------------------------------- the LANGUAGE.md examples


def test_log_of_prob_warns_minus_inf_at_zero() -> None:
    diagnostic = only("loss = mean(log(p))", "W401")
    assert not diagnostic.is_error
    assert diagnostic.message == "`log(p)` is -inf at p = 0"
    assert "clip(p)" in diagnostic.help[0] and "logits" in diagnostic.help[0]
    assert (diagnostic.span.column, diagnostic.span.end_column) == (17, 18)


def test_log_of_clip_and_log_softmax_are_clean() -> None:
    assert codes("input y: onehot\ninput p: prob\nloss = mean(sum(-y * log(clip(p))))") == []
    assert codes("input y: onehot\ninput z: logits\nloss = mean(sum(-y * log_softmax(z)))") == []
    assert codes("input y: binary\ninput z: logits\nloss = mean(-log(sigmoid(z)))") == []
    assert codes("input y: binary\ninput z: logits\nloss = mean(-log(1 - sigmoid(z)))") == []


def test_sqrt_of_difference_is_an_error_with_its_witness() -> None:
    diagnostic = only("loss = mean(sqrt(p - y))", "E404")
    assert diagnostic.is_error
    assert diagnostic.message == "`sqrt(p - y)` is NaN at p = 0, y = 1"


def test_a_repeated_factor_is_its_square() -> None:
    """A cosine similarity's norm `sqrt(sum(p * p))` of real values: p * p is p^2, never
    negative (two factors the same value, not two independent reals), so the root is
    no W402 ("could not prove"), only its infinite gradient at 0 (W404)."""
    spec = "input y: target\ninput p: real\nloss = mean({})"
    assert range_of(spec.format("sum(p * p)"), "p * p").low == 0.0
    diagnostic = only(spec.format("sqrt(sum(p * p))"), "W404")
    assert diagnostic.message == "`sqrt(sum(p * p))` has an infinite gradient at p = [0, 0]"


def test_division_by_sum_warns() -> None:
    diagnostic = only("loss = mean(y / sum(p))", "W403")
    assert diagnostic.message == "division by `sum(p)`, which is 0 at p = [0, 0]"


def test_a_divisor_that_can_be_negative_is_not_told_to_add_a_constant() -> None:
    """A box's union of `target` corners plus eps can still be 0 (DIoU, written as a new
    user would): the help says so, where a non-negative divisor's says to add one."""
    spec = "input y: target\ninput p: real\nloss = mean(p / ({}))"
    diagnostic = only(spec.format("y - p + 1e-7"), "W403")
    assert diagnostic.help == (
        "it can also be negative, so a small constant added does not keep it from 0: "
        "use `maximum(..., eps)` where it should be positive, or `clip`",
    )
    diagnostic = only(spec.format("abs(y - p)"), "W403")
    assert diagnostic.help[0].startswith("keep it away from 0, e.g. add a small constant")


def test_power_with_gamma_below_one_warns_and_with_gamma_at_least_one_does_not() -> None:
    diagnostic = only("param gamma: nonneg = 2.0\nloss = mean((1 - p)^gamma)", "W405")
    assert diagnostic.message == (
        "`(1 - p)^gamma` has an infinite gradient at p = 1 when `gamma` is in (0, 1)"
    )
    assert "`param gamma: [1, inf) = 2`" in diagnostic.help[0]
    assert codes("param gamma: [1, inf) = 2.0\nloss = mean((1 - p)^gamma)") == []


def test_focal_losses_are_not_rejected() -> None:
    assert codes(FOCAL) == []
    assert codes(FOCAL_PT) == []


def test_no_gradient_path_through_stop_gradient() -> None:
    text = "input y: onehot\ninput p: prob\nloss = mean(sum(y * log(clip(stop_gradient(p)))))"
    diagnostic = only(text, "E502")
    assert "stop_gradient" in diagnostic.message
    assert diagnostic.span == checked(text).loss_span
    assert diagnostic.help


def test_loss_without_prediction() -> None:
    text = "input y: onehot\ninput p: prob\nloss = mean(sum(y))"
    diagnostic = only(text, "E501")
    assert diagnostic.message == "the loss does not depend on y_pred `p`"


# ---------------------------------------------------------------- value ranges


def test_ranges_track_open_and_closed_ends() -> None:
    text = "input y: binary\ninput z: logits\nloss = mean(sigmoid(z) + clip(y) + softplus(z) + y)"
    assert range_of(text, "sigmoid(z)") == Range(0, 1, False, False)
    assert range_of(text, "clip(y)") == Range(EPSILON, 1 - EPSILON)
    assert range_of(text, "softplus(z)") == Range(0, math.inf, False, False)
    assert range_of(text, "y") == Range(0, 1)


def test_params_use_their_whole_domain() -> None:
    text = "param a: (0, 10] = 1.0\nloss = mean(a * p)"
    assert range_of(text, "a * p") == Range(0, 10)


def test_sum_of_onehot_is_one_and_convex_combinations_keep_the_range() -> None:
    text = "input y: onehot\ninput p: prob\nloss = mean(-log(sum(y * clip(p))) + sum(y) * p)"
    assert range_of(text, "sum(y)") == Range.point(1.0)
    assert range_of(text, "sum(y * clip(p))") == Range(EPSILON, 1 - EPSILON)


def test_sum_of_nonnegative_values_is_unbounded_above() -> None:
    assert range_of("loss = mean(sum(p) - y)", "sum(p)") == Range(0, math.inf)


def test_multi_affine_refinement_proves_pt_in_unit_interval() -> None:
    for expression in ("1 - pt", "y*q + (1-y)*(1-q)"):
        values = range_of(FOCAL_PT, expression)
        assert values.low == pytest.approx(EPSILON, rel=1e-6) and values.low_closed
        assert values.high == pytest.approx(1 - EPSILON) and values.high_closed


def test_multi_affine_refinement_follows_an_atom_along_a_half_line() -> None:
    """Evidential learning's alpha_t = y + (1 - y) * alpha with alpha = exp(z) + 1 is at
    least 1 (W402 said lgamma(alpha_t) might reach a pole: interval arithmetic gave [0,
    inf)). Along each half-line the node is affine: it rises to +inf, falls to -inf, or
    stays where the other atoms hold it."""
    text = (
        "input y: binary\ninput z: logits\nparam c: nonneg = 1\n"
        "let alpha = exp(z) + 1\nlet alpha_t = y + (1 - y) * alpha\n"
        "loss = mean(lgamma(alpha_t) + (1 - y * c) * (y * (0 - c)) * ((1 - y) * exp(z)) + z)"
    )
    assert range_of(text, "y + (1 - y) * alpha") == Range(1, math.inf)
    assert range_of(text, "1 - y * c") == Range(-math.inf, 1)
    assert range_of(text, "y * (0 - c)") == Range(-math.inf, 0)
    assert range_of(text, "(1 - y) * exp(z)") == Range(0, math.inf, True, False)
    assert "W402" not in codes(text)


@pytest.mark.parametrize(
    "bce", ["softplus(z) - y * z", "relu(z) - z * y + log1p(exp(-abs(z)))", "softplus(z) - z"]
)
def test_a_cross_entropy_on_logits_written_out_is_at_least_zero(bce: str) -> None:
    """relu(x) - c x and softplus(x) - c x are at least 0 for c in [0, 1]. A focal loss
    written as PyTorch code writes it, p_t = exp(-bce), warned W402 (`1 - p_t` not proven
    at least 0): interval arithmetic gave the cross-entropy (-inf, inf)."""
    text = (
        "input y: binary\ninput z: logits\nparam gamma: nonneg = 2.0\n"
        f"let bce = {bce}\nlet p_t = exp(-bce)\nloss = mean((1 - p_t)^gamma * bce)"
    )
    assert range_of(text, bce).low == 0
    assert "W402" not in codes(text)


def test_a_share_of_the_argument_above_one_is_not_bounded() -> None:
    """softplus(z) - 2 y z is negative at z = 1, y = 1, and exp(-bce) above 1 there: the
    power of a negative base stays an error, with its witness."""
    text = (
        "input y: binary\ninput z: logits\nparam gamma: nonneg = 2.0\n"
        "let bce = softplus(z) - 2 * y * z\nloss = mean((1 - exp(-bce))^gamma)"
    )
    assert range_of(text, "softplus(z) - 2 * y * z").low == -math.inf
    assert "E405" in codes(text)


def test_combined_sums_are_bounded_as_one_sum() -> None:
    text = (
        "input y: binary\ninput p: prob\n"
        "loss = mean(1 - sum(y*p) / (sum(y) + sum(p) - sum(y*p) + 1))"
    )
    assert range_of(text, "sum(y) + sum(p) - sum(y*p) + 1") == Range(1, math.inf)
    assert codes(text) == []


def test_power_ranges() -> None:
    text = (
        "param g: [1, 3] = 2.0\ninput y: target\ninput x: real\n"
        "loss = mean(sigmoid(x)^g + (x - y)^2)"
    )
    assert range_of(text, "sigmoid(x)^g") == Range(0, 1, False, False)
    assert range_of(text, "(x - y)^2") == Range(0, math.inf)


# ---------------------------------------------------------------- errors with witnesses


def test_log_of_a_value_that_can_be_negative() -> None:
    diagnostic = only("input y: target\ninput x: real\nloss = mean(log(x - y))", "E402")
    assert diagnostic.message == "`log(x - y)` is NaN at x = 0, y = 1"


def test_log_of_a_never_positive_value() -> None:
    diagnostic = only("loss = mean(log(-p))", "E403")
    assert "NaN at p = 1" in diagnostic.message


def test_fractional_power_of_a_negative_base_names_the_exponent() -> None:
    text = "input y: target\ninput x: real\nparam n: real = 2\nloss = mean((x - y)^n)"
    diagnostic = only(text, "E405")
    assert "at x = 0, y = 1, n = 0.5" in diagnostic.message


def test_constant_fractional_power_of_a_negative_base() -> None:
    diagnostic = only("input y: target\ninput x: real\nloss = mean((x - y)^0.5)", "E405")
    assert "x = 0, y = 1" in diagnostic.message


def test_integer_powers_of_negative_values_are_fine() -> None:
    assert codes("input y: target\ninput x: real\nloss = mean((x - y)^3 + square(x - y))") == []


def test_division_by_zero_everywhere() -> None:
    assert codes("loss = mean(p / (p - p))") == ["E406"]


def test_witness_needing_whole_rows() -> None:
    diagnostic = only("input y: onehot\ninput p: prob\nloss = mean(log(p - sum(p)))", "E402")
    assert "p = [" in diagnostic.message


def test_errors_and_warnings_are_raised_together() -> None:
    with pytest.raises(LossSpecError) as failure:
        check_domains(checked("loss = mean(log(p) + sqrt(p - y))"))
    assert sorted(d.code for d in failure.value.diagnostics) == ["E404", "W401"]


# ---------------------------------------------------------------- warnings


def test_unproven_argument_warns_instead_of_failing() -> None:
    # p - p*p = p*(1 - p) >= 0 for p in [0, 1], beyond plain interval arithmetic.
    diagnostic = only("loss = mean(sqrt(p - p*p))", "W402")
    assert "could not prove" in diagnostic.message


def test_sqrt_of_a_value_that_can_be_zero_has_an_infinite_gradient() -> None:
    text = "input y: target\ninput x: real\nloss = mean(sqrt(square(x - y)))"
    assert only(text, "W404").message.startswith("`sqrt(square(x - y))` has an infinite gradient")
    assert codes("input y: target\ninput x: real\nloss = mean(sqrt(square(x - y) + eps))") == []


def test_gradient_warnings_only_where_a_gradient_flows() -> None:
    assert codes("input y: binary\ninput p: prob\nloss = mean(sqrt(y) * (1 - p))") == []
    assert codes("loss = mean(stop_gradient(sqrt(p)) * p)") == []


def test_negative_power_of_a_value_that_can_be_zero() -> None:
    text = "input y: target\ninput x: real\nloss = mean((x - y)^-2)"
    assert only(text, "W406").message == (
        "`(x - y)^-2` is infinite where `x - y` is 0 (at x = 0, y = 0)"
    )


def test_where_guards_errors_in_unselected_branches() -> None:
    # log(x) is NaN below 0 only where `where` picks 0; at x = 0 its gradient is still NaN.
    text = "input y: target\ninput x: real\nloss = mean(where(x > 1, log(x), 0))"
    assert codes(text) == ["W401"]
    assert codes("input y: target\ninput x: real\nloss = mean(where(x > 0, sqrt(x), 0))") == [
        "W407"
    ]
    assert codes("input y: target\ninput x: real\nloss = mean(where(x < 0, sqrt(x), 0))") == [
        "E404"
    ]


def test_shared_let_is_reported_once() -> None:
    text = "let d = p - y\nloss = mean(sqrt(d) + sqrt(d))"
    diagnostics = diagnose(text)
    assert [d.code for d in diagnostics] == ["E404", "E404"] or [d.code for d in diagnostics] == [
        "E404"
    ]
    shared = "let r = sqrt(p - y)\nloss = mean(r * r + r)"
    assert codes(shared) == ["E404"]
    assert only(shared, "E404").span.line == 1


def test_mask_is_checked_for_values() -> None:
    text = "input y: binary\ninput p: prob\nmask log(sum(y)) > -1\nloss = mean(sum(-log(clip(p))))"
    assert "W401" in codes(text)


def test_comparison_only_use_of_prediction() -> None:
    diagnostic = only("loss = mean(where(p > 0.5, 1, 0))", "E502")
    assert "comparison" in diagnostic.message


def test_witness_values_are_inside_kinds() -> None:
    # Every reported value of a prob input lies in [0, 1].
    message = only("loss = mean(log(p - 0.3))", "E402").message
    value = float(message.rsplit("= ", 1)[1])
    assert 0 <= value <= 1 and value < 0.3
    assert np.isfinite(value)


# ---------------------------------------------------------------- overflow (float64, float32)


@pytest.mark.parametrize(
    "text",
    [
        "param w: [0, 1e200] = 1\nloss = mean(log(w^2 + 1) * square(p - y))",
        "param w: [0, 1e200] = 1\nloss = mean(w * square(p - y))",
        "loss = mean(p^2 / 2^2000)",
        "loss = mean(p ^ (1 / cosh(clip(y, 0, 1000))))",
        "loss = mean(log(p + exp(1e300)))",
        "loss = mean(p^(2^1e300))",
    ],
)
def test_interval_arithmetic_overflows_to_infinity_instead_of_raising(text: str) -> None:
    assert all(d.code.startswith(("E4", "W4")) for d in diagnose(text))


def test_ranges_overflow_to_infinity() -> None:
    text = "param w: [0, 1e200] = 1\nloss = mean(square(p - y) * (w^2 + cosh(w) + 1e300 * w))"
    assert range_of(text, "w^2") == Range(0.0, math.inf, True, False)
    assert range_of(text, "cosh(w)") == Range(1.0, math.inf, True, False)
    assert range_of(text, "1e300 * w") == Range(0.0, math.inf, True, False)


def test_overflowing_corners_do_not_collapse_a_range_to_zero() -> None:
    # The corners of `1e300 * w` are 0 and inf; the range once came out as [0, 0], which
    # hid the NaN of this sqrt.
    text = "param w: [0, 1e200] = 1\nloss = mean(sqrt(w * w * p - 1e300*w))"
    diagnostic = next(d for d in diagnose(text) if d.is_error)
    assert diagnostic.code == "E404"
    assert "w = 1, p = 0" in diagnostic.message


def test_a_sum_with_an_overflowing_term_stays_at_infinity() -> None:
    text = "loss = mean(log(p + exp(1e300)))"
    assert range_of(text, "p + exp(1e300)").low == math.inf
    assert "W402" not in codes(text)


@pytest.mark.parametrize(
    ("text", "shown", "value"),
    [
        ("loss = mean(square(p - y) * (1e308 * 10))", "`1e308 * 10`", "1.0e309"),
        ("loss = mean(p * 2^1e5)", "`2^1e5`", "1.0e30103"),
        ("loss = mean(p * exp(1000))", "`exp(1000)`", "2.0e434"),
        ("loss = mean(p * 1e300 * 1e300)", "`p * 1e300 * 1e300` (its constant parts)", "1.0e600"),
    ],
)
def test_constants_beyond_float64_are_errors(text: str, shown: str, value: str) -> None:
    diagnostic = next(d for d in diagnose(text) if d.code == "E407")
    assert diagnostic.message.startswith(f"{shown} is {value}, beyond the largest float64")


def test_constants_that_fold_back_into_range_are_fine() -> None:
    # SymPy folds the constant factors exactly, so the generated code holds 1e308.
    assert codes("loss = mean(square(p - y) * 1e308 * 10 * 0.1)") == ["W408"]
    assert codes("loss = mean(square(p - y) * exp(1000) * exp(-1000))") == []
    assert codes("loss = mean(square(p - y) * 1e20 * 1e-20)") == []


def test_constant_beyond_float32_warns() -> None:
    diagnostic = only("loss = mean(square(p - y) * cosh(100))", "W408")
    assert diagnostic.message.startswith("`cosh(100)` is 1.3e43, beyond the largest float32")
    assert codes("loss = mean(square(p - y) * cosh(80))") == []


def test_param_domain_beyond_float32_warns_once() -> None:
    diagnostic = only("param w: [0, 1e200] = 1\nloss = mean(w * square(p - y) + w * p)", "W408")
    assert "`w` can be 1e+200" in diagnostic.message


def test_intermediate_beyond_float32_names_a_witness() -> None:
    diagnostic = only("param k: [0, 100] = 1\nloss = mean(exp(k * p) * y)", "W408")
    assert "`exp(k * p)` exceeds it at k = 100, p = 1" in diagnostic.message


def test_overflow_of_large_inputs_and_of_values_only_a_log_takes_is_not_warned() -> None:
    # Any exp or cosh of a real input overflows for a large enough input, and the stable
    # rewrites compute log(cosh(x)) and log(sum(exp(x))) without forming the value.
    assert codes("input y: target\ninput p: real\nloss = mean(log(cosh(p - y)))") == []
    assert codes("input y: target\ninput z: logits\nloss = mean(square(exp(z) - y))") == []
    assert codes("input y: onehot\ninput z: logits\nloss = mean(log(sum(exp(z))) - sum(y*z))") == []


def test_exps_of_a_log_of_a_ratio_of_masked_sums_are_not_warned() -> None:
    """InfoNCE's log(sum(exp(s), where=...) / sum(exp(s))): the rewrites take the log of
    each sum, a masked one as a logsumexp too, and exp(s) is never formed (no W408 for
    t = 0.001, where s reaches 1000)."""
    spec = (
        "# lossdsl: allow W301\ninput y: label\ninput e: real\n"
        "param t: positive = 0.1\nlet s = sum(e * other(e)) / t\n"
        "loss = mean(-log({} / sum(exp(s), axis=sample)))"
    )
    masked = "sum(exp(s), axis=sample, where=other(y) == y)"
    assert "W408" not in codes(spec.format(masked))
    # a select whose other branch is no 0 is no mask: its exp(s) is a value of the sum
    assert "W408" in codes(spec.format("sum(where(other(y) == y, exp(s), 1), axis=sample)"))


# ---------------------------------------------------------------- y_pred that cancels


@pytest.mark.parametrize(
    "text",
    [
        "loss = mean(p - p)",
        "loss = mean(2 * (p - y) + 2 * y - p - p)",
        "input y: onehot\ninput z: logits\nloss = mean(sum(z) - sum(z) + sum(y))",
    ],
)
def test_prediction_that_cancels_is_an_error_at_the_loss(text: str) -> None:
    with pytest.raises(LossSpecError) as failure:
        compile_source(SourceFile.from_text(text), verify=False)
    (diagnostic,) = failure.value.diagnostics
    assert diagnostic.code == "E503"
    assert diagnostic.span is not None and diagnostic.span.line == text.count("\n") + 1
    assert "once simplified" in diagnostic.message


def test_reductions_of_what_cancelled_fold_to_numbers() -> None:
    # y_true cancels: a valid loss, whose constant terms once reached the printer as
    # `ReduceMean(0, ...)` (TypeError: Cannot convert expression to float).
    for text in [
        "loss = mean(square(p - y)) + mean(y - y)",
        "loss = mean(square(p - y) + sum(y - y))",
        "loss = mean(square(p - y) + max(y - y))",
    ]:
        result = lower(checked(text)).result
        folded = [r for r in result.atoms(fn.Reduction) if r.args[0].is_number]
        assert result.has(fn.Reduction) and not folded, result


# ---------------------------------------------------------------- shares: a / (a + b)

FOCAL_TVERSKY = """\
input y: binary
input p: prob
param a: unit = 0.7
param b: unit = 0.3
param s: positive = 1.0
param gamma: positive = 0.75
let tp = sum(y * p, axis=all)
let fn = sum(y * (1 - p), axis=all)
let fp = sum((1 - y) * p, axis=all)
let ti = (tp + s) / (tp + a*fn + b*fp + s)
loss focal_tversky = (1 - ti)^gamma
"""


def test_a_share_of_a_sum_of_nonnegative_terms_is_in_the_unit_interval() -> None:
    assert range_of(FOCAL_TVERSKY, "1 - ti") == Range(0.0, 1.0, True, False)
    text = "input y: binary\ninput p: prob\nloss = mean(1 - p / (p + y))"
    assert range_of(text, "p / (p + y)") == Range(0.0, 1.0, True, True)


def test_a_share_written_out_reads_its_terms_by_what_they_compute() -> None:
    # Two `exp(z)` written apart are one atom, as a `let` would make them: the sigmoid as
    # exp(z) / (1 + exp(z)) is a share, and log(1 - p) has no W402.
    text = "input y: binary\ninput z: logits\nloss = mean(-log(1 - exp(z) / (1 + exp(z))))"
    assert range_of(text, "exp(z) / (1 + exp(z))") == Range(0.0, 1.0, False, False)
    assert codes(text) == []
    spelled_apart = (
        "input y: binary\ninput z: logits\nloss = mean(-log(1 - exp(z) / (1 + exp(2 * z))))"
    )
    assert "W402" in codes(spelled_apart)


def test_a_share_needs_its_terms_in_the_divisor_and_the_rest_nonnegative() -> None:
    text = (
        "input y: target\ninput p: prob\nloss = mean(sqrt(1 - p / (p + y)) + sqrt(1 - p / (y + 1)))"
    )
    assert range_of(text, "p / (p + y)") == Range(-math.inf, math.inf, False, False)
    assert range_of(text, "p / (y + 1)").high == math.inf


def test_focal_tversky_warns_about_its_gradient_and_nothing_it_cannot_be() -> None:
    diagnostics = [d for d in diagnose(FOCAL_TVERSKY) if d.code.startswith("W4")]
    assert [d.code for d in diagnostics] == ["W405"]
    assert "`(1 - ti)^gamma` has an infinite gradient at" in diagnostics[0].message
    # gamma >= 1 has a finite gradient there.
    assert "W405" not in codes(FOCAL_TVERSKY.replace("positive = 0.75", "[1, inf) = 1.5"))


def test_param_default_beyond_float32_warns() -> None:
    diagnostic = only("param a = 1e308\nloss = mean(a * square(p - y))", "W408")
    assert "`a` can be 1e+308" in diagnostic.message


def test_witness_search_over_a_thousand_variables() -> None:
    # np.indices over every variable once exceeded NumPy's 64 dimensions (ValueError), and
    # shrinking the grid one candidate at a time took seconds.
    start = time.perf_counter()
    indices = _candidate_indices([13] * 1000)
    assert time.perf_counter() - start < 1.0
    assert indices.shape == (CANDIDATE_LIMIT, 1000)
    assert not indices[0].any()  # the simplest point first


def test_witness_index_tuples_are_made_once_per_sizes_and_read_only() -> None:
    small = _candidate_indices([49, 2])
    assert _candidate_indices((49, 2)) is small and not small.flags.writeable
    assert small.shape == (98, 2) and {tuple(row) for row in small} == {
        (i, j) for i in range(49) for j in range(2)
    }
    many = [3] * (REMEMBERED_VARIABLES + 1)
    assert _candidate_indices(many) is not _candidate_indices(many)
    np.testing.assert_array_equal(_candidate_indices(many), _candidate_indices(many))


def test_params_at_their_defaults_beyond_float64_are_errors() -> None:
    # `a * a` is inf for every input with the default a = 1e308 (verification once failed
    # on it with a "bug in lossdsl").
    text = "param a = 1e308\nloss = mean(a * a * square(p - y))"
    errors = [d for d in diagnose(text) if d.is_error]
    assert [d.code for d in errors] == ["E407"]
    assert "with the params at their defaults) is 1.0e616" in errors[0].message
    warned = only("param a = 1e20\nloss = mean(a * a * square(p - y))", "W408")
    assert "with the params at their defaults) is 1.0e40" in warned.message
    assert codes("param a = 1e10\nloss = mean(a * a * square(p - y))") == []
