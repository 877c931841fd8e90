"""A compiled loss under tf.distribute trains to the single-process weights: MirroredStrategy
over two logical CPUs with `fit`, MultiWorkerMirroredStrategy over two loopback workers with a
custom training loop (Keras's `fit` does not support it yet, keras-team/keras#20585)."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from dist_worker import train_with_custom_loop, train_with_fit
from keras_harness import (
    ROOT,
    TESTS,
    assert_weights_close,
    describe_failures,
    free_loopback_ports,
    last_json_line,
    run_python,
    run_workers,
    subprocess_env,
)

WORKER = TESTS / "dist_worker.py"
RECIPE_MARKER = "<!-- tests/test_distribution.py runs the next code block -->"
WORKER_TIMEOUT = 90.0


def saved_weights(path: Path) -> list[np.ndarray]:
    """The weights a worker wrote with `np.savez(path, *weights)`, in order."""
    with np.load(path) as archive:
        return [archive[f"arr_{i}"] for i in range(len(archive.files))]


@pytest.mark.slow
def test_mirrored_strategy_on_two_cpus_fits_like_one_device(tmp_path: Path) -> None:
    # The reference first: it also leaves the compiled spec in lossdsl's cache for the child.
    reference = train_with_fit(tf.distribute.get_strategy()).get_weights()
    output = tmp_path / "mirrored.npz"
    done = run_python(
        [str(WORKER), "mirrored", str(output)],
        cwd=tmp_path,
        timeout=WORKER_TIMEOUT,
    )
    assert last_json_line(done.stdout) == {"replicas": 2}
    assert_weights_close(saved_weights(output), reference)


def loopback_available() -> bool:
    """Whether this machine lets a process listen on 127.0.0.1 (some sandboxes do not)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
    except OSError:
        return False
    return True


@pytest.mark.slow
def test_multi_worker_custom_loop_trains_like_one_process(tmp_path: Path) -> None:
    if not loopback_available():
        pytest.skip("cannot bind a TCP port on 127.0.0.1, so no worker can listen")
    # The reference first: it also leaves the compiled spec in lossdsl's cache for the workers.
    reference = train_with_custom_loop(tf.distribute.get_strategy()).get_weights()
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_loopback_ports(2)]}
    outputs = [tmp_path / f"worker{index}.npz" for index in range(2)]
    results = run_workers(
        [[sys.executable, str(WORKER), "multiworker", str(output)] for output in outputs],
        [
            subprocess_env(
                TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
            )
            for i in range(2)
        ],
        cwd=tmp_path,
        timeout=WORKER_TIMEOUT,
    )
    assert all(result.returncode == 0 for result in results), describe_failures(results)
    assert [last_json_line(result.stdout) for result in results] == [{"replicas": 2}] * 2
    for output in outputs:
        assert_weights_close(saved_weights(output), reference)
    chief_saved = keras.models.load_model(tmp_path / "worker0.keras")
    assert_weights_close(chief_saved.get_weights(), reference)


def recipe_from_keras_md() -> str:
    """The code block that follows the marker comment in docs/KERAS.md."""
    text = (ROOT / "docs" / "KERAS.md").read_text(encoding="utf-8")
    after_marker = text.split(RECIPE_MARKER, 1)[1]
    return after_marker.split("```python\n", 1)[1].split("\n```", 1)[0]


@pytest.mark.slow
def test_keras_md_custom_loop_recipe_runs(tmp_path: Path) -> None:
    env = subprocess_env()
    env.pop("TF_CONFIG", None)  # one worker on its own, as the guide suggests for a try
    done = run_python(["-c", recipe_from_keras_md()], cwd=tmp_path, env=env)
    losses = [float(line.rsplit(" ", 1)[1]) for line in done.stdout.splitlines()]
    assert len(losses) == 3 and all(np.isfinite(losses)), done.stdout
    assert losses[-1] < losses[0]
