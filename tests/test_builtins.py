"""The built-in table: one row per built-in, read by every stage; the version 2 rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy
import tensorflow as tf

from lossdsl import cli
from lossdsl.builtins import BUILTINS, Builtin, Calls, RoleRule, Shape
from lossdsl.compiler import CompiledLoss, compile_source
from lossdsl.diagnostics import LossSpecError
from lossdsl.source import SourceFile
from lossdsl.symbolic import numeric
from lossdsl.symbolic.gradient import latex


def compiled(text: str) -> CompiledLoss:
    return compile_source(SourceFile.from_text(text, "spec.loss"))


def codes(text: str) -> list[str]:
    """The diagnostics' codes of a spec (errors raised or warnings returned), in order."""
    try:
        return [d.code for d in compiled(text).diagnostics]
    except LossSpecError as failure:
        return [d.code for d in failure.diagnostics]


def diagnostics(text: str) -> list[str]:
    try:
        return [f"{d.code} {d.message}" for d in compiled(text).diagnostics]
    except LossSpecError as failure:
        return [f"{d.code} {d.message}" for d in failure.diagnostics]


# ---------------------------------------------------------------- one row per built-in

SINH = Builtin(
    "sinh",
    1,
    1,
    RoleRule.ELEMENTWISE,
    "hyperbolic sine",
    lambda args, removed: sympy.sinh(*args),
    sympy.sinh,
    shape=Shape.INCREASING,
    pole_free=True,
    calls=Calls("tf.math.sinh", "jnp.sinh", "torch.sinh"),
)
"""A built-in added from one row: docs/ARCHITECTURE.md ("Adding a built-in") shows it."""


@pytest.fixture
def sinh_row(monkeypatch: pytest.MonkeyPatch) -> Iterator[Builtin]:
    """The `sinh` row in the table for one test."""
    monkeypatch.setitem(BUILTINS, SINH.name, SINH)
    yield SINH


def test_a_builtin_added_as_one_row_compiles_verifies_and_is_explained(
    sinh_row: Builtin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "input y: target\ninput p: real\nloss = mean(square(sinh(p) - y))\n"
    loss = compiled(text)  # verified against the mpmath reference, value and gradient
    assert "tf.math.sinh(p)" in loss.python_source
    assert loss.diagnostics == ()
    spec = tmp_path / "sinh.loss"
    spec.write_text(text, encoding="utf-8")
    assert cli.main(["explain", str(spec)]) == 0
    assert "sinh(p)" in capsys.readouterr().out


def test_the_added_row_gives_ranges_and_domains(sinh_row: Builtin) -> None:
    # log of sinh(p) with p: nonneg can be log(0): the increasing shape gives [0, inf)
    assert codes("input y: target\ninput p: nonneg\nloss = mean(log(sinh(p)) * y)\n") == ["W401"]
    assert codes("input y: target\ninput p: real\nloss = mean(log(sinh(p)) * y)\n") == ["E402"]


# ---------------------------------------------------------------- the version 2 rows

ELEMENTWISE_SPECS = {
    "erf": "loss = mean(square(erf(p) - y))",
    "erfc": "loss = mean(square(erfc(p) - y))",
    "lgamma": "loss = mean(lgamma(square(p) + 1) - y * p)",
    "digamma": "loss = mean(digamma(square(p) + 1) - y * p)",
    "sign": "loss = mean(sign(p) * p - y * p)",
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE_SPECS))
def test_new_builtins_compile_and_verify(name: str) -> None:
    loss = compiled(f"input y: target\ninput p: real\n{ELEMENTWISE_SPECS[name]}\n")
    assert loss.diagnostics == ()
    assert BUILTINS[name].calls.tensorflow in loss.python_source


@pytest.mark.parametrize("name", sorted(ELEMENTWISE_SPECS))
def test_new_builtins_keep_the_roles_of_their_argument(name: str) -> None:
    text = f"input y: onehot\ninput p: logits\nloss = mean(sum({name}(p) * y + p))\n"
    assert not [code for code in codes(text) if code.startswith("E")]
    bad = f"input y: target\ninput p: real\nloss = mean({name}(p, p))\n"
    assert codes(bad)[0].startswith("E2")


def test_pi_is_the_exact_constant() -> None:
    loss = compiled("input y: target\ninput p: real\nloss = mean(square(p - y) + log(2 * pi))\n")
    assert sympy.pi in loss.symbolic.result.atoms(sympy.NumberSymbol)
    assert r"\pi" in loss.latex


@pytest.mark.parametrize("name", ["lgamma", "digamma"])
def test_poles_reachable_with_a_witness_warn(name: str) -> None:
    assert diagnostics(f"input y: target\ninput p: real\nloss = mean({name}(p) * y)\n") == [
        f"W401 `{name}(p)` is not finite at p = 0, a pole"
    ]
    assert diagnostics(f"input y: nonneg\ninput p: real\nloss = mean({name}(y) * p)\n") == [
        f"W401 `{name}(y)` is not finite at y = 0, a pole"
    ]
    assert codes(f"input y: nonneg\ninput p: real\nloss = mean({name}(y + 1) * p)\n") == []


@pytest.mark.parametrize("name", ["lgamma", "digamma"])
def test_an_argument_always_at_a_pole_is_an_error(name: str) -> None:
    text = f"input y: target\ninput p: real\nloss = mean({name}(relu(-square(p))) + p)\n"
    failure = diagnostics(text)
    assert failure[0].startswith(f"E403 `{name}(relu(-square(p)))` is never finite")


def test_poles_between_witnesses_warn_as_unproven() -> None:
    # the ranges allow 0 (-0.5 to 1.5), but the values stay in (0.3, 0.7)
    text = (
        "input y: target\ninput p: real\n"
        "loss = mean(lgamma(sigmoid(p) - sigmoid(2 * p) + 0.5) * y)\n"
    )
    assert codes(text) == ["W402"]


def test_sign_has_no_gradient_path() -> None:
    failure = diagnostics("input y: target\ninput p: real\nloss = mean(sign(p) * y)\n")
    assert failure == [
        "E502 the loss has no gradient path to y_pred `p`: it occurs only inside `sign(...)`"
    ]


def test_ranges_of_the_new_rows() -> None:
    # erf is in (-1, 1), so 1 + erf is positive: no warning for its log
    assert codes("input y: target\ninput p: real\nloss = mean(log(1 + erf(p)) * y + p)\n") == []
    # erfc is in (0, 2): its log is finite too
    assert codes("input y: target\ninput p: real\nloss = mean(log(erfc(p)) * y + p)\n") == []
    # lgamma of a positive value is at least -0.1215: its sqrt after adding 1 is defined
    text = "input y: target\ninput p: nonneg\nloss = mean(sqrt(lgamma(p + 1) + 1) * y + p)\n"
    assert codes(text) == []
    # digamma increases past its last pole: digamma(p + 1) >= digamma(1) = -0.577
    text = "input y: target\ninput p: nonneg\nloss = mean(sqrt(digamma(p + 1) + 1) * y + p)\n"
    assert codes(text) == []
    text = "input y: target\ninput p: nonneg\nloss = mean(sqrt(digamma(p + 1)) * y + p)\n"
    assert codes(text) == ["E404"]
    assert codes("input y: target\ninput p: real\nloss = mean(log(sign(p)) * y + p)\n") == ["E402"]


def test_latex_and_spec_text_of_the_new_rows(capsys: pytest.CaptureFixture[str]) -> None:
    x = sympy.Symbol("x", real=True)
    for name in ("erf", "erfc", "lgamma", "digamma", "sign"):
        expr = BUILTINS[name].meaning((x,), sympy.S.Zero)
        assert "\\" in latex(expr)
    lgamma = BUILTINS["lgamma"].meaning((x,), sympy.S.Zero)
    assert latex(lgamma) == r"\ln\Gamma\left(x\right)"
    assert latex(BUILTINS["digamma"].meaning((x,), sympy.S.Zero)) == r"\psi\left(x\right)"


def test_explain_writes_the_new_builtins_as_the_spec_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "v2.loss"
    spec.write_text(
        "input y: target\ninput p: real\n"
        "loss = mean(lgamma(square(p) + 1) + digamma(square(p) + 1) + erf(p) + erfc(p)"
        " + sign(p) * p - y * p)\n",
        encoding="utf-8",
    )
    assert cli.main(["explain", str(spec)]) == 0
    out = capsys.readouterr().out
    for call in ("lgamma(", "digamma(", "erf(", "erfc(", "sign(p)"):
        assert call in out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_log_erfc_stays_finite_and_exact_for_large_arguments(dtype: str) -> None:
    loss = compiled("input y: target\ninput p: real\nloss = mean(-log(erfc(p)) * y + p)\n")
    assert "log_erfc_tail" in {step.rule for step in loss.symbolic.rewrites}
    points = [-3.0, 0.5, 7.9, 8.0, 8.1, 12.0, 30.0, 1e3]
    y = tf.ones((len(points), 1), dtype)
    p = tf.constant([[v] for v in points], dtype)
    with tf.GradientTape() as tape:
        tape.watch(p)
        value = loss.loss_class(reduction=None, dtype=dtype)(y, p)
    gradient = tape.gradient(value, p).numpy()[:, 0]
    with mpmath.workdps(40):
        exact = [float(-mpmath.log(mpmath.erfc(v)) + v) for v in points]
        slope = [
            float(
                2 * mpmath.exp(-(mpmath.mpf(v) ** 2)) / mpmath.sqrt(mpmath.pi) / mpmath.erfc(v) + 1
            )
            for v in points
        ]
    rtol = 1e-6 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(value.numpy(), exact, rtol=rtol)
    np.testing.assert_allclose(gradient, slope, rtol=10 * rtol)


# ---------------------------------------------------------------- the numeric interpreter

POINTS = (-2.5, -0.5, 0.5, 1.0, 3.0, 20.0)


@pytest.mark.parametrize(
    "name",
    sorted(
        name
        for name, row in BUILTINS.items()
        if row.role_rule is RoleRule.ELEMENTWISE and row.max_args == 1
    ),
)
def test_float64_and_exact_evaluation_of_each_row_agree(name: str) -> None:
    x = sympy.Dummy("x", real=True)
    meaning = BUILTINS[name].meaning((x,), sympy.S.Zero)
    values = np.array(POINTS)
    with np.errstate(invalid="ignore"):  # log of a negative: NaN in both
        floats = numeric.evaluate(meaning, {x: values}, numeric.FLOAT)
    with mpmath.workdps(30):
        exact = numeric.evaluate(
            meaning, {x: np.array([mpmath.mpf(v) for v in POINTS], dtype=object)}, numeric.EXACT
        )
        reference = np.array([float(v) for v in exact])
    np.testing.assert_allclose(floats, reference, rtol=1e-12, equal_nan=True)


def test_lgamma_is_log_abs_gamma_below_zero() -> None:
    x = sympy.Dummy("x", real=True)
    meaning = BUILTINS["lgamma"].meaning((x,), sympy.S.Zero)
    value = numeric.evaluate(meaning, {x: mpmath.mpf(-0.5)}, numeric.EXACT)
    assert float(value) == pytest.approx(np.log(2 * np.sqrt(np.pi)), rel=1e-15)


# ---------------------------------------------------------------- the docs


def test_the_readme_lists_every_builtin_and_constant() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    listed = readme.split("Built-ins: `")[1].split("`")[0].split()
    assert listed == list(BUILTINS)
    constants = readme.split("Built-ins: `")[1].split("\n\n")[0]
    for name in ("eps", "pi", "num_classes"):
        assert f"`{name}`" in constants
