"""``rnn(..., parallel=True)`` against its reference, the sequential loop (``parallel=False``), on every
backend: values on a grid of configurations, gradients (finite differences and the loop's), the Newton
iteration count, the fallback's warning, a step that mixes its units, the errors, and the transforms."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

import rnnscan
from rnnscan import _parallel

from frameworks import Framework, float64, gradient

B, T, D, U = 3, 11, 3, 4  # T: not a power of two
TOL = dict(rtol=2e-5, atol=2e-5)


def barrier(fw: Framework) -> None:
    """JAX reports from a callback when the computation runs: wait for it."""
    if fw.name == "jax":
        import jax

        jax.effects_barrier()


# -- the cells: elementwise in their states ----------------------------------------------------


def weights(rng: np.random.Generator, dtype: str = "float32") -> dict[str, np.ndarray]:
    return {
        "w": (rng.standard_normal((D, 4 * U)) * 0.6).astype(dtype),
        "v": (rng.standard_normal((4, U)) * 0.5).astype(dtype),
    }


def make_cell(fw: Framework, name: str, p: dict) -> tuple:
    """``(step, initial states from h0 (batch, U), whether it takes the constant)`` of cell ``name``."""
    w, v = fw.asarray(p["w"]), fw.asarray(p["v"])

    def gates(x_t):
        z = x_t @ w
        return z[:, :U], z[:, U : 2 * U], z[:, 2 * U : 3 * U], z[:, 3 * U :]

    if name == "mingru":  # linear in h: one Newton iteration

        def step(x_t, states):
            a, b, _, _ = gates(x_t)
            z = fw.sigmoid(a)
            h = (1 - z) * states[0] + z * b
            return h, [h]

        return step, lambda h0: [h0], False
    if name == "gru":  # a diagonal GRU

        def step(x_t, states):
            (h,) = states
            a, b, c, _ = gates(x_t)
            z = fw.sigmoid(a + v[0] * h)
            r = fw.sigmoid(b + v[1] * h)
            n = fw.tanh(c + r * h * v[2])
            h = z * h + (1 - z) * n
            return h, [h]

        return step, lambda h0: [h0], False
    if name == "lstm":  # two states (h, c) of one shape, elementwise in each other

        def step(x_t, states):
            h, c = states
            a, b, g, o = gates(x_t)
            f = fw.sigmoid(a + v[0] * h + 1.0)
            i = fw.sigmoid(b + v[1] * h)
            c = f * c + i * fw.tanh(g + v[2] * h)
            h = fw.sigmoid(o + v[3] * c) * fw.tanh(c)
            return h, [h, c]

        return step, lambda h0: [h0, h0 * 0.5], False
    if name == "constant":  # fed a per-sample constant; its output is not its state

        def step(x_t, states):
            h, k = states
            a, _, _, _ = gates(x_t)
            h = fw.tanh(a + v[0] * h + k)
            return h * 2.0 - k, [h]

        return step, lambda h0: [h0], True
    if name == "nested":  # a dict state of two leaves of one shape; a dict output

        def step(x_t, states):
            (s,) = states
            a, b, _, _ = gates(x_t)
            new_a = fw.tanh(a + v[0] * s["a"] + 0.5 * s["b"])
            new_b = fw.sigmoid(b) * s["b"] + 0.3 * fw.tanh(s["a"])
            return {"y": new_a * new_b, "b": new_b}, [{"a": new_a, "b": new_b}]

        return step, lambda h0: [{"a": h0, "b": h0 * 0.5}], False
    raise ValueError(name)


@dataclasses.dataclass(frozen=True)
class Call:
    mask: str = "none"  # none, random, all_masked, first_masked
    input_length: bool = False
    go_backwards: bool = False
    zero_output_for_mask: bool = False
    return_all_outputs: bool = True
    time_major: bool = False


CALLS = {
    "plain": Call(),
    "random_mask": Call(mask="random"),
    "all_masked": Call(mask="all_masked"),
    "first_masked_back": Call(mask="first_masked", go_backwards=True),
    "zero_output": Call(mask="random", zero_output_for_mask=True),
    "lengths_back": Call(input_length=True, go_backwards=True),
    "last_time_major": Call(mask="random", return_all_outputs=False, time_major=True),
}
GRID = [("gru", c) for c in CALLS] + [
    (cell, c) for cell in ("mingru", "lstm", "constant", "nested") for c in ("plain", "random_mask", "zero_output")
]


def run_both(fw: Framework, rng: np.random.Generator, cell: str, call: Call, dtype: str = "float32", **kwargs):
    """``(loop's result, parallel result, the parallel call's records)`` as NumPy trees."""
    step, states, takes_constant = make_cell(fw, cell, weights(rng, dtype))
    x = rng.standard_normal((B, T, D)).astype(dtype)
    h0 = rng.standard_normal((B, U)).astype(dtype) * 0.5
    mask = rng.random((B, T)) > 0.35
    if call.mask == "all_masked":
        mask[:] = False
    elif call.mask == "first_masked":
        mask[:, 0] = False
    args = dict(
        go_backwards=call.go_backwards,
        zero_output_for_mask=call.zero_output_for_mask,
        return_all_outputs=call.return_all_outputs,
        time_major=call.time_major,
    )
    if call.mask != "none":
        args["mask"] = fw.asarray(mask.T if call.time_major else mask)
    if call.input_length:
        args["input_length"] = fw.asarray(rng.integers(0, T + 1, B))
    if takes_constant:
        args["constants"] = [fw.asarray(rng.standard_normal((B, U)).astype(dtype))]
    inputs = fw.asarray(x.transpose(1, 0, 2) if call.time_major else x)
    loop = rnnscan.rnn(step, inputs, states(fw.asarray(h0)), **args)
    with _parallel.recorded() as records:
        fast = rnnscan.rnn(step, inputs, states(fw.asarray(h0)), parallel=True, **args, **kwargs)
        barrier(fw)
    return fw.tree_numpy(loop), fw.tree_numpy(fast), records


def assert_trees_close(got, want, **tol) -> None:
    got_leaves, want_leaves = _leaves(got), _leaves(want)
    assert len(got_leaves) == len(want_leaves)
    for g, w in zip(got_leaves, want_leaves):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, **(tol or TOL))


def _leaves(tree) -> list:
    import optree

    return optree.tree_leaves(tree, none_is_leaf=False)


@pytest.mark.parametrize("cell, call", GRID, ids=[f"{cell}-{call}" for cell, call in GRID])
def test_matches_the_loop(backend, rng, cell, call):
    loop, fast, records = run_both(backend, rng, cell, CALLS[call])
    assert_trees_close(fast, loop)
    assert records and records[-1]["converged"] and records[-1]["elementwise"]
    assert records[-1]["iterations"] <= 8


def test_nested_inputs(backend, rng):
    fw = backend
    w = fw.asarray(rng.standard_normal((D, U)).astype("float32"))
    v = fw.asarray(rng.standard_normal(U).astype("float32") * 0.5)

    def step(x_t, states):
        h = fw.tanh(x_t["p"] @ w + x_t["q"] + v * states[0])
        return (h, h * 2.0), (h,)

    x = {"p": fw.asarray(rng.standard_normal((B, T, D)).astype("float32"))}
    x["q"] = fw.asarray(rng.standard_normal((B, T, U)).astype("float32"))
    h0 = fw.asarray(rng.standard_normal((B, U)).astype("float32"))
    mask = fw.asarray(rng.random((B, T)) > 0.4)
    loop = rnnscan.rnn(step, x, (h0,), mask=mask)
    fast = rnnscan.rnn(step, x, (h0,), mask=mask, parallel=True)
    assert_trees_close(fw.tree_numpy(fast), fw.tree_numpy(loop))


def test_linear_step_takes_one_newton_iteration(backend, rng):
    _, _, records = run_both(backend, rng, "mingru", CALLS["random_mask"])
    # autodiff: the exact Jacobian, one update and the check; NumPy's finite difference is close to it
    assert records[-1]["iterations"] == (1 if backend.differentiable else 2)


def test_float64_converges_tightly(backend, rng):
    with float64(backend):
        loop, fast, records = run_both(backend, rng, "lstm", CALLS["random_mask"], dtype="float64")
    assert_trees_close(fast, loop, rtol=1e-10, atol=1e-10)
    assert records[-1]["iterations"] <= 8


# -- the fallback, and a step that mixes its units ----------------------------------------------


def test_not_converged_warns_once_and_runs_the_loop(backend, rng):
    message = (
        "rnnscan.rnn: parallel=True did not converge within max_iterations=1 Newton iterations: the "
        "sequential loop ran instead."
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        loop, fast, records = run_both(backend, rng, "gru", CALLS["random_mask"], max_iterations=1)
        run_both(backend, rng, "gru", CALLS["random_mask"], max_iterations=1)
    assert_trees_close(fast, loop)
    assert records[-1] == {"iterations": 1, "converged": False, "elementwise": True}
    assert [str(w.message) for w in caught if w.category is RuntimeWarning] == [message]


def mixing_step(fw: Framework, rng: np.random.Generator, dtype: str = "float32"):
    w = fw.asarray(rng.standard_normal((D, U)).astype(dtype))
    u = fw.asarray((rng.standard_normal((U, U)) * 0.4).astype(dtype))

    def step(x_t, states):
        h = fw.tanh(x_t @ w + states[0] @ u)
        return h, [h]

    return step


def test_mixing_step_is_exact(backend, rng):
    """A dense ``h @ U``: on autodiff backends the probe sees it and the loop runs, with a warning;
    NumPy (no gradient to get right) iterates its quasi-Newton to the exact fixed point."""
    fw = backend
    step = mixing_step(fw, rng)
    x = fw.asarray(rng.standard_normal((B, T, D)).astype("float32"))
    h0 = fw.asarray(rng.standard_normal((B, U)).astype("float32"))
    loop = rnnscan.rnn(step, x, [h0])
    with warnings.catch_warnings(record=True) as caught, _parallel.recorded() as records:
        warnings.simplefilter("always")
        fast = rnnscan.rnn(step, x, [h0], parallel=True, max_iterations=T)
        barrier(fw)
    assert_trees_close(fw.tree_numpy(fast), fw.tree_numpy(loop))
    warned = [str(w.message) for w in caught if w.category is RuntimeWarning]
    if fw.differentiable:
        assert records[-1]["elementwise"] is False
        assert warned == [
            "rnnscan.rnn: parallel=True needs a step whose new states depend on its states elementwise (each "
            "unit on the same unit of each state of its shape); this step mixes them: the sequential loop ran "
            "instead."
        ]
    else:
        assert records[-1]["converged"] and warned == []


# -- gradients ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["gru", "lstm", "constant", "mixing"])
def test_gradients_match_the_loop_and_finite_differences(diff_backend, rng, cell):
    fw = diff_backend
    with float64(fw), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mixing step's fallback
        p = weights(rng, "float64")
        x0 = rng.standard_normal((B, T, D))
        h00 = rng.standard_normal((B, U)) * 0.5
        mask = fw.asarray(rng.random((B, T)) > 0.3)
        r = rng.standard_normal((B, T, U))
        constant = fw.asarray(rng.standard_normal((B, U)))
        mixing = fw.asarray(rng.standard_normal((U, U)) * 0.4)

        def loss_of(parallel):
            def loss(x, h0, w, v):
                if cell == "mixing":
                    states, constants = [h0], None

                    def step(x_t, s):
                        h = fw.tanh(x_t @ w[:, :U] + s[0] @ mixing + v[0])
                        return h, [h]
                else:
                    step, make, takes = make_cell(fw, cell, {"w": w, "v": v})
                    states, constants = make(h0), ([constant] if takes else None)
                last, outputs, new = rnnscan.rnn(
                    step, x, states, mask=mask, constants=constants, go_backwards=True, parallel=parallel
                )
                return fw.sum(outputs * fw.asarray(r)) + fw.sum(last) + sum(fw.sum(s * s) for s in new)

            return loss

        params = [x0, h00, p["w"], p["v"]]
        want = gradient(fw, loss_of(False), params)
        got = gradient(fw, loss_of(True), params)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-8, atol=1e-9)

        def value(ps):
            return float(fw.to_numpy(loss_of(True)(*[fw.asarray(q) for q in ps])))

        eps = 1e-6
        direction = [rng.standard_normal(q.shape) for q in params]
        numeric = (value([q + eps * d for q, d in zip(params, direction)])) - value(
            [q - eps * d for q, d in zip(params, direction)]
        )
        analytic = sum(float((g * d).sum()) for g, d in zip(got, direction))
        np.testing.assert_allclose(analytic, numeric / (2 * eps), rtol=1e-6, atol=1e-7)


# -- errors ------------------------------------------------------------------------------------


def _identity_step(x_t, states):
    return states[0], [states[0]]


@pytest.mark.parametrize(
    "kwargs, kind, message",
    [
        (dict(parallel="yes"), TypeError, "`parallel` must be a bool; got str 'yes'."),
        (
            dict(max_iterations=4),
            ValueError,
            "`max_iterations` must be None when `parallel` is False (it is an option of parallel=True); "
            "got max_iterations=4.",
        ),
        (
            dict(parallel=True, max_iterations=0),
            ValueError,
            "`max_iterations` must be None or a positive int (the most Newton iterations); got int 0.",
        ),
        (
            dict(parallel=True, tolerance=-1.0),
            ValueError,
            "`tolerance` must be None or a positive float (the residual allowed, relative to 1 + max |state|); "
            "got float -1.0.",
        ),
        (
            dict(parallel=True, unroll=True),
            ValueError,
            "`unroll` must be False when `parallel=True` (no loop is left to unroll); got unroll=True.",
        ),
        (
            dict(parallel=True, remat=4),
            ValueError,
            "`remat` must be False when `parallel=True` (it keeps O(T) arrays, and no loop is left to "
            "segment); got remat=4.",
        ),
    ],
)
def test_errors(backend, rng, kwargs, kind, message):
    x = backend.asarray(rng.standard_normal((B, T, D)).astype("float32"))
    h0 = backend.asarray(rng.standard_normal((B, U)).astype("float32"))
    with pytest.raises(kind) as info:
        rnnscan.rnn(_identity_step, x, [h0], **kwargs)
    assert str(info.value) == f"rnnscan.rnn: {message}"


def test_integer_states_are_refused(backend, rng):
    x = backend.asarray(rng.standard_normal((B, T, D)).astype("float32"))
    h0 = backend.asarray(np.arange(B * U, dtype=np.int32).reshape(B, U))
    with pytest.raises(TypeError) as info:
        rnnscan.rnn(_identity_step, x, [h0], parallel=True)
    assert str(info.value).startswith(
        "rnnscan.rnn: `initial_states` must be floating arrays when `parallel=True` (their Jacobian is taken); got "
    )


# -- transforms --------------------------------------------------------------------------------


def gru_problem(name, rng):
    """Framework ``name``'s table, the GRU cell's weights, and inputs, an initial state and a mask
    in its arrays."""
    from frameworks import framework

    fw = framework(name)
    x = fw.asarray(rng.standard_normal((B, T, D)).astype("float32"))
    h0 = fw.asarray(rng.standard_normal((B, U)).astype("float32"))
    return fw, weights(rng), x, h0, fw.asarray(rng.random((B, T)) > 0.3)


def test_jax_jit_vmap_grad(rng):
    jax = pytest.importorskip("jax")
    from frameworks import framework

    fw = framework("jax")
    step, states, _ = make_cell(fw, "gru", weights(rng))
    x = fw.asarray(rng.standard_normal((2, B, T, D)).astype("float32"))
    h0 = fw.asarray(rng.standard_normal((B, U)).astype("float32"))
    mask = fw.asarray(rng.random((B, T)) > 0.3)

    def run(x, parallel):
        return rnnscan.rnn(step, x, states(h0), mask=mask, parallel=parallel)[1]

    want = jax.vmap(lambda x: run(x, False))(x)
    np.testing.assert_allclose(jax.jit(jax.vmap(lambda x: run(x, True)))(x), want, **TOL)
    np.testing.assert_allclose(jax.jit(lambda x: run(x, True))(x[0]), want[0], **TOL)
    grad = jax.jit(jax.grad(lambda x: (run(x, True) ** 2).sum()))(x[0])
    np.testing.assert_allclose(grad, jax.grad(lambda x: (run(x, False) ** 2).sum())(x[0]), rtol=1e-4, atol=1e-5)


def test_torch_func_grad_and_vmap(rng):
    torch = pytest.importorskip("torch")
    fw, p, x, h0, mask = gru_problem("torch", rng)

    def loss(w, parallel):
        step, states, _ = make_cell(fw, "gru", {"w": w, "v": p["v"]})
        return (rnnscan.rnn(step, x, states(h0), mask=mask, parallel=parallel)[1] ** 2).sum()

    w = torch.as_tensor(p["w"])
    got = torch.func.grad(lambda w: loss(w, True))(w)
    np.testing.assert_allclose(got.numpy(), torch.func.grad(lambda w: loss(w, False))(w).numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError) as info:
        torch.func.vmap(lambda w: loss(w, True))(torch.stack([w, w]))
    assert str(info.value).startswith("rnnscan.rnn: `parallel` must be False under torch.func.vmap")


def test_torch_compile_runs_the_solve_between_graph_breaks(rng):
    """Under ``torch.compile`` the Newton solve runs eagerly (Dynamo cannot trace ``torch.func.jvp`` of the
    batched step, and the iteration count is data-dependent): the same results and gradients."""
    torch = pytest.importorskip("torch")
    fw, p, x, h0, mask = gru_problem("torch", rng)
    w = torch.as_tensor(p["w"]).requires_grad_()

    def loss(parallel):
        step, states, _ = make_cell(fw, "gru", {"w": w, "v": p["v"]})
        return (rnnscan.rnn(step, x, states(h0), mask=mask, parallel=parallel)[1] ** 2).sum()

    with _parallel.recorded() as records:
        got = torch.compile(lambda: loss(True), backend="eager")()
    want = loss(False)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert records and records[-1]["converged"]
    (got_grad,), (want_grad,) = torch.autograd.grad(got, [w]), torch.autograd.grad(want, [w])
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-4, atol=1e-5)


def test_tf_function_and_gradient_tape(rng):
    tf = pytest.importorskip("tensorflow")
    fw, p, x, h0, mask = gru_problem("tensorflow", rng)
    w = tf.Variable(p["w"])

    def run(parallel):
        with tf.GradientTape() as tape:
            step, states, _ = make_cell(fw, "lstm", {"w": w, "v": p["v"]})  # reads w on the tape
            _, outputs, _ = rnnscan.rnn(step, x, states(h0), mask=mask, parallel=parallel)
            loss = tf.reduce_sum(outputs**2)
        return outputs, tape.gradient(loss, w)

    with _parallel.recorded() as records:
        got = tf.function(lambda: run(True))()
    want = run(False)
    for g, v in zip(got, want):
        np.testing.assert_allclose(g.numpy(), v.numpy(), rtol=1e-4, atol=1e-5)
    assert records and records[-1]["converged"]


# -- the benchmark -----------------------------------------------------------------------------


def test_bench_parallel_suite_runs(tmp_path, capsys):
    """``python -m rnnscan bench --suite parallel`` on a tiny grid: its rows in the one JSON schema."""
    import json

    from rnnscan import bench

    flags = ["--suite", "parallel", "--backends", "numpy", "--B", "1,2", "--T", "64", "--U", "8", "--repeats", "1"]
    assert bench.main([*flags, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "parallel.json").read_text())["rows"]
    assert [(r["impl"], r["workload"], r["B"], r["T"]) for r in rows] == [
        (impl, cell, batch, 64)
        for cell in ("diag-gru", "mingru")
        for batch in (1, 2)
        for impl in ("sequential rnn()", "rnnscan")
    ]
    for row in (r for r in rows if r["rnnscan"]):
        assert row["status"] == "ok" and row["extra"]["converged"] and row["max_rel_diff"] < 1e-4
        iterations = row["extra"]["iterations"]
        assert iterations == [2] if row["workload"] == "mingru" else 1 <= iterations[0] <= 8  # NumPy: a FD Jacobian
    assert "Newton iterations" in capsys.readouterr().out
