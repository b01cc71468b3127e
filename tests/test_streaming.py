"""Streaming: a sequence fed in chunks, the states carried from chunk to chunk (Keras's
``stateful=True`` contract), gives the one-pass results, on every backend (docs/export.md).

Only the states are carried, as Keras carries them: a masked step's output repeats the previous
*output*, which a new chunk does not know (it starts from zeros). So the states always agree, and
the outputs where no masked step opens a chunk, and always with ``zero_output_for_mask``.
"""

from __future__ import annotations

import numpy as np
import pytest

import rnnscan

B, T, D, U = 3, 9, 2, 4
CHUNKS = (4, 1, 4)  # unequal, and one of a single step


def _step(fw, w, u):
    def step(x_t, states):
        h, c = states
        c = fw.tanh(x_t @ w + h @ u) + 0.5 * c
        h = fw.sigmoid(c)
        return h, [h, c]

    return step


def _streamed(fw, step, x, states, mask, **kwargs):
    """``rnn`` over the chunks of ``x`` in turn: (outputs per chunk concatenated, last output, states)."""
    outputs, start = [], 0
    for size in CHUNKS:
        part = slice(start, start + size)
        chunk_mask = None if mask is None else fw.asarray(mask[:, part])
        last, out, states = rnnscan.rnn(step, fw.asarray(x[:, part]), states, mask=chunk_mask, **kwargs)
        outputs.append(fw.to_numpy(out))
        start += size
    return np.concatenate(outputs, 1), fw.to_numpy(last), [fw.to_numpy(s) for s in states]


@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "mask"])
@pytest.mark.parametrize("zero", [False, True], ids=["repeat", "zero_output_for_mask"])
def test_chunks_with_carried_states_give_the_one_pass_results(backend, rng, masked, zero):
    w, u = rng.normal(size=(D, U)).astype("float32"), rng.normal(size=(U, U)).astype("float32")
    step = _step(backend, backend.asarray(w), backend.asarray(u))
    x = rng.normal(size=(B, T, D)).astype("float32")
    h0, c0 = (rng.normal(size=(B, U)).astype("float32") for _ in range(2))
    mask = rng.random((B, T)) > 0.3 if masked else None
    states = [backend.asarray(h0), backend.asarray(c0)]

    last, outputs, final = rnnscan.rnn(
        step,
        backend.asarray(x),
        states,
        mask=None if mask is None else backend.asarray(mask),
        zero_output_for_mask=zero,
    )
    got_outputs, got_last, got_final = _streamed(backend, step, x, states, mask, zero_output_for_mask=zero)

    for got, expected in zip(got_final, final):
        np.testing.assert_allclose(got, backend.to_numpy(expected), rtol=1e-5, atol=1e-6)
    opens_masked = masked and not all(mask[:, start].all() for start in np.cumsum((0,) + CHUNKS[:-1]))
    if zero or not opens_masked:
        np.testing.assert_allclose(got_outputs, backend.to_numpy(outputs), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got_last, backend.to_numpy(last), rtol=1e-5, atol=1e-6)
