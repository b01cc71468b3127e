"""A Keras 3 ``LSTM(64)`` train step, Keras's own loop against rnnscan's, on each Keras backend.

``python benchmarks/keras_lstm.py`` (or :func:`main`) runs one subprocess per Keras backend (Keras fixes
its backend per process). In each, two copies of one model (``[Masking] -> LSTM(64) -> Dense(1)``, MSE,
Adam, the same initial weights) are built and compiled, one with :mod:`rnnscan.keras` enabled and one
with Keras's loop, and ``train_on_batch`` on (32, 100, 16) float32 alternates between them, in turn
first, for ``--repeats`` rounds: both see the same machine conditions. Reported: the median ms per step
of each, the ratio, the first call (tracing and compiling) apart, and which loop each side ran (a
probe counts calls of ``keras.src.backend.rnn`` in one forward pass: none means Keras took its fused
``backend.lstm``, as torch does on CPU without a mask).

Cases: with a ``Masking`` layer (the last 20 of 100 steps padded; on CPU every backend then runs the
generic loop), without one and ``use_cudnn=False`` (the generic loop on both sides), and without one as
Keras chooses (only where that is a fused path: there rnnscan changes nothing), plus torch with
``jit_compile=True`` (``torch.compile``). Output: a table, and every figure in a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

BATCH, TIME, FEATURES, UNITS, PADDED = 32, 100, 16, 64, 20
BACKENDS = ("jax", "torch", "tensorflow")
PREFIX = "RESULT "

# issue 11's targets: Keras's ms over rnnscan's, at least
TARGETS = {"mask": {"torch": 1.4, "jax": 1.1, "tensorflow": 1.1}, "no mask": 1 / 1.02, "torch compiled": 1.0}


def _target(case: str, backend: str) -> float | None:
    if case == "mask":
        return TARGETS["mask"].get(backend)
    if case.startswith("no mask"):
        return TARGETS["no mask"]
    if case.endswith("jit_compile=True"):
        return TARGETS["torch compiled"]
    return None


# ---------------------------------------------------------------- the worker (one Keras backend)


def _worker(args: argparse.Namespace) -> int:
    import keras
    import numpy as np
    from keras import layers
    from keras.src import backend as kbackend

    import rnnscan.keras as rk

    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, TIME, FEATURES)).astype("float32")
    x_masked = x.copy()
    x_masked[:, TIME - PADDED :] = 0.0
    y = rng.standard_normal((BATCH, 1)).astype("float32")

    def model(mask: bool, cudnn: Any, jit: Any) -> Any:
        keras.utils.set_random_seed(1)
        stack = [keras.Input((TIME, FEATURES))]
        stack += [layers.Masking()] if mask else []
        stack += [layers.LSTM(UNITS, use_cudnn=cudnn), layers.Dense(1)]
        m = keras.Sequential(stack)
        m.compile(optimizer="adam", loss="mse", jit_compile=jit)
        return m

    def path(m: Any, data: Any) -> str:
        """Which loop one forward pass runs: the generic ``backend.rnn`` (counted) or the fused ``backend.lstm``."""
        seen = []
        inner = kbackend.rnn

        def counting(*a: Any, **k: Any) -> Any:
            seen.append(1)
            return inner(*a, **k)

        kbackend.rnn = counting
        try:
            m(data[:2])
        finally:
            kbackend.rnn = inner
        return "generic loop" if seen else "fused backend.lstm"

    cases: list[tuple[str, bool, Any, Any]] = [
        ("mask", True, "auto", "auto"),
        ("no mask, use_cudnn=False", False, False, "auto"),
        ("no mask, Keras's choice", False, "auto", "auto"),
    ]
    if backend == "torch" and not args.no_compile:
        cases += [
            ("mask, jit_compile=True", True, "auto", True),
            ("no mask, use_cudnn=False, jit_compile=True", False, False, True),
        ]
    for name, mask, cudnn, jit in cases:
        data = x_masked if mask else x
        try:
            rk.disable()
            theirs = model(mask, cudnn, jit)
            with rk.enabled():
                ours = model(mask, cudnn, jit)
                ours.set_weights(theirs.get_weights())
                ours_path = path(ours, data)
            theirs_path = path(theirs, data)
            if name == "no mask, Keras's choice" and theirs_path == "generic loop":
                continue  # the same as use_cudnn=False here
            sides = {"keras": (theirs, False), "rnnscan": (ours, True)}
            first: dict[str, float] = {}
            times: dict[str, list[float]] = {"keras": [], "rnnscan": []}
            for side, (m, on) in sides.items():  # the first call traces and compiles
                (rk.enable if on else rk.disable)()
                start = time.perf_counter()
                for _ in range(args.warmup):
                    m.train_on_batch(data, y)
                first[side] = time.perf_counter() - start
            for r in range(args.repeats):
                order = list(sides) if r % 2 == 0 else list(reversed(sides))
                for side in order:
                    m, on = sides[side]
                    (rk.enable if on else rk.disable)()
                    start = time.perf_counter()
                    m.train_on_batch(data, y)  # returns the loss as a float: the step has finished
                    times[side].append(time.perf_counter() - start)
            rk.disable()
            keras_ms = 1e3 * statistics.median(times["keras"])
            ours_ms = 1e3 * statistics.median(times["rnnscan"])
            row = dict(
                backend=backend,
                case=name,
                keras_path=theirs_path,
                rnnscan_path=ours_path,
                keras_ms=keras_ms,
                rnnscan_ms=ours_ms,
                speedup=keras_ms / ours_ms,
                target=_target(name, backend),
                keras_first_s=first["keras"],
                rnnscan_first_s=first["rnnscan"],
                keras_times_ms=[1e3 * t for t in times["keras"]],
                rnnscan_times_ms=[1e3 * t for t in times["rnnscan"]],
            )
        except Exception as error:  # one failing case is reported, not fatal
            row = dict(backend=backend, case=name, error=f"{type(error).__name__}: {error}"[:2000])
        sys.stdout.write(PREFIX + json.dumps(row) + "\n")
        sys.stdout.flush()
    return 0


# ---------------------------------------------------------------- the front end


def _run_backend(backend: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, "-m", "rnnscan.bench.keras_lstm", "--worker", "--repeats", str(args.repeats)]
    cmd += ["--warmup", str(args.warmup)] + (["--no-compile"] if args.no_compile else [])
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return [dict(backend=backend, case="all", error=f"timed out after {args.timeout} s")]
    rows = [json.loads(line[len(PREFIX) :]) for line in proc.stdout.splitlines() if line.startswith(PREFIX)]
    if proc.returncode != 0 or not rows:
        rows.append(dict(backend=backend, case="all", error=f"exit {proc.returncode}: {proc.stderr[-2000:]}"))
    return rows


def _machine() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("keras", "jax", "torch", "tensorflow"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return dict(
        platform=platform.platform(),
        processor=platform.processor(),
        cpus=os.cpu_count(),
        python=platform.python_version(),
        versions=versions,
        load_average_at_start=load,
    )


def table(rows: list[dict[str, Any]]) -> str:
    """The plain table: ms per train step, Keras over rnnscan, the issue's target beside it."""
    head = (
        f"{'backend':<11} {'case':<44} {'loop (Keras / rnnscan)':<40} {'Keras ms':>9} {'rnnscan ms':>10} "
        f"{'speedup':>8} {'target':>7} {'1st call s (K / r)':>19}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['backend']:<11} {r['case']:<44} ERROR {r['error'].splitlines()[-1][:150]}")
            continue
        target = f">={r['target']:.2f}" if r["target"] else ""
        paths = f"{r['keras_path']} / {r['rnnscan_path']}"
        first = f"{r['keras_first_s']:.1f} / {r['rnnscan_first_s']:.1f}"
        lines.append(
            f"{r['backend']:<11} {r['case']:<44} {paths:<40} {r['keras_ms']:>9.2f} {r['rnnscan_ms']:>10.2f} "
            f"{r['speedup']:>7.2f}x {target:>7} {first:>19}"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python benchmarks/keras_lstm.py",
        description="Keras 3 LSTM(64) train step on (32, 100, 16): Keras's loop against rnnscan's, per backend.",
    )
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated Keras backends (default: all)")
    p.add_argument("--repeats", type=int, default=10, help="interleaved timed steps per side (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per side first (their total: '1st call')")
    p.add_argument("--no-compile", action="store_true", help="skip torch with jit_compile=True")
    p.add_argument("--json", default="keras_lstm.json", help="where to write every figure (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per backend before giving up")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table, write the JSON. 0 when every case ran."""
    args = _parser().parse_args(argv)
    if args.worker:
        return _worker(args)
    machine = _machine()
    rows: list[dict[str, Any]] = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        print(f"{backend} ...", file=sys.stderr, flush=True)
        rows += _run_backend(backend, args)
    print(
        f"Keras 3 LSTM({UNITS}) train_on_batch on ({BATCH}, {TIME}, {FEATURES}) float32; masked cases pad the last "
        f"{PADDED} steps. Median of {args.repeats} interleaved steps per side; speedup = Keras ms / rnnscan ms."
    )
    print(table(rows))
    with open(args.json, "w") as f:
        json.dump(dict(benchmark="keras_lstm", args=vars(args), machine=machine, rows=rows), f, indent=1)
    print(f"wrote {args.json}")
    return 0 if rows and not any("error" in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
