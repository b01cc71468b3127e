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


# -- the backward pass keeps pre-activations only (backends/_jax_residuals.py) -------------


def _lstm_problem(rng, batch=4, time=9, d=3, units=5):
    x = jnp.asarray(rng.standard_normal((batch, time, d)))
    h0, c0 = (jnp.asarray(rng.standard_normal((batch, units))) for _ in range(2))
    weights = (
        jnp.asarray(rng.standard_normal((d, 4 * units)) * 0.5),
        jnp.asarray(rng.standard_normal((units, 4 * units)) * 0.5),
        jnp.asarray(rng.standard_normal(4 * units) * 0.1),
    )
    mask = jnp.asarray(rng.random((batch, time)) > 0.3)
    return x, (h0, c0), weights, mask


def _lstm_step(weights):
    kernel, recurrent, bias = weights

    def step(x_t, states):
        h, c = states[0], states[1]
        i, f, g, o = jnp.split(x_t @ kernel + h @ recurrent + bias, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return h, [h, c]

    return step


def _lstm_loss(x, states, weights, mask, **kwargs):
    last, outputs, (h, c) = rnnscan.rnn(_lstm_step(weights), x, list(states), mask=mask, **kwargs)
    return jnp.sum(outputs**2) + jnp.sum(jnp.sin(last)) + jnp.sum(c * h)


@pytest.fixture
def reference_residuals(monkeypatch):
    """Run the JAX scan with its plain body (every intermediate kept): the reference."""
    from rnnscan.backends.jax import JaxBackend

    monkeypatch.setattr(JaxBackend, "lean_residuals", False)


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("remat", [False, 3])
def test_lean_residuals_give_the_reference_gradients(rng, request, monkeypatch, go_backwards, remat):
    from rnnscan.backends.jax import JaxBackend

    with jax.enable_x64(True):
        x, states, weights, mask = _lstm_problem(rng)
        kwargs = dict(go_backwards=go_backwards, remat=remat, zero_output_for_mask=True)
        grad = jax.jit(jax.value_and_grad(lambda *a: _lstm_loss(*a, mask, **kwargs), argnums=(0, 1, 2)))
        lean = grad(x, states, weights)
        monkeypatch.setattr(JaxBackend, "lean_residuals", False)
        plain = jax.jit(jax.value_and_grad(lambda *a: _lstm_loss(*a, mask, **kwargs), argnums=(0, 1, 2)))(
            x, states, weights
        )
    for a, b in zip(jax.tree.leaves(lean), jax.tree.leaves(plain)):
        assert a.dtype == b.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)


def test_lean_residuals_give_the_reference_hessian_and_vmap(rng, monkeypatch):
    """Forward-over-reverse (jax.hessian) and vmap of a gradient see through the checkpoint."""
    from rnnscan.backends.jax import JaxBackend

    with jax.enable_x64(True):
        x, states, weights, mask = _lstm_problem(rng, batch=2, time=4, d=2, units=2)

        def loss(bias, x):
            return _lstm_loss(x, states, (weights[0], weights[1], bias), mask)

        def both():
            hessian = jax.hessian(loss)(weights[2], x)
            per_sample = jax.vmap(jax.grad(loss), in_axes=(None, 0))(weights[2], jnp.stack([x, 2 * x]))
            return hessian, per_sample

        lean = both()
        monkeypatch.setattr(JaxBackend, "lean_residuals", False)
        plain = both()
    for a, b in zip(jax.tree.leaves(lean), jax.tree.leaves(plain)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-11, atol=1e-12)


def _residual_bytes(rng):
    x, states, weights, mask = (jax.tree.map(lambda a: a.astype(jnp.float32), p) for p in _lstm_problem(rng, time=50))
    _, vjp = jax.vjp(lambda w: _lstm_loss(x, states, w, mask), weights)
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(vjp)), x.shape, states[0].shape


def test_lean_residuals_keep_the_pre_activations_and_the_inputs(rng, request):
    lean, (batch, time, d), (_, units) = _residual_bytes(rng)
    request.getfixturevalue("reference_residuals")
    plain, _, _ = _residual_bytes(rng)
    # per step, float32: the pre-activations, h and c, x_t, the output (the loss squares it); two bool masks
    per_step = 4 * batch * (4 * units + 2 * units + d + units) + 2 * batch
    assert lean <= time * per_step + 1024, (lean, time * per_step)
    assert lean < 0.6 * plain, (lean, plain)


def test_pre_activations_are_the_gate_slices_of_an_lstm_step(rng):
    from rnnscan.backends import _jax_residuals

    x, (h, c), weights, _ = _lstm_problem(rng)
    step = _lstm_step(weights)
    jaxpr = jax.make_jaxpr(step)(x[:, 0], [h, c]).jaxpr
    kept = _jax_residuals.pre_activations(jaxpr)
    assert sorted(v.aval.shape for v in kept) == [h.shape] * 4
    split = next(e for e in jaxpr.eqns if e.primitive.name == "split")
    assert set(split.outvars) == kept


def test_lean_residuals_leave_a_step_they_would_recompute_at_a_cost_as_it_is(rng):
    """No products, effects, an inner loop, a product inside a nested jit: the body itself."""
    from rnnscan.backends import _jax_residuals

    h = jnp.asarray(rng.standard_normal((3, 4)))
    w = jnp.asarray(rng.standard_normal((4, 4)))

    def elementwise(carry, x_t):
        return jnp.tanh(carry + x_t), []

    def printing(carry, x_t):
        jax.debug.print("{}", carry[0, 0])
        return jnp.tanh(carry @ w + x_t), []

    def inner_loop(carry, x_t):
        return jax.lax.fori_loop(0, 3, lambda _, c: jnp.tanh(c @ w + x_t), carry), []

    def nested_product(carry, x_t):
        return jax.jit(lambda c: jnp.tanh(c @ w))(carry) + x_t, []

    def lean_one(carry, x_t):
        return jnp.tanh(carry @ w + x_t), []

    for body in (elementwise, printing, inner_loop, nested_product):
        assert _jax_residuals.lean(body, h, h) is body, body.__name__
    assert _jax_residuals.lean(lean_one, h, h) is not lean_one
