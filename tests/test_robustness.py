"""Robustness: long sequences, repeated and concurrent calls, NaN and inf.

Memory is measured as the process's resident set size (psutil), its peak
sampled by a thread every millisecond. The allowances are stated next to each
assertion; what a run measured is printed (``pytest -s``). No assertion compares
a duration with a wall-clock target; the one timing assertion compares compile
times at a small and a large number of steps, with a generous factor.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
import psutil
import pytest

import rnnscan

from frameworks import Framework, framework

MiB = 2**20
LONG = 100_000
BATCH, DIM, UNITS = 2, 3, 4


# -- helpers --------------------------------------------------------------------


class Peak:
    """Peak resident memory above the level when the block was entered."""

    def __init__(self) -> None:
        self.growth = 0


@contextmanager
def peak_rss() -> Iterator[Peak]:
    process = psutil.Process()
    gc.collect()
    base = process.memory_info().rss
    peak = Peak()
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak.growth = max(peak.growth, process.memory_info().rss - base)
            done.wait(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()
        peak.growth = max(peak.growth, process.memory_info().rss - base)


def weights(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return (
        (rng.standard_normal((DIM, UNITS)) * 0.5).astype(np.float32),
        (rng.standard_normal((UNITS, UNITS)) * 0.3).astype(np.float32),
    )


def tanh_step(fw: Framework, w: np.ndarray, u: np.ndarray) -> Callable[..., Any]:
    w, u = fw.asarray(w), fw.asarray(u)

    def step(x: Any, states: tuple[Any, ...]) -> Any:
        h = fw.tanh(x @ w + states[0] @ u)
        return h, [h]

    return step


def numpy_reference(x: np.ndarray, h: np.ndarray, keep: np.ndarray, w: np.ndarray, u: np.ndarray) -> Any:
    """The masked tanh RNN, step by step in float64: (last output, outputs, last state)."""
    h = h.astype(np.float64)
    out = np.zeros_like(h)
    outputs = np.empty((x.shape[1], *h.shape))
    for t in range(x.shape[1]):
        new = np.tanh(x[:, t] @ w + h @ u)
        k = keep[:, t, None]
        h, out = np.where(k, new, h), np.where(k, new, out)
        outputs[t] = out
    return out, np.swapaxes(outputs, 0, 1), h


def long_call(fw: Framework, time_steps: int, keep_all: bool, rng: np.random.Generator) -> tuple[Any, Any, int]:
    """rnnscan on a (2, time, 3) sequence with a random mask, unroll=False.

    Eager on NumPy, PyTorch and JAX; in a ``tf.function`` on TensorFlow (its graph
    loop: the eager TensorFlow loop runs op by op, about 1 ms a step). Returns the
    NumPy data, the NumPy result and the bytes of inputs plus mask.
    """
    w, u = weights(rng)
    x = rng.standard_normal((BATCH, time_steps, DIM)).astype(np.float32)
    h0 = rng.standard_normal((BATCH, UNITS)).astype(np.float32)
    keep = rng.random((BATCH, time_steps)) > 0.3
    step = tanh_step(fw, w, u)
    args = fw.asarray(x), [fw.asarray(h0)], fw.asarray(keep)

    def call(x: Any, states: Any, mask: Any) -> Any:
        return rnnscan.rnn(step, x, states, mask=mask, return_all_outputs=keep_all)

    if fw.name == "tensorflow":
        import tensorflow as tf

        call = tf.function(call)
    result = fw.tree_numpy(call(*args))
    return (x, h0, keep, w, u), result, x.nbytes + keep.nbytes


# -- long sequences -----------------------------------------------------------


def test_long_sequence(backend: Framework, rng: np.random.Generator) -> None:
    """T = 100,000 runs (no recursion), gives tf-keras's numbers and keeps memory near the outputs'.

    Allowance: the peak memory growth of the call, above that of the same call at
    T = 1,000, stays under 2x the outputs' bytes (the per-step outputs and their
    stacked copy) + 2x the inputs' and mask's bytes (a transposed copy) + 1 KiB
    per step (the array object each kept step output is until the one stack:
    about 0.2 KiB for NumPy, 0.5 KiB for PyTorch) + 16 MiB.
    """
    long_call(backend, 1000, True, rng)  # warm up: first-use costs are not T's
    with peak_rss() as small:
        long_call(backend, 1000, True, rng)
    with peak_rss() as large:
        data, (last, outputs, states), in_bytes = long_call(backend, LONG, True, rng)
    e_last, e_outputs, e_state = numpy_reference(*data)
    assert outputs.shape == (BATCH, LONG, UNITS)
    np.testing.assert_allclose(outputs, e_outputs, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(last, e_last, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(states[0], e_state, rtol=1e-4, atol=1e-5)
    growth = large.growth - small.growth
    allowance = 2 * outputs.nbytes + 2 * in_bytes + 1024 * LONG + 16 * MiB
    print(
        f"\n{backend.name}: T={LONG} with all outputs: peak growth {growth / MiB:.1f} MiB "
        f"(outputs {outputs.nbytes / MiB:.1f} MiB, allowance {allowance / MiB:.1f} MiB)"
    )
    assert growth <= allowance


def test_long_sequence_memory_flat(backend: Framework, rng: np.random.Generator) -> None:
    """Without outputs kept (return_all_outputs=False), memory does not grow with T.

    Allowance: peak growth at T = 100,000 above that at T = 1,000 under 2x the
    inputs' and mask's bytes (a transposed copy of them; 2.6 MiB here) + 16 MiB, plus,
    on TensorFlow, its TensorArrays' per-step tensors.
    A loop keeping one small array object per step (>= 100 bytes each) would
    exceed it; unstacking the whole time axis at once cost 100 MiB on PyTorch.
    """
    long_call(backend, 1000, False, rng)  # warm up
    with peak_rss() as small:
        long_call(backend, 1000, False, rng)
    with peak_rss() as large:
        data, (last, outputs, states), in_bytes = long_call(backend, LONG, False, rng)
    e_last, _, e_state = numpy_reference(*data)
    assert outputs.shape == (BATCH, 1, UNITS)
    np.testing.assert_allclose(last, e_last, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(states[0], e_state, rtol=1e-4, atol=1e-5)
    growth = large.growth - small.growth
    allowance = 2 * in_bytes + 16 * MiB
    if backend.name == "tensorflow":
        # TensorFlow's loop reads each input leaf (here x and the mask) from a TensorArray,
        # which holds one tensor per step: a handle, a buffer header and a 64-byte aligned
        # buffer, under 192 bytes (26 MiB measured for the two at T=100,000, TF 2.21)
        allowance += 2 * LONG * 192
    print(
        f"\n{backend.name}: T={LONG}, last output only: peak growth {growth / MiB:.1f} MiB "
        f"(allowance {allowance / MiB:.1f} MiB)"
    )
    assert growth <= allowance


# -- compile time does not grow with T (unroll=False) ------------------------------


def _compile_jax(time_steps: int) -> tuple[float, int]:
    import jax
    import jax.numpy as jnp

    w, u = weights(np.random.default_rng(0))
    step = tanh_step(framework("jax"), w, u)

    def f(x: Any, h: Any, m: Any) -> Any:
        return rnnscan.rnn(step, x, [h], mask=m)

    specs = (
        jax.ShapeDtypeStruct((BATCH, time_steps, DIM), jnp.float32),
        jax.ShapeDtypeStruct((BATCH, UNITS), jnp.float32),
        jax.ShapeDtypeStruct((BATCH, time_steps), jnp.bool_),
    )
    start = time.perf_counter()
    jax.jit(f).lower(*specs).compile()
    seconds = time.perf_counter() - start
    return seconds, len(jax.make_jaxpr(f)(*specs).jaxpr.eqns)


def _compile_tf(time_steps: int) -> tuple[float, int]:
    import tensorflow as tf

    w, u = weights(np.random.default_rng(0))
    step = tanh_step(framework("tensorflow"), w, u)

    @tf.function(jit_compile=False)
    def f(x: Any, h: Any, m: Any) -> Any:
        return rnnscan.rnn(step, x, [h], mask=m)

    start = time.perf_counter()
    concrete = f.get_concrete_function(
        tf.TensorSpec((BATCH, time_steps, DIM), tf.float32),
        tf.TensorSpec((BATCH, UNITS), tf.float32),
        tf.TensorSpec((BATCH, time_steps), tf.bool),
    )
    seconds = time.perf_counter() - start
    return seconds, len(concrete.graph.get_operations())


@pytest.mark.parametrize("compile_", [_compile_jax, _compile_tf], ids=["jax.jit", "tf.function"])
def test_compile_time_does_not_grow_with_time(compile_: Callable[[int], tuple[float, int]]) -> None:
    """unroll=False builds one loop: the program (jaxpr equations, graph ops) is the same at
    T = 10 and T = 100,000, and compiling it takes no more than 5x as long + 2 s."""
    compile_(20)  # warm up: first-use costs are not T's
    _, ops_medium = compile_(1000)  # fails fast if the loop were unrolled
    small_s, ops_small = compile_(10)
    assert ops_medium == ops_small
    large_s, ops_large = compile_(LONG)
    print(f"\n{compile_.__name__}: T=10 {small_s:.3f} s, T={LONG} {large_s:.3f} s; {ops_small} ops at both")
    assert ops_large == ops_small
    assert large_s <= 5 * small_s + 2.0


# -- repeated and concurrent calls ---------------------------------------------


def _small_call(fw: Framework, rng: np.random.Generator, w: np.ndarray, u: np.ndarray) -> Any:
    """One small call with fresh data and a fresh step function."""
    x = fw.asarray(rng.standard_normal((BATCH, 5, DIM)).astype(np.float32))
    h = fw.asarray(rng.standard_normal((BATCH, UNITS)).astype(np.float32))
    mask = fw.asarray(rng.random((BATCH, 5)) > 0.3)
    return rnnscan.rnn(tanh_step(fw, w, u), x, [h], mask=mask)


def test_repeated_calls_leave_memory_flat(backend: Framework, rng: np.random.Generator) -> None:
    """1,000 calls in a loop (fresh data and step function each) grow memory by at most 8 MiB
    (8 KiB a call) after 50 warm-up calls.

    On JAX each eager call traces and compiles its scan (about 0.2 s), so the 1,000
    calls go through one ``jax.jit``-compiled function taking the step's weights as
    arguments, and 60 eager calls, each compiling, are held to the same 8 MiB
    (before rnnscan ran its eager scan under a fresh jit, each leaked 1.8 MB in
    JAX's primitive cache).
    """
    w, u = weights(rng)
    process = psutil.Process()
    calls: list[tuple[Callable[[], Any], int]] = []
    if backend.name == "jax":
        import jax

        def jitted(x: Any, h: Any, mask: Any, w: Any, u: Any) -> Any:
            return rnnscan.rnn(tanh_step(backend, w, u), x, [h], mask=mask)

        run = jax.jit(jitted)

        def compiled() -> Any:
            x = rng.standard_normal((BATCH, 5, DIM)).astype(np.float32)
            h = rng.standard_normal((BATCH, UNITS)).astype(np.float32)
            return run(x, h, rng.random((BATCH, 5)) > 0.3, w, u)

        calls += [(compiled, 1000), (lambda: _small_call(backend, rng, w, u), 60)]
    else:
        calls.append((lambda: _small_call(backend, rng, w, u), 1000))
    for call, n in calls:
        for _ in range(50 if n == 1000 else 5):
            call()
        gc.collect()
        before = process.memory_info().rss
        for _ in range(n):
            backend.tree_numpy(call())
        gc.collect()
        growth = process.memory_info().rss - before
        print(f"\n{backend.name}: {n} calls: memory growth {growth / MiB:.2f} MiB (allowance 8 MiB)")
        assert growth <= 8 * MiB


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_concurrent_calls_match_sequential(name: str, rng: np.random.Generator) -> None:
    """4 threads, 25 calls each, give exactly the results of the same calls made one after another."""
    fw = framework(name)
    jobs = []
    for _ in range(100):
        w, u = weights(rng)
        x = rng.standard_normal((BATCH, 7, DIM)).astype(np.float32)
        h = rng.standard_normal((BATCH, UNITS)).astype(np.float32)
        keep = rng.random((BATCH, 7)) > 0.3
        jobs.append((w, u, x, h, keep, bool(rng.integers(2)), bool(rng.integers(2))))

    def job(args: tuple[Any, ...]) -> Any:
        w, u, x, h, keep, back, unroll = args
        result = rnnscan.rnn(
            tanh_step(fw, w, u), fw.asarray(x), [fw.asarray(h)], mask=fw.asarray(keep), go_backwards=back, unroll=unroll
        )
        return fw.tree_numpy(result)

    sequential = [job(a) for a in jobs]
    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(job, jobs))
    for (s_last, s_out, s_states), (c_last, c_out, c_states) in zip(sequential, concurrent):
        np.testing.assert_array_equal(c_last, s_last)
        np.testing.assert_array_equal(c_out, s_out)
        np.testing.assert_array_equal(c_states[0], s_states[0])


# -- NaN and inf ---------------------------------------------------------------


def _leaky_reference(x: np.ndarray, h: np.ndarray, keep: np.ndarray, zero_output: bool) -> Any:
    out = np.zeros_like(h)
    outputs = []
    for t in range(x.shape[1]):
        new = h * 0.5 + x[:, t]
        k = keep[:, t, None]
        h = np.where(k, new, h)
        out = np.where(k, new, 0.0 if zero_output else out)
        outputs.append(out)
    return out, np.stack(outputs, 1), h


@pytest.mark.parametrize("unroll", [False, True], ids=["scan", "unroll"])
@pytest.mark.parametrize("zero_output", [False, True], ids=["keep_output", "zero_output"])
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_nan_and_inf(
    backend: Framework, rng: np.random.Generator, masked: bool, zero_output: bool, unroll: bool
) -> None:
    """A step function's NaN and inf pass through unchanged; a NaN or inf computed at a masked
    step never reaches a kept state or output.

    h' = 0.5 h + x_t, output h'. Sample 0 gets +inf at step 2, sample 1 NaN at
    step 3, sample 2 -inf at step 1 and NaN at step 4. Masked, exactly those steps
    are masked out (and sample 3 is all masked, its inputs all NaN): every result is
    then finite, and equal to the reference that skips those steps.
    """
    time_steps = 6
    x = rng.standard_normal((4, time_steps, DIM)).astype(np.float32)
    h0 = rng.standard_normal((4, DIM)).astype(np.float32)
    bad = [(0, 2, np.inf), (1, 3, np.nan), (2, 1, -np.inf), (2, 4, np.nan)]
    keep = np.ones((4, time_steps), bool)
    for b, t, value in bad:
        x[b, t, 1] = value
        keep[b, t] = not masked
    if masked:
        x[3] = np.nan
        keep[3] = False

    def step(x_t: Any, states: tuple[Any, ...]) -> Any:
        h = states[0] * 0.5 + x_t
        return h, [h]

    with np.errstate(invalid="ignore", over="ignore"):
        expected = _leaky_reference(x, h0, keep, zero_output)
    last, outputs, states = backend.tree_numpy(
        rnnscan.rnn(
            step,
            backend.asarray(x),
            [backend.asarray(h0)],
            mask=backend.asarray(keep) if masked else None,
            zero_output_for_mask=zero_output,
            unroll=unroll,
        )
    )
    for actual, wanted in zip((last, outputs, states[0]), expected):
        np.testing.assert_array_equal(np.isnan(actual), np.isnan(wanted))
        np.testing.assert_array_equal(np.isposinf(actual), np.isposinf(wanted))
        np.testing.assert_array_equal(np.isneginf(actual), np.isneginf(wanted))
        np.testing.assert_allclose(actual, wanted, rtol=1e-6, atol=1e-6)  # NaN == NaN here
        if masked:
            assert np.isfinite(actual).all()
    if not masked:
        # Unchanged, not hidden: the non-finite values are where the step function put them.
        assert np.isposinf(outputs[0, 2, 1]) and np.isnan(outputs[1, 3, 1]) and np.isneginf(outputs[2, 1, 1])
        assert np.isfinite(outputs[:, :1]).all() and np.isfinite(outputs[3]).all()
