"""``python -m rnnscan bench --suite parallel``: ``rnn(..., parallel=True)`` against the sequential ``rnn()``.

Cells (float32, D=16 input features, U units, zero initial states, weights drawn once):

* ``diag-gru``: a diagonal GRU, ``z, r = sigmoid(x W + v * h)``, ``n = tanh(x W + r * h * v)``,
  ``h = z h + (1 - z) n`` (recurrent weights ``v`` ~ N(0, 0.5^2) per unit);
* ``mingru``: minGRU, linear in ``h`` (one Newton iteration).

Each point (backend, cell, B, T) times the forward pass of both, interleaved (:mod:`.timing`), and
records the Newton iterations the parallel call took (``extra``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._frameworks import FRAMEWORKS, installed, ops
from .harness import Row, fill
from .plots import plot_ratios
from .timing import measure

NAME = "parallel"
D = 16
CELLS = ("diag-gru", "mingru")
DEFAULTS = {"backends": "numpy,torch,jax,tensorflow", "B": "1,8,32", "T": "1024,8192,32768", "U": "64"}
QUICK = {"B": "1", "T": "1024", "U": "16"}
SEQUENTIAL = "sequential rnn()"  # the peer; the parallel call is the "rnnscan" row
SUMMARY = """\
parallel: rnn(parallel=True) against the sequential rnn(), forward, on a
  diagonal GRU and a minGRU (--cells), at B=1,8,32 and T=1024,8192,32768,
  U=64 (--B, --T, --U), with the Newton iterations of each point. Writes
  parallel.json, parallel.md and parallel.png."""


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--cells", default=",".join(CELLS), help=f"comma-separated (default: {','.join(CELLS)})")


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


def _point(backend: str, cell: str, batch: int, steps: int, units: int, repeats: int) -> list[Row]:
    """The sequential and the parallel rows of one point."""
    import rnnscan
    from rnnscan import _parallel

    fw = ops(backend)
    rng = np.random.default_rng(0)
    step = step_function(fw, cell, units, rng)
    x = fw.asarray(rng.standard_normal((batch, steps, D)).astype("float32"))
    h0 = fw.asarray(np.zeros((batch, units), np.float32))

    def run(parallel: bool) -> Callable[[], Any]:
        return lambda: fw.to_numpy(rnnscan.rnn(step, x, [h0], parallel=parallel)[0])

    with _parallel.recorded() as records:
        timings = measure([run(False), run(True)], repeats, max_total_s=20.0)
    rows = [
        Row(backend, SEQUENTIAL, cell, steps, batch, units, "forward"),
        Row(backend, "rnnscan", cell, steps, batch, units, "forward", rnnscan=True),
    ]
    for row, timing in zip(rows, timings):
        fill(row, timing)
    iterations = sorted({r["iterations"] for r in records})
    rows[1].extra = {"iterations": iterations, "converged": all(r["converged"] for r in records)}
    if rows[0].median_s and rows[1].median_s:
        rows[1].ratio, rows[1].fastest_peer = rows[1].median_s / rows[0].median_s, SEQUENTIAL
        rows[1].max_rel_diff = float(np.max(np.abs(timings[0][1] - timings[1][1])))
    return rows


def run(args: argparse.Namespace, quiet_import: Callable[[str], Any]) -> tuple[list[Row], dict[str, Any]]:
    sizes = QUICK if args.quick else DEFAULTS
    backends = [b.strip() for b in (args.backends or DEFAULTS["backends"]).split(",") if b.strip()]
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    bad = [b for b in backends if b not in FRAMEWORKS] + [c for c in cells if c not in CELLS]
    if bad:
        raise ValueError(f"--backends and --cells: {bad} (among {FRAMEWORKS}, {CELLS})")
    batches, times = (
        [int(v) for v in (given or sizes[k]).split(",")] for given, k in ((args.batches, "B"), (args.times, "T"))
    )
    units = int((args.units or sizes["U"]).split(",")[0])
    repeats = args.repeats or (3 if args.quick else 5)
    rows: list[Row] = []
    for backend in (b for b in backends if installed(b)):
        quiet_import(backend)
        for cell in cells:
            for steps in times:
                for batch in batches:
                    rows += _point(backend, cell, batch, steps, units, repeats)
    settings = {"backends": backends, "cells": cells, "B": batches, "T": times, "U": units, "repeats": repeats}
    return rows, {"settings": settings, "not_run": {}}


def report(doc: dict[str, Any], rows: list[Row]) -> str:
    """ms per call, sequential and parallel, the speedup, the Newton iterations."""
    lines = [
        "| backend | cell | B | T | sequential ms | parallel ms | speedup | Newton iterations |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for ours in (r for r in rows if r.rnnscan):
        peer = next(r for r in rows if r.problem == ours.problem and not r.rnnscan)
        if ours.median_s is None or peer.median_s is None:
            failed = ours if ours.median_s is None else peer
            lines.append(f"| {ours.backend} | {ours.workload} | {ours.B} | {ours.T} | error: {failed.error[:120]} |||")
            continue
        iterations = ", ".join(map(str, ours.extra.get("iterations", [])))
        converged = "" if ours.extra.get("converged", True) else " (not converged: the loop ran)"
        lines.append(
            f"| {ours.backend} | {ours.workload} | {ours.B} | {ours.T} | {peer.median_s * 1e3:.1f} | "
            f"{ours.median_s * 1e3:.1f} | {peer.median_s / ours.median_s:.2f}x | {iterations}{converged} |"
        )
    return "\n".join(lines)


def markdown(doc: dict[str, Any], rows: list[Row]) -> str:
    m = doc["machine"]
    where = f"{doc['date']}, `{doc['command']}`, {m.get('cpu')} ({m.get('cpus_usable')} usable CPUs)"
    return f"{where}, in {doc['wall_s']:.0f} s.\n\n{report(doc, rows)}\n"


def plot(doc: dict[str, Any], rows: list[Row], stem: Path) -> list[Path]:
    """The parallel call's time over the sequential one's at the longest T, B=1."""
    ok = [r for r in rows if r.median_s]
    if not ok:
        return []
    size = (max(r.T for r in ok), min(r.B for r in ok), ok[0].U)
    path = stem.with_suffix(".png")
    return [] if plot_ratios(rows, path, size) is None else [path]
