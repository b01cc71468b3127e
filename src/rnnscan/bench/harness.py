"""The plan (which figures to make) and its execution, in this process and in Keras 3 workers.

Figures are made backend by backend; on a backend, problem by problem (workload,
size, pass), every implementation one after the other, so that peers on the same
problem see the machine in the same state. Keras 3 runs in one subprocess per
backend, right after that backend's in-process figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .keras3_worker import PREFIX
from .peers import BACKEND_MODES, Impl, implementations
from .runner import DataCache, Task, run_tasks

Row = dict[str, Any]


@dataclass
class Settings:
    """What to run, and how long to time each figure."""

    workloads: tuple[str, ...] = ("W1", "W2", "W3")
    times: tuple[int, ...] = (10, 100, 1000)
    batches: tuple[int, ...] = (1, 32, 256)
    units: tuple[int, ...] = (64, 256)
    backends: tuple[str, ...] = ("numpy", "jax", "torch", "tensorflow")
    repeats: int = 7
    quick: bool = False
    smoke: bool = False  # tiny sizes for the tests: the figures mean nothing
    min_sample_s: float = 0.02  # a sample averages calls up to this long
    max_total_s: float = 10.0  # fewer samples (at least 3) for calls too long for `repeats` of them
    threads: int | None = None  # --threads: None keeps every framework's default
    concurrent_workers: bool = False  # start the Keras 3 workers at once (only for tests: skews timings)
    impls: list[Impl] = field(default_factory=implementations)

    def as_dict(self) -> dict[str, Any]:
        """The settings as JSON."""
        return {
            "workloads": list(self.workloads),
            "T": list(self.times),
            "B": list(self.batches),
            "U": list(self.units),
            "backends": list(self.backends),
            "repeats": self.repeats,
            "quick": self.quick,
            "smoke": self.smoke,
            "threads": self.threads,
            "min_sample_s": self.min_sample_s,
            "max_total_s": self.max_total_s,
        }


@dataclass
class Plan:
    """The tasks of one run: by backend, those run here, those for Keras 3, and the rows already known."""

    local: dict[str, list[tuple[Task, Impl]]] = field(default_factory=dict)
    keras3: dict[str, list[Task]] = field(default_factory=dict)
    known: list[Row] = field(default_factory=list)  # missing / skipped, no timing needed

    @property
    def size(self) -> int:
        """How many figures there are to make."""
        return sum(len(t) for t in self.local.values()) + sum(len(t) for t in self.keras3.values())


def make_plan(settings: Settings) -> Plan:
    """Every (implementation, workload, size, pass) of the grid; missing or skipped ones as rows."""
    plan = Plan()
    for backend in settings.backends:
        plan.local[backend], plan.keras3[backend] = [], []
        impls = [i for i in settings.impls if i.backend == backend and (i.quick or not settings.quick)]
        for workload in settings.workloads:
            for time in settings.times:
                for batch in settings.batches:
                    for units in settings.units:
                        for mode in BACKEND_MODES[backend]:
                            for impl in impls:
                                if impl.workloads is not None and workload not in impl.workloads:
                                    continue
                                task = Task(backend, impl.name, workload, time, batch, units, mode)
                                _place(plan, task, impl)
    return plan


def _place(plan: Plan, task: Task, impl: Impl) -> None:
    """Put one task where it belongs: a known row, the Keras 3 worker, or this process."""
    base = {**task.key(), "rnnscan": impl.is_rnnscan, "note": impl.note}
    missing = impl.missing()
    if missing is not None:
        plan.known.append({**base, "status": "missing", "error": f"{missing} is not installed"})
    elif impl.max_time is not None and task.time > impl.max_time:
        plan.known.append({**base, "status": "skipped", "error": f"T > {impl.max_time} (compile time)"})
    elif impl.keras3:
        plan.keras3[task.backend].append(task)
    else:
        plan.local[task.backend].append((task, impl))


def execute(plan: Plan, settings: Settings, progress: Callable[[str], None]) -> list[Row]:
    """Make every figure of the plan; ``progress`` is called with a label after each one."""
    rows = list(plan.known)
    workers: dict[str, Worker] = {}
    if settings.concurrent_workers:
        workers = {b: Worker(b, tasks, settings) for b, tasks in plan.keras3.items() if tasks}
    cache = DataCache()
    for backend in settings.backends:
        for problem in _by_problem(plan.local.get(backend, [])):
            rows += run_tasks(problem, cache, settings.repeats, settings.min_sample_s, settings.max_total_s)
            for task, impl in problem:
                progress(f"{backend} {impl.name} {task.workload} T={task.time}")
        tasks = plan.keras3.get(backend, [])
        if tasks:
            worker = workers.get(backend) or Worker(backend, tasks, settings)
            for row in worker.rows():
                rows.append(row)
                progress(f"{backend} keras3 {row['workload']} T={row['T']}")
    return rows


def _by_problem(local: list[tuple[Task, Impl]]) -> list[list[tuple[Task, Impl]]]:
    """The tasks grouped by problem (workload, sizes, pass), in their first-seen order: timed together."""
    groups: dict[tuple[Any, ...], list[tuple[Task, Impl]]] = {}
    for task, impl in local:
        groups.setdefault((task.workload, task.time, task.batch, task.units, task.mode), []).append((task, impl))
    return list(groups.values())


class Worker:
    """One Keras 3 subprocess: started with its job, its rows read as they come."""

    def __init__(self, backend: str, tasks: list[Task], settings: Settings) -> None:
        self.backend, self.tasks = backend, tasks
        job = {
            "backend": backend,
            "repeats": settings.repeats,
            "min_sample_s": settings.min_sample_s,
            "max_total_s": settings.max_total_s,
            "threads": settings.threads,
            "tasks": [
                {"workload": t.workload, "time": t.time, "batch": t.batch, "units": t.units, "mode": t.mode}
                for t in tasks
            ],
        }
        package_root = str(Path(__file__).resolve().parents[2])
        env = {
            **os.environ,
            "KERAS_BACKEND": backend,
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
            "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p),
        }
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._stdout = tempfile.TemporaryFile(mode="w+") if settings.concurrent_workers else None
        self._process = subprocess.Popen(
            [sys.executable, "-m", "rnnscan.bench.keras3_worker"],
            stdin=subprocess.PIPE,
            stdout=self._stdout or subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(job))
        self._process.stdin.close()

    def _lines(self) -> Iterator[str]:
        if self._stdout is None:
            assert self._process.stdout is not None
            yield from self._process.stdout
            return
        self._process.wait()
        self._stdout.seek(0)
        yield from self._stdout

    def rows(self) -> Iterator[Row]:
        """The worker's rows, one per task; a task it did not report on gets an error row."""
        done: set[tuple[Any, ...]] = set()
        failure = ""
        keras_version = None
        for line in self._lines():
            if not line.startswith(PREFIX):
                continue
            row = json.loads(line[len(PREFIX) :])
            if "keras" in row and "status" not in row:
                keras_version = row["keras"]
                continue
            if "error" in row and "status" not in row:
                failure = row["error"]
                continue
            row["note"] = f"Keras {keras_version} ({self.backend} backend), subprocess" if keras_version else ""
            done.add(_identity(row))
            yield row
        self._process.wait()
        self._stderr.seek(0)
        stderr = self._stderr.read()
        self._stderr.close()
        why = failure or f"the worker exited with status {self._process.returncode}: {stderr.strip()[-500:]}"
        for task in self.tasks:
            key = task.key()
            if _identity(key) not in done:
                yield {**key, "rnnscan": False, "note": "Keras 3, subprocess", "status": "error", "error": why}


def _identity(row: Row) -> tuple[Any, ...]:
    return tuple(row[k] for k in ("backend", "impl", "workload", "T", "B", "U", "mode"))


@contextmanager
def progress_bar(total: int, enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A tqdm bar on stderr (none if tqdm is not installed or not enabled); yields ``advance(label)``."""
    bar: Any = None
    if enabled:
        try:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="figure", dynamic_ncols=True, file=sys.stderr)
        except ImportError:
            bar = None

    def advance(label: str) -> None:
        if bar is not None:
            bar.set_postfix_str(label, refresh=False)
            bar.update(1)

    try:
        yield advance
    finally:
        if bar is not None:
            bar.close()


def parse_list(text: str, convert: Callable[[str], Any], allowed: Iterable[Any] | None = None) -> tuple[Any, ...]:
    """``"10,100"`` -> ``(10, 100)``, checked against ``allowed``."""
    values = tuple(convert(v.strip()) for v in text.split(",") if v.strip())
    if allowed is not None:
        allowed = list(allowed)
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ValueError(f"{bad} not among {allowed}")
    if not values:
        raise ValueError("empty list")
    return values
