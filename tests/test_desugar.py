"""The checker's desugarings (`lossdsl.desugar`): fixture pairs, spec text in and the typed
tree's text out, with the rules recorded as fired."""

from __future__ import annotations

import pytest

from lossdsl.checker import check
from lossdsl.desugar import DESUGARINGS
from lossdsl.parser import parse
from lossdsl.source import SourceFile
from lossdsl.typed import CheckedSpec, typed_text

INPUTS = "input y: onehot\ninput p: prob\n"

# (spec text, the checked loss as text, the result Keras's call returns, rules fired)
FIXTURES: list[tuple[str, str, str, tuple[str, ...]]] = [
    (
        INPUTS + "loss = sum(clip(p), axis=-1)",
        "sum(clip(p, 1e-07, 0.9999999), axis=-1)",
        "sum(clip(p, 1e-07, 0.9999999), axis=-1)",
        ("default_arguments",),
    ),
    (
        INPUTS + "loss = sum(square(p - y), axis=-1)",
        "sum((p - y)^2, axis=-1)",
        "sum((p - y)^2, axis=-1)",
        ("square_as_power",),
    ),
    (
        INPUTS + "loss = sum(p)",
        "sum(p, axis=-1)",
        "sum(p, axis=-1)",
        ("default_axis",),
    ),
    (
        INPUTS + "loss = sum(p * eps, axis=sample)",
        "sum(p * 1e-07, axis=sample)",
        "sum(p * 1e-07, axis=sample)",
        ("named_constant",),
    ),
    (
        INPUTS + "let d = p - y\nloss = sum(d * d, axis=-1)",
        "sum((p - y) * (p - y), axis=-1)",
        "sum((p - y) * (p - y), axis=-1)",
        ("inline_let",),
    ),
    (
        "loss = sum(p - y, axis=-1)",
        "sum(p - y, axis=-1)",
        "sum(p - y, axis=-1)",
        ("default_input",),
    ),
    (
        INPUTS + "loss = 2 * mean(sum(y * p, axis=-1), axis=-1) - mean(sum(p, axis=-1), axis=all)",
        "2 * mean(sum(y * p, axis=-1), axis=-1) - mean(sum(p, axis=-1), axis=all)",
        "2 * sum(y * p, axis=-1) - sum(p, axis=-1)",
        ("lift_outer_mean",),
    ),
    (
        INPUTS + "loss = mean(-sum(y * log(clip(p))))",
        "mean(-sum(y * log(clip(p, 1e-07, 0.9999999)), axis=-1), axis=-1)",
        "-sum(y * log(clip(p, 1e-07, 0.9999999)), axis=-1)",
        ("default_arguments", "default_axis", "lift_outer_mean"),
    ),
    (
        "input y: label\ninput e: real\n"
        "loss = mean(sum(sum(square(e - other(e))), axis=partner, where=other(y) == y))",
        "mean(sum(where(other(y, 1) == y, sum((e - other(e, 1))^2, axis=-1), 0), axis=-1), "
        "axis=-1)",
        "sum(where(other(y, 1) == y, sum((e - other(e, 1))^2, axis=-1), 0), axis=-1)",
        (
            "default_arguments",
            "square_as_power",
            "default_axis",
            "reduction_where",
            "lift_outer_mean",
        ),
    ),
    (
        "input y: label\ninput e: real\nloss = mean(mean(sum(e * other(e)), where=other(y) != y))",
        "mean(mean(where(other(y, 1) != y, sum(e * other(e, 1), axis=-1), 0), axis=-1) / "
        "where(mean(where(other(y, 1) != y, 1, 0), axis=-1) > 0, "
        "mean(where(other(y, 1) != y, 1, 0), axis=-1), 1), axis=-1)",
        "mean(where(other(y, 1) != y, sum(e * other(e, 1), axis=-1), 0), axis=-1) / "
        "where(mean(where(other(y, 1) != y, 1, 0), axis=-1) > 0, "
        "mean(where(other(y, 1) != y, 1, 0), axis=-1), 1)",
        ("default_arguments", "default_axis", "reduction_where", "lift_outer_mean"),
    ),
]


def _checked(text: str) -> CheckedSpec:
    return check(parse(SourceFile("desugar.loss", text + "\n")))


@pytest.mark.parametrize(("spec", "loss", "result", "fired"), FIXTURES)
def test_desugaring(spec: str, loss: str, result: str, fired: tuple[str, ...]) -> None:
    checked = _checked(spec)
    assert typed_text(checked.loss) == loss
    assert typed_text(checked.result) == result
    assert checked.desugarings == fired


def test_the_typed_text_parses_back_to_the_same_tree() -> None:
    for spec, loss, _, _ in FIXTURES:
        checked = _checked(spec)
        again = _checked(spec.rsplit("loss = ", 1)[0] + f"loss = {loss}")
        assert typed_text(again.loss) == loss
        assert checked.result.roles == again.result.roles


def test_every_rule_has_a_fixture_and_a_law() -> None:
    fired = {name for *_, names in FIXTURES for name in names}
    assert fired == set(DESUGARINGS)
    for name, rule in DESUGARINGS.items():
        assert rule.name == name
        assert " = " in rule.law


def test_nothing_fires_on_a_spec_written_out() -> None:
    checked = _checked(INPUTS + "loss = sum(y * p, axis=-1)")
    assert checked.desugarings == ()
