"""rnnscan.keras: Keras 3's layers (one subprocess per Keras backend) and tf-keras's layers on rnnscan.

Keras 3 fixes its backend once per process: ``tests/keras_checks/keras3_checks.py`` runs every check of one
backend in one subprocess (all four started at once, each bounded by a timeout) and reports each check, and
saves the cases where Keras 3's own loop is known wrong (``tests/keras_checks/known.py`` names them) for
comparison with tf-keras here. tf-keras is its own package, so its layers are tested in this process.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from frameworks import installed

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "keras_checks"))
import known  # noqa: E402
from configs import CONFIGS, B, D, T, U, inputs, lengths_mask  # noqa: E402

KERAS3_BACKENDS = ("jax", "torch", "tensorflow", "numpy")
TIMEOUT_S = 900
ATOL = 2e-5


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _keras3_params() -> list[Any]:
    ok = _has("keras") and _has("tf_keras")
    return [
        pytest.param(
            name,
            id=name,
            marks=[] if ok and installed(name) else pytest.mark.skip(reason=f"keras, tf_keras or {name} not installed"),
        )
        for name in KERAS3_BACKENDS
    ]


# ---------------------------------------------------------------- Keras 3, one subprocess per backend


@pytest.fixture(scope="module")
def keras3_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Start every Keras 3 backend's worker at once; each test waits for its own."""
    out = tmp_path_factory.mktemp("keras3")
    runs = {}
    for name in KERAS3_BACKENDS:
        if not (installed(name) and _has("keras")):
            continue
        env = dict(os.environ, KERAS_BACKEND=name, TF_CPP_MIN_LOG_LEVEL="2")
        import rnnscan  # the workers import the rnnscan this process tests

        src = str(Path(rnnscan.__file__).parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
        log = open(out / f"{name}.log", "w")  # noqa: SIM115 (closed when the run is read)
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "keras_checks" / "keras3_checks.py"), str(out / f"{name}.pkl")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        runs[name] = (proc, log, out / f"{name}.pkl", out / f"{name}.log")
    yield runs
    for proc, log, *_ in runs.values():
        if proc.poll() is None:
            proc.kill()
        log.close()


def _read_run(runs: dict[str, Any], name: str) -> dict[str, Any]:
    proc, log, pkl, log_path = runs[name]
    try:
        proc.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the Keras 3 {name} worker ran past {TIMEOUT_S} s; its log: {log_path}")
    log.flush()
    if proc.returncode != 0 or not pkl.exists():
        pytest.fail(f"the Keras 3 {name} worker exited {proc.returncode}:\n{log_path.read_text()[-6000:]}")
    with open(pkl, "rb") as f:
        return pickle.load(f)


@pytest.mark.parametrize("keras_backend", _keras3_params())
def test_keras3_layers(keras3_runs: dict[str, Any], keras_backend: str) -> None:
    """Every layer type, masks, go_backwards, return_sequences/state, unroll, stateful, fit, saving; and the named
    cases where Keras 3's loop is wrong, against tf-keras (with Keras's failure asserted)."""
    run = _read_run(keras3_runs, keras_backend)
    assert run["backend"] == keras_backend
    failures = [f"{r['check']}: {r['error']}" for r in run["results"] if not r["ok"]]
    oracle_failures = []
    import rnnscan.keras as rk

    rk.disable()
    for case in run["oracle"]:
        try:
            _judge(case, keras_backend)
        except AssertionError as error:
            oracle_failures.append(f"{case['case']} ({case['kind']} {case.get('layer', '')}): {error}")
    assert not failures + oracle_failures, "\n".join(failures + oracle_failures)
    assert len(run["results"]) > 40 and run["oracle"]


def _judge(case: dict[str, Any], keras_backend: str) -> None:
    """rnnscan equals tf-keras; Keras 3's loop does not where the case is known wrong on this backend."""
    reference = _tf_keras_reference(case)
    ours = case["rnnscan"]
    if isinstance(ours, str):
        raise AssertionError(f"rnnscan raised {ours}")
    _assert_close(ours, reference, "rnnscan against tf-keras")
    theirs = case["keras"]
    if keras_backend in known.WRONG[case["case"]]:
        agrees = not isinstance(theirs, str)
        if agrees:
            try:
                _assert_close(theirs, reference, "")
            except AssertionError:
                agrees = False
        assert not agrees, f"Keras 3 ({keras_backend}) now agrees with tf-keras in {case['case']!r}: drop the case"
    else:
        assert not isinstance(theirs, str), f"Keras 3's loop raised {theirs}"
        _assert_close(theirs, reference, "Keras 3 against tf-keras")


def _assert_close(ours: Any, theirs: Any, what: str) -> None:
    ours, theirs = list(_flat(ours)), list(_flat(theirs))
    assert len(ours) == len(theirs), f"{what}: {len(ours)} arrays against {len(theirs)}"
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a.shape == b.shape, f"{what}[{i}]: shape {a.shape} against {b.shape}"
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=ATOL, err_msg=f"{what}[{i}]")


def _flat(tree: Any) -> Any:
    if isinstance(tree, (list, tuple)):
        for t in tree:
            yield from _flat(t)
    else:
        yield np.asarray(tree)


# ---------------------------------------------------------------- tf-keras twins of the worker's layers


def _tf_keras_cell() -> Any:
    import tensorflow as tf
    import tf_keras

    class MinimalCell(tf_keras.layers.Layer):
        """The worker's custom cell, for tf-keras."""

        def __init__(self, units: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units = units
            self.state_size = [units, units]
            self.output_size = units

        def build(self, input_shape: Any) -> None:
            self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], self.units))
            self.recurrent = self.add_weight(name="recurrent", shape=(self.units, self.units))

        def call(self, inputs: Any, states: Any) -> Any:
            h = tf.tanh(inputs @ self.kernel + states[0] @ self.recurrent + 0.1 * states[1])
            return h, [h, 0.5 * states[1] + h]

    return MinimalCell


def tf_keras_layer(name: str, cfg: dict[str, Any], **extra: Any) -> Any:
    """The tf-keras layer of the worker's `LAYERS[name](cfg)`."""
    import tf_keras

    L = tf_keras.layers
    kw = {**known.rnn_kwargs(name, cfg), **extra}
    if name == "RNN(custom cell)":
        return L.RNN(_tf_keras_cell()(U), **kw)
    if name == "SimpleRNN":
        return L.SimpleRNN(U, **kw)
    if name == "LSTM":
        return L.LSTM(U, **kw)
    if name == "GRU":
        return L.GRU(U, **kw)
    if name == "ConvLSTM1D":
        return L.ConvLSTM1D(2, 2, padding="same", **kw)
    if name == "ConvLSTM2D":
        return L.ConvLSTM2D(2, 2, padding="same", **kw)
    if name == "Bidirectional(LSTM)":
        return L.Bidirectional(L.LSTM(U, **known.rnn_kwargs(name, {**cfg, "go_backwards": False}), **extra))
    if name == "RNN([LSTMCell(4), LSTMCell(3)])":
        return L.RNN([L.LSTMCell(4), L.LSTMCell(3)], **kw)
    raise KeyError(name)


FEATURES = {"ConvLSTM1D": (5, 3), "ConvLSTM2D": (4, 4, 2)}


def _tf_keras_reference(case: dict[str, Any]) -> Any:
    import tensorflow as tf
    import tf_keras

    if case["kind"] == "direct":
        a = {k: tf.constant(v) for k, v in case["arrays"].items()}

        def step(x_t: Any, states: Any) -> Any:
            h = x_t @ a["w"] + states[0] @ a["u"]
            if len(states) > 1:
                h = h + states[1]
            h = tf.tanh(h)
            return (2.0 * h if case["double"] else h), [h]

        kw = {k: ([tf.constant(x) for x in v] if k == "constants" else v) for k, v in case["kwargs"].items()}
        kw = {k: (tf.constant(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
        last, outputs, states = tf_keras.backend.rnn(step, a["x"], [a["h0"]], **kw)
        return [last.numpy(), outputs.numpy(), *[s.numpy() for s in states]]
    if case["kind"] == "stateful":
        inp = tf_keras.Input(batch_shape=(B, T, D))
        layer = tf_keras.layers.LSTM(U, stateful=True, return_sequences=True)
        model = tf_keras.Model(inp, layer(tf_keras.layers.Masking()(inp)))
        layer.set_weights(case["weights"])
        return [model(tf.constant(x)).numpy() for x in case["batches"]]
    name, cfg = case["layer"], case["config"]
    layer = tf_keras_layer(name, {**cfg, "unroll": False})  # the symbolic loop: the reference for both settings
    x = tf.constant(case["x"])
    kwargs: dict[str, Any] = {}
    if case["masking"]:
        inp = tf_keras.Input((T, *FEATURES.get(name, (D,))))
        obj = tf_keras.Model(inp, layer(tf_keras.layers.Masking()(inp)))
    else:
        obj = layer
        if case["mask"] is not None:
            kwargs["mask"] = tf.constant(case["mask"])
        if case["initial_state"] is not None:
            kwargs["initial_state"] = [tf.constant(s) for s in case["initial_state"]]
    obj(x, **kwargs)
    layer.set_weights(case["weights"])
    return [np.asarray(t) for t in tf.nest.flatten(obj(x, **kwargs))]


# ---------------------------------------------------------------- tf-keras, in this process

TF_KERAS_LAYERS = (
    "RNN(custom cell)",
    "SimpleRNN",
    "LSTM",
    "GRU",
    "ConvLSTM1D",
    "ConvLSTM2D",
    "Bidirectional(LSTM)",
    "RNN([LSTMCell(4), LSTMCell(3)])",
)
needs_tf_keras = pytest.mark.skipif(not (installed("tensorflow") and _has("tf_keras")), reason="tf_keras missing")


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the adapter's calls of rnnscan.rnn (our own function, wrapped; nothing of Keras is replaced)."""
    import rnnscan.keras as rk

    calls = {"n": 0}
    inner = rk._rnn

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        return inner(*args, **kwargs)

    monkeypatch.setattr(rk, "_rnn", counting)
    rk.disable()
    yield calls
    rk.disable()


def _tf_keras_run(obj: Any, x: np.ndarray, kwargs: dict[str, Any]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Outputs and the gradients of sum(out_i * w_i) by the weights and the inputs (eager, GradientTape)."""
    import tensorflow as tf

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        flat = tf.nest.flatten(obj(xt, **kwargs))
        total = sum(
            tf.reduce_sum(o * np.random.default_rng(i).standard_normal(o.shape).astype("float32"))
            for i, o in enumerate(flat)
        )
    grads = tape.gradient(total, [*obj.trainable_weights, xt])
    return [o.numpy() for o in flat], [g.numpy() for g in grads]


def _both(spy: dict[str, int], fn: Any) -> tuple[Any, Any]:
    import rnnscan.keras as rk

    before = spy["n"]
    with rk.enabled():
        ours = fn()
    assert spy["n"] > before, "rnnscan.rnn was not called with rnnscan enabled"
    before = spy["n"]
    theirs = fn()
    assert spy["n"] == before, "rnnscan.rnn was called with rnnscan disabled"
    return ours, theirs


@needs_tf_keras
@pytest.mark.parametrize("name", TF_KERAS_LAYERS)
def test_tf_keras_layers(name: str, spy: dict[str, int], rng: np.random.Generator) -> None:
    """Every configuration row: outputs and gradients through rnnscan equal tf-keras's own loop."""
    import tensorflow as tf
    import tf_keras

    features = FEATURES.get(name, (D,))
    for cfg in CONFIGS:
        if name.startswith("ConvLSTM") and (cfg["mask"] == "Masking" or cfg["unroll"]):
            continue  # Masking reduces the last axis only: no sequence mask; tf-keras's ConvRNN cannot unroll
        mask = None if cfg["mask"] is None else lengths_mask()
        x = inputs(rng, features, mask)
        tf_keras.utils.set_random_seed(int(rng.integers(1 << 30)))
        layer = tf_keras_layer(name, cfg)
        if cfg["mask"] == "Masking":
            inp = tf_keras.Input((T, *features))
            obj = tf_keras.Model(inp, layer(tf_keras.layers.Masking()(inp)))
            kwargs: dict[str, Any] = {}
        else:
            obj = layer
            kwargs = {} if mask is None else {"mask": tf.constant(mask)}
        (out, grads), (k_out, k_grads) = _both(spy, lambda obj=obj, x=x, kwargs=kwargs: _tf_keras_run(obj, x, kwargs))
        backwards = cfg["go_backwards"] or name.startswith("Bidirectional")
        if cfg["mask"] and cfg["unroll"] and backwards and known.zero_output(name, cfg):
            # known.UNROLL_BACKWARDS_ZERO: tf-keras's unrolled loop zeroes by the un-reversed mask; the
            # reference is its symbolic loop, and its own unrolled result differs from that.
            twin = tf_keras_layer(name, {**cfg, "unroll": False})
            ref_obj = twin
            if cfg["mask"] == "Masking":
                inp = tf_keras.Input((T, *features))
                ref_obj = tf_keras.Model(inp, twin(tf_keras.layers.Masking()(inp)))
            ref_obj(tf.constant(x), **kwargs)
            twin.set_weights(layer.get_weights())
            ref, _ = _tf_keras_run(ref_obj, x, kwargs)
            _assert_close(out, ref, f"{name} {cfg} outputs against the symbolic loop")
            with pytest.raises(AssertionError):
                _assert_close(k_out, ref, "")
            continue
        _assert_close(out, k_out, f"{name} {cfg} outputs")
        _assert_close(grads, k_grads, f"{name} {cfg} gradients")


@needs_tf_keras
def test_tf_keras_initial_state_and_stateful(spy: dict[str, int], rng: np.random.Generator) -> None:
    """A nonzero initial state before masked first steps, and a stateful LSTM over three batches."""
    import tensorflow as tf
    import tf_keras

    mask = lengths_mask(left=True)
    x = inputs(rng, (D,), mask)
    for name, n in (("SimpleRNN", 1), ("LSTM", 2), ("GRU", 1)):
        layer = tf_keras_layer(name, dict(mask="explicit", return_sequences=True, return_state=True))
        states = [tf.constant(rng.standard_normal((B, U)).astype("float32")) for _ in range(n)]
        kwargs = {"mask": tf.constant(mask), "initial_state": states}
        (out, grads), (k_out, k_grads) = _both(spy, lambda layer=layer, kwargs=kwargs: _tf_keras_run(layer, x, kwargs))
        _assert_close(out, k_out, f"{name} outputs")
        _assert_close(grads, k_grads, f"{name} gradients")

    inp = tf_keras.Input(batch_shape=(B, T, D))
    lstm = tf_keras.layers.LSTM(U, stateful=True, return_sequences=True)
    model = tf_keras.Model(inp, lstm(tf_keras.layers.Masking()(inp)))
    batches = [inputs(rng, (D,), lengths_mask(left=i > 0)) for i in range(3)]

    def go() -> list[np.ndarray]:
        lstm.reset_states()
        return [r for x in batches for r in _tf_keras_run(model, x, {})]

    ours, theirs = _both(spy, go)
    _assert_close(ours, theirs, "stateful batches")


def _tf_keras_model() -> Any:
    import tf_keras

    return tf_keras.Sequential(
        [tf_keras.Input((T, D)), tf_keras.layers.Masking(), tf_keras.layers.LSTM(U), tf_keras.layers.Dense(1)]
    )


@needs_tf_keras
def test_tf_keras_fit_and_save(spy: dict[str, int], rng: np.random.Generator, tmp_path: Path) -> None:
    """fit for three steps gives the same losses; a model saved while enabled loads and predicts the same."""
    import tf_keras

    import rnnscan.keras as rk

    x = np.concatenate([inputs(rng, (D,), lengths_mask()) for _ in range(2)])
    y = rng.standard_normal((len(x), 1)).astype("float32")
    tf_keras.utils.set_random_seed(int(rng.integers(1 << 30)))
    start = _tf_keras_model().get_weights()

    def fit() -> list[float]:
        model = _tf_keras_model()
        model.set_weights(start)
        model.compile(optimizer=tf_keras.optimizers.SGD(0.1), loss="mse")
        return model.fit(x, y, batch_size=len(x), epochs=3, shuffle=False, verbose=0).history["loss"]

    ours, theirs = _both(spy, fit)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert ours[-1] < ours[0]

    with rk.enabled():
        model = _tf_keras_model()
        before = model(x).numpy()
        model.save(tmp_path / "model.keras")
        after = tf_keras.models.load_model(tmp_path / "model.keras")(x).numpy()
    plain = tf_keras.models.load_model(tmp_path / "model.keras")(x).numpy()
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(plain, before, rtol=1e-5, atol=1e-6)


@needs_tf_keras
@pytest.mark.parametrize("unroll", [False, True], ids=["loop", "unroll"])
def test_tf_keras_graph_mode(unroll: bool, spy: dict[str, int], rng: np.random.Generator) -> None:
    """tf.compat.v1: a Masking -> LSTM model built in a Graph and run in a Session, as tf-keras's own tests do."""
    import tensorflow as tf
    import tf_keras

    mask = lengths_mask(left=True)
    x = inputs(rng, (D,), mask)
    weights = None

    def run() -> list[np.ndarray]:
        nonlocal weights
        with tf.Graph().as_default():
            sess = tf_keras.src.backend.get_session()
            inp = tf_keras.Input((T, D))
            lstm = tf_keras.layers.LSTM(U, return_sequences=True, return_state=True, unroll=unroll)
            outs = lstm(tf_keras.layers.Masking()(inp))
            loss = tf.reduce_sum(outs[0] * np.random.default_rng(0).standard_normal((B, T, U)).astype("float32"))
            grads = tf.compat.v1.gradients(loss, [*lstm.trainable_weights, inp])
            if weights is None:
                weights = lstm.get_weights()
            lstm.set_weights(weights)
            return sess.run([*outs, *grads], feed_dict={inp: x})

    ours, theirs = _both(spy, run)
    _assert_close(ours, theirs, "graph-mode outputs and gradients")
