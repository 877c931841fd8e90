"""JAX as a target: verification with JAX's own autodiff, the native function, the Keras
workflow under `KERAS_BACKEND=jax`."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import jax.numpy as jnp  # noqa: E402
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
from lossdsl import cache, cli, runtime  # noqa: E402
from lossdsl.compiler import compile_source  # noqa: E402
from lossdsl.source import SourceFile  # noqa: E402
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


# ---------------------------------------------------------------- generated JAX modules


def test_a_spec_compiles_verified_for_jax_and_agrees_with_tensorflow() -> None:
    on_jax = lossdsl.compile_file(FOCAL_FILE, target="jax")
    on_tensorflow = lossdsl.compile_file(FOCAL_FILE, target="tensorflow")
    assert on_jax.target == "jax" and "import tensorflow" not in on_jax.python_source
    values = on_jax.per_sample_function(Y, P, gamma=3.0)
    expected = on_tensorflow.per_sample_function(Y, P, gamma=3.0).numpy()
    np.testing.assert_allclose(np.asarray(values), expected, rtol=1e-6)


def test_load_for_jax_gives_the_function_with_its_params_bound() -> None:
    loss = lossdsl.load(FOCAL_FILE, framework="jax", gamma=3.0)
    assert isinstance(loss, functools.partial) and loss.keywords == {"gamma": 3.0, "alpha": 0.25}
    expected = lossdsl.compile_file(FOCAL_FILE).per_sample_function(Y, P, gamma=3.0).numpy()
    np.testing.assert_allclose(np.asarray(jax.jit(loss)(Y, P)), expected, rtol=1e-6)
    gradient = jax.grad(lambda p: jnp.mean(loss(Y, p)))(P)
    assert gradient.shape == P.shape and bool(jnp.all(jnp.isfinite(gradient)))
    with pytest.raises(ValueError, match="Did you mean `gamma`"):
        lossdsl.load(FOCAL_FILE, framework="jax", gamma_=3.0)


def test_a_padded_element_whose_loss_overflows_gets_a_zero_gradient() -> None:
    loss = compile_source(SourceFile.from_text(PADDED_LOG), target="jax").per_sample_function
    gradient = jax.grad(lambda p: jnp.sum(loss(PADDED_LABELS, p)))(jnp.asarray(PADDED_P))
    np.testing.assert_array_equal(np.asarray(gradient), PADDED_GRADIENT)


def test_a_jax_module_keras_class_needs_keras_on_jax() -> None:
    compiled = lossdsl.compile_file(FOCAL_FILE, target="jax", verify=False)
    message = "generated for Keras's 'jax' backend, but Keras uses 'tensorflow'"
    with pytest.raises(lossdsl.BackendError, match=message):
        compiled.loss_class  # noqa: B018
    with pytest.raises(lossdsl.BackendError, match=message):
        lossdsl.SpecLoss(FOCAL_FILE.read_text(encoding="utf-8"), target="jax")


def test_the_command_line_compiles_and_checks_for_jax(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["compile", str(FOCAL_FILE), "--target", "jax", "--no-verify"]) == 0
    module = capsys.readouterr().out
    assert "import jax.numpy as jnp" in module and "tensorflow" not in module
    assert cli.main(["check", str(FOCAL_FILE), "--target", "jax"]) == 0


@pytest.mark.slow
def test_the_keras_workflow_on_jax_matches_tensorflow(tmp_path: Path) -> None:
    check_the_workflow_against_tensorflow("jax", tmp_path)


def test_a_jax_module_is_cached_on_disk_under_its_own_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOSSDSL_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cache, "_loaded", {})
    first = lossdsl.load(FOCAL_FILE, framework="jax", verify=False)
    (entry,) = tmp_path.glob("*.json")
    assert json.loads(entry.read_text(encoding="utf-8"))["target"] == "jax"
    monkeypatch.setattr(cache, "_loaded", {})

    def no_compiling(*args: object, **kwargs: object) -> None:
        raise AssertionError("the disk cache should have been used")

    monkeypatch.setattr(cache, "compile_spec", no_compiling)
    again = lossdsl.load(FOCAL_FILE, framework="jax", verify=False)
    np.testing.assert_array_equal(np.asarray(again(Y, P)), np.asarray(first(Y, P)))
