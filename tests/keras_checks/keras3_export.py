"""Keras 3 ``model.export()`` of recurrent layers on rnnscan, on the backend ``KERAS_BACKEND`` names
(one backend per process: Keras fixes it at import). Run by tests/test_keras_export.py.

A masked model (``Masking``, ``SimpleRNN``, ``GRU``) of variable length is exported in each format
the backend offers for serving, then served at two (batch, time) sizes and compared with the
model's own eager call on rnnscan. On torch the time length is fixed: Keras's ONNX export of a
variable-length input traces with TorchScript at length 1 (Keras's own loop fails the same way at
another length), and Keras runs a torch step as a Python loop, which ``torch.export`` unrolls.

Prints one JSON object: per format, the largest difference at each size and whether rnnscan's
loop ran (a spy on the adapter's calls).

    KERAS_BACKEND=torch python tests/keras_checks/keras3_export.py OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

import rnnscan.keras as rk

calls = {"n": 0}
_rnn = rk._rnn


def _spy(*args: Any, **kwargs: Any) -> Any:
    calls["n"] += 1
    return _rnn(*args, **kwargs)


rk._rnn = _spy  # count the adapter's calls of rnnscan.rnn
rk.enable()

import keras  # noqa: E402

D, U = 3, 4
TORCH_TIME = 6
SIZES = {"torch": ((2, TORCH_TIME), (3, TORCH_TIME))}.get(keras.backend.backend(), ((2, 5), (3, 9)))


def model() -> Any:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((TORCH_TIME if keras.backend.backend() == "torch" else None, D))
    masked = keras.layers.Masking(0.0)(inputs)
    sequences = keras.layers.SimpleRNN(U, return_sequences=True)(masked)
    return keras.Model(inputs, keras.layers.GRU(U)(sequences))


def data(rng: np.random.Generator, batch: int, time: int) -> np.ndarray:
    x = rng.normal(size=(batch, time, D)).astype("float32")
    x[1:, time - 2 :] = 0.0  # padding: masked steps
    return x


def served(backend: str, fmt: str, path: Path) -> Any:
    """The exported artifact as a function of a NumPy batch."""
    if fmt == "tf_saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        return lambda x: loaded.serve(tf.constant(x)).numpy()
    if fmt == "torch":
        import torch

        program = torch.export.load(str(path))
        return lambda x: program.module()(torch.as_tensor(x)).detach().numpy()
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path))
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    raise ValueError(fmt)


FORMATS = {"tensorflow": ("tf_saved_model", "onnx"), "jax": ("tf_saved_model",), "torch": ("onnx", "torch")}


def export(net: Any, fmt: str, path: Path) -> None:
    if fmt == "torch":  # a dynamic batch
        import torch

        net.export(str(path), format=fmt, verbose=False, dynamic_shapes=({0: torch.export.Dim("batch", min=2)},))
    else:
        net.export(str(path), format=fmt, verbose=False)


def main(out: Path) -> None:
    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    net = model()
    net(data(rng, *SIZES[0]))  # (Keras's torch export needs a model called once)
    found = {}
    for fmt in FORMATS[backend]:
        path = out / {"onnx": f"{backend}.onnx", "torch": f"{backend}.pt2"}.get(fmt, f"{backend}_saved_model")
        before = calls["n"]
        export(net, fmt, path)
        traced = calls["n"] > before
        serve, differences = served(backend, fmt, path), []
        for size in SIZES:
            x = data(rng, *size)
            expected = keras.ops.convert_to_numpy(net(x))
            got = serve(x)
            differences.append(float(np.abs(got - expected).max()) if got.shape == expected.shape else None)
        found[fmt] = {"rnnscan": traced, "max_difference": differences}
    print(json.dumps(found))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main(Path(sys.argv[1]))
