"""Keras 3 on JAX, keras.distribution.DataParallel over 8 virtual CPU devices, rnnscan enabled:
``fit`` gives the single-device losses and weights.

Run by tests/test_distributed.py in a fresh process (the Keras backend and XLA's device
count are read once, at start). Prints one JSON line per check (common.report).
"""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from typing import Any  # noqa: E402

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from common import assert_close, fresh_seed, report  # noqa: E402
from keras import layers  # noqa: E402

import rnnscan.keras as rk  # noqa: E402

N, BATCH, T, D, EPOCHS = 48, 16, 7, 5, 2
calls = {"n": 0}
_rnn = rk._rnn


def _spy(*args: Any, **kwargs: Any) -> Any:
    calls["n"] += 1
    return _rnn(*args, **kwargs)


rk._rnn = _spy  # counts the adapter's calls of rnnscan.rnn (our own function; nothing of Keras is replaced)

seed = fresh_seed()
rng = np.random.default_rng(seed)
x = rng.standard_normal((N, T, D)).astype(np.float32)
x[rng.random((N, T)) < 0.3] = 0.0  # masked steps, for the Masking layer
y = rng.standard_normal((N, 1)).astype(np.float32)


def build() -> keras.Model:
    keras.utils.set_random_seed(seed % (1 << 30))
    model = keras.Sequential(
        [
            keras.Input((T, D)),
            layers.Masking(0.0),
            layers.LSTM(8, return_sequences=True, go_backwards=True),
            layers.GRU(4),
            layers.Dense(1),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def fit(model: keras.Model) -> list[float]:
    losses: list[float] = []
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: losses.append(logs["loss"]))
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[record])
    return losses


def check() -> dict:
    assert len(jax.devices()) == 8, jax.devices()
    rk.enable()
    single = build()
    initial = single.get_weights()
    before = calls["n"]
    ref_losses = fit(single)
    assert calls["n"] > before, "rnnscan.rnn did not run on one device"

    devices = keras.distribution.list_devices()
    distribution = keras.distribution.DataParallel(devices=devices)
    keras.distribution.set_distribution(distribution)
    try:
        layout = distribution.get_data_layout((BATCH, T, D))
        assert layout.axes[0] == distribution.batch_dim_name and layout.axes[1:] == (None, None), layout.axes
        model = build()
        model.set_weights(initial)
        before = calls["n"]
        losses = fit(model)
        assert calls["n"] > before, "rnnscan.rnn did not run under DataParallel"
        placed = {len(v.value.sharding.device_set) for v in model.weights}
        assert placed == {8}, f"weights on {placed} devices"
        weights = model.get_weights()
    finally:
        keras.distribution.set_distribution(None)
    assert len(losses) == len(ref_losses) == EPOCHS * N // BATCH
    assert_close(np.array(losses, np.float32), np.array(ref_losses, np.float32), "per-batch losses")
    for i, (w, r) in enumerate(zip(weights, single.get_weights())):
        assert_close(w, r, f"weight {i}")
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(weights, initial)) > 1e-3, "fit should move weights"
    return {"losses": losses, "reference_losses": ref_losses, "devices": len(devices)}


if __name__ == "__main__":
    report("keras_data_parallel_fit_matches_one_device", check)
