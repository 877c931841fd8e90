"""PyTorch as a target: the verifier runs candidates with torch's autograd, in float64."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from test_verify import EPS, FOCAL, codes  # noqa: E402

from lossdsl import runtime  # noqa: E402
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
