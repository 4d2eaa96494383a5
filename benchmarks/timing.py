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


def per_item_table(rows: list[tuple[str, float]], n: int, floor_s: float, *, unit: str,
                   total: str = "total") -> dict[str, dict[str, float]]:
    """Print rows of ``(name, seconds for n items)`` as a table (``<total> ms``, ``us/<unit>``,
    ``<unit>s/s``, ``x floor``: each row's time over ``floor_s``) and return the figures by row
    name: ``{"<total>_s", "per_<unit>_us", "x_floor"}``."""
    headings = (f"{total} ms", f"us/{unit}", f"{unit}s/s", "x floor")
    widths = [max(len(h) + 2, 9) for h in headings]
    print(f"{'row':<34}" + "".join(f"{h:>{w}}" for h, w in zip(headings, widths, strict=True)))
    out = {}
    for name, seconds in rows:
        per = seconds / n
        cells = (f"{seconds * 1e3:.1f}", f"{per * 1e6:.1f}", f"{1 / per:,.0f}", f"{seconds / floor_s:.2f}x")
        print(f"{name:<34}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))
        out[name] = {f"{total}_s": seconds, f"per_{unit}_us": per * 1e6, "x_floor": seconds / floor_s}
    return out
