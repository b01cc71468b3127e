"""Keras 3's ``rnn`` timed in its own process: ``KERAS_BACKEND=<name> python -m rnnscan.bench.keras3_worker``.

Keras 3 fixes its backend once per process, so each backend's Keras runs in a
subprocess of its own. The job comes as one JSON object on stdin::

    {"backend": "jax", "repeats": 5, "min_sample_s": 0.02, "max_total_s": 10.0,
     "tasks": [{"workload": "W1", "time": 10, "batch": 32, "units": 64, "mode": "forward"}, ...]}

and every line the worker prints to stdout that starts with ``RESULT `` is one
row as JSON (the first is ``{"keras": version}`` or ``{"error": why}``). The step
functions, data and passes are the in-process harness's
(:mod:`rnnscan.bench.peers`); only the loop is Keras's (``keras.src.backend.rnn``,
forward+backward by the backend's own autodiff; NumPy forward only).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

PREFIX = "RESULT "


def emit(row: dict[str, Any]) -> None:
    """One result line on stdout."""
    sys.stdout.write(PREFIX + json.dumps(row) + "\n")
    sys.stdout.flush()


def main() -> int:
    """Run the job read from stdin; every task gives one row, failures included."""
    job = json.loads(sys.stdin.read())
    backend = job["backend"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from .threads import limit_threads

    limit_threads(job.get("threads"), torch=backend == "torch")
    try:
        import keras

        active = keras.backend.backend()
        if active != backend:
            raise RuntimeError(f"KERAS_BACKEND is {active!r}, the job is for {backend!r}")
    except Exception as error:
        emit({"error": f"{type(error).__name__}: {error}"})
        return 1
    emit({"keras": keras.__version__})

    from .peers import HARNESSES, KERAS3, Impl, keras3_call
    from .runner import DataCache, Task, run_task

    impl = Impl(backend, KERAS3, False, ("keras",), HARNESSES[backend](keras3_call))
    cache = DataCache()
    for spec in job["tasks"]:
        task = Task(backend=backend, impl=KERAS3, **spec)
        row = run_task(task, impl, cache, job["repeats"], job["min_sample_s"], job["max_total_s"])
        emit(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
