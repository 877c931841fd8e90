"""Tests for `lossdsl plot`: the PNG, the sweeps chosen per input kind, and the error exits."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lossdsl.cli import EXIT_SPEC_ERROR, EXIT_USAGE, MISSING_MATPLOTLIB, add_plot_parser, run_plot
from lossdsl.plot import sweep_for
from lossdsl.verification.driver import ClassCounts

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SQUARED_ERROR = "input y: target\ninput p: real\nloss = mean(square(p - y))\n"
BINARY_CE = "input y: binary\ninput z: logits\nloss = mean(softplus(z) - y * z)\n"


def plot_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lossdsl")
    add_plot_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["plot", *argv])


def write_spec(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.loss"
    path.write_text(text, encoding="utf-8")
    return path


def test_writes_a_png_beside_another_spec(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    first = write_spec(tmp_path, "squared", SQUARED_ERROR)
    second = write_spec(tmp_path, "bce", BINARY_CE)
    output = tmp_path / "out.png"
    assert run_plot(plot_args(str(first), "--vs", str(second), "-o", str(output))) == 0
    assert output.read_bytes().startswith(PNG_MAGIC)


def test_command_line_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    from lossdsl.cli import main

    spec = write_spec(tmp_path, "squared", SQUARED_ERROR)
    monkeypatch.chdir(tmp_path)
    assert main(["plot", str(spec)]) == 0
    assert (tmp_path / "squared.png").read_bytes().startswith(PNG_MAGIC)


GAUSSIAN_NLL = (
    "input y: target\ninput p: real\nloss = mean(0.5 * (p[1] + square(y[0] - p[0]) * exp(-p[1])))\n"
)
SLICED_CE = (
    "input y: label\ninput z: logits\nloss = mean(-log(sum(onehot(y) * softmax(z[..., 0:3]))))\n"
)
WEIGHT_CHANNEL = "input y: target\ninput p: real\nloss = mean(y[1] * square(p[0] - y[0]))\n"
WEIGHTED_SOFT_LABELS = (
    "input y: onehot\ninput z: logits\nloss = mean(-y[-1] * sum(y[0:-1] * log_softmax(z)))\n"
)


@pytest.mark.parametrize("text", [GAUSSIAN_NLL, SLICED_CE, WEIGHT_CHANNEL, WEIGHTED_SOFT_LABELS])
def test_a_spec_that_selects_channels_is_plotted(tmp_path: Path, text: str) -> None:
    """The sweep gives y_pred and y_true the channels the spec selects (`with_channels`,
    the class count a slice must match): it gave them one column, and the module's
    channel check stopped the plot with an internal error (exit 70)."""
    pytest.importorskip("matplotlib")
    spec = write_spec(tmp_path, "channels", text)
    output = tmp_path / "channels.png"
    assert run_plot(plot_args(str(spec), "-o", str(output))) == 0
    assert output.read_bytes().startswith(PNG_MAGIC)


def test_a_regression_sweep_over_channels_moves_the_first() -> None:
    tf = pytest.importorskip("tensorflow")
    counts = ClassCounts(fewest=2, true_classes=2)
    sweep = sweep_for(fake_spec("target", "real"), counts)
    assert sweep.x_label.endswith("channel 0 (y_pred's others 0, y_true's 1)")
    curve = sweep.curves[0]
    rows = curve.build(tf.constant(sweep.x)).numpy()
    np.testing.assert_allclose(rows[:, 0], sweep.x + 0.5)
    np.testing.assert_allclose(rows[:, 1], 0.0)
    np.testing.assert_allclose(curve.y_true, [[0.5, 1.0]] * len(sweep.x))


def test_missing_matplotlib_is_a_message_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, "squared", SQUARED_ERROR)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    assert run_plot(plot_args(str(spec), "-o", str(tmp_path / "x.png"))) == EXIT_SPEC_ERROR
    assert capsys.readouterr().err.strip() == MISSING_MATPLOTLIB
    assert "pip install 'lossdsl[plot]'" in MISSING_MATPLOTLIB
    assert not (tmp_path / "x.png").exists()


def test_missing_spec_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_plot(plot_args(str(tmp_path / "nope.loss"))) == EXIT_USAGE
    assert "cannot read" in capsys.readouterr().err


def test_bad_spec_exits_1_with_its_diagnostic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    spec = write_spec(tmp_path, "bad", "loss = mean(lg(p))\n")
    assert run_plot(plot_args(str(spec))) == EXIT_SPEC_ERROR
    assert "E201" in capsys.readouterr().err


def fake_spec(truth: str, prediction: str, **params: object) -> SimpleNamespace:
    checked = SimpleNamespace(
        y_true=SimpleNamespace(kind=truth), y_pred=SimpleNamespace(kind=prediction)
    )
    return SimpleNamespace(checked=checked, params=params)


@pytest.mark.parametrize(
    ("truth", "prediction", "x_label", "labels"),
    [
        ("binary", "prob", "y_pred (probability)", ["y = 0", "y = 1"]),
        ("binary", "logits", "y_pred (logit)", ["y = 0", "y = 1"]),
        (
            "onehot",
            "prob",
            "the true class's probability",
            ["classes = 2", "classes = 3", "classes = 5"],
        ),
        ("target", "real", "y_pred - y_true", ["y = 0.5", "y = 1", "y = 2"]),
    ],
)
def test_sweep_follows_the_kinds(
    truth: str, prediction: str, x_label: str, labels: list[str]
) -> None:
    sweep = sweep_for(fake_spec(truth, prediction))
    assert sweep.x_label == x_label
    assert [curve.label for curve in sweep.curves] == labels


def test_categorical_sweep_builds_rows_on_the_simplex() -> None:
    tf = pytest.importorskip("tensorflow")
    sweep = sweep_for(fake_spec("label", "prob", w=(1.0, 2.0, 3.0, 4.0)))
    assert [curve.label for curve in sweep.curves] == [f"true class = {c}" for c in range(4)]
    curve = sweep.curves[2]
    rows = curve.build(tf.constant(sweep.x)).numpy()
    assert rows.shape == (len(sweep.x), 4)
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(rows[:, 2], sweep.x)
    assert curve.y_true.tolist() == [2] * len(sweep.x)


def test_the_command_prints_nothing_but_the_file_it_wrote(tmp_path: Path) -> None:
    """No TensorFlow start-up lines and no retracing warnings (one trace per curve's size)."""
    pytest.importorskip("matplotlib")
    from keras_harness import run_python, subprocess_env

    env = subprocess_env()
    del env["TF_CPP_MIN_LOG_LEVEL"]  # as a user's shell has it
    spec = Path(__file__).resolve().parents[1] / "examples" / "focal.loss"
    done = run_python(
        ["-m", "lossdsl", "plot", str(spec), "-o", "focal.png"], cwd=tmp_path, env=env
    )
    assert (done.stdout, done.stderr) == ("wrote focal.png\n", "")
    assert (tmp_path / "focal.png").read_bytes().startswith(PNG_MAGIC)
