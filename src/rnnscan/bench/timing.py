"""Timing one callable: the first call (warm-up, compilation) apart, then the median of repeats.

The callable must wait for its own result (``block_until_ready``, ``.numpy()``, ...),
so that wall-clock time is compute time.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the first call apart, then the median and spread of the samples."""

    warmup_s: float  # the first call: tracing, compilation, caches
    median_s: float
    min_s: float
    max_s: float
    q1_s: float  # first and third quartiles of the samples
    q3_s: float
    samples: int  # how many samples the median is over
    calls_per_sample: int  # calls averaged in each sample (short calls are batched)

    def as_dict(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict."""
        return asdict(self)


def measure(
    fn: Callable[[], Any],
    repeats: int,
    min_sample_s: float = 0.02,
    max_total_s: float = 10.0,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[Timing, Any]:
    """Time ``fn``: one warm-up call, one untimed call, then up to ``repeats`` samples.

    A sample averages enough calls to last about ``min_sample_s`` (so that
    microsecond calls are not lost in the timer's resolution). Long calls get
    fewer samples, at least 3 (or ``repeats`` if smaller), so that one figure
    takes about ``max_total_s`` at most. Returns the timing and the warm-up
    call's result (for checking the numbers).
    """
    start = clock()
    result = fn()
    warmup = clock() - start

    start = clock()
    fn()
    estimate = max(clock() - start, 1e-7)
    number = max(1, math.ceil(min_sample_s / estimate))
    affordable = int(max_total_s / (estimate * number))
    count = max(min(repeats, 3), min(repeats, affordable))

    samples = []
    for _ in range(count):
        start = clock()
        for _ in range(number):
            fn()
        samples.append((clock() - start) / number)
    q1, q3 = _quartiles(samples)
    timing = Timing(
        warmup_s=warmup,
        median_s=statistics.median(samples),
        min_s=min(samples),
        max_s=max(samples),
        q1_s=q1,
        q3_s=q3,
        samples=count,
        calls_per_sample=number,
    )
    return timing, result


def _quartiles(samples: list[float]) -> tuple[float, float]:
    """First and third quartiles (inclusive method; the sample itself when there is one)."""
    if len(samples) < 2:
        return samples[0], samples[0]
    q = statistics.quantiles(samples, n=4, method="inclusive")
    return q[0], q[2]
