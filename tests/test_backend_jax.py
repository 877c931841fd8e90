"""JAX as a target: the verifier runs candidates with JAX's own autodiff, in float64."""

from __future__ import annotations

import pytest

jax = pytest.importorskip("jax")

import jax.numpy as jnp  # noqa: E402
from test_verify import EPS, FOCAL, codes  # noqa: E402

from lossdsl import runtime  # noqa: E402
from lossdsl.verification.driver import eager_function, verify_module  # noqa: E402


def focal_by_hand(y_true, y_pred, gamma, alpha):
    q = jnp.clip(y_pred, EPS, 1 - EPS)
    return jnp.sum(alpha * (1 - q) ** gamma * -y_true * jnp.log(q), axis=-1)


def test_a_correct_jax_function_passes_compiled_and_eagerly() -> None:
    compiled = runtime.untraced_copy(focal_by_hand, jit_compile=False, target="jax")
    assert eager_function(compiled, "jax") is focal_by_hand
    assert verify_module(FOCAL, compiled, "jax") == ()
    assert verify_module(FOCAL, focal_by_hand, "jax") == ()


def test_a_wrong_jax_gradient_is_E902_and_a_wrong_value_E901() -> None:
    def doubled_gradient(y_true, y_pred, gamma, alpha):
        value = focal_by_hand(y_true, y_pred, gamma, alpha)
        return 2.0 * value - jax.lax.stop_gradient(value)

    def halved(y_true, y_pred, gamma, alpha):
        return focal_by_hand(y_true, y_pred, gamma, alpha) / 2

    assert codes(verify_module(FOCAL, jax.jit(doubled_gradient), "jax")) == {"E902"}
    assert codes(verify_module(FOCAL, jax.jit(halved), "jax")) == {"E901", "E902"}


def test_a_raising_or_misshapen_jax_function_is_E903() -> None:
    def keeps_the_class_axis(y_true, y_pred, gamma, alpha):
        return focal_by_hand(y_true, y_pred, gamma, alpha)[..., None]

    def float32_only(y_true, y_pred, gamma, alpha):
        raise TypeError(f"got {y_pred.dtype}")

    (shaped,) = verify_module(FOCAL, jax.jit(keeps_the_class_axis), "jax")
    assert shaped.code == "E903" and "returned shape [3, 1], expected [3]" in shaped.message
    (raised,) = verify_module(FOCAL, float32_only, "jax")
    assert raised.code == "E903" and "TypeError: got float64" in raised.message


def test_verification_leaves_the_x64_flag_alone() -> None:
    verify_module(FOCAL, focal_by_hand, "jax")
    assert not jax.config.jax_enable_x64
    assert jnp.asarray(1.0).dtype == jnp.float32


def test_the_values_of_a_with_mask_function_are_verified() -> None:
    def with_mask(y_true, y_pred, gamma, alpha):
        values = focal_by_hand(y_true, y_pred, gamma, alpha)
        return values, jnp.ones_like(values, dtype=bool)

    values = runtime.untraced_values(with_mask, jit_compile=False, target="jax")
    assert verify_module(FOCAL, values, "jax") == ()
