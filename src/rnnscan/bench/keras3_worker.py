"""Keras 3's ``rnn`` timed in its own process: ``KERAS_BACKEND=<name> python -m rnnscan.bench.keras3_worker``.

Keras 3 fixes its backend once per process. The job comes as one JSON object on
stdin, ``{"backend": ..., "settings": Settings, "rows": [Row, ...]}``; each row
comes back, made by the same :func:`.harness.run_problem` as in-process rows, as
one line ``RESULT <row as JSON>`` on stdout.
"""

from __future__ import annotations

import json
import os
import sys

from .harness import PREFIX, Row, Settings, run_all
from .peers import KERAS3, implementations
from .threads import limit_threads


def main() -> int:
    """Run the job read from stdin; every row comes back (a failure as an error row)."""
    job = json.loads(sys.stdin.read())
    backend, settings = job["backend"], Settings(**job["settings"])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    limit_threads(settings.threads, torch=backend == "torch")
    (impl,) = [i for i in implementations() if i.backend == backend and i.name == KERAS3]
    rows = [Row.from_json(r) for r in job["rows"]]
    try:
        import keras

        if keras.backend.backend() != backend:
            raise RuntimeError(f"KERAS_BACKEND is {keras.backend.backend()!r}, the job is for {backend!r}")
    except Exception as error:
        for row in rows:
            row.status, row.error = "error", f"{type(error).__name__}: {error}"
            emit(row)
        return 1
    note = f"Keras {keras.__version__}, {impl.note}"
    for row in rows:
        row.note = note
    for row in run_all(rows, lambda _: impl, settings, emit):  # each row as it is made, then its final version
        emit(row)
    return 0


def emit(row: Row) -> None:
    """One result line on stdout."""
    sys.stdout.write(PREFIX + json.dumps(row.to_json()) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
