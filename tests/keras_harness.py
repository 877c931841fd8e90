"""Shared helpers for the Keras integration tests: the specs several modules use, data,
models with fixed weights, training, and subprocesses (a fresh Python, worker pairs on
loopback ports); what is compared, and against which Keras built-in, is each test's."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent

FEATURES = 4
CLASSES = 3
SAMPLES = 64
BATCH = 16
EPOCHS = 3
LEARNING_RATE = 0.1

# Training runs that compute the same thing in a different order (another loss formula, two
# devices, XLA) drift apart by float32 rounding, amplified a little by a few SGD steps.
WEIGHT_RTOL = 1e-5
WEIGHT_ATOL = 1e-6


# Specs shared by several test modules: the same text compiles once per test process.
CATEGORICAL_CE = """
input y: onehot
input p: prob
loss categorical_ce = mean(-sum(y * log(clip(p))))
"""

SPARSE_CE_FROM_LOGITS = """
input y: label
input p: logits
loss sparse_ce = mean(-sum(onehot(y) * log_softmax(p)))
"""

BINARY_CE = """
input y: binary
input p: prob
loss binary_ce = mean(-(y * log(clip(p)) + (1 - y) * log(1 - clip(p))))
"""

MEAN_SQUARED_ERROR = """
input y: target
input p: real
loss mse = mean(square(p - y))
"""

FOCAL = """
# Categorical focal loss (Lin et al., 2017).
input y: onehot
input p: prob

param gamma: nonneg = 2.0
param alpha: unit = 0.25

let q = clip(p)
let ce = -y * log(q)
loss focal = mean(sum(alpha * (1 - q)^gamma * ce))
"""

WEIGHTED_SPARSE_CE = """
input y: label
input p: logits
param w: nonneg = [1.0, 2.5, 4.0]
loss weighted_ce = mean(w[class(y)] * -sum(onehot(y) * log_softmax(p)))
"""

MASKED_SPARSE_CE = """
input y: label
input p: logits
mask y != -1
loss masked_ce = mean(-sum(onehot(y) * log_softmax(p)))
"""

MASKED_SPARSE_CE_PER_SAMPLE = """
input y: label
input p: logits
mask y != -1
loss masked_ce_per_sample = -sum(onehot(y) * log_softmax(p))
"""


@dataclass(frozen=True)
class Dataset:
    """Inputs, the three target encodings of the same classes, and per-sample weights."""

    features: np.ndarray  # [N, ...] float32
    labels: np.ndarray  # [N, ...] int32, class ids
    onehot: np.ndarray  # [N, ..., C] float32
    real: np.ndarray  # [N, ..., C] float32, regression targets
    sample_weight: np.ndarray  # [N, ...] float32, > 0


def make_dataset(feature_shape: Sequence[int] = (FEATURES,), seed: int = 0) -> Dataset:
    """Blobs with one class per element: [N, F] for a classifier, [N, T, F] for a sequence,
    [N, H, W, F] for a segmentation net (the class of an element depends on its features)."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(SAMPLES, *feature_shape)).astype("float32")
    directions = rng.normal(size=(feature_shape[-1], CLASSES))
    scores = features @ directions + 0.5 * rng.normal(size=(*features.shape[:-1], CLASSES))
    labels = np.argmax(scores, axis=-1).astype("int32")
    onehot = np.eye(CLASSES, dtype="float32")[labels]
    real = (scores / 2.0).astype("float32")
    sample_weight = rng.uniform(0.2, 2.0, size=labels.shape).astype("float32")
    return Dataset(features, labels, onehot, real, sample_weight)


def set_fixed_weights(model: keras.Model, seed: int = 1) -> keras.Model:
    """Overwrite every weight with values drawn from `seed`, the same in every process."""
    rng = np.random.default_rng(seed)
    model.set_weights(
        [rng.normal(scale=0.5, size=w.shape).astype(w.dtype) for w in model.get_weights()]
    )
    return model


def dense_classifier(
    activation: str | None = "softmax", feature_shape: Sequence[int] = (FEATURES,)
) -> keras.Model:
    """One Dense layer over the last axis ([N, F] or [N, T, F] inputs), fixed weights."""
    model = keras.Sequential(
        [
            keras.Input(shape=tuple(feature_shape)),
            keras.layers.Dense(CLASSES, activation=activation),
        ]
    )
    return set_fixed_weights(model)


def segmentation_net(activation: str | None = "softmax", size: int = 6) -> keras.Model:
    """A 3x3 convolution giving per-pixel classes, [N, H, W, C], fixed weights."""
    model = keras.Sequential(
        [
            keras.Input(shape=(size, size, FEATURES)),
            keras.layers.Conv2D(CLASSES, 3, padding="same", activation=activation),
        ]
    )
    return set_fixed_weights(model)


def train(
    model: keras.Model,
    loss: keras.losses.Loss,
    features: np.ndarray,
    targets: np.ndarray,
    *,
    epochs: int = EPOCHS,
    jit_compile: bool = False,
    **fit_arguments: object,
) -> tuple[list[np.ndarray], list[float]]:
    """Plain SGD without shuffling, so two runs see the same batches; weights and epoch losses."""
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), loss=loss, jit_compile=jit_compile)
    history = model.fit(
        features,
        targets,
        epochs=epochs,
        batch_size=BATCH,
        shuffle=False,
        verbose=0,
        **fit_arguments,
    )
    return model.get_weights(), [float(v) for v in history.history["loss"]]


def assert_weights_close(actual: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> None:
    """Every weight tensor agrees within float32 rounding (and training did move them)."""
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL)


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python: quiet TensorFlow, this checkout importable."""
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), str(TESTS), *filter(None, [env.get("PYTHONPATH", "")])]
    )
    env.update(extra)
    return env


def run_python(
    arguments: Sequence[str], *, cwd: Path, timeout: float = 90.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python ARGUMENTS...` (`["-c", code]` or a script) in a fresh interpreter; fail the
    test with the child's stderr if it fails."""
    done = subprocess.run(
        [sys.executable, *arguments],
        cwd=cwd,
        env=env or subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"child python failed ({done.returncode}):\n{done.stderr[-4000:]}"
    return done


def last_json_line(output: str) -> dict[str, object]:
    """The last line of a child's stdout, parsed as JSON (the child prints its results last)."""
    return json.loads(output.strip().splitlines()[-1])


def free_loopback_ports(count: int) -> list[int]:
    """Ports the kernel reports free on 127.0.0.1 (bound to port 0, then released)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass(frozen=True)
class WorkerResult:
    """What one worker process left behind."""

    returncode: int
    stdout: str
    stderr: str


def run_workers(
    commands: Sequence[Sequence[str]],
    envs: Sequence[dict[str, str]],
    *,
    cwd: Path,
    timeout: float = 90.0,
) -> list[WorkerResult]:
    """Start the workers together and wait for all of them within `timeout` seconds.

    A worker that fails would leave the others blocked in a collective forever, so as soon
    as one exits non-zero, or the time is up, every worker still running is killed (by its
    own process id). Output goes to files, so a chatty worker cannot fill a pipe and stall.
    """
    logs = [(cwd / f"worker{i}.out", cwd / f"worker{i}.err") for i in range(len(commands))]
    processes: list[subprocess.Popen[bytes]] = []
    handles = []
    try:
        for command, env, (out_path, err_path) in zip(commands, envs, logs, strict=True):
            out, err = out_path.open("wb"), err_path.open("wb")
            handles += [out, err]
            processes.append(
                subprocess.Popen(list(command), cwd=cwd, env=env, stdout=out, stderr=err)
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            codes = [process.poll() for process in processes]
            if all(code is not None for code in codes) or any(code for code in codes):
                break
            time.sleep(0.1)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
        for handle in handles:
            handle.close()
    return [
        WorkerResult(
            process.returncode,
            out_path.read_text(errors="replace"),
            err_path.read_text(errors="replace"),
        )
        for process, (out_path, err_path) in zip(processes, logs, strict=True)
    ]


def describe_failures(results: Sequence[WorkerResult]) -> str:
    """Each worker's exit status and the tail of its stderr, for an assertion message."""
    return "\n".join(
        f"--- worker {i} exited {r.returncode}:\n{r.stderr[-3000:]}" for i, r in enumerate(results)
    )
