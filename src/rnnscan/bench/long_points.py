"""The long-sequence suite's points, each run in a fresh worker (:mod:`.long`), so that its peak memory is its
own: an LSTM forward+backward with or without remat, XLA's figures for one compiled, or W1 against unroll=k.
Frameworks are imported inside the functions.

* LSTM (B=32, U=256, D=32, float32, ``return_all_outputs=False``): loss = sum of the last
  output, its gradient with respect to the weights ``W (D, 4U)``, ``U (U, 4U)``, ``b (4U,)``.
  JAX: ``jax.jit(jax.grad(loss))``, compiled ahead (its ``memory_analysis()``: no run needed);
  torch: eager, ``torch.autograd.grad``; TensorFlow: a ``tf.function`` of a ``GradientTape`` pass
  over ``tf.Variable`` weights.
* W1 (masked tanh SimpleRNN, B=32, D=16, U=64): forward and forward+backward with ``unroll=k``,
  built by the grid's harnesses (JAX jit, TF ``tf.function``, ``torch.compile`` fullgraph), the k
  values timed interleaved by the grid's :func:`.harness.run_problem`.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .._frameworks import ops
from .harness import Row, Settings, run_problem
from .peers import MODES, Impl, jax_harness, tensorflow_harness, torch_harness
from .workloads import lstm_step

BATCH, UNITS, FEATURES = 32, 256, 32
W1_BATCH, W1_UNITS = 32, 64


# -- memory ---------------------------------------------------------------------------


def rss_bytes() -> int | None:
    """This process's resident set size now (psutil, else /proc/self/statm; None if neither)."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        pass
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


def _malloc_trim() -> bool:
    """Hand the C heap's free memory back to the system (glibc's ``malloc_trim``); False where there is none."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def _maxrss_bytes() -> int:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in bytes (KiB on Linux, bytes on macOS)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class PeakRss:
    """The peak RSS growth of this process inside a ``with`` block.

    ``growth``: the largest RSS polled every ``interval`` s by a thread, minus the RSS at
    entry. ``maxrss_growth``: the growth of ``ru_maxrss`` over the block (a lower bound:
    zero unless the block goes above the process's earlier peak).
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.before = self.peak = 0
        self.maxrss_before = self.maxrss_after = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes() or 0)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self.before = self.peak = rss_bytes() or 0
        self.maxrss_before = _maxrss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes() or 0)
        self.maxrss_after = _maxrss_bytes()

    def summary(self) -> dict[str, Any]:
        return {
            "rss_before_bytes": self.before,
            "rss_peak_growth_bytes": self.peak - self.before,
            "maxrss_growth_bytes": self.maxrss_after - self.maxrss_before,
            "rss_method": f"peak of RSS polled every {self.interval * 1e3:g} ms minus RSS before the first call",
        }


# -- the LSTM workload ----------------------------------------------------------------


def lstm_arrays(time_steps: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs ``x (B, T, D)`` and weights, float32, deterministic in ``(seed, T)``."""
    rng = np.random.default_rng([seed, time_steps])
    return {
        "x": rng.standard_normal((BATCH, time_steps, FEATURES)).astype(np.float32),
        "W": (rng.standard_normal((FEATURES, 4 * UNITS)) / np.sqrt(FEATURES)).astype(np.float32),
        "U": (rng.standard_normal((UNITS, 4 * UNITS)) / np.sqrt(UNITS)).astype(np.float32),
        "b": (rng.standard_normal((4 * UNITS,)) * 0.1).astype(np.float32),
    }


WEIGHTS = ("W", "U", "b")


def lstm_jax(data: dict[str, np.ndarray], remat: bool | int) -> tuple[Callable[[], Any], dict[str, Any]]:
    """``(run, info)``: the compiled ``jax.grad``; ``info`` holds its ``memory_analysis()`` and compile time."""
    import jax
    import jax.numpy as jnp

    import rnnscan

    params = {k: jnp.asarray(data[k]) for k in WEIGHTS}
    x = jnp.asarray(data["x"])

    def loss(params: Any, x: Any) -> Any:
        zeros = jnp.zeros((BATCH, UNITS), jnp.float32)
        last, _, _ = rnnscan.rnn(
            lstm_step(ops("jax"), params), x, [zeros, zeros], return_all_outputs=False, remat=remat
        )
        return jnp.sum(last)

    start = time.perf_counter()
    compiled = jax.jit(jax.grad(loss)).lower(params, x).compile()
    info = {"compile_s": time.perf_counter() - start, **jax_memory(compiled)}

    def run() -> Any:
        grads = jax.block_until_ready(compiled(params, x))
        return [np.asarray(grads[k]) for k in WEIGHTS]

    return run, info


def jax_memory(compiled: Any) -> dict[str, Any]:
    """The compiled program's own account of its memory (XLA's ``memory_analysis()``)."""
    analysis = compiled.memory_analysis()
    names = ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes", "generated_code_size_in_bytes")
    return {f"xla_{name}": int(getattr(analysis, name)) for name in names if hasattr(analysis, name)}


def lstm_torch(data: dict[str, np.ndarray], remat: bool | int) -> tuple[Callable[[], Any], dict[str, Any]]:
    """``(run, info)``: one eager forward and ``torch.autograd.grad`` of the loss."""
    import torch

    import rnnscan

    params = {k: torch.from_numpy(data[k]).requires_grad_() for k in WEIGHTS}
    x = torch.from_numpy(data["x"])
    step = lstm_step(ops("torch"), params)

    def run() -> Any:
        zeros = torch.zeros((BATCH, UNITS))
        last, _, _ = rnnscan.rnn(step, x, [zeros, zeros], return_all_outputs=False, remat=remat)
        return [g.numpy() for g in torch.autograd.grad(last.sum(), list(params.values()))]

    return run, {"threads": torch.get_num_threads()}


def lstm_tensorflow(data: dict[str, np.ndarray], remat: bool | int) -> tuple[Callable[[], Any], dict[str, Any]]:
    """``(run, info)``: a ``tf.function`` of a ``GradientTape`` pass (traced at the first call)."""
    import tensorflow as tf

    import rnnscan

    params = {k: tf.Variable(data[k]) for k in WEIGHTS}
    x = tf.constant(data["x"])
    step = lstm_step(ops("tensorflow"), params)

    @tf.function
    def train(x: Any) -> Any:
        with tf.GradientTape() as tape:
            zeros = tf.zeros((BATCH, UNITS))
            last, _, _ = rnnscan.rnn(step, x, [zeros, zeros], return_all_outputs=False, remat=remat)
            loss = tf.reduce_sum(last)
        return tape.gradient(loss, list(params.values()))

    return lambda: [g.numpy() for g in train(x)], {}


LSTM_BUILDERS = {"jax": lstm_jax, "torch": lstm_torch, "tensorflow": lstm_tensorflow}


def lstm_point(backend: str, time_steps: int, remat: bool | int, repeats: int) -> dict[str, Any]:
    """Peak RSS growth over the first call and ``repeats`` timed calls, their times, and (JAX) XLA's figures."""
    from rnnscan._plan import segment_length

    data = lstm_arrays(time_steps)
    run, info = LSTM_BUILDERS[backend](data, remat)
    allocator = _tf_allocator() if backend == "tensorflow" else None
    times = []
    with PeakRss() as rss:
        with PeakRss() as first_rss:
            start = time.perf_counter()
            grads = run()
            first = time.perf_counter() - start
        trimmed = _malloc_trim()
        with PeakRss() as later_rss:
            for _ in range(repeats):
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
    if allocator is not None:
        info.update(allocator())
    info["rss_first_call_growth_bytes"] = first_rss.peak - first_rss.before
    if repeats and trimmed:
        # freed memory handed back to the system first: what one call needs, the first call's one-off costs apart
        info["rss_per_call_growth_bytes"] = later_rss.peak - later_rss.before
    median = statistics.median(times) if times else first
    return {"kind": "lstm", "backend": backend, "T": time_steps, "remat": remat,
            "segment": segment_length(remat, time_steps), "first_call_s": first, "times_s": times, "median_s": median,
            "per_step_us": median / time_steps * 1e6,
            # the gradients' sizes, to check that remat on and off compute the same thing
            "grad_norms": [float(np.linalg.norm(g)) for g in grads], **rss.summary(), **info}  # fmt: skip


def _tf_allocator() -> Callable[[], dict[str, int]]:
    """TensorFlow's own account of its CPU allocator: the peak bytes of tensors alive, from now on."""
    import tensorflow as tf

    memory = tf.config.experimental
    memory.reset_memory_stats("CPU:0")
    before = memory.get_memory_info("CPU:0")["current"]
    return lambda: {"tf_allocator_peak_growth_bytes": memory.get_memory_info("CPU:0")["peak"] - before}


def jax_memory_point(time_steps: int, remat: bool | int) -> dict[str, Any]:
    """XLA's ``memory_analysis()`` of the compiled gradient alone: compiled, never run."""
    data = lstm_arrays(time_steps)
    _, info = lstm_jax(data, remat)
    return {"kind": "jax_memory", "backend": "jax", "T": time_steps, "remat": remat, **info}


# -- unroll=k on W1 -------------------------------------------------------------------


def _unroll_call(k: int) -> Callable[..., Any]:
    def rnn_call(step: Callable[..., Any], x: Any, states: Any, mask: Any) -> Any:
        import rnnscan

        return rnnscan.rnn(step, x, states, mask=mask, unroll=k)[1]

    return rnn_call


def unroll_rows(backend: str, time_steps: int, ks: list[int], repeats: int, max_total_s: float) -> list[Row]:
    """W1's forward and forward+backward for each ``unroll=k``, timed interleaved; the first call apart
    (for ``torch.compile``, that is the compilation)."""
    if backend == "torch":
        import torch

        for name in ("recompile_limit", "cache_size_limit"):  # one compiled loop per k and pass
            if hasattr(torch._dynamo.config, name):
                setattr(torch._dynamo.config, name, 64)
        # Recompiling for a second k would otherwise make k a symbolic int, which rnnscan's
        # loop layout cannot take (torch 2.13: "unsupported operand type(s) for divmod()").
        torch._dynamo.config.automatic_dynamic_shapes = False
        builder: Callable[..., Any] = lambda call: torch_harness(call, compile=True)  # noqa: E731
    else:
        builder = {"jax": jax_harness, "tensorflow": tensorflow_harness}[backend]
    settings = Settings(repeats=repeats, max_total_s=max_total_s)
    impls = [Impl(backend, f"unroll={k}", builder(_unroll_call(k)), rnnscan=True) for k in ks]
    rows = []
    for mode in MODES:
        group = [Row(backend, i.name, "W1", time_steps, W1_BATCH, W1_UNITS, mode, True, extra={"k": k})
                 for i, k in zip(impls, ks)]  # fmt: skip
        rows += run_problem(group, impls, settings)
    return rows


def run(spec: dict[str, Any]) -> list[Any]:
    """The results of the point ``spec`` describes (a dict with its ``kind`` and arguments)."""
    spec = dict(spec)
    kind = spec.pop("kind")
    if kind == "unroll":
        return list(unroll_rows(**spec))
    return [{"lstm": lstm_point, "jax_memory": jax_memory_point}[kind](**spec)]
