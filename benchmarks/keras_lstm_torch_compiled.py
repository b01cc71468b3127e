"""The masked Keras 3 ``LSTM(64)`` train step with ``jit_compile=True`` on torch, alone in its process.

``benchmarks/keras_lstm.py`` runs this case after the eager ones, in one worker process per
Keras backend; there rnnscan's compiled step measures about Keras's. Alone in a fresh process
(this script: the same model, data and interleaving), it is the steady state of
``torch.compile`` on both sides. Prints the first calls and the median ms per step::

    python benchmarks/keras_lstm_torch_compiled.py --repeats 60
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ["KERAS_BACKEND"] = "torch"

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

import rnnscan.keras as rk  # noqa: E402

BATCH, TIME, FEATURES, UNITS, PADDED = 32, 100, 16, 64, 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=60, help="interleaved timed steps per side")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, TIME, FEATURES)).astype("float32")
    x[:, TIME - PADDED :] = 0.0
    y = rng.standard_normal((BATCH, 1)).astype("float32")

    def model() -> keras.Model:
        keras.utils.set_random_seed(1)
        m = keras.Sequential([keras.Input((TIME, FEATURES)), layers.Masking(), layers.LSTM(UNITS), layers.Dense(1)])
        m.compile(optimizer="adam", loss="mse", jit_compile=True)
        return m

    rk.disable()
    theirs = model()
    with rk.enabled():
        ours = model()
        ours.set_weights(theirs.get_weights())
    sides = {"keras": (theirs, False), "rnnscan": (ours, True)}
    times: dict[str, list[float]] = {side: [] for side in sides}
    for side, (m, on) in sides.items():
        (rk.enable if on else rk.disable)()
        start = time.perf_counter()
        for _ in range(3):
            m.train_on_batch(x, y)
        print(f"{side}: first 3 calls {time.perf_counter() - start:.1f} s")
    for r in range(args.repeats):
        for side in list(sides) if r % 2 == 0 else list(reversed(sides)):
            m, on = sides[side]
            (rk.enable if on else rk.disable)()
            start = time.perf_counter()
            m.train_on_batch(x, y)
            times[side].append(time.perf_counter() - start)
    rk.disable()
    keras_ms, ours_ms = (1e3 * statistics.median(times[side]) for side in sides)
    print(f"Keras {keras_ms:.1f} ms, rnnscan {ours_ms:.1f} ms per step: {keras_ms / ours_ms:.2f}x")


if __name__ == "__main__":
    main()
