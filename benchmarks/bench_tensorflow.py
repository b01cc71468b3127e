"""rnnscan's TensorFlow loop against tf-keras's ``backend.rnn``, inside ``tf.function``.

The workload is a masked tanh SimpleRNN: ``h' = tanh(x W + h U + b)``, the output
being ``h'``, with inputs ``(B, T, D)``, a right-padded ``(B, T)`` bool mask and
``U`` units (defaults B=32, T=200, D=16, U=64, float32). Two passes are timed:
the forward pass (all outputs) and forward+backward (the gradient of a loss of
every output with respect to W, U and b), each in one ``tf.function``, for

* ``tf_keras``: ``tf_keras.backend.rnn`` (its ``tf.while_loop``),
* ``rnnscan``: ``rnnscan.rnn`` (same step function, same arguments),
* ``rnnscan_xla``: ``rnnscan.rnn`` under ``tf.function(jit_compile=True)``.

Calls are interleaved (one call of each variant per round, in a fresh random
order every round) so that load from other processes hits all of them alike; the table shows the median
per call after warm-up and the ratios rnnscan / tf_keras and rnnscan_xla /
rnnscan (below 1.0 is faster). Usage::

    python benchmarks/bench_tensorflow.py [--rounds 60] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

import rnnscan  # noqa: E402


def make_workload(batch: int, time_steps: int, dim: int, units: int, seed: int = 0) -> dict[str, Any]:
    """Inputs ``(B, T, D)``, a right-padded mask ``(B, T)``, ``h0`` ``(B, U)`` and the weights."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(time_steps // 2, time_steps + 1, size=batch)
    return {
        "x": tf.constant(rng.standard_normal((batch, time_steps, dim)), tf.float32),
        "mask": tf.constant(np.arange(time_steps)[None, :] < lengths[:, None]),
        "h0": tf.zeros((batch, units), tf.float32),
        "W": tf.Variable(rng.standard_normal((dim, units)) / np.sqrt(dim), dtype=tf.float32),
        "U": tf.Variable(rng.standard_normal((units, units)) / np.sqrt(units), dtype=tf.float32),
        "b": tf.Variable(np.zeros(units), dtype=tf.float32),
    }


def make_passes(rnn: Callable[..., Any], w: dict[str, Any], jit: bool) -> dict[str, Callable[[], Any]]:
    """The forward and forward+backward passes of the workload with one ``rnn``."""

    def step(x_t: Any, states: Any) -> Any:
        h = tf.tanh(tf.matmul(x_t, w["W"]) + tf.matmul(states[0], w["U"]) + w["b"])
        return h, [h]

    def forward(x: Any, mask: Any, h0: Any) -> Any:
        return rnn(step, x, [h0], mask=mask)[1]

    def forward_backward(x: Any, mask: Any, h0: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(forward(x, mask, h0)))
        return tape.gradient(loss, [w["W"], w["U"], w["b"]])

    args = (w["x"], w["mask"], w["h0"])
    fwd = tf.function(forward, jit_compile=jit)
    fwd_bwd = tf.function(forward_backward, jit_compile=jit)
    return {"forward": lambda: fwd(*args), "forward+backward": lambda: fwd_bwd(*args)}


def _run(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    result = fn()
    tf.nest.map_structure(lambda t: t.numpy(), result)  # wait for the values
    return time.perf_counter() - start


def check_same_numbers(variants: dict[str, dict[str, Callable[[], Any]]]) -> None:
    """Every variant computes the same outputs and gradients (float32 tolerances)."""
    for name in ("forward", "forward+backward"):
        results = {v: tf.nest.map_structure(lambda t: t.numpy(), passes[name]()) for v, passes in variants.items()}
        reference = tf.nest.flatten(results["tf_keras"])
        for variant, result in results.items():
            for got, want in zip(tf.nest.flatten(result), reference):
                np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4, err_msg=f"{variant} {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--time", type=int, default=200)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=5, help="untimed rounds after compiling")
    parser.add_argument("--rounds", type=int, default=60, help="timed rounds (one call per variant each)")
    parser.add_argument("--out", default="bench_tensorflow.json", help="where to write the JSON results")
    args = parser.parse_args()

    w = make_workload(args.batch, args.time, args.dim, args.units)
    variants = {
        "tf_keras": make_passes(tf_keras.backend.rnn, w, jit=False),
        "rnnscan": make_passes(rnnscan.rnn, w, jit=False),
        "rnnscan_xla": make_passes(rnnscan.rnn, w, jit=True),
    }
    check_same_numbers(variants)  # also traces and compiles every pass

    medians: dict[str, dict[str, float]] = {}
    order = np.random.default_rng(0)
    for pass_name in ("forward", "forward+backward"):
        calls = {v: passes[pass_name] for v, passes in variants.items()}
        for _ in range(args.warmup):
            for fn in calls.values():
                _run(fn)
        times: dict[str, list[float]] = {v: [] for v in calls}
        for _ in range(args.rounds):
            for v in order.permutation(list(calls)):  # no variant always runs first or after XLA
                times[v].append(_run(calls[v]))
        medians[pass_name] = {v: statistics.median(t) for v, t in times.items()}

    ratios = {
        p: {
            "rnnscan / tf_keras": m["rnnscan"] / m["tf_keras"],
            "rnnscan_xla / rnnscan": m["rnnscan_xla"] / m["rnnscan"],
        }
        for p, m in medians.items()
    }
    shape = f"B={args.batch} T={args.time} D={args.dim} U={args.units} float32, masked tanh SimpleRNN"
    print(f"{shape}; median ms per call over {args.rounds} rounds, inside tf.function")
    print(f"{'pass':<18}{'tf_keras':>10}{'rnnscan':>10}{'rnnscan_xla':>13}{'rnnscan/tf_keras':>18}{'xla/rnnscan':>13}")
    for p, m in medians.items():
        r = ratios[p]
        print(
            f"{p:<18}{m['tf_keras'] * 1e3:>10.2f}{m['rnnscan'] * 1e3:>10.2f}{m['rnnscan_xla'] * 1e3:>13.2f}"
            f"{r['rnnscan / tf_keras']:>17.2f}x{r['rnnscan_xla / rnnscan']:>12.2f}x"
        )
    result = {
        "workload": {
            "batch": args.batch,
            "time": args.time,
            "dim": args.dim,
            "units": args.units,
            "dtype": "float32",
            "mask": "right-padded, lengths in [T/2, T]",
        },
        "rounds": args.rounds,
        "warmup": args.warmup,
        "median_seconds": medians,
        "ratios": ratios,
        "versions": {"tensorflow": tf.__version__, "tf_keras": tf_keras.__version__, "rnnscan": rnnscan.__version__},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
