"""JAX specifics: jit and vmap give the eager numbers; dtypes are preserved."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnscan


def _problem(rng, batch=3, time=7, d=2, units=5):
    x = rng.standard_normal((batch, time, d)).astype(np.float32)
    h0 = rng.standard_normal((batch, units)).astype(np.float32)
    w = (rng.standard_normal((d, units)) * 0.5).astype(np.float32)
    u = (rng.standard_normal((units, units)) * 0.5).astype(np.float32)
    mask = rng.random((batch, time)) > 0.3
    return x, h0, w, u, mask


def _run(x, h0, w, u, mask, **kwargs):
    def step(x_t, states):
        h = jnp.tanh(x_t @ w + states[0] @ u)
        return h, [h]

    return rnnscan.rnn(step, x, [h0], mask=mask, **kwargs)


@pytest.mark.parametrize("unroll", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_jit_matches_eager(rng, unroll, go_backwards):
    args = [jnp.asarray(a) for a in _problem(rng)]
    eager = _run(*args, unroll=unroll, go_backwards=go_backwards)
    jitted = jax.jit(lambda *a: _run(*a, unroll=unroll, go_backwards=go_backwards))(*args)
    for e, j in zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(jitted)):
        np.testing.assert_allclose(np.asarray(j), np.asarray(e), rtol=1e-6, atol=1e-6)


def test_vmap_over_an_extra_leading_axis_matches_a_python_loop(rng):
    problems = [_problem(rng) for _ in range(4)]
    stacked = [jnp.asarray(np.stack(parts)) for parts in zip(*problems)]
    batched = jax.vmap(lambda *a: _run(*a, zero_output_for_mask=True))(*stacked)
    for i, problem in enumerate(problems):
        single = _run(*[jnp.asarray(a) for a in problem], zero_output_for_mask=True)
        for b, s in zip(jax.tree_util.tree_leaves(batched), jax.tree_util.tree_leaves(single)):
            np.testing.assert_allclose(np.asarray(b[i]), np.asarray(s), rtol=1e-6, atol=1e-6)


def test_grad_under_jit_matches_grad_eager(rng):
    x, h0, w, u, mask = (jnp.asarray(a) for a in _problem(rng))

    def loss(w, u):
        last, outputs, _ = _run(x, h0, w, u, mask, go_backwards=True)
        return jnp.sum(outputs**2) + jnp.sum(last)

    eager = jax.grad(loss, argnums=(0, 1))(w, u)
    jitted = jax.jit(jax.grad(loss, argnums=(0, 1)))(w, u)
    for e, j in zip(eager, jitted):
        np.testing.assert_allclose(np.asarray(j), np.asarray(e), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "float64"])
@pytest.mark.parametrize("unroll", [False, True])
def test_dtypes_are_preserved(rng, dtype, unroll):
    with jax.enable_x64(dtype == "float64"):
        x, h0, w, u, mask = (jnp.asarray(a) for a in _problem(rng))
        x, h0, w, u = (a.astype(dtype) for a in (x, h0, w, u))
        last, outputs, (h,) = _run(x, h0, w, u, mask, unroll=unroll)
        assert last.dtype == outputs.dtype == h.dtype == jnp.dtype(dtype)
        reference = _run(*(a.astype(np.float32) for a in (x, h0, w, u)), mask)[1]
        tol = {"float32": 1e-6, "float64": 1e-6, "float16": 2e-2, "bfloat16": 1e-1}[dtype]
        np.testing.assert_allclose(np.asarray(outputs, np.float32), np.asarray(reference), atol=tol, rtol=tol)


def test_numpy_mask_and_states_are_accepted_with_jax_inputs(rng):
    x, h0, w, u, mask = _problem(rng)
    mixed = _run(jnp.asarray(x), h0, w, u, mask)
    pure = _run(jnp.asarray(x), jnp.asarray(h0), w, u, jnp.asarray(mask))
    assert isinstance(mixed[0], jax.Array)
    np.testing.assert_allclose(np.asarray(mixed[1]), np.asarray(pure[1]), rtol=1e-6)


def test_scan_traces_the_step_function_a_bounded_number_of_times(rng):
    """lax.scan traces the body once; one more trace gives the output's shape (eval_shape)."""
    x, h0, w, u, mask = (jnp.asarray(a) for a in _problem(rng, time=50))
    traces = []

    def step(x_t, states):
        traces.append(1)
        h = jnp.tanh(x_t @ w + states[0] @ u)
        return h, [h]

    rnnscan.rnn(step, x, [h0], mask=mask)
    assert len(traces) <= 2
