"""The Keras LSTM suite (``--suite keras-lstm``): a Keras 3 ``LSTM(64)`` train step, Keras's own loop against
rnnscan's, on each Keras backend.

A worker per Keras backend (Keras fixes its backend per process). In each, two copies of one model
(``[Masking] -> LSTM(64) -> Dense(1)``, MSE, Adam, the same initial weights) are built and compiled, one
with :mod:`rnnscan.keras` enabled and one with Keras's loop; ``train_on_batch`` on (32, 100, 16) float32
is timed by :func:`.timing.measure`, one step per sample, the two sides interleaved in turn first, so
that both see the same machine. A row per side (``keras3``, ``rnnscan``) and case; its note says which
loop it ran (a probe counts calls of ``keras.src.backend.rnn`` in one forward pass: none means Keras took
its fused ``backend.lstm``, as torch does on CPU without a mask); its checksum is the first step's loss.

Cases (``--cases``): ``mask`` (a ``Masking`` layer, the last 20 of 100 steps padded; on CPU every backend
then runs the generic loop), ``no-mask`` (``use_cudnn=False``: the generic loop on both sides), ``fused``
(no mask, as Keras chooses; kept only where that is a fused path: there rnnscan changes nothing), and on
torch ``mask-compiled`` and ``no-mask-compiled`` (``jit_compile=True``). One case alone in its worker is
its steady state: ``--backends torch --cases mask-compiled``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .harness import Row, fill, run_worker
from .peers import BACKWARD, KERAS3
from .plots import plot_ratios
from .report import derive, duration
from .threads import limit_threads
from .timing import measure

NAME = "keras_lstm"
BATCH, TIME, FEATURES, UNITS, PADDED = 32, 100, 16, 64, 20
BACKENDS = ("jax", "torch", "tensorflow")
CASES = {  # --cases key: (the case's name, a Masking layer, use_cudnn, jit_compile)
    "mask": ("mask", True, "auto", "auto"),
    "no-mask": ("no mask, use_cudnn=False", False, False, "auto"),
    "fused": ("no mask, Keras's choice", False, "auto", "auto"),
    "mask-compiled": ("mask, jit_compile=True", True, "auto", True),  # torch only
    "no-mask-compiled": ("no mask, use_cudnn=False, jit_compile=True", False, False, True),  # torch only
}
# issue 11's targets: Keras's ms over rnnscan's, at least
TARGETS = {"mask": {"torch": 1.4, "jax": 1.1, "tensorflow": 1.1}, "no-mask": 1 / 1.02, "mask-compiled": 1.0}
SUMMARY = """\
keras-lstm: a Keras 3 LSTM(64) train step (train_on_batch on (32, 100, 16)
  float32, MSE, Adam) with Keras's loop and with rnnscan's, the same weights,
  steps interleaved, in a worker per Keras backend (jax, torch, tensorflow).
  Cases: mask (a Masking layer, the last 20 steps padded), no-mask
  (use_cudnn=False), fused (no mask, as Keras chooses; shown only where Keras
  takes its fused LSTM), and on torch mask-compiled, no-mask-compiled
  (jit_compile=True). --repeats: steps per side (default 10). Writes
  keras_lstm.json, keras_lstm.md and keras_lstm.png."""


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--cases", default=",".join(CASES), help=f"comma-separated (default: {','.join(CASES)})")
    group.add_argument("--warmup", type=int, default=3, help="untimed steps per side first (default: 3)")
    group.add_argument("--timeout", type=float, default=1800, help="seconds per worker (default: 1800)")


def _target(key: str, backend: str) -> float | None:
    target = TARGETS.get(key.replace("no-mask-compiled", "no-mask"))
    return target.get(backend) if isinstance(target, dict) else target


def run(args: argparse.Namespace, quiet_import: Callable[[str], Any]) -> tuple[list[Row], dict[str, Any]]:
    """A worker per Keras backend: its rows, and what the JSON says of the run besides."""
    backends = [b.strip() for b in (args.backends or ",".join(BACKENDS)).split(",") if b.strip()]
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    bad = [b for b in backends if b not in BACKENDS] + [c for c in cases if c not in CASES]
    if bad or not backends or not cases:
        raise ValueError(f"--backends and --cases: {bad or 'an empty list'} (among {BACKENDS}, {tuple(CASES)})")
    settings = {"backends": backends, "cases": cases, "repeats": args.repeats or 10, "warmup": args.warmup}
    settings |= {"threads": args.threads, "B": BATCH, "T": TIME, "D": FEATURES, "U": UNITS, "padded": PADDED}
    rows: list[Row] = []
    for backend in backends:
        print(f"rnnscan bench: keras-lstm on {backend} ...", file=sys.stderr, flush=True)
        raw: list[dict[str, Any]] = []
        job = {"suite": "keras-lstm", "backend": backend, **settings}
        why = run_worker(job, {**os.environ, "KERAS_BACKEND": backend}, args.timeout, raw.append)
        got = [Row(**r) for r in raw]
        if why or not got:
            failed = Row(backend, KERAS3, "all", TIME, BATCH, UNITS, BACKWARD, status="error")
            failed.error = f"the worker failed: {why or 'no result'}"
            got.append(failed)
        rows += got
    return derive(rows), {"settings": settings, "not_run": {}}


def work(job: dict[str, Any], emit: Callable[[Any], None]) -> int:
    """In a worker (``KERAS_BACKEND=<backend>``): each case's two rows."""
    limit_threads(job["threads"], torch=job["backend"] == "torch")
    import keras
    import numpy as np

    import rnnscan.keras as rk

    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, TIME, FEATURES)).astype("float32")
    x_masked = x.copy()
    x_masked[:, TIME - PADDED :] = 0.0
    y = rng.standard_normal((BATCH, 1)).astype("float32")

    def model(mask: bool, cudnn: Any, jit: Any) -> Any:
        keras.utils.set_random_seed(1)
        stack = [keras.Input((TIME, FEATURES)), *([keras.layers.Masking()] if mask else [])]
        m = keras.Sequential([*stack, keras.layers.LSTM(UNITS, use_cudnn=cudnn), keras.layers.Dense(1)])
        m.compile(optimizer="adam", loss="mse", jit_compile=jit)
        return m

    def side(m: Any, on: bool) -> Callable[[], Any]:
        def step() -> Any:
            (rk.enable if on else rk.disable)()
            return m.train_on_batch(data, y)  # the loss as a float: the step has finished

        return step

    for key in job["cases"]:
        name, mask, cudnn, jit = CASES[key]
        if jit is True and backend != "torch":
            continue
        rows = [Row(backend, impl, name, TIME, BATCH, UNITS, BACKWARD, impl != KERAS3) for impl in (KERAS3, "rnnscan")]
        data = x_masked if mask else x
        try:
            rk.disable()
            theirs = model(mask, cudnn, jit)
            with rk.enabled():
                ours = model(mask, cudnn, jit)
                ours.set_weights(theirs.get_weights())
                paths = [_loop_path(ours, data)]
            paths.insert(0, _loop_path(theirs, data))
            if key == "fused" and paths[0] == "generic loop":
                continue  # the same as no-mask here
            steps = [side(theirs, False), side(ours, True)]
            outcomes = measure(steps, job["repeats"], min_sample_s=0.0, max_total_s=1e9, warmup=job["warmup"])
            rk.disable()
            for row, path, outcome in zip(rows, paths, outcomes):
                loss = fill(row, outcome)
                row.note, row.extra["target"] = path, _target(key, backend) if row.rnnscan else None
                row.checksum = [] if loss is None else [float(loss), abs(float(loss))]
        except Exception as error:  # one failing case is reported, not fatal
            for row in rows:
                row.status, row.error = "error", f"{type(error).__name__}: {error}"[:2000]
        for row in rows:
            emit(row)
    return 0


def _loop_path(m: Any, data: Any) -> str:
    """Which loop one forward pass runs: the generic ``backend.rnn`` (counted) or the fused ``backend.lstm``."""
    from keras.src import backend

    seen, inner = [], backend.rnn

    def counting(*a: Any, **k: Any) -> Any:
        seen.append(1)
        return inner(*a, **k)

    backend.rnn = counting
    try:
        m(data[:2])
    finally:
        backend.rnn = inner
    return "generic loop" if seen else "fused backend.lstm"


def table(rows: list[Row]) -> list[str]:
    """ms per train step, Keras's and rnnscan's, the speedup (Keras ms / rnnscan ms), the target beside it."""
    lines = [
        "| Keras backend | case | loop (Keras / rnnscan) | Keras ms | rnnscan ms | speedup | target | first calls |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    pairs: dict[tuple[str, str], dict[str, Row]] = {}
    for row in rows:
        pairs.setdefault((row.backend, row.workload), {})[row.impl] = row
    for (backend, case), pair in pairs.items():
        keras_row, ours = pair.get(KERAS3), pair.get("rnnscan")
        if keras_row is None or ours is None or "ok" != keras_row.status or "ok" != ours.status:
            error = next(r.error for r in pair.values() if r.status != "ok").splitlines()
            lines.append(f"| {backend} | {case} | error: {(error or [''])[-1][:150]} | | | | | |")
            continue
        target = ours.extra.get("target")
        k_ms, r_ms = (1e3 * (r.median_s or 0) for r in (keras_row, ours))
        first = f"{duration(keras_row.warmup_s or 0)} / {duration(ours.warmup_s or 0)}"
        lines.append(
            f"| {backend} | {case} | {keras_row.note} / {ours.note} | {k_ms:.2f} | {r_ms:.2f} | {k_ms / r_ms:.2f}x "
            f"| {f'≥ {target:.2f}x' if target else ''} | {first} |"
        )
    return lines


def report(doc: dict[str, Any], rows: list[Row]) -> str:
    s = doc["settings"]
    head = (
        f"Keras 3 LSTM({s['U']}) train_on_batch on ({s['B']}, {s['T']}, {s['D']}) float32; masked cases pad the last "
        f"{s['padded']} steps. Median of {s['repeats']} interleaved steps per side (first calls: the first "
        f"{s['warmup']}); speedup = Keras ms / rnnscan ms."
    )
    differs = [f"{r.backend} {r.workload}" for r in rows if r.agrees is False]
    notes = [f"The first losses differ (over 1e-3, relative): {', '.join(differs)}."] if differs else []
    return "\n".join([head, "", *table(rows), *notes])


def markdown(doc: dict[str, Any], rows: list[Row]) -> str:
    m = doc["machine"]
    where = f"{doc['date']}, `{doc['command']}`, {m.get('cpu')} ({m.get('cpus_usable')} usable CPUs)"
    wall = f", in {doc['wall_s']:.0f} s" if doc.get("wall_s") is not None else ""
    return f"{where}{wall}.\n\n{report(doc, rows)}\n"


def plot(doc: dict[str, Any], rows: list[Row], stem: Path) -> list[Path]:
    """rnnscan's time over Keras's, a panel per Keras backend, a line per case."""
    path = stem.with_suffix(".png")
    return [] if plot_ratios(rows, path, (TIME, BATCH, UNITS)) is None else [path]
