"""What real code hands the loop: variables, tracked containers, registered pytree nodes,
NumPy flags and constants, narrow length dtypes, empty batches, TF1 graphs, and tracers
whose values must not be read. Each is compared with tf-keras or with values derived by hand.
"""

from __future__ import annotations

import collections
import dataclasses
import gc
import weakref

import numpy as np
import pytest

import rnnscan

from frameworks import framework, installed

State = collections.namedtuple("State", ["h", "c"])


def lstm_like(fw):
    """A step with a namedtuple-free pair state (h, c) and the output its own array."""

    def step(x, states):
        (h, c), bias = states[0], states[1]
        c = fw.tanh(c + x[..., :3] + bias)
        h = fw.sigmoid(h * 0.5 + c)
        return h * 2.0, [(h, c)]

    return step


def reference(step_of_tf, inputs, states, **kwargs):
    """tf-keras's (last_output, outputs, new_states) as NumPy, on TensorFlow tensors."""
    import tf_keras

    tf_fw = framework("tensorflow")
    kwargs = {k: tf_fw.tree(v) for k, v in kwargs.items()}
    result = tf_keras.backend.rnn(step_of_tf, tf_fw.tree(inputs), tf_fw.tree(states), **kwargs)
    return tf_fw.tree_numpy(result)


def assert_close(actual, expected, rtol=1e-5, atol=1e-6):
    import optree

    a, e = optree.tree_leaves(actual), optree.tree_leaves(expected)
    assert len(a) == len(e)
    for x, y in zip(a, e):
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def random(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# -- structures ------------------------------------------------------------------


def test_list_wrapper_of_states_is_a_sequence_and_comes_back_as_one(backend, rng):
    from tensorflow.python.trackable.data_structures import ListWrapper

    x, h, c, bias = random(rng, 2, 5, 3), random(rng, 2, 3), random(rng, 2, 3), random(rng, 3)
    mask = rng.random((2, 5)) > 0.3
    states = ListWrapper([(backend.asarray(h), backend.asarray(c))])
    last, outputs, new_states = rnnscan.rnn(
        lstm_like(backend), backend.asarray(x), states, mask=backend.asarray(mask), constants=[backend.asarray(bias)]
    )
    assert type(new_states) is ListWrapper and len(new_states) == 1
    expected = reference(lstm_like(framework("tensorflow")), x, [(h, c)], mask=mask, constants=[bias])
    assert_close(backend.tree_numpy((last, outputs, list(new_states))), expected)


@pytest.mark.parametrize("kind", ["list_for_tuple", "tuple_for_namedtuple", "dict_for_ordereddict"])
def test_new_state_in_another_container_of_the_same_shape(backend, rng, kind):
    """tf-keras accepts these (tf.nest's rules with check_types=False); so does rnnscan, and
    the states come back in the caller's containers."""
    x, h, c = random(rng, 2, 4, 3), random(rng, 2, 3), random(rng, 2, 3)
    mask = rng.random((2, 4)) > 0.3

    def make(fw, value):
        a, b = fw.asarray(value[0]), fw.asarray(value[1])
        if kind == "list_for_tuple":
            return (a, b)
        if kind == "tuple_for_namedtuple":
            return State(a, b)
        return collections.OrderedDict([("h", a), ("c", b)])

    def step_for(fw, exact=False):
        def step(x_t, states):
            state = states[0]
            h, c = (state["h"], state["c"]) if isinstance(state, dict) else state
            c = fw.tanh(c + x_t)
            h = h * 0.5 + c
            if exact:
                new = make(fw, (h, c))
            elif kind == "list_for_tuple":
                new = [h, c]
            elif kind == "tuple_for_namedtuple":
                new = (h, c)
            else:
                new = {"c": c, "h": h}
            return h, [new]

        return step

    state = make(backend, (h, c))
    last, outputs, (new_state,) = rnnscan.rnn(
        step_for(backend), backend.asarray(x), [state], mask=backend.asarray(mask)
    )
    assert type(new_state) is type(state)
    tf_fw = framework("tensorflow")
    # tf-keras accepts the other container without a mask (its masked loop then trips over
    # its own while_loop's structure check): the masked reference returns the same containers.
    tf_state = make(tf_fw, (h, c))
    unmasked = rnnscan.rnn(step_for(backend), backend.asarray(x), [state])
    assert_close(backend.tree_numpy(unmasked[:2]), reference(step_for(tf_fw), x, [tf_state])[:2])
    e_last, e_outputs, (e_state,) = reference(step_for(tf_fw, exact=True), x, [tf_state], mask=mask)
    assert_close(backend.tree_numpy((last, outputs)), (e_last, e_outputs))
    got = backend.tree_numpy(new_state)
    if kind == "dict_for_ordereddict":
        got, e_state = (got["h"], got["c"]), (e_state["h"], e_state["c"])
    assert_close(tuple(got), tuple(e_state))


def test_new_state_of_another_shape_is_still_refused(backend, rng):
    x, h, c = random(rng, 2, 4, 3), random(rng, 2, 3), random(rng, 2, 3)

    def step(x_t, states):
        return x_t, [[states[0][0]]]  # one leaf where the state has two

    with pytest.raises(ValueError, match=r"`step_function` must be returning new state 0 with the structure"):
        rnnscan.rnn(step, backend.asarray(x), [(backend.asarray(h), backend.asarray(c))])


def _pair_step(fw):
    """The registry tests' step on a plain (h, c) tuple: the reference for their own node types."""

    def step(x_t, states):
        h, c = states[0]
        c = fw.tanh(c + x_t)
        h = h * 0.5 + c
        return h, [(h, c)]

    return step


@pytest.mark.skipif(not installed("jax"), reason="jax is not installed")
def test_jax_registered_dataclass_is_a_structure(rng):
    import jax
    import jax.numpy as jnp

    @jax.tree_util.register_dataclass
    @dataclasses.dataclass
    class Carry:
        h: jax.Array
        c: jax.Array

    x, h, c = random(rng, 2, 4, 3), random(rng, 2, 3), random(rng, 2, 3)
    mask = rng.random((2, 4)) > 0.3

    def step(x_t, states):
        carry = states[0]
        c = jnp.tanh(carry.c + x_t)
        h = carry.h * 0.5 + c
        return h, [Carry(h, c)]

    last, outputs, (carry,) = rnnscan.rnn(
        step, jnp.asarray(x), [Carry(jnp.asarray(h), jnp.asarray(c))], mask=jnp.asarray(mask)
    )
    assert isinstance(carry, Carry)
    expected = reference(_pair_step(framework("tensorflow")), x, [(h, c)], mask=mask)
    assert_close((np.asarray(last), np.asarray(outputs), [(np.asarray(carry.h), np.asarray(carry.c))]), expected)


@pytest.mark.skipif(not installed("torch"), reason="torch is not installed")
def test_torch_registered_pytree_node_is_a_structure(rng):
    import torch
    import torch.utils._pytree as torch_pytree

    class Carry:
        def __init__(self, h, c):
            self.h, self.c = h, c

    torch_pytree.register_pytree_node(Carry, lambda s: ([s.h, s.c], None), lambda children, _: Carry(*children))
    x, h, c = random(rng, 2, 4, 3), random(rng, 2, 3), random(rng, 2, 3)
    mask = rng.random((2, 4)) > 0.3

    def step(x_t, states):
        carry = states[0]
        c = torch.tanh(carry.c + x_t)
        h = carry.h * 0.5 + c
        return h, [Carry(h, c)]

    last, outputs, (carry,) = rnnscan.rnn(
        step, torch.as_tensor(x), [Carry(torch.as_tensor(h), torch.as_tensor(c))], mask=torch.as_tensor(mask)
    )
    assert isinstance(carry, Carry)
    expected = reference(_pair_step(framework("tensorflow")), x, [(h, c)], mask=mask)
    assert_close((last.numpy(), outputs.numpy(), [(carry.h.numpy(), carry.c.numpy())]), expected)


# -- flags, constants, lengths, empty batches ------------------------------------


def test_numpy_bools_are_flags(backend, rng):
    x, h = random(rng, 2, 4, 3), random(rng, 2, 3)

    def step(x_t, states):
        h = states[0] * 0.5 + x_t
        return h, [h]

    got = rnnscan.rnn(step, backend.asarray(x), [backend.asarray(h)], go_backwards=np.True_, unroll=np.False_)
    expected = rnnscan.rnn(step, backend.asarray(x), [backend.asarray(h)], go_backwards=True)
    assert_close(backend.tree_numpy(got), backend.tree_numpy(expected))
    with pytest.raises(TypeError, match=r"`go_backwards` must be a bool; got ndarray of shape \(1,\)"):
        rnnscan.rnn(step, backend.asarray(x), [backend.asarray(h)], go_backwards=np.array([True]))


def test_numpy_constants_reach_the_step_as_the_backends_arrays(backend, rng):
    from rnnscan.backends import framework_of

    x, h, bias = random(rng, 2, 4, 3), random(rng, 2, 3), random(rng, 3)
    seen = []

    def step(x_t, states):
        h, bias, scale = states
        seen.append((framework_of(bias), type(scale)))
        h = h + x_t * scale + bias
        return h, [h]

    last, _, _ = rnnscan.rnn(step, backend.asarray(x), [backend.asarray(h)], constants=[bias, 0.5])
    assert seen and set(seen) == {(backend.name, float)}  # Python scalars stay as they are
    np.testing.assert_allclose(backend.to_numpy(last), h + 0.5 * x.sum(1) + 4 * bias, rtol=1e-5)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "uint16", "int32", "uint32", "int64"])
@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "back"])
def test_narrow_and_unsigned_lengths_do_not_wrap(backend, rng, dtype, go_backwards):
    """uint8 [100, 20] at T=300 once kept [144, 40] steps; uint8 [3, 1] backwards at T=4 kept
    none of sample 0; TF crashed in tf.range. Every integer dtype now counts as int64."""
    time = 300 if dtype not in ("int8",) else 120
    lengths = np.array([100, 20] if dtype != "int8" else [100, 20], dtype=dtype)
    x, h = random(rng, 2, time, 1), random(rng, 2, 1)

    def counting(x_t, states):
        h = states[0] + 1.0  # counts the kept steps
        return h, [h]

    _, _, (counted,) = rnnscan.rnn(
        counting,
        backend.asarray(x),
        [backend.asarray(h)],
        input_length=backend.asarray(lengths),
        go_backwards=go_backwards,
    )
    if go_backwards:  # tf-keras keeps t > max(lengths) - 1 - lengths[b] of the reversed steps
        kept = np.array([min(time, max(0, time - (lengths.max() - 1 - n) - 1)) for n in lengths.astype(int)])
    else:
        kept = lengths.astype(int)
    np.testing.assert_allclose(backend.to_numpy(counted)[:, 0], h[:, 0] + kept, rtol=1e-6)


def test_uint8_lengths_backwards_match_tf_keras(backend, rng):
    x, h = random(rng, 2, 4, 2), random(rng, 2, 2)

    def step_for(fw):
        def step(x_t, states):
            h = fw.tanh(states[0] + x_t)
            return h * 3.0, [h]

        return step

    lengths = np.array([3, 1], np.uint8)
    got = rnnscan.rnn(
        step_for(backend),
        backend.asarray(x),
        [backend.asarray(h)],
        input_length=backend.asarray(lengths),
        go_backwards=True,
    )
    expected = reference(
        step_for(framework("tensorflow")), x, [h], input_length=lengths.astype(np.int32), go_backwards=True
    )
    assert_close(backend.tree_numpy(got), expected)


@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "back"])
def test_empty_batch_with_input_length(backend, go_backwards):
    x, h = np.zeros((0, 5, 3), np.float32), np.zeros((0, 3), np.float32)

    def step(x_t, states):
        h = states[0] + x_t
        return h, [h]

    last, outputs, (state,) = rnnscan.rnn(
        step,
        backend.asarray(x),
        [backend.asarray(h)],
        input_length=backend.asarray(np.zeros((0,), np.int32)),
        go_backwards=go_backwards,
    )
    assert backend.to_numpy(outputs).shape == (0, 5, 3)
    assert backend.to_numpy(last).shape == backend.to_numpy(state).shape == (0, 3)


# -- variables -------------------------------------------------------------------


def _tf_step(w):
    import tensorflow as tf

    def step(x_t, states):
        h, bias = states
        h = tf.tanh(x_t @ w + h * 0.5 + bias)
        return h, [h]

    return step


@pytest.mark.skipif(not installed("tensorflow"), reason="tensorflow is not installed")
@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf_function"])
def test_tf_variables_as_inputs_states_and_constants_get_gradients(rng, graph):
    import tensorflow as tf

    x, h, bias, w = random(rng, 2, 4, 3), random(rng, 2, 3), random(rng, 3), random(rng, 3, 3)
    mask = rng.random((2, 4)) > 0.3
    variables = [tf.Variable(x), tf.Variable(h), tf.Variable(bias)]

    def loss(x, h, bias):
        _, outputs, (state,) = rnnscan.rnn(_tf_step(tf.constant(w)), x, [h], constants=[bias], mask=mask)
        return tf.reduce_sum(outputs**2) + tf.reduce_sum(state)

    def gradients(args):
        with tf.GradientTape() as tape:
            tape.watch([a for a in args if not isinstance(a, tf.Variable)])
            value = loss(*args)
        return value, tape.gradient(value, args)

    run = tf.function(gradients) if graph else gradients
    value, grads = run(variables)
    e_value, e_grads = run([tf.constant(v.numpy()) for v in variables])
    np.testing.assert_allclose(value.numpy(), e_value.numpy(), rtol=1e-6)
    for g, e in zip(grads, e_grads):
        assert g is not None
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not installed("torch"), reason="torch is not installed")
def test_torch_parameters_get_gradients(rng):
    import torch

    x, h, bias = random(rng, 2, 4, 3), random(rng, 2, 3), random(rng, 3)
    params = [torch.nn.Parameter(torch.as_tensor(a)) for a in (x, h, bias)]
    plain = [torch.tensor(a, requires_grad=True) for a in (x, h, bias)]
    mask = torch.as_tensor(rng.random((2, 4)) > 0.3)

    def step(x_t, states):
        h, bias = states
        h = torch.tanh(x_t + h * 0.5 + bias)
        return h, [h]

    for args in (params, plain):
        _, outputs, (state,) = rnnscan.rnn(step, args[0], [args[1]], constants=[args[2]], mask=mask)
        (outputs.square().sum() + state.sum()).backward()
    for p, q in zip(params, plain):
        assert p.grad is not None
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-6)


# -- TF1 graphs and tf.function shapes -------------------------------------------


@pytest.mark.skipif(not installed("tensorflow"), reason="tensorflow is not installed")
@pytest.mark.parametrize("masking", ["bool_mask", "float_mask", "input_length"])
def test_tf1_graph_matches_tf_keras_in_a_session(rng, masking):
    import tensorflow as tf
    import tf_keras

    x, h, bias, w = random(rng, 3, 5, 3), random(rng, 3, 3), random(rng, 3), random(rng, 3, 3)
    mask = rng.random((3, 5)) > 0.4
    kwargs = {
        "bool_mask": {"mask": mask},
        "float_mask": {"mask": mask.astype(np.float32)},
        "input_length": {"input_length": np.array([5, 2, 0], np.int32)},
    }[masking]
    results = []
    for rnn in (rnnscan.rnn, tf_keras.backend.rnn):
        with tf.Graph().as_default():
            inputs = tf.compat.v1.placeholder(tf.float32, (None, 5, 3))
            args = {k: tf.constant(v) for k, v in kwargs.items()}
            out = rnn(
                _tf_step(tf.constant(w)),
                inputs,
                [tf.constant(h)],
                constants=[tf.constant(bias)],
                go_backwards=True,
                **args,
            )
            with tf.compat.v1.Session() as session:
                results.append(session.run(out, {inputs: x}))
    assert_close(results[0], results[1])


@pytest.mark.skipif(not installed("tensorflow"), reason="tensorflow is not installed")
@pytest.mark.parametrize("masking", ["mask", "input_length"])
def test_tf_unroll_with_unknown_batch(rng, masking):
    import tensorflow as tf
    import tf_keras

    x, h, bias, w = random(rng, 3, 5, 3), random(rng, 3, 3), random(rng, 3), random(rng, 3, 3)
    extra = {"mask": rng.random((3, 5)) > 0.4, "input_length": np.array([5, 2, 0], np.int32)}[masking]
    spec = [
        tf.TensorSpec((None, 5, 3)),
        tf.TensorSpec((None, 3)),
        tf.TensorSpec((None,) + extra.shape[1:], tf.as_dtype(extra.dtype)),
    ]
    results = []
    for rnn, unroll in ((rnnscan.rnn, True), (tf_keras.backend.rnn, False)):

        @tf.function(input_signature=spec)
        def run(x, h, extra, rnn=rnn, unroll=unroll):
            return rnn(
                _tf_step(tf.constant(w)), x, [h], constants=[tf.constant(bias)], unroll=unroll, **{masking: extra}
            )

        results.append(framework("tensorflow").tree_numpy(run(x, h, extra)))
    assert_close(results[0], results[1])


# -- tracers: no host reads where values are not concrete ------------------------


@pytest.mark.skipif(not installed("torch"), reason="torch is not installed")
def test_torch_jit_trace_does_not_bake_the_example_mask(rng):
    import torch

    x, h = torch.as_tensor(random(rng, 3, 6, 2)), torch.as_tensor(random(rng, 3, 2))

    def step(x_t, states):
        h = torch.tanh(states[0] + x_t)
        return h, [h]

    def run(x, h, mask):
        return rnnscan.rnn(step, x, [h], mask=mask)[1]

    all_kept = torch.ones(3, 6, dtype=torch.bool)
    traced = torch.jit.trace(run, (x, h, all_kept), check_trace=False)
    new_mask = torch.as_tensor(rng.random((3, 6)) > 0.5)
    np.testing.assert_allclose(traced(x, h, new_mask).numpy(), run(x, h, new_mask).numpy(), rtol=1e-6)


@pytest.mark.skipif(not installed("torch"), reason="torch is not installed")
def test_torch_vmap_with_a_mask_computed_from_the_vmapped_input(rng):
    import torch

    xs = torch.as_tensor(random(rng, 4, 3, 6, 2))  # vmapped over axis 0

    def step(x_t, states):
        h = torch.tanh(states[0] + x_t)
        return h, [h]

    def run(x):
        mask = x[..., 0] > 0  # a BatchedTensor under vmap: its values cannot be read
        return rnnscan.rnn(step, x, [torch.zeros(3, 2)], mask=mask)[1]

    got = torch.func.vmap(run)(xs)
    expected = torch.stack([run(x) for x in xs])
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-6)


# -- JAX: eager calls reuse their compiled loop ----------------------------------


@pytest.mark.skipif(not installed("jax"), reason="jax is not installed")
def test_jax_eager_calls_reuse_the_compiled_loop_held_weakly(rng):
    import jax.numpy as jnp

    from rnnscan.backends import jax as jax_backend

    x, h = jnp.asarray(random(rng, 2, 5, 3)), jnp.asarray(random(rng, 2, 3))
    mask = jnp.asarray(rng.random((2, 5)) > 0.3)
    weight = jnp.asarray(random(rng, 3, 3))

    def step(x_t, states):
        h = jnp.tanh(x_t @ weight + states[0])
        return h, [h]

    first = rnnscan.rnn(step, x, [h], mask=mask)
    compiled = jax_backend.compiled_loops(step)
    assert len(compiled) == 1
    again = rnnscan.rnn(step, x, [h], mask=mask)
    assert jax_backend.compiled_loops(step) == compiled  # the same executable, no new trace of the loop
    assert_close([np.asarray(a) for a in again[:2]], [np.asarray(a) for a in first[:2]])

    def fresh(x_t, states):  # the same step, never called before
        h = jnp.tanh(x_t @ weight + states[0])
        return h, [h]

    weight = jnp.asarray(random(rng, 3, 3))  # a closed-over array changes: the result follows it
    changed = rnnscan.rnn(step, x, [h], mask=mask)
    expected = rnnscan.rnn(fresh, x, [h], mask=mask)
    assert_close([np.asarray(a) for a in changed[:2]], [np.asarray(a) for a in expected[:2]])
    assert not np.allclose(np.asarray(changed[1]), np.asarray(first[1]))

    owner = weakref.ref(step)
    del step, first, again, changed, expected
    gc.collect()
    assert owner() is None  # the cache holds the step function weakly
