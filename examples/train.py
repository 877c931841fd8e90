"""Train a small Keras classifier with a lossdsl spec, save it, and reload it.

Usage: python examples/train.py [SPEC.loss]   (default: examples/weighted_ce.loss)

The spec's y_true must be `onehot` or `label` and its y_pred `prob` or `logits`; the
model ends in a softmax for `prob` and a plain Dense layer for `logits`.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import lossdsl

NUM_CLASSES = 3


def make_data(rng: np.random.Generator, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian blobs in 4 dimensions, the classes imbalanced 6:3:1."""
    labels = rng.choice(NUM_CLASSES, size=samples, p=[0.6, 0.3, 0.1])
    centres = rng.normal(size=(NUM_CLASSES, 4)) * 2.0
    features = centres[labels] + rng.normal(size=(samples, 4))
    return features.astype("float32"), labels


def main(argv: list[str]) -> int:
    spec_path = Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("weighted_ce.loss")
    compiled = lossdsl.compile_file(spec_path)
    kinds = {compiled.checked.y_true.kind, compiled.checked.y_pred.kind}
    rng = np.random.default_rng(0)
    features, labels = make_data(rng, 512)
    targets = labels if "label" in kinds else np.eye(NUM_CLASSES, dtype="float32")[labels]
    activation = "softmax" if "prob" in kinds else None

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=(4,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(NUM_CLASSES, activation=activation),
        ]
    )
    loss = lossdsl.load(spec_path)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    history = model.fit(features, targets, epochs=5, batch_size=64, verbose=0)
    for epoch, value in enumerate(history.history["loss"], start=1):
        print(f"epoch {epoch}: loss = {value:.4f}")

    with tempfile.TemporaryDirectory() as folder:
        saved = Path(folder) / "model.keras"
        model.save(saved)
        reloaded = keras.models.load_model(saved)
    same = np.allclose(model.predict(features, verbose=0), reloaded.predict(features, verbose=0))
    print(f"saved and reloaded without custom_objects: predictions identical = {same}")
    print(f"reloaded loss: {type(reloaded.loss).__name__} {reloaded.loss.get_config()['name']}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
