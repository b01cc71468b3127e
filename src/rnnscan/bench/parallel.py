"""``python -m rnnscan bench --parallel [FLAGS]``: ``rnn(..., parallel=True)`` against the sequential ``rnn()``.

Workloads (float32, D=16 input features, U units, zero initial states, weights drawn once):

* ``diag-gru``: a diagonal GRU, ``z, r = sigmoid(x W + v * h)``, ``n = tanh(x W + r * h * v)``,
  ``h = z h + (1 - z) n`` (recurrent weights ``v`` ~ N(0, 0.5^2) per unit);
* ``mingru``: minGRU, linear in ``h`` (one Newton iteration).

Each point (backend, workload, B, T) times the forward pass of both (interleaved samples, the first
call apart: see :mod:`.timing`) and reports the Newton iterations the parallel call took. Output: a
table, and every figure in ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._frameworks import FRAMEWORKS, installed, ops
from .timing import measure

D = 16
DEFAULTS = {"backends": "numpy,torch,jax,tensorflow", "B": "1,8,32", "T": "1024,8192,32768", "U": "64"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rnnscan bench --parallel",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    backends = DEFAULTS["backends"]
    p.add_argument("--backends", default=backends, help=f"comma-separated (default: {backends})")
    p.add_argument("--workloads", default="diag-gru,mingru", help="comma-separated (default: diag-gru,mingru)")
    p.add_argument("--B", default=DEFAULTS["B"], help=f"batch sizes (default: {DEFAULTS['B']})")
    p.add_argument("--T", default=DEFAULTS["T"], help=f"time steps (default: {DEFAULTS['T']})")
    p.add_argument("--U", type=int, default=64, help="units (default: 64)")
    p.add_argument("--repeats", type=int, default=5, help="timed samples per figure (default: 5)")
    p.add_argument("--max-total-s", type=float, default=20.0, help="time budget per figure (default: 20 s)")
    p.add_argument("--out", type=Path, default=Path("rnnscan-bench/parallel.json"), help="the JSON file to write")
    return p


def step_function(fw: Any, workload: str, units: int, rng: np.random.Generator) -> Any:
    """The workload's step on framework ``fw``'s arrays."""
    w = fw.asarray((rng.standard_normal((D, 3 * units)) / np.sqrt(D)).astype("float32"))
    v = fw.asarray((rng.standard_normal((3, units)) * 0.5).astype("float32"))
    u = units

    if workload == "mingru":

        def mingru(x_t: Any, states: Any) -> Any:
            p = x_t @ w
            z = fw.sigmoid(p[:, :u])
            h = (1 - z) * states[0] + z * p[:, u : 2 * u]
            return h, [h]

        return mingru

    def diag_gru(x_t: Any, states: Any) -> Any:
        (h,) = states
        p = x_t @ w
        z = fw.sigmoid(p[:, :u] + v[0] * h)
        r = fw.sigmoid(p[:, u : 2 * u] + v[1] * h)
        n = fw.tanh(p[:, 2 * u :] + r * h * v[2])
        h = z * h + (1 - z) * n
        return h, [h]

    return diag_gru


def point(backend: str, workload: str, batch: int, steps: int, args: argparse.Namespace) -> dict[str, Any]:
    """Time one point: the sequential and the parallel forward pass, and the parallel call's iterations."""
    import rnnscan
    from rnnscan import _parallel

    fw = ops(backend)
    rng = np.random.default_rng(0)
    step = step_function(fw, workload, args.U, rng)
    x = fw.asarray(rng.standard_normal((batch, steps, D)).astype("float32"))
    h0 = fw.asarray(np.zeros((batch, args.U), np.float32))

    def run(parallel: bool) -> Any:
        def call() -> Any:
            return fw.to_numpy(rnnscan.rnn(step, x, [h0], parallel=parallel)[0])

        return call

    with _parallel.recorded() as records:
        timings = measure([run(False), run(True)], args.repeats, max_total_s=args.max_total_s)
        if backend == "jax":
            import jax

            jax.effects_barrier()
    row: dict[str, Any] = {"backend": backend, "workload": workload, "B": batch, "T": steps, "U": args.U}
    for name, result in zip(("sequential", "parallel"), timings):
        if isinstance(result, BaseException):
            row[f"{name}_error"] = f"{type(result).__name__}: {result}"
        else:
            row[f"{name}_ms"] = result[0].median_s * 1e3
            row[f"{name}_first_ms"] = result[0].warmup_s * 1e3
    if "sequential_ms" in row and "parallel_ms" in row:
        row["speedup"] = row["sequential_ms"] / row["parallel_ms"]
        row["max_abs_difference"] = float(np.max(np.abs(timings[0][1] - timings[1][1])))
    row["iterations"] = sorted({r["iterations"] for r in records})
    row["converged"] = all(r["converged"] for r in records)
    return row


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in FRAMEWORKS]
    if unknown:
        print(f"python -m rnnscan bench --parallel: unknown backends {unknown}", file=sys.stderr)
        return 2
    backends = [b for b in backends if installed(b)]
    batches = [int(b) for b in args.B.split(",")]
    times = [int(t) for t in args.T.split(",")]
    rows, start = [], time.perf_counter()
    header = f"{'backend':<11}{'workload':<10}{'B':>4}{'T':>7}{'sequential ms':>15}{'parallel ms':>13}{'x':>7}"
    print(f"{header}  iterations")
    for backend in backends:
        for workload in args.workloads.split(","):
            for steps in times:
                for batch in batches:
                    row = point(backend, workload, batch, steps, args)
                    rows.append(row)
                    seq, par = row.get("sequential_ms", float("nan")), row.get("parallel_ms", float("nan"))
                    print(
                        f"{backend:<11}{workload:<10}{batch:>4}{steps:>7}{seq:>15.1f}{par:>13.1f}"
                        f"{row.get('speedup', float('nan')):>7.2f}  {row['iterations']}"
                        + ("" if row["converged"] else " (not converged: the loop ran)"),
                        flush=True,
                    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"platform": platform.platform(), "processor": platform.processor(), "python": platform.python_version()}
    doc = {"command": ["python", "-m", "rnnscan", "bench", "--parallel", *(argv or [])], "machine": machine}
    doc["wall_s"], doc["rows"] = time.perf_counter() - start, rows
    args.out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
