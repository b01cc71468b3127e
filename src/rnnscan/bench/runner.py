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
from .timing import measure
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
    row: dict[str, Any] = {**task.key(), "rnnscan": impl.is_rnnscan, "note": impl.note}
    build = build or impl.build
    assert build is not None
    try:
        data = cache.get(task.workload, task.batch, task.time, task.units)
        fn = build(data, task.mode)
        timing, result = measure(fn, repeats, min_sample_s=min_sample_s, max_total_s=max_total_s)
        row.update(status="ok", **timing.as_dict())
        row["per_step_s"] = timing.median_s / task.time
        row["checksum"] = checksum(result, data, task.mode)
    except Exception as error:  # a peer that fails is reported, not dropped
        row.update(status="error", error=f"{type(error).__name__}: {error}".strip()[:500])
        row["traceback"] = traceback.format_exc(limit=-8)[-3000:]
    return row
