"""One figure: build an implementation on one problem, time it, summarise its numbers.

Shared by the main process and the Keras 3 worker, so that every row of the
results is made the same way.
"""

from __future__ import annotations

import gc
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .peers import FORWARD, Impl
from .timing import measure_together
from .workloads import Data, make_data


@dataclass(frozen=True)
class Task:
    """One figure to make: an implementation, a workload and size, a pass."""

    backend: str
    impl: str
    workload: str
    time: int
    batch: int
    units: int
    mode: str

    def key(self) -> dict[str, Any]:
        """The row's identifying fields."""
        return {
            "backend": self.backend,
            "impl": self.impl,
            "workload": self.workload,
            "T": self.time,
            "B": self.batch,
            "U": self.units,
            "mode": self.mode,
        }


def checksum(result: Any, data: Data, mode: str) -> list[float]:
    """Sums and absolute sums (float64) of the outputs at kept steps, or of each gradient."""
    arrays = [np.asarray(result, np.float64) * data.mask[..., None]] if mode == FORWARD else result
    sums: list[float] = []
    for a in arrays:
        a = np.asarray(a, np.float64)
        sums += [float(a.sum()), float(np.abs(a).sum())]
    return sums


class DataCache:
    """The NumPy data of the last problem asked for (peers on the same problem share it)."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._data: Data | None = None

    def get(self, workload: str, batch: int, time: int, units: int) -> Data:
        """The data of one problem, made once."""
        key = (workload, batch, time, units)
        if key != self._key or self._data is None:
            self._data = None
            gc.collect()
            self._key, self._data = key, make_data(workload, batch, time, units)
        return self._data


def run_task(
    task: Task,
    impl: Impl,
    cache: DataCache,
    repeats: int,
    min_sample_s: float = 0.02,
    max_total_s: float = 10.0,
    build: Callable[[Data, str], Callable[[], Any]] | None = None,
) -> dict[str, Any]:
    """Time one implementation on one problem; a row with ``status`` ok or error (and why)."""
    (row,) = run_tasks([(task, impl)], cache, repeats, min_sample_s, max_total_s, build)
    return row


def run_tasks(
    tasks: list[tuple[Task, Impl]],
    cache: DataCache,
    repeats: int,
    min_sample_s: float = 0.02,
    max_total_s: float = 10.0,
    build: Callable[[Data, str], Callable[[], Any]] | None = None,
) -> list[dict[str, Any]]:
    """Time implementations on one problem, their samples interleaved (:func:`measure_together`);
    a row each, with ``status`` ok or error (and why)."""
    rows: list[dict[str, Any]] = []
    runners: list[Callable[[], Any]] = []
    for task, impl in tasks:
        rows.append({**task.key(), "rnnscan": impl.is_rnnscan, "note": impl.note})
        try:
            data = cache.get(task.workload, task.batch, task.time, task.units)
            make = build or impl.build
            assert make is not None
            runners.append(make(data, task.mode))
        except Exception as error:  # a peer that fails is reported, not dropped
            runners.append(_raiser(error))
    outcomes = measure_together(runners, repeats, min_sample_s=min_sample_s, max_total_s=max_total_s)
    for row, (task, _), outcome in zip(rows, tasks, outcomes):
        if isinstance(outcome, BaseException):
            row.update(status="error", error=f"{type(outcome).__name__}: {outcome}".strip()[:500])
            row["traceback"] = "".join(traceback.format_exception(outcome, limit=-8))[-3000:]
            continue
        timing, result = outcome
        row.update(status="ok", **timing.as_dict())
        row["per_step_s"] = timing.median_s / task.time
        row["checksum"] = checksum(result, cache.get(task.workload, task.batch, task.time, task.units), task.mode)
    return rows


def _raiser(error: BaseException) -> Callable[[], Any]:
    def run() -> Any:
        raise error

    return run
