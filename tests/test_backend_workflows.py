"""More of the Keras workflow on JAX and PyTorch, each in a child process: masks and
reductions, class weights with `jit_compile`, mixed precision, and JAX's data parallelism
over CPU devices (`backend_harness` has loading, sample weights, saving and reloading)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

CHILD = """
import json
import numpy as np
import keras, lossdsl

examples = {examples!r}
report = {{"backend": keras.backend.backend()}}
rng = np.random.default_rng(0)
logits = rng.normal(size=(6, 3)).astype("float32")
labels = np.array([0, -1, 2, 1, -1, 2])
onehot = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2]]


def numbers(value):
    return keras.ops.convert_to_numpy(value).tolist()


ignore = f"{{examples}}/sparse_categorical_crossentropy_ignore.loss"
report["masked_mean"] = numbers(lossdsl.load(ignore)(labels, logits))
report["masked_none"] = numbers(lossdsl.load(ignore, reduction=None)(labels, logits))
focal = lossdsl.load(f"{{examples}}/focal.loss", reduction="sum")
report["focal_sum"] = numbers(focal(onehot, keras.ops.softmax(logits)))

x = rng.normal(size=(32, 4)).astype("float32")
targets = np.eye(3, dtype="float32")[rng.integers(0, 3, 32)]


def fitted(loss, **compile_options):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss=loss, **compile_options)
    return model


model = fitted(lossdsl.load(f"{{examples}}/categorical_crossentropy.loss"), jit_compile=True)
class_weight = {{0: 1.0, 1: 2.0, 2: 0.5}}
history = model.fit(x, targets, epochs=3, batch_size=8, verbose=0, class_weight=class_weight)
report["class_weight_losses"] = history.history["loss"]

keras.mixed_precision.set_global_policy("mixed_float16")
model = fitted(lossdsl.load(f"{{examples}}/weighted_ce.loss"))
report["mixed_losses"] = model.fit(x, targets, epochs=2, batch_size=8, verbose=0).history["loss"]
report["mixed_dtype"] = str(keras.ops.convert_to_numpy(model(x[:2])).dtype)
keras.mixed_precision.set_global_policy("float32")

if keras.backend.backend() == "jax":
    devices = keras.distribution.list_devices("cpu")
    report["devices"] = len(devices)
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    model = fitted(lossdsl.load(f"{{examples}}/focal.loss"))
    history = model.fit(x, targets, epochs=2, batch_size=8, verbose=0)
    report["distributed_losses"] = history.history["loss"]
print(json.dumps(report))
"""


def run_child(backend: str, folder: Path) -> dict[str, Any]:
    """The child's report, under `KERAS_BACKEND=backend` (JAX with two CPU devices)."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(examples=str(EXAMPLES))],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=folder,
        env={
            **os.environ,
            "KERAS_BACKEND": backend,
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        },
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def tensorflow_values() -> dict[str, Any]:
    """What the child computes before training, on TensorFlow (this process's backend)."""
    import keras

    import lossdsl

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 3)).astype("float32")
    labels = np.array([0, -1, 2, 1, -1, 2])
    onehot = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2]]
    ignore = EXAMPLES / "sparse_categorical_crossentropy_ignore.loss"
    focal = lossdsl.load(EXAMPLES / "focal.loss", reduction="sum")
    return {
        "masked_mean": float(lossdsl.load(ignore)(labels, logits)),
        "masked_none": np.asarray(lossdsl.load(ignore, reduction=None)(labels, logits)),
        "focal_sum": float(focal(onehot, keras.ops.softmax(logits))),
    }


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_masks_reductions_class_weights_mixed_precision_and_distribution(
    backend: str, tmp_path: Path
) -> None:
    pytest.importorskip(backend)
    report = run_child(backend, tmp_path)
    expected = tensorflow_values()
    assert report["backend"] == backend
    assert report["masked_mean"] == pytest.approx(expected["masked_mean"], rel=1e-6)
    np.testing.assert_allclose(report["masked_none"], expected["masked_none"], rtol=1e-6)
    assert report["masked_none"][1] == report["masked_none"][4] == 0.0  # the label -1
    assert report["focal_sum"] == pytest.approx(expected["focal_sum"], rel=1e-6)
    losses = report["class_weight_losses"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert report["mixed_dtype"] == "float16" and np.all(np.isfinite(report["mixed_losses"]))
    if backend == "jax":
        assert report["devices"] == 2 and np.all(np.isfinite(report["distributed_losses"]))
