"""What every worker shares: one JSON line per check on stdout, read by tests/test_distributed.py."""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

# float32 sums over the batch, taken in another order on each engine (a tree all-reduce,
# a per-replica partial sum) than on one device: relative error a few ulps (float32 eps
# 1.2e-7) of the sum's terms. Entries whose terms cancel to near 0 get an absolute bound:
# 1e-6 against gradients and losses of order 1e-2 to 1.
RTOL, ATOL = 1e-5, 1e-6
_SEED: list[int] = []


def fresh_seed() -> int:
    """A new seed per run (RNNSCAN_DIST_SEED=<n> replays one); every reported line names it."""
    if not _SEED:
        _SEED.append(int(os.environ.get("RNNSCAN_DIST_SEED") or int.from_bytes(os.urandom(4), "little")))
    return _SEED[0]


def report(name: str, check: Callable[[], dict[str, Any] | None]) -> None:
    """Run one check; print ``{"check": name, "ok": ..., ...}`` as one line."""
    try:
        facts = check() or {}
        line = {"check": name, "ok": True, "seed": fresh_seed(), **facts}
    except Exception as error:  # the test prints it: the check failed, with why
        line = {"check": name, "ok": False, "seed": fresh_seed(), "error": f"{type(error).__name__}: {error}"}
        line["traceback"] = traceback.format_exc()[-3000:]
    print(json.dumps(line, default=str), flush=True)
    sys.stdout.flush()


def assert_close(actual: Any, expected: Any, what: str) -> float:
    """Both as NumPy, close at RTOL/ATOL; returns the largest absolute difference."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape or actual.dtype != expected.dtype:
        raise AssertionError(f"{what}: {actual.shape} {actual.dtype} != {expected.shape} {expected.dtype}")
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, err_msg=what)
    return float(np.max(np.abs(actual - expected), initial=0.0))
