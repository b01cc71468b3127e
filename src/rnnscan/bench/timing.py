"""Timing callables that do the same work: the first call apart, then interleaved samples.

Each callable must wait for its own result (``block_until_ready``, ``.numpy()``,
...), so that wall-clock time is compute time.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

UNSTEADY = 1.5  # a median this many times the fastest sample means a busy spell, not the callable's cost


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the first call (or calls) apart, then the median and spread of the samples."""

    warmup_s: float  # the first call: tracing, compilation, caches
    median_s: float
    min_s: float
    max_s: float
    q1_s: float  # first and third quartiles of the samples
    q3_s: float
    samples: int  # how many samples the median is over
    calls_per_sample: int  # calls averaged in each sample (short calls are batched)
    steady: bool  # median <= UNSTEADY * min, after at most one re-measurement
    samples_s: tuple[float, ...] = ()  # every sample, round by round (the same rounds for all callables measured)


def measure(
    fns: list[Callable[[], Any]],
    repeats: int,
    min_sample_s: float = 0.02,
    max_total_s: float = 10.0,
    clock: Callable[[], float] = time.perf_counter,
    warmup: int = 1,
) -> list[tuple[Timing, Any] | BaseException]:
    """Time callables doing the same work; for each, its timing and first result, or the exception it raised.

    Each gets ``warmup`` calls (timed together: the first call) and an untimed call (which sizes its samples: a
    sample averages calls up to ``min_sample_s``), then ``repeats`` samples (at
    least 3 or ``repeats``, fewer when that would exceed ``max_total_s`` each),
    taken in rounds, one of each callable per round in a rotating order, so that a
    slow spell of the machine hits all of them alike. If any median comes out
    above ``UNSTEADY`` times its fastest sample, every callable gets as many
    samples again (still interleaved) and the statistics are over both sets.
    """
    firsts: dict[int, tuple[float, float, Any]] = {}
    errors: dict[int, BaseException] = {}
    for i, fn in enumerate(fns):
        try:
            start = clock()
            result = fn()
            for _ in range(warmup - 1):
                fn()
            first = clock() - start
            start = clock()
            fn()
            firsts[i] = (first, max(clock() - start, 1e-7), result)
        except Exception as error:  # reported in its row; the others go on
            errors[i] = error
    live = list(firsts)
    numbers = {i: max(1, math.ceil(min_sample_s / firsts[i][1])) for i in live}
    round_s = sum(firsts[i][1] * numbers[i] for i in live)
    count = max(min(repeats, 3), min(repeats, int(max_total_s * max(len(live), 1) / max(round_s, 1e-9))))
    samples: dict[int, list[float]] = {i: [] for i in live}

    def rounds() -> None:
        for r in range(count if live else 0):
            k = r % len(live)
            for i in live[k:] + live[:k]:
                start = clock()
                for _ in range(numbers[i]):
                    fns[i]()
                samples[i].append((clock() - start) / numbers[i])

    rounds()
    if any(not _steady(s) for s in samples.values()):
        rounds()
    results: list[tuple[Timing, Any] | BaseException] = []
    for i in range(len(fns)):
        if i in errors:
            results.append(errors[i])
            continue
        s = samples[i]
        q1, q3 = statistics.quantiles(s, n=4, method="inclusive")[::2] if len(s) > 1 else (s[0], s[0])
        median = statistics.median(s)
        timing = Timing(firsts[i][0], median, min(s), max(s), q1, q3, len(s), numbers[i], _steady(s), tuple(s))
        results.append((timing, firsts[i][2]))
    return results


def _steady(samples: list[float]) -> bool:
    return statistics.median(samples) <= UNSTEADY * min(samples)
