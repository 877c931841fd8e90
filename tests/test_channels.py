"""Channel selections (LANGUAGE.md 6.2), stage by stage: `x[k]`, `x[a:b]`, `x[..., k]`.

The checker's roles and widths, lowering to `Channel`/`Channels`, the printed slices and
run-time checks, the verifier's class counts, and values and gradients against NumPy in
float32 and float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy
import tensorflow as tf
from backend_harness import BROADCAST_P, BROADCAST_Y, BROADCAST_Y_TRUE

import lossdsl
from lossdsl.channels import Width, requirements, select, whole_uses
from lossdsl.checker import check
from lossdsl.diagnostics import LossSpecError, render
from lossdsl.parser import parse
from lossdsl.source import SourceFile
from lossdsl.symbolic import functions as fn
from lossdsl.symbolic.lower import lower
from lossdsl.typed import PER_ELEMENT, Role, TSelect, typed_text, walk
from lossdsl.verification.driver import ClassCounts, class_counts

REGRESSION = "input y: target\ninput p: real\n"


def checked(text: str) -> lossdsl.typed.CheckedSpec:
    return check(parse(SourceFile.from_text(text, "t.loss")))


def codes(text: str) -> list[str]:
    with pytest.raises(LossSpecError) as failure:
        checked(text)
    return [d.code for d in failure.value.diagnostics]


# ---------------------------------------------------------------- widths


@pytest.mark.parametrize(
    ("start", "stop", "single", "width", "needed"),
    [
        (0, None, True, None, 1),
        (-1, None, True, None, 1),
        (3, None, True, None, 4),
        (-3, None, True, None, 3),
        (0, 2, False, Width(None, 2), 2),
        (1, None, False, Width("y_pred", -1), 2),
        (None, -1, False, Width("y_pred", -1), 2),
        (1, -1, False, Width("y_pred", -2), 3),
        (-2, None, False, Width(None, 2), 2),
        (-3, -1, False, Width(None, 2), 3),
        (None, None, False, Width("y_pred", 0), 1),
    ],
)
def test_a_selection_of_y_preds_classes(
    start: int | None, stop: int | None, single: bool, width: Width | None, needed: int
) -> None:
    selection = select(Width("y_pred", 0), start, stop, single)
    assert (selection.width, selection.needed, selection.problem) == (width, needed, None)


def test_selections_of_a_known_size_are_checked_now() -> None:
    assert select(Width(None, 3), 1, None, False).width == Width(None, 2)
    assert select(Width(None, 3), 3, None, True).problem is not None
    assert select(Width(None, 3), -4, None, True).problem is not None
    assert select(Width("y_pred", 0), 2, 1, False).problem == "it selects no entry"
    assert select(Width("y_pred", 0), -2, 1, False).problem is not None


def test_requirements_name_the_selection_that_needs_most() -> None:
    spec = checked(REGRESSION + "loss = mean(square(y[0] - p[2]) + p[-1] + sum(p[1:]))")
    found = requirements([spec.result], spec.source)
    assert (found["y_pred"].needed, found["y_pred"].written) == (3, "p[2]")
    assert (found["y_true"].needed, found["y_true"].written) == (1, "y[0]")
    assert not whole_uses([spec.result], "y_true")
    assert whole_uses([spec.result], "y_pred") is False


# ---------------------------------------------------------------- checker


def test_a_single_channel_loses_the_class_role_and_a_slice_keeps_it() -> None:
    spec = checked(REGRESSION + "loss = mean(square(y[0] - p[..., 1]) + sum(p[0:2]))")
    selections = [node for node in walk([spec.loss]) if isinstance(node, TSelect)]
    assert [(s.written, s.roles == PER_ELEMENT) for s in selections] == [
        ("[0]", True),
        ("[1]", True),
        ("[0:2]", False),
    ]
    assert typed_text(spec.loss) == ("mean((y[0] - p[1])^2 + sum(p[0:2], axis=-1), axis=-1)")


def test_selections_work_on_lets_vector_params_and_class_axis_functions() -> None:
    vector = "param w = [1.0, 2.0, 3.0]\nlet q = softmax(p)\n"
    spec = checked(REGRESSION + vector + "loss = mean(w[-1] * q[0] + sum(w[1:] * q[1:]))")
    assert Role.CLASS not in spec.loss.roles


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("loss = mean(sum(p)[0])", ["E307"]),
        ("loss = mean(sum(p)[..., 0])", ["E307"]),
        ("loss = mean(p[0][0])", ["E307"]),
        ("loss = mean(sum(p[0:2:1]))", ["E320"]),
        ("loss = mean(p[0.5])", ["E320"]),
        ("loss = mean(sum(p[1:k]))\nparam k = 2", ["E320"]),
        ("param k = 1\nloss = mean(p[k])", ["E308"]),
        ("param w = [1.0, 2.0]\nloss = mean(w[2] * sum(p))", ["E321"]),
        ("param w = [1.0, 2.0]\nloss = mean(w[-3] * sum(p))", ["E321"]),
        ("loss = mean(sum(p[3:3]))", ["E321"]),
        ("loss = mean(sum(p[0:2] - y[1:4]))", ["E322"]),
        ("loss = mean(sum(p[0:2][2]))", ["E321"]),
        ("param w = [1.0, 2.0]\nloss = mean(w[0] * p[2])", ["E321"]),
        ("param w = [1.0, 2.0, 3.0]\nloss = mean(sum(w * p[0:2]))", ["E322"]),
    ],
)
def test_selection_errors(text: str, expected: list[str]) -> None:
    assert codes(REGRESSION + text) == expected


def test_sizes_known_only_at_run_time_and_size_one_pass_the_checker() -> None:
    checked(REGRESSION + "loss = mean(sum(p[1:] - p[:-1]))")
    checked(REGRESSION + "loss = mean(sum(p[0:1] * p))")
    checked(REGRESSION + "loss = mean(sum(y * p))")


def test_a_gather_keeps_its_meaning() -> None:
    spec = checked("input y: label\ninput z: logits\nloss = mean(-log_softmax(z)[class(y)])")
    assert not any(isinstance(node, TSelect) for node in walk([spec.loss]))


# ---------------------------------------------------------------- lowering and printing


def test_lowering_makes_channel_primitives() -> None:
    symbolic = lower(checked(REGRESSION + "loss = mean(square(y[0] - p[-1]) + sum(p[1:]))"))
    y, p = symbolic.symbols["y"], symbolic.symbols["p"]
    assert symbolic.result.has(fn.Channel(y, 0), fn.Channel(p, -1))
    assert symbolic.result.has(fn.Channels(p, 1, sympy.oo))
    assert fn.roles_of(fn.Channel(p, 0), symbolic.roles) == PER_ELEMENT
    assert fn.Channel(sympy.Integer(2), 0) == 2


def test_printed_code_slices_the_last_axis_and_checks_the_inputs() -> None:
    source = lossdsl.compile(
        REGRESSION + "loss = mean(square(y[0] - p[-1]) + sum(p[1:3]) + sum(p[:2]))", verify=False
    ).python_source
    assert "p[..., 0:2]" in source
    assert "p[..., -1:]" in source
    assert "y[..., 0:1]" in source
    assert "p[..., 1:3]" in source
    assert 'y = _check_channels(y, 1, "y_true", "y[0]")' in source
    assert 'p = _check_channels(p, 3, "y_pred", "p[1:3]")' in source


def test_explain_shows_selections_as_written() -> None:
    from lossdsl.symbolic.display import spec_text

    symbolic = lower(checked(REGRESSION + "loss = mean(square(y[0] - p[1]) + sum(p[:-1]))"))
    text = spec_text(symbolic.result, symbolic.roles)
    assert "p[1]" in text and "y[0]" in text and "p[:-1]" in text


# ---------------------------------------------------------------- run time


def test_too_few_channels_is_a_clear_error_when_traced() -> None:
    compiled = lossdsl.compile(REGRESSION + "loss = mean(square(y[0] - p[5]))", verify=False)
    with pytest.raises(ValueError, match=r"selects `p\[5\]`, which needs at least 6 entries"):
        compiled.per_sample_function(np.zeros((3, 1)), np.zeros((3, 2)))


def test_too_few_channels_unknown_when_traced_is_an_error_when_run() -> None:
    compiled = lossdsl.compile(REGRESSION + "loss = mean(square(y[0] - p[5]))", verify=False)
    function = compiled.per_sample_function.python_function
    traced = tf.function(
        function,
        input_signature=[
            tf.TensorSpec([None, None], tf.float32),
            tf.TensorSpec([None, None], tf.float32),
        ],
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"p\[5\]"):
        traced(tf.zeros((3, 1)), tf.zeros((3, 2)))


def test_class_axes_of_other_sizes_meet_only_through_broadcasting() -> None:
    compiled = lossdsl.compile(REGRESSION + "loss = mean(sum(square(y - p)))", verify=False)
    ones = compiled.per_sample_function(np.ones((2, 1)), np.zeros((2, 3))).numpy()
    np.testing.assert_allclose(ones, [3.0, 3.0])
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match=r"(3 and 2|2 and 3)"):
        compiled.per_sample_function(np.ones((2, 2)), np.zeros((2, 3)))


def test_num_classes_is_y_preds_count() -> None:
    compiled = lossdsl.compile(REGRESSION + "loss = mean(num_classes * square(y[0] - p[0]))")
    values = compiled.per_sample_function(np.ones((2, 1)), np.zeros((2, 3)))
    np.testing.assert_allclose(values.numpy(), [3.0, 3.0])


def test_a_rank_one_y_true_is_one_channel() -> None:
    compiled = lossdsl.compile(REGRESSION + "loss = mean(square(y[0] - p[1]))", verify=False)
    values = compiled.per_sample_function(np.array([1.0, 2.0]), np.array([[0.0, 3.0]] * 2))
    np.testing.assert_allclose(values.numpy(), [4.0, 1.0])


# ---------------------------------------------------------------- verification


def test_verification_draws_y_true_with_the_channels_it_selects() -> None:
    counts = class_counts(lower(checked(REGRESSION + "loss = mean(square(y[0] - p[3]))")))
    assert counts == ClassCounts(fewest=4, true_classes=1)
    counts = class_counts(lower(checked(REGRESSION + "loss = mean(square(y[-2] - p[0]))")))
    assert counts == ClassCounts(fewest=1, true_classes=2)
    whole = REGRESSION + "loss = mean(sum(square(y - p)) + y[5])"
    assert class_counts(lower(checked(whole))) == ClassCounts(fewest=6, true_classes=None)


@pytest.mark.parametrize(
    ("source", "counts"),
    [
        (REGRESSION + "loss = mean(square(p[0:2] - y))", ClassCounts(2, 2)),
        (REGRESSION + "loss = mean(square(p[1:3] - y[0:2]) + y)", ClassCounts(3, 2)),
        (
            "input y: label\ninput z: logits\n"
            "loss = mean(-log(sum(onehot(y) * softmax(z[..., 0:3]))))",
            ClassCounts(3, None, exact=3),
        ),
        (  # a weight beside soft labels: y has one class more than z
            "input y: onehot\ninput z: logits\nloss = mean(-y[-1] * sum(y[0:-1] * log_softmax(z)))",
            ClassCounts(1, None, true_offset=1),
        ),
    ],
)
def test_verification_draws_the_classes_a_slice_of_literal_width_meets(
    source: str, counts: ClassCounts
) -> None:
    """A whole input's class axis that meets a slice of literal width must have that many
    classes (LANGUAGE.md 6.2: class axes of different sizes meet only through a selection
    or a size of 1): the verifier drew y_true, or y_pred, with y_pred's count, and its
    reference indexed the slice outside itself (E900, IndexError). Where both class axes
    are sized at run time, y_true is drawn with as many more classes as the combination
    needs (`channels.true_offset`): LANGUAGE.md 6.2's weight beside soft labels was drawn with
    y_true narrower than y_pred, its slice broadcast, and was E902. The spec then compiles
    with verification."""
    assert class_counts(lower(checked(source))) == counts
    lossdsl.compile(source)


def test_verification_catches_a_wrong_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    from lossdsl.codegen.printer import TensorFlowPrinter

    def off_by_one(self: TensorFlowPrinter, expr: fn.Channel) -> str:
        x, index = expr.args
        return f"{self._print(x)}[..., {index + 1}:{index + 2}]"

    monkeypatch.setattr(TensorFlowPrinter, "_print_Channel", off_by_one)
    with pytest.raises(LossSpecError) as failure:
        lossdsl.compile(REGRESSION + "loss = mean(square(p[1] - 1))")
    assert {d.code for d in failure.value.diagnostics} >= {"E901"}


LANGUAGE_EXAMPLE = """\
input y: target          # [batch, 1]
input p: real            # [batch, 2]: mean, log-variance
let mu = p[0]
let log_var = p[1]
loss gaussian_nll = mean(0.5 * (log_var + square(y[0] - mu) * exp(-log_var)))
"""


def test_the_example_of_language_md_works_as_written() -> None:
    loss = lossdsl.load(LANGUAGE_EXAMPLE)
    y, p = np.array([[1.0], [0.0]]), np.array([[0.0, 0.0], [2.0, np.log(4.0)]])
    expected = np.mean([0.5 * 1.0, 0.5 * (np.log(4.0) + 1.0)])
    np.testing.assert_allclose(float(loss(y, p)), expected, rtol=1e-6)


VERIFIED = [
    REGRESSION + "loss = mean(0.5 * (p[1] + square(y[0] - p[0]) * exp(-p[1])))",
    REGRESSION + "loss = mean(sum(square(p[1:] - p[:-1])))",
    REGRESSION + "loss = mean(sum(square(y[-2:] - p[0:2])) + mean(p[2:]))",
    REGRESSION + "loss = mean(sum(square(y - p[..., 0:1])))",
    "input y: onehot\ninput z: logits\nloss = mean(-sum(y[0:2] * log_softmax(z[0:2])) + z[-1]^2)",
    REGRESSION + "mask y[1] > 0\nloss = mean(square(y[0] - p[0]))",
    REGRESSION + "loss = mean(num_classes * square(y[0] - p[0]) + sum(cumsum(p)[1:]))",
    "param w = [1.0, 2.0, 3.0]\nloss = mean(sum(w[1:] * square(p[1:] - y[1:])) + w[0] * p[0])",
    REGRESSION + "loss = mean(square(y[0] - sum(softmax(p)[1:])) + max(p[0:2]))",
    REGRESSION + "loss = mean(where(p[0] > y[0], p[1], -p[1]))",
    # y[1:] meets p[1:] of another width, broadcast where y has 2 channels and p 3: the
    # gradient's class axis was y_true's (E900, an IndexError in the comparison)
    "input y: binary\ninput p: prob\nloss = mean(1 - (sum(y[1:] * p[1:]) + 1) / "
    "(sum(y[1:] * p[1:]) + 0.3 * sum((1 - y[1:]) * p[1:]) + 1))",
]


@pytest.mark.parametrize(
    "spec", [*BROADCAST_Y_TRUE, REGRESSION + "loss = mean(1 - sum(y * p) / sum(p + 1))"]
)
def test_a_gradient_with_y_true_s_class_axis_of_size_one_has_y_pred_s_shape(spec: str) -> None:
    """LANGUAGE.md 6.2: a class axis of size 1 is broadcast. The derivative of mean(y * p)
    is y / C, y_true's shape [batch, 1] where y_pred's is [batch, 3]: TensorFlow refused
    the custom gradient in a graph ("Incompatible shapes between op input and calculated
    input gradient"). It is broadcast to y_pred's shape. And where the backward pass sums
    such a value over the classes (log_softmax's rule, or a value broadcast over them),
    it sums over y_pred's C classes: -sum(y * log_softmax(p)) summed y's one."""
    loss = lossdsl.load(spec)
    y, p = tf.constant(BROADCAST_Y, tf.float32), tf.constant(BROADCAST_P, tf.float32)

    @tf.function
    def gradient(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(p)
            value = loss(y, p)
        return tape.gradient(value, p)

    with tf.GradientTape() as tape:
        tape.watch(p)
        expected = loss(tf.broadcast_to(y, p.shape), p)
    np.testing.assert_allclose(gradient(y, p), tape.gradient(expected, p), rtol=1e-6)


@pytest.mark.parametrize("text", VERIFIED, ids=range(len(VERIFIED)))
def test_selection_specs_pass_verification(text: str) -> None:
    compiled = lossdsl.compile(text)  # E9xx would raise
    assert not [d for d in compiled.diagnostics if d.code.startswith("E")]


# ---------------------------------------------------------------- values and gradients


def _gaussian_nll(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, s = p[:, 0], p[:, 1]
    value = 0.5 * (s + (y[:, 0] - mu) ** 2 * np.exp(-s))
    gradient = np.stack(
        [-(y[:, 0] - mu) * np.exp(-s), 0.5 - 0.5 * (y[:, 0] - mu) ** 2 * np.exp(-s)], 1
    )
    return value, gradient


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_values_and_gradients_match_numpy(dtype: str) -> None:
    compiled = lossdsl.compile(
        REGRESSION + "loss = mean(0.5 * (p[1] + square(y[0] - p[0]) * exp(-p[1])))",
        verify=False,
    )
    rng = np.random.default_rng(3)
    y, p = rng.normal(size=(5, 1)), rng.normal(size=(5, 2))
    y_pred = tf.constant(p, dtype)
    with tf.GradientTape() as tape:
        tape.watch(y_pred)
        value = compiled.per_sample_function(tf.constant(y, dtype), y_pred)
        total = tf.reduce_sum(value)
    expected_value, expected_gradient = _gaussian_nll(y, p)
    tolerance = 1e-6 if dtype == "float32" else 1e-14
    np.testing.assert_allclose(value.numpy(), expected_value, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(
        tape.gradient(total, y_pred).numpy(), expected_gradient, rtol=tolerance, atol=tolerance
    )


def test_a_slice_of_y_pred_meeting_all_of_its_classes_is_warned() -> None:
    """W303: a confidence head beside the logits, with a label's one-hot row (y_pred's C
    classes) times log_softmax of the first four: the two agree only where z has four
    classes, so `z[0:4]` is all of z and `z[-1]` one of its classes (TensorFlow's
    "Incompatible shapes" when the loss runs with five)."""
    text = (
        "input y: label\ninput z: logits\n"
        "loss = mean(-sum(onehot(y) * log_softmax(z[0:4])) + softplus(z[-1]))"
    )
    result = check(parse(SourceFile("<string>", text)))
    assert [render(w, result.source) for w in result.warnings] == [
        "<string>:3:18: warning[W303]: `onehot(y)` has all of z's classes and "
        "`log_softmax(z[0:4])` 4: the loss runs only where z has exactly 4 classes, and "
        "`z[0:4]` is then all of z\n"
        "  3 | loss = mean(-sum(onehot(y) * log_softmax(z[0:4])) + softplus(z[-1]))\n"
        "    |                  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ z's classes meet 4 of its "
        "channels\n"
        "    = help: combine the same channels, as in `onehot(y)[0:4]`; a label's entry is an "
        "index, as in `log_softmax(z[0:4])[y]`"
    ]


def test_the_help_brackets_a_whole_operand_that_is_not_one_term() -> None:
    result = check(parse(SourceFile("<string>", REGRESSION + "loss = mean(p[0:2] - (p + exp(p)))")))
    (warned,) = result.warnings
    assert warned.code == "W303"
    assert warned.help == ("combine the same channels, as in `(p + exp(p))[0:2]`",)


@pytest.mark.parametrize(
    "text",
    [
        REGRESSION + "loss = mean(sum(square(y[0:2] - p)))",  # y_true's slice: p has 2
        "input y: onehot\ninput z: logits\nloss = mean(-sum(y * log_softmax(z[0:4])))",
        "input y: label\ninput z: logits\nloss = mean(-log_softmax(z[0:4])[y])",
        "input y: label\ninput z: logits\nloss = mean(-sum(onehot(y)[0:4] * log_softmax(z[0:4])))",
        REGRESSION + "loss = mean(sum(p * p[0:1]))",  # one channel broadcasts
    ],
)
def test_slices_that_need_not_be_all_of_y_pred_are_not_warned(text: str) -> None:
    assert not check(parse(SourceFile("<string>", text))).warnings
