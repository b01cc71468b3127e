"""rnnscan.rnn under tf.distribute.MirroredStrategy over 2 logical CPU devices, against one device.

Run by tests/test_distributed.py in a fresh process: the logical devices must be configured
before TensorFlow initialises its runtime. A custom training step (tf.function around
strategy.run) trains MirroredVariables; the same step trains plain variables on one device
on the whole batch. Prints one JSON line per check (common.report).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import assert_close, fresh_seed, report  # noqa: E402

import rnnscan  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

REPLICAS, B, T, D, U, STEPS, LR = 2, 8, 6, 5, 4, 3, 0.5
HALF = B // REPLICAS
rng = np.random.default_rng(fresh_seed())
INIT = {
    "w": (rng.standard_normal((D, 4 * U)) * 0.5).astype(np.float32),
    "u": (rng.standard_normal((U, 4 * U)) * 0.5).astype(np.float32),
    "b": (rng.standard_normal((4 * U,)) * 0.3).astype(np.float32),
    "h0": (rng.standard_normal((U,)) * 0.3).astype(np.float32),
}
DATA = [(rng.standard_normal((B, T, D)).astype(np.float32), rng.random((B, T)) > 0.3) for _ in range(STEPS)]


def make_variables() -> dict[str, tf.Variable]:
    # ONLY_FIRST_REPLICA: the update is computed from all-reduced gradients, the same on
    # every replica; a MirroredVariable assigned in a replica context needs an aggregation.
    return {k: tf.Variable(v, name=k, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA) for k, v in INIT.items()}


def per_sample_loss(variables: dict, x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """The LSTM-like step reads the weights, a variable, as a constant: the bias."""

    def step(x_t, states):
        (h, c), bias = states
        i, f, g, o = tf.split(x_t @ variables["w"] + h @ variables["u"] + bias, 4, axis=-1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        return h, [(h, c)]

    batch = tf.shape(x)[0]
    h0 = tf.tile(variables["h0"][None], [batch, 1])
    last, outputs, [(h, c)] = rnnscan.rnn(
        step, x, [(h0, tf.zeros([batch, U]))], mask=mask, go_backwards=True, constants=[variables["b"]]
    )
    return tf.reduce_mean(outputs**2, axis=[1, 2]) + tf.reduce_sum(last * c, -1) + tf.reduce_sum(tf.tanh(h), -1)


def grads_of(variables: dict, x, mask, global_batch: int):
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(per_sample_loss(variables, x, mask)) / global_batch
    names = sorted(variables)
    return loss, names, tape.gradient(loss, [variables[k] for k in names])


def train_mirrored() -> tuple[list[float], dict, dict]:
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == REPLICAS
    with strategy.scope():
        variables = make_variables()
    kinds = {type(v).__name__ for v in variables.values()}
    assert kinds == {"MirroredVariable"}, kinds

    def replica_step(x, mask):
        loss, names, grads = grads_of(variables, x, mask, B)
        grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
        for k, g in zip(names, grads):
            variables[k].assign_sub(LR * g)
        return loss

    @tf.function
    def train_step(x, mask):
        losses = strategy.run(replica_step, args=(x, mask))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    losses = []
    for x, mask in DATA:
        # Replica r gets samples [r * B / 2, (r + 1) * B / 2).
        xs = strategy.experimental_distribute_values_from_function(
            lambda ctx, x=x: tf.constant(x[ctx.replica_id_in_sync_group * HALF :][:HALF])
        )
        ms = strategy.experimental_distribute_values_from_function(
            lambda ctx, m=mask: tf.constant(m[ctx.replica_id_in_sync_group * HALF :][:HALF])
        )
        losses.append(float(train_step(xs, ms)))
    per_replica = {k: [t.numpy() for t in strategy.experimental_local_results(v)] for k, v in variables.items()}
    devices = {k: [t.device for t in strategy.experimental_local_results(v)] for k, v in variables.items()}
    return losses, per_replica, devices


def train_one_device() -> tuple[list[float], dict]:
    variables = make_variables()

    @tf.function
    def train_step(x, mask):
        loss, names, grads = grads_of(variables, x, mask, B)
        for k, g in zip(names, grads):
            variables[k].assign_sub(LR * g)
        return loss

    losses = [float(train_step(tf.constant(x), tf.constant(m))) for x, m in DATA]
    return losses, {k: v.numpy() for k, v in variables.items()}


def main() -> None:
    ref_losses, ref_vars = train_one_device()

    def check() -> dict:
        losses, per_replica, devices = train_mirrored()
        assert_close(np.array(losses), np.array(ref_losses), "losses")
        for k, ref in ref_vars.items():
            first, second = per_replica[k]
            assert_close(first, ref, f"variable {k}")
            assert np.array_equal(first, second), f"the replicas' copies of {k} differ"
            assert abs(ref - INIT[k]).max() > 1e-5, f"training should move {k} (its gradient reached it)"
            assert len(set(devices[k])) == REPLICAS, devices[k]
        return {"losses": losses, "reference_losses": ref_losses, "devices": devices["w"]}

    report("mirrored_strategy_matches_one_device", check)


if __name__ == "__main__":
    main()
