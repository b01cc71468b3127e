"""The points of a run, each in a fresh subprocess, and the points that are not run (said so, with why)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .points import MARKER

WORKER = Path(__file__).resolve().parent / "worker.py"
BACKENDS = ("jax", "torch", "tensorflow")
GIB = 2**30


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


QUICK = Config(
    both_T=(100, 400),
    remat_only_T=(1600,),
    repeats=2,
    unroll_T=100,
    unroll_ks=(1, 4),
    unroll_repeats=3,
    unroll_max_total_s=0.5,
)


def memory_of(record: dict[str, Any]) -> int | None:
    """The figure a point's memory is judged by: XLA's temporaries on JAX, the peak RSS growth elsewhere."""
    if record.get("status") not in ("ok", "compiled, not run"):
        return None
    if record["backend"] == "jax":
        return record.get("xla_temp_size_in_bytes")
    return record.get("rss_peak_growth_bytes")


def extrapolate(records: list[dict[str, Any]], time_steps: int) -> dict[str, Any] | None:
    """The memory and time of remat=False at ``time_steps``, linear through the two largest measured T."""
    known = sorted(
        (
            (r["T"], memory_of(r), r["median_s"])
            for r in records
            if memory_of(r) is not None and r.get("kind") == "lstm"
        ),
        key=lambda p: p[0],
    )
    if not known:
        return None
    if len(known) == 1:
        (t1, m1, s1), (t2, m2, s2) = (0, 0, 0.0), known[0]
    else:
        (t1, m1, s1), (t2, m2, s2) = known[-2:]
    slope = (m2 - m1) / (t2 - t1)
    return {
        "bytes": int(m2 + slope * (time_steps - t2)),
        "per_step_bytes": slope,
        "seconds": s2 + (s2 - s1) / (t2 - t1) * (time_steps - t2),
        "from_T": [t for t in (t1, t2) if t],
    }


def available_bytes() -> int | None:
    """Memory available to a new process now (psutil, else /proc/meminfo's MemAvailable)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def run_worker(spec: dict[str, Any], timeout: float, env: dict[str, str]) -> dict[str, Any]:
    """One point in a fresh process: its result with ``status`` "ok", or why there is none."""
    start = time.perf_counter()
    command = [sys.executable, str(WORKER), json.dumps(spec)]
    base = {k: v for k, v in spec.items() if k != "time_steps"} | {"T": spec.get("time_steps")}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return base | {"status": "skipped", "reason": f"timed out after {timeout:.0f} s (--point-timeout)"}
    wall = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if done.returncode != 0 or not lines:
        if done.returncode < 0:
            why = f"killed by signal {-done.returncode} (out of memory?)"
        else:
            why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return base | {"status": "error", "reason": why, "wall_s": wall}
    return json.loads(lines[-1][len(MARKER) :]) | {"status": "ok", "wall_s": wall}


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
            if time_steps in config.remat_only_T:
                records.append(_not_run(config, backend, time_steps, off, env, say))
            else:
                reason = _skip_reason(config, off, time_steps, repeats)
                if reason:
                    record = {
                        "kind": "lstm",
                        "backend": backend,
                        "T": time_steps,
                        "remat": False,
                        "status": "skipped",
                        "reason": reason,
                    }
                else:
                    record = run_worker(spec | {"remat": False}, config.point_timeout_s, env)
                say(_line(record))
                records.append(record)
                off.append(record)
            record = run_worker(spec | {"remat": True}, config.point_timeout_s, env)
            say(_line(record))
            records.append(record)
    return records


def _not_run(
    config: Config,
    backend: str,
    time_steps: int,
    off: list[dict[str, Any]],
    env: dict[str, str],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """remat=False at a remat-only T: extrapolated from the measured points (and, on JAX, compiled, not run)."""
    record: dict[str, Any] = {
        "kind": "lstm",
        "backend": backend,
        "T": time_steps,
        "remat": False,
        "status": "not run",
        "extrapolated": extrapolate(off, time_steps),
    }
    if backend == "jax":
        compiled = run_worker(
            {"kind": "jax_memory", "time_steps": time_steps, "remat": False}, config.point_timeout_s, env
        )
        if compiled["status"] == "ok":
            record["compiled"] = {k: v for k, v in compiled.items() if k.startswith("xla_") or k == "compile_s"}
    guess = record["extrapolated"]
    record["reason"] = "remat=False is not run at this T (by design)" + (
        f"; it would need about {guess['bytes'] / GIB:.1f} GiB" if guess else ""
    )
    say(_line(record))
    return record


def run_unroll(config: Config, env: dict[str, str], say: Callable[[str], None]) -> list[dict[str, Any]]:
    """W1 against unroll=k, one subprocess per backend."""
    records = []
    for backend in config.backends:
        spec = {
            "kind": "unroll",
            "backend": backend,
            "time_steps": config.unroll_T,
            "ks": list(config.unroll_ks),
            "repeats": config.unroll_repeats,
            "max_total_s": config.unroll_max_total_s,
        }
        record = run_worker(spec, config.point_timeout_s, env)
        say(f"unroll  {backend:10s} T={config.unroll_T}: {record['status']} {record.get('reason', '')}".rstrip())
        records.append(record)
    return records


def _line(record: dict[str, Any]) -> str:
    """A progress line for one LSTM point."""
    head = f"lstm    {record['backend']:10s} T={record['T']:>6} remat={str(record['remat']):5s}"
    if record["status"] != "ok":
        return f"{head} {record['status']}: {record.get('reason', '')}"
    memory = memory_of(record)
    return f"{head} memory {memory / 2**20:8.1f} MiB  {record['median_s']:8.3f} s per forward+backward"


def environment(threads: int | None, mmap_threshold: int | None = None) -> dict[str, str]:
    """The workers' environment: this one, with ``--threads`` applied the way ``rnnscan bench`` does,
    and glibc's mmap threshold if given."""
    env = dict(os.environ)
    if mmap_threshold is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
    if threads is not None:
        n = str(threads)
        env.update({name: n for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
        env.update(TF_NUM_INTRAOP_THREADS=n, TF_NUM_INTEROP_THREADS=n)
        xla = f"--xla_cpu_multi_thread_eigen={'false' if threads == 1 else 'true'} intra_op_parallelism_threads={n}"
        env["XLA_FLAGS"] = " ".join(f for f in (env.get("XLA_FLAGS", ""), xla) if f)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env
