"""Trains the distribution tests' classifier with a lossdsl spec under a tf.distribute strategy
and writes the final weights to an .npz file; test_distribution.py starts it and compares.

    python dist_worker.py mirrored OUT.npz      two logical CPUs, MirroredStrategy, `fit`
    python dist_worker.py multiworker OUT.npz   MultiWorkerMirroredStrategy from TF_CONFIG,
                                                a custom training loop (`strategy.run`); the
                                                chief (task 0) also saves OUT.keras

The same functions run in the test process under the default strategy as the reference.
Logical devices and the multi-worker strategy must exist before TensorFlow initialises its
runtime, so `main` sets them up before anything else touches a tensor.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf
from keras_harness import (
    BATCH,
    EPOCHS,
    LEARNING_RATE,
    WEIGHTED_SPARSE_CE,
    dense_classifier,
    make_dataset,
)

import lossdsl


def train_with_fit(strategy: tf.distribute.Strategy) -> keras.Model:
    """`fit` with the compiled loss, the model and optimizer created in the strategy's scope."""
    data = make_dataset()
    with strategy.scope():
        model = dense_classifier(None)
        model.compile(
            optimizer=keras.optimizers.SGD(LEARNING_RATE),
            loss=lossdsl.load(WEIGHTED_SPARSE_CE),
        )
    model.fit(
        data.features,
        data.labels,
        sample_weight=data.sample_weight,
        batch_size=BATCH,
        epochs=EPOCHS,
        shuffle=False,
        verbose=0,
    )
    return model


def train_with_custom_loop(strategy: tf.distribute.Strategy) -> keras.Model:
    """A custom loop: per-example losses (`reduction=None`) averaged over the global batch.

    Each input pipeline takes every n-th example, so the replicas' batches of a step together
    hold the same examples as one unshuffled global batch of a single process.
    """
    data = make_dataset()
    with strategy.scope():
        model = dense_classifier(None)
        optimizer = keras.optimizers.SGD(LEARNING_RATE)
    per_example_loss = lossdsl.load(WEIGHTED_SPARSE_CE, reduction=None)

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        examples = tf.data.Dataset.from_tensor_slices(
            (data.features, data.labels, data.sample_weight)
        )
        examples = examples.shard(context.num_input_pipelines, context.input_pipeline_id)
        return examples.batch(context.get_per_replica_batch_size(BATCH))

    batches = strategy.distribute_datasets_from_function(dataset_fn)

    def replica_step(features: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            losses = per_example_loss(labels, model(features, training=True), weights)
            loss = tf.nn.compute_average_loss(losses, global_batch_size=BATCH)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss

    @tf.function
    def train_step(batch: tuple[tf.Tensor, ...]) -> tf.Tensor:
        losses = strategy.run(replica_step, args=batch)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    for _ in range(EPOCHS):
        for batch in batches:
            train_step(batch)
    return model


def main(argv: list[str]) -> int:
    mode, output = argv[1], argv[2]
    if mode == "mirrored":
        (cpu,) = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        strategy: tf.distribute.Strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        weights = train_with_fit(strategy).get_weights()
    else:
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING
        )
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        model = train_with_custom_loop(strategy)
        if strategy.cluster_resolver.task_id == 0:  # the chief saves; the others need not
            model.save(output.removesuffix(".npz") + ".keras")
        weights = model.get_weights()
    np.savez(output, *weights)
    print(json.dumps({"replicas": strategy.num_replicas_in_sync}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
