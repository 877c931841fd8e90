"""The Keras workflow on another backend, in a child process (Keras's backend is fixed when
it is first imported): load, weigh, train, save, and reload a model saved on TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

EXAMPLES = Path(__file__).parent.parent / "examples"
FOCAL_FILE = EXAMPLES / "focal.loss"

PADDED_LOG = """\
input y: label
input p: prob

mask y != -1
loss padded_log = mean(-sum(log(p)))
"""
"""A masked loss that overflows at a padded element (log(0)): the gradient there is 0."""
PADDED_LABELS = np.array([[1, -1]], dtype="int32")
PADDED_P = np.array([[[0.5, 0.5], [0.0, 1.0]]], dtype="float32")
PADDED_GRADIENT = np.array([[[-2.0, -2.0], [0.0, 0.0]]], dtype="float32")
"""The per-element losses' gradient: -1 / p inside the mask, 0 outside (not 0 * inf)."""
BROADCAST_Y_TRUE = [
    "input y: target\ninput p: real\nloss = mean(y * p)",
    "input y: target\ninput p: real\nloss = mean(-sum(y * log_softmax(p)))",
    "input y: target\ninput p: real\nloss = mean(-sum(y * (p - logsumexp(p))))",
    "input y: target\ninput p: real\nloss = mean(square(sum(y * (p - mean(p)))))",
]
"""Specs whose gradient sums or broadcasts y_true's class axis, which may have size 1 where
y_pred's has C (LANGUAGE.md 6.2): each backend's gradient with y_true of shape [batch, 1]
must equal the one with y_true broadcast to [batch, C] (test_channels.py for TensorFlow)."""
BROADCAST_Y = np.array([[2.0], [0.5]])
BROADCAST_P = np.array([[0.1, 0.2, 0.3], [1.0, 2.0, 3.0]])
Y = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype="float32")
P = np.array([[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]], dtype="float32")
SAMPLE_WEIGHT = np.array([1.0, 0.5], dtype="float32")

WORKFLOW = """
import json, sys
import numpy as np
import keras, lossdsl

y, p = np.array({y}, "float32"), np.array({p}, "float32")
loss = lossdsl.load({spec!r}, gamma=3.0)
value = float(keras.ops.convert_to_numpy(loss(y, p)))
weighted = float(keras.ops.convert_to_numpy(loss(y, p, sample_weight=np.array({weight}))))
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, activation="softmax")])
model.compile(optimizer="sgd", loss=loss)
x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
labels = np.eye(3, dtype="float32")[np.arange(8) % 3]
history = model.fit(x, labels, epochs=2, batch_size=4, verbose=0)
tensorflow = "tensorflow" in sys.modules  # Keras's saving imports it where installed
model.save({model!r})
saved_on_tensorflow = keras.models.load_model({tensorflow_model!r})
reloaded = float(keras.ops.convert_to_numpy(saved_on_tensorflow.loss(y, p)))
print(json.dumps({{
    "backend": keras.backend.backend(),
    "target": loss.target,
    "value": value,
    "weighted": weighted,
    "reloaded": reloaded,
    "reloaded_target": saved_on_tensorflow.loss.target,
    "losses": history.history["loss"],
    "tensorflow": tensorflow,
}}))
"""


def run_keras_workflow(backend: str, tensorflow_model: Path, folder: Path) -> dict[str, Any]:
    """Run `WORKFLOW` under `KERAS_BACKEND=backend`; its report, and the model it saved
    at `folder / "model.keras"`."""
    code = WORKFLOW.format(
        y=Y.tolist(),
        p=P.tolist(),
        weight=SAMPLE_WEIGHT.tolist(),
        spec=str(FOCAL_FILE),
        tensorflow_model=str(tensorflow_model),
        model=str(folder / "model.keras"),
    )
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=folder,
        env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def check_the_workflow_against_tensorflow(backend: str, folder: Path) -> None:
    """The workflow on `backend` gives TensorFlow's values, trains without TensorFlow;
    a model saved on TensorFlow reloads there, and its model reloads here on TensorFlow."""
    import keras

    import lossdsl

    tensorflow_loss = lossdsl.load(FOCAL_FILE, gamma=3.0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(loss=tensorflow_loss)
    model.save(folder / "tensorflow.keras")
    report = run_keras_workflow(backend, folder / "tensorflow.keras", folder)
    assert report["backend"] == report["target"] == report["reloaded_target"] == backend
    assert not report["tensorflow"]
    expected = float(tensorflow_loss(Y, P))
    weighted = float(tensorflow_loss(Y, P, sample_weight=SAMPLE_WEIGHT))
    assert report["value"] == approx(expected) and report["reloaded"] == approx(expected)
    assert report["weighted"] == approx(weighted)
    assert len(report["losses"]) == 2 and np.all(np.isfinite(report["losses"]))
    reloaded = keras.models.load_model(folder / "model.keras").loss
    assert reloaded.target == "tensorflow" and reloaded.params["gamma"] == 3.0
    assert float(reloaded(Y, P)) == approx(expected)


def approx(expected: float) -> Any:
    """Equal up to a few float32 ulps (the backends' logs and sums round differently)."""
    import pytest

    return pytest.approx(expected, rel=1e-6)
