"""Keras 3's recurrent layers with rnnscan enabled against Keras's own loop, on the Keras backend of this process.

Run by tests/test_keras.py as ``KERAS_BACKEND=<name> python tests/keras_checks/keras3_checks.py OUT.pkl``
(Keras fixes its backend once per process). Every check runs the same layer, with the same weights and
inputs, once through rnnscan (``rnnscan.keras.enable()``) and once through Keras's loop, and compares
outputs and gradients (weights and inputs; the NumPy backend has no gradients). A spy on the adapter's
call of ``rnnscan.rnn`` proves each side ran the loop it claims.

Where Keras 3's own loop is known to be wrong on some backends, the check does not compare with Keras:
it saves the case (inputs, weights, both results) for the parent to compare with tf-keras. OUT.pkl holds
``{"backend", "keras", "results": [{"check", "ok", "error"}], "oracle": [case, ...]}``.
"""

from __future__ import annotations

import os
import pickle
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from keras import layers, ops  # noqa: E402

import rnnscan.keras as rk  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import known  # noqa: E402
from configs import CONFIGS, B, D, T, U, inputs, lengths_mask  # noqa: E402

BACKEND = keras.backend.backend()
RTOL, ATOL = 1e-5, 2e-6

calls = {"n": 0}
_rnn = rk._rnn


def _spy(*args: Any, **kwargs: Any) -> Any:
    calls["n"] += 1
    return _rnn(*args, **kwargs)


rk._rnn = _spy  # count the adapter's calls of rnnscan.rnn (our own function; nothing of Keras is replaced)


def npy(tree: Any) -> Any:
    return [np.asarray(ops.convert_to_numpy(t)) for t in keras.tree.flatten(tree)]


def tensor(a: Any) -> Any:
    return None if a is None else ops.convert_to_tensor(a)


def weight(shape: tuple[int, ...], index: int) -> np.ndarray:
    """The fixed random cotangent of output `index`."""
    return np.random.default_rng(1000 + index).standard_normal(shape).astype("float32")


# ---------------------------------------------------------------- forward and gradients, per backend


def run(
    obj: Any, x: np.ndarray, kwargs: dict[str, Any], grads: bool = True
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Outputs of ``obj(x, **kwargs)`` and the gradients of ``sum(out_i * w_i)`` by its weights and by x."""
    if BACKEND == "numpy" or not grads:
        return npy(obj(tensor(x), **kwargs)), []
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        trainable = [v.value for v in obj.trainable_variables]
        non_trainable = [v.value for v in obj.non_trainable_variables]

        def loss(tv: Any, xv: Any) -> Any:
            out, new_nt = obj.stateless_call(tv, non_trainable, xv, **kwargs)
            flat = keras.tree.flatten(out)
            total = sum(jnp.sum(o * weight(o.shape, i)) for i, o in enumerate(flat))
            return total, (flat, new_nt)

        grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
        (_, (flat, new_nt)), (g_tv, g_x) = grad(trainable, jnp.asarray(x))
        for v, value in zip(obj.non_trainable_variables, new_nt):
            v.assign(value)
        return npy(flat), npy([*g_tv, g_x])
    if BACKEND == "torch":
        import torch

        xt = torch.tensor(x, requires_grad=True)
        flat = keras.tree.flatten(obj(xt, **kwargs))
        total = sum((o * torch.as_tensor(weight(tuple(o.shape), i))).sum() for i, o in enumerate(flat))
        params = [v.value for v in obj.trainable_variables]
        grads = torch.autograd.grad(total, [*params, xt])
        return npy(flat), npy(list(grads))
    import tensorflow as tf

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        flat = keras.tree.flatten(obj(xt, **kwargs))
        total = sum(tf.reduce_sum(o * weight(tuple(o.shape), i)) for i, o in enumerate(flat))
    grads = tape.gradient(total, [*obj.trainable_variables, xt])
    return npy(flat), npy(grads)


def both(fn: Callable[[], Any]) -> tuple[Any, Any]:
    """``fn()`` with rnnscan enabled, then with Keras's loop; the spy checks which loop ran."""
    before = calls["n"]
    with rk.enabled():
        ours = fn()
    if calls["n"] == before:
        raise AssertionError("rnnscan.rnn was not called with rnnscan enabled")
    before = calls["n"]
    theirs = fn()
    if calls["n"] != before:
        raise AssertionError("rnnscan.rnn was called with rnnscan disabled")
    return ours, theirs


def close(ours: list[np.ndarray], theirs: list[np.ndarray], what: str) -> None:
    if len(ours) != len(theirs):
        raise AssertionError(f"{what}: {len(ours)} arrays against Keras's {len(theirs)}")
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a.shape != b.shape:
            raise AssertionError(f"{what}[{i}]: shape {a.shape} against Keras's {b.shape}")
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=f"{what}[{i}]")


# ---------------------------------------------------------------- the layers


class MinimalCell(layers.Layer):
    """A custom cell with two states: h (the output) and a running sum."""

    def __init__(self, units: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.state_size = [units, units]
        self.output_size = units

    def build(self, input_shape: Any) -> None:
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform")
        self.recurrent = self.add_weight(shape=(self.units, self.units), initializer="orthogonal")

    def call(self, inputs: Any, states: Any) -> Any:
        h = ops.tanh(ops.matmul(inputs, self.kernel) + ops.matmul(states[0], self.recurrent) + 0.1 * states[1])
        return h, [h, 0.5 * states[1] + h]


rnn_kwargs = known.rnn_kwargs


LAYERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "RNN(custom cell)": lambda c: layers.RNN(MinimalCell(U), **rnn_kwargs("RNN", c)),
    "SimpleRNN": lambda c: layers.SimpleRNN(U, **rnn_kwargs("SimpleRNN", c)),
    "LSTM": lambda c: layers.LSTM(U, use_cudnn=False, **rnn_kwargs("LSTM", c)),
    "GRU": lambda c: layers.GRU(U, use_cudnn=False, **rnn_kwargs("GRU", c)),
    "ConvLSTM1D": lambda c: layers.ConvLSTM1D(2, 2, padding="same", **rnn_kwargs("ConvLSTM", c)),
    "ConvLSTM2D": lambda c: layers.ConvLSTM2D(2, 2, padding="same", **rnn_kwargs("ConvLSTM", c)),
    "Bidirectional(LSTM)": lambda c: layers.Bidirectional(
        layers.LSTM(U, use_cudnn=False, **rnn_kwargs("Bidirectional", {**c, "go_backwards": False}))
    ),
    "RNN([LSTMCell(4), LSTMCell(3)])": lambda c: layers.RNN(
        [layers.LSTMCell(4), layers.LSTMCell(3)], **rnn_kwargs("RNN", c)
    ),
}
FEATURES = {"ConvLSTM1D": (5, 3), "ConvLSTM2D": (4, 4, 2)}  # per-step input shape (others: (D,))


def layer_check(name: str, cfg: dict[str, Any], rng: np.random.Generator, grads: bool = True) -> None:
    features = FEATURES.get(name, (D,))
    mask = None if cfg["mask"] is None else lengths_mask()
    x = inputs(rng, features, mask)
    keras.utils.set_random_seed(int(rng.integers(1 << 30)))
    layer = LAYERS[name](cfg)
    if cfg["mask"] == "Masking":
        inp = keras.Input((T, *features))
        obj = keras.Model(inp, layer(layers.Masking()(inp)))
        kwargs: dict[str, Any] = {}
    else:
        obj = layer
        kwargs = {} if mask is None else {"mask": tensor(mask)}
    with rk.enabled():
        obj(tensor(x), **kwargs)  # build
    bug = known.layer_bug(name, cfg, BACKEND)
    if bug is None:
        (out, g), (k_out, k_g) = both(lambda: run(obj, x, kwargs, grads))
        close(out, k_out, "outputs")
        close(g, k_g, "gradients")
        return

    def forward() -> Any:
        try:
            return npy(obj(tensor(x), **kwargs))
        except Exception as error:
            return f"{type(error).__name__}: {error}"

    ours, theirs = both(forward)
    if bug == known.CONV_MASK:
        # tf-keras's ConvLSTM cells compute otherwise than Keras 3's: the reference is Keras 3's own unrolled
        # loop (right here: no zero_output_for_mask), and Keras's scan must fail.
        twin = LAYERS[name]({**cfg, "unroll": True})
        twin(tensor(x), **kwargs)
        twin.set_weights(layer.get_weights())
        close(ours, npy(twin(tensor(x), **kwargs)), "outputs against Keras's unrolled loop")
        if not isinstance(theirs, str):
            raise AssertionError(f"Keras's masked ConvLSTM scan now runs ({bug!r}): compare with it again")
        return
    oracle.append(
        dict(
            case=bug,
            kind="layer",
            layer=name,
            config=cfg,
            weights=layer.get_weights(),
            x=x,
            mask=mask,
            masking=cfg["mask"] == "Masking",
            initial_state=None,
            rnnscan=ours,
            keras=theirs,
        )
    )


# ---------------------------------------------------------------- cases where Keras 3's loop is known wrong

oracle: list[dict[str, Any]] = []


def initial_state_case(name: str, rng: np.random.Generator) -> None:
    """Masked first steps after a nonzero initial state (Keras 3's jax and numpy loops repeat the state)."""
    cfg = dict(mask="explicit", go_backwards=False, return_sequences=True, return_state=True, unroll=False)
    mask = lengths_mask(left=True)
    x = inputs(rng, (D,), mask)
    keras.utils.set_random_seed(int(rng.integers(1 << 30)))
    layer = LAYERS[name](cfg)
    n_states = 2 if name == "LSTM" else 1
    states = [rng.standard_normal((B, U)).astype("float32") for _ in range(n_states)]
    kwargs = {"mask": tensor(mask), "initial_state": [tensor(s) for s in states]}
    ours, theirs = both(lambda: npy(layer(tensor(x), **kwargs)))
    oracle.append(
        dict(
            case=known.MASKED_FIRST_STEP,
            kind="layer",
            layer=name,
            config=cfg,
            weights=layer.get_weights(),
            x=x,
            mask=mask,
            masking=False,
            initial_state=states,
            rnnscan=ours,
            keras=theirs,
        )
    )


def stateful_model(left: bool, cudnn: Any = False) -> Any:
    inp = keras.Input(batch_shape=(B, T, D))
    return keras.Model(
        inp, layers.LSTM(U, stateful=True, return_sequences=True, use_cudnn=cudnn)(layers.Masking()(inp))
    )


def stateful_batches(rng: np.random.Generator, left: bool) -> list[np.ndarray]:
    return [inputs(rng, (D,), lengths_mask(left=left and i > 0)) for i in range(3)]


def stateful_check(rng: np.random.Generator) -> None:
    """A stateful LSTM over three batches (padding at the end only: Keras's loop is right)."""
    keras.utils.set_random_seed(int(rng.integers(1 << 30)))
    model = stateful_model(left=False)
    batches = stateful_batches(rng, left=False)

    def go() -> list[list[np.ndarray]]:
        model.layers[-1].reset_state()
        return [r for x in batches for r in run(model, x, {})]

    ours, theirs = both(go)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        close(a, b, f"batch {i // 2} {'gradients' if i % 2 else 'outputs'}")


def stateful_case(rng: np.random.Generator) -> None:
    """A stateful LSTM whose later batches start masked: the masked first step after a carried state."""
    keras.utils.set_random_seed(int(rng.integers(1 << 30)))
    model = stateful_model(left=True)
    batches = stateful_batches(rng, left=True)

    def go() -> list[np.ndarray]:
        model.layers[-1].reset_state()
        return [npy(model(tensor(x)))[0] for x in batches]

    ours, theirs = both(go)
    oracle.append(
        dict(
            case=known.MASKED_FIRST_STEP,
            kind="stateful",
            layer="LSTM",
            weights=model.layers[-1].get_weights(),
            batches=batches,
            rnnscan=ours,
            keras=theirs,
        )
    )


def direct_cases(rng: np.random.Generator) -> None:
    """``keras.src.backend.rnn`` called directly, on the arguments Keras 3's jax/numpy loops get wrong."""
    from keras.src import backend

    w = rng.standard_normal((D, U)).astype("float32") * 0.5
    u = rng.standard_normal((U, U)).astype("float32") * 0.5
    c = rng.standard_normal((U,)).astype("float32")
    x = rng.standard_normal((B, T, D)).astype("float32")
    h0 = rng.standard_normal((B, U)).astype("float32")
    mask = lengths_mask(left=True)
    lengths = np.array([T, 4, 2], np.int32)

    def step(double: bool) -> Callable[[Any, Any], Any]:
        def f(x_t: Any, states: Any) -> Any:
            h = ops.matmul(x_t, tensor(w)) + ops.matmul(states[0], tensor(u))
            if len(states) > 1:
                h = h + states[1]
            h = ops.tanh(h)
            return (2.0 * h if double else h), [h]

        return f

    cases = {
        known.CONSTANTS: dict(constants=[c]),
        known.INPUT_LENGTH: dict(input_length=lengths),
        known.RETURN_ALL_OUTPUTS: dict(return_all_outputs=False),
        known.MASKED_FIRST_STEP: dict(mask=mask),
        known.FIRST_STATE_OUTPUT: dict(mask=mask, double=True),
        known.TORCH_UNROLL_BACKWARDS: dict(mask=mask, unroll=True, go_backwards=True),
    }
    for case, kw in cases.items():
        kw = dict(kw)
        double = kw.pop("double", False)
        args = {k: ([tensor(a) for a in v] if k == "constants" else v) for k, v in kw.items()}
        args = {k: (tensor(v) if isinstance(v, np.ndarray) else v) for k, v in args.items()}

        def go(args: dict[str, Any] = args, double: bool = double) -> Any:
            try:
                return npy(backend.rnn(step(double), tensor(x), [tensor(h0)], **args))
            except Exception as error:  # Keras's loop may fail outright: the parent judges it
                return f"{type(error).__name__}: {error}"

        ours, theirs = both(go)
        oracle.append(
            dict(
                case=case,
                kind="direct",
                arrays=dict(w=w, u=u, c=c, x=x, h0=h0),
                kwargs=kw,
                double=double,
                rnnscan=ours,
                keras=theirs,
            )
        )


# ---------------------------------------------------------------- fit, saving, switching


def lstm_model(cudnn: Any = False) -> Any:
    return keras.Sequential([keras.Input((T, D)), layers.Masking(), layers.LSTM(U, use_cudnn=cudnn), layers.Dense(1)])


def fit_check(rng: np.random.Generator, jit_compile: Any = "auto") -> None:
    """``model.fit`` for three steps: the same losses through rnnscan as through Keras's loop
    (on torch with ``jit_compile=True``: both loops traced by torch.compile)."""
    mask = lengths_mask()
    x = np.concatenate([inputs(rng, (D,), mask) for _ in range(2)])
    y = rng.standard_normal((len(x), 1)).astype("float32")
    keras.utils.set_random_seed(int(rng.integers(1 << 30)))
    start = lstm_model().get_weights()

    def go() -> list[float]:
        model = lstm_model()
        model.set_weights(start)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=jit_compile)
        history = model.fit(x, y, batch_size=len(x), epochs=3, shuffle=False, verbose=0)
        return history.history["loss"]

    ours, theirs = both(go)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6, err_msg="losses")
    if not ours[-1] < ours[0]:
        raise AssertionError(f"the loss did not fall: {ours}")


def save_check(rng: np.random.Generator) -> None:
    """A model saved while enabled loads (enabled, then disabled) and predicts the same."""
    x = inputs(rng, (D,), lengths_mask())
    with rk.enabled(), tempfile.TemporaryDirectory() as tmp:
        model = lstm_model()
        before = model.predict(x, verbose=0)
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        after = loaded.predict(x, verbose=0)
        rk.disable()
        plain = keras.models.load_model(path).predict(x, verbose=0)
    np.testing.assert_allclose(after, before, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(plain, before, rtol=RTOL, atol=ATOL)


def switch_check(rng: np.random.Generator) -> None:
    """enable/disable are idempotent and restore exactly what was there; the fused path stays Keras's."""
    from keras.src import backend

    original = backend.rnn
    rk.enable()
    rk.enable()
    if backend.rnn is not rk.keras3_rnn or not rk.is_enabled():
        raise AssertionError(f"enable() left backend.rnn = {backend.rnn}")
    with rk.enabled():
        pass
    if backend.rnn is not rk.keras3_rnn:
        raise AssertionError("enabled() inside enable() disabled rnnscan on exit")
    rk.disable()
    rk.disable()
    if backend.rnn is not original or rk.is_enabled():
        raise AssertionError(f"disable() left backend.rnn = {backend.rnn}, not {original}")
    with rk.enabled():
        if backend.rnn is not rk.keras3_rnn:
            raise AssertionError("enabled() did not enable")
    if backend.rnn is not original:
        raise AssertionError("enabled() did not restore Keras's loop")
    # LSTM(use_cudnn="auto") without a mask: Keras's fused backend.lstm where it has one (torch: its CPU
    # LSTM), else the generic loop; rnnscan changes only the latter, and the results agree either way.
    x = inputs(rng, (D,), None)
    keras.utils.set_random_seed(int(rng.integers(1 << 30)))
    layer = layers.LSTM(U, return_sequences=True)
    before = calls["n"]
    with rk.enabled():
        ours = npy(layer(tensor(x)))
    fused = calls["n"] == before
    if fused != (BACKEND == "torch"):
        raise AssertionError(f"fused path taken: {fused} on {BACKEND}")
    close(ours, npy(layer(tensor(x))), "outputs")


def main() -> int:
    out_path = sys.argv[1]
    rng = np.random.default_rng(11)
    checks: list[tuple[str, Callable[[], None]]] = [("enable/disable/enabled", lambda: switch_check(rng))]
    for j, name in enumerate(LAYERS):
        for i, cfg in enumerate(CONFIGS):
            if name.startswith("ConvLSTM") and cfg["mask"] == "Masking":
                continue  # Masking reduces the last axis only: a (B, T, rows[, cols]) mask, not a sequence mask
            # JAX compiles every gradient (seconds each): there, each row's gradients on every other layer type
            grads = BACKEND != "jax" or (i + j) % 2 == 0
            label = ", ".join(f"{k}={v}" for k, v in cfg.items()) + ("" if grads else " (outputs only)")
            checks.append((f"{name} [{i}] {label}", lambda n=name, c=cfg, g=grads: layer_check(n, c, rng, g)))
    for name in ("SimpleRNN", "LSTM", "GRU"):
        checks.append((f"{name}: masked first step, initial state", lambda n=name: initial_state_case(n, rng)))
    checks += [
        ("stateful LSTM over 3 batches", lambda: stateful_check(rng)),
        ("stateful LSTM, batches starting masked", lambda: stateful_case(rng)),
        ("keras.src.backend.rnn called directly", lambda: direct_cases(rng)),
        ("save and load while enabled", lambda: save_check(rng)),
    ]
    if BACKEND != "numpy":  # Keras's NumPy backend has no fit ("fit not implemented for NumPy backend")
        checks.append(("model.fit", lambda: fit_check(rng)))
    if BACKEND == "torch":
        checks.append(("model.fit, jit_compile=True (torch.compile)", lambda: fit_check(rng, jit_compile=True)))
    results = []
    for label, check in checks:
        rk.disable()
        start = time.perf_counter()
        try:
            check()
            results.append(dict(check=label, ok=True, error=None))
        except Exception as error:
            results.append(dict(check=label, ok=False, error=f"{type(error).__name__}: {error}"[:3000]))
            traceback.print_exc()
        results[-1]["seconds"] = round(time.perf_counter() - start, 2)
        print(("ok   " if results[-1]["ok"] else "FAIL ") + f"{results[-1]['seconds']:6.2f}s " + label, flush=True)
    with open(out_path, "wb") as f:
        pickle.dump(dict(backend=BACKEND, keras=keras.__version__, results=results, oracle=oracle), f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
