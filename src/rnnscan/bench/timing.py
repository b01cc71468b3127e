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
    (outcome,) = measure_together([fn], repeats, min_sample_s, max_total_s, clock)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def measure_together(
    fns: list[Callable[[], Any]],
    repeats: int,
    min_sample_s: float = 0.02,
    max_total_s: float = 10.0,
    clock: Callable[[], float] = time.perf_counter,
) -> list[tuple[Timing, Any] | BaseException]:
    """Time several callables doing the same work, their samples interleaved.

    As :func:`measure` for each (``max_total_s`` for each), except that the samples are taken in rounds,
    one of each callable per round in a rotating order, so that a slow spell of
    the machine hits all of them alike and their ratios hold. A callable whose
    first calls raise gets its exception in its place.
    """
    firsts: list[tuple[float, float, Any] | BaseException] = []
    for fn in fns:
        try:
            start = clock()
            result = fn()
            warmup = clock() - start
            start = clock()
            fn()
            firsts.append((warmup, max(clock() - start, 1e-7), result))
        except Exception as error:  # reported in its row; the others go on
            firsts.append(error)
    live = [i for i, first in enumerate(firsts) if not isinstance(first, BaseException)]
    numbers = {i: max(1, math.ceil(min_sample_s / firsts[i][1])) for i in live}  # type: ignore[index]
    round_s = sum(firsts[i][1] * numbers[i] for i in live)  # type: ignore[index]
    count = max(min(repeats, 3), min(repeats, int(max_total_s * max(len(live), 1) / max(round_s, 1e-9))))
    samples: dict[int, list[float]] = {i: [] for i in live}
    for r in range(count if live else 0):
        k = r % len(live)  # this round's first callable
        for i in live[k:] + live[:k]:
            start = clock()
            for _ in range(numbers[i]):
                fns[i]()
            samples[i].append((clock() - start) / numbers[i])
    results: list[tuple[Timing, Any] | BaseException] = []
    for i, first in enumerate(firsts):
        if isinstance(first, BaseException):
            results.append(first)
            continue
        q1, q3 = _quartiles(samples[i])
        timing = Timing(
            warmup_s=first[0],
            median_s=statistics.median(samples[i]),
            min_s=min(samples[i]),
            max_s=max(samples[i]),
            q1_s=q1,
            q3_s=q3,
            samples=count,
            calls_per_sample=numbers[i],
        )
        results.append((timing, first[2]))
    return results


def _quartiles(samples: list[float]) -> tuple[float, float]:
    """First and third quartiles (inclusive method; the sample itself when there is one)."""
    if len(samples) < 2:
        return samples[0], samples[0]
    q = statistics.quantiles(samples, n=4, method="inclusive")
    return q[0], q[2]
