"""Gradients through rnn() against float64 central finite differences, on every
differentiable backend (JAX, PyTorch, TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest

import rnnscan

from cases import gradient_problem
from frameworks import Framework, float64, gradient


def make_loss(fw: Framework, rng: np.random.Generator, mask: np.ndarray, **kwargs):
    """A scalar of every output, the last output and the final states, weighted at random."""
    r_out = fw.asarray(rng.standard_normal((2, 5, 4)))
    r_last = fw.asarray(rng.standard_normal((2, 4)))
    r_state = fw.asarray(rng.standard_normal((2, 4)))
    c = fw.asarray(rng.standard_normal((2, 4)) * 0.3)

    def loss(x, h0, w, u):
        def step(x_t, states):
            h, const = states
            h = fw.tanh(x_t @ w + h @ u + const)
            return h * 1.5, [h]

        last, outputs, (h,) = rnnscan.rnn(step, x, [h0], mask=fw.asarray(mask), constants=[c], **kwargs)
        return fw.sum(outputs * r_out) + fw.sum(last * r_last) + fw.sum(h * r_state)

    return loss


@pytest.mark.parametrize("unroll", [False, True], ids=["scan", "unroll"])
@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "back"])
@pytest.mark.parametrize("zero_output", [False, True], ids=["keep", "zero"])
def test_gradient_matches_finite_differences(diff_backend, rng, unroll, go_backwards, zero_output):
    fw = diff_backend
    with float64(fw):
        params, mask = gradient_problem(rng)
        loss = make_loss(fw, rng, mask, unroll=unroll, go_backwards=go_backwards, zero_output_for_mask=zero_output)
        grads = gradient(fw, loss, params)

        def value(ps):
            return float(fw.to_numpy(loss(*[fw.asarray(p) for p in ps])))

        eps = 1e-6
        for _ in range(4):
            direction = [rng.standard_normal(p.shape) for p in params]
            plus = value([p + eps * d for p, d in zip(params, direction)])
            minus = value([p - eps * d for p, d in zip(params, direction)])
            numeric = (plus - minus) / (2 * eps)
            analytic = sum(float((g * d).sum()) for g, d in zip(grads, direction))
            np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7)
        assert all(g.dtype == np.float64 for g in grads)
        # Masked-out input steps get no gradient from a step function that never ran on them.
        masked = ~mask
        assert np.all(grads[0][masked] == 0.0)
