"""TensorFlow specifics: ``tf.function`` (the ``tf.while_loop`` path), unknown time and
batch dimensions, XLA, ``GradientTape`` inside a graph, ``input_length`` tensors, and
rnnscan as a drop-in ``tf_keras.backend.rnn`` under tf-keras's own RNN layers.

The semantic and differential suites already run on TensorFlow eagerly (the Python
loop); here the same tf-keras oracle checks the graph loop.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import optree
import pytest

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")

import rnnscan  # noqa: E402

from cases import Case, Config, configurations, gradient_problem  # noqa: E402
from frameworks import framework  # noqa: E402
from oracle import assert_matches_reference, assert_trees_close, case_and_reference  # noqa: E402

FW = framework("tensorflow")

# A spread of the differential suite's configurations (every mask kind, both
# directions, time-major, input_length, constants, nested, rank-3 states).
GRAPH_CONFIGS = configurations()[::23]
XLA_CONFIGS = configurations()[5::61]


def _unknown(t: Any) -> Any:
    """A TensorSpec with every dimension of ``t`` unknown (rank kept)."""
    return tf.TensorSpec([None] * t.shape.rank, t.dtype)


def _call_in_graph(case: Case, shapes: str, jit: bool = False) -> Any:
    """``rnnscan.rnn`` on ``case`` inside one ``tf.function``, as NumPy.

    ``shapes="unknown"`` traces it with every dimension of every tensor argument
    unknown (time and batch included).
    """
    kwargs = case.kwargs(FW)
    tensors = {k: v for k, v in kwargs.items() if k in ("mask", "constants", "input_length") and v is not None}
    flags = {k: v for k, v in kwargs.items() if k not in tensors}
    step = case.step(FW)

    def run(inputs: Any, states: Any, tensors: dict[str, Any]) -> Any:
        return rnnscan.rnn(step, inputs, states, **tensors, **flags)

    args = (FW.tree(case.inputs), FW.tree(case.initial_states), tensors)
    fn = tf.function(run, jit_compile=jit)
    if shapes == "unknown":
        fn = fn.get_concrete_function(*optree.tree_map(_unknown, args))
    return FW.tree_numpy(fn(*args))


def _assert_matches_reference(config: Config, shapes: str, jit: bool = False) -> None:
    case, expected = case_and_reference(config)
    assert_matches_reference(_call_in_graph(case, shapes, jit), expected, atol=1e-5)


@pytest.mark.parametrize("shapes", ["static", "unknown"])
@pytest.mark.parametrize("config", GRAPH_CONFIGS, ids=[c.id for c in GRAPH_CONFIGS])
def test_tf_function_matches_tf_keras(config: Config, shapes: str) -> None:
    _assert_matches_reference(config, shapes)


@pytest.mark.parametrize("config", XLA_CONFIGS, ids=[c.id for c in XLA_CONFIGS])
def test_xla_matches_tf_keras(config: Config) -> None:
    _assert_matches_reference(config, "unknown", jit=True)


def test_graph_uses_a_while_loop_and_keeps_static_shapes(rng: np.random.Generator) -> None:
    x = tf.constant(rng.standard_normal((3, 7, 2)), tf.float32)
    h0 = tf.zeros((3, 4))
    w = tf.constant(rng.standard_normal((2, 4)), tf.float32)

    def step(x_t: Any, states: Any) -> Any:
        h = tf.tanh(x_t @ w + states[0])
        return h, [h]

    fn = tf.function(lambda x, h0, m: rnnscan.rnn(step, x, [h0], mask=m))
    graph = fn.get_concrete_function(x, h0, tf.ones((3, 7), tf.bool)).graph
    assert any(op.type in ("While", "StatelessWhile") for op in graph.get_operations())
    last, outputs, (h,) = fn.get_concrete_function(x, h0, tf.ones((3, 7), tf.bool)).structured_outputs
    assert last.shape.as_list() == [3, 4] and h.shape.as_list() == [3, 4]
    assert outputs.shape.as_list() == [3, 7, 4]

    unknown = fn.get_concrete_function(_unknown(x), _unknown(h0), tf.TensorSpec([None, None], tf.bool))
    _, outputs, _ = unknown.structured_outputs
    assert outputs.shape.as_list() == [None, None, 4]


def test_unknown_time_with_unroll_raises_the_reference_error(rng: np.random.Generator) -> None:
    def step(x_t: Any, states: Any) -> Any:
        return x_t, [x_t]

    fn = tf.function(lambda x: rnnscan.rnn(step, x, [x[:, 0]], unroll=True))
    with pytest.raises(ValueError, match="requires a fixed number of timesteps"):
        fn.get_concrete_function(tf.TensorSpec([None, None, 3], tf.float32))
    # tf-keras's own loop refuses it too.
    ref = tf.function(lambda x: tf_keras.backend.rnn(step, x, [x[:, 0]], unroll=True))
    with pytest.raises(ValueError, match="fixed number of timesteps"):
        ref.get_concrete_function(tf.TensorSpec([None, None, 3], tf.float32))
    # unroll=False runs over the unknown time dimension.
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    loop = tf.function(lambda x: rnnscan.rnn(step, x, [x[:, 0]])[1])
    out = loop.get_concrete_function(tf.TensorSpec([None, None, 3], tf.float32))(tf.constant(x))
    np.testing.assert_array_equal(out.numpy(), x)


def test_unknown_time_and_batch_with_different_run_time_sizes(rng: np.random.Generator) -> None:
    """One trace with unknown (batch, time) runs on several sizes, as tf-keras."""
    units = 3
    w = tf.constant(rng.standard_normal((2, units)) * 0.5, tf.float32)

    def step(x_t: Any, states: Any) -> Any:
        h = tf.tanh(x_t @ w + states[0] * 0.5)
        return h * 2.0, [h]

    def run(rnn: Callable[..., Any], x: Any, h0: Any, m: Any) -> Any:
        return rnn(step, x, [h0], mask=m, go_backwards=True, zero_output_for_mask=True)

    specs = (tf.TensorSpec([None, None, 2]), tf.TensorSpec([None, units]), tf.TensorSpec([None, None], tf.bool))
    ours = tf.function(functools.partial(run, rnnscan.rnn)).get_concrete_function(*specs)
    for batch, time in ((1, 1), (4, 9), (2, 3)):
        args = (
            tf.constant(rng.standard_normal((batch, time, 2)), tf.float32),
            tf.constant(rng.standard_normal((batch, units)), tf.float32),
            tf.constant(rng.random((batch, time)) > 0.4),
        )
        assert_trees_close(FW.tree_numpy(ours(*args)), FW.tree_numpy(run(tf_keras.backend.rnn, *args)), atol=1e-5)


def test_input_length_tensor_in_tf_function_matches_tf_keras(rng: np.random.Generator) -> None:
    batch, time, units = 4, 6, 3
    x = tf.constant(rng.standard_normal((batch, time, 2)), tf.float32)
    h0 = tf.constant(rng.standard_normal((batch, units)), tf.float32)
    lengths = tf.constant(rng.integers(1, time + 1, size=batch), tf.int32)
    w = tf.constant(rng.standard_normal((2, units)) * 0.5, tf.float32)

    def step(x_t: Any, states: Any) -> Any:
        h = tf.tanh(x_t @ w + states[0])
        return h - 1.0, [h]

    specs = (tf.TensorSpec([None, None, 2]), tf.TensorSpec([None, units]), tf.TensorSpec([None], tf.int32))
    for go_backwards in (False, True):

        def run(rnn: Callable[..., Any], x: Any, h0: Any, n: Any, back: bool = go_backwards) -> Any:
            return rnn(step, x, [h0], input_length=n, go_backwards=back)

        ours = tf.function(functools.partial(run, rnnscan.rnn)).get_concrete_function(*specs)
        theirs = tf.function(functools.partial(run, tf_keras.backend.rnn)).get_concrete_function(*specs)
        got = FW.tree_numpy(ours(x, h0, lengths))
        assert_trees_close(got, FW.tree_numpy(theirs(x, h0, lengths)), atol=1e-5)
        if not go_backwards:  # hand-derived: the state stops at each sample's length
            outputs, (h,) = got[1], got[2]
            for b, n in enumerate(lengths.numpy()):
                np.testing.assert_allclose(h[b], outputs[b, n - 1] + 1.0, rtol=1e-6, atol=1e-6)
                np.testing.assert_allclose(outputs[b, n:], np.broadcast_to(outputs[b, n - 1], outputs[b, n:].shape))


def _simple_rnn_loss(mask: np.ndarray, **kwargs: Any) -> Callable[..., Any]:
    """A scalar of every output, the last output and the final state (fixed random weights)."""
    r = np.random.default_rng(7)
    r_out = tf.constant(r.standard_normal((2, 5, 4)))
    r_last = tf.constant(r.standard_normal((2, 4)))
    r_state = tf.constant(r.standard_normal((2, 4)))
    m = tf.constant(mask)

    def loss(x: Any, h0: Any, w: Any, u: Any) -> Any:
        def step(x_t: Any, states: Any) -> Any:
            h = tf.tanh(x_t @ w + states[0] @ u)
            return h * 1.5, [h]

        last, outputs, (h,) = rnnscan.rnn(step, x, [h0], mask=m, **kwargs)
        return tf.reduce_sum(outputs * r_out) + tf.reduce_sum(last * r_last) + tf.reduce_sum(h * r_state)

    return loss


@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "back"])
def test_gradient_tape_in_tf_function_matches_finite_differences(
    rng: np.random.Generator, go_backwards: bool, jit: bool
) -> None:
    params, mask = gradient_problem(rng)
    loss = _simple_rnn_loss(mask, go_backwards=go_backwards, zero_output_for_mask=go_backwards)
    specs = [tf.TensorSpec([None, None, 3], tf.float64), tf.TensorSpec([None, 4], tf.float64)]
    specs += [tf.TensorSpec(p.shape, tf.float64) for p in params[2:]]

    @tf.function(input_signature=specs, jit_compile=jit)
    def value_and_grads(*ps: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(ps)
            value = loss(*ps)
        return value, tape.gradient(value, ps)

    value_fn = tf.function(loss, input_signature=specs)
    value, grads = value_and_grads(*params)
    np.testing.assert_allclose(value.numpy(), value_fn(*params).numpy(), rtol=1e-12)

    eps = 1e-6
    for param, grad in zip(params, grads):
        numeric = np.zeros_like(param)
        for i in np.ndindex(param.shape):
            plus, minus = param.copy(), param.copy()
            plus[i] += eps
            minus[i] -= eps
            args_p = [plus if p is param else p for p in params]
            args_m = [minus if p is param else p for p in params]
            numeric[i] = (value_fn(*args_p).numpy() - value_fn(*args_m).numpy()) / (2 * eps)
        np.testing.assert_allclose(grad.numpy(), numeric, rtol=1e-6, atol=1e-7)


def test_xla_gives_the_numbers_of_eager_and_graph(rng: np.random.Generator) -> None:
    params = [rng.standard_normal(s).astype(np.float32) for s in ((2, 5, 3), (2, 4), (3, 4), (4, 4))]
    loss = _simple_rnn_loss(rng.random((2, 5)) > 0.3)

    def value_and_grads(*ps: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(ps)
            value = loss(*ps)
        return [value, *tape.gradient(value, ps)]

    args = [tf.constant(p, tf.float64) for p in params]
    eager = [t.numpy() for t in value_and_grads(*args)]
    for jit in (False, True):
        compiled = [t.numpy() for t in tf.function(value_and_grads, jit_compile=jit)(*args)]
        for a, b in zip(compiled, eager):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_variables_as_inputs_and_states_in_tf_function(rng: np.random.Generator) -> None:
    x = tf.Variable(rng.standard_normal((2, 4, 3)).astype(np.float32))
    h0 = tf.Variable(rng.standard_normal((2, 3)).astype(np.float32))

    def step(x_t: Any, states: Any) -> Any:
        h = tf.tanh(x_t + states[0])
        return h, [h]

    got = FW.tree_numpy(tf.function(lambda: rnnscan.rnn(step, x, [h0]))())
    assert_trees_close(got, FW.tree_numpy(tf_keras.backend.rnn(step, tf.identity(x), [tf.identity(h0)])), atol=1e-5)


# -- drop-in: tf-keras's own layers with rnnscan as backend.rnn -------------------

LAYERS = ("SimpleRNN", "LSTM", "GRU", "BidirectionalLSTM")
# (return_sequences, go_backwards, inside tf.function): eagerly tf-keras's layers run
# rnnscan's Python loop, in a graph its tf.while_loop (LSTM and GRU through their
# own inner tf.function either way); each flag takes both values.
LAYER_RUNS = ((False, False, False), (True, True, True))


def _make_model(kind: str, return_sequences: bool, go_backwards: bool) -> Any:
    layers = tf_keras.layers
    kwargs = dict(return_sequences=return_sequences, go_backwards=go_backwards, stateful=False)
    if kind == "BidirectionalLSTM":
        rnn = layers.Bidirectional(layers.LSTM(4, return_sequences=return_sequences, stateful=False))
    else:
        rnn = getattr(layers, kind)(4, **kwargs)
    return tf_keras.Sequential([layers.Masking(mask_value=0.0), rnn])


def _masked_batch(rng: np.random.Generator, batch: int = 3, time: int = 6, dim: int = 3) -> np.ndarray:
    """Inputs with zero (masked) steps: right padding, a step in the middle, a first step."""
    x = rng.standard_normal((batch, time, dim)).astype(np.float32)
    x[0, 4:] = 0.0
    x[1, 2] = 0.0
    x[2, 0] = 0.0
    return x


def _outputs_and_gradients(model: Any, x: Any, in_function: bool) -> list[np.ndarray]:
    r = tf.constant(np.random.default_rng(3).standard_normal(model(x).shape), tf.float32)

    def run(x: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = model(x)
            loss = tf.reduce_sum(y * r)
        return [y, *tape.gradient(loss, [x, *model.trainable_variables])]

    fn = tf.function(run) if in_function else run
    return [t.numpy() for t in fn(x)]


@pytest.mark.parametrize("run", LAYER_RUNS, ids=["last-fwd-eager", "seq-back-tf_function"])
@pytest.mark.parametrize("kind", LAYERS)
def test_drop_in_for_tf_keras_layers(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, kind: str, run: tuple[bool, bool, bool]
) -> None:
    """tf-keras's layers behind a Masking layer, with tf-keras's ``backend.rnn``
    replaced by ``rnnscan.rnn``: the same outputs and gradients (inputs and weights)."""
    import tf_keras.src.backend as keras_backend

    *flags, in_function = run
    x = tf.constant(_masked_batch(rng))
    tf_keras.utils.set_random_seed(int(rng.integers(2**31)))
    reference_model = _make_model(kind, *flags)
    expected = _outputs_and_gradients(reference_model, x, in_function)

    calls: list[dict[str, Any]] = []

    def patched(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return rnnscan.rnn(*args, **kwargs)

    monkeypatch.setattr(keras_backend, "rnn", patched)
    monkeypatch.setattr(tf_keras.backend, "rnn", patched)
    model = _make_model(kind, *flags)  # fresh layers: nothing traced before the patch
    model.build(x.shape)
    model.set_weights(reference_model.get_weights())
    got = _outputs_and_gradients(model, x, in_function)

    assert calls, "tf-keras did not call backend.rnn"
    assert all(c.get("mask") is not None for c in calls)
    assert len(got) == len(expected)
    for a, e in zip(got, expected):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)


def test_backend_reshape_skips_only_no_op_reshapes() -> None:
    from rnnscan.backends import get_backend

    backend = get_backend("tensorflow")
    seen: dict[str, Any] = {}

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.bool), tf.TensorSpec([None, 3], tf.float32)])
    def run(m: Any, x: Any) -> Any:
        seen["same"] = backend.reshape(m, (-1, 1)) is m
        seen["rank3"] = backend.reshape(m, (-1, 1, 1)).shape.as_list()
        seen["unknown_size"] = backend.reshape(x, (-1, 3)) is x
        seen["swapped"] = backend.reshape(x, (3, -1)) is x
        return backend.reshape(x, (3, -1))

    out = run(tf.ones((2, 1), tf.bool), tf.reshape(tf.range(6, dtype=tf.float32), (2, 3)))
    assert seen == {"same": True, "rank3": [None, 1, 1], "unknown_size": True, "swapped": False}
    np.testing.assert_array_equal(out.numpy(), np.arange(6, dtype=np.float32).reshape(3, 2))


@pytest.mark.parametrize(
    ("zero", "all_outputs", "steps"), [(True, True, (4, 1)), (False, False, (4, 1)), (False, True, (8, 8))]
)
@pytest.mark.parametrize("aliased", [False, True])
@pytest.mark.parametrize("shapes", ["static", "unknown"])
def test_graph_loop_runs_only_from_the_first_to_the_last_step_that_keeps_a_sample(
    rng: np.random.Generator, zero: bool, all_outputs: bool, steps: tuple[int, int], aliased: bool, shapes: str
) -> None:
    """Leading and trailing steps that keep no sample (padding) are not run in a graph where
    their outputs are zeros or not returned (``zero_output_for_mask``, or only the last output);
    a batch that keeps nothing runs its last step alone. Else a masked step outputs the last
    output, and every step runs (rather than copying every output to fill them in). The results
    and gradients are the eager loop's (checked against tf-keras by the differential suite)."""
    x = tf.constant(rng.standard_normal((3, 8, 2)), tf.float32)
    h0 = tf.constant(rng.standard_normal((3, 4)), tf.float32)
    w = tf.Variable(rng.standard_normal((2, 4)), dtype=tf.float32)
    iterations = tf.Variable(0)

    def step(x_t: Any, states: Any) -> Any:
        iterations.assign_add(1)
        h = tf.tanh(x_t @ w + states[0])
        return (h, [h]) if aliased else (2.0 * h + 1.0, [h])

    def run(x: Any, h0: Any, mask: Any) -> Any:
        with tf.GradientTape() as tape:
            last, outputs, (h,) = rnnscan.rnn(
                step, x, [h0], mask=mask, zero_output_for_mask=zero, return_all_outputs=all_outputs
            )
            loss = tf.reduce_sum(outputs * outputs) + tf.reduce_sum(tf.sin(last)) + tf.reduce_sum(h)
        return (last, outputs, h), tape.gradient(loss, [w, h0])

    mask = np.zeros((3, 8), bool)
    mask[0, 2:5] = mask[1, 3] = mask[2, [2, 5]] = True  # steps 2 to 5 keep a sample; 4 keeps one
    signature = [_unknown(x), _unknown(h0), tf.TensorSpec([None, None], tf.bool)] if shapes == "unknown" else None
    graph = tf.function(run, input_signature=signature)
    for m, run_steps in zip((mask, np.zeros((3, 8), bool)), steps):
        iterations.assign(0)
        got = graph(x, h0, tf.constant(m))
        # (+ 2: the graph also runs the step's two shape-finding calls, its variable op being stateful)
        assert int(iterations.numpy()) == run_steps + 2
        expected = run(x, h0, tf.constant(m))
        assert_trees_close(
            optree.tree_map(np.asarray, got), optree.tree_map(np.asarray, expected), rtol=1e-6, atol=1e-6
        )


@pytest.mark.parametrize(("units", "after"), [(8, True), (300, False)])
@pytest.mark.parametrize("zero", [False, True])
def test_outputs_masked_after_the_loop_or_in_each_step_match_tf_keras(
    rng: np.random.Generator, units: int, after: bool, zero: bool
) -> None:
    """A graph loop whose outputs are its states masks them after the loop for small states, in each step
    for large ones (measured faster on each side); both give tf-keras's outputs, states and gradients."""
    import tf_keras

    from rnnscan.backends.tensorflow import BACKEND

    x = tf.constant(rng.standard_normal((32, 7, 3)), tf.float32)
    h0 = tf.constant(rng.standard_normal((32, units)), tf.float32)
    w = tf.constant(rng.standard_normal((3, units)), tf.float32)
    mask = tf.constant(rng.random((32, 7)) < 0.6)
    assert BACKEND.masks_outputs_after_loop([h0]) is after

    def step(x_t: Any, states: Any) -> Any:
        h = tf.tanh(x_t @ w + 0.5 * states[0])
        return h, [h]

    def run(rnn: Callable[..., Any], x: Any, h0: Any, w: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch([x, h0])
            last, outputs, (h,) = rnn(step, x, [h0], mask=mask, zero_output_for_mask=zero)
            loss = tf.reduce_sum(outputs * outputs) + tf.reduce_sum(tf.sin(last)) + tf.reduce_sum(h)
        return (last, outputs, h), tape.gradient(loss, [x, h0])

    got = tf.function(functools.partial(run, rnnscan.rnn))(x, h0, w)
    assert_trees_close(FW.tree_numpy(got), FW.tree_numpy(run(tf_keras.backend.rnn, x, h0, w)), atol=1e-5)
