"""rnnscan's JAX and NumPy backends against the loops a user would write by hand.

Workload: a masked tanh SimpleRNN step, B=32, T=200, D=16, U=64, float32.
JAX: jitted forward, and jitted forward+backward (grad of a loss w.r.t. the
weights), rnnscan vs a hand-written ``jax.lax.scan``. NumPy: forward, rnnscan vs a
hand-written Python loop. Medians of repeated runs after warm-up, and ratios.

    python benchmarks/bench_jax_numpy.py [--repeats 30] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any, Callable

import numpy as np

import rnnscan

B, T, D, U = 32, 200, 16, 64


def data(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(T // 2, T + 1, size=B)
    return {
        "x": rng.standard_normal((B, T, D)).astype(np.float32),
        "mask": np.arange(T)[None, :] < lengths[:, None],
        "h0": np.zeros((B, U), np.float32),
        "w": (rng.standard_normal((D, U)) / np.sqrt(D)).astype(np.float32),
        "u": (rng.standard_normal((U, U)) / np.sqrt(U)).astype(np.float32),
        "b": (rng.standard_normal(U) * 0.1).astype(np.float32),
    }


def timeit(fn: Callable[[], Any], repeats: int, number: int) -> dict[str, float]:
    """Median and spread (min, max) in milliseconds per call, after one warm-up call."""
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number * 1e3)
    return {"median_ms": statistics.median(samples), "min_ms": min(samples), "max_ms": max(samples)}


# -- JAX ------------------------------------------------------------------------------
def jax_loops() -> dict[str, Callable[..., Any]]:
    import jax
    import jax.numpy as jnp

    def rnnscan_forward(x, mask, h0, w, u, b):
        def step(x_t, states):
            h = jnp.tanh(x_t @ w + states[0] @ u + b)
            return h, [h]

        return rnnscan.rnn(step, x, [h0], mask=mask)[1]

    def hand_forward(x, mask, h0, w, u, b):
        def body(h, inputs):
            x_t, m_t = inputs
            h = jnp.where(m_t[:, None], jnp.tanh(x_t @ w + h @ u + b), h)
            return h, h

        _, ys = jax.lax.scan(body, h0, (jnp.swapaxes(x, 0, 1), mask.T))
        return jnp.swapaxes(ys, 0, 1)

    loops = {}
    for name, forward in (("rnnscan", rnnscan_forward), ("lax.scan by hand", hand_forward)):

        def loss(w, u, b, x, mask, h0, forward=forward):
            return jnp.sum(forward(x, mask, h0, w, u, b) ** 2)

        loops[name] = (jax.jit(forward), jax.jit(jax.grad(loss, argnums=(0, 1, 2))))
    return loops


def bench_jax(repeats: int) -> list[dict[str, Any]]:
    import jax

    d = {k: jax.numpy.asarray(v) for k, v in data().items()}
    args = (d["x"], d["mask"], d["h0"], d["w"], d["u"], d["b"])
    grad_args = (d["w"], d["u"], d["b"], d["x"], d["mask"], d["h0"])
    rows = []
    loops = jax_loops()
    ref = np.asarray(loops["lax.scan by hand"][0](*args))
    np.testing.assert_allclose(np.asarray(loops["rnnscan"][0](*args)), ref, rtol=1e-5, atol=1e-5)
    for mode in ("forward", "forward+backward"):
        for name, (forward, grad) in loops.items():
            if mode == "forward":
                fn = lambda: forward(*args).block_until_ready()  # noqa: E731
            else:
                fn = lambda: jax.block_until_ready(grad(*grad_args))  # noqa: E731
            rows.append({"backend": "jax", "mode": mode, "impl": name, **timeit(fn, repeats, 10)})
    return rows


# -- NumPy ----------------------------------------------------------------------------
def bench_numpy(repeats: int) -> list[dict[str, Any]]:
    d = data()
    x, mask, h0, w, u, b = d["x"], d["mask"], d["h0"], d["w"], d["u"], d["b"]

    def step(x_t, states):
        h = np.tanh(x_t @ w + states[0] @ u + b)
        return h, [h]

    def with_rnnscan():
        return rnnscan.rnn(step, x, [h0], mask=mask)[1]

    def by_hand():
        h, outputs = h0, []
        for x_t, m_t in zip(np.swapaxes(x, 0, 1), mask.T[..., None]):
            h = np.where(m_t, np.tanh(x_t @ w + h @ u + b), h)
            outputs.append(h)
        return np.stack(outputs, 1)

    np.testing.assert_allclose(with_rnnscan(), by_hand(), rtol=1e-6)
    return [
        {"backend": "numpy", "mode": "forward", "impl": name, **timeit(fn, repeats, 5)}
        for name, fn in (("rnnscan", with_rnnscan), ("Python loop by hand", by_hand))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    rows = bench_jax(args.repeats) + bench_numpy(args.repeats)
    hand = {(r["backend"], r["mode"]): r["median_ms"] for r in rows if r["impl"] != "rnnscan"}
    print(f"masked tanh SimpleRNN, B={B} T={T} D={D} U={U} float32 (median of {args.repeats}, ms per call)")
    print(f"{'backend':8} {'mode':17} {'implementation':22} {'median':>9} {'min':>9} {'max':>9} {'vs hand':>8}")
    for r in rows:
        r["ratio_to_hand"] = r["median_ms"] / hand[(r["backend"], r["mode"])]
        print(
            f"{r['backend']:8} {r['mode']:17} {r['impl']:22} {r['median_ms']:9.3f} {r['min_ms']:9.3f}"
            f" {r['max_ms']:9.3f} {r['ratio_to_hand']:7.3f}x"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"workload": {"B": B, "T": T, "D": D, "U": U}, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
