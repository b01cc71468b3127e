"""The long-sequence suite (``--suite long``): ``remat``'s memory and time, ``unroll=k``'s time.

(1) remat: an LSTM step (B=32, U=256, D=32, float32, ``return_all_outputs=False``), forward+backward, at
T = 1,000, 4,000, 16,000 with remat off and on, and at 64,000 with remat on (off: extrapolated, never run),
each point in a fresh worker (:mod:`.long_points`), so that its peak memory is its own. A remat=False
point predicted above ``--max-gib`` (or 80% of the free memory) or ``--point-timeout`` is skipped, and
says why. (2) unroll=k: W1 at T=1,000, k = 1, 2, 4, 8, 16, timed interleaved by the grid's harness in
one worker per backend. The tables are :mod:`.long_report`'s, the plot :func:`.plots.plot_long`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .harness import Row, run_worker
from .long_report import GIB, markdown, memory_of, record, to_row
from .plots import plot_long
from .threads import thread_env

NAME = "long_sequences"
BACKENDS = ("jax", "torch", "tensorflow")
SUMMARY = """\
long: rnnscan.rnn on long sequences. remat: an LSTM step (B=32, U=256, D=32,
  float32), forward+backward, at T = 1,000, 4,000, 16,000 with remat off and on
  and at 64,000 with remat on (off: extrapolated), on JAX jit, PyTorch eager and
  TensorFlow tf.function: memory (JAX: XLA's temporaries; torch, TF: peak RSS
  growth of a fresh process per point) and time. unroll=k: W1 at T=1,000, k = 1,
  2, 4, 8, 16 (JAX jit, tf.function, torch.compile). --quick: T = 100, 400 (and
  1,600 remat only), unroll at T=100, k = 1, 4 (a few minutes). --repeats: timed
  calls per LSTM point (default 5, 3, 2, 1 up to T=1k, 4k, 16k, above). Writes
  long_sequences.json, long_sequences.md and long_sequences.png."""


@dataclass(frozen=True)
class Config:
    """What a run measures."""

    backends: tuple[str, ...] = BACKENDS
    both_T: tuple[int, ...] = (1000, 4000, 16000)  # remat off and on
    remat_only_T: tuple[int, ...] = (64000,)  # remat on; off is extrapolated, never run
    repeats: int | None = None  # timed calls per point after the first; None: fewer at large T
    unroll_T: int = 1000
    unroll_ks: tuple[int, ...] = (1, 2, 4, 8, 16)
    unroll_repeats: int = 7
    unroll_max_total_s: float = 3.0  # per k and pass
    max_gib: float = 16.0  # a remat=False point predicted above this (or 80% of free memory) is skipped
    point_timeout_s: float = 1200.0

    def repeats_at(self, time_steps: int) -> int:
        if self.repeats is not None:
            return self.repeats
        return 5 if time_steps <= 1000 else 3 if time_steps <= 4000 else 2 if time_steps <= 16000 else 1


QUICK = Config(both_T=(100, 400), remat_only_T=(1600,), repeats=2, unroll_T=100, unroll_ks=(1, 4), unroll_repeats=3)
QUICK = dataclasses.replace(QUICK, unroll_max_total_s=0.5)


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--mmap-threshold", type=int, metavar="BYTES", help="glibc's MALLOC_MMAP_THRESHOLD_ in "
                       "the workers: the peak RSS then shows live memory more closely (slower)")  # fmt: skip
    group.add_argument("--max-gib", type=float, default=Config.max_gib, help="skip a remat=False point "
                       "predicted above this (default: %(default)s)")  # fmt: skip
    group.add_argument("--point-timeout", type=float, default=Config.point_timeout_s, help="seconds per point "
                       "before it is stopped and reported (default: %(default)s)")  # fmt: skip
    group.add_argument("--no-unroll", action="store_true", help="leave out the unroll=k part")


def run(args: argparse.Namespace, quiet_import: Callable[[str], Any]) -> tuple[list[Row], dict[str, Any]]:
    """Every point of the flags, each in a worker: the rows, and what the JSON says of the run besides."""
    backends = tuple(b.strip() for b in (args.backends or ",".join(BACKENDS)).split(",") if b.strip())
    if not backends or any(b not in BACKENDS for b in backends):
        raise ValueError(f"--backends {args.backends}: choose among {', '.join(BACKENDS)}")
    config = dataclasses.replace(
        QUICK if args.quick else Config(),
        backends=backends,
        max_gib=args.max_gib,
        point_timeout_s=args.point_timeout,
        repeats=args.repeats if args.repeats is not None else (QUICK if args.quick else Config()).repeats,
    )
    env = {**os.environ, **(thread_env(args.threads) if args.threads else {})}
    if args.mmap_threshold is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
    start, load = time.perf_counter(), _load()

    def say(line: str) -> None:
        print(f"[{time.perf_counter() - start:6.0f} s] {line}", file=sys.stderr, flush=True)

    records = run_lstm(config, env, say)
    rows = [to_row(r) for r in records] + ([] if args.no_unroll else run_unroll(config, env, say))
    cores, end = os.cpu_count() or 1, _load()
    busy = [f"load average {v:.1f} on {cores} cores at the {when}" for v, when in ((load, "start"), (end, "end"))
            if v is not None and v > 0.5 * cores]  # fmt: skip
    settings = {**dataclasses.asdict(config), "threads": args.threads, "mmap_threshold": args.mmap_threshold}
    return rows, {"settings": settings, "not_run": {}, **({"busy": busy[0]} if busy else {})}


def _load() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def point(spec: dict[str, Any], config: Config, env: dict[str, str]) -> dict[str, Any]:
    """One LSTM point in a fresh worker: its record with ``status`` "ok", or why there is none."""
    start, got = time.perf_counter(), []
    why = run_worker({"suite": "long", "spec": spec}, env, config.point_timeout_s, got.append)
    base = {k: v for k, v in spec.items() if k != "time_steps"} | {"T": spec.get("time_steps")}
    if why and why.startswith("timed out"):
        return base | {"status": "skipped", "reason": f"{why} (--point-timeout)"}
    if why or not got:
        return base | {"status": "error", "reason": why or "no result", "wall_s": time.perf_counter() - start}
    return got[-1] | {"status": "ok", "wall_s": time.perf_counter() - start}


def extrapolate(records: list[dict[str, Any]], time_steps: int) -> dict[str, Any] | None:
    """The memory and time of remat=False at ``time_steps``, linear through the two largest measured T."""
    known = sorted((r["T"], memory_of(r), r["median_s"]) for r in records if memory_of(r) is not None)
    if not known:
        return None
    (t1, m1, s1), (t2, m2, s2) = ((0, 0, 0.0), known[0]) if len(known) == 1 else known[-2:]
    slope = (m2 - m1) / (t2 - t1)
    seconds = s2 + (s2 - s1) / (t2 - t1) * (time_steps - t2)
    return {"bytes": int(m2 + slope * (time_steps - t2)), "per_step_bytes": slope, "seconds": seconds,
            "from_T": [t for t in (t1, t2) if t]}  # fmt: skip


def available_bytes() -> int | None:
    """Memory available to a new process now (psutil, else /proc/meminfo's MemAvailable)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
        return next(int(line.split()[1]) * 1024 for line in lines if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return None


def _skip_reason(config: Config, done: list[dict[str, Any]], time_steps: int, repeats: int) -> str | None:
    """Why a remat=False point should not run, from the measured remat=False points before it (None: run it)."""
    guess = extrapolate(done, time_steps)
    if guess is None:
        return None
    free = available_bytes()
    limit = config.max_gib * GIB if free is None else min(config.max_gib * GIB, 0.8 * free)
    if guess["bytes"] > limit:
        return (
            f"predicted {guess['bytes'] / GIB:.1f} GiB (from T={guess['from_T']}) is above "
            f"{limit / GIB:.1f} GiB (--max-gib, or 80% of the memory free now)"
        )
    seconds = guess["seconds"] * (repeats + 1)
    if seconds > config.point_timeout_s:
        return f"predicted {seconds:.0f} s is above --point-timeout {config.point_timeout_s:.0f} s"
    return None


def run_lstm(config: Config, env: dict[str, str], say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every LSTM point of every backend, and a record for each remat=False point not run."""
    records = []
    for backend in config.backends:
        off: list[dict[str, Any]] = []
        for time_steps in config.both_T + config.remat_only_T:
            repeats = config.repeats_at(time_steps)
            spec = {"kind": "lstm", "backend": backend, "time_steps": time_steps, "repeats": repeats}
            lstm = {"kind": "lstm", "backend": backend, "T": time_steps, "remat": False}
            if time_steps in config.remat_only_T:
                done = _not_run(config, lstm, off, env)
            else:
                reason = _skip_reason(config, off, time_steps, repeats)
                done = (
                    lstm | {"status": "skipped", "reason": reason}
                    if reason
                    else point(spec | {"remat": False}, config, env)
                )
                off.append(done)
            say(_line(done))
            records.append(done)
            records.append(point(spec | {"remat": True}, config, env))
            say(_line(records[-1]))
    return records


def _not_run(config: Config, lstm: dict[str, Any], off: list[dict[str, Any]], env: dict[str, str]) -> dict[str, Any]:
    """remat=False at a remat-only T: extrapolated from the measured points (and, on JAX, compiled, not run)."""
    guess = extrapolate(off, lstm["T"])
    found = lstm | {"status": "not run", "extrapolated": guess}
    if lstm["backend"] == "jax":
        compiled = point({"kind": "jax_memory", "time_steps": lstm["T"], "remat": False}, config, env)
        if compiled["status"] == "ok":
            found["compiled"] = {k: v for k, v in compiled.items() if k.startswith("xla_") or k == "compile_s"}
    about = f"; it would need about {guess['bytes'] / GIB:.1f} GiB" if guess else ""
    return found | {"reason": "remat=False is not run at this T (by design)" + about}


def run_unroll(config: Config, env: dict[str, str], say: Callable[[str], None]) -> list[Row]:
    """W1 against unroll=k, a worker per backend: a row per backend, pass and k."""
    rows: list[Row] = []
    for backend in config.backends:
        spec = {"kind": "unroll", "backend": backend, "time_steps": config.unroll_T, "ks": list(config.unroll_ks)}
        spec |= {"repeats": config.unroll_repeats, "max_total_s": config.unroll_max_total_s}
        raw: list[dict[str, Any]] = []
        why = run_worker({"suite": "long", "spec": spec}, env, config.point_timeout_s, raw.append)
        got = [Row(**r) for r in raw]
        if why or not got:
            got = [
                Row(
                    backend,
                    "unroll",
                    "W1",
                    config.unroll_T,
                    32,
                    64,
                    "forward",
                    True,
                    status="error",
                    error=why or "no result",
                )
            ]
        say(f"unroll  {backend:10s} T={config.unroll_T}: {got[0].status} {why or ''}".rstrip())
        rows += got
    return rows


def _line(found: dict[str, Any]) -> str:
    """A progress line for one LSTM point."""
    head = f"lstm    {found['backend']:10s} T={found['T']:>6} remat={str(found['remat']):5s}"
    if found["status"] != "ok":
        return f"{head} {found['status']}: {found.get('reason', '')}"
    return f"{head} memory {memory_of(found) / 2**20:8.1f} MiB  {found['median_s']:8.3f} s per forward+backward"


def work(job: dict[str, Any], emit: Callable[[Any], None]) -> int:
    """In a worker: one point (:func:`.long_points.run`)."""
    from .long_points import run as run_point

    for result in run_point(job["spec"]):
        emit(result)
    return 0


def report(doc: dict[str, Any], rows: list[Row]) -> str:
    return markdown(doc, rows).rstrip("\n")


def plot(doc: dict[str, Any], rows: list[Row], stem: Path) -> list[Path]:
    path = stem.with_suffix(".png")
    return [] if plot_long([record(r) for r in rows if r.extra.get("kind") == "lstm"], path) is None else [path]
