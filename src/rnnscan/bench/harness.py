"""The one harness of every suite: its rows, the grid's plan, the timing of a problem's implementations
interleaved, and the worker processes.

Figures are made backend by backend; on a backend, problem by problem (workload,
sizes, pass), every implementation's samples interleaved (:func:`.timing.measure`),
so that peers on the same problem see the machine in the same state. Work that needs
a process of its own (Keras 3, which fixes its backend per process; a point whose
peak memory must be its own) runs in ``python -m rnnscan.bench.worker`` (:func:`run_worker`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._frameworks import installed
from .peers import BACKENDS, EXTRAS, FORWARD, Impl, base_mode, modes_of
from .timing import UNSTEADY, Timing, measure
from .workloads import WORKLOADS, make_data

PREFIX = "RESULT "  # a worker's result lines on stdout


@dataclass
class Row:
    """One figure of any suite: what was timed (the first seven fields), how it went, and its numbers (seconds);
    what a suite measures besides (memory, a target) is in ``extra``."""

    backend: str
    impl: str
    workload: str
    T: int
    B: int
    U: int
    mode: str
    rnnscan: bool = False
    note: str = ""
    status: str = "planned"  # then "ok", "error" (error, traceback), "missing" (error: what to install),
    # "skipped" or "not run" (error: why)
    error: str = ""
    traceback: str = ""
    warmup_s: float | None = None  # the first call
    median_s: float | None = None
    min_s: float | None = None
    max_s: float | None = None
    q1_s: float | None = None
    q3_s: float | None = None
    samples: int = 0
    calls_per_sample: int = 0
    steady: bool = True  # see timing.UNSTEADY
    per_step_s: float | None = None  # median_s / T
    checksum: list[float] = field(default_factory=list)  # sums and absolute sums of the outputs or gradients
    samples_s: list[float] = field(default_factory=list)  # every sample, in the order of the rounds
    timed_together: str = ""  # shared by the rows of one problem timed in the same rounds: their samples pair up
    ratio: float | None = None  # over the fastest peer's on the same problem: the median of the rounds' ratios
    fastest_peer: str | None = None
    max_rel_diff: float | None = None  # of the checksum against rnnscan's on the same problem
    agrees: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def problem(self) -> tuple[Any, ...]:
        """What the implementations of a group share: backend, workload, sizes and pass."""
        return (self.backend, self.workload, self.T, self.B, self.U, self.mode)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Row:
        return cls(**data)


@dataclass
class Settings:
    """What to run, and how long to time each figure."""

    workloads: tuple[str, ...] = tuple(WORKLOADS)
    times: tuple[int, ...] = (10, 30, 100, 300, 1000)
    batches: tuple[int, ...] = (1, 32, 256)
    units: tuple[int, ...] = (64, 256)
    backends: tuple[str, ...] = BACKENDS
    repeats: int = 15  # rounds: a rerun of a TensorFlow row moved its ratio by 4% in the median with 7, 2% with 15
    quick: bool = False
    min_sample_s: float = 0.02  # a sample averages calls up to this long
    max_total_s: float = 10.0  # fewer samples (at least 3) for calls too long for `repeats` of them
    threads: int | None = None  # --threads: None keeps every framework's default

    @property
    def center(self) -> tuple[int, int, int]:
        """The central ``(T, B, U)``: 100, 32 and 64 where the grid has them, else its first values."""
        t, b, u = (v if v in vs else vs[0] for v, vs in ((100, self.times), (32, self.batches), (64, self.units)))
        return t, b, u

    def sizes(self) -> list[tuple[int, int, int]]:
        """``(T, B, U)``: T varies at the central B and U, then B and U vary (one at a time) at the central T."""
        t0, b0, u0 = self.center
        return [
            *((t, b0, u0) for t in self.times),
            *((t0, b, u0) for b in self.batches if b != b0),
            *((t0, b0, u) for u in self.units if u != u0),
        ]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def plan(settings: Settings, impls: list[Impl]) -> tuple[list[Row], list[Row]]:
    """Every (implementation, workload, size, pass) of the installed backends: those to time, those missing."""
    todo, missing = [], []
    for backend in settings.backends:
        mine = [i for i in impls if i.backend == backend and (i.quick or not settings.quick)]
        for workload in settings.workloads:
            for t, b, u in settings.sizes():
                for mode in modes_of(backend, settings.quick):
                    for impl in mine:
                        if impl.workloads is None or workload in impl.workloads:
                            row = Row(backend, impl.name, workload, t, b, u, mode, impl.rnnscan, impl.note)
                            lacking = impl.missing()
                            if lacking is None:
                                todo.append(row)
                            else:
                                row.status, row.error = "missing", f"needs {lacking}: {install(lacking)}"
                                missing.append(row)
    return todo, missing


def install(module: str) -> str:
    """The pip command that installs ``module``."""
    return f'pip install -e ".[{EXTRAS.get(module, module)}]" (in a checkout of rnnscan)'


def execute(rows: list[Row], settings: Settings, impls: list[Impl], progress: Callable[[Row], None]) -> list[Row]:
    """Make every figure of ``rows`` (planned); ``progress`` is called after each one."""
    by_name = {(i.backend, i.name): i for i in impls}
    done: list[Row] = []
    for backend in settings.backends:
        mine = [r for r in rows if r.backend == backend]
        keras = [r for r in mine if by_name[backend, r.impl].in_keras_worker]
        here = keras_runs_here(backend) if keras else None
        for r in keras if here else []:
            r.note = f"Keras {here}, {r.note}, in this process"
        in_worker = [] if here else keras
        local = mine if here else [r for r in mine if not by_name[backend, r.impl].in_keras_worker]
        done += run_all(local, lambda r: by_name[r.backend, r.impl], settings, progress)
        done += keras_worker(backend, in_worker, settings, progress) if in_worker else []
    return done


def keras_runs_here(backend: str) -> str | None:
    """Keras 3's version if this process's Keras runs on ``backend`` (its rows are then timed interleaved with the
    other peers'), else None. Keras picks its backend once per process, from ``KERAS_BACKEND`` (TensorFlow by
    default): other backends' rows run in a worker."""
    if backend != os.environ.get("KERAS_BACKEND", "tensorflow") or not installed("keras"):
        return None
    import keras

    return keras.__version__ if keras.backend.backend() == backend else None


def run_all(
    rows: list[Row], impl: Callable[[Row], Impl], settings: Settings, progress: Callable[[Row], None]
) -> list[Row]:
    """Time the rows problem by problem; then each problem with a suspect figure (:func:`suspects`) once more;
    what is still suspect is marked unsteady."""
    for group in groups(rows):
        for row in run_problem(group, [impl(r) for r in group], settings):
            progress(row)
    again = {r.problem for r in suspects(rows)}
    for group in groups(rows):
        if group[0].problem in again:
            run_problem(group, [impl(r) for r in group], settings)
    for row in suspects(rows):
        row.steady = False
    return rows


def suspects(rows: list[Row]) -> list[Row]:
    """The figures whose call took over UNSTEADY times the same implementation's call over more steps: that is
    a busy spell of the machine (a call over fewer steps cannot cost more), not the loop's cost."""
    lines: dict[tuple[Any, ...], list[Row]] = {}
    for r in rows:
        if r.status == "ok":
            lines.setdefault((r.backend, r.impl, r.workload, r.B, r.U, r.mode), []).append(r)
    found = []
    for line in lines.values():
        line.sort(key=lambda r: r.T)
        found += [r for i, r in enumerate(line) if any(r.median_s > UNSTEADY * s.median_s for s in line[i + 1 :])]  # type: ignore[operator]
    return found


def groups(rows: list[Row]) -> list[list[Row]]:
    """The rows grouped by problem, in their first-seen order: timed together."""
    found: dict[tuple[Any, ...], list[Row]] = {}
    for row in rows:
        found.setdefault(row.problem, []).append(row)
    return list(found.values())


def run_problem(rows: list[Row], impls: list[Impl], settings: Settings) -> list[Row]:
    """Time the implementations of one problem, interleaved; every row gets status ok or error (and why)."""
    data = make_data(rows[0].workload, rows[0].B, rows[0].T, rows[0].U)
    runners = []
    for row, impl in zip(rows, impls):
        try:
            runners.append(impl.build(data, row.mode))
        except Exception as error:  # a peer that fails is reported, not dropped
            runners.append(_raiser(error))
    outcomes = measure(runners, settings.repeats, settings.min_sample_s, settings.max_total_s)
    together = uuid.uuid4().hex[:12]
    for row, outcome in zip(rows, outcomes):
        result = fill(row, outcome)
        row.timed_together = together
        if row.status == "ok":
            forward = base_mode(row.mode) == FORWARD
            arrays = [np.asarray(result, np.float64) * data.mask[..., None]] if forward else result
            row.checksum = [float(f(np.asarray(a, np.float64)).sum()) for a in arrays for f in (np.asarray, np.abs)]
    return rows


def fill(row: Row, outcome: tuple[Timing, Any] | BaseException) -> Any:
    """Set the row's status and figures from one outcome of :func:`.timing.measure`; the first call's result."""
    if isinstance(outcome, BaseException):
        row.status, row.error = "error", f"{type(outcome).__name__}: {outcome}".strip()[:500]
        row.traceback = "".join(traceback.format_exception(outcome, limit=-8))[-3000:]
        return None
    timing, result = outcome
    for name, value in dataclasses.asdict(timing).items():
        setattr(row, name, list(value) if isinstance(value, tuple) else value)
    row.status, row.per_step_s = "ok", timing.median_s / row.T
    return result


def _raiser(error: BaseException) -> Callable[[], Any]:
    def run() -> Any:
        raise error

    return run


def keras_worker(backend: str, rows: list[Row], settings: Settings, progress: Callable[[Row], None]) -> list[Row]:
    """Keras 3's rows of one backend, made in a worker (a row reported twice: the second, final, version
    counts); a row it does not report comes back as an error, with the worker's last words."""
    reported: dict[tuple[Any, ...], Row] = {}

    def receive(data: dict[str, Any]) -> None:
        row = Row.from_json(data)
        if (row.problem, row.impl) not in reported:
            progress(row)
        reported[row.problem, row.impl] = row

    job = {"suite": "grid", "backend": backend, "settings": settings.as_dict(), "rows": [r.to_json() for r in rows]}
    why = run_worker(job, {**os.environ, "KERAS_BACKEND": backend}, receive=receive)
    why = f"the Keras 3 worker failed: {why}"
    return [reported.get((r.problem, r.impl)) or dataclasses.replace(r, status="error", error=why) for r in rows]


def run_worker(
    job: dict[str, Any],
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    receive: Callable[[dict[str, Any]], None] = lambda _: None,
) -> str | None:
    """Run ``job`` in a fresh ``python -m rnnscan.bench.worker``; each result it prints goes to ``receive`` as it
    comes. Returns None when the worker exits 0, else why not (a timeout, a signal, its last words)."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH")) if p
    )
    command, pipe = [sys.executable, "-m", "rnnscan.bench.worker"], subprocess.PIPE
    with tempfile.TemporaryFile(mode="w+") as stderr:
        with subprocess.Popen(command, stdin=pipe, stdout=pipe, stderr=stderr, text=True, env=env) as process:
            assert process.stdin is not None and process.stdout is not None
            killed: list[bool] = []
            timer = threading.Timer(timeout or 0, lambda: killed.append(True) or process.kill())
            if timeout:
                timer.start()
            process.stdin.write(json.dumps(job))
            process.stdin.close()
            for line in process.stdout:
                if line.startswith(PREFIX):
                    receive(json.loads(line[len(PREFIX) :]))
        timer.cancel()
        stderr.seek(0)
        words = stderr.read().strip()
    if killed:
        return f"timed out after {timeout:.0f} s"
    if process.returncode < 0:
        return f"killed by signal {-process.returncode} (out of memory?)"
    return None if process.returncode == 0 else f"exit status {process.returncode}: {words[-500:]}"
