"""PyTorch as a target: verification with torch's autograd, the `torch.nn.Module`, the
Keras workflow under `KERAS_BACKEND=torch`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from backend_harness import (  # noqa: E402
    FOCAL_FILE,
    PADDED_GRADIENT,
    PADDED_LABELS,
    PADDED_LOG,
    PADDED_P,
    P,
    Y,
    check_the_workflow_against_tensorflow,
)
from test_verify import EPS, FOCAL, codes  # noqa: E402

import lossdsl  # noqa: E402
from lossdsl import cli, runtime  # noqa: E402
from lossdsl.compiler import compile_source  # noqa: E402
from lossdsl.source import SourceFile  # noqa: E402
from lossdsl.verification.driver import eager_function, verify_module  # noqa: E402


def focal_by_hand(y_true, y_pred, gamma, alpha):
    q = torch.clamp(y_pred, EPS, 1 - EPS)
    return torch.sum(alpha * (1 - q) ** gamma * -y_true * torch.log(q), dim=-1)


def test_a_correct_torch_function_passes() -> None:
    compiled = runtime.untraced_copy(focal_by_hand, jit_compile=False, target="torch")
    assert compiled is focal_by_hand and eager_function(compiled, "torch") is focal_by_hand
    assert verify_module(FOCAL, focal_by_hand, "torch") == ()


def test_a_wrong_torch_gradient_is_E902_and_a_wrong_value_E901() -> None:
    def doubled_gradient(y_true, y_pred, gamma, alpha):
        value = focal_by_hand(y_true, y_pred, gamma, alpha)
        return 2.0 * value - value.detach()

    def halved(y_true, y_pred, gamma, alpha):
        return focal_by_hand(y_true, y_pred, gamma, alpha) / 2

    assert codes(verify_module(FOCAL, doubled_gradient, "torch")) == {"E902"}
    assert codes(verify_module(FOCAL, halved, "torch")) == {"E901", "E902"}


def test_a_raising_or_misshapen_torch_function_is_E903() -> None:
    def keeps_the_class_axis(y_true, y_pred, gamma, alpha):
        return focal_by_hand(y_true, y_pred, gamma, alpha)[..., None]

    def float32_only(y_true, y_pred, gamma, alpha):
        raise TypeError(f"got {y_pred.dtype}")

    (shaped,) = verify_module(FOCAL, keeps_the_class_axis, "torch")
    assert shaped.code == "E903" and "returned shape [3, 1], expected [3]" in shaped.message
    (raised,) = verify_module(FOCAL, float32_only, "torch")
    assert raised.code == "E903" and "TypeError: got torch.float64" in raised.message


def test_a_result_without_y_pred_has_a_zero_gradient() -> None:
    def constant(y_true, y_pred, gamma, alpha):
        return torch.zeros(y_pred.shape[:-1], dtype=torch.float64)

    (value_error, gradient_error) = verify_module(FOCAL, constant, "torch")
    assert "the generated code 0" in gradient_error.help[0]
    assert value_error.code == "E901"


# ---------------------------------------------------------------- generated PyTorch modules


def test_a_spec_compiles_verified_for_torch_and_agrees_with_tensorflow() -> None:
    on_torch = lossdsl.compile_file(FOCAL_FILE, target="torch")
    on_tensorflow = lossdsl.compile_file(FOCAL_FILE, target="tensorflow")
    assert on_torch.target == "torch" and "import tensorflow" not in on_torch.python_source
    values = on_torch.per_sample_function(torch.tensor(Y), torch.tensor(P), gamma=3.0)
    expected = on_tensorflow.per_sample_function(Y, P, gamma=3.0).numpy()
    np.testing.assert_allclose(values.numpy(), expected, rtol=1e-6)


def test_load_for_torch_gives_the_module_with_torch_reductions() -> None:
    expected = lossdsl.compile_file(FOCAL_FILE).per_sample_function(Y, P, gamma=3.0).numpy()
    y_true, y_pred = torch.tensor(Y), torch.tensor(P, requires_grad=True)
    loss = lossdsl.load(FOCAL_FILE, framework="torch", gamma=3.0)
    assert isinstance(loss, torch.nn.Module) and loss.reduction == "mean" and loss.gamma == 3.0
    value = loss(y_pred, y_true)
    np.testing.assert_allclose(value.item(), expected.mean(), rtol=1e-6)
    value.backward()
    assert y_pred.grad is not None and bool(torch.all(torch.isfinite(y_pred.grad)))
    summed = lossdsl.load(FOCAL_FILE, framework="torch", reduction="sum", gamma=3.0)
    np.testing.assert_allclose(summed(y_pred, y_true).item(), expected.sum(), rtol=1e-6)
    unreduced = lossdsl.load(FOCAL_FILE, framework="torch", reduction=None, gamma=3.0)
    np.testing.assert_allclose(unreduced(y_pred, y_true).detach().numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="Invalid value for argument `gamma`"):
        lossdsl.load(FOCAL_FILE, framework="torch", gamma=-1.0)


def test_a_padded_element_whose_loss_overflows_gets_a_zero_gradient() -> None:
    loss = compile_source(SourceFile.from_text(PADDED_LOG), target="torch").per_sample_function
    p = torch.tensor(PADDED_P, requires_grad=True)
    torch.sum(loss(torch.tensor(PADDED_LABELS), p)).backward()
    np.testing.assert_array_equal(p.grad.numpy(), PADDED_GRADIENT)


@pytest.mark.parametrize(
    "text",
    [
        "input y: onehot\ninput p: prob\n"
        "loss = mean(where(2 >= 2 and p > 0.5, p, 1 - p) + where(num_classes == 3, 0.5, 0.25))\n",
        "input y: label\ninput z: logits\nmask 2 > 1\n"
        "loss = mean(-sum(onehot(y) * log_softmax(z)))\n",
        # sum(y) of one-hot rows is 1: the backward pass's condition is 1 < 2
        "input y: onehot\ninput p: real\nloss = mean(where(sum(y) < 2, p, -p))\n",
    ],
    ids=["select", "mask", "decided_by_the_rows"],
)
def test_a_condition_of_numbers_alone_is_a_tensor(text: str) -> None:
    """torch.where and torch.broadcast_to take no Python bool (found by fuzzing)."""
    compile_source(SourceFile.from_text(text), target="torch")  # verified: it ran


def test_a_torch_module_keras_class_needs_keras_on_torch() -> None:
    compiled = lossdsl.compile_file(FOCAL_FILE, target="torch", verify=False)
    message = "generated for Keras's 'torch' backend, but Keras uses 'tensorflow'"
    with pytest.raises(lossdsl.BackendError, match=message):
        compiled.loss_class  # noqa: B018


def test_the_command_line_compiles_and_checks_for_torch(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["compile", str(FOCAL_FILE), "--target", "torch", "--no-verify"]) == 0
    module = capsys.readouterr().out
    assert "import torch" in module and "tensorflow" not in module
    assert cli.main(["check", str(FOCAL_FILE), "--target", "torch"]) == 0


@pytest.mark.slow
def test_check_for_torch_runs_whatever_keras_backend_is_set(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lossdsl", "check", "--target", "torch", str(FOCAL_FILE)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.slow
def test_the_keras_workflow_on_torch_matches_tensorflow(tmp_path: Path) -> None:
    check_the_workflow_against_tensorflow("torch", tmp_path)
