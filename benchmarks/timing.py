"""Timing helpers shared by the benchmarks (wall clock, ``time.perf_counter``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def timed(fn: Callable[[], T], repeat: int = 1) -> tuple[float, T]:
    """Median seconds of ``repeat`` calls (no warm-up), and the last call's result."""
    times: list[float] = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result  # type: ignore[return-value]


def median_time(fn: Callable[[], object], runs: int, *, warmup: bool = True) -> float:
    """Median seconds of ``runs`` calls, after one unmeasured warm-up call by default."""
    if warmup:
        fn()
    return timed(fn, runs)[0]


def interleaved(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median seconds of each function, run in rotation (after one warm-up call each), so
    that a shared machine's changing load slows all of them alike and ratios between them
    stay meaningful."""
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in samples.items()}


def rate(fn: Callable[[], object], seconds: float, *, warmup: bool = False) -> float:
    """Calls per second of ``fn`` called again and again for at least ``seconds`` (after one
    unmeasured call when ``warmup``)."""
    if warmup:
        fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return n / elapsed
