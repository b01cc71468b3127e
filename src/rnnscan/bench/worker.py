"""A fresh process for one job of a suite: ``python -m rnnscan.bench.worker``.

The job comes as one JSON object on stdin, ``{"suite": <name>, ...}``; the suite's
``work(job, emit)`` makes it, and ``emit`` writes each result as one line
``RESULT <result as JSON>`` on stdout (:func:`.harness.run_worker` reads them).
Used where a process of its own is needed: Keras 3 fixes its backend per process,
and a long-sequence point's peak memory must be its own.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

from ..__main__ import quiet_logs
from . import SUITES
from .harness import PREFIX


def main() -> int:
    """Run the job read from stdin; the suite's exit status."""
    quiet_logs()
    job = json.loads(sys.stdin.read())
    suite = importlib.import_module(f"{__package__}.{SUITES[job['suite']]}")
    return int(suite.work(job, emit) or 0)


def emit(result: Any) -> None:
    """One result line on stdout (a row, or any JSON-able value)."""
    data = result.to_json() if hasattr(result, "to_json") else result
    sys.stdout.write(PREFIX + json.dumps(data) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
