"""Hand-derived corner cases, each with its expected numbers written out, on every backend.

Most use one step function, a running sum whose output differs from its state:
    h_t = h_{t-1} + x_t,   output_t = 10 * h_t
so every kept or masked step can be read off the numbers.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest

import rnnscan

X = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)  # one sample, four steps, one feature


def running_sum(x, states):
    h = states[0] + x
    return h * 10.0, [h]


def seq(*rows):
    """(batch, time, 1) float32 from per-sample rows."""
    return np.array(rows, dtype=np.float32)[..., None]


def run(fw, inputs, h0, unroll, **kwargs):
    for key in ("mask", "input_length"):
        if isinstance(kwargs.get(key), np.ndarray):
            kwargs[key] = fw.asarray(kwargs[key])
    last, outputs, states = rnnscan.rnn(running_sum, fw.asarray(inputs), [fw.asarray(h0)], unroll=unroll, **kwargs)
    return fw.to_numpy(last), fw.to_numpy(outputs), fw.to_numpy(states[0])


@pytest.fixture(params=[False, True], ids=["scan", "unroll"])
def unroll(request):
    return request.param


def expect(result, last, outputs, state):
    got_last, got_outputs, got_state = result
    np.testing.assert_allclose(got_outputs[..., 0], np.array(outputs, np.float32))
    np.testing.assert_allclose(got_last[..., 0], np.array(last, np.float32))
    np.testing.assert_allclose(got_state[..., 0], np.array(state, np.float32))


def h0(*values):
    return np.array(values, dtype=np.float32)[:, None]


def test_forward_no_mask(backend, unroll):
    r = run(backend, seq(X), h0(0), unroll)
    expect(r, last=[100], outputs=[[10, 30, 60, 100]], state=[10])


def test_go_backwards_returns_outputs_in_processing_order(backend, unroll):
    r = run(backend, seq(X), h0(0), unroll, go_backwards=True)
    expect(r, last=[100], outputs=[[40, 70, 90, 100]], state=[10])


def test_first_step_masked_outputs_zeros_until_first_kept_step(backend, unroll):
    r = run(backend, seq(X), h0(0.5), unroll, mask=np.array([[False, True, True, True]]))
    expect(r, last=[95], outputs=[[0, 25, 55, 95]], state=[9.5])


def test_masked_step_repeats_previous_output_and_keeps_state(backend, unroll):
    r = run(backend, seq(X), h0(0), unroll, mask=np.array([[1, 0, 1, 1]], dtype=np.int32))
    expect(r, last=[80], outputs=[[10, 10, 40, 80]], state=[8])


def test_zero_output_for_mask(backend, unroll):
    r = run(backend, seq(X), h0(0), unroll, mask=np.array([[1, 0, 1, 1]], bool), zero_output_for_mask=True)
    expect(r, last=[80], outputs=[[10, 0, 40, 80]], state=[8])


@pytest.mark.parametrize("zero", [False, True])
def test_last_step_masked_last_output_follows_the_rule(backend, unroll, zero):
    r = run(backend, seq(X), h0(0), unroll, mask=np.array([[1, 1, 1, 0]], bool), zero_output_for_mask=zero)
    expect(r, last=[0 if zero else 60], outputs=[[10, 30, 60, 0 if zero else 60]], state=[6])


def test_all_masked_row_keeps_initial_state_and_outputs_zeros(backend, unroll):
    mask = np.array([[0, 0, 0, 0], [1, 1, 1, 1]], bool)
    r = run(backend, seq(X, X * 2), h0(5, 1), unroll, mask=mask)
    expect(r, last=[0, 210], outputs=[[0, 0, 0, 0], [30, 70, 130, 210]], state=[5, 21])


def test_mask_with_go_backwards_is_reversed_with_the_inputs(backend, unroll):
    # Processing order sees x = 4, 3, 2, 1 with mask 1, 1, 0, 1.
    r = run(backend, seq(X), h0(0), unroll, mask=np.array([[1, 0, 1, 1]], bool), go_backwards=True)
    expect(r, last=[80], outputs=[[40, 70, 70, 80]], state=[8])


def test_three_dimensional_float_mask_keeps_nonzero_steps(backend, unroll):
    mask = np.array([[0.5, 0.0, 2.0, -1.0]], np.float32)[..., None]  # (batch, time, 1)
    r = run(backend, seq(X), h0(0), unroll, mask=mask)
    expect(r, last=[80], outputs=[[10, 10, 40, 80]], state=[8])


def test_unroll_disagreement_go_backwards_zero_output_follows_symbolic_loop(backend):
    """tf-keras's own unrolled path zeroes the outputs with the *un-reversed* mask when
    go_backwards and zero_output_for_mask are both set (tf_keras 2.21 gives 40, 0, 70, 80 here).
    Its symbolic loop, our reference, zeroes the step that was masked in processing order; both
    of rnnscan's loops follow it (the oracle grid compares unroll=True with the symbolic loop too)."""
    mask = np.array([[1, 0, 1, 1]], bool)
    for unroll in (False, True):
        r = run(backend, seq(X), h0(0), unroll, mask=mask, go_backwards=True, zero_output_for_mask=True)
        expect(r, last=[80], outputs=[[40, 70, 0, 80]], state=[8])


def test_input_length_masks_steps_past_each_length(backend, unroll):
    r = run(backend, seq(X, X), h0(0, 0), unroll, input_length=np.array([2, 4], np.int32))
    expect(r, last=[30, 100], outputs=[[10, 30, 30, 30], [10, 30, 60, 100]], state=[3, 10])


def test_input_length_with_go_backwards_keeps_the_last_processing_steps(backend, unroll):
    # Longest length == time: sample 0 (length 2) keeps the original steps 1, 0.
    r = run(backend, seq(X, X), h0(0, 0), unroll, input_length=np.array([2, 4], np.int32), go_backwards=True)
    expect(r, last=[30, 100], outputs=[[0, 0, 20, 30], [40, 70, 90, 100]], state=[3, 10])


def test_input_length_with_go_backwards_counts_from_the_longest_length_as_tf_keras(backend, unroll):
    # tf-keras keeps processing step t when t > max(lengths) - 1 - length: with every
    # length below the time size, nothing is masked (here max = length = 2 keeps t > -1).
    r = run(backend, seq(X), h0(0), unroll, input_length=np.array([2], np.int32), go_backwards=True)
    expect(r, last=[100], outputs=[[40, 70, 90, 100]], state=[10])


def test_input_length_is_ignored_when_a_mask_is_given(backend, unroll):
    r = run(backend, seq(X), h0(0), unroll, mask=np.array([[1, 0, 1, 1]], bool), input_length=np.array([1]))
    expect(r, last=[80], outputs=[[10, 10, 40, 80]], state=[8])


def test_int_input_length_masks_nothing(backend, unroll):
    r = run(backend, seq(X), h0(0), unroll, input_length=2)
    expect(r, last=[100], outputs=[[10, 30, 60, 100]], state=[10])


def test_zero_d_input_length_masks_the_steps_past_it_for_every_sample(backend, unroll):
    # tf-keras's symbolic loop reads a 0-d tensor as one length for every sample
    # (torch.jit.trace hands Keras 3's `input_length=timesteps` over as one)
    r = run(backend, seq(X, X[::-1]), h0(0, 1), unroll, input_length=np.array(2, np.int32))
    expect(r, last=[30, 80], outputs=[[10, 30, 30, 30], [50, 80, 80, 80]], state=[3, 8])
    r = run(backend, seq(X), h0(0), unroll, input_length=np.array(2, np.int64), go_backwards=True)
    expect(r, last=[100], outputs=[[40, 70, 90, 100]], state=[10])  # max(2) - 1 - 2 < t: every step


def test_return_all_outputs_false_gives_the_last_output_with_a_time_axis_of_one(backend, unroll):
    last, outputs, state = run(backend, seq(X), h0(0), unroll, return_all_outputs=False, mask=np.array([[1, 1, 0, 1]]))
    assert outputs.shape == (1, 1, 1)
    np.testing.assert_allclose(outputs[:, 0], last)
    np.testing.assert_allclose(last, [[70]])
    np.testing.assert_allclose(state, [[7]])


def test_time_major_inputs_and_outputs(backend, unroll):
    inputs = np.stack([X, X * 3], axis=1)[..., None]  # (time=4, batch=2, 1)
    mask = np.array([[1, 1], [0, 1], [1, 1], [1, 0]], bool)  # (time, batch)
    last, outputs, state = run(backend, inputs, h0(0, 0), unroll, time_major=True, mask=mask)
    assert outputs.shape == (4, 2, 1)
    np.testing.assert_allclose(outputs[..., 0], [[10, 30], [10, 90], [40, 180], [80, 180]])
    np.testing.assert_allclose(last[:, 0], [80, 180])
    np.testing.assert_allclose(state[:, 0], [8, 18])


def test_constants_follow_the_states(backend, unroll):
    fw = backend
    seen = []

    def step(x, states):
        seen.append(len(states))
        h, scale, offset = states
        h = h + x * scale + offset
        return h, [h]

    scale = fw.asarray(np.array([[2.0], [3.0]], np.float32))
    last, _, (h,) = rnnscan.rnn(
        step, fw.asarray(seq(X, X)), [fw.asarray(h0(0, 0))], constants=[scale, 1.0], unroll=unroll
    )
    np.testing.assert_allclose(fw.to_numpy(last)[:, 0], [24, 34])  # 10 * scale + 4 * offset
    np.testing.assert_allclose(fw.to_numpy(h)[:, 0], [24, 34])
    assert set(seen) == {3}


Pair = namedtuple("Pair", ["h", "g"])


def test_nested_inputs_states_and_outputs_keep_their_structure(backend, unroll):
    """dict inputs, a namedtuple of states holding a rank-3 state, dict output."""
    fw = backend

    def step(x, states):
        pair, extra = states
        h = pair.h + x["a"] - x["b"]
        g = pair.g * 0.5 + h[:, None, :]  # (batch, 2, 1)
        return {"h": h, "sum": extra["n"] + h}, [Pair(h, g), {"n": extra["n"] + 1.0}]

    inputs = {"a": fw.asarray(seq(X)), "b": fw.asarray(seq(X / 2))}
    initial = [Pair(fw.asarray(h0(0)), fw.asarray(np.full((1, 2, 1), 4.0, np.float32))), {"n": fw.asarray(h0(1))}]
    mask = fw.asarray(np.array([[1, 1, 0, 1]], bool))
    last, outputs, states = rnnscan.rnn(step, inputs, initial, mask=mask, unroll=unroll)
    assert isinstance(states, list) and isinstance(states[0], Pair) and set(states[1]) == {"n"}
    assert set(outputs) == {"h", "sum"}
    # h = cumulative sum of x/2 over kept steps: 0.5, 1.5, (1.5), 3.5; n counts kept steps.
    np.testing.assert_allclose(fw.to_numpy(outputs["h"])[0, :, 0], [0.5, 1.5, 1.5, 3.5])
    np.testing.assert_allclose(fw.to_numpy(outputs["sum"])[0, :, 0], [1.5, 3.5, 3.5, 6.5])
    np.testing.assert_allclose(fw.to_numpy(last["h"])[0, 0], 3.5)
    np.testing.assert_allclose(fw.to_numpy(states[1]["n"])[0, 0], 4.0)
    # g: 4 -> 2.5 -> 2.75 -> (2.75) -> 4.875
    np.testing.assert_allclose(fw.to_numpy(states[0].g)[0, :, 0], [4.875, 4.875])


def test_tuple_states_come_back_as_a_tuple_and_a_single_array_as_a_list(backend):
    fw = backend
    _, _, states = rnnscan.rnn(running_sum, fw.asarray(seq(X)), (fw.asarray(h0(0)),))
    assert isinstance(states, tuple)
    _, _, states = rnnscan.rnn(running_sum, fw.asarray(seq(X)), fw.asarray(h0(0)))
    assert isinstance(states, list) and len(states) == 1
    np.testing.assert_allclose(fw.to_numpy(states[0]), [[10]])


def test_rank3_outputs_and_states_are_masked_whole(backend, unroll, rng):
    fw = backend
    x = rng.standard_normal((2, 5, 3, 4)).astype(np.float32)
    s0 = rng.standard_normal((2, 3, 4)).astype(np.float32)
    keep = np.array([[1, 0, 1, 1, 0], [0, 1, 1, 0, 1]], bool)

    def step(x_t, states):
        s = fw.tanh(states[0] + x_t)
        return s * 2.0, [s]

    last, outputs, (s,) = rnnscan.rnn(step, fw.asarray(x), [fw.asarray(s0)], mask=fw.asarray(keep), unroll=unroll)
    # The same loop by hand in NumPy.
    state, prev, expected = s0.copy(), np.zeros_like(s0), []
    for t in range(5):
        new = np.tanh(state + x[:, t])
        k = keep[:, t][:, None, None]
        state = np.where(k, new, state)
        prev = np.where(k, new * 2, prev)
        expected.append(prev)
    np.testing.assert_allclose(fw.to_numpy(outputs), np.stack(expected, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fw.to_numpy(last), expected[-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fw.to_numpy(s), state, rtol=1e-5, atol=1e-6)


def test_step_function_sees_time_steps_in_order_with_batch_leading(backend):
    fw = backend
    seen = []

    def step(x, states):
        seen.append(fw.to_numpy(x).copy())
        return states[0] + x, [states[0] + x]

    x = np.arange(2 * 3 * 1, dtype=np.float32).reshape(2, 3, 1)
    rnnscan.rnn(step, fw.asarray(x), [fw.asarray(np.zeros((2, 1), np.float32) + 0.5)], unroll=True)
    assert [s.tolist() for s in seen] == [[[0.0], [3.0]], [[1.0], [4.0]], [[2.0], [5.0]]]


def running_sum_aliased(x, states):
    h = states[0] + x
    return h, [h]  # the output is the new state itself


@pytest.mark.parametrize("zero", [False, True])
def test_output_that_is_the_state_still_starts_from_zeros(backend, unroll, zero):
    """With `return h, [h]` a masked first step outputs zeros, not the initial state."""
    fw = backend
    mask = fw.asarray(np.array([[0, 1, 0, 1], [1, 1, 1, 1]], bool))
    last, outputs, (h,) = rnnscan.rnn(
        running_sum_aliased,
        fw.asarray(seq(X, X)),
        [fw.asarray(h0(5, 0))],
        mask=mask,
        unroll=unroll,
        zero_output_for_mask=zero,
    )
    expected = [[0, 7, 0, 11], [1, 3, 6, 10]] if zero else [[0, 7, 7, 11], [1, 3, 6, 10]]
    np.testing.assert_allclose(fw.to_numpy(outputs)[..., 0], expected)
    np.testing.assert_allclose(fw.to_numpy(last)[:, 0], [11, 10])
    np.testing.assert_allclose(fw.to_numpy(h)[:, 0], [11, 10])
    # The last step masked: the last output follows the rule too.
    last, outputs, (h,) = rnnscan.rnn(
        running_sum_aliased,
        fw.asarray(seq(X)),
        [fw.asarray(h0(5))],
        mask=fw.asarray(np.array([[0, 0, 1, 0]], bool)),
        unroll=unroll,
        zero_output_for_mask=zero,
    )
    np.testing.assert_allclose(fw.to_numpy(outputs)[0, :, 0], [0, 0, 8, 0 if zero else 8])
    np.testing.assert_allclose(fw.to_numpy(last)[0, 0], 0 if zero else 8)
    np.testing.assert_allclose(fw.to_numpy(h)[0, 0], 8)


@pytest.mark.parametrize("zero", [False, True])
@pytest.mark.parametrize("aliased", [False, True])
def test_a_step_that_keeps_no_sample_is_not_computed_eagerly(backend, zero, aliased):
    """Eager loops read a concrete mask once and do not call the step where every sample
    is masked (its result would be discarded); the numbers are written out by hand.
    Traced loops (JAX) compute every step, with the same numbers."""
    fw = backend
    calls = []

    def step(x, states):
        calls.append(1)
        h = states[0] + x
        return (h, [h]) if aliased else (h * 10.0, [h])

    mask = np.array([[0, 1, 0, 1, 0, 0], [0, 1, 0, 0, 1, 0]], bool)  # steps 0, 2 and 5 keep no sample
    x = seq([1, 2, 3, 4, 5, 6], [10, 20, 30, 40, 50, 60])
    last, outputs, (h,) = rnnscan.rnn(
        step, fw.asarray(x), [fw.asarray(h0(0.5, 0))], mask=fw.asarray(mask), zero_output_for_mask=zero
    )
    states = [[0.5, 2.5, 2.5, 6.5, 6.5, 6.5], [0, 20, 20, 20, 70, 70]]
    scale = 1.0 if aliased else 10.0
    if zero:
        expected = np.where(mask, np.array(states) * scale, 0.0)
    else:  # a masked step repeats the previous output: zeros before the first kept step
        expected = np.array([[0, 2.5, 2.5, 6.5, 6.5, 6.5], [0, 20, 20, 20, 70, 70]]) * scale
    np.testing.assert_allclose(fw.to_numpy(outputs)[..., 0], expected)
    np.testing.assert_allclose(fw.to_numpy(last)[:, 0], expected[:, -1])
    np.testing.assert_allclose(fw.to_numpy(h)[:, 0], [6.5, 70])
    if fw.name != "jax":  # the first call (shapes, step 0) and steps 1, 3, 4
        assert len(calls) == 4, len(calls)
