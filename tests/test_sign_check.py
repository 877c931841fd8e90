"""The sign check (W601, LANGUAGE.md 6.6): a loss that rises as y_pred moves toward y_true."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

import lossdsl
from lossdsl import cli
from lossdsl.analysis.sign import PRED_KINDS, TRUE_KINDS, sign_diagnostics
from lossdsl.codes import LOSS_RISES_TOWARD_TRUTH
from lossdsl.compiler import check_source, generate
from lossdsl.diagnostics import LossSpecWarning
from lossdsl.source import SourceFile

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.loss"))

ONEHOT_PROB = "input y: onehot\ninput p: prob\n"
LABEL_PROB = "input y: label\ninput p: prob\n"
BINARY_PROB = "input y: binary\ninput p: prob\n"
ONEHOT_LOGITS = "input y: onehot\ninput z: logits\n"
LABEL_LOGITS = "input y: label\ninput z: logits\n"
BINARY_LOGITS = "input y: binary\ninput z: logits\n"

CORAL_LEVELS = "let levels = 1 - cumsum(onehot(y))\n"
CORAL_TERMS = "levels * log(sigmoid(z)) + (1 - levels) * (log(sigmoid(z)) - z)"
"""CORAL (Cao et al., 2020) with its minus missing: its class axis holds ordinal thresholds."""

MINUS = ("= mean(", "= -mean(")
"""The fix of most rows below: the missing minus, in front of the outer mean."""

MISSING_MINUS: dict[str, tuple[str, str, tuple[str, str]]] = {
    "cross-entropy": (
        ONEHOT_PROB + "loss ce = mean(sum(y * log(clip(p))))",
        "`p` moves toward `y`",
        MINUS,
    ),
    "sparse cross-entropy": (
        LABEL_PROB + "loss ce = mean(log(clip(p[y])))",
        "`p` moves toward `onehot(y)`",
        MINUS,
    ),
    "binary cross-entropy": (
        BINARY_PROB + "loss bce = mean(y * log(clip(p)) + (1 - y) * log(clip(1 - p)))",
        "`p` moves toward `y`",
        MINUS,
    ),
    "focal": (
        ONEHOT_PROB
        + "param gamma: nonneg = 2.0\nlet q = clip(p)\n"
        + "loss focal = mean(sum((1 - q)^gamma * y * log(q)))",
        "`p` moves toward `y`",
        MINUS,
    ),
    "binary focal": (
        BINARY_PROB
        + "let q = clip(p)\nlet pt = y * q + (1 - y) * (1 - q)\n"
        + "loss focal = mean((1 - pt)^2 * log(pt))",
        "`p` moves toward `y`",
        MINUS,
    ),
    "dice written as the overlap": (
        BINARY_PROB
        + "let overlap = sum(y * p, axis=all)\n"
        + "# lossdsl: allow W301 W302\n"
        + "loss dice = 2 * overlap / (sum(y, axis=all) + sum(p, axis=all) + eps)",
        "`p` moves toward `y`",
        ("= 2 *", "= 1 - 2 *"),
    ),
    "cross-entropy on logits": (
        ONEHOT_LOGITS + "loss ce = mean(sum(y * log_softmax(z)))",
        "the true class's logit in `z` rises",
        MINUS,
    ),
    "sparse cross-entropy on logits": (
        LABEL_LOGITS + "loss ce = mean(log_softmax(z)[y])",
        "the true class's logit in `z` rises",
        MINUS,
    ),
    "binary cross-entropy on logits": (
        BINARY_LOGITS + "loss bce = mean(-(y * softplus(-z) + (1 - y) * softplus(z)))",
        "`z` moves toward the sign of `2 * y - 1`",
        MINUS,
    ),
    "CORAL on threshold logits": (
        LABEL_LOGITS + CORAL_LEVELS + "loss coral = mean(sum(" + CORAL_TERMS + "))",
        "the thresholds in `z` below the rank `y` rise and the others fall",
        MINUS,
    ),
    "CORAL on one-hot ranks": (
        ONEHOT_LOGITS
        + CORAL_LEVELS.replace("onehot(y)", "y")
        + "loss coral = mean(sum("
        + CORAL_TERMS
        + "))",
        "the thresholds in `z` below the rank `class(y)` rise and the others fall",
        MINUS,
    ),
    "CORAL on threshold probabilities": (
        LABEL_PROB
        + CORAL_LEVELS
        + "loss coral = mean(sum(levels * log(clip(p)) + (1 - levels) * log(1 - clip(p))))",
        "`p` moves toward the ordinal levels [y > k]",
        MINUS,
    ),
}

SILENT: dict[str, str] = {
    "a loss flat on part of the domain (a hinge on probabilities)": (
        ONEHOT_PROB + "loss h = mean(sum(y * maximum(p - 0.5, 0)))"
    ),
    "a loss that rises and falls (an entropy bonus)": (
        ONEHOT_PROB + "loss e = mean(sum(p * log(clip(p))) + sum(y * log(clip(p))) * 0)"
    ),
    "a regression spec": "input y: target\ninput p: real\nloss mse = mean(square(y - p))",
    "a regression spec with a wrong sign": (
        "input y: target\ninput p: real\nloss m = mean(-square(y - p))"
    ),
    "a nonneg pair": "input y: nonneg\ninput p: nonneg\nloss n = mean(y * log(p + 1))",
    "a onehot y_true against a real y_pred": (
        "input y: onehot\ninput p: real\nloss h = mean(sum(y * p))"
    ),
    "squared EMD on logits (cumsum of both: the class axis holds classes)": (
        ONEHOT_LOGITS + "loss emd = mean(sum(square(cumsum(softmax(z)) - cumsum(y))))"
    ),
}


def _covered(path: Path) -> bool:
    checked = check_source(SourceFile.from_text(path.read_text(encoding="utf-8")))
    return checked.y_true.kind in TRUE_KINDS and checked.y_pred.kind in PRED_KINDS


def _messages(text: str) -> list[str]:
    generated = generate(SourceFile.from_text(text))
    return [d.message for d in generated.diagnostics if d.code == LOSS_RISES_TOWARD_TRUTH]


@pytest.mark.parametrize("name", MISSING_MINUS)
def test_warns_on_a_missing_minus(name: str) -> None:
    text, direction, (wrong, right) = MISSING_MINUS[name]
    (message,) = _messages(text)
    assert f"the loss rises as {direction}" in message
    assert _messages(text.replace(wrong, right)) == []


@pytest.mark.parametrize("name", SILENT)
def test_silent_elsewhere(name: str) -> None:
    assert _messages(SILENT[name]) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_silent_on_every_example(path: Path) -> None:
    checked = check_source(SourceFile.from_text(path.read_text(encoding="utf-8"), str(path)))
    assert sign_diagnostics(checked) == []


NOT_STRICTLY_FALLING = {
    "label_smoothed_ce": "rises toward a hard one-hot target near it (its minimum is smoothed)",
    "ldam": "its scale s = 30 saturates the softmax at some sampled logits: flat there",
}
"""Covered examples whose negation is not warned, and why."""

COVERED = [path for path in EXAMPLES if _covered(path)]


@pytest.mark.parametrize("path", COVERED, ids=[path.stem for path in COVERED])
def test_every_negated_example_is_warned(path: Path) -> None:
    """The examples are silent because they fall toward y_true, not because the check
    cannot see them: each negated, the loss rises (but for the reasons above)."""
    negated = re.sub(
        r"^(loss \w+ = )(.*)$", r"\1-(\2)", path.read_text(encoding="utf-8"), flags=re.M
    )
    found = sign_diagnostics(check_source(SourceFile.from_text(negated)))
    assert bool(found) is (path.stem not in NOT_STRICTLY_FALLING)


def test_located_at_the_loss_with_a_hint() -> None:
    text = MISSING_MINUS["cross-entropy"][0]
    (found,) = sign_diagnostics(check_source(SourceFile.from_text(text)))
    assert found.span is not None and found.span.line == 3
    assert any("-sum(y * log(p))" in line for line in found.help)


def test_a_pragma_allows_it() -> None:
    text = MISSING_MINUS["cross-entropy"][0]
    assert _messages(text.replace("loss ce", "# lossdsl: allow W601\nloss ce")) == []


def test_the_command_line_reports_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "ce.loss"
    spec.write_text(MISSING_MINUS["cross-entropy"][0], encoding="utf-8")
    status = cli.main(["check", str(spec)])
    assert status == 0
    assert "W601" in capsys.readouterr().err


def test_the_api_warns() -> None:
    with pytest.warns(LossSpecWarning, match="W601"):
        lossdsl.compile(MISSING_MINUS["cross-entropy"][0], verify=False)


def test_fast_on_the_examples() -> None:
    checked = [
        check_source(SourceFile.from_text(path.read_text(encoding="utf-8"))) for path in EXAMPLES
    ]
    sign_diagnostics(checked[0])  # the built-ins' numeric forms, built once
    for spec in checked:
        start = time.perf_counter()
        sign_diagnostics(spec)
        assert time.perf_counter() - start < 0.1
